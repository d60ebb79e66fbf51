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


# --------------------------------------------------------------------------------------------
# Contour boxes of smooth maps at every threshold at once: unimodal runs and their basins.
# --------------------------------------------------------------------------------------------
# A smooth map has few local extrema per row, so a row splits into few unimodal runs (levels
# non-decreasing, then non-increasing): at every threshold j the pixels of a run above j form one
# interval, so a run is a single node of the component graph at every j, however many pixels it
# has. Runs hang from a neighbour run that is connected to them as soon as they exist (basins),
# and the basins merge, by union-find, at the level of their best adjacent pixel pair. Rows give
# each component's y-range, columns (the same runs on the transposed map) its x-range; a component
# is named in both by its raster-first pixel of highest level. Holes are the same on the mirrored
# levels with 4-connectivity. Work is per run, not per pixel per threshold, apart from two
# vectorised passes that find the runs.
@helper
def _line_runs(X, limit, st, evt, ev64, peaks, valleys):  # pragma: no cover - compiled by numba
    """The unimodal runs along every column of ``X [n,m]``, all columns at once, a row at a time
    (the inner loop is over columns, so it vectorises): peak runs (non-decreasing, then
    non-increasing) and valley runs (non-increasing, then non-decreasing). A run ends where the
    last non-zero step turns. ``peaks[k] = (column, last row, peak row)`` in the order runs end,
    the peak being the first row of the top plateau; ``valleys`` likewise with the first row of the
    bottom plateau. Returns ``(n_peaks, n_valleys)``, or ``(-1, -1)`` past ``limit`` runs of a kind
    (or, early, past twice the pace that would reach it).

    Arithmetic stays in int16 (a widened subtraction would keep LLVM from vectorising)."""
    nr, nc = X.shape
    last = st[0]  # sign of the last non-zero step: 1 up, -1 down, 0 none yet
    top = st[1]
    bottom = st[2]
    ended = st[3]
    one = np.int16(1)
    mone = np.int16(-1)
    zero = np.int16(0)
    for x in range(nc):
        last[x] = zero
        top[x] = zero
        bottom[x] = zero
    n_p = 0
    n_v = 0
    for y in range(1, nr):
        cur = X[y]
        prev = X[y - 1]
        yy = np.int16(y)
        turned = False
        for x in range(nc):
            up = cur[x] > prev[x]
            dn = cur[x] < prev[x]
            s = last[x]
            e = (up & (s < zero)) | (dn & (s > zero))
            evt[x] = e
            turned |= e
            t = top[x]
            u = bottom[x]
            ended[x] = t if up else u
            top[x] = yy if up else t
            bottom[x] = yy if dn else u
            last[x] = one if up else (mone if dn else s)
        if turned:  # few columns turn on a row: skip 8 at a time
            for k in range(ev64.shape[0]):
                if ev64[k] == 0:
                    continue
                for x in range(8 * k, min(8 * k + 8, nc)):
                    if evt[x]:
                        evt[x] = False
                        if last[x] > 0:  # up after down: a peak run ended at y - 1
                            if n_p >= limit:
                                return -1, -1
                            peaks[n_p, 0] = x
                            peaks[n_p, 1] = y - 1
                            peaks[n_p, 2] = ended[x]
                            n_p += 1
                        else:
                            if n_v >= limit:
                                return -1, -1
                            valleys[n_v, 0] = x
                            valleys[n_v, 1] = y - 1
                            valleys[n_v, 2] = ended[x]
                            n_v += 1
            pace = 2 * limit * (y + 1) // nr + limit // 8  # a noisy map gives up early
            if n_p > pace or n_v > pace:
                return -1, -1
    if n_p + nc > limit or n_v + nc > limit:
        return -1, -1
    for x in range(nc):
        peaks[n_p, 0] = x
        peaks[n_p, 1] = nr - 1
        peaks[n_p, 2] = top[x]
        n_p += 1
        valleys[n_v, 0] = x
        valleys[n_v, 1] = nr - 1
        valleys[n_v, 2] = bottom[x]
        n_v += 1
    return n_p, n_v


