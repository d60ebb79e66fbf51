"""The pointing game on hand-made maps with known answers (PROTOCOLS.md §2)."""
from __future__ import annotations

import numpy as np
import pytest

from saliency_bench.benchmarks.pointing import (Pointing, category_mean_accuracy, heatmap_points,
                                                input_point_to_original, is_hit)
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
