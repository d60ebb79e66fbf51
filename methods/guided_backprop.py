"""Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop, sec. 3.4, fig. 1).

The gradient of the pre-softmax target score, except that every ReLU passes back only positive
gradient, and only where its input was positive::

    R_l = 1[f_l > 0] * 1[R_{l+1} > 0] * R_{l+1},        heatmap(u) = max_c |R_input(c, u)|

The rules are :class:`._backprop.GuidedRules`; where TorchRay and Captum read them otherwise
(an input of exactly 0, ReLU6), the options: docs/PROTOCOLS.md §5.3.
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import Targets

from ._backprop import INPUT, GuidedRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("guided_backprop")
def guided_backprop(model, x: torch.Tensor, targets: Targets, *, layer: str = INPUT,
                    at_zero: str = "block", relu6: str = "guided", smooth: float = 0.0) -> torch.Tensor:
    """Guided backprop: ReLUs pass only positive gradient where their input was positive."""
    layer = resolve(model, layer)
    rules = GuidedRules(at_zero=at_zero, relu6=relu6)
    (grad,) = backward(forward(model, x, [layer], rules), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