@helper
def _group_runs(raw, n, X, mirror, n_levels, first, run):  # pragma: no cover - compiled by numba
    """The runs of the lines of ``X [L,P]`` (``raw`` from :func:`_line_runs` on ``X`` transposed)
    sorted by line (counting sort), in order along each: ``run[i] = (line, first, last, peak,
    level)``, the level that of ``X`` at the peak (``n_levels - X`` when ``mirror``), and the runs
    of line ``l`` are ``first[l]:first[l + 1]``."""
    nl = X.shape[0]
    for c in range(nl + 1):
        first[c] = 0
    for k in range(n):
        first[raw[k, 0] + 1] += 1
    for c in range(nl):
        first[c + 1] += first[c]
    for k in range(n):
        c = raw[k, 0]
        i = first[c]
        first[c] = i + 1
        run[i, 0] = c
        run[i, 2] = raw[k, 1]
        run[i, 3] = raw[k, 2]
    for c in range(nl, 0, -1):
        first[c] = first[c - 1]
    first[0] = 0
    for c in range(nl):
        a = 0
        for i in range(first[c], first[c + 1]):
            run[i, 1] = a
            v = X[c, run[i, 3]]
            run[i, 4] = n_levels - v if mirror else v
            a = run[i, 2] + 1


@helper
def _run_basins(X, first, run, n, mirror, n_levels, diag, lab, cid, border):  # pragma: no cover - numba
    """Each run's basin (``lab``, a root run; ``cid`` numbers the roots ``0..nb-1``; returns nb), and
    for the holes (``mirror``) whether it reaches the image border as soon as it appears
    (``border``, per run): the components it joins are never holes.

    A run hangs from a run of an adjacent line that has a pixel of level >= its own peak level
    next to its top plateau (8-connectivity when ``diag``, else 4) and comes first in the order
    (peak level descending, then raster index of the peak): from the threshold where the run
    appears, the two are connected. The order makes the trees acyclic, and puts the raster-first
    pixel of highest level of any component at the peak of a root."""
    nl, npos = X.shape
    d = 1 if diag else 0
    ptr = np.empty(2, np.int64)
    cur = -1
    for s in range(n):
        lab[s] = s
        ln = run[s, 0]
        lev = run[s, 4]
        p = run[s, 3]
        key = ln * npos + p
        if ln != cur:  # runs of a line come in order: the lookups in its neighbours move forward
            cur = ln
            ptr[0] = first[ln - 1] if ln > 0 else 0
            ptr[1] = first[ln + 1] if ln + 1 < nl else 0
        for o in range(2):  # the pixels straight across the peak first: most runs hang from them
            l2 = ln - 1 if o == 0 else ln + 1
            if l2 < 0 or l2 >= nl:
                continue
            t = ptr[o]
            while run[t, 2] < p:
                t += 1
            ptr[o] = t
            v = n_levels - X[l2, p] if mirror else X[l2, p]
            if v < lev:
                continue
            if run[t, 4] > lev or l2 * npos + run[t, 3] < key:
                lab[s] = t
                break
        if lab[s] != s:
            continue
        raw = X[ln, p]
        q = p
        while q < run[s, 2] and X[ln, q + 1] == raw:  # the top plateau p..q
            q += 1
        lo = max(p - d, 0)
        hi = min(q + d, npos - 1)
        for o in range(2):
            l2 = ln - 1 if o == 0 else ln + 1
            if l2 < 0 or l2 >= nl:
                continue
            t = first[l2]
            for x in range(lo, hi + 1):
                v = n_levels - X[l2, x] if mirror else X[l2, x]
                if v < lev:
                    continue
                while run[t, 2] < x:
                    t += 1
                if run[t, 4] > lev or l2 * npos + run[t, 3] < key:
                    lab[s] = t
                    break
            if lab[s] != s:
                break
    nb = 0
    for s in range(n):  # roots, with path compression
        r = s
        while lab[r] != r:
            r = lab[r]
        q = s
        while lab[q] != r:
            nx = lab[q]
            lab[q] = r
            q = nx
        if r == s:
            cid[s] = nb
            nb += 1
            at = False
            if mirror:  # its top plateau on the border: the first or last line, or a line's end
                ln = run[s, 0]
                p = run[s, 3]
                q = p
                while q < run[s, 2] and X[ln, q + 1] == X[ln, p]:
                    q += 1
                at = ln == 0 or ln == nl - 1 or p == 0 or q == npos - 1
            border[s] = at
    for s in range(n):
        border[s] = border[lab[s]]
    return nb


