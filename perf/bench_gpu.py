"""Every speed benchmark that needs a GPU, in one call (``perf/gpu.sh`` runs this file).

For each model (GoogLeNet, then the embedded EfficientNet-Lite0; random weights, since speed
does not depend on them), in this order:

1. ``ceilings``: the model's forward+backward images/s at ``--batch`` and forward-only images/s
   at ``--forward-batch``, fp32 and bf16 autocast, channels-last (our default) and contiguous;
2. ``backprop``: gradient, guided backprop, Grad-CAM, excitation backprop and contrastive
   excitation backprop (each speed variant they expose) beside pytorch-grad-cam ``GradCAM``,
   Captum ``Saliency`` and Captum ``LayerGradCam``, as fractions of forward+backward;
3. ``occlusion``: occlusion and blur occlusion beside Captum ``Occlusion`` on
   ``--occlusion-images`` images, as fractions of forward-only counting the masked copies;
4. ``mask``: the mask (``--steps`` Adam steps) batched, each speed variant (``amp``, and
   ``cuda_graph`` when the method has it), beside the per-image loop; fraction of ``--steps`` x
   forward+backward and speed-up over the loop (extrapolated from fewer steps when the full
   count does not fit the time allowance, and said so).
5. ``isolation`` (``bench_isolation.py``): the guard's verify of an unchanged model after a
   gradient / Grad-CAM batch, as a fraction of the batch (target: well under 1% on a GPU).
6. ``torchray`` (``bench_torchray.py``): RISE and extremal perturbation batched on
   ``--torchray-batch`` images beside TorchRay's per-image functions on ``--torchray-loop-images``
   of them (``--rise-masks`` masks, ``--ep-steps`` steps), as ``speedup_vs_torchray_per_image``.
7. ``profile`` (``bench_profile.py``): one call of each method below its target, of gradient,
   of Captum ``Occlusion`` and of the two references under ``torch.profiler``: operators,
   kernels and their device time, copies, host syncs (and the Python lines that caused them),
   and the device's idle fraction; where the time goes, beside the reference's counts.

Then, once, ``e2e`` (``bench_e2e.py``): a real ``saliency-bench run`` per method on synthetic
ImageNet-size JPEGs with VOC XML boxes written to disk, localization and pointing, its samples/s
beside the method's alone (the harness's efficiency), the CPU cores it kept busy and where the
time went; on its own allowance, ``--e2e-max-s``.

Then ``targets``: each ratio beside its target in docs/PERFORMANCE.md §1, with pass/fail. The JSON
(``gpu-<device>-<date>.json``) and a text summary beside it are rewritten after every
measurement, so a run cut short keeps what it measured; one failing measurement is recorded as
its error and the others go on. ``--budget`` seconds (counted from the start of this process)
is shared among the sections still to run; the repeats, and the mask's timed step count, are
trimmed to fit it, and a section with no time left is recorded as skipped.

    bash perf/gpu.sh                            # CUDA, under 8 minutes
    bash perf/gpu.sh --device cpu --tiny        # the whole script in seconds (tests)
"""
from __future__ import annotations

import time

T0 = time.perf_counter()  # the budget counts the imports and the device's start too

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402

from bench_backprop import METHODS as BACKPROP_METHODS, backprop_section  # noqa: E402
from bench_e2e import e2e_section  # noqa: E402
from bench_isolation import describe as describe_isolation, isolation_section  # noqa: E402
from bench_common import (Budget, ResultsFile, ceilings, environment, guarded, load_builtins,  # noqa: E402
                          peer_import, random_inputs, slug)
from bench_perturbation import OCCLUSION_METHODS, mask_section, occlusion_section  # noqa: E402
from bench_profile import profile_section  # noqa: E402
from bench_torchray import torchray_section  # noqa: E402
from saliency_bench.registry import get_model  # noqa: E402

SECTIONS = ("ceilings", "backprop", "occlusion", "mask", "isolation", "torchray", "profile", "e2e")
#: Sections measured once per model; ``e2e`` runs once, after them, on its own allowance.
PER_MODEL = SECTIONS[:7]
#: Shares of the time budget (the mask's 300 steps per image dominate).
WEIGHTS = {"ceilings": 1.0, "backprop": 2.0, "occlusion": 3.0, "mask": 8.0, "isolation": 0.5, "torchray": 2.0,
           "profile": 1.0}
