"""Weak localization (Fong & Vedaldi, ICCV 2017, §5 "Localization"; docs/PROTOCOLS.md §3) and
MaxBoxAccV2 (Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right",
CVPR 2020, §4.1), each computed the way its reference program computes it.

**Fong & Vedaldi**, as their ``getbb_from_heatmap`` (``ruthcfong/perturb_explanations``,
``code/caffe/python/heatmaps.py``) and ``compute_overlap`` (``helpers.py``) did for the published
numbers. For each thresholding and alpha, at **the map's own resolution** (Grad-CAM 7x7,
gradient 224x224), the rejected pixels are set to 0 (``value``, their ``min_max_diff``: keep
``h - min(h) >= alpha * (max(h) - min(h))``; ``mean``: keep ``h >= alpha * mean(h)``; ``energy``:
keep the first ``i`` pixels in descending order, ``i`` the first position where the cumulative sum
reaches ``alpha * sum(h)``); then ``scipy.misc.imresize(kept, (H, W))`` brings it to the original
size: ``bytescale`` to uint8 (``cmin``/``cmax`` the kept map's minimum and maximum, a zero range
counted as 1, ``uint8(clip((x - cmin) * (255 / range), 0, 255) + 0.5)`` in float32) and PIL's
``Image.resize((W, H), BILINEAR)``. The box is the tight box of **all** non-zero pixels of that
uint8 image, in their 1-based coordinates (first non-zero column + 1, ...); when every pixel is 0
their code returns ``[1, 1, H, W]`` (x2 = H and y2 = W, their order: we return the same). A
hit is IoU >= 0.5 (VOC, +1) with a ground-truth box of the class as the annotation file writes
it. Their quirks are ours: a kept map with negative values bytescales its zeros (the rejected
pixels) to non-zero values; a constant kept map bytescales to all zeros; a small kept value can
bytescale to 0. Thresholds are computed in float64 on the float32 map. Energy ties: the authors
ordered with ``np.argsort(h)[::-1]`` (unstable); we cut tied values in raster order.

**MaxBoxAccV2**, as wsolevaluation's ``inference.py`` and ``evaluation.py``
(``compute_bboxes_from_scoremaps`` with ``multi_contour_eval``, ``BoxEvaluator``): the map, in
float64 (their ``t2n``), resized to the network input size with ``cv2.resize(INTER_CUBIC)``,
min-max normalised (NaN or constant: zeros), ``uint8(s * 255)``; for ``t`` in ``0:0.01:0.99`` the
foreground is ``> int(t * max)``, and **every** contour ``cv2.findContours(RETR_TREE)`` returns
gives a candidate box, the borders of holes included, as ``boundingRect``'s
``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` (no contour: ``(0, 0, 0, 0)``); ground-truth
boxes are scaled to the input size by their ``resize_bbox``. A sample is correct at ``t`` when a
candidate has IoU >= delta with a ground-truth box; per delta in {0.3, 0.5, 0.7} the score is the
accuracy at the best ``t``, and MaxBoxAccV2 is their mean.

The resize is PIL's as installed (Pillow 13: fixed-point taps, the horizontal pass first unless
the height shrinks by more than twice as many pixels as the width), which the tests check on
thousands of random cases; the authors ran a 2017 Pillow, whose resize differed in such details.

Speed: per sample, the alphas of the three thresholdings select few distinct kept sets (all
"the first ``c`` pixels in descending order"), and each is resized once, by an exact emulation
of Pillow's fixed-point bilinear resize that computes only the output columns and rows the
box needs (:func:`_resized_box`): no image is resized. The 100 MaxBoxAccV2 thresholds come
from two union-find sweeps over the level map, one for the regions and one for the holes
(:func:`~saliency_bench.benchmarks.boxes.contour_records`), not from 100 contour searches.
Loops are compiled with numba at first use.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Sample

from .boxes import PIL_PRECISION_BITS, best_iou, compiled, contour_records, helper, kernel, pil_bilinear_taps, \
    scale_boxes_wsol
from .stats import PerSample, bootstrap_ci, weighted_mean

THRESHOLDINGS = ("value", "energy", "mean")
DEFAULT_ALPHAS = {
    "value": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "energy": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "mean": tuple(round(0.5 * i, 1) for i in range(21)),  # 0:0.5:10
}
_KIND_CODE = {"value": 0, "energy": 1, "mean": 2}
WSOL_THRESHOLDS = np.arange(0, 1, 0.01)  # wsolevaluation's cam_curve_interval = 0.01
WSOL_IOUS = (30, 50, 70)


# --------------------------------------------------------------------------------------------
# Fong & Vedaldi: kept sets, the authors' imresize, 1-based boxes.
# --------------------------------------------------------------------------------------------
@helper
def _byte(a, cmin, scale):  # pragma: no cover - compiled by numba
    """scipy's ``bytescale`` of one float32 value: ``uint8(clip((a - cmin) * scale, 0, 255) + 0.5)``,
    every operation in float32 as NumPy does it on a float32 map."""
    e = np.float32(np.float32(a - cmin) * scale)
    if e < np.float32(0.0):
        e = np.float32(0.0)
    elif e > np.float32(255.0):
        e = np.float32(255.0)
    return np.int64(np.float32(e + np.float32(0.5)))


@helper
def _kept_byte(m, y, x, w, v, closed, tie_mark, stamp, cmin, scale, f0):  # pragma: no cover - numba
    """The uint8 value of pixel ``(y, x)`` of the bytescaled kept map: kept pixels (value above
    ``v``, or equal to ``v`` and among the kept ties) keep their value, the others are 0."""
    a = m[y, x]
    if a > v or (a == v and (closed or tie_mark[y * w + x] == stamp)):
        return _byte(a, cmin, scale)
    return f0


@helper
def _t_value(m, yy, xx, w, v, closed, tie_mark, stamp, cmin, scale, f0, need_h, hs, hn, hk):  # pragma: no cover
    """Pillow's horizontal pass at output column ``xx`` of input row ``yy`` (uint8)."""
    if not need_h:
        return _kept_byte(m, yy, xx, w, v, closed, tie_mark, stamp, cmin, scale, f0)
    s = np.int64(1) << (PIL_PRECISION_BITS - 1)
    for t in range(hn[xx]):
        k = hk[xx, t]
        if k != 0:
            s += k * _kept_byte(m, yy, hs[xx] + t, w, v, closed, tie_mark, stamp, cmin, scale, f0)
    s >>= PIL_PRECISION_BITS
    if s < 0:
        return np.int64(0)
    if s > 255:
        return np.int64(255)
    return s


