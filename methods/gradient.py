"""Gradient saliency (Simonyan et al., "Deep Inside Convolutional Networks", ICLR 2014 workshop, eq. 3).

    heatmap(u) = max_c | d s_target / d x(c, u) |

where ``s_target`` is the pre-softmax target score (PROTOCOLS.md §1, §5): the logit, or the
log-sum-exp of a set's logits. ``layer`` moves the probe from the input to an inner layer.

Programs followed, which agree: the paper's eq. 3, TorchRay's ``gradient`` (one-hot seed at the
logits, ``gradient_to_saliency``: max over channels of |grad|; equal maps on VGG16 and ResNet50,
tests), Fong & Vedaldi's ``heatmaps.py`` (seed 1 at ``loss3/classifier``, ``norm_deg=inf``) and
Captum's ``Saliency`` followed by the max over channels. A set of classes (our addition) seeds the
gradient of its log-sum-exp. TorchRay's pointing-game table smooths the map (``smooth=0.02``, a
Gaussian of 0.02 x the map's larger side), an option here.
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import INPUT, backward, forward, resolve, smooth_maps


@saliency_bench.method("gradient")
def gradient(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = INPUT,
             smooth: float = 0.0) -> torch.Tensor:
    """Absolute gradient of the target logit, max over channels (Simonyan et al. 2014)."""
    layer = resolve(model, layer)
    (grad,) = backward(forward(model, x, [layer]), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