@helper
def _basin_edges(X, first, run, lab, border, mirror, n_levels, diag, eu, ev, ew, cid, nb, pair):  # pragma: no cover
    """The edges between basins ``(eu, ev)`` (root runs) and their weights ``ew``: the highest
    level at which some pair of adjacent pixels of the two is above the threshold (the max over
    adjacent pairs of the min of their levels, ``n_levels - X`` when ``mirror``). Adjacent pixels
    are neighbours in a line, or across adjacent lines with 8-connectivity (``diag``) or 4. Lines
    are merged interval by interval (an interval: where the runs of both lines are the same);
    intervals inside one basin, or between two basins on the ``border``, are skipped unread. One edge
    per pair of basins when ``nb**2`` fits the table ``pair``. Returns the edge count."""
    nl, npos = X.shape
    ne = 0
    for ln in range(nl):
        row = X[ln]
        for s in range(first[ln], first[ln + 1] - 1):
            if lab[s] != lab[s + 1] and not (border[s] and border[s + 1]):
                b = run[s, 2]
                eu[ne] = lab[s]
                ev[ne] = lab[s + 1]
                ew[ne] = n_levels - max(row[b], row[b + 1]) if mirror else min(row[b], row[b + 1])
                ne += 1
        if ln + 1 == nl:
            break
        nxt = X[ln + 1]
        i = first[ln]
        k = first[ln + 1]
        x0 = 0
        carry = -1  # the weight of a diagonal pair that belongs to the next interval
        while True:
            x1 = min(run[i, 2], run[k, 2]) + 1
            need = lab[i] != lab[k] and not (border[i] and border[k])
            acc = carry
            if need:
                if mirror:  # 4-connectivity: the min over pairs of the max, mirrored
                    ra = row[x0:x1]  # slices: indices from 0 let LLVM vectorise these loops
                    rb = nxt[x0:x1]
                    m = max(ra[0], rb[0])
                    for x in range(1, x1 - x0):
                        m = min(m, max(ra[x], rb[x]))
                    acc = max(acc, n_levels - m)
                elif not diag:
                    ra = row[x0:x1]
                    rb = nxt[x0:x1]
                    m = min(ra[0], rb[0])
                    for x in range(1, x1 - x0):
                        m = max(m, min(ra[x], rb[x]))
                    acc = max(acc, m)
                elif x1 - x0 == 1:
                    acc = max(acc, min(row[x0], nxt[x0]))
                else:  # 8-connectivity inside the interval; its two ends see one neighbour less
                    m = max(min(row[x0], max(nxt[x0], nxt[x0 + 1])),
                            min(row[x1 - 1], max(nxt[x1 - 2], nxt[x1 - 1])))
                    ra = row[x0 + 1:x1 - 1]
                    bl = nxt[x0:x1 - 2]
                    bc = nxt[x0 + 1:x1 - 1]
                    br = nxt[x0 + 2:x1]
                    for x in range(x1 - x0 - 2):
                        m = max(m, min(ra[x], max(max(bl[x], bc[x]), br[x])))
                    acc = max(acc, m)
            carry = -1
            if x1 < npos:
                i2 = i + 1 if run[i, 2] + 1 == x1 else i
                k2 = k + 1 if run[k, 2] + 1 == x1 else k
                if diag:  # the diagonal pairs across the interval's end
                    c1 = min(row[x1 - 1], nxt[x1])  # runs (i, k2)
                    c2 = min(row[x1], nxt[x1 - 1])  # runs (i2, k)
                    if k2 == k:  # only this line's run changes: c1 is this interval's, c2 the next's
                        acc = max(acc, c1)
                        carry = c2
                    elif i2 == i:
                        acc = max(acc, c2)
                        carry = c1
                    else:
                        if lab[i] != lab[k2] and not (border[i] and border[k2]):
                            eu[ne] = lab[i]
                            ev[ne] = lab[k2]
                            ew[ne] = c1
                            ne += 1
                        if lab[i2] != lab[k] and not (border[i2] and border[k]):
                            eu[ne] = lab[i2]
                            ev[ne] = lab[k]
                            ew[ne] = c2
                            ne += 1
            if need:
                eu[ne] = lab[i]
                ev[ne] = lab[k]
                ew[ne] = acc
                ne += 1
            if x1 >= npos:
                break
            i = i2
            k = k2
            x0 = x1
    if nb * nb > pair.shape[0]:
        return ne
    m = 0  # a pair of basins meets on many lines: keep its best edge only
    for e in range(ne):
        cu = cid[eu[e]]
        cv = cid[ev[e]]
        idx = cu * nb + cv if cu < cv else cv * nb + cu
        f = pair[idx] - 1
        if f >= 0:
            ew[f] = max(ew[f], ew[e])
        else:
            pair[idx] = m + 1
            eu[m] = eu[e]
            ev[m] = ev[e]
            ew[m] = ew[e]
            m += 1
    for e in range(m):
        cu = cid[eu[e]]
        cv = cid[ev[e]]
        pair[cu * nb + cv if cu < cv else cv * nb + cu] = 0
    return m


