"""The harness around the methods: the scoring workers' throughput on the localization
benchmark, two workers beside one in the same rounds (target >= 1.7x on a machine with two free
cores), each scoring the same 256 smooth maps whose originals are 500x375, in 16 batches of 16 (a
run's default batch size: the pool gets one job per batch). Fewer maps measure the pool's dispatch
more than its throughput, and so do smaller jobs: the main process's work per job (the maps copied
into shared memory, the samples pickled, the records back) is about 1 ms whatever its size, taken
from the cores the workers need."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import paired

BATCHES, PER_BATCH = 16, 16


@pytest.fixture(scope="module")
def jobs():
    import bench_scoring

    from saliency_bench.benchmarks.localization import Localization

    bench = Localization(bootstrap=0)
    maps, samples = bench_scoring.synthetic(BATCHES * PER_BATCH)
    return bench, [(bench, samples[i:i + PER_BATCH], list(maps[i:i + PER_BATCH]), None)
                   for i in range(0, len(maps), PER_BATCH)]


def _score_all(scorer, jobs) -> None:
    done = []
    for job in jobs:
        scorer.submit([job], (224, 224), done.append)
    while scorer._pending:
        scorer.flush(block=True)
    assert len(done) == len(jobs)


def test_two_scoring_workers_beside_one(benchmark, jobs):
    from saliency_bench.scoring import Scorer, cores

    bench, js = jobs
    with Scorer([bench], workers=1) as one, Scorer([bench], workers=2) as two:
        info = paired(benchmark, lambda: _score_all(two, js), lambda: _score_all(one, js), rounds=5,
                      key="speedup_2_workers_vs_1", target=1.7)
    info["cores"] = cores()
    if "speedup_2_workers_vs_1" in info:
        info["maps_per_s_2_workers"] = BATCHES * PER_BATCH / benchmark.stats.stats.median
        info["maps_per_s_1_worker"] = BATCHES * PER_BATCH / info["reference_median_s"]
