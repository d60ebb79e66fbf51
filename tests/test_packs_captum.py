"""The Captum pack (``captum.*``) against Captum itself and against our methods.

Expected values come from Captum called directly (its own classes, its own visualisation
helper, one sample at a time with a plain forward function for class sets) and, where the pack
and one of our methods compute the same thing, from our method.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import Model
from saliency_bench.registry import get_method, methods
from saliency_bench.targets import Targets
from small_nets import SmallCNN, inputs40, run, small_model  # noqa: F401

ca = pytest.importorskip("captum.attr")
from captum.attr._utils.visualization import _normalize_attr  # noqa: E402


@pytest.fixture(scope="module")
def cnn() -> Model:
    return small_model()


@pytest.fixture(scope="module")
def x40() -> torch.Tensor:
    return inputs40()


def test_the_pack_registers_its_methods_through_the_entry_point():
    names = methods.names("captum.*")
    for n in ("captum.saliency", "captum.integrated_gradients", "captum.input_x_gradient", "captum.deeplift",
              "captum.gradient_shap", "captum.noise_tunnel", "captum.feature_ablation", "captum.guided_backprop",
              "captum.deconvolution", "captum.guided_gradcam", "captum.layer_gradcam", "captum.occlusion",
              "captum.lrp", "captum.lime", "captum.kernel_shap"):
        assert n in names
    assert "entry point 'captum = saliency_bench.packs.captum_pack'" in methods.source("captum.saliency")
    assert not [b for b in methods.broken if b in ("captum", "gradcam")]
    # Captum's documented defaults are the methods' parameters (variants change them).
    assert methods.get("captum.integrated_gradients").defaults["n_steps"] == 50
    assert methods.get("captum.noise_tunnel").defaults["nt_samples"] == 5
    assert methods.get("captum.noise_tunnel").defaults["stdevs"] == 1.0
    assert methods.get("captum.gradient_shap").defaults["n_samples"] == 5


# -- the map is Captum's heat map --------------------------------------------------------------
@pytest.mark.parametrize("name,params,sign", [
    ("captum.saliency", {}, "absolute_value"),
    ("captum.input_x_gradient", {}, "absolute_value"),
    ("captum.integrated_gradients", {"n_steps": 8}, "positive"),
])
def test_maps_are_captums_own_heat_map_up_to_its_scale(cnn, x40, name, params, sign):
    """Captum's ``visualize_image_attr`` sums the channels and applies the sign, then scales by a
    percentile (``_normalize_attr``; outlier_perc=0: the maximum). Our map, scaled by its max,
    must be that array."""
    cls = {"captum.saliency": ca.Saliency, "captum.input_x_gradient": ca.InputXGradient,
           "captum.integrated_gradients": ca.IntegratedGradients}[name]
    targets = [1, 4, 0]
    kw = {"n_steps": 8} if params else {}
    ours = run(name, cnn, x40, Targets(targets), **params)
    attr = cls(cnn.net).attribute(x40.clone(), target=targets, **kw).detach()
    for i in range(3):
        ref = _normalize_attr(attr[i].permute(1, 2, 0).numpy().sum(axis=2), sign, outlier_perc=0)
        got = (ours[i] / ours[i].abs().max()).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


# -- class sets: each row keeps its own set however Captum expands the batch --------------------
def per_row_reference(cls, net: nn.Module, x: torch.Tensor, sets: list[list[int]], **kw) -> torch.Tensor:
    """Captum on one sample at a time, the forward function scoring that sample's set."""
    out = []
    for i, s in enumerate(sets):
        def f(inp, s=s):
            return torch.logsumexp(net(inp)[:, s], dim=1)
        a = cls(f).attribute(x[i:i + 1].clone(), **kw)
        out.append(a.detach())
    return torch.cat(out)


