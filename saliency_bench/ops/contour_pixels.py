"""Contour boxes at every threshold at once by union-find sweeps over the pixels (the path of
:func:`~saliency_bench.ops.contours.contour_records` for noisy maps): one sweep in decreasing
level order for the 8-connected regions, one in increasing order for the 4-connected holes."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .jit import Kernels

jit = Kernels(__name__)

# The 8 neighbours in ring order (dy, dx): two active neighbours are 8-adjacent to each other when
# consecutive on the ring, or when both are 4-neighbours a quarter-turn apart (N and E, ...).
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@lru_cache(maxsize=1)
def neighbour_groups() -> tuple[np.ndarray, np.ndarray]:
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


@jit.kernel
def _component_records(values, lut, n_levels, reps, n_reps, min_area, rec):  # pragma: no cover - compiled by numba
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
        amin = min_area[b]
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
                        start_r = start[r]
                        start[r] = -1
                        pending[n_pend] = r
                        n_pend += 1
                        if (box[r, 2] - box[r, 0] + 2) * (box[r, 3] - box[r, 1] + 2) < amin:
                            continue
                        if n_rec == rec.shape[0]:
                            return -1
                        rec[n_rec, 0] = b
                        rec[n_rec, 1] = box[r, 0]
                        rec[n_rec, 2] = box[r, 1]
                        rec[n_rec, 3] = box[r, 2]
                        rec[n_rec, 4] = box[r, 3]
                        rec[n_rec, 5] = j + 1
                        rec[n_rec, 6] = start_r
                        n_rec += 1
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
            if parent[r] == r and (box[r, 2] - box[r, 0] + 2) * (box[r, 3] - box[r, 1] + 2) >= amin:
                rec[n_rec, 0] = b
                rec[n_rec, 1] = box[r, 0]
                rec[n_rec, 2] = box[r, 1]
                rec[n_rec, 3] = box[r, 2]
                rec[n_rec, 4] = box[r, 3]
                rec[n_rec, 5] = 0
                rec[n_rec, 6] = start[r]
                n_rec += 1
    return n_rec


@jit.kernel
def _hole_records(values, lut, n_levels, min_area, rec):  # pragma: no cover - compiled by numba
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
        amin = min_area[b]
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
                        if start[rb] >= 0 and (box[rb, 2] - box[rb, 0] + 4) * (box[rb, 3] - box[rb, 1] + 4) >= amin:
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
                            start_r = start[r]
                            start[r] = -1
                            if (box[r, 2] - box[r, 0] + 4) * (box[r, 3] - box[r, 1] + 4) < amin:
                                continue
                            if n_rec == rec.shape[0]:
                                return -1
                            rec[n_rec, 0] = b
                            rec[n_rec, 1] = box[r, 0] - 1
                            rec[n_rec, 2] = box[r, 1] - 1
                            rec[n_rec, 3] = box[r, 2] + 1
                            rec[n_rec, 4] = box[r, 3] + 1
                            rec[n_rec, 5] = start_r
                            rec[n_rec, 6] = j - 1
                            n_rec += 1
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
            if parent[r] == r and start[r] >= 0 and (box[r, 2] - box[r, 0] + 4) * (box[r, 3] - box[r, 1] + 4) >= amin:
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
