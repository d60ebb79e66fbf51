"""Timing a call on the device: synchronised clocks, peak memory, the model's own pass rate."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from .targets import Targets, target_score


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float, int]:
    """Run ``fn`` once: (result, seconds, peak device bytes or 0 on the CPU). The peak is what
    ``fn`` allocated at most above what was allocated when it began: the model, the batch, and
    whatever an earlier call left behind are not counted, so one call's leak never inflates the
    next one's figure."""
    start = 0
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    seconds = time.perf_counter() - t0
    peak = max(0, torch.cuda.max_memory_allocated(device) - start) if device.type == "cuda" else 0
    return out, seconds, peak


def model_forward_backward(model, x: torch.Tensor, targets: Targets | torch.Tensor, repeats: int = 5,
                           warmup: int = 2) -> dict:
    """The model's own forward+backward (input gradient of the target score), images/s."""

    def step() -> None:
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(target_score(model.net(xi), targets).sum(), xi)

    for _ in range(warmup):
        step()
    times = [timed(step, x.device)[1] for _ in range(repeats)]
    med = statistics.median(times)
    return {"images_per_s": x.shape[0] / med, "seconds": times, "batch_size": int(x.shape[0])}
