"""Excitation backprop and its contrastive variant (Zhang, Lin, Brandt, Shen, Sclaroff, "Top-down
Neural Attention by Excitation Backprop", ECCV 2016).

Excitation backprop passes the target's probability down the network as a *marginal winning
probability* (sec. 3.2, eq. 7-8): a neuron ``i`` hands its probability ``P(a_i)`` to its
children ``j`` in proportion to their excitatory contribution,

    P(a_j) = sum_i  x_j w_ij^+ / (sum_k x_k w_ik^+)  P(a_i),

starting from the target's seed at the logits (one-hot; a set of classes shares a total of 1
by its softmax, ``targets.score_gradient``). The heatmap is the probability at the model's
``excitation`` layer (GoogLeNet ``pool2/3x3_s2``, torchvision ``maxpool2``) summed over
channels (PROTOCOLS.md §5). The probability is conserved layer to layer, up to neurons that
receive nothing excitatory. The rules for BatchNorm, ReLU6, signed inputs and residual sums
are in :class:`._backprop.ExcitationRules`.

Contrastive excitation backprop (sec. 3.3) subtracts the probability map of the *negated*
classifier ("the target's classifier weights negated"): the contrast signal is propagated with
``-W`` to the model's ``contrast`` layer (GoogLeNet ``pool5``), subtracted from the target's
signal there, and the difference is propagated to the ``excitation`` layer; then ReLU and a sum
over channels (PROTOCOLS.md §5; ``relu_before_sum=False`` gives TorchRay's and the released
Caffe demo's order, sum over channels then ReLU). Excitation backprop is linear in the seed once
the forward activations are fixed, so both signals share one forward pass.
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import ExcitationRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("excitation_backprop")
def excitation_backprop(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = "excitation",
                        smooth: float = 0.0) -> torch.Tensor:
    """Excitation backprop: marginal winning probability summed over channels (Zhang et al. 2016)."""
    layer = resolve(model, layer)
    (prob,) = backward(forward(model, x, [layer], ExcitationRules()), targets, [layer])
    return smooth_maps(prob.sum(dim=1), smooth)


@saliency_bench.method("contrastive_excitation_backprop")
def contrastive_excitation_backprop(model, x: torch.Tensor, targets: torch.Tensor, *,
                                    layer: str = "excitation", contrast_layer: str = "contrast",
                                    classifier: str = "classifier", relu_before_sum: bool = True,
                                    smooth: float = 0.0) -> torch.Tensor:
    """Contrastive excitation backprop: target minus negated-classifier probability (Zhang et al. 2016)."""
    layer, contrast_layer = resolve(model, layer), resolve(model, contrast_layer)
    weight = getattr(model.layer(classifier), "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"classifier layer '{classifier}' of '{model.name}' has no weight to negate")
    rules = ExcitationRules()
    run = forward(model, x, [layer, contrast_layer], rules)
    rules.negate = weight  # read by the rules at backward time: the same forward pass serves both
    try:
        (contrast,) = backward(run, targets, [contrast_layer], retain=True)
    finally:
        rules.negate = None
    (diff,) = backward(run, targets, [layer], inject={contrast_layer: lambda p: p - contrast})
    maps = diff.clamp(min=0).sum(dim=1) if relu_before_sum else diff.sum(dim=1).clamp(min=0)
    return smooth_maps(maps, smooth)
