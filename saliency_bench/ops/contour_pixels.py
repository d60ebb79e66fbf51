"""Contour boxes at every threshold at once by union-find sweeps over the pixels (the path of
:func:`~saliency_bench.ops.contours.contour_records` for noisy maps): one sweep in decreasing
level order for the 8-connected regions, one in increasing order for the 4-connected holes.

Both sweeps take the pixels from one counting sort by level (:func:`_pixel_records`). What keeps
their work per pixel small:

* Indices are cast to unsigned (``U``) where an array is read or written: numba wraps a negative
  signed index around (``a[-1]`` is the last item), which costs a compare and a select on every
  access; node ids and positions are never negative, so the cast changes nothing else.
* A record is kept only for a component whose box is large enough to be reported (``min_area``):
  boxes only grow, so a component under that area has nothing to report while its box stays as it
  is, and it needs no open record, no record closing when its box grows, and no entry in the list
  of records that open at the end of the level. Only a component whose box reaches the area opens
  one, at the end of the level at which it does.
* The hole sweep keeps no component for the background that touches the image border, only a
  mark per pixel (:func:`_hole_sweep`): most pixels of a noisy map join it, and then need no root.

docs/PERFORMANCE.md §3 ("The pixel sweeps, for gradient maps") has what each of these saves."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .jit import Kernels

jit = Kernels(__name__)
U = np.uintp  # an index cast: no negative-index wraparound in the compiled code (module docstring)

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


@jit.helper
def _find(parent, r):  # pragma: no cover - compiled by numba
    """The root of node ``r``, halving the path on the way."""
    while parent[U(r)] != r:
        parent[U(r)] = parent[U(parent[U(r)])]
        r = parent[U(r)]
    return r


@jit.helper
def _box(box, r):  # pragma: no cover - compiled by numba
    """Root ``r``'s box ``(x1, y1, x2, y2)``."""
    return box[U(r), 0], box[U(r), 1], box[U(r), 2], box[U(r), 3]


@jit.helper
def _union(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1):  # pragma: no cover - compiled by numba
    """The box of two boxes together."""
    return min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1)


@jit.helper
def _emit(rec, n_rec, b, x1, y1, x2, y2, lo, hi):  # pragma: no cover - compiled by numba
    """Row ``n_rec`` of ``rec``: ``(b, x1, y1, x2, y2, lo, hi)``; the new row count, or -1 when
    ``rec`` is full."""
    if n_rec == rec.shape[0]:
        return -1
    rec[n_rec, 0] = b
    rec[n_rec, 1] = x1
    rec[n_rec, 2] = y1
    rec[n_rec, 3] = x2
    rec[n_rec, 4] = y2
    rec[n_rec, 5] = lo
    rec[n_rec, 6] = hi
    return n_rec + 1


@jit.helper
def _set_box(box, r, x0, y0, x1, y1):  # pragma: no cover - compiled by numba
    """Store root ``r``'s box."""
    box[U(r), 0] = x0
    box[U(r), 1] = y0
    box[U(r), 2] = x1
    box[U(r), 3] = y1


@jit.helper
def _box_grew(start, pending, n_pend, r, old_area, new_area, min_area):  # pragma: no cover - compiled by numba
    """Root ``r``'s box has grown from an area ``old_area`` to ``new_area``: an open record ends,
    and a box large enough to report (``>= min_area``) goes on the list of records that open at
    the end of the level, unless it is on it already (large before, and no record open). Returns
    the list's new length and the top (regions) or first (holes) threshold index of the record
    that ended, -1 if none did."""
    if new_area < min_area:
        return n_pend, -1
    s = start[U(r)]
    if s >= 0:
        start[U(r)] = -1
    elif old_area >= min_area:
        return n_pend, -1
    pending[U(n_pend)] = r
    return n_pend + 1, s


@jit.helper
def _grow(box, r, x0, y0, x1, y1, px, py):  # pragma: no cover - compiled by numba
    """Root ``r``'s box ``(x0, y0, x1, y1)`` grown to take pixel ``(px, py)``: stored, and returned."""
    x0 = min(x0, px)
    y0 = min(y0, py)
    x1 = max(x1, px)
    y1 = max(y1, py)
    _set_box(box, r, x0, y0, x1, y1)
    return x0, y0, x1, y1


