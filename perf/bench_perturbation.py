"""Speed of the perturbation methods against the model's own ceilings (docs/PERFORMANCE.md §1).

* ``occlusion`` and ``blur_occlusion`` (every speed variant they expose) beside Captum's
  ``Occlusion`` (35x35 window, stride 8, baseline 0, ``perturbations_per_eval`` copies of each
  image per forward pass), as a fraction of the model's forward-only images/s counting every
  image each method sends through the network (the masked copies and the unmasked scores,
  counted with a hook on the network). Target: >= 0.8.
* ``mask`` (meaningful perturbation, Fong & Vedaldi 2017; every speed variant it exposes:
  ``amp``, ``cuda_graph`` if it has one) on a batch, beside the way the published code runs
  it: one image at a time, default parameters. Reported as images/s, as a fraction of
  ``steps`` x the model's forward+backward at the batch (target >= 0.7) and as the speed-up
  over the per-image loop (target >= 40). When the time allowance does not fit the full
  ``steps``, a call's time is measured at a smaller step count and extrapolated linearly from
  two step counts (``t(k) = fixed + k * per_step``); the record says so (``extrapolated``).

    python perf/bench_perturbation.py --size 64 --threads 1    # CPU, small settings
    python perf/bench_perturbation.py --device cuda --batch 64 --max-steps 300

Writes ``perf/results/perturbation-<device>-<date>.json``. Random weights (speed does
not depend on them); the device is synchronised before each clock read.
``perf/gpu.sh`` runs these sections with every other GPU benchmark in one go.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

from bench_common import (Budget, ResultsFile, environment, forward_backward, forward_only, guarded,
                          guarded_variants, line, load_builtins, measure, methods_beside_peers, random_inputs)
from saliency_bench.registry import get_method, get_model

OCCLUSION_METHODS = ("occlusion", "blur_occlusion")


@contextlib.contextmanager
def captum_occlusion_peer(attr, model, x: torch.Tensor, targets: torch.Tensor, *, window: int = 35,
                          stride: int = 8, per_eval: int = 64) -> Iterator[Callable[[], object]]:
    """Captum ``Occlusion`` with our occlusion's geometry (the window shrinks to the input only
    for inputs smaller than it, as in the tiny CPU check)."""
    occ, t = attr.Occlusion(model.net), targets[:, 0]
    w = min(window, *x.shape[-2:])
    yield lambda: occ.attribute(x, sliding_window_shapes=(3, w, w), strides=(3, stride, stride), baselines=0,
                                target=t, perturbations_per_eval=per_eval)


def occlusion_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                      fwd: dict, per_eval: int = 64, methods=OCCLUSION_METHODS, warmup: int = 1,
                      repeats: int = 3, max_s: float = float("inf"), log: Callable[[str], None] = print) -> dict:
    """Fill ``out`` with the occlusion family and Captum ``Occlusion`` on ``x``, each as images/s
    and as ``fraction_of_forward`` of ``fwd`` (``{"fp32": images/s, "bf16": images/s}``, the
    model's forward-only ceiling), counting the images each sends through the network."""
    peers = {"captum.Occlusion": ("captum.attr", functools.partial(captum_occlusion_peer, per_eval=per_eval))}
    out["captum_perturbations_per_eval"] = per_eval
    return methods_beside_peers(model, x, targets, out, save, methods=methods, peers=peers, ceiling=fwd,
                                key="fraction_of_forward", per_copy=True, warmup=warmup, repeats=repeats,
                                max_s=max_s, log=log)


# --------------------------------------------------------------------------------------------
# The mask: many optimisation steps per call, timed at two step counts when 300 do not fit
# --------------------------------------------------------------------------------------------
def steps_timing(run: Callable[[int], Callable[[], object]], device: torch.device, images: int, *,
                 steps: int, probe: int, max_steps: int, repeats: int, max_s: float, warmup: bool = True) -> dict:
    """Seconds per call of ``run(k)`` (a call of ``k`` optimisation steps) at ``steps`` steps.

    A warm-up call of ``probe`` steps (unless not ``warmup``), then one timed call at ``probe`` and one at ``2 * probe``
    steps give the per-step and the fixed cost; the largest step count up to ``steps`` (and
    ``max_steps``) that fits ``max_s`` is then timed ``repeats`` times. Below ``steps`` the time
    is extrapolated along the line through the probe and that count.
    """
    t0 = time.perf_counter()
    max_steps = max(1, min(steps, max_steps))
    probe = max(1, min(probe, max_steps))
    if warmup:
        run(probe)()  # compilation, graph capture, cuDNN's choice of kernels
    a = measure(run(probe), device, warmup=0, repeats=1, images=images)
    points = [{"steps": probe, "s": a["median_s"]}]
    k2 = min(2 * probe, max_steps)
    if k2 > probe:
        b = measure(run(k2), device, warmup=0, repeats=1, images=images)
        points.append({"steps": k2, "s": b["median_s"]})
        per_step = (b["median_s"] - a["median_s"]) / (k2 - probe)
        if per_step <= 0:  # noise larger than the steps' cost: charge it all to the steps
            per_step = b["median_s"] / k2
        fixed = max(0.0, a["median_s"] - probe * per_step)
        left = max_s - (time.perf_counter() - t0)
        fits = (left / max(1, repeats) - fixed) / per_step
        k = max(k2, min(max_steps, int(fits) if fits < max_steps else max_steps))
        best = b if k == k2 else measure(run(k), device, warmup=0, repeats=repeats, images=images,
                                         max_s=max(0.0, left))
    else:
        k, best = probe, a
    out = {"steps": steps, "measured_steps": k, "extrapolated": k < steps, "probes": points, "measured": best}
    seconds = best["median_s"]
    if k < steps:
        lo = points[0]
        per_step = (seconds - lo["s"]) / (k - lo["steps"]) if k > lo["steps"] else 0.0
        out["extrapolation"] = (f"time at {k} steps + {steps - k} x the per-step time between "
                                f"{lo['steps']} and {k} steps")
        if per_step <= 0:  # noise hid the steps' cost: the slower bound, all the time charged to the steps
            per_step = seconds / k
            out["extrapolation"] = f"time at {k} steps x {steps}/{k} (the probes were too noisy for a slope)"
        seconds += per_step * (steps - k)
    out.update(seconds_per_call=seconds, images=images, images_per_s=images / seconds)
    return out


def mask_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                 fb: dict, method: str = "mask", steps: int = 300, max_steps: int = 300, probe: int = 10,
                 loop_images: int = 2, repeats: int = 2, warmup: bool = True, max_s: float = float("inf"),
                 log: Callable[[str], None] = print) -> dict:
    """Fill ``out`` with ``method`` on the batch ``x`` (each speed variant) and the per-image loop
    (``loop_images`` images, default parameters, batch 1): images/s at ``steps`` steps, fraction
    of ``steps`` x forward+backward (``fb``: ``{"fp32": images/s, "bf16": ...}`` at ``x``'s batch)
    and speed-up over the loop."""
    b, device = len(x), x.device
    out.update(method=method, batch=b, steps=steps, ceiling={k: v for k, v in fb.items() if v},
               variants={}, per_image_loop={})
    variants = guarded_variants(method)
    budget = Budget(max_s)
    for _ in range(len(variants) + 1):
        budget.plan(1.0)

    def batched(params: dict | str) -> Callable[[], dict]:
        def go() -> dict:
            if isinstance(params, str):
                raise RuntimeError(params)
            m = get_method(method, **params)
            r = steps_timing(lambda k: functools.partial(m.with_params(iterations=k).explain, model, x, targets),
                             device, b, steps=steps, probe=probe, max_steps=max_steps, repeats=repeats,
                             max_s=budget.allot(1.0), warmup=warmup)
            r = {"params": m.params, **r}
            if fb.get("fp32"):
                r["fraction_of_steps_x_forward_backward"] = r["images_per_s"] * steps / fb["fp32"]
                if params.get("amp") and fb.get("bf16"):
                    r["fraction_of_steps_x_bf16_forward_backward"] = r["images_per_s"] * steps / fb["bf16"]
            return r
        return go

    def loop() -> dict:
        n = min(loop_images, b)
        m = get_method(method)

        def run(k: int) -> Callable[[], None]:
            mk = m.with_params(iterations=k)

            def one_at_a_time() -> None:
                for i in range(n):
                    mk.explain(model, x[i:i + 1], targets[i:i + 1])
            return one_at_a_time

        return {"batch": 1, "params": m.params, **steps_timing(
            run, device, n, steps=steps, probe=probe, max_steps=max_steps, repeats=1, max_s=budget.allot(1.0),
            warmup=warmup)}

    order = ["default", "loop"] + [v for v in variants if v != "default"]
    for v in order:
        if v == "loop":
            out["per_image_loop"] = r = guarded(loop)
            label = f"{model.name} {method} one image at a time"
        else:
            out["variants"][v] = r = guarded(batched(variants[v]))
            label = f"{model.name} {method}[{v}] batch {b}"
        log(line(label, r, "fraction_of_steps_x_forward_backward") + (" (extrapolated)" if r.get("extrapolated")
                                                                       else ""))
        save()
    loop_rate = out["per_image_loop"].get("images_per_s")
    for r in out["variants"].values():
        if loop_rate and "images_per_s" in r:
            r["speedup_vs_per_image_loop"] = r["images_per_s"] / loop_rate
    save()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="googlenet")
    p.add_argument("--batch", type=int, default=4, help="images per mask call")
    p.add_argument("--steps", type=int, default=300, help="the mask's optimisation steps (reported)")
    p.add_argument("--max-steps", type=int, default=10, help="most steps actually timed (then extrapolated)")
    p.add_argument("--probe", type=int, default=2, help="step count of the probes")
    p.add_argument("--loop-images", type=int, default=2, help="images for the one-at-a-time peer")
    p.add_argument("--occlusion-images", type=int, default=1)
    p.add_argument("--forward-batch", type=int, default=64, help="batch of the forward-only ceiling")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--size", type=int, help="input side (default: the model's; smaller for a quick CPU look)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    registration = load_builtins()
    device = torch.device(a.device)
    model = get_model(a.model, weights="random", device=a.device)
    x, t = random_inputs(model, max(a.batch, a.occlusion_images), a.size)
    xf, _ = random_inputs(model, a.forward_batch, a.size, seed=1)
    fb = measure(lambda: forward_backward(model, x[:a.batch], t[:a.batch]), device, warmup=1, repeats=3,
                 images=a.batch)
    fwd = measure(lambda: forward_only(model, xf), device, warmup=1, repeats=3, images=a.forward_batch)
    meta = {**environment(device), "model": a.model, "weights": "random", "settings": vars(a),
            "registration": registration}
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / f"perturbation-{device.type}-{meta['date']}.json"
    doc = ResultsFile(out, {"meta": meta, "forward_backward": fb, "forward": fwd, "occlusion": {}, "mask": {}})
    occlusion_section(model, x[:a.occlusion_images], t[:a.occlusion_images], doc.data["occlusion"], doc.save,
                      fwd={"fp32": fwd["images_per_s"]}, per_eval=max(1, a.forward_batch // a.occlusion_images),
                      repeats=a.repeats)
    mask_section(model, x[:a.batch], t[:a.batch], doc.data["mask"], doc.save, fb={"fp32": fb["images_per_s"]},
                 steps=a.steps, max_steps=a.max_steps, probe=a.probe, loop_images=a.loop_images,
                 repeats=a.repeats)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
