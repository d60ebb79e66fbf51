"""Throughput of the backprop methods beside the model's own forward+backward and beside the
peers on the same model, batch and device (docs/PERFORMANCE.md §1: target >= 0.8 of forward+backward).

Peers: pytorch-grad-cam's ``GradCAM`` (its CAM maths and the upsampling run on the CPU in
NumPy/OpenCV), Captum's ``Saliency`` (the gradient) and Captum's ``LayerGradCam``. A peer that
is not installed is recorded as ``{"status": "not installed"}``.

    python perf/bench_backprop.py --model googlenet --batch 64 --device cuda

Writes ``perf/results/backprop-<device>-<date>.json`` (``--out`` to change it).

``--packs`` (default: every pack method named in ``PACK_PAIRS`` whose library is installed)
also times the method packs' versions of our methods (``captum.saliency`` beside ``gradient``,
``captum.guided_backprop`` beside ``guided_backprop``, ``captum.layer_gradcam`` and
``gradcam.grad_cam`` beside ``grad_cam``) through the registry, as a run calls them, on the same
model, batch and device, interleaved round by round (``--repeats`` rounds); the results file
gets a ``packs`` section with each pair's speed ratio. ``--methods ''`` times the packs only:

    python perf/bench_backprop.py --model efficientnet_lite0 --batch 8 --device cpu --methods 
Random-weight models (speed does not depend on weights); the device is synchronised before
every clock read; the median of ``--repeats`` timed runs after ``--warmup`` runs.
``perf/gpu.sh`` runs this section with every other GPU benchmark in one go.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path
from typing import Callable, Iterator

import torch

from bench_common import (ResultsFile, environment, forward_backward, line, load_builtins, measure,
                          methods_beside_peers, random_inputs)
from saliency_bench.registry import get_method, get_model

METHODS = ("gradient", "guided_backprop", "grad_cam", "excitation_backprop", "contrastive_excitation_backprop")

#: our method -> the pack methods that compute it (tests/test_packs_*.py: equal maps, given the
#: options that make them equal; timed here with their defaults, which cost the same)
PACK_PAIRS = {
    "gradient": ("captum.saliency",),
    "guided_backprop": ("captum.guided_backprop",),
    "grad_cam": ("captum.layer_gradcam", "gradcam.grad_cam"),
}


@contextlib.contextmanager
def grad_cam_peer(grad_cam, model, x: torch.Tensor, targets: torch.Tensor) -> Iterator[Callable[[], object]]:
    """pytorch-grad-cam's ``GradCAM`` on the model's Grad-CAM layer; its hooks go on exit.

    Our models' weights do not require grad, so the input does (a fresh leaf per call), or the
    layer's output would have no gradient to hook; the one extra input gradient is the
    cheapest way, cheaper than the weight gradients of a model left trainable."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [ClassifierOutputTarget(int(c)) for c in targets[:, 0].tolist()]
    with grad_cam.GradCAM(model=model.net, target_layers=[model.layer("gradcam")]) as cam:
        yield lambda: cam(input_tensor=x.detach().requires_grad_(), targets=classes)


@contextlib.contextmanager
def captum_saliency_peer(attr, model, x: torch.Tensor, targets: torch.Tensor) -> Iterator[Callable[[], object]]:
    """Captum ``Saliency`` (absolute input gradient)."""
    sal, t = attr.Saliency(model.net), targets[:, 0]
    # A fresh leaf per call: Captum marks its input as requiring grad.
    yield lambda: sal.attribute(x.detach().requires_grad_(), target=t)


@contextlib.contextmanager
def captum_layer_grad_cam_peer(attr, model, x: torch.Tensor, targets: torch.Tensor) -> Iterator[Callable[[], object]]:
    """Captum ``LayerGradCam`` on the model's Grad-CAM layer (maps at the layer's resolution)."""
    cam, t = attr.LayerGradCam(model.net, model.layer("gradcam")), targets[:, 0]
    yield lambda: cam.attribute(x, target=t)


#: name -> (module to import, context manager giving the timed call)
PEERS = {
    "pytorch_grad_cam.GradCAM": ("pytorch_grad_cam", grad_cam_peer),
    "captum.Saliency": ("captum.attr", captum_saliency_peer),
    "captum.LayerGradCam": ("captum.attr", captum_layer_grad_cam_peer),
}


