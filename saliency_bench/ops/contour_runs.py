"""Contour boxes of smooth maps at every threshold at once from unimodal runs and their basins
(the path of :func:`~saliency_bench.ops.contours.contour_records` for smooth maps).

One module on purpose, over the usual length: the kernel :func:`_run_records` and every helper it
calls must live in one file, since numba's on-disk cache of a kernel is invalidated by changes to
its own file only (:mod:`saliency_bench.ops.jit`). Every array index is cast to unsigned (``U``),
as in :mod:`.contour_pixels`: numba wraps a negative signed index around, at the cost of a compare
and a select per access, and these indices are never negative (14-16% of the kernel's time)."""
from __future__ import annotations

import numpy as np

from .jit import Kernels

jit = Kernels(__name__)
U = np.uintp  # an index cast: no negative-index wraparound in the compiled code (contour_pixels)

# A smooth map has few local extrema per row, so a row splits into few unimodal runs (levels
# non-decreasing, then non-increasing): at every threshold j the pixels of a run above j form one
# interval, so a run is a single node of the component graph at every j, however many pixels it
# has. Runs hang from a neighbour run that is connected to them as soon as they exist (basins),
# and the basins merge, by union-find, at the level of their best adjacent pixel pair. Rows give
# each component's y-range, columns (the same runs on the transposed map) its x-range; a component
# is named in both by its raster-first pixel of highest level. Holes are the same on the mirrored
# levels with 4-connectivity. Work is per run, not per pixel per threshold, apart from two
# vectorised passes that find the runs.
@jit.helper
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
        last[U(x)] = zero
        top[U(x)] = zero
        bottom[U(x)] = zero
    n_p = 0
    n_v = 0
    for y in range(1, nr):
        cur = X[U(y)]
        prev = X[U(y - 1)]
        yy = np.int16(y)
        turned = False
        for x in range(nc):
            up = cur[U(x)] > prev[U(x)]
            dn = cur[U(x)] < prev[U(x)]
            s = last[U(x)]
            e = (up & (s < zero)) | (dn & (s > zero))
            evt[U(x)] = e
            turned |= e
            t = top[U(x)]
            u = bottom[U(x)]
            ended[U(x)] = t if up else u
            top[U(x)] = yy if up else t
            bottom[U(x)] = yy if dn else u
            last[U(x)] = one if up else (mone if dn else s)
        if turned:  # few columns turn on a row: skip 8 at a time
            for k in range(ev64.shape[0]):
                if ev64[U(k)] == 0:
                    continue
                for x in range(8 * k, min(8 * k + 8, nc)):
                    if evt[U(x)]:
                        evt[U(x)] = False
                        if last[U(x)] > 0:  # up after down: a peak run ended at y - 1
                            if n_p >= limit:
                                return -1, -1
                            peaks[U(n_p), 0] = x
                            peaks[U(n_p), 1] = y - 1
                            peaks[U(n_p), 2] = ended[U(x)]
                            n_p += 1
                        else:
                            if n_v >= limit:
                                return -1, -1
                            valleys[U(n_v), 0] = x
                            valleys[U(n_v), 1] = y - 1
                            valleys[U(n_v), 2] = ended[U(x)]
                            n_v += 1
            pace = 2 * limit * (y + 1) // nr + limit // 8  # a noisy map gives up early
            if n_p > pace or n_v > pace:
                return -1, -1
    if n_p + nc > limit or n_v + nc > limit:
        return -1, -1
    for x in range(nc):
        peaks[U(n_p), 0] = x
        peaks[U(n_p), 1] = nr - 1
        peaks[U(n_p), 2] = top[U(x)]
        n_p += 1
        valleys[U(n_v), 0] = x
        valleys[U(n_v), 1] = nr - 1
        valleys[U(n_v), 2] = bottom[U(x)]
        n_v += 1
    return n_p, n_v


