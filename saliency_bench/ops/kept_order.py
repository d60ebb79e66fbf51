"""The order statistics of a map that the authors' thresholdings need, mostly without sorting it.

The localization benchmark keeps, for each thresholding and alpha, "the first ``c`` pixels in
descending order" (:mod:`saliency_bench.benchmarks.localization`) and boxes each kept set
(:func:`saliency_bench.ops.pil_resize.kept_set_boxes`). What that takes from the map's order is
little: how many pixels each cut keeps (value and mean: the pixels at or above a threshold;
energy: where the cumulative sum in descending order reaches a share of the total) and, for each
count ``c``, the ``c``-th largest value ``v`` and how many pixels lie above it and tie with it.

Sorting the whole map answers all of that, and was the largest single cost of scoring a smooth
map. A histogram answers it, **exactly**, when every value is finite and ``>= 0``: the values' bit
patterns then order like the values, and the cumulative sum is its own running maximum. The values
go into about ``n / 8`` buckets by the high bits of their patterns (:func:`_bucketed`: one pass
for the keys, one to count and sum them), a query places only the buckets it reads
(:func:`_place`: one pass over the keys), and a bucket is sorted only when a query lands in it
(``mode`` 1). Any other map (signed ones: occlusion's, gradient x input's) is sorted whole
(``mode`` 0: one bucket, sorted, NaN last as NumPy sorts; :func:`sorted_values`, a radix sort five
times faster than NumPy's on a 224x224 map), and each query runs the binary search it always ran.

The energy cut needs the sum of the top ``k`` values as the authors' code adds them, one by one
in descending order in float64. The buckets give it exactly wherever no such sum rounds: every
value of the buckets from ``b`` up, and so every partial sum of them in any order, is a multiple
of ``u_b``, the unit in the last place of the least value bucket ``b`` can hold; while their sum
stays below ``2^53 u_b`` no addition rounds, in whatever order it is done. ``exact_from`` is the
lowest bucket for which that holds (below it sums only grow and units shrink). A cut that lands
lower is not answered (``-1``) and :func:`order_and_counts` sorts the map. That takes a cut in a
bucket whose least value is below 2^-29 of the sum from there up: with buckets narrower than a
binade and ``alpha <= 0.95``, about 2^25 pixels (5% of the total then lies at or below the cut's
bucket). A small map with a huge range, whose few buckets span many binades, can meet it. Real
gradient maps, whose small values span dozens of binades, were sorted while the bound was taken
over the whole map; they are bucketed now.

``tests/test_ops.py`` checks the two modes against each other and both against the authors'
procedure done with PIL.
"""
from __future__ import annotations

import threading
from collections import namedtuple

import numpy as np

from .jit import Kernels

jit = Kernels(__name__)

Order = namedtuple("Order", "mode part start done bsum lo hi base shift f1 u1 pos flat keys placed exact_from")
Order.__doc__ = """A map's values in ascending order, sorted only where needed. ``part [n]``: the values
grouped by bucket in ascending bucket order, bucket ``b`` being ``part[start[b]:start[b+1]]`` once
``placed[b]``, sorted once ``done[b]``; ``bsum[b]``: the sum of the values in buckets ``>= b``, exact
for ``b >= exact_from`` (mode 1); ``lo`` / ``hi``: the smallest and largest value. Mode 0: one
bucket, sorted. Mode 1: bucket 0 holds the zeros (never placed: they read 0), bucket
``1 + ((bits - base) >> shift)`` a non-zero value with bit pattern ``bits`` (``base``: the smallest
non-zero value's), ``keys`` each pixel of ``flat`` (the map) its bucket; a query places the buckets
it reads (:func:`_place`). ``f1``/``u1``: one float32 and the same four bytes as uint32 (a bit cast
without allocating). ``pos`` (mode 1): each value's index in the map, so that the values equal to
one another in a sorted bucket are in raster order (its sort is stable, its filling in raster
order); empty in mode 0."""

PER_BUCKET = 8  # values per bucket aimed at (the bucket width is a power of two of bit patterns)


# ------------------------------------------------------------------------------------- helpers
@jit.helper
def _bits(o, a):  # pragma: no cover - numba
    """The bit pattern of a float32 value (as a non-negative integer)."""
    o.f1[0] = a
    return np.int64(o.u1[0])


