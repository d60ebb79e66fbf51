"""Guided backpropagation (Springenberg et al., "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop, sec. 3.4, fig. 1).

The gradient of the pre-softmax target score, except that every ReLU passes back only positive
gradient, and only where its input was positive:

    R_l = 1[f_l > 0] * 1[R_{l+1} > 0] * R_{l+1}

heatmap(u) = max_c |R_input(c, u)|, as for the gradient.

Programs followed: the paper's rule; the reduction of TorchRay's ``guided_backprop`` (max over
channels of the absolute value) and of Fong & Vedaldi's ``heatmaps.py`` (``norm_deg=inf``),
at the input, seeded with the target's logit. Equal to TorchRay's maps on VGG16 and ResNet50
and to Captum's ``GuidedBackprop`` on GoogLeNet and EfficientNet-Lite0 (tests). Where ours
differs, an option (:class:`._backprop.GuidedRules`): at a ReLU input of exactly 0 TorchRay
passes the gradient (``at_zero="pass"``), ours blocks it as the paper's ``f > 0`` does; ReLU6
is guided on its linear range (``relu6="gradient"`` leaves it alone, as TorchRay and Captum do
to a network they do not know). TorchRay's pointing-game table smooths the map
(``smooth=0.02``), an option here too.
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import INPUT, GuidedRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("guided_backprop")
def guided_backprop(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = INPUT,
                    at_zero: str = "block", relu6: str = "guided", smooth: float = 0.0) -> torch.Tensor:
    """Guided backprop: ReLUs pass only positive gradient where their input was positive."""
    layer = resolve(model, layer)
    rules = GuidedRules(at_zero=at_zero, relu6=relu6)
    (grad,) = backward(forward(model, x, [layer], rules), targets, [layer])
    return smooth_maps(grad.abs().amax(dim=1), smooth)
