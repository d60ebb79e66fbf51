"""Excitation backprop against marginal winning probabilities computed by hand (Zhang et al.,
ECCV 2016, eq. 7-8) on a tiny conv -> ReLU -> linear net, and each reading of what the paper
leaves open (BatchNorm, residual sums, signed inputs, ReLU6 saturation, contrastive order)
against hand-computed cases: the defaults (TorchRay's) and every named option.
TorchRay itself is the reference on VGG16 and ResNet50 in test_torchray_parity.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.methods._backprop import ExcitationRules, backward, forward, mwp_sum, mwp_weighted
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


@pytest.mark.parametrize("relu_before_sum", [None, True, False])
def test_contrastive_excitation_subtracts_the_negated_classifier_signal(relu_before_sum):
    """Default (None): sum over channels, then ReLU (the authors' heatmaps.py and TorchRay)."""
    model = tiny_model()
    p_hidden, _ = hand_mwp(0)
    p_neg, _ = hand_mwp(0, negate=True)
    diff_in = hand_down(p_hidden - p_neg)  # EB is linear in the signal once activations are fixed
    expected = (np.maximum(diff_in, 0).sum(0) if relu_before_sum
                else np.maximum(diff_in.sum(0), 0))
    order = {} if relu_before_sum is None else {"relu_before_sum": relu_before_sum}
    m = get_method("contrastive_excitation_backprop", layer="input", contrast_layer="hidden", **order)
    maps, _ = m.explain(model, x_tensor(), torch.tensor([[0]]))
    np.testing.assert_allclose(maps[0].numpy(), expected, rtol=1e-12, atol=1e-15)
    assert np.abs(expected).max() > 0
    # the two orders differ on this input (one channel's difference is negative where the
    # other's is positive), so the parametrisation tells them apart
    assert not np.allclose(np.maximum(diff_in, 0).sum(0), np.maximum(diff_in.sum(0), 0))
    # the classifier's weights are untouched afterwards
    assert torch.equal(model.layer("classifier").weight, torch.tensor(W2, dtype=torch.float64))


@pytest.mark.parametrize("batchnorm", ["pass", "fold"])
def test_batchnorm_passes_probability_or_is_folded_into_the_conv(batchnorm):
    """``pass`` (default, TorchRay): the conv excites through its own ``W^+``; ``fold``: through
    ``(a W)^+``, so a channel with a negative BatchNorm scale uses the conv's negative weights."""
    scale = (-1.0, 2.0, 0.5)
    model = tiny_model(bn_scale=scale)
    x = x_tensor()
    with torch.no_grad():
        hidden = model.net[:3](x)[0].numpy()  # conv -> BN -> ReLU
    w2p = np.maximum(W2[1], 0)
    p_hidden = (hidden.reshape(-1) * w2p / (hidden.reshape(-1) * w2p).sum()).reshape(hidden.shape)
    folded = W1 * (np.array(scale) / np.sqrt(1 + 1e-5))[:, None]
    rules = ExcitationRules() if batchnorm == "pass" else ExcitationRules(batchnorm=batchnorm)
    run = forward(model, x, ["input"], rules)
    (p_in,) = backward(run, torch.tensor([[1]]), ["input"])
    np.testing.assert_allclose(p_in[0].numpy(), hand_down(p_hidden, W1 if batchnorm == "pass" else folded),
                               rtol=1e-10)
    # hidden channel 0 (negative scale) is on; folded, it sends its probability through W1's
    # negative weight to input channel 1, what the unfolded W1^+ never does
    assert hidden[0].min() > 0 and p_hidden[0].sum() > 0
    only0 = np.zeros_like(p_hidden)
    only0[0] = p_hidden[0]
    routed = hand_down(only0, folded)
    assert routed[0].sum() == 0 and routed[1].sum() == pytest.approx(p_hidden[0].sum())
    routed = hand_down(only0, W1)
    assert routed[0].sum() == pytest.approx(p_hidden[0].sum()) and routed[1].sum() == 0


A = torch.tensor([[3.0, -1.0, 0.0, 2.0]], dtype=torch.float64)
B = torch.tensor([[1.0, 2.0, -4.0, 2.0]], dtype=torch.float64)
P = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)


