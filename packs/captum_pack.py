"""Captum's attribution algorithms as saliency-bench methods: ``captum.*``.

Install with ``pip install 'saliency-bench[captum]'``. Without Captum this module registers
nothing (and loads fine, so ``saliency-bench list`` shows no broken plugin).

**Targets.** Every method attributes the same score as the built-in methods
(:mod:`saliency_bench.targets`). When every row of the batch is one class, Captum gets the
plain network and ``target=[class of each row]``, Captum's own usage. When a row is a set of
classes (a COCO category seen by an ImageNet model), the forward function is
:class:`SetScore`, ``[N]`` = log-sum-exp of each row's set of logits, and the set comes as a
``[N,C]`` membership mask in ``additional_forward_args``: Captum expands additional forward
arguments exactly as it expands the inputs (integrated gradients' steps, the noise tunnel's
samples, occlusion's perturbations per evaluation), so each expanded row keeps its own set.

**Maps.** Pixel attributions ``[B,3,H,W]`` become a map as Captum's
``visualization.visualize_image_attr`` makes its heat map: ``np.sum(attr, axis=2)`` over the
channels, then the ``sign`` transform (``"absolute_value"`` by default there; ``"positive"``,
``"negative"``, ``"all"``). Each method's default ``sign`` is the one Captum's own tutorial
uses for it where the tutorial shows one (``TorchVision_Interpret``: integrated gradients
``sign="positive"``, gradient SHAP ``"absolute_value"``, occlusion ``"positive"``), otherwise
``visualize_image_attr``'s default. ``"negative"`` returns ``-min(attr, 0)`` so that higher is
still more salient. ``channels="mean"`` and ``channels="max_abs"`` (max over channels of
``|attr|``, Simonyan et al.'s eq. 3, our ``gradient``) are options. Layer attributions
(``captum.layer_gradcam``) stay at the layer's resolution. Baselines are ``0`` in the
normalised input, i.e. the dataset's mean pixel, Captum's default (``baselines=None``).

Every parameter whose name is Captum's has Captum's documented default; ``internal_batch_size``
and ``perturbations_per_eval`` (how many inputs go through the network at once) change only
speed and memory, and ``patch`` (the feature grid of the perturbation methods) stands in for
Captum's ``feature_mask=None``, which would ablate each of the 150,528 input scalars alone.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

import saliency_bench
from saliency_bench.packs._lazy import LazyModule, installed
from saliency_bench.targets import Targets

# The pack is optional: no Captum, no methods. Whether Captum (and scikit-learn, with which
# Lime and KernelShap fit their surrogate) is installed is asked of the import system without
# importing it; Captum itself is imported when a method first runs, so that listing or
# planning a run does not pay for it.
AVAILABLE = installed("captum")
HAVE_SKLEARN = installed("sklearn")
ca = LazyModule("captum.attr")
CHANNELS = ("sum", "mean", "max_abs")
SIGNS = ("absolute_value", "positive", "negative", "all")


def _register(name: str, needs_sklearn: bool = False):
    """``saliency_bench.method(name)`` when Captum (and what the method needs) is installed;
    otherwise the function stays an unmarked plain function, which the registry ignores."""

    def wrap(fn):
        if AVAILABLE and (HAVE_SKLEARN or not needs_sklearn):
            return saliency_bench.method(name, default=False)(fn)
        return fn

    return wrap


# --------------------------------------------------------------------------------------------
# Targets, layers, maps
# --------------------------------------------------------------------------------------------
class SetScore(nn.Module):
    """``[N]`` target score of each row: log-sum-exp of the logits in the row's set.

    ``member`` (``[N,C]`` bool) travels in Captum's ``additional_forward_args``, which Captum
    expands with the inputs, so a row keeps its set however the batch is repeated or chunked.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        logits = self.net(x).float()
        return torch.logsumexp(logits.masked_fill(~member.bool(), float("-inf")), dim=1)


def as_targets(targets: Any, device: torch.device) -> Targets:
    return targets if isinstance(targets, Targets) else Targets(targets, device)


def forward_and_target(model, targets: Any, device: torch.device) -> tuple[nn.Module, dict]:
    """The forward module and the ``attribute`` keywords that select each row's target."""
    t = as_targets(targets, device)
    if t.is_single:
        return model.net, {"target": t.first.tolist()}
    return SetScore(model.net), {"additional_forward_args": (t.mask(len(model.classes)).to(device),)}


