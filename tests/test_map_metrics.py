"""Sparseness, complexity, relevance mass and relevance rank accuracy equal Quantus 0.6's
``Sparseness``, ``Complexity``, ``RelevanceMassAccuracy`` and ``RelevanceRankAccuracy`` on real maps
(gradient, Grad-CAM and pytorch-grad-cam's GradCAM on the embedded model) of real images: ImageNet
val with boxes (../shared/data) and the bundled COCO sample with masks.

Quantus is called one sample at a time (it normalises a batch by the batch's largest value; ours
normalises each map by its own, which is Quantus on a batch of one). Both take the same map at the
input size and the same ground truth there: the tolerance is float32 rounding, ``rtol=1e-6``
(the operations are Quantus's own numpy operations in the same dtype; they agree to the last bit
in practice)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from saliency_bench.benchmarks.complexity import Complexity, Sparseness, gini
from saliency_bench.benchmarks.relevance import RelevanceMass, RelevanceRank, ground_truth
from saliency_bench.benchmarks.scalar import map_at_input

from metrics_data import METHODS, inputs, load, maps

quantus = pytest.importorskip("quantus")


@pytest.fixture(scope="module")
def imagenet6(shared_data, lite0):
    from saliency_bench.datasets.imagenet import imagenet

    samples = load(imagenet(str(shared_data / "imagenet-val-300")), 6)
    return samples, *inputs(lite0, samples)


@pytest.fixture(scope="module")
def coco4(lite0):
    from saliency_bench.datasets.coco import sample

    samples = [s for s in load(sample(), 8) if s.mask is not None][:4]
    return samples, *inputs(lite0, samples)


def _quantus(metric, x, a, s=None):
    """The reference, one sample at a time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = []
        for i in range(len(a)):
            out += metric(disable_warnings=True)(model=None, x_batch=x[i:i + 1], y_batch=np.zeros(1, int),
                                                 a_batch=a[i:i + 1, None].copy(),
                                                 s_batch=None if s is None else s[i:i + 1, None])
    return np.asarray(out, dtype=np.float64)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("data", ["imagenet6", "coco4"])
def test_equal_to_quantus_on_real_maps(method, data, request, lite0):
    samples, x, t = request.getfixturevalue(data)
    out = maps(lite0, method, data, x, t)
    size = lite0.input_size
    a = np.stack([map_at_input(o, size) for o in out])
    s = np.stack([ground_truth(smp, size) for smp in samples])
    xn = x.float().cpu().numpy()
    for bench, ref, truth in ((Sparseness(), quantus.Sparseness, None), (Complexity(), quantus.Complexity, None),
                              (RelevanceMass(), quantus.RelevanceMassAccuracy, s),
                              (RelevanceRank(), quantus.RelevanceRankAccuracy, s)):
        ours = np.array([r["value"] for r in bench.score_batch(samples, out, size)], dtype=np.float64)
        expected = _quantus(ref, xn, a, truth)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7, err_msg=f"{bench.name} {method}")
        assert np.isfinite(ours).all()


def test_ground_truth_is_the_boxes_or_mask_nearest_to_the_input(imagenet6, coco4):
    (s, *_), (c, *_) = imagenet6[0], coco4[0]
    g = ground_truth(s, (224, 224), "boxes")
    x1, y1, x2, y2 = s.boxes[0]
    h, w = s.size
    # a pixel centre well inside the first box, and one well outside every box
    cy, cx = int((y1 + y2) / 2 * 224 / h), int((x1 + x2) / 2 * 224 / w)
    assert g[cy, cx]
    m = ground_truth(c, (224, 224), "mask")
    assert m.dtype == bool and 0 < m.sum() < 224 * 224
    assert ground_truth(s, (224, 224), "mask") is None


