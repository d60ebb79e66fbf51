"""DeConvNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
sec. 2.1) as a backprop method: the backward pass of every ReLU is a ReLU of the signal,

    R_l = max(R_{l+1}, 0)          (whatever the ReLU's input was on the way forward)

max pooling passes the signal to the recorded switches (the ordinary max-pool backward) and
convolutions to their transposed filters (the ordinary backward). heatmap(u) = max_c |R_input(c, u)|.

Program followed: TorchRay's ``deconvnet`` (``DeConvNetReLU.backward = grad.clamp(min=0)``, the
reduction ``gradient_to_saliency``: max over channels of |grad|), seeded with the target's
logit; equal maps on VGG16 and ResNet50 (tests). TorchRay patches ``torch.relu`` only, so like
it this rule leaves ReLU6 and other activations with their ordinary gradient. TorchRay's
pointing-game table smooths the map (``smooth=0.02``), an option here (docs/PROTOCOLS.md §2).
"""
from __future__ import annotations

import math

import torch

import saliency_bench

from ._backprop import INPUT, Rules, _relu_range, backward, forward, replaced, resolve, smooth_maps


class DeconvRules(Rules):
    """Zeiler & Fergus's backward ReLU: ``max(grad, 0)``, the forward input ignored."""

    name = "deconvnet"

    def on_relu(self, func, name, args, kwargs):
        rng = _relu_range(name, args, kwargs)
        if rng is None or rng[1] != math.inf:  # ReLU only, as TorchRay
            return NotImplemented
        return replaced(torch.relu, lambda g, x: (g.clamp(min=0),), args[0])


@saliency_bench.method("deconvnet")
def deconvnet(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = INPUT,
              smooth: float = 0.0) -> torch.Tensor:
    """DeConvNet (Zeiler & Fergus 2014): ReLUs pass back the positive part of the signal."""
    layer = resolve(model, layer)
    (grad,) = backward(forward(model, x, [layer], DeconvRules()), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