@kernel
def _resized_box(m, v, closed, tie_mark, stamp, cmin, scale, f0, r0, r1, q0, q1, H, W,
                 need_h, hs, hn, hk, hf, hl, need_v, vs, vn, vk, vf, vl, tval, tstamp, rmax, rstamp,
                 out):  # pragma: no cover - compiled by numba
    """Tight box ``out = (x1, y1, x2, y2)`` (0-based) of the non-zero pixels of Pillow's bilinear
    resize to ``H x W`` of the bytescaled kept map whose non-zero pixels lie in rows ``r0..r1`` and
    columns ``q0..q1``; returns False when the resized map is all zero.

    Only what the box needs is computed: output columns from the left (then the right), each
    scanned down until a non-zero pixel; then output rows from the top (then the bottom) within
    those columns, scanned across until one, a row being skipped when the largest horizontal-pass
    values of its input rows (known once a row over them was found zero) cannot reach 1.
    Every horizontal-pass value is computed once per kept set (``tval``/``tstamp``, row maxima
    ``rmax``/``rstamp``). The arithmetic is Pillow's (Resample.c, 8 bits per channel): integer
    taps, a rounding half ``2^21`` added, ``>> 22``, clipped to 0..255, horizontal pass first (the
    caller transposes the map for Pillow's vertical-first case).
    """
    w = m.shape[1]
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
            if upfront:  # the column's horizontal-pass values first, then only the rows they reach
                lo = -1
                hi = -1
                for yy in range(r0, r1 + 1):
                    i = yy * W + X
                    if tstamp[i] != stamp:
                        tval[i] = _t_value(m, yy, X, w, v, closed, tie_mark, stamp, cmin, scale, f0, need_h, hs, hn, hk)
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
                            tval[i] = _t_value(m, yy, X, w, v, closed, tie_mark, stamp, cmin, scale, f0,
                                               need_h, hs, hn, hk)
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
            if not skip:
                for X in range(xl, xr + 1):
                    s = half
                    for t in range(vn[Y] if need_v else 1):
                        yy = vs[Y] + t if need_v else Y
                        k = vk[Y, t] if need_v else one
                        if r0 <= yy <= r1 and k != 0:
                            i = yy * W + X
                            if tstamp[i] != stamp:
                                tval[i] = _t_value(m, yy, X, w, v, closed, tie_mark, stamp, cmin, scale, f0,
                                                   need_h, hs, hn, hk)
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