def to_map(attr: torch.Tensor, channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """``[B,C,H,W]`` attributions -> ``[B,H,W]`` map, as ``visualize_image_attr`` (sum, sign)."""
    if channels == "sum":
        a = attr.sum(dim=1)
    elif channels == "mean":
        a = attr.mean(dim=1)
    elif channels == "max_abs":
        a = attr.abs().amax(dim=1)
    else:
        raise ValueError(f"channels={channels!r}: choose one of {', '.join(CHANNELS)}")
    if sign == "absolute_value":
        a = a.abs()
    elif sign == "positive":
        a = a.clamp(min=0)
    elif sign == "negative":
        a = (-a).clamp(min=0)
    elif sign != "all":
        raise ValueError(f"sign={sign!r}: choose one of {', '.join(SIGNS)}")
    return a.detach().float()


def patch_mask(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[1,1,H,W]`` feature mask: one feature per ``patch`` x ``patch`` square (all channels)."""
    h, w = x.shape[-2:]
    p = max(1, int(patch))
    rows = torch.arange(h, device=x.device) // p
    cols = torch.arange(w, device=x.device) // p
    return (rows[:, None] * ((w + p - 1) // p) + cols[None, :])[None, None]


@contextmanager
def quiet() -> Iterator[None]:
    """Captum warns at every call that it sets requires_grad and hooks; the run's log stays clean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum(\.|$)")
        yield


def _input(x: torch.Tensor) -> torch.Tensor:
    # Captum calls requires_grad_() on the inputs it gets: hand it a detached view, not the
    # harness's tensor.
    return x.detach()


# --------------------------------------------------------------------------------------------
# Gradient methods
# --------------------------------------------------------------------------------------------
@_register("captum.saliency")
def saliency(model, x: torch.Tensor, targets, *, abs: bool = True, channels: str = "sum",
             sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``Saliency`` (Simonyan et al. 2014): the gradient, ``abs=True`` as Captum; map =
    |sum over channels| (``visualize_image_attr``). ``channels="max_abs"`` gives our ``gradient``."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.Saliency(fwd).attribute(_input(x), abs=abs, **kw)
    return to_map(attr, channels, sign)


@_register("captum.input_x_gradient")
def input_x_gradient(model, x: torch.Tensor, targets, *, channels: str = "sum",
                     sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``InputXGradient``: input times gradient; map = |sum over channels|."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.InputXGradient(fwd).attribute(_input(x), **kw)
    return to_map(attr, channels, sign)


@_register("captum.integrated_gradients")
def integrated_gradients(model, x: torch.Tensor, targets, *, n_steps: int = 50,
                         method: str = "gausslegendre", baselines: float = 0.0,
                         internal_batch_size: int = 64, channels: str = "sum",
                         sign: str = "positive") -> torch.Tensor:
    """Captum ``IntegratedGradients`` (Sundararajan et al. 2017), n_steps=50 Gauss-Legendre,
    baseline 0 (mean pixel); map = positive part of the channel sum (Captum's tutorial).
    ``internal_batch_size`` (Captum: None, all steps at once) bounds memory only."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.IntegratedGradients(fwd).attribute(
            _input(x), baselines=float(baselines), n_steps=int(n_steps), method=method,
            internal_batch_size=int(internal_batch_size) or None, **kw)
    return to_map(attr, channels, sign)


@_register("captum.deeplift")
def deeplift(model, x: torch.Tensor, targets, *, multiply_by_inputs: bool = True, eps: float = 1e-10,
             baselines: float = 0.0, channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``DeepLift`` (Shrikumar et al. 2017, Rescale rule) from the 0 baseline; map =
    |sum over channels|. Captum's rules cover ``nn.ReLU``/ELU/Sigmoid/Tanh/Softplus/MaxPool
    modules; other nonlinearities (ReLU6, SiLU, functional calls) pass the plain gradient."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.DeepLift(fwd, multiply_by_inputs=multiply_by_inputs, eps=float(eps)).attribute(
            _input(x), baselines=float(baselines), **kw)
    return to_map(attr, channels, sign)


@_register("captum.gradient_shap")
def gradient_shap(model, x: torch.Tensor, targets, *, n_samples: int = 5, stdevs: float = 0.0,
                  baselines: float = 0.0, channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``GradientShap`` (Lundberg & Lee 2017): expected gradients x (input - baseline)
    over n_samples=5 random points between the baseline and the input (stdevs=0.0, Captum's
    defaults); the baseline distribution is the single mean-pixel image (the tutorial's
    ``[0 * x, x]`` adds the input itself, which contributes 0); map = |sum over channels|."""
    fwd, kw = forward_and_target(model, targets, x.device)
    base = torch.full_like(x[:1], float(baselines))
    with quiet():
        attr = ca.GradientShap(fwd).attribute(_input(x), baselines=base, n_samples=int(n_samples),
                                              stdevs=float(stdevs), **kw)
    return to_map(attr, channels, sign)


_NT_BASES = {"saliency": lambda f: ca.Saliency(f), "integrated_gradients": lambda f: ca.IntegratedGradients(f),
             "input_x_gradient": lambda f: ca.InputXGradient(f)}


@_register("captum.noise_tunnel")
def noise_tunnel(model, x: torch.Tensor, targets, *, base: str = "saliency", nt_type: str = "smoothgrad",
                 nt_samples: int = 5, stdevs: float = 1.0, nt_samples_batch_size: int = 0,
                 channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``NoiseTunnel`` over ``Saliency``: SmoothGrad (Smilkov et al. 2017) with Captum's
    defaults nt_type="smoothgrad", nt_samples=5, stdevs=1.0 (in normalised input units);
    map = |sum over channels|. ``base`` may be integrated_gradients or input_x_gradient,
    ``nt_type`` smoothgrad_sq or vargrad. ``nt_samples_batch_size`` 0 is Captum's None."""
    if base not in _NT_BASES:
        raise ValueError(f"base={base!r}: choose one of {', '.join(_NT_BASES)}")
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.NoiseTunnel(_NT_BASES[base](fwd)).attribute(
            _input(x), nt_type=nt_type, nt_samples=int(nt_samples), stdevs=float(stdevs),
            nt_samples_batch_size=int(nt_samples_batch_size) or None, **kw)
    return to_map(attr, channels, sign)


@_register("captum.guided_backprop")
def guided_backprop(model, x: torch.Tensor, targets, *, channels: str = "sum",
                    sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``GuidedBackprop`` (Springenberg et al. 2015); map = |sum over channels|. Captum
    overrides ``nn.ReLU`` modules only: on ReLU6 networks (EfficientNet-Lite0) it is the
    gradient (our ``guided_backprop`` with ``relu6="gradient"``)."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.GuidedBackprop(fwd).attribute(_input(x), **kw)
    return to_map(attr, channels, sign)


@_register("captum.deconvolution")
def deconvolution(model, x: torch.Tensor, targets, *, channels: str = "sum",
                  sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``Deconvolution`` (Zeiler & Fergus 2014): ReLUs pass the positive gradient
    whatever their input; map = |sum over channels| (``nn.ReLU`` modules only, as above)."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.Deconvolution(fwd).attribute(_input(x), **kw)
    return to_map(attr, channels, sign)


@_register("captum.lrp")
def lrp(model, x: torch.Tensor, targets, *, channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``LRP`` (Bach et al. 2015) with Captum's default rules (epsilon rule for Conv2d,
    Linear, BatchNorm2d, pooling; identity for ReLU/Dropout/Tanh); map = |sum over channels|.
    Captum raises on any layer type without a rule (timm's BatchNormAct2d, ReLU6, SiLU,
    squeeze-excite blocks): then the method fails, sample by sample, with Captum's message."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.LRP(fwd).attribute(_input(x), **kw)
    return to_map(attr, channels, sign)


# --------------------------------------------------------------------------------------------
# CAM-style methods
# --------------------------------------------------------------------------------------------
@_register("captum.layer_gradcam")
def layer_gradcam(model, x: torch.Tensor, targets, *, layer: str = "gradcam", relu_attributions: bool = False,
                  sign: str = "all") -> torch.Tensor:
    """Captum ``LayerGradCam`` (Selvaraju et al. 2017) at the model's ``gradcam`` layer, at that
    layer's resolution; ``relu_attributions=False`` (Captum's default; True is the paper's ReLU
    and our ``grad_cam``); the signed map, as Captum's segmentation tutorial shows it
    (``visualize_image_attr(..., sign="all")``)."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.LayerGradCam(fwd, model.layer(layer)).attribute(
            _input(x), relu_attributions=bool(relu_attributions), **kw)
    if attr.ndim != 4:
        raise ValueError(f"captum.layer_gradcam needs a [B,C,h,w] layer; '{layer}' gives {tuple(attr.shape)}")
    return to_map(attr, "sum", sign)


@_register("captum.guided_gradcam")
def guided_gradcam(model, x: torch.Tensor, targets, *, layer: str = "gradcam", interpolate_mode: str = "nearest",
                   channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``GuidedGradCam``: guided backprop times Grad-CAM (ReLU'd) upsampled with
    ``interpolate_mode="nearest"`` (Captum's default) to the input; map = |sum over channels|."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with quiet():
        attr = ca.GuidedGradCam(fwd, model.layer(layer)).attribute(
            _input(x), interpolate_mode=interpolate_mode, **kw)
    return to_map(attr, channels, sign)


# --------------------------------------------------------------------------------------------
# Perturbation methods
# --------------------------------------------------------------------------------------------
@_register("captum.occlusion")
def occlusion(model, x: torch.Tensor, targets, *, window: int = 15, stride: int = 8, baselines: float = 0.0,
              perturbations_per_eval: int = 32, channels: str = "sum", sign: str = "positive") -> torch.Tensor:
    """Captum ``Occlusion`` (Zeiler & Fergus 2014) as Captum's tutorial runs it:
    ``sliding_window_shapes=(3, 15, 15)``, ``strides=(3, 8, 8)``, ``baselines=0``; per pixel the
    mean over the windows covering it of (original - occluded) score; map = positive part of the
    channel sum (the tutorial's ``"positive"`` heat map). Captum's windows start at 0 and are
    never clipped, so pixels no window reaches (the last 1 at 224 with 15/8) get 0. Our
    ``occlusion`` with ``grid="valid"`` and ``offset=0`` is the same computation."""
    fwd, kw = forward_and_target(model, targets, x.device)
    c = x.shape[1]
    with torch.no_grad():
        with quiet():
            attr = ca.Occlusion(fwd).attribute(
                _input(x), sliding_window_shapes=(c, int(window), int(window)), strides=(c, int(stride), int(stride)),
                baselines=float(baselines), perturbations_per_eval=int(perturbations_per_eval), **kw)
    return to_map(attr, channels, sign)


@_register("captum.feature_ablation")
def feature_ablation(model, x: torch.Tensor, targets, *, patch: int = 16, baselines: float = 0.0,
                     perturbations_per_eval: int = 32, channels: str = "sum",
                     sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``FeatureAblation``: each ``patch`` x ``patch`` square (all channels; 196 at 224)
    replaced by the baseline 0, attribution = (original - ablated) score over the square;
    map = |sum over channels| (3x the square's drop)."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with torch.no_grad():
        with quiet():
            attr = ca.FeatureAblation(fwd).attribute(
                _input(x), baselines=float(baselines), feature_mask=patch_mask(x, patch),
                perturbations_per_eval=int(perturbations_per_eval), **kw)
    return to_map(attr, channels, sign)


@_register("captum.lime", needs_sklearn=True)
def lime(model, x: torch.Tensor, targets, *, n_samples: int = 50, patch: int = 16, baselines: float = 0.0,
         perturbations_per_eval: int = 32, channels: str = "sum", sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``Lime`` (Ribeiro et al. 2016) with Captum's defaults (n_samples=50, Lasso
    surrogate alpha=0.01, exponential cosine kernel) over ``patch`` x ``patch`` squares replaced
    by 0; each square gets its coefficient; map = |sum over channels|. Random: seeded runs."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with torch.no_grad():
        with quiet():
            attr = ca.Lime(fwd).attribute(_input(x), baselines=float(baselines), feature_mask=patch_mask(x, patch),
                                          n_samples=int(n_samples),
                                          perturbations_per_eval=int(perturbations_per_eval), **kw)
    return to_map(attr, channels, sign)


@_register("captum.kernel_shap", needs_sklearn=True)
def kernel_shap(model, x: torch.Tensor, targets, *, n_samples: int = 25, patch: int = 16, baselines: float = 0.0,
                perturbations_per_eval: int = 32, channels: str = "sum",
                sign: str = "absolute_value") -> torch.Tensor:
    """Captum ``KernelShap`` (Lundberg & Lee 2017) with Captum's default n_samples=25 over
    ``patch`` x ``patch`` squares replaced by 0; map = |sum over channels|. Random: seeded runs."""
    fwd, kw = forward_and_target(model, targets, x.device)
    with torch.no_grad():
        with quiet():
            attr = ca.KernelShap(fwd).attribute(_input(x), baselines=float(baselines), feature_mask=patch_mask(x, patch),
                                                n_samples=int(n_samples),
                                                perturbations_per_eval=int(perturbations_per_eval), **kw)
    return to_map(attr, channels, sign)
