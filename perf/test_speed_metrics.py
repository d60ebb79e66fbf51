"""Issue 23's benchmarks that run the method or the model, beside their reference programs on the same
model, method, inputs and maps, in the same rounds (``paired``), per sample:

* ``max_sensitivity`` against Captum's ``sensitivity_max`` (its ``default_perturb_func``, 10 draws,
  the same method as ``explanation_func``): target at least as fast (``speedup`` >= 1);
* ``infidelity`` against Captum's ``infidelity`` (its docstring's ``perturb_fn``, ``normalize=True``,
  the maps brought to the input's shape on its side as ours does inside): target >= 1;

each first checked equal to its reference on the same draws (Captum handed ours), then timed with
the reference drawing its own noise, as it runs by default;
* ``randomisation`` against Quantus's ``MPRT`` (``layer_order="top_down"``, seed 42, one batch):
  target >= 10x. Ours at its default (one step per block, 12 on EfficientNet-Lite0) computes the
  column, the similarity once the whole model is randomised, which equals MPRT's last layer (the
  same modules re-initialised after the same seed); MPRT re-runs the method once per module (99) and
  once on the original model. ``granularity="module"`` (MPRT's 99 steps, every step of its curve) is
  measured too, against the same MPRT call (``speedup``; no target: the same work).

EfficientNet-Lite0 with its embedded weights at its input size (224), a batch of ``BATCH`` random
inputs, gradient (and Grad-CAM for max-sensitivity), one thread (a loaded 2-core machine runs one
thread more steadily than two). ``extra_info``: ``speedup`` = reference median / ours, the target,
the load.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import paired

BATCH = 2
N = 10


@pytest.fixture(scope="module")
def lite0():
    import bench_common

    bench_common.load_builtins()
    from saliency_bench.registry import get_model

    torch.set_num_threads(1)
    model = get_model("efficientnet_lite0", device="cpu")
    x, t = bench_common.random_inputs(model, BATCH)  # channels-last, as the harness's batches
    return model, x, [[int(c)] for c in t[:, 0]]


class _Sample:
    def __init__(self, i: int) -> None:
        self.id = f"img{i}"


def _setup(lite0, method: str):
    from saliency_bench.contracts import ModelQuery
    from saliency_bench.registry import get_method
    from saliency_bench.runner import rerun

    model, x, t = lite0
    m = get_method(method)
    own = m.explain(model, x, torch.tensor(t))[0].detach().float().numpy()
    samples = [_Sample(i) for i in range(len(t))]
    return model, x, t, m, own, samples, lambda: ModelQuery(model, x, t, explainer=rerun(m))


@pytest.mark.parametrize("method", ["gradient", "grad_cam"])
def test_max_sensitivity_beside_captum_sensitivity_max(benchmark, lite0, method):
    metrics = pytest.importorskip("captum.metrics")
    from saliency_bench.benchmarks.road import sample_seed
    from saliency_bench.benchmarks.robustness import MaxSensitivity, uniform_noise

    model, x, t, m, own, samples, query = _setup(lite0, method)
    bench = MaxSensitivity(bootstrap=0)
    noise = torch.cat([uniform_noise(sample_seed(0, s.id), N, x.shape[1:], 0.02) for s in samples])

    def explanation_func(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():
            return (m.explain(model, inputs, torch.as_tensor(target).view(-1, 1))[0].detach().float(),)

    def reference(perturb_func=metrics._core.sensitivity.default_perturb_func):  # Captum's own draws, timed
        return metrics.sensitivity_max(explanation_func, x, perturb_func=perturb_func,
                                       n_perturb_samples=N, target=torch.tensor([c[0] for c in t]))

    ref = reference(lambda inp, r: (inp + noise,))  # our draws: the same values first
    recs = bench.score_batch(samples, own, model.input_size, query=query())
    np.testing.assert_allclose([r["value"] for r in recs], ref.numpy(), rtol=1e-5)
    info = paired(benchmark, lambda: bench.score_batch(samples, own, model.input_size, query=query()),
                  reference, rounds=5, target=1.0)
    info.update(batch=BATCH, n_perturb_samples=N, method=method, threads=torch.get_num_threads())


def test_infidelity_beside_captum_infidelity(benchmark, lite0):
    metrics = pytest.importorskip("captum.metrics")
    from saliency_bench.benchmarks.road import sample_seed
    from saliency_bench.benchmarks.robustness import Infidelity, normal_noise
    from saliency_bench.benchmarks.scalar import map_at_input
    from saliency_bench.contracts import ModelQuery

    model, x, t, _, own, samples, _ = _setup(lite0, "grad_cam")
    bench = Infidelity(bootstrap=0)
    noise = torch.cat([normal_noise(sample_seed(0, s.id), N, x.shape[1:], 0.003) for s in samples])
    target = torch.tensor([c[0] for c in t])

    def docstring_perturb_fn(inputs):  # Captum's docstring example, drawing its own noise (timed)
        noise = torch.tensor(np.random.normal(0, 0.003, inputs.shape)).float()
        return noise, inputs - noise

    def reference(perturb_fn=docstring_perturb_fn):
        # Captum needs the maps at the input's shape: brought there on its side too (ours does it inside)
        attr = torch.from_numpy(np.stack([map_at_input(o, model.input_size) for o in own]))
        attr = attr[:, None].expand(-1, 3, -1, -1).double().contiguous()
        return metrics.infidelity(lambda v: model.net(v).double(), perturb_fn, x,
                                  attr, target=target, n_perturb_samples=N, normalize=True)

    def ours():
        return bench.score_batch(samples, own, model.input_size, query=ModelQuery(model, x, t, batch_size=BATCH * N))

    replay = reference(lambda inp: (noise.double(), inp - noise))  # our draws: the same values first
    np.testing.assert_allclose([r["value"] for r in ours()], replay.numpy(), rtol=1e-6)
    info = paired(benchmark, ours, reference, rounds=5, target=1.0)
    info.update(batch=BATCH, n_perturb_samples=N, method="grad_cam", threads=torch.get_num_threads())


@pytest.mark.parametrize("granularity", ["block", "module"])
def test_randomisation_beside_quantus_mprt(benchmark, lite0, granularity):
    quantus = pytest.importorskip("quantus")
    from saliency_bench.benchmarks.randomisation import Randomisation
    from saliency_bench.benchmarks.scalar import map_at_input

    model, x, t, m, own, samples, query = _setup(lite0, "gradient")
    lite = model
    bench = Randomisation(granularity=granularity, bootstrap=0)
    y = np.array([c[0] for c in t])
    a = np.stack([map_at_input(o, model.input_size) for o in own])[:, None]
    xn = x.float().numpy()

    def explain(model, inputs, targets, **kw):  # Quantus's explain_func, called with these names
        import dataclasses

        mm = dataclasses.replace(lite, net=model)
        out, _ = m.explain(mm, torch.as_tensor(np.asarray(inputs)), torch.as_tensor(np.asarray(targets)).view(-1, 1))
        return np.stack([map_at_input(o, lite.input_size) for o in out.detach().cpu().numpy()])[:, None]

    def reference():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantus.MPRT(disable_warnings=True, layer_order="top_down", seed=42)(
                model=model.net, x_batch=xn, y_batch=y, a_batch=a.copy(), explain_func=explain,
                batch_size=BATCH, device="cpu")

    ref = reference()
    recs = bench.score_batch(samples, own, model.input_size, query=query())
    last = [k for k in ref if k != "original"][-1]
    np.testing.assert_allclose([r["value"] for r in recs], ref[last], atol=1e-6)  # the same column value
    info = paired(benchmark, lambda: bench.score_batch(samples, own, model.input_size, query=query()),
                  lambda: reference(), rounds=3, target=10.0 if granularity == "block" else None)
    info.update(batch=BATCH, granularity=granularity, ours_steps=len(recs[0]["steps"]),
                quantus_explain_calls=len(ref), method="gradient", threads=torch.get_num_threads())


def test_random_logit_beside_quantus_random_logit(benchmark, lite0):
    """Quantus ``RandomLogit(num_classes=1000, seed=42)`` on the batch, the method re-run for the
    off-target class on both sides; first checked equal one sample at a time (its off-target class
    and normalisation are per batch)."""
    quantus = pytest.importorskip("quantus")
    from saliency_bench.benchmarks.randomisation import RandomLogit
    from saliency_bench.benchmarks.scalar import map_at_input

    from saliency_bench.contracts import Sample

    model, x, t, m, own, _, query = _setup(lite0, "gradient")
    samples = [Sample(id=f"img{i}", image=None, size=model.input_size, targets={model.label_space: tuple(c)},
                      category="c") for i, c in enumerate(t)]
    bench = RandomLogit(bootstrap=0)
    y = np.array([c[0] for c in t])
    a = np.stack([map_at_input(o, model.input_size) for o in own])[:, None]
    xn = x.float().numpy()

    lite = model

    def explain(model, inputs, targets, **kw):  # Quantus's explain_func, called with these names
        out, _ = m.explain(lite, torch.as_tensor(np.asarray(inputs)), torch.as_tensor(np.asarray(targets)).view(-1, 1))
        return np.stack([map_at_input(o, lite.input_size) for o in out.detach().cpu().numpy()])[:, None]

    def reference(rows=slice(None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantus.RandomLogit(disable_warnings=True, num_classes=1000, seed=42)(
                model=model.net, x_batch=xn[rows], y_batch=y[rows], a_batch=a[rows].copy(), explain_func=explain,
                device="cpu")

    recs = bench.score_batch(samples, own, model.input_size, query=query())
    for i, r in enumerate(recs):
        assert r["value"] == pytest.approx(float(reference(slice(i, i + 1))[0]), abs=1e-5)
    info = paired(benchmark, lambda: bench.score_batch(samples, own, model.input_size, query=query()),
                  lambda: reference(), rounds=5, target=1.0)
    info.update(batch=BATCH, method="gradient", threads=torch.get_num_threads())
