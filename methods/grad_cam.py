"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, eq. 1-2).

With ``A^k`` the activations of the probed layer (the model's ``gradcam`` role: GoogLeNet's
``inception5b``; VGG16's ``features.29`` and ResNet50's ``layer4``, TorchRay's benchmark
layers) and ``s`` the pre-softmax target score:

    alpha_k = mean_u d s / d A^k(u)          (global average pooling of the gradient)
    heatmap = ReLU( sum_k alpha_k A^k )

at the layer's resolution (for a 224 input: 7x7 at GoogLeNet's and ResNet50's layer, 14x14 at
VGG16's). Programs followed, which agree: the paper, TorchRay's ``grad_cam``
(``gradient_to_grad_cam_saliency``, ``resize=False``), Fong & Vedaldi's ``heatmaps.py``
(``grad_cam``), Captum's ``LayerGradCam`` and pytorch-grad-cam's ``GradCAM`` before its min-max
scaling and resize (tests: equal maps on VGG16, ResNet50, GoogLeNet and EfficientNet-Lite0).
No map is resized here: each benchmark brings it to its scoring resolution (PROTOCOLS.md §1).
"""
from __future__ import annotations

import torch

import saliency_bench

from ._backprop import backward, forward, resolve, smooth_maps


@saliency_bench.method("grad_cam")
def grad_cam(model, x: torch.Tensor, targets: torch.Tensor, *, layer: str = "gradcam",
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
