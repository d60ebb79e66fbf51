"""The order statistics of a map that the authors' thresholdings need, mostly without sorting it.

The localization benchmark keeps, for each thresholding and alpha, "the first ``c`` pixels in
descending order" (:mod:`saliency_bench.benchmarks.localization`) and boxes each kept set
(:func:`saliency_bench.ops.pil_resize.kept_set_boxes`). What that takes from the map's order is
little: how many pixels each cut keeps (value and mean: the pixels at or above a threshold;
energy: where the cumulative sum in descending order reaches a share of the total) and, for each
count ``c``, the ``c``-th largest value ``v`` and how many pixels lie above it and tie with it.

Sorting the whole map answers all of that, and was the largest single cost of scoring a smooth
map. A histogram answers most of it, **exactly**, when the map allows:

* every value is finite and ``>= 0``: the values' bit patterns then order like the values, and
  the cumulative sum is its own running maximum;
* float64 sums of its values are exact in any order: every value is a multiple of ``u``, the unit
  in the last place of the smallest non-zero value, and ``n x 2^(e+1) <= 2^53 u`` (``2^e <= max``).
  The sum of the top ``k`` values, which the authors' code adds one by one in descending order,
  is then the same number however it is added, and the histogram's per-bucket sums give it. The
  centre's Gaussian (6 binades) qualifies; gradient maps, whose small values span dozens of
  binades, do not.

Such a map goes into buckets by the high bits of its values (:func:`_bucketed`: one pass to count
and sum, one to place them), and a bucket is sorted only when a query lands in it (``mode`` 1).
Any other map is sorted whole, as before (``mode`` 0: one bucket, sorted, NaN last as NumPy sorts),
and each query runs the binary search it always ran. ``tests/test_ops.py`` checks the two modes
against each other and both against the authors' procedure done with PIL.
"""
from __future__ import annotations

import threading
from collections import namedtuple

import numpy as np

from .jit import Kernels

jit = Kernels(__name__)

Order = namedtuple("Order", "mode part start done bsum lo hi base shift f1 u1 pos")
Order.__doc__ = """A map's values in ascending order, sorted only where needed. ``part [n]``: the values
grouped by bucket in ascending bucket order, bucket ``b`` being ``part[start[b]:start[b+1]]``, sorted
once ``done[b]``; ``bsum[b]``: the exact sum of the values in buckets ``>= b`` (mode 1); ``lo`` /
``hi``: the smallest and largest value. Mode 0: one bucket, sorted. Mode 1: bucket 0 holds the
zeros, bucket ``1 + ((bits - base) >> shift)`` a non-zero value with bit pattern ``bits`` (``base``:
the smallest non-zero value's). ``f1``/``u1``: one float32 and the same four bytes as uint32 (a bit
cast without allocating). ``pos`` (mode 1): each value's index in the map, so that the values equal
to one another in a sorted bucket are in raster order (its sort is stable, its filling in raster
order); empty in mode 0."""

PER_BUCKET = 16  # values per bucket aimed at (the bucket width is a power of two of bit patterns)


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
        if o.pos.shape[0]:  # the positions follow their values; equal values keep raster order
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
def _below(o, y, strict):  # pragma: no cover - numba
    """Mode 1: how many values are ``< y`` (``strict``) or ``<= y``, for a finite ``y``."""
    n = o.part.shape[0]
    if y < 0 or (strict and y == 0):
        return 0
    if y == 0:
        return o.start[1]  # the zeros
    if y > o.hi or (not strict and y == o.hi):
        return n
    if _bits(o, y) < o.base:  # between 0 and the smallest non-zero value
        return o.start[1]
    b = 1 + ((_bits(o, y) - o.base) >> o.shift)
    return o.start[b] + _in_bucket(o, b, y, strict)


@jit.helper
def _at(o, i):  # pragma: no cover - numba
    """The value at ascending index ``i`` (its bucket sorted first)."""
    if o.mode == 1:
        lo, hi = 0, o.start.shape[0] - 1  # the bucket b with start[b] <= i < start[b + 1]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if o.start[mid] <= i:
                lo = mid
            else:
                hi = mid
        _sorted_bucket(o, lo)
    return o.part[i]


