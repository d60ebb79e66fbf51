"""Excitation backprop against marginal winning probabilities computed by hand (Zhang et al.,
ECCV 2016, eq. 7-8) on a tiny conv -> ReLU -> linear net, and the engine's rules for
BatchNorm folding, residual sums and signed inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.methods._backprop import (ExcitationRules, backward, forward, mwp_positive,
                                              mwp_weighted)
from saliency_bench.registry import get_method

W1 = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 3.0]])  # conv 1x1: 2 -> 3 channels
W2 = np.array([[1.0, -1.0, 2.0, 0.5, -0.5, 1.0],       # linear: 6 hidden -> 2 classes
               [-1.0, 2.0, 0.5, -1.0, 1.0, 1.0]])
X = np.array([[[1.0, 2.0]], [[0.5, 1.0]]])              # input [C=2, H=1, W=2], >= 0


def tiny_model(bn_scale: tuple[float, float, float] | None = None) -> Model:
    conv = nn.Conv2d(2, 3, 1, bias=True)
    conv.weight.data = torch.tensor(W1, dtype=torch.float64).view(3, 2, 1, 1)
    conv.bias.data = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    layers = [conv]
    if bn_scale is not None:
        bn = nn.BatchNorm2d(3).double()
        bn.weight.data = torch.tensor(bn_scale, dtype=torch.float64)
        bn.bias.data = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
        layers.append(bn)
    lin = nn.Linear(6, 2, bias=True)
    lin.weight.data = torch.tensor(W2, dtype=torch.float64)
    lin.bias.data = torch.tensor([0.2, -0.1], dtype=torch.float64)
    net = nn.Sequential(*layers, nn.ReLU(), nn.Flatten(), lin).double()
    relu = str(len(layers))
    return Model(name="tiny", net=net, input_size=(1, 2), mean=(0.0,) * 3, std=(1.0,) * 3,
                 classes=[ClassInfo(0, "a", "a"), ClassInfo(1, "b", "b")],
                 roles={"excitation": "input", "contrast": relu, "classifier": str(len(layers) + 2)},
                 aliases={"hidden": relu})


def hand_mwp(target: int, negate: bool = False, w1: np.ndarray = W1):
    """Eq. 7-8 with explicit loops: probability of each hidden unit and each input unit."""
    h = np.maximum(np.einsum("oc,chw->ohw", W1, X) + np.array([0.1, -0.2, 0.3])[:, None, None], 0)
    hf = h.reshape(-1)  # flatten order (channel, h, w), as nn.Flatten
    w2 = -W2 if negate else W2
    w2p = np.maximum(w2[target], 0)
    p_hidden = hf * w2p / (hf * w2p).sum()
    p_hidden = p_hidden.reshape(h.shape)
    return p_hidden, hand_down(p_hidden, w1)


def hand_down(p_hidden: np.ndarray, w1: np.ndarray = W1) -> np.ndarray:
    p_in = np.zeros_like(X)
    w1p = np.maximum(w1, 0)
    for o in range(3):
        for u in range(2):
            z = sum(X[c, 0, u] * w1p[o, c] for c in range(2))
            for c in range(2):
                if z > 0:
                    p_in[c, 0, u] += p_hidden[o, 0, u] * X[c, 0, u] * w1p[o, c] / z
    return p_in


def x_tensor() -> torch.Tensor:
    return torch.tensor(X, dtype=torch.float64)[None]


@pytest.mark.parametrize("target", [0, 1])
def test_excitation_matches_hand_computed_winning_probabilities(target):
    model = tiny_model()
    p_hidden, p_in = hand_mwp(target)
    run = forward(model, x_tensor(), ["input", "hidden"], ExcitationRules())
    got_in, got_hidden = backward(run, torch.tensor([[target]]), ["input", "hidden"])
    np.testing.assert_allclose(got_hidden[0].numpy(), p_hidden, rtol=1e-12)
    np.testing.assert_allclose(got_in[0].numpy(), p_in, rtol=1e-12)
    maps, _ = get_method("excitation_backprop", layer="input").explain(model, x_tensor(),
                                                                        torch.tensor([[target]]))
    np.testing.assert_allclose(maps[0].numpy(), p_in.sum(0), rtol=1e-12)


def test_excitation_probability_is_conserved_layer_to_layer():
    model = tiny_model()
    run = forward(model, x_tensor(), ["input", "hidden"], ExcitationRules())
    p_in, p_hidden = backward(run, torch.tensor([[1]]), ["input", "hidden"])
    assert float(p_hidden.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(p_in.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(p_in.min()) >= 0 and float(p_hidden.min()) >= 0


def test_excitation_of_a_class_set_shares_one_unit_of_probability_by_softmax():
    model = tiny_model()
    with torch.no_grad():
        logits = model.net(x_tensor())[0].numpy()
    share = np.exp(logits) / np.exp(logits).sum()
    expected = share[0] * hand_mwp(0)[1] + share[1] * hand_mwp(1)[1]
    maps, _ = get_method("excitation_backprop", layer="input").explain(model, x_tensor(),
                                                                        torch.tensor([[0, 1]]))
    np.testing.assert_allclose(maps[0].numpy(), expected.sum(0), rtol=1e-12)


@pytest.mark.parametrize("relu_before_sum", [True, False])
def test_contrastive_excitation_subtracts_the_negated_classifier_signal(relu_before_sum):
    model = tiny_model()
    p_hidden, _ = hand_mwp(0)
    p_neg, _ = hand_mwp(0, negate=True)
    diff_in = hand_down(p_hidden - p_neg)  # EB is linear in the signal once activations are fixed
    expected = (np.maximum(diff_in, 0).sum(0) if relu_before_sum
                else np.maximum(diff_in.sum(0), 0))
    m = get_method("contrastive_excitation_backprop", layer="input", contrast_layer="hidden",
                   relu_before_sum=relu_before_sum)
    maps, _ = m.explain(model, x_tensor(), torch.tensor([[0]]))
    np.testing.assert_allclose(maps[0].numpy(), expected, rtol=1e-12, atol=1e-15)
    assert np.abs(expected).max() > 0
    # the classifier's weights are untouched afterwards
    assert torch.equal(model.layer("classifier").weight, torch.tensor(W2, dtype=torch.float64))


def test_batchnorm_is_folded_into_the_conv_so_a_negative_scale_excites_negative_weights():
    scale = (-1.0, 2.0, 0.5)
    model = tiny_model(bn_scale=scale)
    x = x_tensor()
    with torch.no_grad():
        hidden = model.net[:3](x)[0].numpy()  # conv -> BN -> ReLU
    w2p = np.maximum(W2[1], 0)
    p_hidden = (hidden.reshape(-1) * w2p / (hidden.reshape(-1) * w2p).sum()).reshape(hidden.shape)
    folded = W1 * (np.array(scale) / np.sqrt(1 + 1e-5))[:, None]
    run = forward(model, x, ["input"], ExcitationRules())
    (p_in,) = backward(run, torch.tensor([[1]]), ["input"])
    np.testing.assert_allclose(p_in[0].numpy(), hand_down(p_hidden, folded), rtol=1e-10)
    # hidden channel 0 (negative scale) is on and sends its probability through W1's negative
    # weight, to input channel 1: what the unfolded W1^+ could never do.
    assert hidden[0].min() > 0 and p_hidden[0].sum() > 0
    only0 = np.zeros_like(p_hidden)
    only0[0] = p_hidden[0]
    routed = hand_down(only0, folded)
    assert routed[0].sum() == 0 and routed[1].sum() == pytest.approx(p_hidden[0].sum())


def test_residual_sum_shares_probability_in_proportion_to_positive_contribution():
    a = torch.tensor([[3.0, -1.0, 0.0, 2.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 2.0, -4.0, 2.0]], dtype=torch.float64)
    p = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    pa, pb = mwp_positive(torch.add, [a, b], p)
    torch.testing.assert_close(pa, torch.tensor([[0.3, 0.0, 0.0, 0.05]], dtype=torch.float64))
    torch.testing.assert_close(pb, torch.tensor([[0.1, 0.3, 0.0, 0.05]], dtype=torch.float64))


def test_signed_inputs_are_excited_through_weights_of_their_own_sign():
    x = torch.tensor([[2.0, -1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, -3.0, -1.0]], dtype=torch.float64)  # contributions 2, 3, -1
    p = torch.tensor([[1.0]], dtype=torch.float64)
    got = mwp_weighted(lambda t, ww: t @ ww.T, x, w, p, nonneg=False)
    torch.testing.assert_close(got, torch.tensor([[0.4, 0.6, 0.0]], dtype=torch.float64))
    # told the input is non-negative, the rule is the paper's x_j w_ij^+ (negative x ignored)
    got = mwp_weighted(lambda t, ww: t @ ww.T, x.clamp(min=0), w, p, nonneg=True)
    torch.testing.assert_close(got, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
