"""The pointing game on hand-made maps with known answers (docs/PROTOCOLS.md §2)."""
from __future__ import annotations

import numpy as np
import pytest

from saliency_bench.benchmarks.pointing import (Pointing, category_mean_accuracy, heatmap_points,
                                                input_point_to_original, is_hit, region_to_size)
from saliency_bench.contracts import Sample


def _region_at(x: int, y: int, size=(100, 100)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y, x] = True
    return m


def test_pointing_hit_is_strictly_within_15px():
    region = _region_at(50, 50)
    assert is_hit((50 + 14.9, 50), region)
    assert not is_hit((50 + 15.0, 50), region)
    assert not is_hit((50 + 9.0, 50 + 12.0), region)  # d = 15 exactly, diagonal
    assert is_hit((50 + 9.0, 50 + 11.9), region)


def test_pointing_ties_take_the_mean_location_or_the_first():
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 2, 1] = m[0, 2, 7] = m[0, 6, 1] = 5.0
    np.testing.assert_allclose(heatmap_points(m, (10, 10), "mean")[0], [3.0, 10 / 3])
    np.testing.assert_allclose(heatmap_points(m, (10, 10), "first")[0], [1.0, 2.0])


def test_pointing_resizes_the_map_to_the_original_before_the_argmax():
    m = np.zeros((1, 4, 4), np.float32)
    m[0, 1, 2] = 1.0  # bilinear upsampling x3: the peak lands on that input pixel's centre
    np.testing.assert_allclose(heatmap_points(m, (12, 12), "mean")[0], [7.0, 4.0])


def test_pointing_point_methods_map_pixel_centres_to_the_original():
    np.testing.assert_allclose(input_point_to_original(np.array([0.0, 223.0]), (224, 224), (448, 224)),
                               [[0.0, 446.5]])


def test_pointing_mean_over_categories_ignores_empty_categories():
    value, n = category_mean_accuracy(np.array([1, 0, 1, 1]), ["a", "a", "b", "b"])
    assert n == 2 and value == pytest.approx((0.5 + 1.0) / 2)


def _sample(i, category, box, difficult=False):
    return Sample(id=str(i), image=None, size=(60, 80), targets={}, category=category,
                  boxes=np.array([box], np.float32), flags={"difficult": difficult})


