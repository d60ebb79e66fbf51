"""Pillow's bilinear resize of an 8-bit image, emulated exactly, and the authors' ``imresize``
(``scipy.misc.imresize``: bytescale to uint8, then PIL bilinear) of a thresholded map, for the
tight box of its non-zero pixels without resizing any image (the localization benchmark).

The arithmetic is Pillow's as installed (Pillow 13, ``libImaging/Resample.c``, 8 bits per
channel): fixed-point taps, the horizontal pass first unless the height shrinks by more than
twice as many pixels as the width. A kept set is "the first ``c`` pixels in descending order"
(ties cut in raster order): :func:`kept_set_boxes` boxes many of them at once."""
from __future__ import annotations

import threading
from collections import namedtuple
from functools import lru_cache

import numpy as np

from .jit import Kernels
from .kept_order import _NO_VALUES, kept_facts, sorted_order
from .pil_taps import PIL_PRECISION_BITS, Taps, pil_bilinear_taps

jit = Kernels(__name__)

Kept = namedtuple("Kept", "m v closed tie_mark stamp cmin scale f0")
Kept.__doc__ = """A bytescaled kept map: pixels of ``m`` above ``v``, or equal to ``v`` and ``closed`` or
marked ``stamp`` in ``tie_mark``, keep ``uint8(clip((a - cmin) * scale, 0, 255) + 0.5)``; the others
read ``f0`` (what a rejected 0 bytescales to)."""
Scratch = namedtuple("Scratch", "tval tstamp rmax rstamp")
Scratch.__doc__ = """Horizontal-pass values and row maxima computed so far, valid where their stamp is the
kept set's."""


@jit.helper
def _byte(a, cmin, scale):  # pragma: no cover - compiled by numba
    """scipy's ``bytescale`` of one float32 value: ``uint8(clip((a - cmin) * scale, 0, 255) + 0.5)``,
    every operation in float32 as NumPy does it on a float32 map. A NaN (``0 x inf`` where the map's
    range is so small that ``255 / range`` overflows, or ``inf x 0``) casts to 0, as NumPy's
    ``astype(uint8)`` gives it on x86."""
    e = np.float32(np.float32(a - cmin) * scale)
    if not (e >= np.float32(0.0)):  # (NaN included)
        e = np.float32(0.0)
    elif e > np.float32(255.0):
        e = np.float32(255.0)
    return np.int64(np.float32(e + np.float32(0.5)))


@jit.helper
def _kept_byte(k, y, x):  # pragma: no cover - numba
    """The uint8 value of pixel ``(y, x)`` of the bytescaled kept map ``k`` (a :class:`Kept`):
    kept pixels (value above ``v``, or equal to ``v`` and among the kept ties) keep their value,
    the others are 0."""
    a = k.m[y, x]
    if a > k.v or (a == k.v and (k.closed or k.tie_mark[y * k.m.shape[1] + x] == k.stamp)):
        return _byte(a, k.cmin, k.scale)
    return k.f0


@jit.helper
def _t_value(kp, yy, xx, need_h, th):  # pragma: no cover
    """Pillow's horizontal pass (taps ``th``) at output column ``xx`` of input row ``yy`` (uint8)."""
    if not need_h:
        return _kept_byte(kp, yy, xx)
    s = np.int64(1) << (PIL_PRECISION_BITS - 1)
    for t in range(th.count[xx]):
        k = th.taps[xx, t]
        if k != 0:
            s += k * _kept_byte(kp, yy, th.start[xx] + t)
    s >>= PIL_PRECISION_BITS
    if s < 0:
        return np.int64(0)
    if s > 255:
        return np.int64(255)
    return s


