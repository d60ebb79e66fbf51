"""End to end: a real ``saliency-bench run`` on synthetic ImageNet-size images written to disk,
beside the same method's speed in isolation, on the same machine in the same call.

The images are JPEGs of ImageNet's common sizes (500x375, 375x500, 500x333, 500x500 ...) with
one VOC XML of boxes each (``val/`` + ``bbox_val/``, a layout the ``imagenet`` adapter reads);
each shows a coloured rectangle (the box) on a noisy background. The pointing game plays on
the boxes (the union of the class's boxes, as TorchRay's VOC protocol), so every image is scored by
both benchmarks. Each method runs as its own
``saliency-bench run --device DEVICE --model googlenet --weights googlenet=random --benchmarks
localization,pointing`` over its own number of images (gradient and Grad-CAM on all of them,
occlusion and the mask, at a few iterations, on fewer), in a fresh process, as a user runs it.

Reported per method:

* ``harness_samples_per_s``: the samples (each image, scored by both benchmarks) over the run's own pass (the store's ``started`` to
  ``finished``: model, loading, the method, scoring, the store, the summaries), and the
  ``wall_s`` of the whole process (its start-up and the leaderboard included);
* ``isolated_samples_per_s``: the method's ``explain`` alone on a batch of random inputs of the
  run's batch size, in this process; ``efficiency`` = harness / isolated (1: the harness costs
  nothing beyond the method);
* where the time went: ``startup_s`` (wall before the pass and after it), ``method_s`` (the
  method's calls, the store's timings), ``rest_of_pass_s`` (loading waits, scoring, the store);
* ``cpu_cores_used``: the CPU seconds of the run's process and its children (loader and
  scoring workers) over its wall seconds, beside the cores present and the workers given.

``python perf/bench_e2e.py --cli ARGS`` is the launcher: ``saliency-bench ARGS`` with the
built-in plugins registered from the source tree when the package is not installed.
"""
from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: ImageNet val's most common sizes (width, height).
SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (333, 500), (500, 400), (400, 500))


