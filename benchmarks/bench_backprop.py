"""Throughput of the backprop methods beside the model's own forward+backward and beside the
peers on the same model, batch and device (PERFORMANCE.md: target >= 0.8 of forward+backward).

Peers: pytorch-grad-cam's ``GradCAM`` (its CAM maths and the upsampling run on the CPU in
NumPy/OpenCV), Captum's ``Saliency`` (the gradient) and Captum's ``LayerGradCam``. A peer that
is not installed is recorded as ``{"status": "not installed"}``.

    python benchmarks/bench_backprop.py --model googlenet --batch 64 --device cuda

Writes ``benchmarks/results/backprop-<device>-<date>.json`` (``--out`` to change it).
Random-weight models (speed does not depend on weights); the device is synchronised before
every clock read; the median of ``--repeats`` timed runs after ``--warmup`` runs.
``benchmarks/gpu.sh`` runs this section with every other GPU benchmark in one go.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch

from bench_common import (ResultsFile, environment, forward_backward, line, load_builtins, measure,
                          methods_beside_peers, random_inputs)
from saliency_bench.registry import get_model

METHODS = ("gradient", "guided_backprop", "grad_cam", "excitation_backprop", "contrastive_excitation_backprop")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--size", type=int, help="input side (default: the model's)")
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
    backprop_section(model, x, targets, doc.data["backprop"], doc.save, fb={"fp32": fb["images_per_s"]},
                     methods=args.methods.split(","), warmup=args.warmup, repeats=args.repeats)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