@jit.helper
def _value(o, b):  # pragma: no cover - numba
    """The float32 value of a bit pattern."""
    o.u1[0] = b
    return o.f1[0]


@jit.helper
def _sorted_bucket(o, b):  # pragma: no cover - numba
    if not o.done[b]:
        s, e = o.start[b], o.start[b + 1]
        if o.pos.shape[0] and e - s <= 64:  # in place, stable: equal values keep raster order
            for i in range(s + 1, e):
                v = o.part[i]
                p = o.pos[i]
                j = i - 1
                while j >= s and o.part[j] > v:
                    o.part[j + 1] = o.part[j]
                    o.pos[j + 1] = o.pos[j]
                    j -= 1
                o.part[j + 1] = v
                o.pos[j + 1] = p
        elif o.pos.shape[0]:  # the positions follow their values; equal values keep raster order
            order = np.argsort(o.part[s:e], kind="mergesort")
            o.part[s:e] = o.part[s:e][order]
            o.pos[s:e] = o.pos[s:e][order]
        else:
            o.part[s:e].sort()
        o.done[b] = True


@jit.helper
def _in_bucket(o, b, y, strict):  # pragma: no cover - numba
    """How many values of bucket ``b`` are ``< y`` (``strict``) or ``<= y``."""
    s, e = o.start[b], o.start[b + 1]
    if o.done[b]:
        i, j = s, e
        while i < j:
            mid = (i + j) // 2
            if o.part[mid] < y or (not strict and o.part[mid] == y):
                i = mid + 1
            else:
                j = mid
        return i - s
    k = 0
    for t in range(s, e):
        if o.part[t] < y or (not strict and o.part[t] == y):
            k += 1
    return k


@jit.helper
def _bucket_of(o, y, strict):  # pragma: no cover - numba
    """Mode 1: the bucket whose values :func:`_below` compares with ``y``, or -1 where it needs none."""
    if y <= 0 or y > o.hi or (not strict and y == o.hi) or _bits(o, y) < o.base:
        return -1
    return 1 + ((_bits(o, y) - o.base) >> o.shift)


@jit.helper
def _below(o, y, strict):  # pragma: no cover - numba
    """Mode 1: how many values are ``< y`` (``strict``) or ``<= y``, for a finite ``y``."""
    b = _bucket_of(o, y, strict)
    if b >= 0:
        return o.start[b] + _in_bucket(o, b, y, strict)
    if y < 0 or (strict and y == 0):
        return 0
    if y > o.hi or (not strict and y == o.hi):
        return o.part.shape[0]
    return o.start[1]  # the zeros (y == 0, not strict), or y between 0 and the smallest non-zero value


@jit.helper
def _bucket_at(o, i):  # pragma: no cover - numba
    """Mode 1: the bucket ``b`` with ``start[b] <= i < start[b + 1]``."""
    lo, hi = 0, o.start.shape[0] - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if o.start[mid] <= i:
            lo = mid
        else:
            hi = mid
    return lo


@jit.helper
def _at(o, i):  # pragma: no cover - numba
    """The value at ascending index ``i`` (its bucket sorted first)."""
    if o.mode == 1:
        b = _bucket_at(o, i)
        if b == 0:
            return np.float32(0.0)  # the zeros, never placed
        _sorted_bucket(o, b)
    return o.part[i]


@jit.helper
def _least_passing(o, thr, offset):  # pragma: no cover - numba
    """Mode 1: the smallest float32 ``t`` in ``[0, hi]`` with ``float64(t) - offset >= thr`` (the
    comparison the authors' code makes on every pixel; monotone in the value), by its bit pattern;
    ``nan`` when ``hi`` fails it."""
    if not (np.float64(o.hi) - offset >= thr):
        return np.float32(np.nan)
    a, b = np.int64(0), _bits(o, o.hi)
    while a < b:
        mid = (a + b) // 2
        if np.float64(_value(o, mid)) - offset >= thr:
            b = mid
        else:
            a = mid + 1
    return _value(o, a)


@jit.helper
def _first_at_least(o, thr, offset):  # pragma: no cover - numba
    """Mode 0: the first ascending index ``i`` with ``float64(value[i]) - offset >= thr``."""
    a, b = 0, o.part.shape[0]
    while a < b:
        mid = (a + b) // 2
        if np.float64(o.part[mid]) - offset >= thr:
            b = mid
        else:
            a = mid + 1
    return a


