"""Speed of the perturbation methods against the model's own ceiling, in one run.

For ``mask`` (meaningful perturbation, Fong & Vedaldi 2017) the ceiling is ``iterations`` x the
model's forward+backward at the same batch size ("efficiency" = ceiling time / method time), and
the peer is the published way of running it: one image at a time. For ``occlusion`` the ceiling
is forward-only over the 784 masked copies per image.

    python benchmarks/bench_perturbation.py                        # CPU, small settings
    python benchmarks/bench_perturbation.py --device cuda --model googlenet --batch 64 \\
        --iterations 300 --amp --channels-last

Writes ``benchmarks/results/perturbation-<device>-<date>.json``. Random weights are used (speed
does not depend on them), so no file is needed. The timed region synchronises the device
before reading the clock.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from saliency_bench.benchmarks.runtime import timed as timed_call
from saliency_bench.registry import get_method, get_model
from saliency_bench.targets import target_probability


def timed(fn, device: str, repeats: int) -> list[float]:
    """Seconds of each repeat, the device synchronised around each."""
    return [timed_call(fn, torch.device(device))[1] for _ in range(repeats)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="googlenet")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iterations", type=int, default=10, help="mask iterations (the method's default is 300)")
    p.add_argument("--loop-images", type=int, default=2, help="images for the one-at-a-time peer")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--occlusion-batch", type=int, default=1)
    p.add_argument("--chunk", type=int, default=64, help="masked copies per forward pass (occlusion)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the network")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    model = get_model(a.model, weights="random", device=a.device)
    if a.channels_last:
        model.net.to(memory_format=torch.channels_last)
    if a.compile:
        model.net = torch.compile(model.net)
    h, w = model.input_size
    g = torch.Generator().manual_seed(0)
    x_all = torch.randn(max(a.batch, a.loop_images, a.occlusion_batch), 3, h, w, generator=g).to(a.device)
    if a.channels_last:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    t_all = torch.randint(0, 1000, (len(x_all), 1), generator=g).to(a.device)
    x, t = x_all[:a.batch], t_all[:a.batch]
    amp = torch.autocast(device_type=torch.device(a.device).type, dtype=torch.bfloat16, enabled=a.amp)

    def fwd_bwd(xb, tb):
        xb = xb.detach().requires_grad_(True)
        with torch.enable_grad(), amp:
            f = target_probability(model.net(xb).float(), tb).sum()
        torch.autograd.grad(f, xb)

    def fwd(xb):
        with torch.no_grad(), amp:
            model.net(xb)

    res: dict = {"date": dt.date.today().isoformat(), "device": a.device, "model": a.model,
                 "torch": torch.__version__, "platform": platform.platform(), "threads": torch.get_num_threads(),
                 "settings": vars(a), "load_average_start": os.getloadavg()}
    if a.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name()

    # -- ceiling: forward+backward at the batch size ---------------------------------------------
    fwd_bwd(x, t)
    fb = statistics.median(timed(lambda: fwd_bwd(x, t), a.device, max(3, a.repeats)))
    res["forward_backward"] = {"batch": a.batch, "s": fb, "images_per_s": a.batch / fb}

    # -- mask, batched ----------------------------------------------------------------------------
    mask = get_method("mask", iterations=a.iterations, amp=a.amp)
    mask.explain(model, x, t)  # warm-up (and compilation)
    ts = timed(lambda: mask.explain(model, x, t), a.device, a.repeats)
    m = statistics.median(ts)
    ceiling = a.iterations * fb
    res["mask_batched"] = {"batch": a.batch, "iterations": a.iterations, "s": m, "spread_s": [min(ts), max(ts)],
                           "images_per_s": a.batch / m, "efficiency_vs_iterations_x_fwd_bwd": ceiling / m}
    if a.device.startswith("cuda"):
        res["mask_batched"]["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30

    # -- mask, one image at a time (how the published code runs) ----------------------------------
    n = a.loop_images

    def loop():
        for i in range(n):
            mask.explain(model, x_all[i:i + 1], t_all[i:i + 1])

    lt = statistics.median(timed(loop, a.device, 1))
    res["mask_per_image_loop"] = {"images": n, "s": lt, "images_per_s": n / lt}
    res["mask_speedup_vs_loop"] = res["mask_batched"]["images_per_s"] / res["mask_per_image_loop"]["images_per_s"]

    # -- occlusion vs 784 forwards ----------------------------------------------------------------
    ob = a.occlusion_batch
    xo, to = x_all[:ob], t_all[:ob]
    occ = get_method("occlusion", chunk=a.chunk)
    copies = 784 * ob
    xc = x_all[:1].expand(a.chunk, -1, -1, -1).contiguous()
    fwd(xc)
    fo = statistics.median(timed(lambda: fwd(xc), a.device, max(3, a.repeats)))
    fwd_784 = fo * copies / a.chunk
    occ.explain(model, xo, to)
    ot = statistics.median(timed(lambda: occ.explain(model, xo, to), a.device, a.repeats))
    res["forward_only"] = {"batch": a.chunk, "s": fo, "images_per_s": a.chunk / fo}
    res["occlusion"] = {"images": ob, "copies": copies, "s": ot, "images_per_s": ob / ot,
                        "efficiency_vs_784_forwards": fwd_784 / ot}

    res["load_average_end"] = os.getloadavg()  # a shared machine makes every ratio noisy
    out = Path(a.out) if a.out else Path(__file__).parent / "results" / (
        f"perturbation-{torch.device(a.device).type}-{res['date']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