def test_residual_sum_default_shares_by_signed_contribution_like_torchray_eltwise_sum():
    pa, pb = mwp_sum(A, B, P)  # a + b = 4, 1, -4, 4
    torch.testing.assert_close(pa, torch.tensor([[0.3, -0.3, 0.0, 0.05]], dtype=torch.float64))
    torch.testing.assert_close(pb, torch.tensor([[0.1, 0.6, 0.2, 0.05]], dtype=torch.float64))
    torch.testing.assert_close(pa + pb, P)  # conserved wherever a + b != 0


def test_residual_sum_positive_option_shares_by_positive_contribution():
    pa, pb = mwp_sum(A, B, P, "positive")
    torch.testing.assert_close(pa, torch.tensor([[0.3, 0.0, 0.0, 0.05]], dtype=torch.float64))
    torch.testing.assert_close(pb, torch.tensor([[0.1, 0.3, 0.0, 0.05]], dtype=torch.float64))


@pytest.mark.parametrize("signed, expected", [
    ("split", [3 / 7, 2 / 7, 2 / 7, 0.0]),  # positive contributions 3, 2, 2, 0 (default)
    ("clamp", [0.6, 0.0, 0.4, 0.0]),        # x^+ w^+: 3, 0, 2, 0
    ("as_is", [0.75, 0.0, 0.5, -0.25]),     # x w^+: 3, 0, 2, -1 (TorchRay's code)
])
def test_signed_inputs_rules(signed, expected):
    x = torch.tensor([[3.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0, 2.0, 1.0]], dtype=torch.float64)  # contributions 3, 2, 2, -1
    got = mwp_weighted(lambda t, ww: t @ ww.T, x, w, torch.tensor([[1.0]], dtype=torch.float64), signed)
    torch.testing.assert_close(got, torch.tensor([expected], dtype=torch.float64))
    # told the input is non-negative, every reading is the paper's x_j w_ij^+
    got = mwp_weighted(lambda t, ww: t @ ww.T, x.clamp(min=0), w, torch.tensor([[1.0]], dtype=torch.float64),
                       signed, nonneg=True)
    torch.testing.assert_close(got, torch.tensor([[0.6, 0.0, 0.4, 0.0]], dtype=torch.float64))


