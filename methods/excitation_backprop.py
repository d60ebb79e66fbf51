"""Excitation backprop and its contrastive variant (Zhang, Lin, Brandt, Shen, Sclaroff, "Top-down
Neural Attention by Excitation Backprop", ECCV 2016, §3.2-3.3, eq. 7-8).

A unit hands its marginal winning probability to its inputs in proportion to their excitatory
contribution::

    P(a_j) = sum_i  x_j w_ij^+ / (sum_k x_k w_ik^+)  P(a_i)

seeded at the logits by ``Targets.gradient`` (one-hot; a class set shares one unit by its
softmax). The map is the probability at the ``excitation`` layer summed over channels. The
contrastive variant subtracts the negated classifier's signal at the ``contrast`` layer, then
sums over channels and applies a ReLU. The rules where the paper is silent (TorchRay's by
default), the options and their measured effect: docs/PROTOCOLS.md §5.4.
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import Targets

from ._backprop import ExcitationRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("excitation_backprop")
def excitation_backprop(model, x: torch.Tensor, targets: Targets, *, layer: str = "excitation",
                        signed_inputs: str = "split", residual: str = "signed", batchnorm: str = "pass",
                        saturated: str = "pass", smooth: float = 0.0) -> torch.Tensor:
    """Excitation backprop: marginal winning probability summed over channels (Zhang et al. 2016);
    the rule options are :class:`._backprop.ExcitationRules`'s."""
    layer = resolve(model, layer)
    rules = ExcitationRules(signed_inputs=signed_inputs, residual=residual, batchnorm=batchnorm,
                            saturated=saturated)
    (prob,) = backward(forward(model, x, [layer], rules), targets, [layer])
    return smooth_maps(prob.sum(dim=1), smooth)


@saliency_bench.method("contrastive_excitation_backprop")
def contrastive_excitation_backprop(model, x: torch.Tensor, targets: Targets, *,
                                    layer: str = "excitation", contrast_layer: str = "contrast",
                                    classifier: str = "classifier", relu_before_sum: bool = False,
                                    signed_inputs: str = "split", residual: str = "signed",
                                    batchnorm: str = "pass", saturated: str = "pass",
                                    smooth: float = 0.0) -> torch.Tensor:
    """Contrastive excitation backprop: target minus negated-classifier probability, summed over
    channels, then ReLU (Zhang et al. 2016; Fong & Vedaldi's ``norm_deg=-2``; TorchRay)."""
    layer, contrast_layer = resolve(model, layer), resolve(model, contrast_layer)
    weight = getattr(model.layer(classifier), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"classifier layer '{classifier}' of '{model.name}' has no weight to negate")
    rules = ExcitationRules(signed_inputs=signed_inputs, residual=residual, batchnorm=batchnorm,
                            saturated=saturated)
    run = forward(model, x, [layer, contrast_layer], rules)
    rules.negate = weight  # read by the rules at backward time: the same forward pass serves both
    try:
        (contrast,) = backward(run, targets, [contrast_layer], retain=True)
    finally:
        rules.negate = None
    (diff,) = backward(run, targets, [layer], inject={contrast_layer: lambda p: p - contrast})
    maps = diff.clamp(min=0).sum(dim=1) if relu_before_sum else diff.sum(dim=1).clamp(min=0)
    return smooth_maps(maps, smooth)