@jit.helper
def _first_at_least(o, thr, offset):  # pragma: no cover - numba
    """First ascending index ``i`` with ``float64(value[i]) - offset >= thr`` (the comparison the
    authors' code makes on every pixel; monotone in the value)."""
    n = o.part.shape[0]
    if o.mode == 0:
        a, b = 0, n
        while a < b:
            mid = (a + b) // 2
            if np.float64(o.part[mid]) - offset >= thr:
                b = mid
            else:
                a = mid + 1
        return a
    # the smallest float32 t in [0, hi] that passes, by its bit pattern; then the values below t
    if not (np.float64(o.hi) - offset >= thr):
        return n
    a, b = np.int64(0), _bits(o, o.hi)
    while a < b:
        mid = (a + b) // 2
        if np.float64(_value(o, mid)) - offset >= thr:
            b = mid
        else:
            a = mid + 1
    return _below(o, _value(o, a), True)


# ------------------------------------------------------------------------------------- kernels
@jit.kernel
def _min_positive(flat):  # pragma: no cover - numba
    """The smallest value ``> 0`` (inf if none), branch-free so that it vectorises."""
    nz = np.float32(np.inf)
    for i in range(flat.shape[0]):
        a = flat[i]
        nz = min(nz, a if a > 0 else np.float32(np.inf))
    return nz


def _eligible(flat: np.ndarray) -> tuple[int, int]:
    """``(bits of the smallest non-zero value, bits of the largest)`` when every value is finite
    and ``>= 0`` and any float64 summation order is exact (module docstring); else ``(-1, -1)``."""
    hi, lo = flat.max(), flat.min()  # NaN propagates into the maximum
    if not (lo >= 0) or not (hi < np.inf):
        return -1, -1
    if hi == 0:
        return 0, 0
    nz = lo if lo > 0 else jit.compiled("_min_positive")(flat)
    lo_bits, hi_bits = int(np.float32(nz).view(np.uint32)), int(np.float32(hi).view(np.uint32))
    ulp_exp = max((lo_bits >> 23) & 0xFF, 1) - 150  # u = 2^ulp_exp (a subnormal's is 2^-149)
    hi_exp = max((hi_bits >> 23) & 0xFF, 1) - 127  # hi < 2^(hi_exp + 1)
    log_n = int(flat.size - 1).bit_length()  # n <= 2^log_n
    if log_n + hi_exp + 1 > 53 + ulp_exp:
        return -1, -1
    return lo_bits, hi_bits