@helper
def _first_at_least(asc, thr, offset):  # pragma: no cover - compiled by numba
    """First index ``i`` of the ascending ``asc`` with ``float64(asc[i]) - offset >= thr`` (the
    comparison the authors' code makes on every pixel; monotone in the value)."""
    a, b = 0, asc.shape[0]
    while a < b:
        mid = (a + b) // 2
        if np.float64(asc[mid]) - offset >= thr:
            b = mid
        else:
            a = mid + 1
    return a


@kernel
def _kept_counts(asc, kinds, alphas, mean, total):  # pragma: no cover - compiled by numba
    """How many pixels each (thresholding, alpha) keeps; the kept set is always the first ``c``
    pixels in descending order (for energy, ties cut in raster order)."""
    n = asc.shape[0]
    n_a = alphas.shape[0]
    counts = np.empty(n_a, np.int64)
    lo = np.float64(asc[0])
    hi = np.float64(asc[n - 1])
    reach = np.empty(n if (kinds == 1).any() else 0, np.float64)
    run = 0.0
    top = -np.inf
    for k in range(reach.shape[0]):  # running maximum of the cumulative sum: a sorted array to search
        run += np.float64(asc[n - 1 - k])
        top = max(top, run)
        reach[k] = top
    for a in range(n_a):
        if kinds[a] == 0:  # value ("min_max_diff"): h - min(h) >= alpha * (max(h) - min(h))
            counts[a] = n - _first_at_least(asc, alphas[a] * (hi - lo), lo)
        elif kinds[a] == 2:  # mean: h >= alpha * mean(h)
            counts[a] = n - _first_at_least(asc, alphas[a] * mean, 0.0)
        else:  # energy: first position where the cumulative sum (descending order) reaches alpha * sum
            thr = alphas[a] * total
            i, j = 0, n
            while i < j:
                mid = (i + j) // 2
                if reach[mid] >= thr:
                    j = mid
                else:
                    i = mid + 1
            counts[a] = i  # never reached (their code raises): every pixel is kept
    return counts


@kernel
def _authors_boxes(m, asc, rowmax, colmax, rowmin, colmin, counts, H, W, need_h, hs, hn, hk, hf, hl,
                   need_v, vs, vn, vk, vf, vl, vertical_first, tie_mark, tval, tstamp,
                   stamp0):  # pragma: no cover - compiled by numba
    """1-based boxes ``[A,4]`` of ``getbb_from_heatmap`` for the kept sets of ``counts`` (each
    distinct count resized once). ``m [h,w]`` float32, ``asc`` its values in ascending order,
    ``rowmax``/``colmax``/``rowmin``/``colmin`` its row and column extremes; ``hs..hl``/``vs..vl``: Pillow's taps from
    :func:`~saliency_bench.benchmarks.boxes.pil_bilinear_taps` for the two axes. When Pillow runs
    the vertical pass first (``vertical_first``), the box is computed on the transposed map.
    ``tie_mark [h*w]``, ``tval``/``tstamp [h*W]`` (or ``[w*H]``) are scratch buffers marked with
    stamps above ``stamp0`` (one per alpha), so that they never need clearing."""
    h, w = m.shape
    n = h * w
    n_a = counts.shape[0]
    out = np.empty((n_a, 4), np.int64)
    done = np.full(n_a, -1, np.int64)  # index of an earlier alpha with the same count
    box = np.zeros(4, np.int64)
    mt = np.ascontiguousarray(m.T) if vertical_first else m
    rmax = np.empty(max(h, w), np.int64)
    rstamp = np.zeros(max(h, w), np.int64)
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
        v = asc[n - c]  # the smallest kept value
        i, j = 0, n  # first index with asc >= v, then first with asc > v
        while i < j:
            mid = (i + j) // 2
            if asc[mid] >= v:
                j = mid
            else:
                i = mid + 1
        lb = i
        i, j = lb, n
        while i < j:
            mid = (i + j) // 2
            if asc[mid] > v:
                j = mid
            else:
                i = mid + 1
        above = n - i
        ties = i - lb
        t = c - above  # how many of the pixels equal to v are kept
        closed = t == ties or v == 0  # kept zeros read 0 like the rejected pixels
        # bytescale: cmin/cmax over the kept map, whose rejected pixels are 0
        cmax = asc[n - 1]
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
        if not closed:  # the first t pixels equal to v in raster order are kept
            left = t
            for p in range(n):
                if left == 0:
                    break
                y = p // w
                x = p - y * w
                if m[y, x] == v:
                    tie_mark[x * h + y if vertical_first else p] = stamp
                    left -= 1
        r0, r1, q0, q1 = h, -1, w, -1
        if closed:
            # Non-zero after bytescale: the kept values (>= v) whose byte is >= 1, i.e. those >= some
            # x1 (the byte is monotone in the value), and, when a 0 bytescales to non-zero (a kept
            # map with negative values), every rejected pixel (< v): both from row/column extremes.
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
        else:
            for y in range(h):
                for x in range(w):
                    if vertical_first:
                        u = _kept_byte(mt, x, y, h, v, closed, tie_mark, stamp, cmin, scale, f0)
                    else:
                        u = _kept_byte(m, y, x, w, v, closed, tie_mark, stamp, cmin, scale, f0)
                    if u > 0:
                        r0 = min(r0, y)
                        r1 = y
                        q0 = min(q0, x)
                        q1 = max(q1, x)
            if r1 < 0:
                continue
        if vertical_first:  # the same scan on the transposed map, axes swapped
            if _resized_box(mt, v, closed, tie_mark, stamp, cmin, scale, f0, q0, q1, r0, r1, W, H,
                            need_v, vs, vn, vk, vf, vl, need_h, hs, hn, hk, hf, hl, tval, tstamp, rmax, rstamp, box):
                out[a, 0] = box[1] + 1
                out[a, 1] = box[0] + 1
                out[a, 2] = box[3] + 1
                out[a, 3] = box[2] + 1
        elif _resized_box(m, v, closed, tie_mark, stamp, cmin, scale, f0, r0, r1, q0, q1, H, W,
                          need_h, hs, hn, hk, hf, hl, need_v, vs, vn, vk, vf, vl, tval, tstamp, rmax, rstamp, box):
            out[a, 0] = box[0] + 1
            out[a, 1] = box[1] + 1
            out[a, 2] = box[2] + 1
            out[a, 3] = box[3] + 1
    return out