@jit.helper
def _energy_bucket(o, thr):  # pragma: no cover - numba
    """Mode 1: the highest bucket whose sum with those above reaches ``thr``; ``0`` when even the
    whole map's does not (every pixel kept); ``-1`` when that cannot be told exactly (below
    ``exact_from``)."""
    if not (o.bsum[0] >= thr):
        return 0 if o.exact_from <= 1 else -1
    lo, hi = 1, o.start.shape[0] - 1  # bsum[lo] >= thr, and bsum never grows with b: bisect
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if o.bsum[mid] >= thr:
            lo = mid
        else:
            hi = mid
    return lo if lo >= o.exact_from else -1


# ------------------------------------------------------------------------------------- kernels
@jit.kernel
def _min_positive(flat):  # pragma: no cover - numba
    """The smallest value ``> 0`` (inf if none), branch-free so that it vectorises."""
    nz = np.float32(np.inf)
    for i in range(flat.shape[0]):
        a = flat[i]
        nz = min(nz, a if a > 0 else np.float32(np.inf))
    return nz


@jit.kernel
def _radix_sorted(flat):  # pragma: no cover - numba
    """``flat`` (float32) sorted ascending by its bit patterns: each mapped to a uint32 key that
    orders like the value (negative: every bit flipped; else the sign bit set), then an LSD radix
    sort in three passes of 11 bits (a pass whose digit is the same for every key is skipped), and
    the keys mapped back. -0.0 sorts before 0.0; a NaN sorts last, or first when its sign bit is
    set (:func:`sorted_values` leaves such maps to NumPy)."""
    n = flat.shape[0]
    u = flat.view(np.uint32)
    src = np.empty(n, np.uint32)
    dst = np.empty(n, np.uint32)
    count = np.zeros((3, 2048), np.int64)
    for i in range(n):
        x = u[i]
        k = ~x if x >> 31 else x | np.uint32(0x80000000)
        src[i] = k
        count[0, k & 2047] += 1
        count[1, (k >> 11) & 2047] += 1
        count[2, k >> 22] += 1
    for d in range(3):
        shift = 11 * d
        if count[d].max() == n:
            continue
        pos = 0
        for j in range(2048):
            c = count[d, j]
            count[d, j] = pos
            pos += c
        for i in range(n):
            k = src[i]
            j = (k >> shift) & 2047
            dst[count[d, j]] = k
            count[d, j] += 1
        src, dst = dst, src
    out = np.empty(n, np.float32)
    bits = out.view(np.uint32)
    for i in range(n):
        k = src[i]
        bits[i] = k & np.uint32(0x7FFFFFFF) if k >> 31 else ~k
    return out


RADIX_FROM = 1024  # values from which the radix sort is faster than np.sort (even at 1024; 4x at 16384)


def sorted_values(flat: np.ndarray) -> np.ndarray:
    """``np.sort(flat)`` of a float32 vector, five times faster on a 224x224 map (radix, 0.20
    against 0.98 ms): the same values in the same order, except that -0.0 comes before 0.0 where
    both occur (np.sort leaves equal values in no defined order, and no comparison tells the two
    apart). A vector with a NaN is left to np.sort."""
    flat = np.ascontiguousarray(flat, dtype=np.float32).reshape(-1)
    if flat.size < RADIX_FROM:
        return np.sort(flat)
    asc = jit.compiled("_radix_sorted")(flat)
    if not (asc[0] == asc[0] and asc[-1] == asc[-1]):  # a NaN: last, or first with its sign bit set
        return np.sort(flat)
    return asc


def _bucketable(flat: np.ndarray) -> tuple[int, int]:
    """``(bits of the smallest non-zero value, bits of the largest)`` when every value is finite
    and ``>= 0`` (module docstring); else ``(-1, -1)``."""
    hi, lo = flat.max(), flat.min()  # NaN propagates into the maximum
    if not (lo >= 0) or not (hi < np.inf):
        return -1, -1
    if hi == 0:
        return 0, 0
    nz = lo if lo > 0 else jit.compiled("_min_positive")(flat)
    return int(np.float32(nz).view(np.uint32)), int(np.float32(hi).view(np.uint32))


