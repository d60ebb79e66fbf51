"""The one backprop engine of gradient, guided backprop, excitation backprop and Grad-CAM.

TorchRay's ``saliency()`` shape: probe a layer, run the model forward, inject
the seed at the logits, read the (pseudo-)gradient at the probed layer. A method is then a few
lines: which layer, which backward rules, how the recorded tensors become a map.

* :func:`forward` runs the model once with probes on the named layers (``"input"`` is the
  network input) and, optionally, modified backward rules.
* :func:`backward` back-propagates ``d target_score / d logits`` (``Targets.gradient``:
  one-hot for one class, softmax over the set for a set scored as log-sum-exp) to probes.

Backward rules are installed with a :class:`torch.overrides.TorchFunctionMode` for the duration
of the forward pass only. A mode sees every call to ``torch.relu``/``F.relu``/``nn.ReLU``/
``nn.ReLU6``/``F.conv2d``/``F.batch_norm``/``+``... whether it comes from a module or from a
functional call inside a ``forward`` (torchvision's GoogLeNet applies ``F.relu`` inside
``BasicConv2d``, where module hooks would miss it), and it patches nothing global. Each
intercepted call is replaced by the same computation wrapped in an autograd function whose
backward is the method's rule; everything else runs untouched. The rules run later, outside
the mode, inside ``torch.autograd.grad``: no host round trip, everything batched on the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from saliency_bench.targets import Targets, score_gradient

# re-exported: the rules' options and the rules of one op are used under these names
from ._excitation_ops import (RESIDUAL, SIGNED_INPUTS, WEIGHT_PARTS, conv_vjp, mwp_pool,  # noqa: F401
                              mwp_sum, mwp_weighted)

INPUT = "input"  # the probe name of the network input


# --------------------------------------------------------------------------------------------
# An op whose forward is the ordinary computation and whose backward is a rule.
# --------------------------------------------------------------------------------------------
class _Replaced(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fwd: Callable, bwd: Callable, *tensors: Tensor) -> Tensor:  # type: ignore[override]
        ctx.bwd = bwd
        ctx.save_for_backward(*tensors)
        return fwd(*tensors)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (None, None, *ctx.bwd(grad, *ctx.saved_tensors))


def replaced(fwd: Callable[..., Tensor], bwd: Callable[..., tuple], *tensors: Tensor) -> Tensor:
    """``fwd(*tensors)`` on the way forward; ``bwd(grad, *tensors)`` -> one grad per tensor back."""
    return _Replaced.apply(fwd, bwd, *tensors)


# --------------------------------------------------------------------------------------------
# Rules: a TorchFunctionMode that swaps the backward of the ops it knows.
# --------------------------------------------------------------------------------------------
def _relu_range(name: str, args: tuple, kwargs: dict) -> tuple[float, float] | None:
    """The linear range ``(lo, hi)`` of a ReLU-like call, or None for a hardtanh that is not one."""
    if name in ("relu", "relu_"):
        return 0.0, math.inf
    if name == "relu6":
        return 0.0, 6.0
    lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    return (float(lo), float(hi)) if lo == 0 else None


def _relu_forward(lo: float, hi: float) -> Callable[[Tensor], Tensor]:
    return (lambda t: torch.relu(t)) if hi == math.inf else (lambda t: t.clamp(lo, hi))


class Rules(TorchFunctionMode):
    """Modified backward rules; the base class leaves every op as it is (plain gradient)."""

    name = "gradient"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        handler = getattr(self, "on_" + name.strip("_"), None)
        if handler is not None and args and isinstance(args[0], Tensor) and args[0].requires_grad:
            out = handler(func, name, args, kwargs)
            if out is not NotImplemented:
                return out
        return func(*args, **kwargs)


#: Where the guided rule stands at a ReLU input of exactly 0, and what it does to a ReLU6.
AT_ZERO = ("block", "pass")
RELU6 = ("guided", "gradient")


class GuidedRules(Rules):
    """Guided backprop (Springenberg et al., ICLR 2015 workshop, eq. 4 "guided"): a ReLU passes
    back only positive gradient, and only where its input was positive.

    * ``at_zero``: ``"block"`` (default) at an input of exactly 0, the paper's ``f > 0`` (and
      Captum's, and the ReLU's own derivative there); ``"pass"`` is TorchRay's
      ``GuidedBackpropReLU`` (it zeroes the gradient where ``input < 0``);
    * ``relu6``: ``"guided"`` (default) treats ReLU6 (and ``hardtanh(0, hi)``) the same way on
      its linear range ``0 < x < hi``, the positive part of its true local gradient;
      ``"gradient"`` leaves it the ordinary gradient, which is what TorchRay (it patches
      ``torch.relu`` only) and Captum (it hooks ``nn.ReLU`` modules only) do to an unmodified
      EfficientNet.
    """

    name = "guided"

    def __init__(self, *, at_zero: str = "block", relu6: str = "guided") -> None:
        super().__init__()
        if at_zero not in AT_ZERO:
            raise ValueError(f"at_zero={at_zero!r}: choose one of {', '.join(AT_ZERO)}")
        if relu6 not in RELU6:
            raise ValueError(f"relu6={relu6!r}: choose one of {', '.join(RELU6)}")
        self.at_zero, self.relu6 = at_zero, relu6

    def on_relu(self, func, name, args, kwargs):
        rng = _relu_range(name, args, kwargs)
        if rng is None or (rng[1] != math.inf and self.relu6 == "gradient"):
            return NotImplemented
        lo, hi = rng
        strict = self.at_zero == "block"

        if strict:
            # The unit's own backward on the clamped gradient, ReLU's ``threshold_backward``
            # (g where x > lo) or hardtanh's (g where lo < x < hi): two kernels, where the
            # product with the mask ``(x > lo) & (x < hi)`` took six (two compares, an and, the
            # mask cast to float, the clamp, the product; perf/bench_profile.py counts them), and
            # 4-9x less time on a CPU. The same values for finite activations and gradients, but
            # for the sign of a blocked zero (+0 where the product gave -0 for a gradient of -0).
            if hi == math.inf:
                def bwd(g: Tensor, x: Tensor) -> tuple:
                    return (torch.ops.aten.threshold_backward(g.clamp(min=0), x, lo),)
            else:
                def bwd(g: Tensor, x: Tensor) -> tuple:
                    return (torch.ops.aten.hardtanh_backward(g.clamp(min=0), x, lo, hi),)
        else:
            def bwd(g: Tensor, x: Tensor) -> tuple:
                return (g.clamp(min=0) * ((x >= lo) & (x < hi)),)

        return replaced(_relu_forward(lo, hi), bwd, args[0])

    on_relu6 = on_hardtanh = on_relu


# -- excitation backprop (the rules of one linear map, pool or sum: _excitation_ops.py) ------
#: What BatchNorm (in eval mode, an affine map per channel) does to the probability.
BATCHNORM = ("pass", "fold")
#: How a clamp at the top (ReLU6, ``hardtanh(0, hi)``) passes probability.
SATURATED = ("pass", "block")

_RELUS = {"relu", "relu6", "hardtanh"}  # names with the underscores of in-place variants stripped
# Ops whose output is >= 0 when their (first) input is.
_KEEP_SIGN = {"max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool2d", "avg_pool1d",
              "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
              "adaptive_avg_pool3d", "flatten", "view", "reshape", "dropout", "contiguous", "squeeze",
              "unsqueeze", "pad", "getitem", "clone", "to", "float", "detach", "permute"}


class ExcitationRules(Rules):
    """Excitation backprop (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
    ECCV 2016): the backward pass computes marginal winning probabilities.

    The paper gives the rule for a linear map on non-negative inputs (eq. 7-8) and for max
    pooling (winner takes all). Where it is silent the defaults are TorchRay's
    (``torchray.attribution.excitation_backprop`` with ``update_resnet``, the program of the
    published VGG16/ResNet50 pointing-game table), and every other reading is a named option:

    * conv / linear: :func:`mwp_weighted` with the layer's weights, bias dropped. Inputs that can
      be negative (``signed_inputs``) are a case TorchRay never meets above its excitation
      layers (VGG16, ResNet50 and GoogLeNet feed every such conv from a ReLU or a max pool) and
      does not handle (it uses ``x`` as it is and expects ``x >= 0``). Default ``"split"``;
      ``"as_is"`` is TorchRay's code on such inputs; ``"clamp"``. On EfficientNet, whose
      linear-bottleneck outputs feed the next block's expansion conv, ``"as_is"`` amplifies the
      signal about a thousandfold between the classifier and ``blocks.2`` (what that does to
      localization: docs/PROTOCOLS.md §5.4);
    * average pooling: :func:`mwp_pool`; max pooling: the ordinary backward (winner takes all);
    * a residual sum ``a + b`` of two computed tensors: :func:`mwp_sum`, ``residual="signed"``
      (default, TorchRay's ``EltwiseSum``: ``a / (a + b)`` on the signed branches) or
      ``"positive"`` (``a^+ / (a^+ + b^+)``, shares in [0, 1]);
    * BatchNorm (eval): ``batchnorm="pass"`` (default, TorchRay) passes ``p`` unchanged, so the
      conv before it applies its own ``W^+``; ``"fold"`` folds the per-channel scale
      ``a = gamma / sqrt(var + eps)`` into that conv, ``W' = a W``: a channel with ``a < 0`` is
      then excited through the conv's negative weights (where ``a > 0`` the scale cancels and
      both agree). ``"fold"`` is what TorchRay's ``make_bn_positive`` (off in its benchmark)
      does to Caffe's ResNet50. A BatchNorm that follows no conv passes ``p`` either way;
    * ReLU passes ``p`` where the unit is on (``x > 0``): the ordinary backward, as TorchRay.
      ReLU6 (unknown to TorchRay, whose ordinary backward zeroes saturated units) passes ``p``
      wherever ``x > 0`` with ``saturated="pass"`` (default: in eq. 7 a unit whose output is 6
      wins like any active unit) or only on ``0 < x < 6`` with ``"block"``.

    Probability is conserved except at units whose inputs excite them not at all (a unit on by
    its bias or BatchNorm shift alone, a depthwise kernel with no positive weight on active
    inputs): there it stops, as in the paper (a bias is no neuron). Padding is no neuron either:
    a zero there excites nothing, so a border unit's probability goes to its real inputs only,
    as in TorchRay (tests/test_torchray_parity.py, timm's one-sided "same" padding included).

    ``negate`` names a weight tensor (the classifier's) whose sign is flipped *at backward time*,
    which gives contrastive EB its contrast signal from the same forward pass.
    """

    name = "excitation"

    def __init__(self, *, signed_inputs: str = "split", residual: str = "signed",
                 batchnorm: str = "pass", saturated: str = "pass") -> None:
        super().__init__()
        for value, allowed, what in ((signed_inputs, SIGNED_INPUTS, "signed_inputs"),
                                     (residual, RESIDUAL, "residual"), (batchnorm, BATCHNORM, "batchnorm"),
                                     (saturated, SATURATED, "saturated")):
            if value not in allowed:
                raise ValueError(f"{what}={value!r}: choose one of {', '.join(allowed)}")
        self.signed_inputs, self.residual = signed_inputs, residual
        self.batchnorm, self.saturated = batchnorm, saturated
        self.negate: Tensor | None = None
        self._nonneg: dict[int, Tensor] = {}  # tensors known >= 0 (saves the negative pass)
        self._conv_out: dict[int, tuple] = {}  # conv output -> how it was made (for BN folding)

    def __exit__(self, *exc):
        self._nonneg.clear()
        self._conv_out.clear()
        return super().__exit__(*exc)

    def is_nonneg(self, t: object) -> bool:
        return isinstance(t, Tensor) and self._nonneg.get(id(t)) is t

    def mark_nonneg(self, t: Tensor) -> Tensor:
        self._nonneg[id(t)] = t
        return t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs)
        if isinstance(out, Tensor) and not self.is_nonneg(out) and args:
            # Known signs are tracked even below the probed layer, where no rule runs, so the
            # first layers above the probe know their inputs are >= 0 too.
            name = getattr(func, "__name__", "").strip("_")
            if name in _RELUS and _relu_range(name, args, kwargs or {}) is not None:
                self.mark_nonneg(out)
            elif name in _KEEP_SIGN and self.is_nonneg(args[0]):
                self.mark_nonneg(out)
            elif name in ("add", "iadd", "radd") and len(args) == 2 and all(map(self.is_nonneg, args)):
                self.mark_nonneg(out)
            elif name == "cat" and all(self.is_nonneg(t) for t in args[0]):
                self.mark_nonneg(out)
        return out

    def on_conv2d(self, func, name, args, kwargs):
        x, w = args[0], args[1]
        rest = args[3:]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        extra = {k: v for k, v in kwargs.items() if k != "bias"}
        nonneg = self.is_nonneg(x)
        vjp = conv_vjp(func, x, w, rest, extra)

        def apply(t: Tensor, weight: Tensor) -> Tensor:
            return func(t, weight, None, *rest, **extra)

        def bwd(p: Tensor, x_: Tensor, w_: Tensor) -> tuple:
            return mwp_weighted(apply, x_, w_, p, self.signed_inputs, nonneg, negate=self.negate is w_,
                                vjp=vjp), None

        out = replaced(lambda x_, w_: func(x_, w_, bias, *rest, **extra), bwd, x, w)
        if self.batchnorm == "fold":
            self._conv_out[id(out)] = (out, apply, x, w, nonneg, vjp)
        return out

    on_conv1d = on_conv3d = on_linear = on_conv2d

    def on_batch_norm(self, func, name, args, kwargs):
        x = args[0]
        params = dict(zip(("running_mean", "running_var", "weight", "bias", "training", "momentum",
                           "eps"), args[1:]), **kwargs)
        if params.get("training") or params.get("running_var") is None:
            return NotImplemented
        made = self._conv_out.get(id(x))
        if made is None or made[0] is not x:  # "pass", or a BatchNorm that follows no conv
            return replaced(lambda x_: func(*args, **kwargs), lambda p, x_: (p,), x)
        _, apply, conv_in, w, nonneg, vjp = made
        scale = torch.rsqrt(params["running_var"] + params.get("eps", 1e-5))
        if params.get("weight") is not None:
            scale = scale * params["weight"]
        folded = w * scale.view(-1, *([1] * (w.ndim - 1)))

        def bwd(p: Tensor, conv_in_: Tensor) -> tuple:
            return (mwp_weighted(apply, conv_in_, folded, p, self.signed_inputs, nonneg, vjp=vjp, cache=False),)

        # The output depends on the conv's *input* through this node only: the conv node is
        # skipped on the way back, its rule replaced by the folded one.
        return replaced(lambda _: func(*args, **kwargs), bwd, conv_in)

    def on_relu(self, func, name, args, kwargs):
        rng = _relu_range(name, args, kwargs)
        if rng is None:
            return NotImplemented
        lo, hi = rng
        if hi == math.inf:
            # p where x > 0: ReLU's own backward (``threshold_backward``, one kernel), so the
            # plain op, out of place (the input may be a probe, a leaf that needs its gradient)
            return torch.relu(args[0])
        # p where lo < x (< hi): the unit's own backward, ReLU's or hardtanh's, one kernel where
        # a product with the mask took three or five (a blocked unit gives +0 where it gave -0)
        if self.saturated == "block":
            return replaced(_relu_forward(lo, hi), lambda p, x_: (torch.ops.aten.hardtanh_backward(p, x_, lo, hi),),
                            args[0])
        return replaced(_relu_forward(lo, hi), lambda p, x_: (torch.ops.aten.threshold_backward(p, x_, lo),),
                        args[0])

    on_relu6 = on_hardtanh = on_relu

    def on_avg_pool2d(self, func, name, args, kwargs):
        x = args[0]
        nonneg = self.is_nonneg(x)

        def apply(t: Tensor) -> Tensor:
            return func(t, *args[1:], **kwargs)

        return replaced(apply, lambda p, x_: (mwp_pool(apply, x_, p, self.signed_inputs, nonneg),), x)

    on_avg_pool1d = on_avg_pool3d = on_adaptive_avg_pool1d = on_avg_pool2d
    on_adaptive_avg_pool2d = on_adaptive_avg_pool3d = on_avg_pool2d

    def on_add(self, func, name, args, kwargs):
        if len(args) != 2 or not isinstance(args[1], Tensor) or not args[1].requires_grad or kwargs:
            return NotImplemented  # adding a constant (a bias, a shift) moves no excitation
        a, b = args
        return replaced(torch.add, lambda p, a_, b_: mwp_sum(a_, b_, p, self.residual), a, b)

    on_radd = on_iadd = on_add  # ``out += identity`` returns a new tensor: callers rebind it


RULES: dict[str, type[Rules]] = {"gradient": Rules, "guided": GuidedRules, "excitation": ExcitationRules}


# --------------------------------------------------------------------------------------------
# Probe, forward, backward.
# --------------------------------------------------------------------------------------------
@dataclass
class Pass:
    """One forward pass: the logits and the probed tensors (in the autograd graph)."""

    logits: Tensor
    probes: dict[str, Tensor] = field(default_factory=dict)
    rules: Rules | None = None


def forward(model, x: Tensor, layers: Sequence[str], rules: Rules | None = None) -> Pass:
    """Run ``model.net`` on ``x`` once, probing the output of each layer in ``layers``.

    A layer is a role (``gradcam``), an alias (``pool3``), a module path, or ``"input"``.
    The graph starts at the lowest probe: nothing below it is recorded, so the backward pass
    stops there.
    """
    run = Pass(logits=x, rules=rules)
    handles = []
    x = x.detach()
    if INPUT in layers:
        x = x.requires_grad_()
        run.probes[INPUT] = x
    for layer in layers:
        if layer == INPUT:
            continue
        module = model.layer(layer)

        def probe(module, inputs, out, layer=layer):
            if not isinstance(out, Tensor):
                raise TypeError(f"layer '{layer}' of model '{model.name}' returns "
                                f"{type(out).__name__}, not a tensor: probe another layer")
            if not out.requires_grad:  # the lowest probe starts the graph
                nonneg = rules is not None and isinstance(rules, ExcitationRules) and rules.is_nonneg(out)
                out = out.detach().requires_grad_()
                if nonneg:
                    rules.mark_nonneg(out)
            run.probes[layer] = out
            return out

        handles.append(module.register_forward_hook(probe))
    try:
        with torch.enable_grad():
            if rules is not None:
                with rules:
                    run.logits = model.net(x)
            else:
                run.logits = model.net(x)
    finally:
        for h in handles:
            h.remove()
    missing = [layer for layer in layers if layer not in run.probes]
    if missing:
        raise RuntimeError(f"layer(s) {missing} of model '{model.name}' did not run in the forward pass")
    return run


def backward(run: Pass, targets: Targets | Tensor, layers: Sequence[str], *, retain: bool = False,
             inject: dict[str, Callable[[Tensor], Tensor]] | None = None) -> list[Tensor]:
    """The (pseudo-)gradient of the target score at each probed layer in ``layers``.

    ``inject`` maps a probed layer to a function applied to the signal passing through it
    (contrastive EB subtracts its contrast signal there).
    """
    hooks = [run.probes[k].register_hook(fn) for k, fn in (inject or {}).items()]
    try:
        seed = score_gradient(run.logits, targets)
        return list(torch.autograd.grad(run.logits, [run.probes[k] for k in layers], seed,
                                        retain_graph=retain))
    finally:
        for h in hooks:
            h.remove()


def resolve(model, layer: str) -> str:
    """A layer parameter as the probe key: ``"input"`` stays, roles/aliases stay as given."""
    if layer != INPUT:
        model.layer_name(layer)  # fails early, listing the roles, for an unknown layer
    return layer


# --------------------------------------------------------------------------------------------
def smooth_maps(maps: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of ``[B,h,w]`` maps, TorchRay's ``smooth`` (``torchray.utils.imsmooth``
    as ``saliency()`` calls it): standard deviation ``sigma * max(h, w)``, the kernel cut at 4
    standard deviations and normalised, replicate padding. 0 leaves the maps as they are."""
    if sigma <= 0:
        return maps
    s = sigma * max(maps.shape[-2:])
    radius = math.ceil(4 * s)
    t = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = k / k.sum()
    m = maps[:, None]
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return m[:, 0]
