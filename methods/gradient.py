"""Gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks", ICLR 2014 workshop).

    heatmap(u) = max_c | d s_target / d x(c, u) |

where ``s_target`` is the pre-softmax target score (PROTOCOLS.md §1, §5).
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import target_score


@saliency_bench.method("gradient")
def gradient(model, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Absolute input gradient of the target logit, max over colour channels."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        score = target_score(model.net(x), targets).sum()
        (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)
