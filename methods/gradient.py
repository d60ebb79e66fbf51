"""Gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks", ICLR 2014 workshop, eq. 3).

    heatmap(u) = max_c | d s_target / d x(c, u) |

with ``s_target`` the pre-softmax target score (the logit, or the log-sum-exp of a class set's
logits). ``layer`` moves the probe from the input to an inner layer; ``smooth`` is TorchRay's
smoothing. The programs it equals (TorchRay, Captum): docs/PROTOCOLS.md §5.2.
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import Targets

from ._backprop import INPUT, backward, forward, resolve, smooth_maps


@saliency_bench.method("gradient")
def gradient(model, x: torch.Tensor, targets: Targets, *, layer: str = INPUT,
             smooth: float = 0.0) -> torch.Tensor:
    """Absolute gradient of the target logit, max over channels (Simonyan et al. 2014)."""
    layer = resolve(model, layer)
    (grad,) = backward(forward(model, x, [layer]), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