def test_pointing_benchmark_scores_heatmaps_and_points_and_summarizes_per_category():
    bench = Pointing(bootstrap=200, seed=0)
    samples = [_sample(0, "cat", [0, 0, 9, 9]), _sample(1, "cat", [60, 40, 79, 59], True),
               _sample(2, "dog", [0, 0, 79, 59], True)]
    maps = np.zeros((3, 6, 8), np.float32)
    maps[0, 0, 0] = 1  # top-left: hit on the top-left box
    maps[1, 0, 0] = 1  # top-left: miss on the bottom-right box (far more than 15 px)
    recs = bench.score_batch(samples[:2], maps[:2], (6, 8))
    recs.append(bench.score(samples[2], np.array([4.0, 3.0]), (6, 8)))  # a point method
    assert [r["hit"] for r in recs] == [1, 0, 1]
    meta = [{"id": s.id, "category": s.category, "split": s.split, "flags": s.flags} for s in samples]
    summary = bench.summarize(recs, meta)
    assert summary["pointing_all"]["value"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert summary["pointing_difficult"]["value"] == pytest.approx(100 * (0.0 + 1.0) / 2)
    assert summary["pointing_all"]["n"] == 3 and "2 categories" in summary["pointing_all"]["note"]
    lo, hi = summary["pointing_all"]["ci"]
    assert 0 <= lo <= summary["pointing_all"]["value"] <= hi <= 100


def test_pointing_bootstrap_is_seeded():
    bench = Pointing(bootstrap=100, seed=3)
    recs = [{"hit": h} for h in [1, 0, 1, 1, 0, 1]]
    meta = [{"id": str(i), "category": "ab"[i % 2], "split": "eval", "flags": {}} for i in range(6)]
    assert bench.summarize(recs, meta)["pointing_all"]["ci"] == bench.summarize(recs, meta)["pointing_all"]["ci"]


# ------------------------------------------------------------------ resolution (docs/PROTOCOLS.md §2)
def _two_peaks() -> np.ndarray:
    """A 7x7 map (Grad-CAM's size) with two nearly equal peaks: which one wins depends on where
    the bilinear grid lands, so resizing 7 -> 480x640 and 7 -> 224 -> 480x640 disagree."""
    m = np.zeros((7, 7), np.float32)
    m[2, 1] = 1.0
    m[4, 4] = 0.998
    return m


def _cv2_resize(m: np.ndarray, size) -> np.ndarray:
    import cv2  # OpenCV's INTER_LINEAR: the same half-pixel bilinear geometry as TorchRay's resize

    return cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _cv2_argmax(m: np.ndarray, size) -> tuple[int, int]:
    i = int(np.argmax(_cv2_resize(m, size)))
    return i % size[1], i // size[1]


def test_pointing_original_resizes_the_native_map_straight_to_the_original():
    m, size = _two_peaks(), (480, 640)
    straight = _cv2_argmax(m, size)
    via_input = _cv2_argmax(_cv2_resize(m, (224, 224)), size)
    assert straight[0] > 320 and via_input[0] < 320  # the two orders point at different peaks
    np.testing.assert_allclose(heatmap_points(m[None], size, "first")[0], straight)
    # A box around the straight-resize peak: a hit only if the map went 7x7 -> original directly.
    sample = Sample(id="0", image=None, size=size, targets={}, category="c",
                    boxes=np.array([[straight[0] - 3, straight[1] - 3, straight[0] + 3, straight[1] + 3]], np.float32))
    assert Pointing(tie="first").score(sample, m, (224, 224))["hit"] == 1
    far = Sample(id="1", image=None, size=size, targets={}, category="c",
                 boxes=np.array([[via_input[0] - 3, via_input[1] - 3, via_input[0] + 3, via_input[1] + 3]], np.float32))
    assert Pointing(tie="first").score(far, m, (224, 224))["hit"] == 0


def test_pointing_input_resizes_the_native_map_to_the_input_size():
    m = _two_peaks()
    rec = Pointing(resolution="input", tie="first").score(
        Sample(id="0", image=None, size=(480, 640), targets={}, category="c",
               boxes=np.zeros((0, 4), np.float32), mask=np.zeros((480, 640), bool)), m, (224, 224))
    assert (rec["x"], rec["y"]) == _cv2_argmax(m, (224, 224))


def _wide_sample(mask_column: int = 199) -> Sample:
    """A 100x400 image whose ground truth is one full-height column: 400/224 = 1.79 original
    pixels per input pixel horizontally."""
    mask = np.zeros((100, 400), bool)
    mask[:, mask_column] = True
    return Sample(id="w", image=None, size=(100, 400), targets={}, category="c", mask=mask)


def test_pointing_input_and_original_resolution_give_different_hits():
    # Peak at input pixel x = 100: in the original it lands at x = 100.5 * 400/224 - 0.5 = 178.96,
    # i.e. pixel 179, 20 px left of the column (a miss); the column is input column 111
    # (floor((111 + 1/2) * 400/224) = 199), 11 input px right of the peak (a hit).
    m = np.zeros((224, 224), np.float32)
    m[:, 100] = 1.0
    m[112, 100] = 2.0
    sample = _wide_sample()
    orig = Pointing().score(sample, m, (224, 224))
    inp = Pointing(resolution="input").score(sample, m, (224, 224))
    assert (orig["hit"], round(orig["x"])) == (0, 179)
    assert (inp["hit"], inp["x"], inp["y"]) == (1, 100.0, 112.0)
    # A point method at the same input pixel: the same two answers.
    assert Pointing().score(sample, np.array([100.0, 112.0]), (224, 224))["hit"] == 0
    assert Pointing(resolution="input").score(sample, np.array([100.0, 112.0]), (224, 224))["hit"] == 1


def test_pointing_input_ground_truth_is_nearest_at_pixel_centres():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for h, w in [(480, 640), (427, 640), (375, 500), (100, 400), (224, 224), (150, 90), (1000, 37)]:
        region = rng.random((h, w)) < 0.3
        ref = F.interpolate(torch.from_numpy(region.astype(np.float32))[None, None], size=(224, 224),
                            mode="nearest-exact")[0, 0].numpy() > 0
        np.testing.assert_array_equal(region_to_size(region, (224, 224)), ref)


def test_pointing_input_ground_truth_differs_from_pil_only_on_exact_pixel_edges():
    from PIL import Image

    # 640 -> 224: the centre of input column 17 is original x = 17.5 * 640/224 = 50 exactly, the
    # edge between pixels 49 and 50; we take 50 (floor), PIL's fixed-point arithmetic takes 49.
    region = np.zeros((224, 640), bool)
    region[:, 50] = True
    ours = region_to_size(region, (224, 224))
    pil = np.asarray(Image.fromarray(region.astype(np.uint8) * 255).resize((224, 224), Image.NEAREST)) > 0
    assert np.flatnonzero(ours.any(axis=0)).tolist() == [17] and not pil.any()
    rng = np.random.default_rng(1)
    for h, w in [(375, 500), (100, 400), (150, 90), (1000, 37)]:  # no centre on an edge: identical
        region = rng.random((h, w)) < 0.3
        pil = np.asarray(Image.fromarray(region.astype(np.uint8) * 255).resize((224, 224), Image.NEAREST)) > 0
        np.testing.assert_array_equal(region_to_size(region, (224, 224)), pil)


def test_pointing_input_boxes_keep_the_input_pixels_whose_centre_is_inside_the_scaled_box():
    # Box x 100..199 (inclusive) of a 400-wide image spans [100, 200) original, [56, 112) at
    # 224: input columns 56..111 have their centre inside.
    s = Sample(id="b", image=None, size=(100, 400), targets={}, category="c",
               boxes=np.array([[100, 0, 199, 99]], np.float32))
    cols = np.flatnonzero(Pointing(resolution="input").region(s, (224, 224)).any(axis=0))
    assert (cols.min(), cols.max()) == (56, 111)


def test_pointing_options_defaults_and_protocol():
    assert Pointing.defaults == {"resolution": "original", "tolerance": 15.0, "tie": "mean",
                                 "bootstrap": 1000, "seed": 0}
    p = Pointing().protocol()
    assert set(p) == set(Pointing.columns)
    assert "original image" in p["pointing_all"] and "mean of ties" in p["pointing_all"]
    q = Pointing(resolution="input", tie="first", tolerance=10).protocol()["pointing_difficult"]
    assert "network input" in q and "first" in q and "10 px" in q
    for bad in ({"resolution": "224"}, {"tie": "last"}, {"tolerance": 0}):
        with pytest.raises(ValueError):
            Pointing(**bad)