@jit.kernel
def _bucketed(flat, ubits, lo_bits, hi_bits, part, pos, keys, per_bucket):  # pragma: no cover - numba
    """Mode 1's buckets of ``flat`` (an eligible map, :func:`_eligible`), placed into ``part`` with
    their indices in ``pos`` (scratch buffers of at least ``n``; ``keys``, of ``n`` int32, likewise),
    in raster order within a bucket: ``(start, done, bsum, base, shift)``."""
    n = flat.shape[0]
    span = hi_bits - lo_bits + 1 if hi_bits > 0 else 1
    shift = 0
    target = max(1, n // per_bucket)
    while (span >> shift) > target:
        shift += 1
    nb = 2 + ((span - 1) >> shift)  # bucket 0: the zeros
    for i in range(n):
        keys[i] = (1 + ((np.int64(ubits[i]) - lo_bits) >> shift)) if flat[i] > 0 else 0
    # Counted in four interleaved streams: neighbouring pixels of a smooth map share a bucket, and
    # one counter incremented pixel after pixel waits on its own last store.
    counts = np.zeros(nb, np.int64)
    q = n // 4
    for i in range(q):
        counts[keys[i]] += 1
        counts[keys[i + q]] += 1
        counts[keys[i + 2 * q]] += 1
        counts[keys[i + 3 * q]] += 1
    for i in range(4 * q, n):
        counts[keys[i]] += 1
    start = np.empty(nb + 1, np.int64)
    run = 0
    for k in range(nb):
        start[k] = run
        run += counts[k]
    start[nb] = run
    fill = start[:nb].copy()
    for i in range(n):
        k = keys[i]
        part[fill[k]] = flat[i]
        pos[fill[k]] = i
        fill[k] += 1
    bsum = np.empty(nb + 1, np.float64)
    bsum[nb] = 0.0
    acc = 0.0
    for k in range(nb - 1, 0, -1):  # exact in any order (the map is eligible): four accumulators
        s0 = s1 = s2 = s3 = 0.0
        t = start[k]
        e = start[k + 1]
        while t + 4 <= e:
            s0 += np.float64(part[t])
            s1 += np.float64(part[t + 1])
            s2 += np.float64(part[t + 2])
            s3 += np.float64(part[t + 3])
            t += 4
        while t < e:
            s0 += np.float64(part[t])
            t += 1
        acc += (s0 + s1) + (s2 + s3)
        bsum[k] = acc
    bsum[0] = acc  # the zeros add nothing
    done = np.empty(nb, np.bool_)
    for k in range(nb):
        done[k] = start[k + 1] - start[k] <= 1
    done[0] = True  # the zeros
    return start, done, bsum, lo_bits, shift


@jit.kernel
def _kept_counts(o, kinds, alphas, mean, total):  # pragma: no cover - numba
    """How many pixels each (thresholding, alpha) keeps; the kept set is always the first ``c``
    pixels in descending order (for energy, ties cut in raster order)."""
    n = o.part.shape[0]
    n_a = alphas.shape[0]
    counts = np.empty(n_a, np.int64)
    lo = np.float64(o.lo)
    hi = np.float64(o.hi)
    energy = (kinds == 1).any()
    reach = np.empty(n if energy and o.mode == 0 else 0, np.float64)
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
        elif o.mode == 0:  # energy: first position where the cumulative sum (descending order) reaches alpha * sum
            thr = alphas[a] * total
            i, j = 0, n
            while i < j:
                mid = (i + j) // 2
                if reach[mid] >= thr:
                    j = mid
                else:
                    i = mid + 1
            counts[a] = i  # never reached (their code raises): every pixel is kept
        else:  # the same from the buckets' exact sums: reach[k] is the sum of the top k + 1 values
            thr = alphas[a] * total
            if n == 0 or not (o.bsum[0] >= thr):
                counts[a] = n
                continue
            nb = o.start.shape[0] - 1
            b = nb - 1  # the highest bucket whose sum with those above reaches thr
            while b > 0 and not (o.bsum[b] >= thr):
                b -= 1
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


def sorted_order(asc: np.ndarray) -> Order:
    """Mode 0 over ``asc``, a map's values sorted ascending (``np.sort``)."""
    n = len(asc)
    f1 = np.zeros(1, np.float32)
    return Order(0, asc, np.array([0, n], np.int64), np.ones(1, np.bool_), np.zeros(2, np.float64),
                 np.float32(asc[0] if n else 0), np.float32(asc[n - 1] if n else 0), 0, 0, f1, f1.view(np.uint32),
                 _NO_POSITIONS)


def map_order(m: np.ndarray, buckets: bool = True) -> tuple[Order, float]:
    """The :class:`Order` of a float32 map and its float64 total (NumPy's pairwise sum, which an
    eligible map's exact sum equals): buckets where the map is eligible (and ``buckets``), else
    the map sorted. The buckets' part of the order is this thread's scratch: use it before the next
    call."""
    flat = m.reshape(-1)
    if buckets and flat.size:
        ubits = flat.view(np.uint32)
        lo_bits, hi_bits = _eligible(flat)
        if lo_bits >= 0:
            part, pos, keys = _scratch(flat.size)
            start, done, bsum, base, shift = jit.compiled("_bucketed")(flat, ubits, lo_bits, hi_bits, part, pos,
                                                                       keys, PER_BUCKET)
            f1 = np.zeros(1, np.float32)
            u1 = f1.view(np.uint32)
            u1[0] = lo_bits
            lo = np.float32(0.0) if start[1] > 0 else f1[0]
            u1[0] = hi_bits
            hi = f1[0]
            return Order(1, part, start, done, bsum, lo, hi, int(base), int(shift), f1, u1, pos), float(bsum[0])
    asc = np.sort(flat)
    return sorted_order(asc), float(m.astype(np.float64).sum())


def kept_facts(order: Order, counts: np.ndarray) -> tuple:
    """``(vals, above, ties, top, nan_free)`` of :func:`~saliency_bench.ops.pil_resize.kept_set_boxes`
    for the kept sets of ``counts``."""
    vals, above, ties = jit.compiled("_kept_facts")(order, np.asarray(counts, np.int64))
    top = order.hi
    nan_free = order.mode == 1 or len(order.part) == 0 or bool(order.part[-1] == order.part[-1])
    return vals, above, ties, np.float32(top), nan_free


def kept_counts(order: Order, kinds: np.ndarray, alphas: np.ndarray, total: float, size: int) -> np.ndarray:
    """How many pixels each ``(kinds[a], alphas[a])`` keeps (0 value, 1 energy, 2 mean)."""
    return jit.compiled("_kept_counts")(order, kinds, alphas, total / size, total)
