"""The centre baseline of the pointing game (Zhang et al., ECCV 2016, sec. 5.1: "a baseline that
always points at the image centre").

A centred isotropic Gaussian, so that every benchmark can score it::

    heatmap(u, v) = exp(-((u - cx)^2 + (v - cy)^2) / (2 sigma^2)),  sigma = 0.25 * min(H, W)

The image content is never read (docs/PROTOCOLS.md §5.1).
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import Targets


@saliency_bench.method("center", baseline=True)
def center(model, x: torch.Tensor, targets: Targets, *, sigma: float = 0.25) -> torch.Tensor:
    """Centred Gaussian, sigma = 0.25 x the shorter side (the pointing game's centre baseline)."""
    b, _, h, w = x.shape
    s = sigma * min(h, w)
    v = torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2
    u = torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2
    g = torch.exp(-(v[:, None] ** 2 + u[None, :] ** 2) / (2 * s * s))
    return g.expand(b, h, w).clone()
