"""Model-parameter randomisation equals Quantus 0.6's ``MPRT`` (cascading ``top_down``, seed 42,
``correlation_spearman`` of absolute maps) on real ImageNet val images with the embedded model, for
gradient, Grad-CAM and pytorch-grad-cam's GradCAM: the same modules in the same order re-initialised
with the same seed, the method re-run on the copy, the same similarity per step. Quantus's cascade is
cut after the first ``K`` steps (its generator wrapped in ``islice``; it has no such option) to keep the
test short on a CPU. Tolerance 1e-6: both compute SciPy's ``spearmanr`` on the same float32 maps; only
the batch the method runs in may differ in the last bits."""
from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pytest
import torch

from saliency_bench.benchmarks.randomisation import Randomisation, abs_ranks, randomisation_steps, randomise, ssim
from saliency_bench.benchmarks.scalar import map_at_input
from saliency_bench.contracts import ModelQuery
from saliency_bench.registry import get_method
from saliency_bench.runner import rerun

from metrics_data import METHODS, imagenet_val, maps

quantus = pytest.importorskip("quantus")
K = 5


@pytest.fixture(scope="module")
def imagenet2(shared_data, lite0):
    return imagenet_val(shared_data, lite0, 2)


def test_steps_run_from_the_logits_down(lite0):
    mods = randomisation_steps(lite0.net, "module")
    assert [n for n, _ in mods[:3]] == ["classifier", "bn2", "conv_head"] and len(mods) == 99
    blocks = randomisation_steps(lite0.net, "block")
    assert [n for n, _ in blocks][:4] == ["classifier", "bn2", "conv_head", "blocks.6"] and len(blocks) == 12


@pytest.mark.parametrize("method", METHODS)
def test_equal_to_quantus_mprt_on_real_maps(method, imagenet2, lite0, monkeypatch):
    samples, x, t = imagenet2
    own = maps(lite0, method, "mprt", x, t)
    m = get_method(method)
    before = {k: v.clone() for k, v in lite0.net.state_dict().items()}
    bench = Randomisation(granularity="module", steps=K, bootstrap=0)
    recs = bench.score_batch(samples, own, lite0.input_size, query=ModelQuery(lite0, x, t, explainer=rerun(m)))
    assert all(torch.equal(before[k], v) for k, v in lite0.net.state_dict().items())  # the run's model untouched

    def explain(model, inputs, targets, **kw):
        mm = dataclasses.replace(lite0, net=model)
        xx = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        out, _ = m.explain(mm, xx, torch.as_tensor(np.asarray(targets)).view(-1, 1))
        return np.stack([map_at_input(o, lite0.input_size) for o in out.detach().cpu().numpy()])[:, None]

    from quantus.helpers.model.pytorch_model import PyTorchModel

    gen = PyTorchModel.get_random_layer_generator
    monkeypatch.setattr(PyTorchModel, "get_random_layer_generator",
                        lambda self, order="top_down", seed=42: itertools.islice(gen(self, order, seed), K))
    a = np.stack([map_at_input(o, lite0.input_size) for o in own])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus.MPRT(disable_warnings=True, layer_order="top_down", seed=42)(
            model=lite0.net, x_batch=x.float().cpu().numpy(), y_batch=np.array([c[0] for c in t]),
            a_batch=a, explain_func=explain, batch_size=len(samples), device="cpu")
    layers = [k for k in scores if k != "original"]
    assert layers == recs[0]["steps"] == [n for n, _ in randomisation_steps(lite0.net, "module")[:K]]
    for i, r in enumerate(recs):
        np.testing.assert_allclose(r["spearman"], [scores[k][i] for k in layers], rtol=1e-6, atol=1e-6)
        assert r["value"] == pytest.approx(scores[layers[-1]][i], abs=1e-6)


def test_ssim_is_skimage_on_max_normalised_absolute_maps():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32)) * 5, -rng.random((32, 32))
    na, nb = a / a.max(), np.abs(b / np.abs(b).max())
    both = np.concatenate([na.ravel(), nb.ravel()])
    assert ssim(a, b) == pytest.approx(structural_similarity(na, nb, data_range=both.max() - both.min()))
    assert ssim(a, a) == pytest.approx(1.0)


def test_ranks_are_scipys_rankdata_of_the_absolute_map_ties_and_nan_included():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    g = rng.standard_normal((64, 48)).astype(np.float32)
    cases = {"distinct": g, "rounded (ties)": np.round(g, 1), "relu (a tie of zeros)": np.maximum(g, 0),
             "+-x (ties by sign)": np.concatenate([g, -g]), "constant": np.full((8, 8), 3.0, np.float32),
             "one value": np.ones((1, 1), np.float32), "float64": g.astype(np.float64) ** 3,
             "a NaN": np.where(g > 2, np.nan, g)}
    for name, a in cases.items():
        got, want = abs_ranks(a), rankdata(np.abs(a).reshape(-1))
        assert got.dtype == want.dtype == np.float64 and np.array_equal(got, want, equal_nan=True), name


def test_re_initialisation_draws_what_torch_manual_seed_gives_and_leaves_the_random_state():
    def layers():
        torch.manual_seed(7)
        return [torch.nn.Linear(5, 3), torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4)]

    ours, ref = layers(), layers()
    for m in ref:  # Quantus's loop: torch.manual_seed(seed + 1), then reset_parameters()
        torch.manual_seed(43)
        m.reset_parameters()
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    randomise(ours, 42)
    assert torch.equal(torch.random.get_rng_state(), before)
    for a, b in zip(ours, ref):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("method", METHODS)
def test_random_logit_equals_quantus_on_real_maps(method, imagenet2, lite0):
    """Quantus ``RandomLogit(num_classes=1000, seed=42)`` one sample at a time (its off-target class and
    its normalisation are per batch); tolerance 1e-5: the same SSIM of the same float32 maps."""
    from saliency_bench.benchmarks.randomisation import RandomLogit, off_target_class

    samples, x, t = imagenet2
    own = maps(lite0, method, "mprt", x, t)
    m = get_method(method)
    recs = RandomLogit(bootstrap=0).score_batch(samples, own, lite0.input_size,
                                                query=ModelQuery(lite0, x, t, explainer=rerun(m)))

    def explain(model, inputs, targets, **kw):
        xx = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        out, _ = m.explain(lite0, xx, torch.as_tensor(np.asarray(targets)).view(-1, 1))
        return np.stack([map_at_input(o, lite0.input_size) for o in out.detach().cpu().numpy()])[:, None]

    for i, r in enumerate(recs):
        assert r["off_class"] == off_target_class(t[i][0], 1000, 42) != t[i][0]
        a = map_at_input(own[i], lite0.input_size)[None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = quantus.RandomLogit(disable_warnings=True, num_classes=1000, seed=42)(
                model=lite0.net, x_batch=x[i:i + 1].float().cpu().numpy(), y_batch=np.array([t[i][0]]),
                a_batch=a.copy(), explain_func=explain, device="cpu")
        assert r["value"] == pytest.approx(float(ref[0]), abs=1e-5), (method, i)
