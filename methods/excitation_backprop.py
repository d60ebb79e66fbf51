"""Excitation backprop and its contrastive variant (Zhang, Lin, Brandt, Shen, Sclaroff, "Top-down
Neural Attention by Excitation Backprop", ECCV 2016).

Excitation backprop passes the target's probability down the network as a *marginal winning
probability* (sec. 3.2, eq. 7-8): a neuron ``i`` hands its probability ``P(a_i)`` to its
children ``j`` in proportion to their excitatory contribution,

    P(a_j) = sum_i  x_j w_ij^+ / (sum_k x_k w_ik^+)  P(a_i),

starting from the target's seed at the logits (one-hot; a set of classes shares a total of 1
by its softmax, ``targets.score_gradient``). The heatmap is the probability at the model's
``excitation`` layer summed over channels, no ReLU (PROTOCOLS.md §5).

Contrastive excitation backprop (sec. 3.3) subtracts the probability of the *negated*
classifier: both signals are propagated to the ``contrast`` layer, subtracted there, and the
difference is propagated to the ``excitation`` layer; then the sum over channels and a ReLU,
``max(sum_c s, 0)`` (``relu_before_sum=True``, ``sum_c max(s, 0)``, is the order an earlier
PROTOCOLS.md gave). Excitation backprop is linear in its seed once the forward activations are
fixed, so both signals share one forward pass, and the map does not depend on which layer
between the classifier and ``layer`` the subtraction happens at.

Programs followed:

* Fong & Vedaldi's ``heatmaps.py`` (``compute_heatmap``): GoogLeNet's layers (map at
  ``pool2/3x3_s2``, contrast at ``pool5/7x7_s1``, the model roles), the channel sum
  (``norm_deg=-1``) and, for the contrastive variant, sum then ReLU (``norm_deg=-2``); its
  contrast pass is the same negate-backward-subtract-backward as here.
* TorchRay (``torchray.attribution.excitation_backprop``, with ``update_resnet`` as its
  benchmark uses it) for what the paper leaves open: BatchNorm passes the probability, a
  residual sum splits it by ``a / (a + b)``, the same maps as TorchRay on VGG16 and ResNet50
  (tests/test_torchray_parity.py).

Where ours differs from TorchRay, on networks it never ran: inputs that can be negative
(``signed_inputs="split"``; TorchRay applies the rule to them as they are, ``"as_is"``) and
ReLU6 (a saturated unit wins, ``saturated="pass"``; TorchRay's ordinary backward drops it).
Both readings are options, with ``residual="positive"`` and ``batchnorm="fold"``; each is
described in :class:`._backprop.ExcitationRules`. On EfficientNet-Lite0 (imagenet-val-300,
localization error value/energy/mean at the held-out alpha*, maps at their own resolution):
excitation backprop 35.3/32.0/34.7 with the defaults, 52.7/52.7/54.0 with TorchRay's
``"as_is"``, whose signal grows about a thousandfold by ``blocks.2``; with ``saturated="block"``
the contrastive map's maximum sits in a corner for 25% of the images (0.7% by default).

Contrastive EB on EfficientNet-Lite0 (55.3/58.7/57.3, the centre baseline 38.7) is limited by
the model, not by these readings: its excitation maps at ``blocks.2`` hardly depend on the
seed (the target's and the negated classifier's differ in a tenth of their mass, a quarter at
most whichever reading; two classes' in 3%), so the contrastive map is the small remainder of
two near-equal maps.
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import ExcitationRules, backward, forward, resolve, smooth_maps


@saliency_bench.method("excitation_backprop")
def excitation_backprop(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = "excitation",
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
def contrastive_excitation_backprop(model, x: torch.Tensor, targets: torch.Tensor, *,
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