# --------------------------------------------------------------------------------------------
# The data set on disk
# --------------------------------------------------------------------------------------------
def _write_one(args: tuple) -> None:
    from PIL import Image

    root, i, wnid, scale, seed, sizes = args
    rng = np.random.default_rng(seed + i)
    w, h = sizes[i % len(sizes)]
    w, h = max(16, int(w * scale)), max(16, int(h * scale))
    img = (rng.integers(0, 64, (h, w, 3), dtype=np.uint8) + rng.integers(0, 128, 3, dtype=np.uint8)).astype(np.uint8)
    bw, bh = int(rng.integers(w // 4, w * 3 // 4)), int(rng.integers(h // 4, h * 3 // 4))
    x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    img[y1:y1 + bh, x1:x1 + bw] = rng.integers(128, 256, 3, dtype=np.uint8)
    stem = f"ILSVRC2012_val_{i + 1:08d}"
    Image.fromarray(img).save(Path(root) / "val" / f"{stem}.JPEG", quality=90)
    (Path(root) / "bbox_val" / f"{stem}.xml").write_text(
        f"<annotation><folder>val</folder><filename>{stem}.JPEG</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<object><name>{wnid}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x1 + bw - 1}</xmax><ymax>{y1 + bh - 1}</ymax></bndbox></object></annotation>\n")


def write_dataset(root: Path, n: int, *, scale: float = 1.0, seed: int = 0, procs: int | None = None,
                  sizes: tuple[tuple[int, int], ...] = SIZES) -> dict:
    """``n`` JPEGs + VOC XMLs under ``root`` (kept if already there with ``n`` images), of the
    ``sizes`` (width, height) in turn."""
    from saliency_bench.labels import imagenet_classes

    root = Path(root)
    (root / "val").mkdir(parents=True, exist_ok=True)
    (root / "bbox_val").mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if len(list((root / "val").glob("*.JPEG"))) != n:
        wnids = [c.wnid for c in imagenet_classes()]
        jobs = [(str(root), i, wnids[(i * 7919) % len(wnids)], scale, seed, tuple(sizes)) for i in range(n)]
        procs = procs or max(1, min(16, os.cpu_count() or 1))
        if procs > 1 and n > 64:
            with ProcessPoolExecutor(procs) as ex:
                list(ex.map(_write_one, jobs, chunksize=32))
        else:
            for j in jobs:
                _write_one(j)
    return {"images": n, "scale": scale, "seconds": time.perf_counter() - t,
            "bytes": sum(p.stat().st_size for p in (root / "val").iterdir())}


# --------------------------------------------------------------------------------------------
# The run, in a fresh process
# --------------------------------------------------------------------------------------------
def register_source_tree() -> str:
    """Every entry point pyproject.toml names, registered from the source tree when the package
    is not installed (methods/, datasets/ and packs/ made the packages the install would map)."""
    import importlib
    import importlib.util
    import tomllib

    from saliency_bench import registry

    if "imagenet" in registry.datasets.names() and "gradient" in registry.methods.names():
        return "entry points"
    for pkg, folder in (("saliency_bench.methods", "methods"), ("saliency_bench.datasets", "datasets"),
                        ("saliency_bench.packs", "packs")):
        try:
            importlib.import_module(pkg)
        except ModuleNotFoundError:
            spec = importlib.util.spec_from_file_location(pkg, ROOT / folder / "__init__.py",
                                                          submodule_search_locations=[str(ROOT / folder)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[pkg] = module
            spec.loader.exec_module(module)
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, eps in groups.items():
        reg = registry.REGISTRIES[group.split(".", 1)[1]]
        for name, target in eps.items():
            mod_name, _, attr = target.partition(":")
            obj = importlib.import_module(mod_name)
            obj = getattr(obj, attr) if attr else obj
            reg.add_from(obj, f"source tree {target}", default_name=name)
    return "source tree"


def run_cli(args: list[str], env: dict | None = None, timeout: float = 600) -> dict:
    """``saliency-bench ARGS`` in a fresh process: wall seconds, CPU seconds of it and its
    children, its output's tail."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cli", *args], capture_output=True,
                              text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"returncode": None, "wall_s": time.perf_counter() - t,
                "error": f"stopped after {timeout:.0f} s (the section's time allowance)"}
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"returncode": done.returncode, "wall_s": wall, "cpu_s": cpu, "cpu_cores_used": cpu / wall}
    if done.returncode != 0:
        out["error"] = (done.stdout[-1500:] + done.stderr[-1500:]).strip()
    return out


def pass_of(runs: Path) -> dict:
    """The run's pass (store's started..finished) and its method calls' seconds (timings)."""
    con = sqlite3.connect(runs / "store.sqlite")
    try:
        started, finished = con.execute("SELECT started, finished FROM runs").fetchone()
        method_s = con.execute("SELECT COALESCE(SUM(seconds), 0) FROM timings").fetchone()[0]
        ok, total = con.execute("SELECT SUM(ok), COUNT(*) FROM outcomes").fetchone()
        records = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    finally:
        con.close()
    return {"pass_s": finished - started, "method_s": method_s, "outcomes_ok": ok, "outcomes": total,
            "records": records}


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------
#: (method, images in the full run, its parameters as -p options, the same for --tiny)
PLAN = (("gradient", 1.0, {}, {}),
        ("grad_cam", 1.0, {}, {}),
        ("occlusion", 64, {}, {"per_side": 3}),
        ("mask", 512, {"iterations": 20}, {"iterations": 2}))


def isolated(name: str, params: dict, device, batch: int, warmup: int, repeats: int) -> dict:
    """The method alone at the run's batch size on random inputs: images per second."""
    from bench_common import measure, random_inputs
    from saliency_bench.registry import get_method, get_model

    model = get_model("googlenet", weights="random", device=str(device))
    x, t = random_inputs(model, batch)
    method = get_method(name, **params)
    r = measure(lambda: method.explain(model, x, t), device, warmup=warmup, repeats=repeats, images=batch)
    return {"samples_per_s": r["images_per_s"], "batch": batch, "repeats": r["repeats"]}


def e2e_section(out: dict, save: Callable[[], None], *, device, work: Path, images: int, batch: int,
                workers: int, scoring_workers: int | None, tiny: bool, warmup: int, repeats: int,
                max_s: float = float("inf"), log: Callable[[str], None] = print) -> dict:
    t0 = time.perf_counter()
    scale = 0.25 if tiny else 1.0
    out["registration"] = register_source_tree()  # the datasets package too, from a source tree
    out["dataset"] = write_dataset(work / "imagenet", images, scale=scale)
    from saliency_bench.scoring import cores, default_workers

    out["cores"] = cores()
    out["loader_workers"] = workers
    out["scoring_workers"] = default_workers(workers) if scoring_workers is None else scoring_workers
    log(f"  e2e: {images} JPEGs ({'x'.join(map(str, SIZES[0]))} and other ImageNet sizes"
        f"{', scaled by %g' % scale if scale != 1 else ''}) in {out['dataset']['seconds']:.1f} s; "
        f"{out['cores']} cores, {workers} loader workers, {out['scoring_workers']} scoring workers")
    save()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    if not tiny:  # the scoring kernels compiled and cached on disk once, before the timed runs
        warm = ["run", "--device", str(device), "--model", "googlenet", "--weights", "googlenet=random",
                "--dataset", f"imagenet:{work / 'imagenet'}", "--limit", "4", "--methods", "center",
                "--benchmarks", "localization,pointing", "--workers", "0", "--scoring-workers", "0",
                "--runs-dir", str(work / "runs-warmup"), "--quiet"]
        out["warmup_run"] = run_cli(warm, env)
        log(f"  e2e warm-up run (numba kernels compiled and cached): {out['warmup_run']['wall_s']:.1f} s")
    out["methods"] = {}
    for name, share, full_params, tiny_params in PLAN:
        params = tiny_params if tiny else full_params
        n = images if isinstance(share, float) else min(images, int(share))
        if tiny:
            n = min(images, 4 if name in ("occlusion", "mask") else images)
        if time.perf_counter() - t0 > max_s:
            out["methods"][name] = {"skipped": f"time allowance spent ({max_s:.0f} s)"}
            log(f"  e2e {name}: {out['methods'][name]['skipped']}")
            continue
        runs = work / f"runs-{name}"
        args = ["run", "--device", str(device), "--model", "googlenet", "--weights", "googlenet=random",
                "--dataset", f"imagenet:{work / 'imagenet'}",
                "--limit", str(n), "--methods", name,
                "--benchmarks", "localization,pointing", "--batch-size", str(batch), "--workers", str(workers),
                "--runs-dir", str(runs), "--quiet"]
        if scoring_workers is not None:
            args += ["--scoring-workers", str(scoring_workers)]
        for k, v in params.items():
            args += ["-p", f"{name}.{k}={v}"]
        r: dict = {"images": n, "params": params, "command": "saliency-bench " + " ".join(args)}
        left = max_s - (time.perf_counter() - t0)
        r.update(run_cli(args, env, timeout=min(1800.0, left + 60.0)))
        if "error" not in r:
            r.update(pass_of(runs))
            r["samples"] = n  # each image scored by localization and by pointing
            r["harness_samples_per_s"] = r["samples"] / r["pass_s"]
            r["startup_s"] = r["wall_s"] - r["pass_s"]
            r["rest_of_pass_s"] = r["pass_s"] - r["method_s"]
            try:
                r["isolated"] = isolated(name, params, device, batch, warmup, repeats)
                r["efficiency"] = r["harness_samples_per_s"] / r["isolated"]["samples_per_s"]
            except Exception as e:  # the run's numbers stay
                r["isolated"] = {"error": f"{type(e).__name__}: {e}"}
            eff = f", efficiency {r['efficiency']:.2f}" if "efficiency" in r else ""
            log(f"  e2e {name}: {n} images, {r['harness_samples_per_s']:.4g} samples/s in the harness"
                f" ({r['isolated'].get('samples_per_s', float('nan')):.4g} alone{eff}); wall {r['wall_s']:.1f} s ="
                f" start-up {r['startup_s']:.1f} + method {r['method_s']:.1f} + rest of pass"
                f" {r['rest_of_pass_s']:.1f}; {r['cpu_cores_used']:.1f} CPU cores busy")
        else:
            log(f"  e2e {name}: failed: {r['error'][-400:]}")
        out["methods"][name] = r
        save()
    out["seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cli":
        sys.path.insert(0, str(HERE))
        register_source_tree()
        from saliency_bench.cli import main as cli

        sys.exit(cli(sys.argv[2:]))
    raise SystemExit("bench_gpu.py --sections e2e runs this section; --cli ARGS is the launcher")


if __name__ == "__main__":
    main()
