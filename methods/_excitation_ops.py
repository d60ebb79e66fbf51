"""What excitation backprop's rules (methods/_backprop.py) need to run fast, with the same values:
the clamped weights kept across calls, and a convolution's ``W^T q`` without an inner autograd
graph."""
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