@helper
def _sort_desc(keys, n, n_buckets, order, cnt):  # pragma: no cover - compiled by numba
    """Counting sort of ``0..n-1`` by ``keys`` (``0..n_buckets-1``), highest first."""
    for k in range(n_buckets):
        cnt[k] = 0
    for e in range(n):
        cnt[keys[e]] += 1
    pos = 0
    for k in range(n_buckets - 1, -1, -1):
        c = cnt[k]
        cnt[k] = pos
        pos += c
    for e in range(n):
        k = keys[e]
        order[cnt[k]] = e
        cnt[k] += 1


@helper
def _basin_sweep(hole, n_levels, b, X, run, n, lab, border, first, eu, ev, ew, ne, cols, nc,
                 o_r, o_e, o_c, o_t, cnt, keys, rs, marks, rbox, rec, n_rec):  # pragma: no cover - numba
    """Records ``(b, x1, y1, x2, y2, lo, hi)`` of the components of ``{A > j}`` for every ``j``
    at once, ``A`` the level map ``X`` or, when ``hole``, ``n_levels - X`` with the components that
    reach the image border left out; thresholds descend from ``n_levels - 1``.

    A union-find over the basins of the row runs ``run`` (edges ``eu, ev, ew``) gives the
    components, their y-ranges (a run joins its basin's component at its peak level) and their
    contact with the border. Their x-ranges come from the column runs ``cols``: the pixels of a
    column run above a threshold are one vertical interval, in the component of its peak, so at its
    peak level a column run adds its column to the component of the row run through its peak.
    A component is named by its best root run (highest peak, then raster-first): a record opens
    when a name appears or its box changes, and ends when the box changes, the name is absorbed by
    a better one, or (holes) the component reaches the border. Hole basins on the border from the
    start (``border``) reach it at their root's birth: their other runs are not followed."""
    h, w = X.shape
    rpar = rs[0]
    rsize = rs[1]
    rx1 = rs[2]
    ry1 = rs[3]
    rx2 = rs[4]
    ry2 = rs[5]
    rname = rs[6]  # a component root's name (a root run)
    rtouch = rs[7]  # the highest threshold at which a component root's component reaches the border
    rstart = rs[8]  # a name's open record: its top threshold, or -1
    rlive = rs[9]  # a name still names a component
    rroot = rs[10]  # a name's component root
    mark = rs[11]  # the threshold at which a name was last queued for a look
    # births by level, basin roots before the other runs of their level; edges by weight
    for s in range(n):
        keys[s] = 2 * run[s, 4] + (1 if lab[s] == s else 0)
    _sort_desc(keys, n, 2 * n_levels + 2, o_r, cnt)
    _sort_desc(ew, ne, n_levels + 1, o_e, cnt)
    for s in range(nc):
        v = X[cols[s, 2], cols[s, 0]]
        keys[s] = n_levels - v if hole else v
    _sort_desc(keys, nc, n_levels + 1, o_c, cnt)
    for s in range(nc):  # column runs keep their level (keys is reused below) and the basin of the
        cols[s, 1] = keys[s]  # row run through their peak (-1: a hole basin on the border)
        x = cols[s, 0]
        y = cols[s, 2]
        r = first[y]
        while run[r, 2] < x:
            r += 1
        cols[s, 2] = -1 if border[r] else lab[r]
    n_t = 0
    for s in range(n):
        mark[s] = -1
        rtouch[s] = -1
    if hole:  # when each row run reaches the border: rows 0 and H-1 at once, else at its ends
        for s in range(n):
            ln = run[s, 0]
            t = -1
            if ln == 0 or ln == h - 1:
                t = run[s, 4] - 1
            else:
                if run[s, 1] == 0:
                    t = n_levels - X[ln, 0] - 1
                if run[s, 2] == w - 1:
                    t = max(t, n_levels - X[ln, w - 1] - 1)
            if t >= 0 and not border[s]:
                keys[s] = t + 1
                n_t += 1
            else:
                keys[s] = 0
        _sort_desc(keys, n, n_levels + 1, o_t, cnt)
    i_r = 0
    i_e = 0
    i_c = 0
    i_t = 0
    for j in range(n_levels - 1, -1, -1):
        lev = j + 1
        nm = 0
        while i_r < n and run[o_r[i_r], 4] == lev:
            s = o_r[i_r]
            i_r += 1
            ln = run[s, 0]
            r = lab[s]
            if r == s:  # a basin appears: a new component
                rpar[s] = s
                rsize[s] = 1
                rx1[s] = w
                rx2[s] = -1
                ry1[s] = ln
                ry2[s] = ln
                if border[s]:
                    rtouch[s] = n_levels
                rname[s] = s
                rstart[s] = -1
                rlive[s] = 1
                rroot[s] = s
                mark[s] = j
                marks[nm] = s
                nm += 1
                continue
            if border[s]:
                continue
            while rpar[r] != r:  # a run joins its basin's component
                rpar[r] = rpar[rpar[r]]
                r = rpar[r]
            if ln < ry1[r] or ln > ry2[r]:
                ry1[r] = min(ry1[r], ln)
                ry2[r] = max(ry2[r], ln)
                q = rname[r]
                if mark[q] != j:
                    mark[q] = j
                    marks[nm] = q
                    nm += 1
        while i_e < ne and ew[o_e[i_e]] == lev:
            e = o_e[i_e]
            i_e += 1
            ra = eu[e]
            while rpar[ra] != ra:
                rpar[ra] = rpar[rpar[ra]]
                ra = rpar[ra]
            rb = ev[e]
            while rpar[rb] != rb:
                rpar[rb] = rpar[rpar[rb]]
                rb = rpar[rb]
            if ra == rb:
                continue
            if rsize[ra] < rsize[rb]:  # union by size
                ra, rb = rb, ra
            rpar[rb] = ra
            rsize[ra] += rsize[rb]
            rx1[ra] = min(rx1[ra], rx1[rb])
            ry1[ra] = min(ry1[ra], ry1[rb])
            rx2[ra] = max(rx2[ra], rx2[rb])
            ry2[ra] = max(ry2[ra], ry2[rb])
            rtouch[ra] = max(rtouch[ra], rtouch[rb])
            qa = rname[ra]
            qb = rname[rb]
            la = run[qa, 4]
            lb = run[qb, 4]
            if lb > la or (lb == la and (run[qb, 0] < run[qa, 0] or (run[qb, 0] == run[qa, 0]
                                                                     and run[qb, 3] < run[qa, 3]))):
                qa, qb = qb, qa
            rname[ra] = qa
            rroot[qa] = ra
            rlive[qb] = 0
            if mark[qa] != j:
                mark[qa] = j
                marks[nm] = qa
                nm += 1
            if mark[qb] != j:
                mark[qb] = j
                marks[nm] = qb
                nm += 1
        while i_c < nc and cols[o_c[i_c], 1] == lev:  # column runs: their column joins a component
            s = o_c[i_c]
            i_c += 1
            r = cols[s, 2]
            if r < 0:
                continue
            x = cols[s, 0]
            while rpar[r] != r:
                rpar[r] = rpar[rpar[r]]
                r = rpar[r]
            if x < rx1[r] or x > rx2[r]:
                rx1[r] = min(rx1[r], x)
                rx2[r] = max(rx2[r], x)
                q = rname[r]
                if mark[q] != j:
                    mark[q] = j
                    marks[nm] = q
                    nm += 1
        while i_t < n_t and keys[o_t[i_t]] == lev:  # runs reaching the border (keys: level + 1)
            s = o_t[i_t]
            i_t += 1
            r = lab[s]
            while rpar[r] != r:
                r = rpar[r]
            rtouch[r] = max(rtouch[r], j)
            q = rname[r]
            if mark[q] != j:
                mark[q] = j
                marks[nm] = q
                nm += 1
        # Every component that changed at this level had its final name queued by its last event.
        for m in range(nm):
            q = marks[m]
            if rlive[q]:
                rr = rroot[q]
                if rtouch[rr] < j:
                    st = rstart[q]
                    if st >= 0 and rx1[rr] == rbox[q, 0] and ry1[rr] == rbox[q, 1] and rx2[rr] == rbox[q, 2] \
                            and ry2[rr] == rbox[q, 3]:
                        continue
                    if st >= 0:
                        if n_rec == rec.shape[0]:
                            return -1
                        rec[n_rec, 0] = b
                        rec[n_rec, 1] = rbox[q, 0]
                        rec[n_rec, 2] = rbox[q, 1]
                        rec[n_rec, 3] = rbox[q, 2]
                        rec[n_rec, 4] = rbox[q, 3]
                        rec[n_rec, 5] = j + 1
                        rec[n_rec, 6] = st
                        n_rec += 1
                    rbox[q, 0] = rx1[rr]
                    rbox[q, 1] = ry1[rr]
                    rbox[q, 2] = rx2[rr]
                    rbox[q, 3] = ry2[rr]
                    rstart[q] = j
                    continue
            if rstart[q] >= 0:
                if n_rec == rec.shape[0]:
                    return -1
                rec[n_rec, 0] = b
                rec[n_rec, 1] = rbox[q, 0]
                rec[n_rec, 2] = rbox[q, 1]
                rec[n_rec, 3] = rbox[q, 2]
                rec[n_rec, 4] = rbox[q, 3]
                rec[n_rec, 5] = j + 1
                rec[n_rec, 6] = rstart[q]
                n_rec += 1
                rstart[q] = -1
    for k in range(i_r):  # records still open at threshold 0
        q = o_r[k]
        if lab[q] == q and rlive[q] and rstart[q] >= 0:
            if n_rec == rec.shape[0]:
                return -1
            rec[n_rec, 0] = b
            rec[n_rec, 1] = rbox[q, 0]
            rec[n_rec, 2] = rbox[q, 1]
            rec[n_rec, 3] = rbox[q, 2]
            rec[n_rec, 4] = rbox[q, 3]
            rec[n_rec, 5] = 0
            rec[n_rec, 6] = rstart[q]
            n_rec += 1
    return n_rec