@jit.kernel
def _resized_box(kp, r0, r1, q0, q1, H, W, th, tv, sc, bounds, fast, out):  # pragma: no cover - numba
    """Tight box ``out = (x1, y1, x2, y2)`` (0-based) of the non-zero pixels of Pillow's bilinear
    resize to ``H x W`` of the bytescaled kept map ``kp`` (a :class:`Kept`) whose non-zero pixels
    lie in rows ``r0..r1`` and columns ``q0..q1``; returns False when the resized map is all zero.
    ``th``/``tv``: the horizontal and vertical :class:`Taps` (used where the width, the height changes),
    ``sc``: a :class:`Scratch`. ``bounds = (rowbyte, colbyte, rowarg, colarg, hsum)``: upper bounds
    of the kept map's bytes per row and per column, where each row's and column's maximum lies,
    and the largest sum of horizontal taps of an output column.

    Only what the box needs is computed: output columns from the left (then the right), each
    scanned down until a non-zero pixel; then output rows from the top (then the bottom) within
    those columns, scanned across until one, a row being skipped when the largest horizontal-pass
    values of its input rows (known once a row over them was found zero) cannot reach 1.
    Every horizontal-pass value is computed once per kept set (``sc.tval``/``sc.tstamp``, row
    maxima ``sc.rmax``/``sc.rstamp``). The arithmetic is Pillow's (Resample.c, 8 bits per channel): integer
    taps, a rounding half ``2^21`` added, ``>> 22``, clipped to 0..255, horizontal pass first (the
    caller transposes the map for Pillow's vertical-first case).

    With ``fast`` (the default path; without it, the plain scans above, kept as the reference
    the tests compare to), two shortcuts that change no result: a column whose horizontal-pass
    values are all 0 by the byte bounds (``half + sum of taps x column bounds < 2^22``) is
    skipped unscanned, and so is a row whose bounds cannot reach 1; and a column (row) is first
    tried at the output rows (columns) of the input pixel that bounds it most, the maximum of its
    most weighted input column (row): when one of those is non-zero, the scan stops there.
    """
    need_h = W != kp.m.shape[1]
    need_v = H != kp.m.shape[0]
    hs, hn, hk, hf, hl = th
    vs, vn, vk, vf, vl = tv
    tval, tstamp, rmax, rstamp = sc
    rowbyte, colbyte, rowarg, colarg, hsum = bounds
    stamp = kp.stamp
    half = np.int64(1) << (PIL_PRECISION_BITS - 1)
    one = np.int64(1) << PIL_PRECISION_BITS
    if need_h:
        x_lo = W
        x_hi = -1
        for q in range(q0, q1 + 1):
            x_lo = min(x_lo, hf[q])
            x_hi = max(x_hi, hl[q])
    else:
        x_lo = q0
        x_hi = q1
    if need_v:
        y_lo = vf[r0]
        y_hi = vl[r1]
    else:
        y_lo = r0
        y_hi = r1
    # With few input rows for many output rows (a strong vertical upsampling), a column's
    # horizontal-pass values are computed first: an all-zero column is skipped at once. Otherwise
    # the column is scanned down with early exit (dense maps find a non-zero pixel at once).
    upfront = need_v and 4 * (r1 - r0 + 1) <= y_hi - y_lo + 1
    xl = -1
    xr = -1
    for side in range(2):
        X = x_lo if side == 0 else x_hi
        stop = x_hi + 1 if side == 0 else xl - 1
        while X != stop:
            found = False
            if fast:
                # an upper bound of every horizontal-pass value of column X, and its best input pixel
                best = np.int64(-1)
                arg = -1
                if need_h:
                    bound = half
                    for t in range(hn[X]):
                        q = hs[X] + t
                        kb = hk[X, t] * colbyte[q]
                        bound += kb
                        if kb > best:
                            best = kb
                            arg = q
                    zero = bound < one
                else:
                    zero = colbyte[X] == 0
                    arg = X
                if zero:
                    X += 1 if side == 0 else -1
                    continue
                r = colarg[arg]
                ya = vf[r] if need_v else r
                yb = vl[r] if need_v else r
                for Y in range(max(ya, y_lo), min(yb, y_hi) + 1):
                    s = half
                    for t in range(vn[Y] if need_v else 1):
                        yy = vs[Y] + t if need_v else Y
                        k = vk[Y, t] if need_v else one
                        if r0 <= yy <= r1 and k != 0:
                            i = yy * W + X
                            if tstamp[i] != stamp:
                                tval[i] = _t_value(kp, yy, X, need_h, th)
                                tstamp[i] = stamp
                            s += k * tval[i]
                    if s >= one:
                        found = True
                        break
                if found:
                    break
            if upfront:  # the column's horizontal-pass values first, then only the rows they reach
                lo = -1
                hi = -1
                for yy in range(r0, r1 + 1):
                    i = yy * W + X
                    if tstamp[i] != stamp:
                        tval[i] = _t_value(kp, yy, X, need_h, th)
                        tstamp[i] = stamp
                    if tval[i] > 0:
                        if lo < 0:
                            lo = yy
                        hi = yy
                a = vf[lo] if lo >= 0 else 0
                b = vl[hi] if lo >= 0 else -1
            else:  # down the column, each horizontal-pass value when first needed
                a = y_lo
                b = y_hi
            for Y in range(a, b + 1):
                s = half
                for t in range(vn[Y] if need_v else 1):
                    yy = vs[Y] + t if need_v else Y
                    k = vk[Y, t] if need_v else one
                    if r0 <= yy <= r1 and k != 0:
                        i = yy * W + X
                        if tstamp[i] != stamp:
                            tval[i] = _t_value(kp, yy, X, need_h, th)
                            tstamp[i] = stamp
                        s += k * tval[i]
                if s >= one:
                    found = True
                    break
            if found:
                break
            X += 1 if side == 0 else -1
        if X == stop:
            return False
        if side == 0:
            xl = X
        else:
            xr = X
    yt = -1
    yb = -1
    for side in range(2):
        Y = y_lo if side == 0 else y_hi
        stop = y_hi + 1 if side == 0 else yt - 1
        while Y != stop:
            skip = False
            if need_v:  # rows whose input rows are known to be too weak are skipped
                bound = half
                for t in range(vn[Y]):
                    yy = vs[Y] + t
                    if r0 <= yy <= r1 and vk[Y, t] > 0:
                        if rstamp[yy] != stamp:
                            bound = one
                            break
                        bound += vk[Y, t] * rmax[yy]
                skip = bound < one
            found = False
            if fast and not skip:
                # an upper bound of row Y from its input rows' byte bounds, and its best input pixel
                best = np.int64(-1)
                arg = -1
                if need_v:
                    bound = half
                    for t in range(vn[Y]):
                        yy = vs[Y] + t
                        if r0 <= yy <= r1 and vk[Y, t] > 0:
                            tb = rowbyte[yy]
                            if need_h:
                                tb = min((half + hsum * tb) >> PIL_PRECISION_BITS, np.int64(255))
                            kb = vk[Y, t] * tb
                            bound += kb
                            if kb > best:
                                best = kb
                                arg = yy
                    skip = bound < one
                else:
                    skip = rowbyte[Y] == 0
                    arg = Y
                if not skip:
                    q = rowarg[arg]
                    xa = hf[q] if need_h else q
                    xb = hl[q] if need_h else q
                    for X in range(max(xa, xl), min(xb, xr) + 1):
                        s = half
                        for t in range(vn[Y] if need_v else 1):
                            yy = vs[Y] + t if need_v else Y
                            k = vk[Y, t] if need_v else one
                            if r0 <= yy <= r1 and k != 0:
                                i = yy * W + X
                                if tstamp[i] != stamp:
                                    tval[i] = _t_value(kp, yy, X, need_h, th)
                                    tstamp[i] = stamp
                                s += k * tval[i]
                        if s >= one:
                            found = True
                            break
            if not skip and not found:
                for X in range(xl, xr + 1):
                    s = half
                    for t in range(vn[Y] if need_v else 1):
                        yy = vs[Y] + t if need_v else Y
                        k = vk[Y, t] if need_v else one
                        if r0 <= yy <= r1 and k != 0:
                            i = yy * W + X
                            if tstamp[i] != stamp:
                                tval[i] = _t_value(kp, yy, X, need_h, th)
                                tstamp[i] = stamp
                            s += k * tval[i]
                    if s >= one:
                        found = True
                        break
                if not found and need_v:  # every value of its input rows over xl..xr is known now
                    for t in range(vn[Y]):
                        yy = vs[Y] + t
                        if r0 <= yy <= r1 and rstamp[yy] != stamp:
                            top = np.int64(0)
                            for X in range(xl, xr + 1):
                                top = max(top, tval[yy * W + X])
                            rmax[yy] = top
                            rstamp[yy] = stamp
            if found:
                break
            Y += 1 if side == 0 else -1
        if side == 0:
            yt = Y
        else:
            yb = Y
    out[0] = xl
    out[1] = yt
    out[2] = xr
    out[3] = yb
    return True