@jit.helper
def _rows_look_noisy(values, lut, limit):  # pragma: no cover - compiled by numba
    """Whether 8 rows spread over the level map ``lut[values]`` have so many turns (a non-zero
    step against the last one) that the map's peak runs along its rows would be estimated at over
    1.5 times ``limit``: a noisy map, given up at once, before its levels are tabled (only speed
    depends on it: the pixel sweeps are exact too). Real gradient maps come out at 1.7-2.5 times
    ``limit`` by this estimate, smooth and Grad-CAM maps at 0.03-0.14 times."""
    nr, nc = values.shape
    turns = 0
    rows = 0
    for y in range(nr // 16, nr, max(nr // 8, 1)):
        row = values[U(y)]
        last = 0
        for x in range(1, nc):
            d = np.int64(lut[U(row[U(x)])]) - np.int64(lut[U(row[U(x - 1)])])
            if d != 0:
                sg = 1 if d > 0 else -1
                turns += 1 if sg * last < 0 else 0
                last = sg
        rows += 1
    return turns * nr > 3 * limit * rows  # peaks are about half of the turns


@jit.helper
def _group_runs(raw, n, X, mirror, n_levels, first, run):  # pragma: no cover - compiled by numba
    """The runs of the lines of ``X [L,P]`` (``raw`` from :func:`_line_runs` on ``X`` transposed)
    sorted by line (counting sort), in order along each: ``run[i] = (line, first, last, peak,
    level)``, the level that of ``X`` at the peak (``n_levels - X`` when ``mirror``), and the runs
    of line ``l`` are ``first[l]:first[l + 1]``."""
    nl = X.shape[0]
    for c in range(nl + 1):
        first[U(c)] = 0
    for k in range(n):
        first[U(raw[U(k), 0] + 1)] += 1
    for c in range(nl):
        first[U(c + 1)] += first[U(c)]
    for k in range(n):
        c = raw[U(k), 0]
        i = first[U(c)]
        first[U(c)] = i + 1
        run[U(i), 0] = c
        run[U(i), 2] = raw[U(k), 1]
        run[U(i), 3] = raw[U(k), 2]
    for c in range(nl, 0, -1):
        first[U(c)] = first[U(c - 1)]
    first[0] = 0
    for c in range(nl):
        a = 0
        for i in range(first[U(c)], first[U(c + 1)]):
            run[U(i), 1] = a
            v = X[U(c), U(run[U(i), 3])]
            run[U(i), 4] = n_levels - v if mirror else v
            a = run[U(i), 2] + 1


@jit.helper
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
        lab[U(s)] = s
        ln = run[U(s), 0]
        lev = run[U(s), 4]
        p = run[U(s), 3]
        key = ln * npos + p
        if ln != cur:  # runs of a line come in order: the lookups in its neighbours move forward
            cur = ln
            ptr[0] = first[U(ln - 1)] if ln > 0 else 0
            ptr[1] = first[U(ln + 1)] if ln + 1 < nl else 0
        for o in range(2):  # the pixels straight across the peak first: most runs hang from them
            l2 = ln - 1 if o == 0 else ln + 1
            if l2 < 0 or l2 >= nl:
                continue
            t = ptr[U(o)]
            while run[U(t), 2] < p:
                t += 1
            ptr[U(o)] = t
            v = n_levels - X[U(l2), U(p)] if mirror else X[U(l2), U(p)]
            if v < lev:
                continue
            if run[U(t), 4] > lev or l2 * npos + run[U(t), 3] < key:
                lab[U(s)] = t
                break
        if lab[U(s)] != s:
            continue
        raw = X[U(ln), U(p)]
        q = p
        while q < run[U(s), 2] and X[U(ln), U(q + 1)] == raw:  # the top plateau p..q
            q += 1
        lo = max(p - d, 0)
        hi = min(q + d, npos - 1)
        for o in range(2):
            l2 = ln - 1 if o == 0 else ln + 1
            if l2 < 0 or l2 >= nl:
                continue
            t = first[U(l2)]
            for x in range(lo, hi + 1):
                v = n_levels - X[U(l2), U(x)] if mirror else X[U(l2), U(x)]
                if v < lev:
                    continue
                while run[U(t), 2] < x:
                    t += 1
                if run[U(t), 4] > lev or l2 * npos + run[U(t), 3] < key:
                    lab[U(s)] = t
                    break
            if lab[U(s)] != s:
                break
    nb = 0
    for s in range(n):  # roots, with path compression
        r = s
        while lab[U(r)] != r:
            r = lab[U(r)]
        q = s
        while lab[U(q)] != r:
            nx = lab[U(q)]
            lab[U(q)] = r
            q = nx
        if r == s:
            cid[U(s)] = nb
            nb += 1
            at = False
            if mirror:  # its top plateau on the border: the first or last line, or a line's end
                ln = run[U(s), 0]
                p = run[U(s), 3]
                q = p
                while q < run[U(s), 2] and X[U(ln), U(q + 1)] == X[U(ln), U(p)]:
                    q += 1
                at = ln == 0 or ln == nl - 1 or p == 0 or q == npos - 1
            border[U(s)] = at
    for s in range(n):
        border[U(s)] = border[U(lab[U(s)])]
    return nb


@jit.helper
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
        row = X[U(ln)]
        for s in range(first[U(ln)], first[U(ln + 1)] - 1):
            if lab[U(s)] != lab[U(s + 1)] and not (border[U(s)] and border[U(s + 1)]):
                b = run[U(s), 2]
                eu[U(ne)] = lab[U(s)]
                ev[U(ne)] = lab[U(s + 1)]
                ew[U(ne)] = n_levels - max(row[U(b)], row[U(b + 1)]) if mirror else min(row[U(b)], row[U(b + 1)])
                ne += 1
        if ln + 1 == nl:
            break
        nxt = X[U(ln + 1)]
        i = first[U(ln)]
        k = first[U(ln + 1)]
        x0 = 0
        carry = -1  # the weight of a diagonal pair that belongs to the next interval
        while True:
            x1 = min(run[U(i), 2], run[U(k), 2]) + 1
            need = lab[U(i)] != lab[U(k)] and not (border[U(i)] and border[U(k)])
            acc = carry
            if need:
                if mirror:  # 4-connectivity: the min over pairs of the max, mirrored
                    ra = row[x0:x1]  # slices: indices from 0 let LLVM vectorise these loops
                    rb = nxt[x0:x1]
                    m = max(ra[0], rb[0])
                    for x in range(1, x1 - x0):
                        m = min(m, max(ra[U(x)], rb[U(x)]))
                    acc = max(acc, n_levels - m)
                elif not diag:
                    ra = row[x0:x1]
                    rb = nxt[x0:x1]
                    m = min(ra[0], rb[0])
                    for x in range(1, x1 - x0):
                        m = max(m, min(ra[U(x)], rb[U(x)]))
                    acc = max(acc, m)
                elif x1 - x0 == 1:
                    acc = max(acc, min(row[U(x0)], nxt[U(x0)]))
                else:  # 8-connectivity inside the interval; its two ends see one neighbour less
                    m = max(min(row[U(x0)], max(nxt[U(x0)], nxt[U(x0 + 1)])),
                            min(row[U(x1 - 1)], max(nxt[U(x1 - 2)], nxt[U(x1 - 1)])))
                    ra = row[x0 + 1:x1 - 1]
                    bl = nxt[x0:x1 - 2]
                    bc = nxt[x0 + 1:x1 - 1]
                    br = nxt[x0 + 2:x1]
                    for x in range(x1 - x0 - 2):
                        m = max(m, min(ra[U(x)], max(max(bl[U(x)], bc[U(x)]), br[U(x)])))
                    acc = max(acc, m)
            carry = -1
            if x1 < npos:
                i2 = i + 1 if run[U(i), 2] + 1 == x1 else i
                k2 = k + 1 if run[U(k), 2] + 1 == x1 else k
                if diag:  # the diagonal pairs across the interval's end
                    c1 = min(row[U(x1 - 1)], nxt[U(x1)])  # runs (i, k2)
                    c2 = min(row[U(x1)], nxt[U(x1 - 1)])  # runs (i2, k)
                    if k2 == k:  # only this line's run changes: c1 is this interval's, c2 the next's
                        acc = max(acc, c1)
                        carry = c2
                    elif i2 == i:
                        acc = max(acc, c2)
                        carry = c1
                    else:
                        if lab[U(i)] != lab[U(k2)] and not (border[U(i)] and border[U(k2)]):
                            eu[U(ne)] = lab[U(i)]
                            ev[U(ne)] = lab[U(k2)]
                            ew[U(ne)] = c1
                            ne += 1
                        if lab[U(i2)] != lab[U(k)] and not (border[U(i2)] and border[U(k)]):
                            eu[U(ne)] = lab[U(i2)]
                            ev[U(ne)] = lab[U(k)]
                            ew[U(ne)] = c2
                            ne += 1
            if need:
                eu[U(ne)] = lab[U(i)]
                ev[U(ne)] = lab[U(k)]
                ew[U(ne)] = acc
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
        cu = cid[U(eu[U(e)])]
        cv = cid[U(ev[U(e)])]
        idx = cu * nb + cv if cu < cv else cv * nb + cu
        f = pair[U(idx)] - 1
        if f >= 0:
            ew[U(f)] = max(ew[U(f)], ew[U(e)])
        else:
            pair[U(idx)] = m + 1
            eu[U(m)] = eu[U(e)]
            ev[U(m)] = ev[U(e)]
            ew[U(m)] = ew[U(e)]
            m += 1
    for e in range(m):
        cu = cid[U(eu[U(e)])]
        cv = cid[U(ev[U(e)])]
        pair[U(cu * nb + cv if cu < cv else cv * nb + cu)] = 0
    return m


@jit.helper
def _sort_desc(keys, n, n_buckets, order, cnt):  # pragma: no cover - compiled by numba
    """Counting sort of ``0..n-1`` by ``keys`` (``0..n_buckets-1``), highest first."""
    for k in range(n_buckets):
        cnt[U(k)] = 0
    for e in range(n):
        cnt[U(keys[U(e)])] += 1
    pos = 0
    for k in range(n_buckets - 1, -1, -1):
        c = cnt[U(k)]
        cnt[U(k)] = pos
        pos += c
    for e in range(n):
        k = keys[U(e)]
        order[U(cnt[U(k)])] = e
        cnt[U(k)] += 1


@jit.helper
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
        keys[U(s)] = 2 * run[U(s), 4] + (1 if lab[U(s)] == s else 0)
    _sort_desc(keys, n, 2 * n_levels + 2, o_r, cnt)
    _sort_desc(ew, ne, n_levels + 1, o_e, cnt)
    for s in range(nc):
        v = X[U(cols[U(s), 2]), U(cols[U(s), 0])]
        keys[U(s)] = n_levels - v if hole else v
    _sort_desc(keys, nc, n_levels + 1, o_c, cnt)
    for s in range(nc):  # column runs keep their level (keys is reused below) and the basin of the
        cols[U(s), 1] = keys[U(s)]  # row run through their peak (-1: a hole basin on the border)
        x = cols[U(s), 0]
        y = cols[U(s), 2]
        r = first[U(y)]
        while run[U(r), 2] < x:
            r += 1
        cols[U(s), 2] = -1 if border[U(r)] else lab[U(r)]
    n_t = 0
    for s in range(n):
        mark[U(s)] = -1
        rtouch[U(s)] = -1
    if hole:  # when each row run reaches the border: rows 0 and H-1 at once, else at its ends
        for s in range(n):
            ln = run[U(s), 0]
            t = -1
            if ln == 0 or ln == h - 1:
                t = run[U(s), 4] - 1
            else:
                if run[U(s), 1] == 0:
                    t = n_levels - X[U(ln), 0] - 1
                if run[U(s), 2] == w - 1:
                    t = max(t, n_levels - X[U(ln), U(w - 1)] - 1)
            if t >= 0 and not border[U(s)]:
                keys[U(s)] = t + 1
                n_t += 1
            else:
                keys[U(s)] = 0
        _sort_desc(keys, n, n_levels + 1, o_t, cnt)
    i_r = 0
    i_e = 0
    i_c = 0
    i_t = 0
    for j in range(n_levels - 1, -1, -1):
        lev = j + 1
        nm = 0
        while i_r < n and run[U(o_r[U(i_r)]), 4] == lev:
            s = o_r[U(i_r)]
            i_r += 1
            ln = run[U(s), 0]
            r = lab[U(s)]
            if r == s:  # a basin appears: a new component
                rpar[U(s)] = s
                rsize[U(s)] = 1
                rx1[U(s)] = w
                rx2[U(s)] = -1
                ry1[U(s)] = ln
                ry2[U(s)] = ln
                if border[U(s)]:
                    rtouch[U(s)] = n_levels
                rname[U(s)] = s
                rstart[U(s)] = -1
                rlive[U(s)] = 1
                rroot[U(s)] = s
                mark[U(s)] = j
                marks[U(nm)] = s
                nm += 1
                continue
            if border[U(s)]:
                continue
            # (The finds and range updates here and below stay inline: as helpers, LLVM does not
            # inline them into this kernel, and the run path took 9-30% longer.)
            while rpar[U(r)] != r:  # a run joins its basin's component
                rpar[U(r)] = rpar[U(rpar[U(r)])]
                r = rpar[U(r)]
            if ln < ry1[U(r)] or ln > ry2[U(r)]:
                ry1[U(r)] = min(ry1[U(r)], ln)
                ry2[U(r)] = max(ry2[U(r)], ln)
                q = rname[U(r)]
                if mark[U(q)] != j:
                    mark[U(q)] = j
                    marks[U(nm)] = q
                    nm += 1
        while i_e < ne and ew[U(o_e[U(i_e)])] == lev:
            e = o_e[U(i_e)]
            i_e += 1
            ra = eu[U(e)]
            while rpar[U(ra)] != ra:
                rpar[U(ra)] = rpar[U(rpar[U(ra)])]
                ra = rpar[U(ra)]
            rb = ev[U(e)]
            while rpar[U(rb)] != rb:
                rpar[U(rb)] = rpar[U(rpar[U(rb)])]
                rb = rpar[U(rb)]
            if ra == rb:
                continue
            if rsize[U(ra)] < rsize[U(rb)]:  # union by size
                ra, rb = rb, ra
            rpar[U(rb)] = ra
            rsize[U(ra)] += rsize[U(rb)]
            rx1[U(ra)] = min(rx1[U(ra)], rx1[U(rb)])
            ry1[U(ra)] = min(ry1[U(ra)], ry1[U(rb)])
            rx2[U(ra)] = max(rx2[U(ra)], rx2[U(rb)])
            ry2[U(ra)] = max(ry2[U(ra)], ry2[U(rb)])
            rtouch[U(ra)] = max(rtouch[U(ra)], rtouch[U(rb)])
            qa = rname[U(ra)]
            qb = rname[U(rb)]
            la = run[U(qa), 4]
            lb = run[U(qb), 4]
            if lb > la or (lb == la and (run[U(qb), 0] < run[U(qa), 0] or (run[U(qb), 0] == run[U(qa), 0]
                                                                     and run[U(qb), 3] < run[U(qa), 3]))):
                qa, qb = qb, qa
            rname[U(ra)] = qa
            rroot[U(qa)] = ra
            rlive[U(qb)] = 0
            if mark[U(qa)] != j:
                mark[U(qa)] = j
                marks[U(nm)] = qa
                nm += 1
            if mark[U(qb)] != j:
                mark[U(qb)] = j
                marks[U(nm)] = qb
                nm += 1
        while i_c < nc and cols[U(o_c[U(i_c)]), 1] == lev:  # column runs: their column joins a component
            s = o_c[U(i_c)]
            i_c += 1
            r = cols[U(s), 2]
            if r < 0:
                continue
            x = cols[U(s), 0]
            while rpar[U(r)] != r:
                rpar[U(r)] = rpar[U(rpar[U(r)])]
                r = rpar[U(r)]
            if x < rx1[U(r)] or x > rx2[U(r)]:
                rx1[U(r)] = min(rx1[U(r)], x)
                rx2[U(r)] = max(rx2[U(r)], x)
                q = rname[U(r)]
                if mark[U(q)] != j:
                    mark[U(q)] = j
                    marks[U(nm)] = q
                    nm += 1
        while i_t < n_t and keys[U(o_t[U(i_t)])] == lev:  # runs reaching the border (keys: level + 1)
            s = o_t[U(i_t)]
            i_t += 1
            r = lab[U(s)]
            while rpar[U(r)] != r:
                r = rpar[U(r)]
            rtouch[U(r)] = max(rtouch[U(r)], j)
            q = rname[U(r)]
            if mark[U(q)] != j:
                mark[U(q)] = j
                marks[U(nm)] = q
                nm += 1
        # Every component that changed at this level had its final name queued by its last event.
        for m in range(nm):
            q = marks[U(m)]
            if rlive[U(q)]:
                rr = rroot[U(q)]
                if rtouch[U(rr)] < j:
                    st = rstart[U(q)]
                    if (st >= 0 and rx1[U(rr)] == rbox[U(q), 0] and ry1[U(rr)] == rbox[U(q), 1]
                            and rx2[U(rr)] == rbox[U(q), 2] and ry2[U(rr)] == rbox[U(q), 3]):
                        continue
                    if st >= 0:
                        if n_rec == rec.shape[0]:
                            return -1
                        rec[U(n_rec), 0] = b
                        rec[U(n_rec), 1] = rbox[U(q), 0]
                        rec[U(n_rec), 2] = rbox[U(q), 1]
                        rec[U(n_rec), 3] = rbox[U(q), 2]
                        rec[U(n_rec), 4] = rbox[U(q), 3]
                        rec[U(n_rec), 5] = j + 1
                        rec[U(n_rec), 6] = st
                        n_rec += 1
                    rbox[U(q), 0] = rx1[U(rr)]
                    rbox[U(q), 1] = ry1[U(rr)]
                    rbox[U(q), 2] = rx2[U(rr)]
                    rbox[U(q), 3] = ry2[U(rr)]
                    rstart[U(q)] = j
                    continue
            if rstart[U(q)] >= 0:
                if n_rec == rec.shape[0]:
                    return -1
                rec[U(n_rec), 0] = b
                rec[U(n_rec), 1] = rbox[U(q), 0]
                rec[U(n_rec), 2] = rbox[U(q), 1]
                rec[U(n_rec), 3] = rbox[U(q), 2]
                rec[U(n_rec), 4] = rbox[U(q), 3]
                rec[U(n_rec), 5] = j + 1
                rec[U(n_rec), 6] = rstart[U(q)]
                n_rec += 1
                rstart[U(q)] = -1
    for k in range(i_r):  # records still open at threshold 0
        q = o_r[U(k)]
        if lab[U(q)] == q and rlive[U(q)] and rstart[U(q)] >= 0:
            if n_rec == rec.shape[0]:
                return -1
            rec[U(n_rec), 0] = b
            rec[U(n_rec), 1] = rbox[U(q), 0]
            rec[U(n_rec), 2] = rbox[U(q), 1]
            rec[U(n_rec), 3] = rbox[U(q), 2]
            rec[U(n_rec), 4] = rbox[U(q), 3]
            rec[U(n_rec), 5] = 0
            rec[U(n_rec), 6] = rstart[U(q)]
            n_rec += 1
    return n_rec


@jit.kernel
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
        lv = values[U(b)]
        lb = lut[U(b)]
        skipped[U(b)] = True
        if _rows_look_noisy(lv, lb, limit):
            continue
        for y in range(h):
            src = lv[U(y)]
            dst = F[U(y)]
            for x in range(w):
                dst[U(x)] = lb[U(src[U(x)])]
        n_p, n_v = _line_runs(F, limit, st, evt, ev64, cols[0], cols[1])  # along the columns (a noisy
        if n_p < 0:  # map gives up here, before the transpose)
            continue
        n_cols[0] = n_p
        n_cols[1] = n_v
        for x in range(w):
            dst = FT[U(x)]
            for y in range(h):
                dst[U(y)] = F[U(y), U(x)]
        n_p, n_v = _line_runs(FT, limit, st, evt, ev64, raw_p, raw_v)  # runs along the rows
        if n_p < 0:
            continue
        _group_runs(raw_p, n_p, F, False, n_levels, firsts[0], runs[0])
        _group_runs(raw_v, n_v, F, True, n_levels, firsts[1], runs[1])
        n_runs[0] = n_p
        n_runs[1] = n_v
        skipped[U(b)] = False
        for hole in range(2):  # regions: peaks, 8-connected; holes: valleys (mirrored), 4-connected
            mirror = hole == 1
            diag = not mirror
            run = runs[U(hole)]
            nb = _run_basins(F, firsts[U(hole)], run, n_runs[U(hole)], mirror, n_levels, diag, labs[U(hole)], cids,
                             border)
            ne = _basin_edges(F, firsts[U(hole)], run, labs[U(hole)], border, mirror, n_levels, diag, eu, ev, ew,
                              cids, nb, pair)
            n0 = n_rec
            n_rec = _basin_sweep(mirror, n_levels, b, F, run, n_runs[U(hole)], labs[U(hole)], border, firsts[U(hole)],
                                 eu, ev, ew, ne, cols[U(hole)], n_cols[U(hole)], orders[0], orders[1], orders[2],
                                 orders[3], cnt, keys, rs, marks, rbox, rec, n_rec)
            if n_rec < 0:
                return -1
            if mirror:  # back to thresholds of the levels; a hole's contour is its box grown by 1
                for k in range(n0, n_rec):
                    lo = n_levels - 1 - rec[U(k), 6]
                    rec[U(k), 6] = n_levels - 1 - rec[U(k), 5]
                    rec[U(k), 5] = lo
                    rec[U(k), 1] -= 1
                    rec[U(k), 2] -= 1
                    rec[U(k), 3] += 1
                    rec[U(k), 4] += 1
    return n_rec
