"""Speed of issue 23's benchmarks beside their reference programs, on the same maps (pytest-benchmark).

    python -m pytest perf/bench_metrics.py --benchmark-enable --benchmark-timer time.process_time \
        --benchmark-group-by group

Groups (compare ``ours`` with ``reference`` in each, per image):

* ``road-imputation``: the 18 noisy linear imputations ROADCombined makes for one image (MoRF and
  LeRF at percentiles 10..90) of a 224x224 input, ours batched (multigrid-preconditioned CG, all
  percentiles at once) against pytorch-grad-cam's ``NoisyLinearImputer`` (one ``spsolve`` each);
  ``BATCH`` images at once for ours, per image in the report.
* ``sparseness``: Quantus ``Sparseness`` against ours on the same maps.

Maps: smooth synthetic maps (Gaussian-blurred noise: contiguous removed regions, the hard case for an
iterative solver), seeded. CPU threads: 2 (set ``torch.set_num_threads``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from saliency_bench.benchmarks.complexity import Sparseness
from saliency_bench.benchmarks.imputation import linear_impute
from saliency_bench.benchmarks.road import PERCENTILES, keep_masks

BATCH = 2
SIZE = 224


def _maps(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([gaussian_filter(rng.random((SIZE, SIZE)), 12).astype(np.float32) for _ in range(n)])


def _jobs(maps):
    masks = []
    for m in maps:
        km = keep_masks(m, PERCENTILES)
        masks += km["lerf"] + km["morf"]
    return torch.from_numpy(np.stack(masks))


@pytest.mark.benchmark(group="road-imputation")
def test_road_imputation_ours(benchmark):
    torch.set_num_threads(2)
    maps = _maps(BATCH)
    keep = _jobs(maps)
    img = torch.randn(BATCH, 3, SIZE, SIZE).repeat_interleave(len(PERCENTILES) * 2, dim=0)
    benchmark.extra_info["images"] = BATCH
    out, iters = benchmark.pedantic(lambda: linear_impute(img, keep), rounds=1, iterations=1)
    benchmark.extra_info["max_iterations"] = int(iters.max())


@pytest.mark.benchmark(group="road-imputation")
def test_road_imputation_reference(benchmark):
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    maps = _maps(1)
    keep = _jobs(maps)
    img = torch.randn(3, SIZE, SIZE)
    imputer = road.NoisyLinearImputer()
    benchmark.extra_info["images"] = 1

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [imputer(img, k.float()) for k in keep]

    benchmark.pedantic(run, rounds=1, iterations=1)


@pytest.mark.benchmark(group="sparseness")
def test_sparseness_ours(benchmark):
    maps = _maps(16)
    benchmark(lambda: Sparseness().score_batch([None] * len(maps), maps, (SIZE, SIZE)))


@pytest.mark.benchmark(group="sparseness")
def test_sparseness_reference(benchmark):
    quantus = pytest.importorskip("quantus")
    maps = _maps(16)
    x = np.zeros((1, 3, SIZE, SIZE), np.float32)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [quantus.Sparseness(disable_warnings=True)(model=None, x_batch=x, y_batch=np.zeros(1, int),
                                                              a_batch=m[None, None].copy()) for m in maps]

    benchmark(run)
