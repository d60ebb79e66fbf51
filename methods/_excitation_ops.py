"""Excitation backprop's marginal winning probabilities through one linear map, average pool or
residual sum (Zhang et al., ECCV 2016, eq. 7-8), which :class:`._backprop.ExcitationRules`
applies op by op, and what makes them cheap with the same values: the clamped weights kept
across calls (:data:`WEIGHT_PARTS`), and a convolution's ``W^T q`` without an inner autograd
graph (:func:`conv_vjp`)."""
from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def clamped_part(w: Tensor, negate: bool, positive: bool) -> Tensor:
    """``W^+`` (``positive``) or ``W^-`` of ``w``, or of ``-w`` (``negate``)."""
    w = w.detach()
    if negate:
        w = -w
    return w.clamp(min=0) if positive else w.clamp(max=0)


class _WeightParts:
    """The clamped parts ``W^+`` / ``W^-`` of weight tensors (negated for contrastive EB), kept
    across calls: a model's weights do not change between batches, and clamping every weight at
    every call was a pass over all of them per batch.

    An entry is keyed by the weight tensor's identity and is valid only while the tensor is alive
    (a weak reference; the entry goes with it) and has the same version counter, data pointer,
    dtype, shape and strides as when the entry was made: an in-place write (``load_state_dict``,
    an optimiser step, ``torch.nn.init``, ``w.add_()`` under ``no_grad``) bumps the version, a
    swapped ``.data`` or a ``.to()`` moves the pointer. A write through ``w.data`` bumps neither
    (autograd cannot see it either); the isolation guard undoes such writes by copying the loaded
    values back in place, which are the values the entry was made from.
    """

    def __init__(self) -> None:
        self._parts: dict[tuple, tuple] = {}

    @staticmethod
    def _stamp(w: Tensor) -> tuple | None:
        try:
            return w._version, w.data_ptr(), w.dtype, w.device, tuple(w.shape), w.stride()
        except RuntimeError:  # an inference tensor has no version counter: nothing to key on
            return None

    def get(self, w: Tensor, negate: bool, positive: bool) -> Tensor:
        stamp = self._stamp(w)
        if stamp is None:
            return clamped_part(w, negate, positive)
        key = (id(w), negate, positive)
        hit = self._parts.get(key)
        if hit is not None and hit[0]() is w and hit[1] == stamp:
            return hit[2]
        part = clamped_part(w, negate, positive)
        parts = self._parts

        def gone(ref, key=key):
            if parts.get(key, (None,))[0] is ref:
                del parts[key]

        self._parts[key] = (weakref.ref(w, gone), stamp, part)
        return part

    def clear(self) -> None:
        self._parts.clear()

    def __len__(self) -> int:
        return len(self._parts)


#: The clamped weights of every model excitation backprop has run on (tests clear it).
WEIGHT_PARTS = _WeightParts()


_CONVS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}


def conv_vjp(func: Callable, x: Tensor, w: Tensor, rest: tuple, extra: dict
              ) -> Callable[[Tensor, Tensor, Tensor], Tensor] | None:
    """``q -> W^T q`` of a ``conv{1,2,3}d`` call as ``aten.convolution_backward`` (the kernel and
    arguments of autograd's ``ConvolutionBackward0``, so the same values), or None where the
    call is not one it covers (string padding, unbatched input): autograd then does it."""
    n = _CONVS.get(func)
    if n is None or x.ndim != n + 2 or w.ndim != n + 2:
        return None
    names = ("stride", "padding", "dilation", "groups")
    opts = dict(zip(names, rest))
    if len(rest) > len(names) or set(extra) - set(names) or set(opts) & set(extra):
        return None
    opts.update(extra)
    geometry = []
    for k, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
        v = opts.get(k, default)
        if isinstance(v, int):
            v = [v] * n
        elif isinstance(v, (tuple, list)) and len(v) == n and all(isinstance(i, int) for i in v):
            v = list(v)
        else:
            return None  # "same"/"valid" padding and anything unusual: autograd's own path
        geometry.append(v)
    stride, padding, dilation = geometry
    groups = opts.get("groups", 1)
    if not isinstance(groups, int):
        return None
    zeros = [0] * n

    def vjp(q: Tensor, t: Tensor, ww: Tensor) -> Tensor:
        return torch.ops.aten.convolution_backward(q, t, ww, None, stride, padding, dilation, False, zeros,
                                                   groups, [True, False, False])[0]

    return vjp


def _safe_div(p: Tensor, z: Tensor) -> Tensor:
    """``p / z`` where ``z != 0``, else 0: a neuron without any excitatory input passes nothing
    down (and no 0/0 NaN). TorchRay divides by ``z + 1e-20`` instead, which gives the same
    products wherever ``z = 0`` exactly.

    In float arithmetic only, no comparison: ``nz = |sign z|`` is exactly 1 or 0, ``z + (1 - nz)``
    is exactly ``z`` where ``z != 0`` and 1 where it is 0, and the product by ``nz`` is exact.
    The values are ``torch.where(z != 0, p / z, 0)``'s wherever ``p`` is finite (up to the sign
    of a zero), and cheaper on the CPU (1.4-2.7x on 7x7 and 4x4 maps, measured): ``where`` and
    the comparison to 0 are not vectorised there."""
    nz = z.sign().abs_()
    return torch.div(p, nz.neg().add_(1).add_(z)).mul_(nz)