@jit.kernel
def _kept_set_boxes(m, facts, asc, tie_pos, extremes, counts, H, W, th, tv, vertical_first, tie_mark, tval, tstamp,
                    stamp0, hsums, fast):  # pragma: no cover - compiled by numba
    """1-based boxes ``[A,4]`` of ``getbb_from_heatmap`` for the kept sets of ``counts`` (each
    distinct count resized once). ``m [h,w]`` float32; ``facts = (vals, above, ties, top, nan_free)``:
    for each count ``c`` the ``c``-th largest value, how many values are above it and equal to it
    (:func:`saliency_bench.ops.kept_order.kept_facts`), the largest value and whether the map is
    free of NaN; ``asc``: its values in ascending order when it has a NaN (else not read);
    ``tie_pos``: where the values in ascending order lie in ``m`` (raster order among equal values),
    valid at each count's ties, or empty (the ties are then found by scanning the map),
    ``extremes`` its row maxima, column maxima, row minima and column minima, and where the row
    and column maxima lie (column and row indices); ``hsums``: the largest sum of taps of an output
    pixel, horizontal and vertical; ``fast``: :func:`_resized_box`'s shortcuts; ``th``/``tv``:
    Pillow's :class:`Taps` from :func:`pil_bilinear_taps` for the two axes. When Pillow runs
    the vertical pass first (``vertical_first``), the box is computed on the transposed map.
    ``tie_mark [h*w]``, ``tval``/``tstamp [h*W]`` (or ``[w*H]``) are scratch buffers marked with
    stamps above ``stamp0`` (one per alpha), so that they never need clearing."""
    rowmax, colmax, rowmin, colmin, rowarg, colarg = extremes
    vals, n_above, n_ties, top, nan_free = facts
    h, w = m.shape
    n = h * w
    n_a = counts.shape[0]
    out = np.empty((n_a, 4), np.int64)
    done = np.full(n_a, -1, np.int64)  # index of an earlier alpha with the same count
    box = np.zeros(4, np.int64)
    mt = np.ascontiguousarray(m.T) if vertical_first else m
    rmax = np.empty(max(h, w), np.int64)
    rstamp = np.zeros(max(h, w), np.int64)
    sc = Scratch(tval, tstamp, rmax, rstamp)
    rowbyte = np.zeros(h, np.int64)  # upper bounds of each row's and column's bytes in a kept set
    colbyte = np.zeros(w, np.int64)
    if vertical_first:  # rows of the transposed map are the columns of m
        bounds = (colbyte, rowbyte, colarg, rowarg, hsums[1])
    else:
        bounds = (rowbyte, colbyte, rowarg, colarg, hsums[0])
    for a in range(n_a):
        for k in range(a):
            if counts[k] == counts[a]:
                done[a] = k
                break
        if done[a] >= 0:
            out[a] = out[done[a]]
            continue
        c = counts[a]
        out[a, 0] = 1  # nothing non-zero after the resize: their [1, 1, resize[0], resize[1]]
        out[a, 1] = 1
        out[a, 2] = H
        out[a, 3] = W
        if c == 0:
            continue
        v = vals[a]  # the smallest kept value
        above = n_above[a]
        ties = n_ties[a]
        lb = n - above - ties  # the first ascending index of v
        t = c - above  # how many of the pixels equal to v are kept
        closed = t == ties or v == 0  # kept zeros read 0 like the rejected pixels
        # bytescale: cmin/cmax over the kept map, whose rejected pixels are 0
        cmax = top
        cmin = v
        if c < n:
            cmax = max(cmax, np.float32(0.0))
            cmin = min(cmin, np.float32(0.0))
        cscale = np.float32(cmax - cmin)
        if cscale == 0:
            cscale = np.float32(1.0)
        scale = np.float32(255.0 / np.float64(cscale))
        f0 = _byte(np.float32(0.0), cmin, scale)  # what a rejected pixel becomes
        stamp = stamp0 + a + 1
        kp = Kept(mt, v, closed, tie_mark, stamp, cmin, scale, f0)
        if not closed and tie_pos.shape[0]:  # the first t pixels equal to v in raster order are kept
            for j in range(t):
                p = tie_pos[lb + j]
                if vertical_first:
                    y = p // w
                    tie_mark[(p - y * w) * h + y] = stamp
                else:
                    tie_mark[p] = stamp
        elif not closed:
            left = t  # (rows and columns as loops: a division per pixel cost more than the test)
            for y in range(h):
                if left == 0:
                    break
                if rowmax[y] < v or rowmin[y] > v:  # v is not in this row (a NaN row is read)
                    continue
                for x in range(w):
                    if m[y, x] == v:
                        tie_mark[x * h + y if vertical_first else y * w + x] = stamp
                        left -= 1
                        if left == 0:
                            break
        r0, r1, q0, q1 = h, -1, w, -1
        if closed or (nan_free and fast and f0 == 0):
            # Non-zero after bytescale: the kept values (>= v) whose byte is >= 1, i.e. those >= some
            # x1 (the byte is monotone in the value), and, when a 0 bytescales to non-zero (a kept
            # map with negative values), every rejected pixel (< v): both from row/column extremes.
            # A cut inside a tie (not closed) keeps only some pixels equal to v, so these rows and
            # columns bound its box, which is all the scan below needs (it reads the bytes); such a
            # cut keeps a positive v, so a rejected pixel reads f0 = 0 and the rest is not needed.
            # Without NaN the byte is monotone in the value: "a row maximum >= x1" (x1 the least kept
            # value whose byte is >= 1) is "a row maximum >= v whose byte is >= 1", and such an x1
            # exists when the largest value's byte is >= 1. With a NaN, the search of the sorted map.
            if nan_free:
                if _byte(top, cmin, scale) >= 1:
                    for y in range(h):
                        if rowmax[y] >= v and _byte(rowmax[y], cmin, scale) >= 1:
                            r0 = min(r0, y)
                            r1 = max(r1, y)
                    for x in range(w):
                        if colmax[x] >= v and _byte(colmax[x], cmin, scale) >= 1:
                            q0 = min(q0, x)
                            q1 = max(q1, x)
            else:
                i, j = lb, n
                while i < j:
                    mid = (i + j) // 2
                    if _byte(asc[mid], cmin, scale) >= 1:
                        j = mid
                    else:
                        i = mid + 1
                if i < n:
                    x1 = asc[i]
                    for y in range(h):
                        if rowmax[y] >= x1:
                            r0 = min(r0, y)
                            r1 = max(r1, y)
                    for x in range(w):
                        if colmax[x] >= x1:
                            q0 = min(q0, x)
                            q1 = max(q1, x)
            if f0 > 0 and c < n:
                for y in range(h):
                    if rowmin[y] < v:
                        r0 = min(r0, y)
                        r1 = max(r1, y)
                for x in range(w):
                    if colmin[x] < v:
                        q0 = min(q0, x)
                        q1 = max(q1, x)
            if r1 < 0:
                continue
        else:  # a NaN somewhere (the extremes do not bound the bytes), or the plain scan: every pixel read
            for y in range(h):
                for x in range(w):
                    u = _kept_byte(kp, x, y) if vertical_first else _kept_byte(kp, y, x)
                    if u > 0:
                        r0 = min(r0, y)
                        r1 = y
                        q0 = min(q0, x)
                        q1 = max(q1, x)
            if r1 < 0:
                continue
        if fast:  # the byte is monotone in the value: a row's largest byte is its maximum's
            fz = f0 if c < n else 0  # (a rejected pixel reads f0; a tie not kept is bounded by v's byte)
            for y in range(h):
                rowbyte[y] = max(_byte(rowmax[y], cmin, scale) if rowmax[y] >= v else 0, fz)
            for x in range(w):
                colbyte[x] = max(_byte(colmax[x], cmin, scale) if colmax[x] >= v else 0, fz)
        if vertical_first:  # the same scan on the transposed map, axes swapped
            if _resized_box(kp, q0, q1, r0, r1, W, H, tv, th, sc, bounds, fast, box):
                out[a, 0] = box[1] + 1
                out[a, 1] = box[0] + 1
                out[a, 2] = box[3] + 1
                out[a, 3] = box[2] + 1
        elif _resized_box(kp, r0, r1, q0, q1, H, W, th, tv, sc, bounds, fast, box):
            out[a, 0] = box[0] + 1
            out[a, 1] = box[1] + 1
            out[a, 2] = box[2] + 1
            out[a, 3] = box[3] + 1
    return out


