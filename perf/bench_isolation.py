"""The cost of isolation (issue 21): the guard's check after a method's batch beside the batch.

Every method call of a run is followed by :meth:`saliency_bench.isolation.Guard.verify`
(cheap checks of modes, hooks, identities, version counters and data pointers, one exact
fingerprint of every tensor's contents, the process-wide torch settings). This
times, interleaved round by round in one process, a backprop method's batch as the harness calls
it (:func:`saliency_bench.execute.call_method`) and the guard's verify of an unchanged model,
and reports their ratio; also the one-off cost of the pristine copy at load (``Guard(model)``)
and of a detected change (a weight scaled in place: named, compared and restored).

    python perf/bench_isolation.py --device cpu --models efficientnet_lite0,googlenet --batch 8
    python perf/bench_isolation.py --device cuda --batch 16      # on a GPU

Writes ``perf/results/isolation-<device>-<date>.json`` (``--out`` to change it). Random-weight
models; the device is synchronised before every clock read; medians of ``--repeats`` rounds.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from bench_common import ResultsFile, environment, load_builtins, random_inputs, slug
from saliency_bench.execute import call_method
from saliency_bench.isolation import Guard
from saliency_bench.registry import get_method, get_model
from saliency_bench.targets import Targets
from saliency_bench.timing import timed


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def isolation_section(model, x: torch.Tensor, t: torch.Tensor, *, methods=("gradient", "grad_cam"), repeats: int = 5,
                      max_s: float = float("inf")) -> dict:
    """The guard's verify of an unchanged model beside each method's batch, interleaved round by
    round (``t``: ``[B,1]`` classes); then one detected change (a weight scaled in place)."""
    device = x.device
    t0 = time.perf_counter()
    guard = Guard(model)
    load_s = time.perf_counter() - t0
    targets = Targets([tuple(r) for r in t.tolist()], device=device)
    calls = {m: get_method(m) for m in methods}
    for m in calls.values():  # warm-up
        call_method(m, model, x, targets)
        guard.verify()
    method_s: dict[str, list[float]] = {m: [] for m in calls}
    verify_s, verify_cpu_s = [], []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        for m, meth in calls.items():
            _, s, _ = timed(lambda: call_method(meth, model, x, targets), device)
            method_s[m].append(s)
            c0 = time.thread_time()
            what, s, _ = timed(guard.verify, device)
            verify_cpu_s.append(time.thread_time() - c0)
            assert what is None, what
            verify_s.append(s)
        if time.perf_counter() - start > max_s:
            break
    weight = next(p for p in model.net.parameters() if p.dim() == 4)
    with torch.no_grad():
        weight.mul_(2)
    what, restore_s, _ = timed(guard.verify, device)
    assert what and "modified in place" in what and guard.verify() is None
    out = {"batch": int(x.shape[0]), "parameters_and_buffers": sum(t.obj.numel() for t in guard.model.tensors),
           "tensors": len(guard.model.tensors), "modules": len(guard.model.modules),
           "pristine_copy_at_load_s": load_s, "verify_unchanged_ms": _median_ms(verify_s),
           "verify_unchanged_cpu_thread_ms": _median_ms(verify_cpu_s),
           "detect_and_restore_ms": 1e3 * restore_s, "rounds": len(verify_s) // max(1, len(calls)), "methods": {}}
    for m, times in method_s.items():
        ms = _median_ms(times)
        out["methods"][m] = {"batch_ms": ms, "verify_fraction": out["verify_unchanged_ms"] / ms}
    return out


def describe(r: dict) -> str:
    return (f"verify {r['verify_unchanged_ms']:.2f} ms (CPU thread {r['verify_unchanged_cpu_thread_ms']:.2f} ms), "
            f"detect+restore {r['detect_and_restore_ms']:.1f} ms, pristine copy {r['pristine_copy_at_load_s']:.2f} s; "
            + ", ".join(f"{m} batch {v['batch_ms']:.1f} ms ({100 * v['verify_fraction']:.2f}%)"
                        for m, v in r["methods"].items()))


def bench_model(name: str, methods: list[str], device: torch.device, batch: int, repeats: int) -> dict:
    model = get_model(name, weights="random", device=str(device))
    x, t = random_inputs(model, batch)
    return {"model": name, **isolation_section(model, x, t, methods=methods, repeats=repeats)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="efficientnet_lite0,googlenet")
    p.add_argument("--methods", default="gradient,grad_cam")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", help="results file (default: perf/results/isolation-<device>-<date>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    env = environment(device)
    registration = load_builtins()
    path = Path(args.out) if args.out else (Path(__file__).parent / "results" /
                                            f"isolation-{slug(env['device_name'])}-{env['date']}.json")
    res = ResultsFile(path, {"meta": env | {"registration": registration, "batch": args.batch,
                                            "repeats": args.repeats}, "models": []})
    for name in args.models.split(","):
        r = bench_model(name, args.methods.split(","), device, args.batch, args.repeats)
        res.data["models"].append(r)
        res.save()
        print(f"{name} (batch {args.batch}, {r['tensors']} tensors, {r['parameters_and_buffers'] / 1e6:.1f} M values): "
              + describe(r), flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