#: The targets of docs/PERFORMANCE.md §1: (section, record key, threshold).
TARGETS = (("backprop", "fraction_of_forward_backward", 0.8),
           ("occlusion", "fraction_of_forward", 0.8),
           ("mask", "fraction_of_steps_x_forward_backward", 0.7),
           ("mask", "speedup_vs_per_image_loop", 40.0))
#: Settings for a GPU run, and for the tiny run of the tests (every section, a few seconds each).
FULL = dict(models="googlenet,efficientnet_lite0", batch=64, forward_batch=256, occlusion_images=4, steps=300,
            max_steps=300, probe=10, loop_images=2, warmup=2, repeats=5, ceiling_repeats=10, budget=300.0,
            size=None, threads=0, e2e_images=3000, e2e_batch=64, e2e_workers=6, e2e_max_s=120.0,
            torchray_batch=16, torchray_loop_images=2, rise_masks=2000, ep_steps=100)
TINY = dict(models="googlenet", batch=2, forward_batch=4, occlusion_images=1, steps=300, max_steps=2, probe=1,
            loop_images=1, warmup=0, repeats=1, ceiling_repeats=1, budget=0.0, size=32, threads=1,
            e2e_images=8, e2e_batch=4, e2e_workers=0, e2e_max_s=0.0,
            torchray_batch=2, torchray_loop_images=1, rise_masks=32, ep_steps=2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--models", help=f"comma-separated ({FULL['models']})")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--tiny", action="store_true", help="tiny settings for a CPU check: " + str(TINY))
    p.add_argument("--batch", type=int, help=f"ceiling, backprop and mask batch ({FULL['batch']})")
    p.add_argument("--forward-batch", type=int, help=f"forward-only ceiling batch ({FULL['forward_batch']})")
    p.add_argument("--occlusion-images", type=int, help=f"images per occlusion call ({FULL['occlusion_images']})")
    p.add_argument("--per-eval", type=int, help="Captum Occlusion's perturbations_per_eval "
                                                "(default: forward batch / occlusion images)")
    p.add_argument("--steps", type=int, help=f"mask optimisation steps reported ({FULL['steps']})")
    p.add_argument("--max-steps", type=int, help=f"most mask steps timed, then extrapolated ({FULL['max_steps']})")
    p.add_argument("--probe", type=int, help=f"mask steps of the two probes, k and 2k ({FULL['probe']})")
    p.add_argument("--loop-images", type=int, help=f"images of the per-image mask loop ({FULL['loop_images']})")
    p.add_argument("--warmup", type=int, help=f"untimed calls before timing ({FULL['warmup']})")
    p.add_argument("--repeats", type=int, help=f"timed calls, fewer if the budget is short ({FULL['repeats']})")
    p.add_argument("--ceiling-repeats", type=int, help=f"timed calls of each ceiling ({FULL['ceiling_repeats']})")
    p.add_argument("--budget", type=float, help=f"seconds for the whole run, 0: none ({FULL['budget']:g})")
    p.add_argument("--size", type=int, help="input side (default: the model's)")
    p.add_argument("--threads", type=int, help="CPU threads, 0: torch's default (tiny: 1, which a shared "
                                                "CPU runs fastest)")
    p.add_argument("--torchray-batch", type=int,
                   help=f"images of ours in the torchray section ({FULL['torchray_batch']})")
    p.add_argument("--torchray-loop-images", type=int,
                   help=f"images of TorchRay's per-image functions ({FULL['torchray_loop_images']})")
    p.add_argument("--rise-masks", type=int, help=f"RISE masks in the torchray section ({FULL['rise_masks']}; "
                                                  "TorchRay's default 8000)")
    p.add_argument("--ep-steps", type=int, help=f"extremal perturbation steps in the torchray section "
                                                f"({FULL['ep_steps']}; TorchRay's table 800)")
    p.add_argument("--e2e-images", type=int, help=f"synthetic ImageNet-size JPEGs of the e2e section ({FULL['e2e_images']})")
    p.add_argument("--e2e-batch", type=int, help=f"the e2e runs' --batch-size ({FULL['e2e_batch']})")
    p.add_argument("--e2e-workers", type=int, help=f"the e2e runs' data loader --workers ({FULL['e2e_workers']})")
    p.add_argument("--scoring-workers", type=int, help="the e2e runs' --scoring-workers (default: the run's own "
                                                       "default from the cores; --tiny: 1)")
    p.add_argument("--e2e-max-s", type=float, help=f"seconds for the e2e section, 0: none ({FULL['e2e_max_s']:g})")
    p.add_argument("--work-dir", help="where the e2e images and runs go (default: a temporary folder, removed)")
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--out", help="the JSON file (default: OUT_DIR/gpu-<device>-<date>.json)")
    a = p.parse_args(argv)
    for k, v in (TINY if a.tiny else FULL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.tiny and a.scoring_workers is None:
        a.scoring_workers = 1  # the pool is exercised on a CPU check too
    if a.per_eval is None:
        a.per_eval = max(1, a.forward_batch // a.occlusion_images)
    return a


def evaluate_targets(models: dict) -> list[dict]:
    """One row per (model, section's method or variant, target): value, threshold, pass."""
    rows = []
    for model, entry in models.items():
        for section, key, threshold in TARGETS:
            sec = entry.get(section) or {}
            if section == "mask":
                found = {(sec.get("method", "mask"), v): r for v, r in (sec.get("variants") or {}).items()}
            else:
                found = {(m, v): r for m, vs in (sec.get("methods") or {}).items() for v, r in vs.items()}
            if not found:
                rows.append({"model": model, "section": section, "target": f"{key} >= {threshold:g}",
                             "value": None, "pass": None,
                             "note": sec.get("skipped") or sec.get("error") or "not measured"})
            for (method, variant), r in found.items():
                value = r.get(key)
                rows.append({"model": model, "section": section, "method": method, "variant": variant,
                             "target": f"{key} >= {threshold:g}", "value": value, "threshold": threshold,
                             "pass": None if value is None else bool(value >= threshold),
                             **({} if value is not None else {"note": r.get("error") or "no value"})})
    return rows


def summary(rows: list[dict]) -> list[str]:
    out = ["targets (docs/PERFORMANCE.md §1):"]
    for r in rows:
        what = f"{r['model']} {r.get('method', r['section'])}[{r.get('variant', '-')}] {r['target']}"
        if r["value"] is None:
            out.append(f"  {what}: -- ({r['note']})")
        else:
            out.append(f"  {what}: {r['value']:.3g} {'PASS' if r['pass'] else 'FAIL'}")
    return out


def main(argv=None) -> Path:
    a = parse_args(argv)
    budget = Budget(a.budget or None, start=T0)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device (use --device cpu --tiny for a CPU check)")
    registration = load_builtins()
    env = environment(device)
    peers = {name: peer_import(name)[1] for name in ("captum", "pytorch_grad_cam")}
    settings = {k: v for k, v in vars(a).items() if k not in ("out", "out_dir")}
    models = [m for m in a.models.split(",") if m]
    sections = [s for s in a.sections.split(",") if s in PER_MODEL]
    unknown = [s for s in a.sections.split(",") if s and s not in SECTIONS]
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    out = Path(a.out) if a.out else Path(a.out_dir) / (
        f"gpu-{slug(env['device_name']) if device.type == 'cuda' else 'cpu'}-{env['date']}.json")
    doc = ResultsFile(out, {"meta": {**env, "registration": registration, "weights": "random",
                                     "peers": peers, "settings": settings},
                            "models": {}, "targets": []})
    text = out.with_suffix(".txt")
    text.write_text("")

    def log(msg: str) -> None:
        print(msg, flush=True)
        with text.open("a") as f:
            f.write(msg + "\n")

    log(f"{env['device_name']} ({device}), torch {env['torch']}, built-ins from the {registration}; "
        f"budget {a.budget or 'none'} s; writing {out}")
    for _ in models:
        for s in sections:
            budget.plan(WEIGHTS[s])
    for name in models:
        entry = doc.data["models"].setdefault(name, {})
        loaded = guarded(lambda: {"model": get_model(name, weights="random", device=str(device))})
        if "error" in loaded:
            entry["error"] = loaded
            log(f"{name}: {loaded['error']}")
            for s in sections:
                budget.allot(WEIGHTS[s])
            continue
        model = loaded["model"]
        x, t = random_inputs(model, max(a.batch, a.occlusion_images, a.torchray_batch), a.size)
        xf, _ = random_inputs(model, a.forward_batch, a.size, seed=1)
        xb, tb = x[:a.batch], t[:a.batch]
        entry["input_size"] = list(x.shape[-2:])
        fb: dict = {}
        fwd: dict = {}
        log(f"{name}, input {tuple(x.shape[-2:])}, batch {a.batch}:")
        for s in sections:
            allot = budget.allot(WEIGHTS[s])
            if budget.remaining() < 3.0 or allot < 1.0:
                entry[s] = {"skipped": f"time budget spent ({budget.elapsed():.0f} of {a.budget:g} s)"}
                log(f"  {s}: {entry[s]['skipped']}")
                doc.save()
                continue
            entry[s] = {}
            run: Callable[[], dict] = {
                "ceilings": lambda: ceilings(model, xb, tb, xf, warmup=a.warmup, repeats=a.ceiling_repeats,
                                             max_s=allot),
                "backprop": lambda: backprop_section(
                    model, xb, tb, entry[s], doc.save, fb=fb, methods=BACKPROP_METHODS, warmup=a.warmup,
                    repeats=a.repeats, max_s=allot, log=log),
                "occlusion": lambda: occlusion_section(
                    model, x[:a.occlusion_images], t[:a.occlusion_images], entry[s], doc.save, fwd=fwd,
                    per_eval=a.per_eval, methods=OCCLUSION_METHODS, warmup=max(1, a.warmup - 1),
                    repeats=max(1, a.repeats // 2), max_s=allot, log=log),
                "mask": lambda: mask_section(
                    model, xb, tb, entry[s], doc.save, fb=fb, steps=a.steps, max_steps=a.max_steps,
                    probe=a.probe, loop_images=a.loop_images, repeats=max(1, a.repeats // 2),
                    warmup=a.warmup > 0, max_s=allot, log=log),
                "isolation": lambda: isolation_section(model, xb, tb, repeats=a.repeats, max_s=allot),
                "torchray": lambda: torchray_section(
                    model, x[:a.torchray_batch], t[:a.torchray_batch], entry[s], doc.save, masks=a.rise_masks,
                    ep_steps=a.ep_steps, torchray_images=a.torchray_loop_images, warmup=min(1, a.warmup),
                    max_s=allot, log=log),
                "profile": lambda: profile_section(
                    model, xb, tb, entry[s], doc.save, occlusion_images=a.occlusion_images,
                    forward_batch=a.forward_batch, per_eval=a.per_eval, max_s=allot, log=log),
            }[s]
            t0 = time.perf_counter()
            r = guarded(run)
            if s in ("ceilings", "isolation"):
                entry[s] = r
            elif "error" in r:  # keep what the section measured before it failed
                entry[s].update(r)
            entry[s]["seconds"] = time.perf_counter() - t0
            if s == "ceilings" and "error" not in r:
                for kind, rates in (("forward_backward", fb), ("forward", fwd)):
                    rates.update({p: r[kind][f"{p}_channels_last"].get("images_per_s") for p in ("fp32", "bf16")})
                    log(f"  {kind}: " + ", ".join(f"{k} {v['images_per_s']:.4g}" if "images_per_s" in v
                                                  else f"{k} {v.get('error')}" for k, v in r[kind].items())
                        + " images/s")
            elif "error" in r:
                log(f"  {s}: {r['error']}")
            elif s == "isolation":
                log(f"  isolation: {describe_isolation(r)}")
            doc.data["targets"] = evaluate_targets(doc.data["models"])
            doc.data["meta"]["elapsed_s"] = budget.elapsed()
            doc.save()
        del model, x, xf, xb, tb
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "e2e" in a.sections.split(","):
        import shutil
        import tempfile

        work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="saliency-bench-e2e-"))
        doc.data["e2e"] = {}
        log(f"end to end (saliency-bench run, {a.e2e_images} images, batch {a.e2e_batch}):")
        t0 = time.perf_counter()
        r = guarded(lambda: e2e_section(doc.data["e2e"], doc.save, device=device, work=work, images=a.e2e_images,
                                        batch=a.e2e_batch, workers=a.e2e_workers, scoring_workers=a.scoring_workers,
                                        tiny=a.tiny, warmup=a.warmup, repeats=a.repeats,
                                        max_s=a.e2e_max_s or float("inf"), log=log))
        if "error" in r:
            doc.data["e2e"].update(r)
            log(f"  e2e: {r['error']}")
        doc.data["e2e"]["seconds"] = time.perf_counter() - t0
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    doc.data["targets"] = evaluate_targets(doc.data["models"])
    doc.data["meta"]["elapsed_s"] = budget.elapsed()
    doc.save()
    for msg in summary(doc.data["targets"]):
        log(msg)
    log(f"{budget.elapsed():.0f} s; wrote {out} and {text}")
    return out


if __name__ == "__main__":
    main()
