"""Two commits' whole runs, interleaved: ms per sample beyond start-up of
``saliency-bench run --methods center --benchmarks localization`` for commit A and commit B, in
the same rounds, beside PIL's decode + resize of the same images.

A whole run on a shared or throttled machine can swing by 2x between consecutive runs, so a
change to the harness shows only when both sides run turn by turn. Each round runs, for A then
B, a run over ``--short`` and one over ``--full`` images in fresh processes (each tree's own
code, ``PYTHONPATH`` set to it) and times PIL; per sample = (full - short) / (full - short
images), in wall time and in the CPU time of the run and its workers. The medians over the rounds are printed and written to ``--out`` (JSON)::

    python perf/ab_run.py --a 3b97f0a --b HEAD --data imagenet:../shared/data/imagenet-val-300 \\
        --rounds 3 --out perf/results/ab-<date>.json

``--steady`` times each run from inside instead (``perf/steady_boot.py`` wraps the runner's batch
step): per sample = the time from the end of the first batch to the end of the next-to-last, over
the samples in between, in wall time and in the main process's CPU time. One run per side and
round, and no start-up in the difference: a second or so of start-up noise no longer lands on 270
samples. A whole run costs what the steady rate says plus start-up and the pass's set-up.

``--a``/``--b`` are commits (checked out into temporary worktrees) or folders holding a tree.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree(spec: str, scratch: Path) -> tuple[Path, str]:
    """A folder with the code of ``spec`` (a folder, or a commit checked out as a worktree)."""
    if Path(spec).is_dir():
        return Path(spec).resolve(), spec
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", spec], check=True, capture_output=True,
                         text=True).stdout.strip()
    where = scratch / sha[:12]
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), sha], check=True,
                   capture_output=True)
    return where, sha


def _trees(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, tuple[Path, str]], list[Path]]:
    """``{"a": (folder, name), "b": ...}`` for ``args.a`` and ``args.b``, and the worktrees made
    for them under ``scratch`` (to remove at the end)."""
    trees, made = {}, []
    for side in ("a", "b"):
        path, name = _tree(getattr(args, side), scratch)
        trees[side] = (path, name)
        if path.is_relative_to(scratch):
            made.append(path)
    return trees, made


def _remove(made: list[Path], scratch: Path) -> None:
    """Remove the worktrees :func:`_trees` made, and ``scratch``."""
    for path in made:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
    if made:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
    shutil.rmtree(scratch, ignore_errors=True)


def _run(tree: Path, dataset: str, n: int, runs: Path, extra: list[str], marks: Path | None = None
         ) -> tuple[float, float]:
    """Wall seconds of the run, and the CPU seconds of it and every process it waited for
    (loader and scoring workers included): the CPU is steadier than the wall time where other
    jobs share the machine. With ``marks``, the run goes through ``steady_boot.py``, which writes
    the end of each batch there."""
    head = [sys.executable, str(ROOT / "perf" / "steady_boot.py")] if marks else [sys.executable, "-m", "saliency_bench"]
    args = [*head, "run", "--dataset", dataset, "--limit", str(n), "--methods",
            "center", "--benchmarks", "localization", "--device", "cpu", "--runs-dir", str(runs), "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(tree), **({"AB_MARKS": str(marks)} if marks else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"run failed in {tree}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _steady(marks: Path) -> tuple[float, float]:
    """ms per sample, wall and the main process's CPU, from the end of the first batch to the end
    of the one before the last (a pass's first batch waits for the loader to start, its last one
    may be short)."""
    m = json.loads(marks.read_text())
    if len(m) < 3:
        raise SystemExit(f"--steady needs at least 3 batches in a run, got {len(m)}: raise --full or lower "
                         "the batch size (--run-arg=--batch-size=N)")
    n = sum(x[2] for x in m[1:-1])
    return (m[-2][0] - m[0][0]) / n * 1e3, (m[-2][1] - m[0][1]) / n * 1e3


def _pil_ms(images: Path, n: int) -> float:
    from saliency_bench.imageio import load_rgb, to_input

    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:n]
    t = time.perf_counter()
    for f in files:
        to_input(load_rgb(f), (224, 224))
    return (time.perf_counter() - t) / max(len(files), 1) * 1e3


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="commit or folder: the code before")
    ap.add_argument("--b", required=True, help="commit or folder: the code after")
    ap.add_argument("--data", required=True, help="the run's --dataset, NAME:PATH")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--short", type=int, default=30)
    ap.add_argument("--full", type=int, default=300)
    ap.add_argument("--run-arg", action="append", default=[], help="an extra argument for both runs (repeatable)")
    ap.add_argument("--no-warm-up", action="store_true", help="skip the first short run of each side (it fills the numba caches)")
    ap.add_argument("--steady", action="store_true",
                    help="time each run's batches from inside (perf/steady_boot.py): ms per sample between the "
                         "first and the next-to-last batch, wall and main-process CPU; no short runs")
    ap.add_argument("--out", help="JSON file to write")
    args = ap.parse_args(argv)
    if not args.steady and args.full <= args.short:
        ap.error("--full must be larger than --short")
    given = args.data  # as the user wrote it, for the results file (no machine's absolute path)
    name, _, path = args.data.partition(":")
    images = Path(path).resolve()  # the runs start in each tree, not here
    args.data = f"{name}:{images}"
    scratch = Path(tempfile.mkdtemp(prefix="ab-run-"))
    made: list[Path] = []
    try:
        trees, made = _trees(args, scratch)
        for side, (path, _) in trees.items():
            if not args.no_warm_up:
                _run(path, args.data, args.short, scratch / f"warm-{side}", args.run_arg)  # numba caches filled
        rows: dict[str, list[dict]] = {"a": [], "b": []}
        for r in range(args.rounds):
            for side, (path, _) in trees.items():
                out = scratch / f"{side}-{r}"
                if args.steady:
                    out.mkdir(parents=True, exist_ok=True)
                    full, full_cpu = _run(path, args.data, args.full, out / "full", args.run_arg, out / "marks.json")
                    per, cpu = _steady(out / "marks.json")
                    extra = {"run_s": full, "run_cpu_s": full_cpu}
                    what = "of the main process's CPU, steady"
                else:
                    short, short_cpu = _run(path, args.data, args.short, out / "short", args.run_arg)
                    full, full_cpu = _run(path, args.data, args.full, out / "full", args.run_arg)
                    per = (full - short) / (args.full - args.short) * 1e3
                    cpu = (full_cpu - short_cpu) / (args.full - args.short) * 1e3
                    extra = {"startup_s": short - args.short * per / 1e3}
                    what = "of CPU"
                pil = _pil_ms(images, args.full)
                rows[side].append({"ms_per_sample": per, "cpu_ms_per_sample": cpu, "pil_ms": pil,
                                   "over_pil": per / pil, **extra})
                print(f"round {r} {side}: {per:.2f} ms per sample ({cpu:.2f} ms {what}), PIL {pil:.2f} ms, "
                      f"{per / pil:.2f}x", flush=True)
                shutil.rmtree(out, ignore_errors=True)

        def median(side: str, key: str) -> float:
            v = sorted(x[key] for x in rows[side])
            return v[len(v) // 2]

        result = {"data": given, "rounds": args.rounds,
                  "samples": [args.full] if args.steady else [args.short, args.full],
                  "mode": "steady: batches timed inside the run, the main process's CPU" if args.steady
                  else "whole runs: full minus short, the CPU of the run and its workers",
                  "run_args": args.run_arg, "machine": platform.machine(),
                  "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                  "date": time.strftime("%Y-%m-%d"),
                  **{side: {"code": trees[side][1], "rounds": rows[side],
                            "median_ms_per_sample": median(side, "ms_per_sample"),
                            "median_cpu_ms_per_sample": median(side, "cpu_ms_per_sample"),
                            "median_over_pil": median(side, "over_pil")} for side in rows}}
        result["b_speedup_over_a"] = result["a"]["median_ms_per_sample"] / result["b"]["median_ms_per_sample"]
        result["b_cpu_saving_over_a"] = (result["a"]["median_cpu_ms_per_sample"]
                                         / result["b"]["median_cpu_ms_per_sample"])
        print(f"median CPU: a {result['a']['median_cpu_ms_per_sample']:.2f} ms, "
              f"b {result['b']['median_cpu_ms_per_sample']:.2f} ms per sample")
        print(f"median: a {result['a']['median_ms_per_sample']:.2f} ms ({result['a']['median_over_pil']:.2f}x PIL), "
              f"b {result['b']['median_ms_per_sample']:.2f} ms ({result['b']['median_over_pil']:.2f}x PIL): "
              f"b is {result['b_speedup_over_a']:.2f}x a")
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        return result
    finally:
        _remove(made, scratch)


if __name__ == "__main__":
    main()
