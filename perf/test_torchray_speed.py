"""RISE and extremal perturbation, batched, against TorchRay's per-image functions (pytest-benchmark).

    python -m pytest perf/test_torchray_speed.py --benchmark-enable

Each test times ours on a batch of 16 images at once and, in the same rounds (``paired``,
interleaved), TorchRay's function called on the same 16 images one by one: same process, one
thread, the same small random CNN (tests/small_nets.py) configured as a run configures it
(``Model.to``: channels-last weights) and the same channels-last input (``Model.preprocess``'s
layout), 64x64, short settings (512 RISE masks in TorchRay's chunks of 32; 10 extremal-perturbation
steps, the four VOC areas, ``smooth=0.09``). ``extra_info``: ``speedup`` (TorchRay's median over
ours), ``target`` 4 and ``meets_target`` (issue 24), the network passes and images per pass of
each side (counted by a forward hook), and ``network_s``: the network's own work done alone (RISE:
the forward passes of the same sizes; extremal perturbation: forward + backward to the input) with
its share of each side's time. Where both sides do the same network work, the speedup is bounded
by ``1 / network_share_ours``... and by how much TorchRay spends around the network. Results:
``perf/results/torchray-cpu-*.json`` (``--benchmark-json``); docs/PERFORMANCE.md#rise-and-extremal-perturbation-on-the-cpu.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import enabled, paired  # noqa: E402
from small_nets import small_model  # noqa: E402

from saliency_bench.registry import get_method  # noqa: E402

tr_rise = pytest.importorskip("torchray.attribution.rise").rise
tr_extremal = pytest.importorskip("torchray.attribution.extremal_perturbation").extremal_perturbation

B, SIZE, MASKS, STEPS, TR_CHUNK = 16, 64, 512, 10, 32
AREAS = [0.025, 0.05, 0.1, 0.2]
TARGET = 4.0


@pytest.fixture(scope="module")
def batch():
    torch.set_num_threads(1)
    model = small_model().to("cpu")  # a run's model: channels-last weights
    x = torch.randn(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return model, x.contiguous(memory_format=torch.channels_last), [i % 6 for i in range(B)]


def count_passes(net, fn) -> list[int]:
    """The batch size of every forward pass of ``net`` during ``fn()``."""
    sizes: list[int] = []
    hook = net.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
    try:
        fn()
    finally:
        hook.remove()
    return sizes


def network_alone(net, sizes: list[int], backward: bool, repeats: int = 3) -> float:
    """Median seconds of the network's passes of these batch sizes on random inputs (+ backward to the input)."""
    xs = {n: torch.randn(n, 3, SIZE, SIZE).contiguous(memory_format=torch.channels_last) for n in set(sizes)}
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for n in sizes:
            if backward:
                x = xs[n].clone().requires_grad_(True)
                net(x).sum().backward()
            else:
                with torch.no_grad():
                    net(xs[n])
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def record(benchmark, info: dict, ours_passes: list[int], ref_passes: list[int], net_s_ours: float,
           net_s_ref: float) -> None:
    info.update(ours_passes=len(ours_passes), ours_images=sum(ours_passes),
                ours_images_per_pass=max(ours_passes), torchray_passes=len(ref_passes),
                torchray_images=sum(ref_passes), torchray_images_per_pass=max(ref_passes), batch=B, size=SIZE,
                threads=torch.get_num_threads(), target=TARGET)
    if enabled(benchmark) and "speedup" in info:
        ours_s = benchmark.stats.stats.median
        info.update(network_s_ours=net_s_ours, network_s_torchray=net_s_ref,
                    network_share_ours=net_s_ours / ours_s,
                    network_share_torchray=net_s_ref / info["reference_median_s"])


@pytest.mark.benchmark(group="torchray")
def test_rise_batched_vs_torchray_per_image(benchmark, batch):
    model, x, t = batch
    method = get_method("rise", masks=MASKS)

    def ours():
        method.explain(model, x, t)

    def reference():
        for i in range(B):
            tr_rise(model.net, x[i:i + 1], num_masks=MASKS, batch_size=TR_CHUNK)[:, t[i]]

    ours_passes, ref_passes = count_passes(model.net, ours), count_passes(model.net, reference)
    info = paired(benchmark, ours, reference, rounds=3, target=TARGET)
    net = (network_alone(model.net, ours_passes, False), network_alone(model.net, ref_passes, False)) \
        if enabled(benchmark) else (0.0, 0.0)
    record(benchmark, info, ours_passes, ref_passes, *net)
    info.update(masks=MASKS)


@pytest.mark.benchmark(group="torchray")
def test_extremal_perturbation_batched_vs_torchray_per_image(benchmark, batch):
    model, x, t = batch
    method = get_method("extremal_perturbation", iterations=STEPS, areas=AREAS)

    def ours():
        method.explain(model, x, t)

    def reference():
        for i in range(B):
            tr_extremal(model.net, x[i:i + 1], t[i], areas=AREAS, max_iter=STEPS, smooth=0.09)

    ours_passes, ref_passes = count_passes(model.net, ours), count_passes(model.net, reference)
    info = paired(benchmark, ours, reference, rounds=3, target=TARGET)
    net = (network_alone(model.net, ours_passes, True), network_alone(model.net, ref_passes, True)) \
        if enabled(benchmark) else (0.0, 0.0)
    record(benchmark, info, ours_passes, ref_passes, *net)
    info.update(steps=STEPS, areas=AREAS)