def test_integrated_gradients_on_class_sets_equals_captum_sample_by_sample(cnn, x40):
    sets = [[1, 2], [4], [0, 3, 5]]
    ours = run("captum.integrated_gradients", cnn, x40, Targets(sets), n_steps=10, internal_batch_size=7,
               sign="all")
    ref = per_row_reference(ca.IntegratedGradients, cnn.net, x40, sets, n_steps=10).sum(1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_occlusion_on_class_sets_equals_captum_sample_by_sample(cnn, x40):
    sets = [[1, 2], [4, 5], [0]]
    ours = run("captum.occlusion", cnn, x40, Targets(sets), window=8, stride=4, perturbations_per_eval=5,
               sign="all")
    ref = per_row_reference(ca.Occlusion, cnn.net, x40, sets, sliding_window_shapes=(3, 8, 8),
                            strides=(3, 4, 4), baselines=0).sum(1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_saliency_on_a_class_set_is_the_gradient_of_its_log_sum_exp(cnn, x40):
    sets = [[1, 2], [4], [0, 3, 5]]
    ours = run("captum.saliency", cnn, x40, Targets(sets), abs=False, sign="all")
    xg = x40.clone().requires_grad_(True)
    logits = cnn.net(xg)
    score = sum(torch.logsumexp(logits[i, s], 0) for i, s in enumerate(sets))
    (g,) = torch.autograd.grad(score, xg)
    torch.testing.assert_close(ours, g.sum(1), rtol=1e-4, atol=1e-6)


# -- agreement with our methods ---------------------------------------------------------------
def test_captum_saliency_with_max_abs_equals_our_gradient(cnn, x40):
    t = Targets([3, 0, 5])
    torch.testing.assert_close(run("captum.saliency", cnn, x40, t, channels="max_abs"), run("gradient", cnn, x40, t))


def test_captum_layer_gradcam_with_relu_equals_our_grad_cam(cnn, x40):
    t = Targets([[3], [0, 1], [5]])
    ours = run("grad_cam", cnn, x40, t)
    assert ours.shape == (3, 20, 20)
    torch.testing.assert_close(run("captum.layer_gradcam", cnn, x40, t, relu_attributions=True), ours,
                               rtol=1e-4, atol=1e-6)
    # Captum's default keeps the negative part: where ReLU would cut, the maps differ.
    raw = run("captum.layer_gradcam", cnn, x40, t)
    assert (raw < 0).any()
    torch.testing.assert_close(raw.clamp(min=0), ours, rtol=1e-4, atol=1e-6)


def test_captum_occlusion_equals_our_occlusion_on_its_grid(cnn):
    """Our ``grid="valid"``, ``offset=0`` is Captum's unclipped grid; windows cover the 41 px input."""
    x = torch.randn(2, 3, 41, 41, generator=torch.Generator().manual_seed(2))
    t = Targets([2, 5])
    ours = run("occlusion", cnn, x, t, grid="valid", size=9, stride=4, offset=0.0)
    pack = run("captum.occlusion", cnn, x, t, window=9, stride=4, channels="mean", sign="all")
    torch.testing.assert_close(pack, ours, rtol=1e-4, atol=1e-5)


def test_captum_guided_backprop_equals_ours_on_a_relu_network(cnn, x40):
    """On nn.ReLU modules Captum's rule is the paper's (ours by default); channel sum, signed."""
    t = Targets([1, 2, 3])
    pack = run("captum.guided_backprop", cnn, x40, t, sign="all")
    attr = ca.GuidedBackprop(cnn.net).attribute(x40.clone(), target=[1, 2, 3]).detach()
    torch.testing.assert_close(pack, attr.sum(1))


def test_captum_guided_backprop_with_max_abs_equals_our_guided_backprop(cnn, x40):
    t = Targets([[1, 2], [4], [5]])
    torch.testing.assert_close(run("captum.guided_backprop", cnn, x40, t, channels="max_abs"),
                               run("guided_backprop", cnn, x40, t), rtol=1e-4, atol=1e-6)


def test_every_captum_method_gives_finite_maps_for_singles_and_sets(cnn, x40):
    fast = {"n_steps": 4, "nt_samples": 2, "n_samples": 6, "patch": 10, "window": 10, "stride": 10}
    for name in methods.names("captum.*"):
        m = methods.get(name)
        p = {k: v for k, v in fast.items() if k in m.defaults}
        for t in (Targets([1, 2, 3]), Targets([[1, 2], [3], [4, 5]])):
            maps, _ = m.with_params(**p).explain(cnn, x40, t)
            assert maps.ndim == 3 and maps.shape[0] == 3, name
            assert torch.isfinite(maps).all(), name
            assert maps.abs().sum() > 0, name


def test_the_harness_tensor_is_left_as_it_was(cnn, x40):
    x = x40.clone()
    run("captum.saliency", cnn, x, Targets([1, 2, 3]))
    assert not x.requires_grad and torch.equal(x, x40)
