"""Start-up: ``saliency-bench list methods`` and ``--help`` beside ``python -c "import torch"``,
each a fresh interpreter, interleaved round by round (a loaded machine slows all three alike).
Targets: ``list methods`` at most 1 s more than importing torch, ``--help`` no slower than it.
The packs are installed in the environment that runs this (Captum, pytorch-grad-cam)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import paired

TORCH = [sys.executable, "-c", "import torch"]
CLI = [sys.executable, "-m", "saliency_bench"]


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


@pytest.mark.parametrize("args,key,target", [
    (["list", "methods"], "seconds_over_import_torch", 1.0),
    (["--help"], "seconds_over_import_torch", 0.0),
], ids=["list-methods", "help"])
def test_start_up_beside_importing_torch(benchmark, args, key, target):
    ref: list[float] = []

    def torch_then_time():
        t = time.perf_counter()
        _run(TORCH)
        ref.append(time.perf_counter() - t)

    benchmark.pedantic(lambda: _run(CLI + args), setup=torch_then_time, rounds=5, iterations=1)
    info = benchmark.extra_info
    if getattr(benchmark, "enabled", False) and benchmark.stats is not None:
        import statistics

        ours, torch_s = benchmark.stats.stats.median, statistics.median(ref)
        info["import_torch_median_s"] = torch_s
        info[key] = ours - torch_s
        info["target_at_most"] = target
        info["meets_target"] = ours - torch_s <= target