_SCRATCH = threading.local()


def _scratch(n_map: int, n_resized: int, n_sets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """This thread's scratch buffers for :func:`_authors_boxes`, grown as needed, and a fresh stamp
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


def authors_boxes(heatmap: np.ndarray, size: tuple[int, int], alphas: dict[str, Sequence[float]]
                  ) -> dict[str, np.ndarray]:
    """``getbb_from_heatmap(heatmap, alpha, method, resize=size, thres_first=True)`` for every
    thresholding and alpha: ``{kind: [A,4]}`` int64 boxes in the authors' 1-based coordinates
    (``[1, 1, H, W]`` when nothing is non-zero after the resize)."""
    m = np.ascontiguousarray(heatmap, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"authors_boxes: heatmap must be [h,w], not {m.shape}")
    kinds = [k for k in THRESHOLDINGS if k in alphas]
    for k in alphas:
        if k not in THRESHOLDINGS:
            raise ValueError(f"localization: thresholding must be one of {THRESHOLDINGS}, not {k!r}")
    codes = np.concatenate([np.full(len(alphas[k]), _KIND_CODE[k], np.int64) for k in kinds]) if kinds \
        else np.zeros(0, np.int64)
    a = np.concatenate([np.asarray(alphas[k], np.float64) for k in kinds]) if kinds else np.zeros(0)
    h, w = m.shape
    H, W = int(size[0]), int(size[1])
    asc = np.sort(m, axis=None)
    total = m.astype(np.float64).sum()  # NumPy's pairwise sum, as np.sum / np.mean on their map
    counts = compiled("_kept_counts")(asc, codes, a, total / m.size, total)
    hs, hn, hk, hf, hl = pil_bilinear_taps(w, W)
    vs, vn, vk, vf, vl = pil_bilinear_taps(h, H)
    # Pillow (Resample.c) runs the vertical pass first when the height shrinks by more than
    # twice as many pixels as the width; the passes round between them, so the order matters.
    vertical_first = H != h and W != w and (h - H) > 0 and (h - H) > (w - W) * 2
    tie_mark, tval, tstamp, stamp0 = _scratch(h * w, max(h * W, w * H), len(counts))
    boxes = compiled("_authors_boxes")(m, asc, m.max(axis=1), m.max(axis=0), m.min(axis=1), m.min(axis=0),
                                       counts, H, W, W != w, hs, hn, hk, hf, hl, H != h, vs, vn, vk, vf, vl,
                                       vertical_first, tie_mark, tval, tstamp, stamp0)
    out, start = {}, 0
    for k in kinds:
        out[k] = boxes[start:start + len(alphas[k])]
        start += len(alphas[k])
    return out


# --------------------------------------------------------------------------------------------
# MaxBoxAccV2
# --------------------------------------------------------------------------------------------
@kernel
def _scale_u8(cam, lo, rng, out):  # pragma: no cover - compiled by numba
    """``uint8((cam - lo) / rng * 255)`` in float64, truncated: wsolevaluation's
    ``normalize_scoremap`` (``cam -= min; cam /= max``; the max of ``cam - min`` is ``max - min``, as
    rounding is monotone) and ``(cam * 255).astype(np.uint8)``, the same operations.

    A division per pixel costs more than the rest of the pass, so rows are first computed as
    ``(cam - lo) * (255 / rng)``: both that and the exact value are within 255 * 2**-52 < 1e-12 of
    the real ``255 (cam - lo) / rng`` (two roundings each, values <= 255), so their integer parts
    agree unless one is within 1e-12 of an integer; a row with such a pixel is redone exactly
    (0 is exact in both: ``cam == lo``)."""
    h, w = cam.shape
    c = 255.0 / rng
    fast = c < np.inf
    for y in range(h):
        row = cam[y]
        o = out[y]
        near = not fast
        if fast:
            for x in range(w):
                u = (np.float64(row[x]) - lo) * c
                k = np.int32(u)
                f = u - k
                near |= ((f < 1e-12) & (u != 0.0)) | (f > 1.0 - 1e-12)
                o[x] = np.uint8(k)
        if near:
            for x in range(w):
                o[x] = np.uint8((np.float64(row[x]) - lo) / rng * 255.0)


def wsol_scoremaps(maps: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """wsolevaluation's score maps as uint8 ``[B,H,W]``: each map in float64 (``t2n``), resized to
    ``input_size`` with ``cv2.resize(INTER_CUBIC)`` (``inference.py``), ``normalize_scoremap``
    (NaN or constant: zeros; else ``(s - min) / max``), then ``uint8(s * 255)``."""
    import cv2  # a runtime dependency of this benchmark (opencv-python-headless)

    H, W = int(input_size[0]), int(input_size[1])
    out = np.empty((len(maps), H, W), np.uint8)
    scale = compiled("_scale_u8")
    for i, m in enumerate(maps):
        cam = np.asarray(m)
        if cam.shape != (H, W):
            cam = cv2.resize(cam.astype(np.float64), (W, H), interpolation=cv2.INTER_CUBIC)
        elif cam.dtype not in (np.float32, np.float64):  # float32 -> float64 is exact: no copy for it
            cam = cam.astype(np.float64)
        lo, hi = float(cam.min()), float(cam.max())
        if np.isnan(lo) or lo == hi:
            out[i] = 0
        elif np.isinf(lo) or np.isinf(hi):  # NaNs from inf / inf: numpy decides their cast
            cam = cam.astype(np.float64) - lo
            out[i] = (cam / cam.max() * 255).astype(np.uint8)
        else:
            scale(np.ascontiguousarray(cam), lo, hi - lo, out[i])
    return out


@lru_cache(maxsize=1)
def _levels_by_top() -> np.ndarray:
    """``[256,256]``: row ``m`` is :func:`wsol_levels`' table for a map whose maximum is ``m``."""
    thr = (WSOL_THRESHOLDS[None, :] * np.arange(256, dtype=np.float64)[:, None]).astype(np.int64)  # int(t * max)
    table = (thr[:, None, :] < np.arange(256)[None, :, None]).sum(axis=2).astype(np.int32)
    table.flags.writeable = False
    return table


def wsol_levels(s8: np.ndarray) -> np.ndarray:
    """Per image, how many of the 100 thresholds each uint8 value passes (``[B,256]``): the
    foreground at ``t`` is ``> int(t * max)`` (``cv2.threshold(THRESH_BINARY)``), and those
    thresholds are non-decreasing in ``t``, so a value is foreground at index ``j`` iff
    ``j < level``. (Tabled once for the 256 possible maxima.)"""
    return _levels_by_top()[s8.reshape(len(s8), -1).max(axis=1)]


@kernel
def _record_hits(rec, top, gt, n_gt, ious, n_img, n_t, w, h):  # pragma: no cover - compiled by numba
    """``[B,K,T]``: at threshold index ``t``, has some contour of image ``b`` a box with IoU >=
    ``ious[k]`` (VOC, +1) with one of its ``n_gt[b]`` boxes ``gt[b]``? An image without foreground
    at ``t`` (``t >= top[b]``) scores wsolevaluation's box ``(0, 0, 0, 0)``. Records are ``(image,
    x1, y1, x2, y2, lo, hi)`` with the contour's extreme points; boxes become ``boundingRect``'s
    ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``."""
    n_k = ious.shape[0]
    hits = np.zeros((n_img, n_k, n_t + 1), np.int64)
    for r in range(rec.shape[0]):
        b = rec[r, 0]
        x0 = np.float64(rec[r, 1])
        y0 = np.float64(rec[r, 2])
        x1 = np.float64(min(rec[r, 3] + 1, w - 1))
        y1 = np.float64(min(rec[r, 4] + 1, h - 1))
        lo = rec[r, 5]
        hi = rec[r, 6]
        best = 0.0
        for g in range(n_gt[b]):
            iw = max(min(x1, gt[b, g, 2]) - max(x0, gt[b, g, 0]) + 1.0, 0.0)
            ih = max(min(y1, gt[b, g, 3]) - max(y0, gt[b, g, 1]) + 1.0, 0.0)
            inter = iw * ih
            union = (x1 - x0 + 1.0) * (y1 - y0 + 1.0) + (gt[b, g, 2] - gt[b, g, 0] + 1.0) * \
                (gt[b, g, 3] - gt[b, g, 1] + 1.0) - inter
            if union > 0:
                best = max(best, inter / union)
        for k in range(n_k):
            if best >= ious[k]:
                hits[b, k, lo] += 1
                hits[b, k, hi + 1] -= 1
    out = np.zeros((n_img, n_k, n_t), np.bool_)
    for b in range(n_img):
        none = 0.0  # the IoU of the box (0, 0, 0, 0)
        for g in range(n_gt[b]):
            iw = max(min(0.0, gt[b, g, 2]) - max(0.0, gt[b, g, 0]) + 1.0, 0.0)
            ih = max(min(0.0, gt[b, g, 3]) - max(0.0, gt[b, g, 1]) + 1.0, 0.0)
            inter = iw * ih
            union = 1.0 + (gt[b, g, 2] - gt[b, g, 0] + 1.0) * (gt[b, g, 3] - gt[b, g, 1] + 1.0) - inter
            if union > 0:
                none = max(none, inter / union)
        run = np.zeros(n_k, np.int64)
        for t in range(n_t):
            for k in range(n_k):
                run[k] += hits[b, k, t]
                out[b, k, t] = run[k] > 0 if t < top[b] else none >= ious[k]
    return out


def maxboxacc_correct(maps: np.ndarray, gt_boxes: Sequence[np.ndarray], input_size: tuple[int, int] | None = None,
                      ious: Sequence[int] = WSOL_IOUS) -> np.ndarray:
    """``[B, len(ious), 100]`` bool: is sample ``b`` correct at IoU ``ious[k]/100`` and threshold ``t``.

    ``maps [B,h,w]`` at their own resolution are brought to ``input_size`` (default: their own
    size) as wsolevaluation does (:func:`wsol_scoremaps`); ``gt_boxes[b]`` are sample ``b``'s
    ground-truth boxes at ``input_size`` (:func:`~saliency_bench.benchmarks.boxes.scale_boxes_wsol`).
    """
    maps = np.asarray(maps)
    size = tuple(maps.shape[1:]) if input_size is None else (int(input_size[0]), int(input_size[1]))
    s8 = wsol_scoremaps(maps, size)
    b, H, W = s8.shape
    n_t = len(WSOL_THRESHOLDS)
    rec, top = contour_records(s8, wsol_levels(s8), n_t)
    g = max((len(np.asarray(x).reshape(-1, 4)) for x in gt_boxes), default=0)
    gt = np.zeros((b, max(g, 1), 4))
    n_gt = np.zeros(b, np.int64)
    for i, x in enumerate(gt_boxes):
        x = np.asarray(x, dtype=np.float64).reshape(-1, 4)
        gt[i, :len(x)] = x
        n_gt[i] = len(x)
    return compiled("_record_hits")(rec, top, gt, n_gt, np.array([d / 100.0 for d in ious]), b, n_t, W, H)


def _bits(x: np.ndarray) -> str:
    return np.where(np.asarray(x, dtype=bool).reshape(-1), np.uint8(49), np.uint8(48)).tobytes().decode("ascii")


def _unbits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) == ord("1")


