"""Box geometry shared by the benchmarks: VOC IoU, tight boxes, wsolevaluation's box scaling,
Pillow's bilinear resize coefficients (for the exact emulation of the authors' imresize in
:mod:`.localization`), and the contour boxes of a thresholded map at every threshold at once
(MaxBoxAccV2), with the numba kernel registry they use.

Boxes are ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates (the VOC convention,
``w = x2 - x1 + 1``), as in Fong & Vedaldi's evaluation code and in wsolevaluation
(Choe et al., CVPR 2020, ``calculate_multiple_iou``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def iou_voc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [...,4]`` and ``b [...,4]`` (broadcast) with the +1 (inclusive) convention.

    A degenerate union (``<= 0``) gives IoU 0, as wsolevaluation does.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred [...,4]`` against ``gt [G,4]``: the IoU with the best-matching ground-truth box."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return np.zeros(np.shape(pred)[:-1])
    return iou_voc(np.asarray(pred)[..., None, :], gt).max(axis=-1)


def tight_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes around the ``True`` pixels of ``masks [...,H,W]``: ``(boxes [...,4], empty [...])``.

    An empty mask gets the box ``(0, 0, 0, 0)`` and ``empty = True``; callers decide what an
    empty selection means.
    """
    masks = np.asarray(masks, dtype=bool)
    boxes, empty = boxes_from_lines(masks.any(axis=-1), masks.any(axis=-2))
    boxes[empty] = 0
    return boxes, empty