@jit.kernel
def _bucketed(flat, ubits, lo_bits, hi_bits, keys, per_bucket):  # pragma: no cover - numba
    """Mode 1's buckets of ``flat`` (a map :func:`_bucketable` accepts), each pixel's in ``keys``
    (a scratch buffer of ``n`` int32), counted and summed but not placed:
    ``(start, done, bsum, shift, exact_from)``."""
    n = flat.shape[0]
    span = hi_bits - lo_bits + 1 if hi_bits > 0 else 1
    shift = 0
    target = max(1, n // per_bucket)
    while (span >> shift) > target:
        shift += 1
    nb = 2 + ((span - 1) >> shift)  # bucket 0: the zeros
    for i in range(n):
        keys[i] = (1 + ((np.int64(ubits[i]) - lo_bits) >> shift)) if flat[i] > 0 else 0
    # Counted and summed in two interleaved streams: neighbouring pixels of a smooth map share a
    # bucket, and one counter incremented pixel after pixel waits on its own last store.
    counts = np.zeros(nb, np.int64)
    sums = np.zeros(nb, np.float64)
    q = n // 2
    for i in range(q):
        k0 = keys[i]
        k1 = keys[i + q]
        counts[k0] += 1
        sums[k0] += np.float64(flat[i])
        counts[k1] += 1
        sums[k1] += np.float64(flat[i + q])
    for i in range(2 * q, n):
        counts[keys[i]] += 1
        sums[keys[i]] += np.float64(flat[i])
    start = np.empty(nb + 1, np.int64)
    run = 0
    for k in range(nb):
        start[k] = run
        run += counts[k]
    start[nb] = run
    # bsum[k] is exact while it stays below 2^53 units in the last place of the smallest value
    # bucket k can hold: every value of buckets >= k, and so every partial sum of them in any
    # order, is a multiple of that unit. Below, sums only grow and units only shrink.
    bsum = np.empty(nb + 1, np.float64)
    bsum[nb] = 0.0
    acc = 0.0
    exact_from = 1
    e_at = -1
    bound = 0.0
    for k in range(nb - 1, 0, -1):
        acc += sums[k]
        bsum[k] = acc
        if exact_from == 1:
            e = max((lo_bits + ((k - 1) << shift)) >> 23, 1)  # the exponent field of the bucket's least value
            if e != e_at:
                e_at = e
                bound = 2.0 ** (e - 97)  # 2^53 x 2^(e - 150) (a subnormal's unit: 2^-149)
            if not (acc < bound):
                exact_from = k + 1
    bsum[0] = acc  # the zeros add nothing
    done = np.empty(nb, np.bool_)
    for k in range(nb):
        done[k] = start[k + 1] - start[k] <= 1
    done[0] = True  # the zeros
    return start, done, bsum, shift, exact_from


@jit.helper
def _need_from(o, need, i):  # pragma: no cover - numba
    """Mark the bucket that holds ascending index ``i`` (if any value is there)."""
    if 0 <= i < o.part.shape[0]:
        need[_bucket_at(o, i)] = True


@jit.helper
def _place(o, need):  # pragma: no cover - numba
    """Place the values of the buckets marked in ``need`` and not yet placed, with their indices,
    in raster order (one pass over the map's keys)."""
    nb = o.start.shape[0] - 1
    need[0] = False  # the zeros read 0 (:func:`_at`)
    fresh = False
    for k in range(nb):
        need[k] = need[k] and not o.placed[k]
        fresh = fresh or need[k]
    if not fresh:
        return
    fill = o.start[:nb].copy()
    for i in range(o.keys.shape[0]):
        k = o.keys[i]
        if need[k]:
            o.part[fill[k]] = o.flat[i]
            o.pos[fill[k]] = i
            fill[k] += 1
    for k in range(nb):
        o.placed[k] = o.placed[k] or need[k]


@jit.kernel
def _kept_counts(o, kinds, alphas, mean, total):  # pragma: no cover - numba
    """How many pixels each (thresholding, alpha) keeps; the kept set is always the first ``c``
    pixels in descending order (for energy, ties cut in raster order). ``-1`` (mode 1 only) where
    the buckets' sums cannot tell the energy cut exactly (below ``exact_from``)."""
    n = o.part.shape[0]
    n_a = alphas.shape[0]
    counts = np.empty(n_a, np.int64)
    lo = np.float64(o.lo)
    hi = np.float64(o.hi)
    if o.mode == 0:
        energy = (kinds == 1).any()
        reach = np.empty(n if energy else 0, np.float64)
        run = 0.0
        top = -np.inf
        for k in range(reach.shape[0]):  # running maximum of the cumulative sum: a sorted array to search
            run += np.float64(o.part[n - 1 - k])
            top = max(top, run)
            reach[k] = top
        for a in range(n_a):
            if kinds[a] == 0:  # value ("min_max_diff"): h - min(h) >= alpha * (max(h) - min(h))
                counts[a] = n - _first_at_least(o, alphas[a] * (hi - lo), lo)
            elif kinds[a] == 2:  # mean: h >= alpha * mean(h)
                counts[a] = n - _first_at_least(o, alphas[a] * mean, 0.0)
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
    # Mode 1. Each cut's threshold (value, mean) or bucket (energy) first, and the buckets that it
    # and its least kept value read are placed, all in one pass over the map; then the counts.
    ts = np.empty(n_a, np.float32)  # value, mean: the least float32 that passes (nan: none)
    eb = np.empty(n_a, np.int64)  # energy: the cut's bucket (0: every pixel kept; -1: not exact)
    need = np.zeros(o.start.shape[0] - 1, np.bool_)
    for a in range(n_a):
        if kinds[a] == 1:
            b = _energy_bucket(o, alphas[a] * total)
            eb[a] = b
            if b > 0:  # the cut is in b; the least kept value there or in the next bucket that holds one
                need[b] = True
                _need_from(o, need, o.start[b + 1])
            elif b == 0:  # every pixel kept: the least value is at index 0
                _need_from(o, need, 0)
            continue
        t = _least_passing(o, alphas[a] * (hi - lo), lo) if kinds[a] == 0 else \
            _least_passing(o, alphas[a] * mean, 0.0)
        ts[a] = t
        if t != t:
            continue
        b = _bucket_of(o, t, True)
        if b < 0:
            _need_from(o, need, _below(o, t, True))
        else:  # the least kept value is in b, or in the next bucket that holds one
            need[b] = True
            _need_from(o, need, o.start[b + 1])
    _place(o, need)
    for a in range(n_a):
        if kinds[a] != 1:  # value and mean: the pixels at or above the threshold
            counts[a] = 0 if ts[a] != ts[a] else n - _below(o, ts[a], True)
            continue
        # energy from the buckets' exact sums: the sum of the top k + 1 values reaches alpha * sum
        thr = alphas[a] * total
        b = eb[a]
        if b <= 0:
            counts[a] = n if b == 0 else -1
            continue
        _sorted_bucket(o, b)
        acc = o.bsum[b + 1]
        i = o.start[b + 1] - 1
        while i >= o.start[b]:
            acc += np.float64(o.part[i])
            if acc >= thr:
                break
            i -= 1
        counts[a] = n - 1 - i
    return counts


@jit.kernel
def _kept_facts(o, counts):  # pragma: no cover - numba
    """For each count ``c > 0``: the ``c``-th largest value ``v``, how many values are above it,
    and how many equal it (what :func:`~saliency_bench.ops.pil_resize.kept_set_boxes` needs)."""
    n = o.part.shape[0]
    n_a = counts.shape[0]
    vals = np.zeros(n_a, np.float32)
    above = np.zeros(n_a, np.int64)
    ties = np.zeros(n_a, np.int64)
    if o.mode == 1:  # each bucket read below was placed by the query that gave its count
        for a in range(n_a):
            if counts[a] > 0:
                b = _bucket_at(o, n - counts[a])
                if b > 0 and not o.placed[b]:
                    raise RuntimeError("kept_facts: a count that kept_counts did not give on this order")
    for a in range(n_a):
        c = counts[a]
        if c == 0:
            continue
        v = _at(o, n - c)
        if o.mode == 0:  # first index with value >= v, then first with value > v
            i, j = 0, n
            while i < j:
                mid = (i + j) // 2
                if o.part[mid] >= v:
                    j = mid
                else:
                    i = mid + 1
            lb = i
            i, j = lb, n
            while i < j:
                mid = (i + j) // 2
                if o.part[mid] > v:
                    j = mid
                else:
                    i = mid + 1
        else:
            lb = _below(o, v, True)
            i = _below(o, v, False)
        vals[a] = v
        above[a] = n - i
        ties[a] = i - lb
    return vals, above, ties


# ------------------------------------------------------------------------------------- Python
_SCRATCH = threading.local()


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's buffers for :func:`_bucketed` (a fresh one per map costs page faults)."""
    s = _SCRATCH
    if getattr(s, "part", None) is None or len(s.part) < n:
        s.part, s.pos, s.keys = np.empty(n, np.float32), np.empty(n, np.int32), np.empty(n, np.int32)
    return s.part[:n], s.pos[:n], s.keys[:n]


_NO_POSITIONS = np.zeros(0, np.int32)
_NO_VALUES = np.zeros(0, np.float32)


def sorted_order(asc: np.ndarray) -> Order:
    """Mode 0 over ``asc``, a map's values sorted ascending (:func:`sorted_values`, ``np.sort``)."""
    n = len(asc)
    f1 = np.zeros(1, np.float32)
    return Order(0, asc, np.array([0, n], np.int64), np.ones(1, np.bool_), np.zeros(2, np.float64),
                 np.float32(asc[0] if n else 0), np.float32(asc[n - 1] if n else 0), 0, 0, f1, f1.view(np.uint32),
                 _NO_POSITIONS, _NO_VALUES, _NO_POSITIONS, np.ones(1, np.bool_), 0)


def map_order(m: np.ndarray, buckets: bool = True) -> tuple[Order, float]:
    """The :class:`Order` of a float32 map and its float64 total (NumPy's pairwise sum, which the
    exact sum equals when ``exact_from <= 1``): buckets where every value is finite and ``>= 0``
    (and ``buckets``), else the map sorted. The buckets' part of the order is this thread's scratch:
    use it before the next call."""
    flat = m.reshape(-1)
    if buckets and flat.size:
        ubits = flat.view(np.uint32)
        lo_bits, hi_bits = _bucketable(flat)
        if lo_bits >= 0:
            part, pos, keys = _scratch(flat.size)
            start, done, bsum, shift, exact_from = jit.compiled("_bucketed")(flat, ubits, lo_bits, hi_bits, keys,
                                                                             PER_BUCKET)
            f1 = np.zeros(1, np.float32)
            u1 = f1.view(np.uint32)
            u1[0] = lo_bits
            lo = np.float32(0.0) if start[1] > 0 else f1[0]
            u1[0] = hi_bits
            hi = f1[0]
            total = float(bsum[0]) if exact_from <= 1 else float(m.astype(np.float64).sum())
            return Order(1, part, start, done, bsum, lo, hi, lo_bits, int(shift), f1, u1, pos, flat, keys,
                         np.zeros(len(done), np.bool_), int(exact_from)), total
    return sorted_order(sorted_values(flat)), float(m.astype(np.float64).sum())


def order_and_counts(m: np.ndarray, kinds: np.ndarray, alphas: np.ndarray) -> tuple[Order, np.ndarray]:
    """:func:`map_order` and :func:`kept_counts` of a map, the map sorted after all where the
    buckets' sums cannot tell an energy cut exactly."""
    order, total = map_order(m)
    counts = kept_counts(order, kinds, alphas, total, m.size)
    if order.mode == 1 and (counts < 0).any():
        order = sorted_order(sorted_values(m))
        counts = kept_counts(order, kinds, alphas, total, m.size)
    return order, counts


def kept_facts(order: Order, counts: np.ndarray) -> tuple:
    """``(vals, above, ties, top, nan_free)`` of :func:`~saliency_bench.ops.pil_resize.kept_set_boxes`
    for the kept sets of ``counts``."""
    vals, above, ties = jit.compiled("_kept_facts")(order, np.asarray(counts, np.int64))
    top = order.hi
    nan_free = order.mode == 1 or len(order.part) == 0 or bool(order.part[-1] == order.part[-1])
    return vals, above, ties, np.float32(top), nan_free


def kept_counts(order: Order, kinds: np.ndarray, alphas: np.ndarray, total: float, size: int) -> np.ndarray:
    """How many pixels each ``(kinds[a], alphas[a])`` keeps (0 value, 1 energy, 2 mean); ``-1`` where
    a bucketed order cannot tell an energy cut exactly (:func:`order_and_counts` then sorts)."""
    return jit.compiled("_kept_counts")(order, kinds, alphas, total / size, total)