@jit.helper
def _region_sweep(b, n_levels, h, w, amin, order, order_x, order_y, first, fill, heads, n_reps, parent, size, box,
                  start, active, pending, rec, n_rec):  # pragma: no cover - compiled by numba
    """Union-find sweep of the 8-connected regions ``{level > j}`` of image ``b``, for every ``j``
    at once: the pixels are added in decreasing level order (``order``, :func:`_pixel_records`) and
    merged with their 8-neighbours already added. Appends ``(image, x1, y1, x2, y2, lo, hi)`` rows to
    ``rec`` from row ``n_rec``: a region's box, valid over the thresholds ``lo..hi``; returns the
    new row count, or -1 when ``rec`` is full.

    Pixels live on a grid padded by one inactive pixel on each side, so that the 8 neighbours of
    a pixel are 8 fixed offsets with no bounds test; per-node arrays are int32 (the boxes int16 where
    they fit, :func:`_pixel_records`) to stay in cache.
    A root whose box reaches ``min_area[b]`` (area of the box grown by one pixel to the right and
    below) has an open record (``start >= 0``) or is in this level's ``pending`` list; a smaller
    one has neither (module docstring).
    """
    wp = w + 2
    active[:] = False
    prev_p = -1  # the pixel processed last and its root (still a root: nothing merged since)
    prev_root = -1
    for lev in range(n_levels, 0, -1):
        j = lev - 1  # the threshold index at which these pixels become foreground
        n_pend = 0
        for k in range(first[U(lev)], fill[U(lev)]):
            p = order[U(k)]
            px = order_x[U(k)]
            py = order_y[U(k)]
            active[U(p)] = True
            q = p - wp
            r_ = p + wp
            mask = (np.int64(active[U(q - 1)]) | (np.int64(active[U(q)]) << 1) | (np.int64(active[U(q + 1)]) << 2)
                    | (np.int64(active[U(p + 1)]) << 3) | (np.int64(active[U(r_ + 1)]) << 4)
                    | (np.int64(active[U(r_)]) << 5) | (np.int64(active[U(r_ - 1)]) << 6)
                    | (np.int64(active[U(p - 1)]) << 7))
            n_groups = n_reps[U(mask)]
            one = n_groups > 0  # the common case: every neighbour is in one component, p joins it
            if one:
                rb = p + heads[U(mask), 0]
                if rb == prev_p:
                    rb = prev_root
                else:
                    rb = _find(parent, rb)
                for g in range(1, n_groups):  # groups apart on the ring, often one component
                    if _find(parent, p + heads[U(mask), g]) != rb:
                        one = False
                        break
            if one:
                # p joins rb's component, and rb stays its root. Only a box that grows matters:
                # a large box's open record ends, and a box that has just become large enough
                # opens its first record at this level's end. (size only steers union by size: a
                # lower bound is enough.)
                parent[U(p)] = rb
                prev_p = p
                prev_root = rb
                bx0, by0, bx1, by1 = _box(box, rb)
                if bx0 <= px <= bx1 and by0 <= py <= by1:
                    continue
                size[U(rb)] += 1
                x0, y0, x1, y1 = _grow(box, rb, bx0, by0, bx1, by1, px, py)
                n_pend, s_rb = _box_grew(start, pending, n_pend, rb, (bx1 - bx0 + 2) * (by1 - by0 + 2),
                                         (x1 - x0 + 2) * (y1 - y0 + 2), amin)
                if s_rb >= 0:  # rb's record ends: its box grows
                    n_rec = _emit(rec, n_rec, b, bx0, by0, bx1, by1, j + 1, s_rb)
                    if n_rec < 0:
                        return -1
                continue
            parent[U(p)] = p
            size[U(p)] = 1
            _set_box(box, p, px, py, px, py)
            start[U(p)] = -1
            if 4 >= amin:  # a one-pixel box is already large enough
                pending[U(n_pend)] = p
                n_pend += 1
            ra = p  # p's root, kept up to date across its merges
            for g in range(n_groups):
                rb = _find(parent, p + heads[U(mask), g])
                if ra == rb:
                    continue
                if size[U(ra)] < size[U(rb)]:  # union by size; ra survives
                    ra, rb = rb, ra
                ax0, ay0, ax1, ay1 = _box(box, ra)
                bx0, by0, bx1, by1 = _box(box, rb)
                x0, y0, x1, y1 = _union(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1)
                s_rb = start[U(rb)]
                if s_rb >= 0:  # rb's component ends here
                    n_rec = _emit(rec, n_rec, b, bx0, by0, bx1, by1, j + 1, s_rb)
                    if n_rec < 0:
                        return -1
                parent[U(rb)] = ra
                size[U(ra)] += size[U(rb)]
                if x0 != ax0 or y0 != ay0 or x1 != ax1 or y1 != ay1:
                    _set_box(box, ra, x0, y0, x1, y1)
                    n_pend, s_ra = _box_grew(start, pending, n_pend, ra, (ax1 - ax0 + 2) * (ay1 - ay0 + 2),
                                             (x1 - x0 + 2) * (y1 - y0 + 2), amin)
                    if s_ra >= 0:  # ra's box grows: its record ends, a new one opens
                        n_rec = _emit(rec, n_rec, b, ax0, ay0, ax1, ay1, j + 1, s_ra)
                        if n_rec < 0:
                            return -1
            prev_p = p
            prev_root = ra
        for k in range(n_pend):
            r = pending[U(k)]
            if parent[U(r)] == r and start[U(r)] < 0:
                start[U(r)] = j
    # Components still alive at threshold index 0: the pixels of levels >= 1.
    top_lo = first[U(1)] if n_levels > 0 else 0
    top_hi = fill[U(n_levels)] if n_levels > 0 else 0
    for k in range(top_lo, top_hi):
        r = order[U(k)]
        if parent[U(r)] != r:
            continue
        ex0, ey0, ex1, ey1 = _box(box, r)
        if (ex1 - ex0 + 2) * (ey1 - ey0 + 2) >= amin:
            n_rec = _emit(rec, n_rec, b, ex0, ey0, ex1, ey1, 0, start[U(r)])
            if n_rec < 0:
                return -1
    return n_rec