@kernel
def _run_records(values, lut, n_levels, limit, skipped, rec):  # pragma: no cover - compiled by numba
    """The records of :func:`contour_records` from unimodal runs (see above), regions and holes;
    ``skipped[b]`` is set for an image with more than ``limit`` runs of a kind along its rows or
    its columns (a noisy map: the pixel sweeps are faster there), whose records are left out.

    Levels are int16 (the caller checks ``n_levels`` and the image sides fit)."""
    n_img, h, w = values.shape
    mx = max(h, w)
    ecap = 5 * limit + 2 * mx + 8
    F = np.empty((h, w), np.int16)
    FT = np.empty((w, h), np.int16)
    st = np.zeros((4, mx + 8), np.int16)
    evt = np.zeros(mx + 8 - mx % 8, np.bool_)
    ev64 = evt.view(np.uint64)
    raw_p = np.empty((limit, 3), np.int32)
    raw_v = np.empty((limit, 3), np.int32)
    cols = np.empty((2, limit, 3), np.int32)  # column runs: column, (level), peak row
    runs = np.empty((2, limit, 5), np.int32)  # row peak runs, row valley runs
    firsts = np.empty((2, h + 1), np.int32)
    labs = np.empty((2, limit), np.int32)
    n_runs = np.zeros(2, np.int64)
    n_cols = np.zeros(2, np.int64)
    cids = np.empty(limit, np.int32)
    border = np.zeros(limit, np.bool_)
    pair = np.zeros(1 << 16, np.int32)
    eu = np.empty(ecap, np.int32)
    ev = np.empty(ecap, np.int32)
    ew = np.empty(ecap, np.int32)
    orders = np.empty((4, max(limit, ecap)), np.int32)
    cnt = np.empty(2 * n_levels + 4, np.int64)
    keys = np.empty(limit, np.int32)
    rs = np.empty((12, limit), np.int32)
    marks = np.empty(limit, np.int32)
    rbox = np.empty((limit, 4), np.int32)
    n_rec = 0
    for b in range(n_img):
        lv = values[b]
        lb = lut[b]
        for y in range(h):
            src = lv[y]
            dst = F[y]
            for x in range(w):
                dst[x] = lb[src[x]]
        for x in range(w):
            dst = FT[x]
            for y in range(h):
                dst[y] = F[y, x]
        skipped[b] = True
        n_p, n_v = _line_runs(FT, limit, st, evt, ev64, raw_p, raw_v)  # runs along the rows
        if n_p < 0:
            continue
        _group_runs(raw_p, n_p, F, False, n_levels, firsts[0], runs[0])
        _group_runs(raw_v, n_v, F, True, n_levels, firsts[1], runs[1])
        n_runs[0] = n_p
        n_runs[1] = n_v
        n_p, n_v = _line_runs(F, limit, st, evt, ev64, cols[0], cols[1])  # along the columns
        if n_p < 0:
            continue
        n_cols[0] = n_p
        n_cols[1] = n_v
        skipped[b] = False
        for hole in range(2):  # regions: peaks, 8-connected; holes: valleys (mirrored), 4-connected
            mirror = hole == 1
            diag = not mirror
            run = runs[hole]
            nb = _run_basins(F, firsts[hole], run, n_runs[hole], mirror, n_levels, diag, labs[hole], cids, border)
            ne = _basin_edges(F, firsts[hole], run, labs[hole], border, mirror, n_levels, diag, eu, ev, ew,
                              cids, nb, pair)
            n0 = n_rec
            n_rec = _basin_sweep(mirror, n_levels, b, F, run, n_runs[hole], labs[hole], border, firsts[hole],
                                 eu, ev, ew, ne, cols[hole], n_cols[hole], orders[0], orders[1], orders[2],
                                 orders[3], cnt, keys, rs, marks, rbox, rec, n_rec)
            if n_rec < 0:
                return -1
            if mirror:  # back to thresholds of the levels; a hole's contour is its box grown by 1
                for k in range(n0, n_rec):
                    lo = n_levels - 1 - rec[k, 6]
                    rec[k, 6] = n_levels - 1 - rec[k, 5]
                    rec[k, 5] = lo
                    rec[k, 1] -= 1
                    rec[k, 2] -= 1
                    rec[k, 3] += 1
                    rec[k, 4] += 1
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


