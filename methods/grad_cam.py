"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, eq. 1-2).

With ``A^k`` the activations of the model's ``gradcam`` layer and ``s`` the pre-softmax target
score::

    alpha_k = mean_u d s / d A^k(u),        heatmap = ReLU( sum_k alpha_k A^k )

at the layer's resolution (7x7 at GoogLeNet's ``inception5b`` for a 224 input): each benchmark
resizes the map itself. The programs it equals (TorchRay, Captum, pytorch-grad-cam):
docs/PROTOCOLS.md §5.5.
"""
from __future__ import annotations

import torch

import saliency_bench
from saliency_bench.targets import Targets

from ._backprop import backward, forward, resolve, smooth_maps


@saliency_bench.method("grad_cam")
def grad_cam(model, x: torch.Tensor, targets: Targets, *, layer: str = "gradcam",
             smooth: float = 0.0) -> torch.Tensor:
    """Grad-CAM: ReLU of the activations weighted by their average gradient (Selvaraju et al. 2017)."""
    layer = resolve(model, layer)
    run = forward(model, x, [layer])
    (grad,) = backward(run, targets, [layer])
    acts = run.probes[layer].detach()
    if acts.ndim != 4:
        raise ValueError(f"grad_cam needs a [B,C,h,w] layer; '{layer}' of '{model.name}' "
                         f"gives {tuple(acts.shape)}")
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    return smooth_maps(torch.relu((alpha * acts).sum(dim=1)), smooth)
