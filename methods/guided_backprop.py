"""Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop, sec. 3.4, fig. 1).

The gradient of the pre-softmax target score, except that every ReLU passes back only positive
gradient, and only where its input was positive:

    R_l = 1[f_l > 0] * 1[R_{l+1} > 0] * R_{l+1}

heatmap(u) = max_c |R_input(c, u)|, as for the gradient. ReLU6 is guided on its linear range
(see :class:`._backprop.GuidedRules`).
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import INPUT, GuidedRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("guided_backprop")
def guided_backprop(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = INPUT,
                    smooth: float = 0.0) -> torch.Tensor:
    """Guided backprop: ReLUs pass only positive gradient where their input was positive."""
    layer = resolve(model, layer)
    (grad,) = backward(forward(model, x, [layer], GuidedRules()), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
