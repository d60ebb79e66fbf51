"""Pillow's bilinear resize coefficients for one axis (``libImaging/Resample.c``, 8 bits per
channel, Pillow 13), computed in the same double-precision operations as Pillow."""
from __future__ import annotations

import math
from collections import namedtuple
from functools import lru_cache

import numpy as np

PIL_PRECISION_BITS = 32 - 8 - 2  # Pillow's libImaging/Resample.c: fixed-point coefficients

Taps = namedtuple("Taps", "start count taps first last")
Taps.__doc__ = """Pillow's coefficients for one axis (:func:`pil_bilinear_taps`)."""


@lru_cache(maxsize=512)
def pil_bilinear_taps(n_in: int, n_out: int) -> Taps:
    """Pillow's coefficients for one axis of ``Image.resize(..., BILINEAR)`` from ``n_in`` to
    ``n_out`` pixels (``precompute_coeffs`` then ``normalize_coeffs_8bpc`` of Resample.c, in the
    same double-precision operations): ``start [n_out]``, ``count [n_out]``, the integer taps
    ``[n_out, K]`` (output ``i`` is ``clip8((2^21 + sum_k taps[i,k] * in[start[i]+k]) >> 22)``), and
    for each input pixel the first and last output its tap reaches with a non-zero weight."""
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    ksize = int(math.ceil(support)) * 2 + 1
    start = np.zeros(n_out, np.int64)
    count = np.zeros(n_out, np.int64)
    taps = np.zeros((n_out, ksize), np.int64)
    ss = 1.0 / filterscale
    for xx in range(n_out):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates toward zero, as int()
        xmax = min(int(center + support + 0.5), n_in) - xmin
        ws = []
        ww = 0.0
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * ss)
            w = 1.0 - t if t < 1.0 else 0.0
            ws.append(w)
            ww += w
        for x, w in enumerate(ws):
            k = w / ww if ww != 0.0 else w
            taps[xx, x] = int(0.5 + k * (1 << PIL_PRECISION_BITS)) if k >= 0 else \
                int(-0.5 + k * (1 << PIL_PRECISION_BITS))
        start[xx] = xmin
        count[xx] = xmax
    first = np.full(n_in, n_out, np.int64)
    last = np.full(n_in, -1, np.int64)
    for xx in range(n_out):
        for x in range(count[xx]):
            if taps[xx, x] != 0:
                i = start[xx] + x
                first[i] = min(first[i], xx)
                last[i] = max(last[i], xx)
    return Taps(start, count, taps, first, last)
