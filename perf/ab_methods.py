"""Two commits' backprop methods, turn by turn: each method's fraction of the model's
forward+backward for commit A and commit B, in alternate processes.

A change to a method's rules shows on a shared CPU only when both codes run in the same minutes.
Each round runs, for A then B, one process that times forward+backward and every method,
interleaved call by call (``--calls`` calls each, thread CPU time, after two warm-up calls), and
reports the medians. Each process imports its own tree's ``saliency_bench`` *and* ``methods/``:
an installed (editable) distribution would otherwise serve ``saliency_bench.methods`` from the
install, so the child hides it (``bench_common.HIDE_INSTALL``) and checks where the methods came
from::

    python perf/ab_methods.py --a ee85978 --b HEAD --model googlenet --size 112 --batch 4 \\
        --rounds 3 --out perf/results/ab-methods-<date>.json

``--a``/``--b`` are commits (checked out into temporary worktrees) or folders holding a tree.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ab_run import _remove, _trees

METHODS = ("gradient", "guided_backprop", "excitation_backprop", "contrastive_excitation_backprop")


def side(tree: Path, model_name: str, size: int | None, batch: int, calls: int, methods: list[str]) -> dict:
    """In the child: time forward+backward and ``methods`` on ``tree``'s code."""
    sys.path[:0] = [str(tree), str(tree / "perf")]
    import torch

    torch.set_num_threads(1)
    from bench_common import forward_backward, load_builtins, random_inputs

    registration = load_builtins()
    import saliency_bench.methods as ours
    from saliency_bench.registry import get_method, get_model

    if not Path(ours.__file__).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the methods came from {ours.__file__}, not from {tree}")
    model = get_model(model_name, weights="random", device="cpu")
    x, t = random_inputs(model, batch, size)
    fns = {"forward+backward": lambda: forward_backward(model, x, t)}
    for n in methods:
        m = get_method(n)
        fns[n] = lambda m=m: m.explain(model, x, t)
    for f in fns.values():
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(calls):
        for k, f in fns.items():
            c0 = time.thread_time()
            f()
            times[k].append(time.thread_time() - c0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"registration": registration, "methods_from": str(Path(ours.__file__).resolve().parent), "median_s": med,
            "fraction_of_forward_backward": {k: med["forward+backward"] / med[k] for k in methods}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", help="commit or folder: the code before")
    ap.add_argument("--b", help="commit or folder: the code after")
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--size", type=int, help="input side (default: the model's)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--calls", type=int, default=12, help="timed calls of each, per process")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", help="JSON file to write")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # the child: one tree's timings, as JSON
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if args.side:
        print(json.dumps(side(Path(args.side), args.model, args.size, args.batch, args.calls, methods)))
        return {}
    if not (args.a and args.b):
        ap.error("--a and --b are required")
    from bench_common import HIDE_INSTALL  # here only: a child imports its own tree's, after its path is set

    scratch = Path(tempfile.mkdtemp(prefix="ab-methods-"))
    (scratch / "site").mkdir()
    (scratch / "site" / "sitecustomize.py").write_text(HIDE_INSTALL)
    made: list[Path] = []
    try:
        trees, made = _trees(args, scratch)
        rows: dict[str, list[dict]] = {"a": [], "b": []}
        child = list(argv if argv is not None else sys.argv[1:])
        for r in range(args.rounds):
            for s, (path, _) in trees.items():
                done = subprocess.run([sys.executable, __file__, "--side", str(path), *child], capture_output=True,
                                      text=True, env={**os.environ, "PYTHONPATH": str(scratch / "site")})
                if done.returncode != 0:
                    raise SystemExit(f"side {s} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
                rows[s].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {s}: " + ", ".join(
                    f"{k} {v:.3f}" for k, v in rows[s][-1]["fraction_of_forward_backward"].items()), flush=True)
        medians = {s: {m: statistics.median(x["fraction_of_forward_backward"][m] for x in rows[s]) for m in methods}
                   for s in rows}
        out = {"meta": {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": os.cpu_count(),
                        "load_average_end": os.getloadavg(), "a": trees["a"][1], "b": trees["b"][1],
                        "model": args.model, "size": args.size, "batch": args.batch, "calls": args.calls,
                        "rounds": args.rounds, "threads": 1},
               "rounds": rows, "median_fraction_of_forward_backward": medians}
        for m in methods:
            print(f"{m}: {medians['a'][m]:.3f} -> {medians['b'][m]:.3f} of forward+backward")
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        return out
    finally:
        _remove(made, scratch)


if __name__ == "__main__":
    main()
