"""Issue 23's pure map metrics beside Quantus 0.6 on the same maps and ground truth, in the same
rounds (``paired``), per sample: ``sparseness`` (``Sparseness``), ``complexity`` (``Complexity``),
``relevance_mass`` (``RelevanceMassAccuracy``) and ``relevance_rank`` (``RelevanceRankAccuracy``).
Target: at least the reference's speed (``speedup`` >= 1).

Each is first checked equal to Quantus one sample at a time (its batch is normalised by the batch's
largest value; ours by each map's own, which is Quantus on a batch of one), then timed against
Quantus on the whole batch at once (its fastest use, so the ratio is the conservative one).
Maps: 16 seeded 224x224 maps (Gaussian-smoothed noise, and its gradient-like absolute Laplacian);
boxes: one seeded box each.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, laplace

from conftest import paired

N = 16
SIZE = 224


@pytest.fixture(scope="module")
def maps_and_boxes():
    from saliency_bench.contracts import Sample

    rng = np.random.default_rng(0)
    smooth = [gaussian_filter(rng.random((SIZE, SIZE)), 8) for _ in range(N // 2)]
    maps = np.stack(smooth + [np.abs(laplace(m)) for m in smooth]).astype(np.float32)
    samples = []
    for i in range(N):
        x0, y0 = rng.integers(0, SIZE // 2, 2)
        w, h = rng.integers(20, SIZE // 2, 2)
        samples.append(Sample(id=f"s{i}", image=None, size=(SIZE, SIZE), targets={}, category="c",
                              boxes=np.array([[x0, y0, x0 + w, y0 + h]], np.float32)))
    return maps, samples


def _quantus(metric, a, s=None):
    x = np.zeros((len(a), 3, SIZE, SIZE), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(disable_warnings=True)(model=None, x_batch=x, y_batch=np.zeros(len(a), int),
                                                        a_batch=a[:, None].copy(),
                                                        s_batch=None if s is None else s[:, None]), np.float64)


@pytest.mark.parametrize("name", ["sparseness", "complexity", "relevance_mass", "relevance_rank"])
def test_map_metric_beside_quantus(benchmark, maps_and_boxes, name):
    quantus = pytest.importorskip("quantus")
    from saliency_bench.benchmarks.complexity import Complexity, Sparseness
    from saliency_bench.benchmarks.relevance import RelevanceMass, RelevanceRank, ground_truth

    bench, metric = {"sparseness": (Sparseness, quantus.Sparseness), "complexity": (Complexity, quantus.Complexity),
                     "relevance_mass": (RelevanceMass, quantus.RelevanceMassAccuracy),
                     "relevance_rank": (RelevanceRank, quantus.RelevanceRankAccuracy)}[name]
    bench = bench(bootstrap=0)
    maps, samples = maps_and_boxes
    truth = np.stack([ground_truth(s, (SIZE, SIZE)) for s in samples]) if name.startswith("relevance") else None
    ours = np.array([r["value"] for r in bench.score_batch(samples, maps, (SIZE, SIZE))], np.float64)
    one_by_one = np.concatenate([_quantus(metric, maps[i:i + 1], None if truth is None else truth[i:i + 1])
                                 for i in range(N)])
    np.testing.assert_allclose(ours, one_by_one, rtol=1e-6, atol=1e-7)
    info = paired(benchmark, lambda: bench.score_batch(samples, maps, (SIZE, SIZE)),
                  lambda: _quantus(metric, maps, truth), rounds=5, target=1.0)
    info.update(maps=N, size=SIZE, reference="quantus, the whole batch in one call")
