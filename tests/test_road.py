"""ROAD equals pytorch-grad-cam's ``ROADMostRelevantFirstAverage``, ``ROADLeastRelevantFirstAverage``
and ``ROADCombined`` on real maps (gradient, Grad-CAM, pytorch-grad-cam's GradCAM) of real ImageNet
val images with the embedded model; both imputation routes (the CPU's compiled multigrid, the
device's batched CG, run here on the CPU) equal the reference's ``spsolve``.

Tolerances. The reference solves each imputation exactly (SuperLU, float64); ours iterates to a
relative residual of 1e-5 in float32: the filled pixels agree to 1e-3 in normalised input units
(measured: 1e-4 to 6e-4), a tenth of the noise (sigma 0.01) that ROAD adds to them on purpose. With
the same seeded noise (drawn as the reference draws it: ``randn(C, removed)``, see road.py), the
combined score and each order's mean (MoRF, LeRF) agree to 2e-4 (measured: at most 3e-5 at single
percentiles on gradient and Grad-CAM maps; the model's response to a 1e-4 change of the filled values).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saliency_bench.benchmarks.imputation import linear_impute
from saliency_bench.benchmarks.imputation_cpu import impute_chains
from saliency_bench.benchmarks.road import Road, keep_masks, sample_seed
from saliency_bench.benchmarks.scalar import map_at_input
from saliency_bench.contracts import ModelQuery, Sample

from metrics_data import METHODS, inputs, load, maps

road_ref = pytest.importorskip("pytorch_grad_cam.metrics.road")
PCTS = (20, 50, 80)


@pytest.fixture(scope="module")
def imagenet2(shared_data, lite0):
    from saliency_bench.datasets.imagenet import imagenet

    samples = load(imagenet(str(shared_data / "imagenet-val-300")), 2)
    return samples, *inputs(lite0, samples)


def test_imputation_equals_spsolve_on_real_maps(imagenet2, lite0):
    samples, x, t = imagenet2
    cam = map_at_input(maps(lite0, "gradient", "road", x, t)[0], lite0.input_size)
    img = x[0].float().contiguous()
    masks = keep_masks(cam, (10, 50, 90))["morf"] + keep_masks(cam, (50,))["lerf"]
    ours, iters = linear_impute(img[None].repeat(len(masks), 1, 1, 1), torch.from_numpy(np.stack(masks)))
    # the CPU route: one chain (the largest removed set first, each from the previous solution)
    cpu, cycles = impute_chains(img[None].numpy(), [np.stack(masks)])
    imputer = road_ref.NoisyLinearImputer(noise=0.0)
    imputer.noise = 0.0
    for k, m in enumerate(masks):
        ref = imputer(img, torch.from_numpy(np.float32(m)))
        for filled in (ours[k], torch.from_numpy(cpu[0][k])):
            assert float((filled - ref).abs().max()) < 1e-3, k
            assert torch.equal(filled[:, torch.from_numpy(m)], img[:, torch.from_numpy(m)])  # kept pixels untouched
    assert int(iters.max()) < 200  # multigrid-preconditioned CG (plain CG: several hundred on these masks)
    assert int(cycles[0].max()) < 20  # V-cycles (measured 6-10)


def _reference(model, x, cam, target, seed, cls):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(seed)
    return float(cls(percentiles=list(PCTS))(x[None], cam[None], [ClassifierOutputSoftmaxTarget(target)],
                                             model.net)[0])


@pytest.mark.parametrize("method", METHODS)
def test_road_equals_pytorch_grad_cam_on_real_maps(method, imagenet2, lite0):
    samples, x, t = imagenet2
    out = maps(lite0, method, "road", x, t)
    bench = Road(percentiles=PCTS, bootstrap=0)
    recs = bench.score_batch(samples, out, lite0.input_size, query=ModelQuery(lite0, x, t))
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    for i, (s, rec) in enumerate(zip(samples, recs)):
        cam = map_at_input(out[i], lite0.input_size)
        seed = sample_seed(0, s.id)
        with np.errstate(all="ignore"), _quiet():
            comb = _reference(lite0, x[i], cam, t[i][0], seed, road_ref.ROADCombined)
            # the reference draws LeRF's noise first, so MoRF alone is drawn after LeRF's draws
            torch.manual_seed(seed)
            lerf = float(road_ref.ROADLeastRelevantFirstAverage(list(PCTS))(
                x[i][None], cam[None], [ClassifierOutputSoftmaxTarget(t[i][0])], lite0.net)[0])
            morf = float(road_ref.ROADMostRelevantFirstAverage(list(PCTS))(
                x[i][None], cam[None], [ClassifierOutputSoftmaxTarget(t[i][0])], lite0.net)[0])
        if rec["value"] is None:  # every pixel removed at some percentile: the reference's solve is singular
            assert "every pixel removed" in rec["reason"] and not np.isfinite(comb), (method, rec)
            continue
        assert rec["value"] == pytest.approx(comb, abs=2e-4), (method, i)
        assert rec["lerf"] == pytest.approx(lerf, abs=2e-4) and rec["morf"] == pytest.approx(morf, abs=2e-4)
        assert len(rec["morf_curve"]) == len(PCTS)


def test_road_device_route_equals_cpu_route(imagenet2, lite0):
    """The batched CG (the route on a GPU; ``solver="cg"``) gives the CPU route's scores."""
    samples, x, t = imagenet2
    out = maps(lite0, "grad_cam", "road", x, t)
    recs = {solver: Road(percentiles=PCTS, bootstrap=0, solver=solver).score_batch(
        samples, out, lite0.input_size, query=ModelQuery(lite0, x, t)) for solver in ("auto", "cg")}
    for a, b in zip(recs["auto"], recs["cg"]):
        assert a["value"] is not None
        for key in ("value", "morf", "lerf"):
            assert a[key] == pytest.approx(b[key], abs=2e-4), key
        assert np.allclose(a["morf_curve"], b["morf_curve"], atol=2e-4)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        return self._w.__exit__(*a)