def choose_alpha(correct_heldout: np.ndarray) -> int:
    """Index of alpha* = the alpha with the highest held-out accuracy (ties: the smallest)."""
    return int(np.argmax(np.asarray(correct_heldout, dtype=np.float64).mean(axis=0)))


@saliency_bench.benchmark("localization")
class Localization(Benchmark):
    """Weak localization error (value, energy, mean thresholding at alpha*) and MaxBoxAccV2.

    Options: ``alphas`` (dict per thresholding, docs/PROTOCOLS.md §3 grids), ``iou`` (0.5),
    ``heldout`` ("split": alpha* on the held-out split, or, when a dataset has none, on a
    seeded half of the samples with the error on the other half; "oracle": alpha* on the
    evaluation samples themselves, labelled so), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "localization"
    needs = ("boxes", "single_class")  # one labelled object class per image, with its boxes
    accepts = (HEATMAP,)
    columns = ("loc_error_value", "loc_error_energy", "loc_error_mean", "maxboxacc_v2")
    titles = {"loc_error_value": "Loc. error value (%)", "loc_error_energy": "Loc. error energy (%)",
              "loc_error_mean": "Loc. error mean (%)", "maxboxacc_v2": "MaxBoxAccV2 (%)"}
    short = {"loc_error_value": "Loc.val", "loc_error_energy": "Loc.en", "loc_error_mean": "Loc.mean",
             "maxboxacc_v2": "MaxBox"}
    lower_is_better = ("loc_error_value", "loc_error_energy", "loc_error_mean")
    defaults: dict[str, Any] = {"alphas": DEFAULT_ALPHAS, "iou": 0.5, "heldout": "split", "bootstrap": 1000,
                                "seed": 0}

    def alphas(self, kind: str) -> tuple[float, ...]:
        return tuple((self.options.get("alphas") or {}).get(kind, DEFAULT_ALPHAS[kind]))

    def protocol(self) -> dict[str, str]:
        iou = float(self.options.get("iou", self.defaults["iou"]))
        tail = (f"at the map's own resolution, then the authors' imresize (bytescale to uint8, PIL bilinear "
                f"to the original size), box of all non-zero pixels (1-based; none: [1, 1, H, W]), "
                f"hit at IoU>={iou:g} (+1) with a box as annotated; alpha* on the held-out split")
        return {
            "loc_error_value": "value thresholding (h - min >= alpha (max - min)) " + tail,
            "loc_error_energy": "energy thresholding (the top pixels holding alpha of the sum; ties in raster "
                                "order) " + tail,
            "loc_error_mean": "mean thresholding (h >= alpha mean) " + tail,
            "maxboxacc_v2": "wsolevaluation: OpenCV bicubic resize to the input size, min-max to uint8, "
                            "t in 0:0.01:0.99, a box per findContours(RETR_TREE) contour (regions and holes), "
                            "GT boxes by resize_bbox; mean over IoU 0.3/0.5/0.7 of the accuracy at the best t",
        }

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], np.asarray(output)[None], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        maps = np.stack([np.asarray(o, dtype=np.float32) for o in outputs])
        iou = float(self.options.get("iou", self.defaults["iou"]))
        alphas = {kind: self.alphas(kind) for kind in THRESHOLDINGS}
        gt = [scale_boxes_wsol(s.boxes, s.size, input_size) for s in samples]
        mba = maxboxacc_correct(maps, gt, input_size)
        records: list[dict] = []
        for i, s in enumerate(samples):
            boxes = authors_boxes(maps[i], s.size, alphas)
            rec = {kind: _bits(best_iou(boxes[kind], s.boxes) >= iou) for kind in THRESHOLDINGS}
            for k, d in enumerate(WSOL_IOUS):
                rec[f"mba{d}"] = _bits(mba[i, k])
            records.append(rec)
        return records

    def _splits(self, samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(samples alpha* is chosen on, samples the error is reported on, the evaluation split,
        how alpha* was chosen)."""
        seed = int(self.options.get("seed", self.defaults["seed"]))
        mode = str(self.options.get("heldout", self.defaults["heldout"]))
        split = np.array([str(s.get("split", "eval")) for s in samples])
        held = split == "heldout"
        evals = split == "eval"
        if mode == "oracle":
            choose, report, how = evals, evals, "oracle: alpha* chosen on the evaluation samples"
        elif held.any():
            choose, report, how = held, evals, f"alpha* on {int(held.sum())} held-out samples"
        else:
            perm = np.random.default_rng(seed).permutation(np.flatnonzero(evals))
            choose = np.zeros(len(samples), bool); choose[perm[: len(perm) // 2]] = True
            report = evals & ~choose
            how = f"no held-out split: alpha* on a seeded half ({int(choose.sum())}), error on the other half"
        return choose, report, evals, how

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, PerSample]:
        """Localization error (100: missed, 0: correct) of each reported sample at the method's own
        alpha* (chosen as :meth:`summarize` chooses it); MaxBoxAccV2: the mean over IoU 0.3/0.5/0.7
        of "a box at that IoU's best threshold is correct", 100 x."""
        choose, report, evals, _ = self._splits(samples)
        ids = np.array([str(s["id"]) for s in samples], dtype=object)
        out: dict[str, PerSample] = {}
        for kind in THRESHOLDINGS:
            alphas = self.alphas(kind)
            if choose.any() and report.any():
                c = np.array([_unbits(r[kind]) for r in records], dtype=bool).reshape(len(records), len(alphas))
                k = choose_alpha(c[choose])
                out[f"loc_error_{kind}"] = PerSample(tuple(ids[report]), 100.0 * (1.0 - c[report, k]))
        use = evals if evals.any() else np.ones(len(samples), bool)
        if use.any():
            m = np.array([[_unbits(r[f"mba{d}"]) for d in WSOL_IOUS] for r in records], dtype=np.float64)
            m = m.reshape(len(records), len(WSOL_IOUS), -1)[use]
            best_t = m.mean(axis=0).argmax(axis=1)  # [3]: each IoU's best threshold, as summarize picks it
            per = m[:, np.arange(len(WSOL_IOUS)), best_t].mean(axis=1)
            out["maxboxacc_v2"] = PerSample(tuple(ids[use]), 100.0 * per)
        return out

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self.options.get("bootstrap", self.defaults["bootstrap"]))
        seed = int(self.options.get("seed", self.defaults["seed"]))
        choose, report, evals, how = self._splits(samples)
        out: dict[str, dict] = {}
        for kind in THRESHOLDINGS:
            alphas = self.alphas(kind)
            c = np.array([_unbits(r[kind]) for r in records], dtype=bool).reshape(len(records), len(alphas))
            n = int(report.sum())
            if not choose.any() or n == 0:
                out[f"loc_error_{kind}"] = {"value": None, "ci": None, "n": n, "unit": "%",
                                            "note": "not enough samples to choose alpha* and report"}
                continue
            k = choose_alpha(c[choose])
            hit = c[report, k].astype(np.float64)
            ci = bootstrap_ci(weighted_mean(hit), n, replicates, seed)
            out[f"loc_error_{kind}"] = {
                "value": float(100.0 * (1.0 - hit.mean())),
                "ci": None if ci is None else [100.0 * (1 - ci[1]), 100.0 * (1 - ci[0])],
                "n": n, "unit": "%", "note": f"alpha*={alphas[k]:g} ({how})",
            }
        use = evals if evals.any() else np.ones(len(samples), bool)
        m = np.array([[_unbits(r[f"mba{d}"]) for d in WSOL_IOUS] for r in records], dtype=np.float64)
        m = m.reshape(len(records), len(WSOL_IOUS), -1)[use]
        n = len(m)
        if n == 0:
            out["maxboxacc_v2"] = {"value": None, "ci": None, "n": 0, "unit": "%", "note": "no samples"}
            return out
        acc = m.mean(axis=0)  # [3, T]
        best = acc.max(axis=1)
        flat = m.reshape(n, -1)

        def stat(w: np.ndarray) -> np.ndarray:
            a = (w @ flat / w.sum(axis=1, keepdims=True)).reshape(len(w), len(WSOL_IOUS), -1)
            return a.max(axis=2).mean(axis=1)

        ci = bootstrap_ci(stat, n, replicates, seed)
        out["maxboxacc_v2"] = {
            "value": 100.0 * float(best.mean()),
            "ci": None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
            "n": n, "unit": "%",
            "note": "mean over IoU 0.3/0.5/0.7 of " + ", ".join(
                f"{b * 100:.1f} (t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f})" for k, b in enumerate(best)),
        }
        for k, d in enumerate(WSOL_IOUS):
            out[f"maxboxacc_v2_iou{d}"] = {"value": 100.0 * float(best[k]), "ci": None, "n": n, "unit": "%",
                                           "note": f"best threshold t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f}"}
        return out
