"""A plugin file for the seeding tests: a method that draws from every process-wide random
generator, as Captum's ``NoiseTunnel`` draws from torch's, and one that only consumes draws.
Loaded with ``--plugin``."""
from __future__ import annotations

import random

import numpy as np
import torch

import saliency_bench


def noise(b: int, h: int, w: int) -> torch.Tensor:
    """Draws from torch's CPU generator, NumPy's global one and Python's ``random``, in this order."""
    t = torch.rand(b, h, w)
    n = torch.from_numpy(np.random.rand(b, h, w)).float()
    return t + n + random.random()


@saliency_bench.method("noisy_brightness")
def noisy_brightness(model, x, targets):
    """The brightness of the input plus noise from every process-wide generator."""
    b, _, h, w = x.shape
    return x.float().mean(1) + noise(b, h, w).to(x.device)


@saliency_bench.method("draws_random")
def draws_random(model, x, targets):
    """The brightness of the input, after drawing from every process-wide generator."""
    noise(3, 5, 7)
    return x.float().mean(1)
