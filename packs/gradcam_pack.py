"""pytorch-grad-cam's CAM family as saliency-bench methods: ``gradcam.*``.

Install with ``pip install 'saliency-bench[gradcam]'``. Without pytorch-grad-cam this module
registers nothing (and loads fine, so ``saliency-bench list`` shows no broken plugin).

**Targets.** pytorch-grad-cam takes one target per sample, a callable applied to that
sample's output row. A row of one class gets the library's own
``ClassifierOutputTarget(class)`` (the logit); a set of classes gets :class:`SetTarget`, the
log-sum-exp of the set's logits: the score every saliency-bench method explains. The library
batches the whole run batch through the network (ScoreCAM and AblationCAM then loop over the
samples themselves, as the library does).

**Maps.** The library's ``cam(input_tensor, targets)`` returns, per image, the CAM after a
ReLU, min-max scaled to [0, 1] and resized (OpenCV, bilinear) to the input. By default
(``resolution="layer"``) these methods return the CAM the library computes *before* that
scaling and resize: its own ``get_cam_image`` (or ``get_cam_weights``) on its own recorded
activations and gradients, then its ReLU, at the layer's resolution (7x7 at 224 for the
``gradcam`` roles), like our ``grad_cam`` and Captum's ``LayerGradCam``. ``resolution="input"``
returns the library's own output exactly. ``gradcam.full_grad`` sums gradient maps of every
biased layer and of the input, scaled inside the library: it returns the library's output
(the input's resolution) in both cases. The layer is the model's ``gradcam`` role unless
``layer=`` names another (a role, an alias or a module path); a transformer's token layer is
brought to ``[B,C,h,w]`` by the library's ``reshape_transform`` (:func:`tokens_to_maps`).

Not included: ``ShapleyCAM``, whose Hessian-vector term is zero for the score every method
here explains (a logit is linear in the last feature map of a global-pooling head), where the
library raises instead of returning Grad-CAM (its paper pairs it with another target,
``ClassifierOutputReST``); ``RandomCAM`` (a baseline, not a method); ``FinerCAM``, ``SESS``,
``RefineCAM`` and ``DeepFeatureFactorization`` (wrappers or other outputs).

Parameters named like the library's have its defaults (``aug_smooth=False``,
``eigen_smooth=False``, ScoreCAM's ``batch_size=16``, AblationCAM's ``batch_size=32`` and
``ratio_channels_to_ablate=1.0``, FEM's ``k=2``, KPCA-CAM's ``kernel="sigmoid"``).
"""
from __future__ import annotations

import contextlib
import functools
import types
from typing import Any, Callable

import numpy as np
import torch

import saliency_bench
from saliency_bench.packs._lazy import LazyModule, installed
from saliency_bench.targets import Targets

# The pack is optional: no pytorch-grad-cam, no methods. Whether it is installed is asked of
# the import system without importing it (the library imports torchvision, seconds of start-up);
# it is imported when a method first runs.
AVAILABLE = installed("pytorch_grad_cam")
pgc = LazyModule("pytorch_grad_cam")
_model_targets = LazyModule("pytorch_grad_cam.utils.model_targets")
RESOLUTIONS = ("layer", "input")


def _register(name: str):
    def wrap(fn):
        return saliency_bench.method(name, default=False)(fn) if AVAILABLE else fn

    return wrap


class SetTarget:
    """A pytorch-grad-cam target: log-sum-exp of the set's logits in a sample's output row."""

    def __init__(self, classes: tuple[int, ...]) -> None:
        self.classes = list(classes)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(self.classes, device=model_output.device)
        return torch.logsumexp(model_output.index_select(-1, idx).float(), dim=-1)


def cam_targets(targets: Any, device: torch.device) -> list[Callable]:
    t = targets if isinstance(targets, Targets) else Targets(targets, device)
    return [_model_targets.ClassifierOutputTarget(s[0]) if len(s) == 1 else SetTarget(s) for s in t.sets]


@contextlib.contextmanager
def _quiet_progress(*modules: types.ModuleType):
    """ScoreCAM and AblationCAM draw a tqdm bar per sample; the harness draws its own."""
    saved = [(m, m.tqdm) for m in modules]
    try:
        for m, tq in saved:
            m.tqdm = types.SimpleNamespace(tqdm=functools.partial(tq.tqdm, disable=True))
        yield
    finally:
        for m, tq in saved:
            m.tqdm = tq