def backprop_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                     fb: dict, methods=METHODS, warmup: int = 2, repeats: int = 5,
                     max_s: float = float("inf"), log: Callable[[str], None] = print) -> dict:
    """Fill ``out`` with every backprop method (and its speed variants) and every peer, each as
    images/s and as a fraction of ``fb`` (``{"fp32": images/s, "bf16": images/s}`` of the
    model's forward+backward at the same batch). ``save`` is called after each measurement."""
    return methods_beside_peers(model, x, targets, out, save, methods=methods, peers=PEERS, ceiling=fb,
                                key="fraction_of_forward_backward", per_copy=False, warmup=warmup,
                                repeats=repeats, max_s=max_s, log=log)


def packs_section(model, x: torch.Tensor, targets: torch.Tensor, out: dict, save: Callable[[], None], *,
                  packs, warmup: int = 1, rounds: int = 5, log: Callable[[str], None] = print) -> dict:
    """Our methods and the pack methods that compute the same maps, side by side: same model,
    batch, device and timer, and **interleaved** (round r times forward+backward, then every
    method once, then round r+1...), so that a load that changes during the run (shared CPUs)
    falls on all of them alike. Per method: the median and best of its ``rounds`` calls, the
    fraction of forward+backward, and in ``out["pairs"]`` each pack method's speed over ours."""
    from saliency_bench.registry import methods as registered

    known = set(registered.names())
    pairs = {ours: [p for p in theirs if p in packs and p in known] for ours, theirs in PACK_PAIRS.items()}
    pairs = {ours: theirs for ours, theirs in pairs.items() if theirs}
    calls = {"forward+backward": lambda: forward_backward(model, x, targets)}
    for ours, theirs in pairs.items():
        for n in (ours, *theirs):
            m = get_method(n)
            calls[n] = lambda m=m: m.explain(model, x, targets)
    b = len(x)
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {n: [] for n in calls}
    for r in range(rounds):
        for n, fn in calls.items():
            times[n].append(measure(fn, model.device, warmup=0, repeats=1, images=b)["median_s"])
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {b / t[-1]:.3g}/s" for n, t in times.items()))
    fb = b / statistics.median(times["forward+backward"])
    out.update(batch=b, rounds=rounds, interleaved=True, methods={})
    for n, t in times.items():
        rate = b / statistics.median(t)
        out["methods"][n] = {"images_per_s": rate, "best_images_per_s": b / min(t), "seconds": t,
                             "fraction_of_forward_backward": rate / fb}
    speed = {n: r["images_per_s"] for n, r in out["methods"].items()}
    out["pairs"] = {ours: {p: speed[p] / speed[ours] for p in theirs} for ours, theirs in pairs.items()}
    out["pairs_read_as"] = "pack method images/s divided by ours (above 1: the pack is faster)"
    for ours, theirs in out["pairs"].items():
        log(f"  {ours} {speed[ours]:.3g} images/s; " + ", ".join(f"{p} {speed[p]:.3g} ({v:.2f}x)" for p, v in theirs.items()))
    save()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--size", type=int, help="input side (default: the model's)")
    ap.add_argument("--packs", default=",".join(p for ps in PACK_PAIRS.values() for p in ps),
                    help="pack methods to time beside ours ('' for none)")
    ap.add_argument("--out")
    args = ap.parse_args()

    registration = load_builtins()
    device = torch.device(args.device)
    model = get_model(args.model, weights="random", device=args.device)
    x, targets = random_inputs(model, args.batch, args.size)
    fb = measure(lambda: forward_backward(model, x, targets), device, warmup=args.warmup, repeats=args.repeats,
                 images=args.batch)
    print(line(f"{args.model} forward+backward", fb))
    meta = {**environment(device), "model": args.model, "weights": "random", "input_size": list(x.shape[-2:]),
            "registration": registration}
    out = Path(args.out or Path(__file__).parent / "results" / f"backprop-{device.type}-{meta['date']}.json")
    doc = ResultsFile(out, {"meta": meta, "forward_backward": fb, "backprop": {}})
    methods = [m for m in args.methods.split(",") if m.strip()]
    if methods:
        backprop_section(model, x, targets, doc.data["backprop"], doc.save, fb={"fp32": fb["images_per_s"]},
                         methods=methods, warmup=args.warmup, repeats=args.repeats)
    packs = [p for p in args.packs.split(",") if p.strip()]
    if packs:
        doc.data["packs"] = {}
        packs_section(model, x, targets, doc.data["packs"], doc.save, packs=packs, warmup=args.warmup,
                      rounds=args.repeats)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