@jit.kernel(fastmath=frozenset({"nnan", "ninf"}))
def _finite_extremes(m):  # pragma: no cover - compiled by numba
    """NumPy's ``m[rows, m.argmax(1)]``, ``m[m.argmax(0), cols]``, ``m.min(1)``, ``m.min(0)``,
    ``m.argmax(1)``, ``m.argmax(0)`` of a finite map (the flags assume it, so that the reductions
    vectorise): each maximum at its first position, the values read there."""
    h, w = m.shape
    rowmax = np.empty(h, np.float32)
    rowmin = np.empty(h, np.float32)
    rowarg = np.empty(h, np.int64)
    colmax = m[0].copy()
    colmin = m[0].copy()
    colarg = np.full(w, -1, np.int64)
    for y in range(h):
        r = m[y]
        for x in range(w):  # the columns' extremes: no dependence between x, vectorised
            v = r[x]
            colmin[x] = min(colmin[x], v)
            colmax[x] = max(colmax[x], v)
        # the row's: four chains of max / min (one chain waits for each max before the next)
        x0 = x1 = x2 = x3 = n0 = n1 = n2 = n3 = r[0]
        x = 0
        while x + 4 <= w:
            a0, a1, a2, a3 = r[x], r[x + 1], r[x + 2], r[x + 3]
            x0, x1, x2, x3 = max(x0, a0), max(x1, a1), max(x2, a2), max(x3, a3)
            n0, n1, n2, n3 = min(n0, a0), min(n1, a1), min(n2, a2), min(n3, a3)
            x += 4
        while x < w:
            x0 = max(x0, r[x])
            n0 = min(n0, r[x])
            x += 1
        mx = max(max(x0, x1), max(x2, x3))
        mn = min(min(n0, n1), min(n2, n3))
        rowmin[y] = mn
        x = 0
        while m[y, x] != mx:  # the first position of the maximum
            x += 1
        rowarg[y] = x
        rowmax[y] = m[y, x]
    left = w
    for y in range(h):  # each column's first maximum, row by row (the map's order)
        for x in range(w):
            if colarg[x] < 0 and m[y, x] == colmax[x]:
                colarg[x] = y
                left -= 1
        if left == 0:
            break
    for x in range(w):
        colmax[x] = m[colarg[x], x]
    return rowmax, colmax, rowmin, colmin, rowarg, colarg


