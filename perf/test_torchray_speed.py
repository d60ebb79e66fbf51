"""RISE and extremal perturbation, batched, beside TorchRay's per-image functions (pytest-benchmark).

    python -m pytest perf/test_torchray_speed.py --benchmark-enable --benchmark-group-by=group

Each group times ours on a batch of 16 images at once and TorchRay's function called on the same
16 images one by one, in one run (same process, same threads), on a small random CNN (tests/
small_nets.py) at 64x64 with short settings (512 RISE masks; 10 extremal-perturbation steps, the
four VOC areas); the file ran in 8 minutes on a shared, loaded core. Both programs send the same
number of images through the network (TorchRay already batches RISE's masks 32 at a time and
extremal perturbation's areas), so on a CPU the ratio is what batching saves around the network:
RISE's masks made once per batch instead of once per image, one pass per distinct image, only the
targets' maps accumulated; the areas' bookkeeping once per step for the batch. Results:
``perf/results/torchray-cpu-*.json`` (``--benchmark-json``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from small_nets import small_model  # noqa: E402

from saliency_bench.registry import get_method  # noqa: E402

tr_rise = pytest.importorskip("torchray.attribution.rise").rise
tr_extremal = pytest.importorskip("torchray.attribution.extremal_perturbation").extremal_perturbation

B, SIZE, MASKS, STEPS = 16, 64, 512, 10
AREAS = [0.025, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def batch():
    torch.set_num_threads(1)
    x = torch.randn(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return small_model(), x, [i % 6 for i in range(B)]


@pytest.mark.benchmark(group="rise")
def test_rise_ours_batched(benchmark, batch):
    model, x, t = batch
    benchmark.pedantic(lambda: get_method("rise", masks=MASKS).explain(model, x, t), rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="rise")
def test_rise_torchray_per_image(benchmark, batch):
    model, x, t = batch

    def run():
        for i in range(B):
            tr_rise(model.net, x[i:i + 1], num_masks=MASKS)[:, t[i]]

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="extremal_perturbation")
def test_extremal_perturbation_ours_batched(benchmark, batch):
    model, x, t = batch
    benchmark.pedantic(lambda: get_method("extremal_perturbation", iterations=STEPS).explain(model, x, t),
                       rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="extremal_perturbation")
def test_extremal_perturbation_torchray_per_image(benchmark, batch):
    model, x, t = batch

    def run():
        for i in range(B):
            tr_extremal(model.net, x[i:i + 1], t[i], areas=AREAS, max_iter=STEPS, smooth=0.09)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