def _layer_resolution(cam) -> None:
    """Make ``cam(...)`` return the CAM at the layer's resolution: the library's per-layer step
    (``BaseCAM.compute_cam_per_layer``) without its ``scale_cam_image`` (min-max + resize), and
    the single layer passed through instead of the multi-layer mean and rescale."""

    def per_layer(input_tensor, targets, eigen_smooth):
        grads_and_acts = cam.activations_and_grads
        if cam.detach:
            acts = [a.cpu().data.numpy() for a in grads_and_acts.activations]
            grads = [g.cpu().data.numpy() for g in grads_and_acts.gradients]
        else:
            acts, grads = list(grads_and_acts.activations), list(grads_and_acts.gradients)
        out = []
        for i, layer in enumerate(cam.target_layers):
            c = cam.get_cam_image(input_tensor, layer, targets, acts[i] if i < len(acts) else None,
                                  grads[i] if i < len(grads) else None, eigen_smooth)
            out.append(np.maximum(c, 0))
        return out

    cam.compute_cam_per_layer = per_layer
    cam.aggregate_multi_layers = lambda cams: np.mean(np.stack(cams), axis=0)


def tokens_to_maps(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam's ``reshape_transform`` for vision transformers, as its ViT tutorial
    writes it: a token layer's ``[B, prefix + h*w, C]`` -> ``[B, C, h, w]`` without the prefix
    (class and register) tokens; a ``[B,C,h,w]`` layer passes unchanged."""
    prefix = int(getattr(model.net, "num_prefix_tokens", 1))

    def reshape(t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 3:
            return t
        n = t.shape[1] - prefix
        side = int(round(n ** 0.5))
        if side * side != n:
            raise ValueError(f"{t.shape[1]} tokens ({prefix} prefix) do not make a square map")
        return t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def run_cam(cls, model, x: torch.Tensor, targets: Any, *, layer: str | None, resolution: str,
            aug_smooth: bool = False, eigen_smooth: bool = False, options: dict | None = None,
            attrs: dict | None = None) -> torch.Tensor:
    """One pytorch-grad-cam method on the batch; ``[B,h,w]`` float on ``x``'s device."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution={resolution!r}: choose one of {', '.join(RESOLUTIONS)}")
    layers = [model.layer(layer)] if layer is not None else []
    # The model's parameters are frozen: the input must require grad for the layer's output
    # to require it (the library hooks its gradient there).
    xi = x.detach().clone().requires_grad_(True)
    with cls(model=model.net, target_layers=layers, reshape_transform=tokens_to_maps(model),
             **(options or {})) as cam:
        for k, v in (attrs or {}).items():
            setattr(cam, k, v)
        if resolution == "layer" and layer is not None:
            _layer_resolution(cam)
        with _quiet_progress(pgc.score_cam, pgc.ablation_cam), torch.enable_grad():
            out = cam(input_tensor=xi, targets=cam_targets(targets, x.device), aug_smooth=bool(aug_smooth),
                      eigen_smooth=bool(eigen_smooth))
    model.net.zero_grad(set_to_none=True)
    return torch.as_tensor(np.ascontiguousarray(out), dtype=torch.float32, device=x.device)


# --------------------------------------------------------------------------------------------
# Gradient-weighted CAMs
# --------------------------------------------------------------------------------------------
def _cls(name: str):
    return getattr(pgc, name) if AVAILABLE else None


@_register("gradcam.grad_cam")
def grad_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", aug_smooth: bool = False,
             eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``GradCAM`` (Selvaraju et al. 2017): activations weighted by their
    spatially averaged gradient, ReLU; the layer's resolution (see the module). Equals our
    ``grad_cam``."""
    return run_cam(_cls("GradCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.grad_cam_plus_plus")
def grad_cam_plus_plus(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer",
                       aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``GradCAMPlusPlus`` (Chattopadhay et al. 2018): weights from the
    gradient's second- and third-power terms; the layer's resolution."""
    return run_cam(_cls("GradCAMPlusPlus"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.xgrad_cam")
def xgrad_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", aug_smooth: bool = False,
              eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``XGradCAM`` (Fu et al. 2020): gradients weighted by the normalised
    activations; the layer's resolution."""
    return run_cam(_cls("XGradCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.layer_cam")
def layer_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", aug_smooth: bool = False,
              eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``LayerCAM`` (Jiang et al. 2021): activations times the positive part of
    their gradient, element-wise; the layer's resolution."""
    return run_cam(_cls("LayerCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.hires_cam")
def hires_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", aug_smooth: bool = False,
              eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``HiResCAM`` (Draelos & Carin 2020): activations times gradient,
    element-wise, summed over channels; the layer's resolution."""
    return run_cam(_cls("HiResCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.grad_cam_element_wise")
def grad_cam_element_wise(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer",
                          aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``GradCAMElementWise``: ReLU of activations times gradient,
    element-wise, then summed over channels; the layer's resolution."""
    return run_cam(_cls("GradCAMElementWise"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.eigen_grad_cam")
def eigen_grad_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer",
                   aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``EigenGradCAM``: first principal component of activations times
    gradient (class-discriminative Eigen-CAM); the layer's resolution. Its sign is SVD's."""
    return run_cam(_cls("EigenGradCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.full_grad")
def full_grad(model, x, targets, *, aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``FullGrad`` (Srinivas & Fleuret 2019): |input x input-gradient| plus
    |bias x gradient| of every ``nn.Conv2d``/``nn.BatchNorm2d`` with a bias (exactly those
    types: timm's ``BatchNormAct2d`` is left out), each scaled and resized by the library, summed:
    the library's output at the input's resolution."""
    return run_cam(_cls("FullGrad"), model, x, targets, layer=None, resolution="input",
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


# --------------------------------------------------------------------------------------------
# Gradient-free CAMs
# --------------------------------------------------------------------------------------------
@_register("gradcam.score_cam")
def score_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", batch_size: int = 16,
              aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``ScoreCAM`` (Wang et al. 2020): each channel's upsampled, min-max
    normalised activation masks the input; channel weight = softmax over channels of the
    target score of the masked input (one forward per channel and image, ``batch_size`` at a
    time: 1280 per image on EfficientNet-Lite0); the layer's resolution."""
    return run_cam(_cls("ScoreCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, attrs={"batch_size": int(batch_size)})


@_register("gradcam.ablation_cam")
def ablation_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", batch_size: int = 32,
                 ratio_channels_to_ablate: float = 1.0, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``AblationCAM`` (Desai & Ramaswamy 2020): channel weight = relative drop
    of the target score when the channel is zeroed (one forward per channel and image,
    ``batch_size`` at a time; ``ratio_channels_to_ablate=1.0``: all); the layer's resolution."""
    return run_cam(_cls("AblationCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth,
                   options={"batch_size": int(batch_size), "ratio_channels_to_ablate": float(ratio_channels_to_ablate)})


@_register("gradcam.eigen_cam")
def eigen_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", aug_smooth: bool = False,
              eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``EigenCAM`` (Muhammad & Yeasin 2020): first principal component of the
    activations; class-agnostic (the target is ignored); the layer's resolution."""
    return run_cam(_cls("EigenCAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)


@_register("gradcam.kpca_cam")
def kpca_cam(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", kernel: str = "sigmoid",
             gamma: float = 0.0, aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``KPCA_CAM`` (Karmani et al. 2024): first kernel-PCA component of the
    activations (``kernel="sigmoid"``; ``gamma`` 0 is the library's None); class-agnostic;
    the layer's resolution."""
    return run_cam(_cls("KPCA_CAM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth,
                   options={"kernel": kernel, "gamma": float(gamma) or None})


@_register("gradcam.fem")
def fem(model, x, targets, *, layer: str = "gradcam", resolution: str = "layer", k: float = 2.0,
        aug_smooth: bool = False, eigen_smooth: bool = False) -> torch.Tensor:
    """pytorch-grad-cam ``FEM`` (Fuad et al. 2020): channels whose mean activation exceeds
    mean + k std across channels, weighted by that mean (``k=2``); class-agnostic; the layer's
    resolution."""
    return run_cam(_cls("FEM"), model, x, targets, layer=layer, resolution=resolution,
                   aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, options={"k": k})
