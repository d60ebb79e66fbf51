"""The CPU speed suite under pytest-benchmark: ``pytest perf/ --benchmark-enable``.

Each test times our code with the ``benchmark`` fixture and, where there is one, the reference
it is judged against (a peer library, the plain procedure, the model's own passes) in the same
rounds, interleaved: the reference runs in the round's setup, timed here, our code in the round,
timed by pytest-benchmark. The ratio of the two medians goes to ``extra_info`` (a shared or
loaded machine slows both alike), with the target it is judged against. Without
``--benchmark-enable`` (the project's default ``--benchmark-disable``) every test runs its code
once, as a smoke test, and records no ratio. See perf/README.md.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(HERE))  # bench_common, bench_scoring: the scripts' helpers


def enabled(benchmark) -> bool:
    return bool(getattr(benchmark, "enabled", False))


def paired(benchmark, ours: Callable[[], Any], reference: Callable[[], Any] | None = None, *, rounds: int = 5,
           per_round: float = 1.0, key: str = "speedup", target: float | None = None,
           clock: Callable[[], float] = time.perf_counter) -> dict:
    """Time ``ours`` with ``benchmark`` and ``reference`` in the setup of each same round;
    ``extra_info[key]`` = median(reference) / median(ours) (how many times faster ours is),
    scaled by ``per_round`` (work of one reference call over one of ours, when they differ), and
    ``ours_cpu_median_s``: the median process time of our rounds (the CPU time they took, which the
    machine's other load does not stretch as it does the wall time). Returns ``extra_info``."""
    ref_times: list[float] = []
    cpu_times: list[float] = []

    def timed():
        t = time.process_time()
        out = ours()
        cpu_times.append(time.process_time() - t)
        return out

    def setup():
        if reference is not None:
            t = clock()
            reference()
            ref_times.append(clock() - t)

    if enabled(benchmark):
        ours()  # warm-up: compiled kernels, caches, lazy imports
    if reference is not None:
        reference()
    benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    info = benchmark.extra_info
    info["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["cpu_count"] = os.cpu_count()
    if enabled(benchmark) and benchmark.stats is not None and ref_times:
        ours_s = benchmark.stats.stats.median
        ref_s = statistics.median(ref_times)
        info["reference_median_s"] = ref_s
        info["ours_cpu_median_s"] = statistics.median(cpu_times)
        info[key] = ref_s / ours_s * per_round
        if target is not None:
            info["target"] = target
            info["meets_target"] = info[key] >= target
    return info




def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


needs_data = pytest.mark.skipif(not (DATA / "imagenet-val-300").is_dir(),
                                reason=f"needs the shared test data ({DATA}/imagenet-val-300)")