def test_road_degenerate_maps_and_non_finite_scores(lite0):
    x = torch.zeros(2, 3, 16, 16)
    samples = [Sample(id=str(i), image=None, size=(16, 16), targets={}, category="c") for i in range(2)]

    class Net(torch.nn.Module):
        def forward(self, x):  # row 1's logits are non-finite
            out = torch.zeros(x.shape[0], 3)
            out[:, 0] = x.mean(dim=(1, 2, 3))
            out[x[:, 0, 0, 0] > 1e9] = float("nan")
            return out

    from saliency_bench.contracts import ClassInfo, Model

    model = Model("m", Net(), (16, 16), (0, 0, 0), (1, 1, 1), [ClassInfo(i, str(i), str(i)) for i in range(3)])
    x[1] = 1e10  # non-finite logits everywhere for this row
    ramp = np.arange(256, dtype=np.float32).reshape(16, 16)
    recs = Road(percentiles=(50,)).score_batch(samples, [np.ones((16, 16), np.float32), ramp], (16, 16),
                                               query=ModelQuery(model, x, [[0], [0]]))
    assert recs[0]["value"] is None and "every pixel removed" in recs[0]["reason"]
    assert recs[1]["value"] is None and "non-finite" in recs[1]["reason"]
    summ = Road(bootstrap=0).summarize(recs, [{"split": "eval"}] * 2)
    assert summ["road_combined"]["value"] is None and summ["road_combined"]["n"] == 0


def test_cpu_imputation_never_sees_the_removed_pixels():
    """The filled values depend only on the kept pixels: two images that differ only where pixels are
    removed get the same fill (no start from the image's own values), also along a chain that is not
    nested (no warm start from a solution that saw pixels removed now)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 3, 40, 40)).astype(np.float32)
    m = rng.random((40, 40))
    chain = np.stack([m < 0.3, m < 0.7, m >= 0.5])  # nested, nested, then not
    (fa,), _ = impute_chains(a, [chain])
    for k, keep in enumerate(chain):
        b = a.copy()
        b[0][:, ~keep] += 5.0  # changed where mask k removes the pixel
        (fb,), _ = impute_chains(b, [chain])
        assert np.array_equal(fa[k], fb[k]), k
