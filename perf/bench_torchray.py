"""The ``torchray`` section of ``perf/bench_gpu.py``: RISE and extremal perturbation batched
beside TorchRay's own per-image functions (``torchray.attribution``), on the model and device of
the run.

Ours runs once on a batch of ``images`` images; TorchRay's function runs on ``torchray_images``
of them one at a time (its API takes one image), and its time per image is charged to the whole
batch: ``speedup_vs_torchray_per_image = torchray_s_per_image * images / ours_s``. Settings are
TorchRay's defaults (RISE: 7x7 cells, p = 0.5, its chunks of 32 masks; extremal perturbation: the
four VOC areas, ``smooth=0.09``) except two counts, cut to fit the script's 8 minutes: RISE's masks
(``--rise-masks``, TorchRay's default 8000) and the extremal perturbation's steps (``--ep-steps``,
TorchRay's table 800). Every mask and every step costs the same on both sides, so the ratio of
the shorter run is the ratio of the full one; the record says what it timed. Warm-up: one call of
each side with 64 masks / 2 steps (kernels, cuDNN's algorithm choice).
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from bench_common import guarded, peer_import
from saliency_bench.registry import get_method
from saliency_bench.timing import timed

AREAS = [0.025, 0.05, 0.1, 0.2]


def torchray_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                     masks: int = 2000, ep_steps: int = 100, torchray_images: int = 2, warmup: int = 1,
                     max_s: float = float("inf"), log: Callable[[str], None] = print) -> dict:
    """Fill ``out["methods"][name]``: ours on the batch ``x`` beside TorchRay's per-image function.
    The counts are not trimmed to ``max_s``; a method that would start after it is skipped."""
    b, device = len(x), x.device
    t = [int(v) for v in targets.view(b, -1)[:, 0]]
    n = max(1, min(torchray_images, b))
    rise_mod, rise_v = peer_import("torchray.attribution.rise")
    ep_mod, _ = peer_import("torchray.attribution.extremal_perturbation")
    out.update(images=b, torchray_images=n, peer={"torchray": rise_v}, methods={})
    runs = {
        "rise": (dict(masks=masks),
                 None if rise_mod is None else lambda i, w: rise_mod.rise(
                     model.net, x[i:i + 1], num_masks=w.get("masks", masks))[:, t[i]]),
        "extremal_perturbation": (
            dict(iterations=ep_steps, areas=AREAS),
            None if ep_mod is None else lambda i, w: ep_mod.extremal_perturbation(
                model.net, x[i:i + 1], t[i], areas=AREAS, max_iter=w.get("iterations", ep_steps), smooth=0.09)),
    }
    t0 = time.perf_counter()
    for name, (params, theirs) in runs.items():
        if time.perf_counter() - t0 > max_s:
            out["methods"][name] = {"skipped": f"time share spent ({time.perf_counter() - t0:.0f} of {max_s:.0f} s)"}
            log(f"  {model.name} {name}: {out['methods'][name]['skipped']}")
            save()
            continue

        def measure(name=name, params=params, theirs=theirs) -> dict:
            method = get_method(name, **params)

            def ours():
                return method.explain(model, x, t)

            def per_image():
                for i in range(n):
                    theirs(i, {})

            small = {"masks": min(masks, 64)} if name == "rise" else {"iterations": min(ep_steps, 2)}
            for _ in range(warmup):
                get_method(name, **{**params, **small}).explain(model, x, t)
            ours_s = timed(ours, device)[1]
            r = {"params": method.params, "ours_s": ours_s, "images_per_s": b / ours_s}
            if theirs is None:
                return {**r, "torchray": rise_v}
            if warmup:
                theirs(0, small)
            ref_s = timed(per_image, device)[1]
            return {**r, "torchray_s": ref_s, "torchray_s_per_image": ref_s / n,
                    "torchray_images_per_s": n / ref_s, "speedup_vs_torchray_per_image": ref_s / n * b / ours_s}

        out["methods"][name] = r = guarded(measure)
        if "error" in r:
            log(f"  {model.name} {name}: {r['error']}")
        elif "speedup_vs_torchray_per_image" in r:
            log(f"  {model.name} {name} batch {b}: {r['images_per_s']:.3g} images/s, TorchRay per image "
                f"{r['torchray_images_per_s']:.3g} images/s: {r['speedup_vs_torchray_per_image']:.3g}x")
        else:
            log(f"  {model.name} {name} batch {b}: {r['images_per_s']:.3g} images/s (TorchRay not installed)")
        save()
    return out