@lru_cache(maxsize=512)
def _largest_tap_sum(n_in: int, n_out: int) -> int:
    """The largest sum of the taps of one output pixel of :func:`pil_bilinear_taps`."""
    return int(pil_bilinear_taps(n_in, n_out).taps.sum(axis=1).max())


_SCRATCH = threading.local()


def _scratch_buffers(n_map: int, n_resized: int, n_sets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """This thread's scratch buffers for :func:`_kept_set_boxes`, grown as needed, and a fresh stamp
    base: stamps only grow, so the buffers are reused without clearing (a fresh buffer per map
    costs more in page faults than the boxes themselves)."""
    s = _SCRATCH
    if getattr(s, "stamp", None) is None:
        s.tie, s.tval, s.tstamp, s.stamp = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    if len(s.tie) < n_map:
        s.tie = np.zeros(n_map, np.int64)
    if len(s.tval) < n_resized:
        s.tval = np.zeros(n_resized, np.int64)
        s.tstamp = np.zeros(n_resized, np.int64)
    stamp0 = s.stamp
    s.stamp += n_sets + 1
    return s.tie, s.tval, s.tstamp, stamp0


def kept_set_boxes(m: np.ndarray, order, counts: np.ndarray, size: tuple[int, int],
                   fast: bool = True) -> np.ndarray:
    """Boxes ``[A,4]`` (the authors' 1-based ``(x1, y1, x2, y2)``) of the non-zero
    pixels of ``imresize(kept, size)`` for each kept set "the first ``counts[a]`` pixels of ``m`` in
    descending order" (ties in raster order, the rest set to 0); ``[1, 1, H, W]`` when nothing is
    non-zero. ``m [h,w]`` float32 C-contiguous; ``order``: its :class:`~saliency_bench.ops.kept_order.Order`
    (:func:`~saliency_bench.ops.kept_order.map_order`), or its values sorted ascending.
    ``fast=False`` takes the plain scans (the reference of the shortcuts, for tests)."""
    if isinstance(order, np.ndarray):
        order = sorted_order(order)
    h, w = m.shape
    H, W = int(size[0]), int(size[1])
    th = pil_bilinear_taps(w, W)
    tv = pil_bilinear_taps(h, H)
    # Pillow (Resample.c) runs the vertical pass first when the height shrinks by more than
    # twice as many pixels as the width; the passes round between them, so the order matters.
    vertical_first = H != h and W != w and (h - H) > 0 and (h - H) > (w - W) * 2
    tie_mark, tval, tstamp, stamp0 = _scratch_buffers(h * w, max(h * W, w * H), len(counts))
    asc = order.part
    if order.mode == 1 or (len(asc) and np.isfinite(asc[0]) and np.isfinite(asc[-1])):  # (sorted: NaN last)
        extremes = jit.compiled("_finite_extremes")(m)
    else:
        row_arg, col_arg = m.argmax(axis=1), m.argmax(axis=0)  # the maxima are the values there (a NaN's too)
        extremes = (m[np.arange(h), row_arg], m[col_arg, np.arange(w)], m.min(axis=1), m.min(axis=0), row_arg, col_arg)
    hsums = (_largest_tap_sum(w, W), _largest_tap_sum(h, H))
    facts = kept_facts(order, counts)
    asc = asc if not facts[4] else _NO_VALUES
    tie_pos = order.pos if fast else order.pos[:0]  # (the plain path scans for the ties)
    return jit.compiled("_kept_set_boxes")(m, facts, asc, tie_pos, extremes, counts, H, W, th, tv, vertical_first,
                                           tie_mark, tval, tstamp, stamp0, hsums, bool(fast))