def relu6_model() -> Model:
    """input (2) -> linear -> ReLU6 -> linear -> 1 class: hidden unit 0 saturates (10 -> 6)."""
    first = nn.Linear(2, 2, bias=False)
    first.weight.data = torch.tensor([[2.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    last = nn.Linear(2, 1, bias=False)
    last.weight.data = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    net = nn.Sequential(first, nn.ReLU6(), last).double()
    return Model(name="tiny6", net=net, input_size=(1, 2), mean=(0.0,) * 3, std=(1.0,) * 3,
                 classes=[ClassInfo(0, "a", "a")], roles={"excitation": "input"}, aliases={})


@pytest.mark.parametrize("saturated", ["pass", "block"])
def test_relu6_saturated_unit_wins_like_any_active_unit_unless_blocked(saturated):
    model = relu6_model()
    x = torch.tensor([[2.0, 2.0]], dtype=torch.float64)  # hidden 10 -> 6 (saturated), 4
    # hidden outputs 6 and 4 with weights 1, 1: shares 0.6 and 0.4 (eq. 7 on the outputs)
    p_hidden = np.array([0.6, 0.4]) if saturated == "pass" else np.array([0.0, 0.4])
    # to the input: unit 0's inputs contribute 4 and 6, unit 1's 2 and 2
    expected = p_hidden[0] * np.array([0.4, 0.6]) + p_hidden[1] * np.array([0.5, 0.5])
    rules = ExcitationRules() if saturated == "pass" else ExcitationRules(saturated=saturated)
    (p_in,) = backward(forward(model, x, ["input"], rules), torch.tensor([[0]]), ["input"])
    np.testing.assert_allclose(p_in[0].numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("saturated", ["pass", "block"])
def test_relu6_passes_no_probability_to_a_unit_that_is_off(saturated):
    """A BatchNorm shift after the ReLU6 makes an off unit's output nonzero, so probability comes
    back to it; the ReLU6 must stop it there (x <= 0). Hand-computed: x = (1, 2) gives
    pre-activations (8, -1), ReLU6 (6, 0), BatchNorm with shift (0, 1) gives (6, 1); the
    classifier's shares are 6/7 and 1/7. Unit 0 (saturated) passes 6/7 unless ``block``; unit 1
    (off) passes nothing. Unit 0's inputs contribute 2 and 6: shares 1/4 and 3/4."""
    first = nn.Linear(2, 2, bias=False)
    first.weight.data = torch.tensor([[2.0, 3.0], [1.0, -1.0]], dtype=torch.float64)
    bn = nn.BatchNorm1d(2, eps=0.0)
    bn.bias.data = torch.tensor([0.0, 1.0])
    last = nn.Linear(2, 1, bias=False)
    last.weight.data = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    net = nn.Sequential(first, nn.ReLU6(), bn, last).double().eval()
    model = Model(name="tiny6bn", net=net, input_size=(1, 2), mean=(0.0,) * 3, std=(1.0,) * 3,
                  classes=[ClassInfo(0, "a", "a")], roles={"excitation": "input"}, aliases={})
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert net(x).item() == pytest.approx(7.0)
    expected = (6 / 7 if saturated == "pass" else 0.0) * np.array([0.25, 0.75])
    (p_in,) = backward(forward(model, x, ["input"], ExcitationRules(saturated=saturated)), torch.tensor([[0]]),
                       ["input"])
    np.testing.assert_allclose(p_in[0].numpy(), expected, rtol=1e-12, atol=1e-15)


# -- the clamped weights kept across calls (methods/_excitation_ops.py) -----------------------
def test_a_weight_written_in_place_or_swapped_is_not_served_from_the_clamped_weights_cache():
    """Hand-computed eq. 7-8 after each change of the classifier: the clamped weights a first call
    kept must not serve a weight written in place (version counter) or given new ``.data``."""
    from saliency_bench.methods._excitation_ops import WEIGHT_PARTS

    model = tiny_model()
    lin = model.net[-1]
    method = get_method("excitation_backprop", layer="input")
    target = torch.tensor([[0]])
    for _ in range(2):  # the second call is served from the cache
        maps, _ = method.explain(model, x_tensor(), target)
        np.testing.assert_allclose(maps[0].numpy(), hand_mwp(0)[1].sum(0), rtol=1e-12)
    assert any(hit[0]() is lin.weight for hit in WEIGHT_PARTS._parts.values())
    with torch.no_grad():
        lin.weight.mul_(-1)  # in place: now -W2
    maps, _ = method.explain(model, x_tensor(), target)
    np.testing.assert_allclose(maps[0].numpy(), hand_mwp(0, negate=True)[1].sum(0), rtol=1e-12)
    lin.weight.data = torch.tensor(W2, dtype=torch.float64)  # swapped storage, version untouched
    maps, _ = method.explain(model, x_tensor(), target)
    np.testing.assert_allclose(maps[0].numpy(), hand_mwp(0)[1].sum(0), rtol=1e-12)
    # contrastive EB flips the classifier at backward time: its own entry, the weight untouched
    before = lin.weight.detach().clone()
    get_method("contrastive_excitation_backprop", layer="input", contrast_layer="hidden").explain(
        model, x_tensor(), target)
    assert torch.equal(lin.weight, before) and lin.weight._backward_hooks is None


def test_the_clamped_weights_cache_forgets_a_weight_that_is_gone():
    from saliency_bench.methods._excitation_ops import WEIGHT_PARTS

    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    p = torch.tensor([[1.0]], dtype=torch.float64)
    linear = lambda t, ww: t @ ww.T  # noqa: E731
    got = mwp_weighted(linear, x, w, p, nonneg=True)
    torch.testing.assert_close(got, torch.tensor([[1 / 7, 6 / 7]], dtype=torch.float64))
    assert WEIGHT_PARTS.get(w, False, True) is WEIGHT_PARTS.get(w, False, True)  # kept, not remade
    with torch.no_grad():
        w.copy_(torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(mwp_weighted(linear, x, w, p, nonneg=True),
                               torch.tensor([[3 / 5, 2 / 5]], dtype=torch.float64))
    torch.testing.assert_close(mwp_weighted(linear, x, w, p, nonneg=True, negate=True),
                               torch.tensor([[0.0, 0.0]], dtype=torch.float64))  # -w has no positive part
    n = len(WEIGHT_PARTS)
    del w
    assert len(WEIGHT_PARTS) == n - 2  # its W^+ and its (-W)^+