RUNS_PER_PIXEL = 1 / 8  # the run path takes a map with at most this many runs of a kind per pixel


def contour_records(values: np.ndarray, lut: np.ndarray, n_t: int, path: str = "auto",
                    took_runs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes of every contour OpenCV's ``findContours(RETR_TREE)`` returns for the binary
    maps ``{level > j}``, ``j = 0..n_t-1``, at once; ``level = lut[b, values[b]]`` (``values [B,H,W]``
    small non-negative integers such as a uint8 map, ``lut [B,V]`` non-decreasing, in ``0..n_t``).

    OpenCV traces (Suzuki & Abe, 1985) the outer border of every 8-connected region of the
    foreground and the border of every hole, a 4-connected background component that does not
    touch the image border; a hole's border is the region pixels 4-adjacent to it, so its box is
    the hole's box grown by one pixel on each side. Two exact ways, chosen per map (``path``
    "auto"; "runs" or "pixels" force one, for tests):

    * runs (:func:`_run_records`): smooth maps (bicubic-upsampled Grad-CAM, blurred maps) have few
      unimodal runs per row and column; the components of every threshold come from union-finds
      over basins of runs, rows giving y-ranges and columns x-ranges. Taken when every kind of run
      stays under ``RUNS_PER_PIXEL`` per pixel.
    * pixels: one union-find sweep over the pixels in decreasing level order for the regions
      (:func:`_component_records`), and one in increasing order with 4-connectivity for the holes
      (:func:`_hole_records`); noisy maps (raw gradients) have about a run per three pixels, and go
      this way.

    Either is O(pixels) for all thresholds, instead of one contour search per threshold.
    ``took_runs`` (bool ``[B]``), when given, is set to which images the run path scored.

    Returns ``rows [R,7]`` = ``(image, x1, y1, x2, y2, lo, hi)``: the box (inclusive, the extreme
    contour points) is a contour's box at every threshold index ``lo <= j <= hi``; and ``top [B]``,
    each image's highest level (foreground exists at ``j`` iff ``j < top``).
    """
    vals = np.ascontiguousarray(values)
    if vals.ndim != 3:
        raise ValueError(f"contour_records: values must be [B,H,W], not {vals.shape}")
    if path not in ("auto", "runs", "pixels"):
        raise ValueError(f"contour_records: path must be 'auto', 'runs' or 'pixels', not {path!r}")
    n_img, h, w = vals.shape
    table = np.ascontiguousarray(np.clip(lut, 0, n_t), dtype=np.int32)
    parts = []
    todo = np.arange(n_img)
    fits = n_t < 2 ** 15 and max(h, w) < 2 ** 15  # the run path keeps levels and positions in int16
    if path == "runs" and not fits:
        raise ValueError("contour_records: the run path needs n_t and the image sides below 32768")
    if path != "pixels" and fits and n_img and h * w:
        limit = h * w + 1 if path == "runs" else max(int(h * w * RUNS_PER_PIXEL), h, w) + 1
        skipped = np.zeros(n_img, np.bool_)
        parts.append(_run_filling("_run_records", (vals, table, int(n_t), int(limit), skipped), n_img))
        todo = np.flatnonzero(skipped)
    if took_runs is not None:
        took_runs[:] = True
        took_runs[todo] = False
    if len(todo):
        sub_vals = vals if len(todo) == n_img else np.ascontiguousarray(vals[todo])
        sub_table = table if len(todo) == n_img else np.ascontiguousarray(table[todo])
        for name, args in (("_component_records", (sub_vals, sub_table, int(n_t), *_neighbour_groups())),
                           ("_hole_records", (sub_vals, sub_table, int(n_t)))):
            rows = _run_filling(name, args, len(todo))
            rows[:, 0] = todo[rows[:, 0]]
            parts.append(rows)
    top = table[np.arange(n_img), vals.reshape(n_img, -1).max(axis=1)].astype(np.int64) if h * w else \
        np.zeros(n_img, np.int64)  # lut is non-decreasing
    return (np.concatenate(parts) if parts else np.zeros((0, 7), np.int64)), top


def contour_boxes_by_threshold(levels: np.ndarray, n_t: int, path: str = "auto"
                               ) -> list[list[set[tuple[int, int, int, int]]]]:
    """``[B][n_t]`` sets of contour boxes of ``{levels > j}`` (a readable view of
    :func:`contour_records`, for tests and inspection)."""
    lv = np.ascontiguousarray(np.clip(np.asarray(levels), 0, n_t), dtype=np.int32)
    identity = np.ascontiguousarray(np.broadcast_to(np.arange(n_t + 1, dtype=np.int32), (len(lv), n_t + 1)))
    rows, _ = contour_records(lv, identity, n_t, path)
    out: list[list[set]] = [[set() for _ in range(n_t)] for _ in range(len(lv))]
    for b, x1, y1, x2, y2, lo, hi in rows.tolist():
        for j in range(lo, hi + 1):
            out[b][j].add((x1, y1, x2, y2))
    return out
