"""Throughput of the backprop methods beside the model's own forward+backward (PROTOCOLS.md §4).

    python benchmarks/bench_backprop.py --model googlenet --batch 64 --device cuda

Prints one JSON record per method and writes them all to ``--out`` (default
``benchmarks/results/backprop-<device>-<date>.json``). Random-weight models (speed does not
depend on weights); the device is synchronised before every clock read; the median over
``--repeats`` timed runs after ``--warmup`` runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
from pathlib import Path

import torch

from saliency_bench.benchmarks.runtime import timed as timed_call
from saliency_bench.registry import get_method, get_model
from saliency_bench.targets import as_target_tensor, target_score

METHODS = ["gradient", "guided_backprop", "grad_cam", "excitation_backprop",
           "contrastive_excitation_backprop", "center"]


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each repeat after the warm-up, the device synchronised around each."""
    for _ in range(warmup):
        fn()
    return [timed_call(fn, device)[1] for _ in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out")
    args = ap.parse_args()

    device = torch.device(args.device)
    model = get_model(args.model, weights="random", device=args.device)
    h, w = model.input_size
    x = torch.randn(args.batch, 3, h, w, device=device)
    targets = as_target_tensor(torch.randint(0, 1000, (args.batch,)), device=device)

    def ceiling():  # the model's own forward + backward to the input, the backprop ceiling
        xx = x.detach().requires_grad_()
        torch.autograd.grad(target_score(model.net(xx), targets).sum(), xx)

    records = []

    def record(name: str, times: list[float], ref: float | None) -> dict:
        med = statistics.median(times)
        r = {"method": name, "model": args.model, "batch": args.batch, "device": str(device),
             "images_per_s": args.batch / med, "ms_per_image": 1000 * med / args.batch,
             "spread_ms_per_image": 1000 * (max(times) - min(times)) / args.batch,
             "repeats": len(times)}
        if ref is not None:
            r["fraction_of_forward_backward"] = r["images_per_s"] / ref
        if device.type == "cuda":
            r["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        print(json.dumps(r), flush=True)
        records.append(r)
        return r

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = record("forward+backward", timed(ceiling, device, args.warmup, args.repeats), None)
    for name in args.methods.split(","):
        method = get_method(name)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        record(name, timed(lambda: method.explain(model, x, targets), device, args.warmup, args.repeats),
               base["images_per_s"])

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    meta = {"date": datetime.date.today().isoformat(), "device": str(device), "device_name": gpu,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "input_size": [h, w],
            "weights": "random"}
    out = Path(args.out or Path(__file__).parent / "results" /
               f"backprop-{device.type}-{meta['date']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": records}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