@jit.helper
def _hole_sweep(b, n_levels, h, w, amin, order, order_x, order_y, first, fill, on, n_on, parent, size, box, nxt,
                start, state, pending, rec, n_rec):  # pragma: no cover - compiled by numba
    """Union-find sweep of the holes: the 4-connected components of the background
    ``{level <= j}`` that do not touch the image border, for every ``j`` in ``0..n_levels-1`` at
    once. The background grows with ``j``, so the pixels are added in increasing level order
    (``order``; raster order inside a level) and merged with their 4-neighbours already
    added. A hole's box is reported as a record valid over the thresholds during which it is a
    hole with that box: rows ``(image, x1, y1, x2, y2, lo, hi)`` appended as :func:`_region_sweep`
    does, whose box is the hole's box grown by one pixel on each side (the box of the region
    pixels around it, the hole's contour).

    Only holes are union-find components. The background that touches the image border is never
    a hole again, and most pixels of a noisy map join it at their own level, so it is a mark per
    pixel (``state`` 2) rather than a component: a pixel whose background neighbours all carry
    the mark (or that lies on the border) just takes it, with no root to find. A hole that reaches
    the border ends its record and passes the mark to its pixels, which each component keeps in a
    circular list (``nxt``; two lists join by swapping two links): a pixel is marked once, so the
    marking costs one step per pixel over the whole sweep.

    Pixels live on a grid padded by one pixel on each side, marked from the start, so that the 4
    neighbours of a pixel are 4 fixed offsets with no bounds test and a pixel on the image border
    touches the mark. A hole root whose
    contour's box reaches ``min_area[b]`` (the hole's box grown by one pixel on each side, and by
    one more to the right and below) has an open record or is in this level's ``pending`` list;
    any other root has neither (module docstring).
    """
    wp = w + 2
    state[:] = 0
    state[:wp] = 2  # the padding: background that touches the border, so that a pixel on the border
    state[(h + 1) * wp:] = 2  # has a marked neighbour
    state[wp::wp] = 2
    state[2 * wp - 1::wp] = 2
    prev_p = -1  # the pixel processed last, when in a hole, and its root (still a root: nothing merged since)
    prev_root = -1
    for j in range(n_levels):
        n_pend = 0
        for k in range(first[U(j)], fill[U(j)]):
            p = order[U(k)]
            px = order_x[U(k)]
            py = order_y[U(k)]
            s_w = state[U(p - 1)]
            s_n = state[U(p - wp)]
            s_e = state[U(p + 1)]
            s_s = state[U(p + wp)]
            in_hole = (np.int64(s_w == 1) | (np.int64(s_n == 1) << 1) | (np.int64(s_e == 1) << 2)
                       | (np.int64(s_s == 1) << 3))
            touching = (s_w == 2) | (s_n == 2) | (s_e == 2) | (s_s == 2)
            if touching:
                # p joins the border's background, and so do the holes around it: their records
                # end, and their pixels take the mark.
                state[U(p)] = 2
                for i in range(n_on[U(in_hole)]):
                    q = p + on[U(in_hole), i]
                    if state[U(q)] != 1:  # marked with a hole met before
                        continue
                    if q == prev_p:
                        r = prev_root
                    else:
                        r = q
                        r = _find(parent, r)
                    s_r = start[U(r)]
                    if s_r >= 0:
                        ex0, ey0, ex1, ey1 = _box(box, r)
                        n_rec = _emit(rec, n_rec, b, ex0 - 1, ey0 - 1, ex1 + 1, ey1 + 1, s_r, j - 1)
                        if n_rec < 0:
                            return -1
                        start[U(r)] = -1
                    t = r
                    while True:
                        state[U(t)] = 2
                        t = nxt[U(t)]
                        if t == r:
                            break
                prev_p = -1
                continue
            state[U(p)] = 1
            rp = -1  # p's root once it has one
            for i in range(n_on[U(in_hole)]):
                q = p + on[U(in_hole), i]
                if q == prev_p:  # often the left neighbour, whose root is known
                    rb = prev_root
                elif parent[U(q)] == rp:  # already p's component, one step away
                    continue
                else:
                    rb = q
                    rb = _find(parent, rb)
                if rb == rp:
                    continue
                if rp < 0:
                    # p joins rb's hole. Its record ends only if the box grows.
                    parent[U(p)] = rb
                    size[U(rb)] += 1
                    nxt[U(p)] = nxt[U(rb)]
                    nxt[U(rb)] = p
                    rp = rb
                    bx0, by0, bx1, by1 = _box(box, rb)
                    if bx0 <= px <= bx1 and by0 <= py <= by1:
                        continue
                    x0, y0, x1, y1 = _grow(box, rb, bx0, by0, bx1, by1, px, py)
                    n_pend, s_rb = _box_grew(start, pending, n_pend, rb, (bx1 - bx0 + 4) * (by1 - by0 + 4),
                                             (x1 - x0 + 4) * (y1 - y0 + 4), amin)
                    if s_rb >= 0:
                        n_rec = _emit(rec, n_rec, b, bx0 - 1, by0 - 1, bx1 + 1, by1 + 1, s_rb, j - 1)
                        if n_rec < 0:
                            return -1
                    continue
                ra = rp
                if size[U(ra)] < size[U(rb)]:  # union by size; ra survives
                    ra, rb = rb, ra
                parent[U(rb)] = ra
                size[U(ra)] += size[U(rb)]
                t = nxt[U(ra)]  # one list
                nxt[U(ra)] = nxt[U(rb)]
                nxt[U(rb)] = t
                rp = ra
                ax0, ay0, ax1, ay1 = _box(box, ra)
                bx0, by0, bx1, by1 = _box(box, rb)
                x0, y0, x1, y1 = _union(ax0, ay0, ax1, ay1, bx0, by0, bx1, by1)
                s_rb = start[U(rb)]
                if s_rb >= 0:  # rb's hole is absorbed
                    n_rec = _emit(rec, n_rec, b, bx0 - 1, by0 - 1, bx1 + 1, by1 + 1, s_rb, j - 1)
                    if n_rec < 0:
                        return -1
                if x0 != ax0 or y0 != ay0 or x1 != ax1 or y1 != ay1:
                    _set_box(box, ra, x0, y0, x1, y1)
                    n_pend, s_ra = _box_grew(start, pending, n_pend, ra, (ax1 - ax0 + 4) * (ay1 - ay0 + 4),
                                             (x1 - x0 + 4) * (y1 - y0 + 4), amin)
                    if s_ra >= 0:  # ra's box grows: its record ends, a new one opens
                        n_rec = _emit(rec, n_rec, b, ax0 - 1, ay0 - 1, ax1 + 1, ay1 + 1, s_ra, j - 1)
                        if n_rec < 0:
                            return -1
            if rp < 0:  # no neighbour in a hole: a hole of its own
                parent[U(p)] = p
                size[U(p)] = 1
                nxt[U(p)] = p
                _set_box(box, p, px, py, px, py)
                start[U(p)] = -1
                rp = p
                if 16 >= amin:
                    pending[U(n_pend)] = p
                    n_pend += 1
            prev_p = p
            prev_root = rp
        for k in range(n_pend):  # holes new or changed at this level open a record
            r = pending[U(k)]
            if state[U(r)] == 1 and parent[U(r)] == r and start[U(r)] < 0:
                start[U(r)] = j
    for k in range(fill[U(n_levels - 1)] if n_levels > 0 else 0):
        r = order[U(k)]
        if state[U(r)] == 1 and parent[U(r)] == r and start[U(r)] >= 0:
            ex0, ey0, ex1, ey1 = _box(box, r)
            n_rec = _emit(rec, n_rec, b, ex0 - 1, ey0 - 1, ex1 + 1, ey1 + 1, start[U(r)], n_levels - 1)
            if n_rec < 0:
                return -1
    return n_rec


