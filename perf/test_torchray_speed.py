"""RISE and extremal perturbation, batched, against TorchRay's per-image functions (pytest-benchmark).

    python -m pytest perf/test_torchray_speed.py --benchmark-enable

Each test times ours on a batch of 16 images at once and, in the same rounds (``paired``,
interleaved), TorchRay's function called on the same 16 images one by one: same process, one
thread, the same small random CNN (tests/small_nets.py) configured as a run configures it
(``Model.to``: channels-last weights) and the same channels-last input (``Model.preprocess``'s
layout), 64x64, short settings (512 RISE masks in TorchRay's chunks of 32; 10 extremal-perturbation
steps, the four VOC areas, ``smooth=0.09``). ``extra_info``: ``speedup`` (TorchRay's median over
ours), ``target`` 4 and ``meets_target`` (issue 24), the network passes and images per pass of
each side, and ``network_share_*``: the fraction of one call's time spent inside the network,
forward and backward (module hooks, in a call before the timed rounds). Where both sides send the
same images through the network in passes of the same size, ours can at best remove all the time
around the network: the speedup is at most ``1 / network_share_torchray``. Results:
``perf/results/torchray-cpu-*.json`` (``--benchmark-json``);
docs/PERFORMANCE.md#rise-and-extremal-perturbation-on-the-cpu.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import paired  # noqa: E402
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


class NetworkClock:
    """Counts the network's forward passes (batch sizes) and the seconds spent inside it, forward
    and backward (module hooks), while installed; ``share(fn)`` runs ``fn`` once and returns the
    fraction of its time spent in the network."""

    def __init__(self, net) -> None:
        self.net, self.sizes, self.seconds, self._t = net, [], 0.0, []

    def __enter__(self) -> "NetworkClock":
        n = self.net
        self.handles = [n.register_forward_pre_hook(lambda m, i: self._start()),
                        n.register_forward_hook(lambda m, i, o: self._stop(i[0].shape[0])),
                        n.register_full_backward_pre_hook(lambda m, g: self._start()),
                        n.register_full_backward_hook(lambda m, gi, go: self._stop(None))]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()

    def _start(self) -> None:
        self._t.append(time.perf_counter())

    def _stop(self, size) -> None:
        if self._t:
            self.seconds += time.perf_counter() - self._t.pop()
        if size is not None:
            self.sizes.append(int(size))


def measure(net, fn) -> tuple[list[int], float]:
    """(batch sizes of the network's passes, share of ``fn``'s time inside the network, forward + backward)."""
    with NetworkClock(net) as clock:
        t = time.perf_counter()
        fn()
        total = time.perf_counter() - t
    return clock.sizes, clock.seconds / total


def compare(benchmark, net, ours, reference) -> dict:
    ours_passes, ours_share = measure(net, ours)  # also the warm-up
    ref_passes, ref_share = measure(net, reference)
    info = paired(benchmark, ours, reference, rounds=3, target=TARGET)
    info.update(ours_passes=len(ours_passes), ours_images=sum(ours_passes),
                ours_images_per_pass=max(ours_passes), torchray_passes=len(ref_passes),
                torchray_images=sum(ref_passes), torchray_images_per_pass=max(ref_passes),
                network_share_ours=ours_share, network_share_torchray=ref_share, batch=B, size=SIZE,
                threads=torch.get_num_threads())
    return info


@pytest.mark.benchmark(group="torchray")
def test_rise_batched_vs_torchray_per_image(benchmark, batch):
    model, x, t = batch
    method = get_method("rise", masks=MASKS)

    def ours():
        method.explain(model, x, t)

    def reference():
        for i in range(B):
            tr_rise(model.net, x[i:i + 1], num_masks=MASKS, batch_size=TR_CHUNK)[:, t[i]]

    compare(benchmark, model.net, ours, reference).update(masks=MASKS, torchray_batch_size=TR_CHUNK)


@pytest.mark.benchmark(group="torchray")
def test_extremal_perturbation_batched_vs_torchray_per_image(benchmark, batch):
    model, x, t = batch
    method = get_method("extremal_perturbation", iterations=STEPS, areas=AREAS)

    def ours():
        method.explain(model, x, t)

    def reference():
        for i in range(B):
            tr_extremal(model.net, x[i:i + 1], t[i], areas=AREAS, max_iter=STEPS, smooth=0.09)

    compare(benchmark, model.net, ours, reference).update(steps=STEPS, areas=AREAS)
