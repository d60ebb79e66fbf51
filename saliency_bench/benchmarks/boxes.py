"""Box geometry shared by the benchmarks: VOC IoU, tight boxes, resize footprints, and the
connected-component boxes of a thresholded map at every threshold at once (MaxBoxAccV2).

Boxes are ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates (the VOC convention,
``w = x2 - x1 + 1``), as in Fong & Vedaldi's evaluation code and in wsolevaluation
(Choe et al., CVPR 2020, ``calculate_multiple_iou``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


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
    empty selection means (the whole image for Fong & Vedaldi's protocol).
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


@lru_cache(maxsize=256)
def resize_footprint(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """For a bilinear resize of one axis from ``n_in`` to ``n_out`` (torch, ``align_corners=False``):
    the first and last output index that input index ``i`` contributes to with non-zero weight.

    Bilinear resizing is separable with non-negative weights, so the non-zero pixels of a resized
    non-negative map are exactly the outputs some kept input pixel reaches: the tight box of the
    resized map follows from the tight box of the map, without resizing it.
    """
    eye = torch.eye(n_in, dtype=torch.float64)[:, None, :]  # [n_in, 1, n_in]: one impulse per row
    w = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0, :].numpy()  # [n_in, n_out]
    reach = w > 0
    first = reach.argmax(axis=1)
    last = n_out - 1 - reach[:, ::-1].argmax(axis=1)
    return first, last


def resize_boxes_through_footprint(boxes: np.ndarray, in_size: tuple[int, int],
                                   out_size: tuple[int, int]) -> np.ndarray:
    """Map tight boxes of a map at ``in_size`` (H, W) to the tight boxes of the map resized
    bilinearly to ``out_size``, via :func:`resize_footprint`."""
    fy0, fy1 = resize_footprint(int(in_size[0]), int(out_size[0]))
    fx0, fx1 = resize_footprint(int(in_size[1]), int(out_size[1]))
    b = np.asarray(boxes, dtype=np.int64)
    return np.stack([fx0[b[..., 0]], fy0[b[..., 1]], fx1[b[..., 2]], fy1[b[..., 3]]], axis=-1)


def scale_boxes_wsol(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale boxes from an image of ``from_size`` (H, W) to ``to_size`` the way wsolevaluation's
    ``resize_bbox`` does: multiply each coordinate by the size ratio and truncate to int."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx = float(to_size[1]) / float(from_size[1])
    sy = float(to_size[0]) / float(from_size[0])
    return (b * np.array([sx, sy, sx, sy])).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Compiled kernels: numba is imported at first use (importing the package stays cheap), and
# compiled code is cached on disk (``cache=True``), so only the first run ever pays for it.
# --------------------------------------------------------------------------------------------
_COMPILED: dict[str, object] = {}


def compiled(name: str):
    """The numba-compiled version of this module's (or a caller's) plain-Python kernel ``name``.

    Kernels are written as ordinary functions that numba's ``nopython`` mode accepts; they are
    compiled with ``numba.njit(cache=True)`` the first time they are asked for.
    """
    fn = _COMPILED.get(name)
    if fn is None:
        import numba  # lazily: only scoring needs it

        fn = _COMPILED[name] = numba.njit(cache=True, nogil=True)(_KERNELS[name])
    return fn


_KERNELS: dict[str, object] = {}


def kernel(fn):
    """Register a plain-Python kernel for :func:`compiled` (runs uncompiled when called directly)."""
    _KERNELS[fn.__name__] = fn
    return fn


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
def _component_records(values, lut, n_levels, reps, n_reps):  # pragma: no cover - compiled by numba
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
    rec = np.empty((4096, 7), np.int64)
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
                            grown = np.empty((2 * n_rec, 7), np.int64)
                            grown[:n_rec] = rec
                            rec = grown
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
            grown = np.empty((max(2 * rec.shape[0], n_rec + n_roots), 7), np.int64)
            grown[:n_rec] = rec[:n_rec]
            rec = grown
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
    return rec[:n_rec].copy()


def component_box_records(levels: np.ndarray, n_levels: int) -> dict[str, np.ndarray]:
    """Boxes of the 8-connected components of ``{levels > j}`` for every ``j in 0..n_levels-1``.

    ``levels [B,H,W]`` holds, per pixel, how many thresholds it passes: the pixel is foreground
    at threshold index ``j`` iff ``j < levels``. Foreground sets shrink as ``j`` grows, so the
    components form a tree (the max-tree of the map); we sweep ``j`` downwards, adding each
    level's pixels (counting-sorted by level) and merging components by union-find, each root
    keeping its bounding box: O(pixels) work for all thresholds, instead of one labelling per
    threshold as wsolevaluation's loop does. A component's box is reported as a *record* valid
    over the range of thresholds during which the box did not change. Compiled with numba.

    Returns arrays of equal length: ``image`` (index in the batch), ``box [R,4]`` (tight,
    inclusive), ``lo``, ``hi``: the record's box is a component's box at every ``lo <= j <= hi``.
    """
    lv = np.ascontiguousarray(np.clip(np.asarray(levels), 0, n_levels), dtype=np.int32)
    if lv.ndim != 3:
        raise ValueError(f"component_box_records: levels must be [B,H,W], not {lv.shape}")
    identity = np.broadcast_to(np.arange(n_levels + 1, dtype=np.int32), (len(lv), n_levels + 1))
    return component_records_from_table(lv, np.ascontiguousarray(identity), n_levels)


def component_records_from_table(values: np.ndarray, lut: np.ndarray, n_levels: int) -> dict[str, np.ndarray]:
    """:func:`component_box_records` of the levels ``lut[b, values[b]]`` (``values [B,H,W]`` small
    non-negative integers such as a uint8 map, ``lut [B,V]`` in ``0..n_levels``), without
    building the levels array."""
    rec = component_record_rows(values, lut, n_levels)
    return {"image": rec[:, 0].copy(), "box": rec[:, 1:5].copy(), "lo": rec[:, 5].copy(), "hi": rec[:, 6].copy()}


def component_record_rows(values: np.ndarray, lut: np.ndarray, n_levels: int) -> np.ndarray:
    """The records of :func:`component_records_from_table` as rows ``[R,7]``:
    ``(image, x1, y1, x2, y2, lo, hi)``."""
    return compiled("_component_records")(np.ascontiguousarray(values), np.ascontiguousarray(lut, dtype=np.int32),
                                          int(n_levels), *_neighbour_groups())