@jit.kernel
def _pixel_records(values, lut, n_levels, reps, n_reps, min_area, box_kind, rec):  # pragma: no cover - compiled by numba
    """Both sweeps for each image: pixel ``(y, x)`` of image ``b`` has the level
    ``lut[b, values[b, y, x]]`` (in ``0..n_levels``; a table, so that quantised maps need no levels
    array). The pixels are counting-sorted by level once (raster order inside a level): the region
    sweep takes the levels from the top down, the hole sweep from the bottom up. The components'
    boxes have ``box_kind``'s dtype: int16 where every coordinate fits (half the memory of int32,
    1% faster on gradient maps), int32 for a map with a side of 2^15 or more. Returns the number
    of ``[R,7]`` rows ``(image, x1, y1, x2, y2, lo, hi)`` written to ``rec`` (regions and holes,
    image by image), or -1 when ``rec`` is too small."""
    n_img, h, w = values.shape
    wp = w + 2
    n = (h + 2) * wp
    parent = np.empty(n, np.int32)
    size = np.empty(n, np.int32)
    box = np.empty((n, 4), box_kind.dtype)  # x1, y1, x2, y2 of the component a root represents
    nxt = np.empty(n, np.int32)  # holes: the next pixel of the pixel's hole, in a circular list
    start = np.empty(n, np.int32)  # open record's threshold index (regions: top, holes: first); -1: none (yet)
    active = np.zeros(n, np.bool_)  # regions: foreground so far
    state = np.zeros(n, np.uint8)  # holes: 0 not background (yet), 1 in a hole, 2 background touching the border
    order = np.empty(h * w, np.int32)  # padded pixel ids sorted by level, and their coordinates
    order_x = np.empty(h * w, np.int32)
    order_y = np.empty(h * w, np.int32)
    pending = np.empty(2 * h * w + 1, np.int32)  # roots whose record opens at the end of the level
    first = np.empty(n_levels + 2, np.int64)  # level l's pixels are order[first[l]:fill[l]]
    fill = np.empty(n_levels + 2, np.int64)
    # Neighbour offsets on the padded grid, as tables by pattern of neighbours: for each of the 256
    # patterns of 8-neighbours, the offsets of its groups' heads (neighbour_groups); for each of the
    # 16 patterns of 4-neighbours (W, N, E, S as bits 0-3), the offsets of the neighbours it has.
    ring = np.array([-wp - 1, -wp, -wp + 1, 1, wp + 1, wp, wp - 1, -1])  # 8-connectivity (cv2), _RING order
    heads = np.zeros((256, 4), np.int64)
    for m in range(256):
        for g in range(n_reps[m]):
            heads[m, g] = ring[reps[m, g]]
    cross = np.array([-1, -wp, 1, wp])
    on = np.zeros((16, 4), np.int64)
    n_on = np.zeros(16, np.int64)
    for m in range(16):
        for o in range(4):
            if m >> o & 1:
                on[m, n_on[m]] = cross[o]
                n_on[m] += 1
    n_rec = 0
    for b in range(n_img):
        lv = values[b]
        lb = lut[b]
        first[:] = 0
        for y in range(h):
            for x in range(w):
                first[lb[lv[y, x]]] += 1
        pos = 0
        for lev in range(n_levels + 1):
            c = first[U(lev)]
            first[U(lev)] = pos
            fill[U(lev)] = pos
            pos += c
        for y in range(h):
            for x in range(w):
                lev = lb[lv[y, x]]
                k = fill[U(lev)]
                order[U(k)] = (y + 1) * wp + x + 1
                order_x[U(k)] = x
                order_y[U(k)] = y
                fill[U(lev)] = k + 1
        n_rec = _region_sweep(b, n_levels, h, w, min_area[b], order, order_x, order_y, first, fill, heads, n_reps,
                              parent, size, box, start, active, pending, rec, n_rec)
        if n_rec < 0:
            return -1
        n_rec = _hole_sweep(b, n_levels, h, w, min_area[b], order, order_x, order_y, first, fill, on, n_on, parent,
                            size, box, nxt, start, state, pending, rec, n_rec)
        if n_rec < 0:
            return -1
    return n_rec