def boxes_from_lines(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes ``[...,4]`` and ``empty [...]`` from which rows ``[...,H]`` and columns
    ``[...,W]`` hold a kept pixel."""
    h, w = rows.shape[-1], cols.shape[-1]
    empty = ~rows.any(axis=-1)
    y1 = rows.argmax(axis=-1)
    y2 = h - 1 - rows[..., ::-1].argmax(axis=-1)
    x1 = cols.argmax(axis=-1)
    x2 = w - 1 - cols[..., ::-1].argmax(axis=-1)
    return np.stack([x1, y1, x2, y2], axis=-1), empty


def scale_boxes_wsol(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale boxes from an image of ``from_size`` (H, W) to ``to_size`` the way wsolevaluation's
    ``resize_bbox`` does: ``int(x * new_w / w)`` in float64, in that order (``x * (new_w / w)``
    rounds differently and truncates to another integer when the exact result is one)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    to = np.array([to_size[1], to_size[0], to_size[1], to_size[0]], np.float64)
    frm = np.array([from_size[1], from_size[0], from_size[1], from_size[0]], np.float64)
    return (b * to / frm).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Compiled kernels: numba is imported at first use (importing the package stays cheap), and
# compiled code is cached on disk (``cache=True``), so only the first run ever pays for it.
# --------------------------------------------------------------------------------------------
_KERNELS: dict[str, object] = {}
_COMPILED: dict[str, object] = {}


def kernel(fn):
    """Register a plain-Python kernel for :func:`compiled`."""
    _KERNELS[fn.__name__] = fn
    return fn


def helper(fn):
    """Register a plain-Python helper that kernels call (compiled like a kernel; keep helpers
    small, so that LLVM inlines them: a call that is not inlined costs reference counting on
    every array argument, more than a small helper's body)."""
    _KERNELS[fn.__name__] = fn
    return fn


def compiled(name: str):
    """The numba-compiled version of the registered kernel ``name``.

    Kernels are ordinary functions that numba's ``nopython`` mode accepts. Registered kernels
    not compiled yet are compiled (``numba.njit(cache=True)``), and every module-level name that
    refers to a registered kernel or helper is rebound to its compiled version, so that kernels
    call each other compiled. A kernel calls only kernels of its own module: numba's on-disk
    cache of a kernel is invalidated by changes to its own file only, so a cached caller in one
    file would keep a stale copy of a changed callee in another.
    """
    if name not in _COMPILED or len(_COMPILED) < len(_KERNELS):
        import numba  # lazily: only scoring needs it

        for key, fn in _KERNELS.items():
            if key not in _COMPILED:
                _COMPILED[key] = numba.njit(cache=True, nogil=True)(fn)
        plain = {id(fn): key for key, fn in _KERNELS.items()}
        for fn in _KERNELS.values():  # kernels call each other by module-level name
            g = fn.__globals__
            for ref, val in list(g.items()):
                if id(val) in plain:
                    g[ref] = _COMPILED[plain[id(val)]]
    return _COMPILED[name]


# --------------------------------------------------------------------------------------------
# Pillow's bilinear resize of an 8-bit image, emulated exactly for the tight box of the result.
# --------------------------------------------------------------------------------------------
PIL_PRECISION_BITS = 32 - 8 - 2  # Pillow's libImaging/Resample.c: fixed-point coefficients


@lru_cache(maxsize=512)
def pil_bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    return start, count, taps, first, last


# --------------------------------------------------------------------------------------------
# Contour boxes at every threshold at once: component trees built in raster order.
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Connected-component boxes at every threshold at once (a component tree by union-find).
# --------------------------------------------------------------------------------------------
# The 8 neighbours in ring order (dy, dx): two active neighbours are 8-adjacent to each other when
# consecutive on the ring, or when both are 4-neighbours a quarter-turn apart (N and E, ...).
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@lru_cache(maxsize=1)
def _neighbour_groups() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 patterns of active neighbours: one ring index per group of mutually
    connected active neighbours (``reps [256,4]``, ``count [256]``). Neighbours of one group are
    already one component, so a new pixel needs one union per group (at most 4), not per
    neighbour. A group's head is its last ring index, so the left neighbour (W) heads its group:
    it is often the pixel just processed, whose root is known."""
    reps = np.zeros((256, 4), np.int64)
    count = np.zeros(256, np.int64)
    for mask in range(256):
        on = [i for i in range(8) if mask >> i & 1]
        group = {i: i for i in on}

        def root(i: int) -> int:
            while group[i] != i:
                i = group[i]
            return i

        for i in on:
            for k in on:
                dy, dx = _RING[i][0] - _RING[k][0], _RING[i][1] - _RING[k][1]
                if i < k and max(abs(dy), abs(dx)) == 1:
                    group[root(k)] = root(i)
        heads = sorted({max(k for k in on if root(k) == root(i)) for i in on})  # W (7) heads its group
        reps[mask, :len(heads)] = heads
        count[mask] = len(heads)
    return reps, count


@kernel
def _component_records(values, lut, n_levels, reps, n_reps, rec):  # pragma: no cover - compiled by numba
    """Union-find sweep of :func:`component_box_records`: pixel ``(y, x)`` of image ``b`` has the
    level ``lut[b, values[b, y, x]]`` (in ``0..n_levels``; a table, so that quantised maps need
    no levels array). Returns ``[R,7]`` rows ``(image, x1, y1, x2, y2, lo, hi)``.

    Pixels live on a grid padded by one inactive pixel on each side, so that the 8 neighbours of
    a pixel are 8 fixed offsets with no bounds test; per-node arrays are int32 to stay in cache.
    """
    n_img, h, w = values.shape
    wp = w + 2
    n = (h + 2) * wp
    parent = np.empty(n, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)  # x1, y1, x2, y2 of the component a root represents
    start = np.empty(n, np.int32)  # open record's top threshold index; -1: opens at this level's end
    active = np.zeros(n, np.bool_)
    order = np.empty(h * w, np.int32)  # padded pixel ids sorted by level, and their coordinates
    order_x = np.empty(h * w, np.int32)
    order_y = np.empty(h * w, np.int32)
    pending = np.empty(2 * h * w + 1, np.int32)  # roots whose record opens at the end of the level
    first = np.empty(n_levels + 2, np.int64)
    fill = np.empty(n_levels + 2, np.int64)
    shut = np.empty(2, np.int32)
    offsets = np.array([-wp - 1, -wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1])  # 8-connectivity (cv2), _RING order
    n_rec = 0
    for b in range(n_img):
        lv = values[b]
        lb = lut[b]
        # Counting sort of the pixels by level, highest first (raster order inside a level).
        first[:] = 0
        for y in range(h):
            for x in range(w):
                first[lb[lv[y, x]]] += 1
        pos = 0
        for lev in range(n_levels, 0, -1):
            c = first[lev]
            first[lev] = pos
            fill[lev] = pos
            pos += c
        for y in range(h):
            for x in range(w):
                lev = lb[lv[y, x]]
                if lev > 0:
                    k = fill[lev]
                    order[k] = (y + 1) * wp + x + 1
                    order_x[k] = x
                    order_y[k] = y
                    fill[lev] = k + 1
        active[:] = False
        prev_p = -1  # the pixel processed last and its root (still a root: nothing merged since)
        prev_root = -1
        for lev in range(n_levels, 0, -1):
            j = lev - 1  # the threshold index at which these pixels become foreground
            n_pend = 0
            for k in range(first[lev], fill[lev]):
                p = order[k]
                px = order_x[k]
                py = order_y[k]
                active[p] = True
                mask = 0
                for o in range(8):
                    mask |= np.int64(active[p + offsets[o]]) << o
                if n_reps[mask] == 1:  # the common case: p joins one component
                    rb = p + offsets[reps[mask, 0]]
                    if rb == prev_p:
                        rb = prev_root
                    else:
                        while parent[rb] != rb:
                            parent[rb] = parent[parent[rb]]
                            rb = parent[rb]
                    # p just joins when its component's box does not change, or when that box has
                    # no open record; p never becomes a root, so its own box and record are never
                    # read. (size only steers union by size: a lower bound is enough.)
                    if box[rb, 0] <= px <= box[rb, 2] and box[rb, 1] <= py <= box[rb, 3]:
                        parent[p] = rb
                        prev_p = p
                        prev_root = rb
                        continue
                    if start[rb] < 0:
                        parent[p] = rb
                        size[rb] += 1
                        box[rb, 0] = min(box[rb, 0], px)
                        box[rb, 1] = min(box[rb, 1], py)
                        box[rb, 2] = max(box[rb, 2], px)
                        box[rb, 3] = max(box[rb, 3], py)
                        prev_p = p
                        prev_root = rb
                        continue
                parent[p] = p
                size[p] = 1
                box[p, 0] = px
                box[p, 1] = py
                box[p, 2] = px
                box[p, 3] = py
                start[p] = -1
                pending[n_pend] = p
                n_pend += 1
                ra = p  # p's root, kept up to date across its merges
                for g in range(n_reps[mask]):
                    rb = p + offsets[reps[mask, g]]
                    while parent[rb] != rb:  # path halving
                        parent[rb] = parent[parent[rb]]
                        rb = parent[rb]
                    if ra == rb:
                        continue
                    if size[ra] < size[rb]:  # union by size; ra survives
                        ra, rb = rb, ra
                    n_shut = 0
                    if start[rb] >= 0:  # rb's component ends here
                        shut[n_shut] = rb
                        n_shut += 1
                    x0 = min(box[ra, 0], box[rb, 0])
                    y0 = min(box[ra, 1], box[rb, 1])
                    x1 = max(box[ra, 2], box[rb, 2])
                    y1 = max(box[ra, 3], box[rb, 3])
                    if start[ra] >= 0 and (x0 != box[ra, 0] or y0 != box[ra, 1] or x1 != box[ra, 2]
                                           or y1 != box[ra, 3]):
                        shut[n_shut] = ra  # ra's box grows: its record ends, a new one opens
                        n_shut += 1
                    for s in range(n_shut):
                        r = shut[s]
                        if n_rec == rec.shape[0]:
                            return -1
                        rec[n_rec, 0] = b
                        rec[n_rec, 1] = box[r, 0]
                        rec[n_rec, 2] = box[r, 1]
                        rec[n_rec, 3] = box[r, 2]
                        rec[n_rec, 4] = box[r, 3]
                        rec[n_rec, 5] = j + 1
                        rec[n_rec, 6] = start[r]
                        n_rec += 1
                        start[r] = -1
                        pending[n_pend] = r
                        n_pend += 1
                    parent[rb] = ra
                    size[ra] += size[rb]
                    box[ra, 0] = x0
                    box[ra, 1] = y0
                    box[ra, 2] = x1
                    box[ra, 3] = y1
                prev_p = p
                prev_root = ra
            for k in range(n_pend):
                r = pending[k]
                if parent[r] == r and start[r] < 0:
                    start[r] = j
        # Components still alive at threshold index 0.
        n_roots = 0
        for k in range(fill[1]):
            if parent[order[k]] == order[k]:
                n_roots += 1
        if n_rec + n_roots > rec.shape[0]:
            return -1
        for k in range(fill[1]):
            r = order[k]
            if parent[r] == r:
                rec[n_rec, 0] = b
                rec[n_rec, 1] = box[r, 0]
                rec[n_rec, 2] = box[r, 1]
                rec[n_rec, 3] = box[r, 2]
                rec[n_rec, 4] = box[r, 3]
                rec[n_rec, 5] = 0
                rec[n_rec, 6] = start[r]
                n_rec += 1
    return n_rec


@kernel
def _hole_records(values, lut, n_levels, rec):  # pragma: no cover - compiled by numba
    """Union-find sweep of the holes: the 4-connected components of the background
    ``{level <= j}`` that do not touch the image border, for every ``j`` in ``0..n_levels-1`` at
    once. The background grows with ``j``, so the pixels are added in increasing level order
    (counting-sorted; raster order inside a level) and merged with their 4-neighbours already
    added; each root keeps its box and whether its component touches the border. A component's
    box is reported as a record valid over the thresholds during which it is a hole with that
    box. Returns ``[R,7]`` rows ``(image, x1, y1, x2, y2, lo, hi)`` whose box is the hole's box
    grown by one pixel on each side: the box of the region pixels around it, the hole's contour.

    Pixels live on a grid padded by one inactive pixel on each side, so that the 4 neighbours of
    a pixel are 4 fixed offsets with no bounds test.
    """
    n_img, h, w = values.shape
    wp = w + 2
    n = (h + 2) * wp
    parent = np.empty(n, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), np.int32)
    touch = np.empty(n, np.bool_)
    start = np.empty(n, np.int32)  # open record's first threshold index; -1: none
    active = np.zeros(n, np.bool_)
    order = np.empty(h * w, np.int32)  # padded pixel ids sorted by level, and their coordinates
    order_x = np.empty(h * w, np.int32)
    order_y = np.empty(h * w, np.int32)
    pending = np.empty(2 * h * w + 1, np.int32)
    first = np.empty(n_levels + 2, np.int64)
    fill = np.empty(n_levels + 2, np.int64)
    offsets = np.array([-1, -wp, 1, wp])
    n_rec = 0
    for b in range(n_img):
        lv = values[b]
        lb = lut[b]
        first[:] = 0
        for y in range(h):
            for x in range(w):
                first[lb[lv[y, x]]] += 1
        pos = 0
        for lev in range(n_levels):  # levels 0..n_levels-1 join the background; n_levels never does
            c = first[lev]
            first[lev] = pos
            fill[lev] = pos
            pos += c
        for y in range(h):
            for x in range(w):
                lev = lb[lv[y, x]]
                if lev < n_levels:
                    k = fill[lev]
                    order[k] = (y + 1) * wp + x + 1
                    order_x[k] = x
                    order_y[k] = y
                    fill[lev] = k + 1
        active[:] = False
        prev_p = -1  # the pixel processed last and its root (still a root: nothing merged since)
        prev_root = -1
        for j in range(n_levels):
            n_pend = 0
            for k in range(first[j], fill[j]):
                p = order[k]
                px = order_x[k]
                py = order_y[k]
                active[p] = True
                border = px == 0 or py == 0 or px == w - 1 or py == h - 1
                rp = -1  # p's root once it has one
                for o in range(4):
                    q = p + offsets[o]
                    if not active[q]:
                        continue
                    if q == prev_p:  # often the left neighbour, whose root is known
                        rb = prev_root
                    elif parent[q] == rp:  # already p's component, one step away
                        continue
                    else:
                        rb = q
                        while parent[rb] != rb:  # path halving
                            parent[rb] = parent[parent[rb]]
                            rb = parent[rb]
                    if rb == rp:
                        continue
                    if rp < 0:
                        # p joins rb's component. A component that touches the border is never a hole
                        # again: its box no longer matters. Otherwise a record ends only if the box grows
                        # or the component reaches the border.
                        parent[p] = rb
                        size[rb] += 1
                        rp = rb
                        if touch[rb] or (box[rb, 0] <= px <= box[rb, 2] and box[rb, 1] <= py <= box[rb, 3]
                                         and not border):
                            continue
                        if start[rb] >= 0:
                            if n_rec == rec.shape[0]:
                                return -1
                            rec[n_rec, 0] = b
                            rec[n_rec, 1] = box[rb, 0] - 1
                            rec[n_rec, 2] = box[rb, 1] - 1
                            rec[n_rec, 3] = box[rb, 2] + 1
                            rec[n_rec, 4] = box[rb, 3] + 1
                            rec[n_rec, 5] = start[rb]
                            rec[n_rec, 6] = j - 1
                            n_rec += 1
                            start[rb] = -1
                        box[rb, 0] = min(box[rb, 0], px)
                        box[rb, 1] = min(box[rb, 1], py)
                        box[rb, 2] = max(box[rb, 2], px)
                        box[rb, 3] = max(box[rb, 3], py)
                        touch[rb] = touch[rb] or border
                        if not touch[rb]:
                            pending[n_pend] = rb
                            n_pend += 1
                        continue
                    ra = rp
                    if size[ra] < size[rb]:  # union by size; ra survives
                        ra, rb = rb, ra
                    if touch[ra] and touch[rb]:  # two border components: nothing to record
                        parent[rb] = ra
                        size[ra] += size[rb]
                        rp = ra
                        continue
                    x0 = min(box[ra, 0], box[rb, 0])
                    y0 = min(box[ra, 1], box[rb, 1])
                    x1 = max(box[ra, 2], box[rb, 2])
                    y1 = max(box[ra, 3], box[rb, 3])
                    t = touch[ra] or touch[rb]
                    # a record ends when its hole is absorbed, grows or reaches the border
                    for s_ in range(2):
                        r = rb if s_ == 0 else ra
                        if start[r] >= 0 and (s_ == 0 or t != touch[r] or x0 != box[r, 0] or y0 != box[r, 1]
                                              or x1 != box[r, 2] or y1 != box[r, 3]):
                            if n_rec == rec.shape[0]:
                                return -1
                            rec[n_rec, 0] = b
                            rec[n_rec, 1] = box[r, 0] - 1
                            rec[n_rec, 2] = box[r, 1] - 1
                            rec[n_rec, 3] = box[r, 2] + 1
                            rec[n_rec, 4] = box[r, 3] + 1
                            rec[n_rec, 5] = start[r]
                            rec[n_rec, 6] = j - 1
                            n_rec += 1
                            start[r] = -1
                    parent[rb] = ra
                    size[ra] += size[rb]
                    box[ra, 0] = x0
                    box[ra, 1] = y0
                    box[ra, 2] = x1
                    box[ra, 3] = y1
                    touch[ra] = t
                    if not t:
                        pending[n_pend] = ra
                        n_pend += 1
                    rp = ra
                if rp < 0:  # no background neighbour yet: a component of its own
                    parent[p] = p
                    size[p] = 1
                    box[p, 0] = px
                    box[p, 1] = py
                    box[p, 2] = px
                    box[p, 3] = py
                    touch[p] = border
                    start[p] = -1
                    rp = p
                    if not border:
                        pending[n_pend] = p
                        n_pend += 1
                prev_p = p
                prev_root = rp
            for k in range(n_pend):  # holes new or changed at this level open a record
                r = pending[k]
                if parent[r] == r and start[r] < 0 and not touch[r]:
                    start[r] = j
        for k in range(fill[n_levels - 1] if n_levels > 0 else 0):
            r = order[k]
            if parent[r] == r and start[r] >= 0:
                if n_rec == rec.shape[0]:
                    return -1
                rec[n_rec, 0] = b
                rec[n_rec, 1] = box[r, 0] - 1
                rec[n_rec, 2] = box[r, 1] - 1
                rec[n_rec, 3] = box[r, 2] + 1
                rec[n_rec, 4] = box[r, 3] + 1
                rec[n_rec, 5] = start[r]
                rec[n_rec, 6] = n_levels - 1
                n_rec += 1
                start[r] = -1
    return n_rec


_ROWS_PER_IMAGE: dict[str, int] = {}  # the most records per image a kernel has needed so far


def _run_filling(kernel_name: str, args: tuple, n_img: int) -> np.ndarray:
    """Run a record kernel into a buffer, doubled until the records fit (a kernel returns -1 when
    its buffer is full: growing an array inside the kernel's loops would cost reference counting
    on every iteration). The buffer starts at twice the most records per image seen so far."""
    size = max(2 * _ROWS_PER_IMAGE.get(kernel_name, 512), 64) * max(n_img, 1)
    while True:
        rec = np.empty((size, 7), np.int64)
        n = compiled(kernel_name)(*args, rec)
        if n >= 0:
            _ROWS_PER_IMAGE[kernel_name] = max(_ROWS_PER_IMAGE.get(kernel_name, 0), -(-n // max(n_img, 1)))
            return rec[:n]
        size *= 2


def contour_records(values: np.ndarray, lut: np.ndarray, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes of every contour OpenCV's ``findContours(RETR_TREE)`` returns for the binary
    maps ``{level > j}``, ``j = 0..n_t-1``, at once; ``level = lut[b, values[b]]`` (``values [B,H,W]``
    small non-negative integers such as a uint8 map, ``lut [B,V]`` non-decreasing, in ``0..n_t``).

    OpenCV traces (Suzuki & Abe, 1985) the outer border of every 8-connected region of the
    foreground and the border of every hole, a 4-connected background component that does not
    touch the image border. The region boxes of all thresholds come from one union-find sweep
    over the pixels in decreasing level order (:func:`_component_records`), the hole boxes from a
    second one in increasing level order with 4-connectivity (:func:`_hole_records`); a hole's
    border is the region pixels 4-adjacent to it, so its box is the hole's box grown by one pixel
    on each side. O(pixels) for all thresholds, instead of one contour search per threshold.

    Returns ``rows [R,7]`` = ``(image, x1, y1, x2, y2, lo, hi)``: the box (inclusive, the extreme
    contour points) is a contour's box at every threshold index ``lo <= j <= hi``; and ``top [B]``,
    each image's highest level (foreground exists at ``j`` iff ``j < top``).
    """
    vals = np.ascontiguousarray(values)
    if vals.ndim != 3:
        raise ValueError(f"contour_records: values must be [B,H,W], not {vals.shape}")
    table = np.ascontiguousarray(np.clip(lut, 0, n_t), dtype=np.int32)
    regions = _run_filling("_component_records", (vals, table, int(n_t), *_neighbour_groups()), len(vals))
    holes = _run_filling("_hole_records", (vals, table, int(n_t)), len(vals))
    top = table[np.arange(len(vals)), vals.reshape(len(vals), -1).max(axis=1)].astype(np.int64)  # lut is non-decreasing
    return np.concatenate([regions, holes]), top


def contour_boxes_by_threshold(levels: np.ndarray, n_t: int) -> list[list[set[tuple[int, int, int, int]]]]:
    """``[B][n_t]`` sets of contour boxes of ``{levels > j}`` (a readable view of
    :func:`contour_records`, for tests and inspection)."""
    lv = np.ascontiguousarray(np.clip(np.asarray(levels), 0, n_t), dtype=np.int32)
    identity = np.ascontiguousarray(np.broadcast_to(np.arange(n_t + 1, dtype=np.int32), (len(lv), n_t + 1)))
    rows, _ = contour_records(lv, identity, n_t)
    out: list[list[set]] = [[set() for _ in range(n_t)] for _ in range(len(lv))]
    for b, x1, y1, x2, y2, lo, hi in rows.tolist():
        for j in range(lo, hi + 1):
            out[b][j].add((x1, y1, x2, y2))
    return out