#: How a linear map excites inputs that can be negative (EfficientNet's linear bottleneck
#: outputs; the network input). Zhang et al. assume ``x >= 0`` (sec. 3.2) and say no more.
SIGNED_INPUTS = ("as_is", "split", "clamp")


def mwp_weighted(apply: Callable[[Tensor, Tensor], Tensor], x: Tensor, w: Tensor, p: Tensor,
                 signed: str = "split", nonneg: bool = False, *, negate: bool = False,
                 vjp: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
                 cache: bool = True) -> Tensor:
    """Marginal winning probability through a linear map ``y_i = sum_j w_ij x_j`` (Zhang et al.,
    ECCV 2016, eq. 7-8): ``p_j = sum_i x_j w_ij^+ / (sum_k x_k w_ik^+) p_i``, bias dropped (a
    bias is no neuron and excites nothing). ``apply(t, W)`` is the map without bias; its
    vector-Jacobian product gives ``W^T q`` (``vjp(q, t, W)`` computes it directly when given,
    the kernel autograd would run, without building a graph; else ``torch.autograd.grad``).
    ``negate`` uses ``-w`` (contrastive EB). The clamped weights come from
    :data:`WEIGHT_PARTS` unless ``cache`` is false (a weight made afresh each call).

    For ``x >= 0`` (after a ReLU; ``nonneg``) that is the paper's rule and ``signed`` does not
    matter. Otherwise ``signed`` picks a reading (the paper assumes ``x >= 0``, sec. 3.2):

    * ``"split"`` (default): the positive contributions ``x_j^+ w_ij^+ + x_j^- w_ij^-`` (a
      negative input times a negative weight excites too), so probabilities stay >= 0;
    * ``"as_is"`` (TorchRay's conv rule, which expects ``x >= 0`` and does not check): the
      formula with the signed ``x``; a negative input gets negative probability, and a small or
      negative denominator amplifies or flips the signal;
    * ``"clamp"``: ``x_j^+ w_ij^+`` (negative inputs excite nothing: the clamping that TorchRay's
      comment mentions as another implementation's).
    """
    if signed not in SIGNED_INPUTS:
        raise ValueError(f"signed inputs rule {signed!r}: choose one of {', '.join(SIGNED_INPUTS)}")

    def part(positive: bool) -> Tensor:
        if cache:
            return WEIGHT_PARTS.get(w, negate, positive)
        return clamped_part(w, negate, positive)

    x = x.detach()
    if nonneg or signed == "as_is":
        parts = [(x, part(True))]
    elif signed == "clamp":
        parts = [(x.clamp(min=0), part(True))]
    else:  # split
        parts = [(x.clamp(min=0), part(True)), (x.clamp(max=0), part(False))]
    if vjp is not None:
        z = apply(*parts[0])
        for t, ww in parts[1:]:
            z = z + apply(t, ww)
        q = _safe_div(p, z)
        grads = [vjp(q, t, ww) for t, ww in parts]
        xs = [t for t, _ in parts]
    else:
        with torch.enable_grad():
            xs = [t.requires_grad_() for t, _ in parts]
            z = apply(xs[0], parts[0][1])
            for t, (_, ww) in zip(xs[1:], parts[1:]):
                z = z + apply(t, ww)
            grads = torch.autograd.grad(z, xs, _safe_div(p, z.detach()))
    out = xs[0].detach() * grads[0]
    for t, g in zip(xs[1:], grads[1:]):
        out = out + t.detach() * g
    return out


def mwp_pool(apply: Callable[[Tensor], Tensor], x: Tensor, p: Tensor, signed: str = "split",
             nonneg: bool = False) -> Tensor:
    """Marginal winning probability through average pooling (positive weights):
    ``p_j = sum_i x_j / (sum_k x_k) p_i`` over each window. With signed inputs, ``"as_is"`` (TorchRay)
    uses ``x`` as it is; ``"split"`` and ``"clamp"`` both give ``x^+`` (a positive weight has no
    negative part)."""
    with torch.enable_grad():
        t = (x.detach() if nonneg or signed == "as_is" else x.detach().clamp(min=0)).requires_grad_()
        z = apply(t)
        (g,) = torch.autograd.grad(z, [t], _safe_div(p, z.detach()))
    return t.detach() * g


#: How a residual sum ``a + b`` shares its probability between its two inputs.
RESIDUAL = ("signed", "positive")


def mwp_sum(a: Tensor, b: Tensor, p: Tensor, rule: str = "signed") -> tuple[Tensor, Tensor]:
    """Marginal winning probability through a residual sum ``y = a + b`` (a linear map with
    weights 1, on which the paper says nothing):

    * ``"signed"`` (TorchRay's ``EltwiseSum``, used for ResNet in its benchmark):
      ``p_a = a / (a + b) p`` with the signed ``a, b``. In ResNet the sum feeds a ReLU, so
      ``p`` is 0 wherever ``a + b <= 0``; a negative branch gets negative probability and the
      other branch more than ``p``. Without a ReLU after the sum (EfficientNet) the shares are
      not bounded where ``a + b`` is near 0;
    * ``"positive"``: the rule of eq. 7 on the positive contributions,
      ``p_a = a^+ / (a^+ + b^+) p``: shares stay in [0, p].
    """
    a, b = a.detach(), b.detach()
    if rule == "signed":
        q = _safe_div(p, a + b)
    elif rule == "positive":
        a, b = a.clamp(min=0), b.clamp(min=0)
        q = _safe_div(p, a + b)
    else:
        raise ValueError(f"residual rule {rule!r}: choose one of {', '.join(RESIDUAL)}")
    return a * q, b * q