def test_hand_computed_values():
    # Gini of (0, 0, 0, 1) after +1e-7: ((2*4-4-1) * (1+1e-7) + ...) / (4 * sum) ~ 3/4
    assert gini(np.array([[0, 0, 0, 1]], np.float32))[0] == pytest.approx(0.75, abs=1e-6)
    assert gini(np.full((1, 9), 0.5, np.float32))[0] == pytest.approx(0.0, abs=1e-6)
    rec = Complexity().score(None, np.full((4, 4), 2.0, np.float32), (4, 4))
    assert rec["value"] == pytest.approx(np.log(16), rel=1e-6)  # uniform: log n
    from saliency_bench.contracts import Sample

    smp = Sample(id="a", image=None, size=(4, 4), targets={}, category="c",
                 boxes=np.array([[0, 0, 1, 1]], np.float32))  # the top-left 2x2
    m = np.zeros((4, 4), np.float32)
    m[0, 0], m[3, 3], m[3, 2], m[2, 3] = 4.0, 3.0, 2.0, 1.5
    assert RelevanceMass().score(smp, m, (4, 4))["value"] == pytest.approx(4 / 10.5)
    assert RelevanceRank().score(smp, m, (4, 4))["value"] == pytest.approx(0.25)  # top 4: one inside


def test_degenerate_maps_have_a_reason_not_a_nan():
    from saliency_bench.contracts import Sample

    smp = Sample(id="a", image=None, size=(4, 4), targets={}, category="c",
                 boxes=np.array([[0, 0, 1, 1]], np.float32))
    zero, const = np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)
    signed = np.array([[1, -1], [1, -1]], np.float32)
    for bench, m, why in ((Sparseness(), zero, "all-zero"), (Complexity(), zero, "all-zero"),
                          (RelevanceMass(), zero, "sums to 0"), (RelevanceMass(), signed, "sums to 0"),
                          (RelevanceRank(), const, "constant")):
        rec = bench.score(smp, m, (4, 4))
        assert rec["value"] is None and why in rec["reason"], (bench.name, rec)
    assert Sparseness().score(smp, const, (4, 4))["value"] == pytest.approx(0.0, abs=1e-6)
    tiny = Sample(id="b", image=None, size=(400, 400), targets={}, category="c",
                  boxes=np.array([[0, 0, 0, 0]], np.float32))  # one pixel: gone at 4x4
    assert "empty at the input size" in RelevanceMass().score(tiny, const, (4, 4))["reason"]
    summ = Sparseness(bootstrap=0).summarize([{"value": 0.5}, {"value": None, "reason": "all-zero map"}],
                                             [{"split": "eval"}, {"split": "eval"}])["sparseness"]
    assert summ["value"] == 0.5 and summ["n"] == 1 and "all-zero map (1)" in summ["note"]


def test_relevance_plays_on_boxes_and_masks_and_skips_what_has_neither():
    """Relevance mass and rank score the mask, else the union of the boxes: a box dataset
    (ImageNet, VOC) is planned, and a sample is skipped only when it has neither."""
    from types import SimpleNamespace

    from saliency_bench.contracts import Sample
    from saliency_bench.plan import benchmark_applies

    imagenet_like = SimpleNamespace(name="imagenet", provides=("boxes", "single_class"))
    keypoints_only = SimpleNamespace(name="parts", provides=("keypoints",))
    box = np.array([[2, 3, 10, 12]], np.float32)
    with_boxes = Sample("a", None, (20, 20), {}, "c", boxes=box)
    with_mask = Sample("b", None, (20, 20), {}, "c", mask=np.ones((20, 20), bool))
    neither = Sample("n", None, (20, 20), {}, "c")
    for bench in (RelevanceMass(), RelevanceRank()):
        assert benchmark_applies(bench, imagenet_like) is None
        assert "needs mask|boxes" in benchmark_applies(bench, keypoints_only)
        assert bench.applies_to(with_boxes) and bench.applies_to(with_mask)
        assert not bench.applies_to(neither)
