"""Real inputs and maps for the parity tests of issue 23's benchmarks: the first images of
../shared/data/imagenet-val-300 (boxes) and of the bundled COCO sample (masks), with the maps of
gradient, Grad-CAM and pytorch-grad-cam's GradCAM (a pack method) on the embedded model."""
from __future__ import annotations

import numpy as np
import torch

from saliency_bench.imageio import to_input
from saliency_bench.registry import get_method

METHODS = ("gradient", "grad_cam", "gradcam.grad_cam")


def load(ds, n: int):
    """(samples, uint8 inputs) of the first ``n`` loadable samples of ``ds``, images decoded."""
    out = []
    for i in range(len(ds)):
        s = ds.load(i)
        if s.error is None and s.target_in("imagenet"):
            out.append(s)
        if len(out) == n:
            break
    return out


def imagenet_val(shared_data, model, n: int):
    """(samples, inputs, targets) of the first ``n`` loadable ImageNet val images of the shared data."""
    from saliency_bench.datasets.imagenet import imagenet

    samples = load(imagenet(str(shared_data / "imagenet-val-300")), n)
    return samples, *inputs(model, samples)


def inputs(model, samples):
    x = model.preprocess(torch.stack([to_input(s.image, model.input_size) for s in samples]))
    t = [s.target_in(model.label_space)[:1] for s in samples]
    return x, t


_MAPS: dict = {}


def maps(model, method: str, key: str, x, t) -> np.ndarray:
    """The method's maps at their own resolution (computed once per key)."""
    if (method, key) not in _MAPS:
        m, _ = get_method(method).explain(model, x, torch.tensor(t, dtype=torch.long))
        _MAPS[(method, key)] = m.detach().float().cpu().numpy()
    return _MAPS[(method, key)]
