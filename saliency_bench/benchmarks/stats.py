"""Seeded bootstrap confidence intervals over samples (Efron's percentile bootstrap).

Every score of a leaderboard carries a 95% interval so that two methods whose intervals
overlap read as "not distinguishable on this data". Resampling is over samples (images or
(image, category) pairs), with replacement, ``n`` draws per replicate; a statistic is written
against **per-sample weights** (how many times each sample was drawn), so that every
replicate is one matrix product instead of a Python loop.

Paired comparisons (docs/PROTOCOLS.md §9): a column's per-sample quantity (:class:`PerSample`), the
paired sign-flip permutation test and paired bootstrap of two methods' difference on the samples
both scored (:func:`paired_test`), and Holm's correction for the comparisons of a column.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np


def bootstrap_weights(n: int, replicates: int = 1000, seed: int = 0,
                      chunk: int = 64) -> Iterator[np.ndarray]:
    """Yield ``[r, n]`` float arrays of resampling counts, ``replicates`` rows in all."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < replicates:
        r = min(chunk, replicates - done)
        draws = rng.integers(0, n, size=(r, n))
        rows = np.repeat(np.arange(r), n)
        yield np.bincount(rows * n + draws.reshape(-1), minlength=r * n).reshape(r, n).astype(np.float64)
        done += r


def bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], n: int, replicates: int = 1000,
                 seed: int = 0, level: float = 0.95) -> list[float] | None:
    """Percentile interval of ``statistic(weights [r, n]) -> [r]`` over bootstrap replicates.

    Replicates where the statistic is undefined (NaN, e.g. no sample of a subset was drawn) are
    left out. Returns ``None`` when there are no samples or no replicate is defined.
    """
    if n == 0 or replicates <= 0:
        return None
    values = np.concatenate([np.asarray(statistic(w), dtype=np.float64)
                             for w in bootstrap_weights(n, replicates, seed)])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def weighted_mean(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic "mean of ``values``" for :func:`bootstrap_ci` (``values [n]``)."""
    v = np.asarray(values, dtype=np.float64)

    def stat(w: np.ndarray) -> np.ndarray:
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ v) / total

    return stat


# --------------------------------------------------------------------------------------------
# Paired comparisons (docs/PROTOCOLS.md §9): two methods on the samples both scored
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerSample:
    """A column's per-sample quantity: ``values[i]`` of sample ``ids[i]``, in the column's units,
    such that the column's value is :func:`aggregate` of them: their mean, or, with ``strata``
    (the pointing game's categories), the mean over strata of each stratum's mean. Choices a
    column makes on the data (alpha* on held-out samples, MaxBoxAccV2's best threshold) are
    already fixed in the values."""

    ids: tuple[str, ...]
    values: np.ndarray
    strata: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", np.asarray(self.values, dtype=np.float64).reshape(-1))
        if len(self.ids) != len(self.values) or (self.strata is not None and len(self.strata) != len(self.ids)):
            raise ValueError("PerSample: ids, values and strata must have one entry per sample")

    def restrict(self, ids: Sequence[str]) -> "PerSample":
        """The same quantity on the samples ``ids`` (each of which it must have)."""
        at = {s: i for i, s in enumerate(self.ids)}
        idx = np.array([at[s] for s in ids], dtype=np.int64)
        strata = None if self.strata is None else tuple(self.strata[i] for i in idx)
        return PerSample(tuple(ids), self.values[idx], strata)


def strata_weights(n: int, strata: Sequence[str] | None) -> np.ndarray:
    """Weights ``w`` (summing to 1) with ``w @ v`` the column's aggregation of ``v``: ``1/n``
    each, or ``1 / (number of strata x size of the sample's stratum)``."""
    if n == 0:
        return np.zeros(0)
    if strata is None:
        return np.full(n, 1.0 / n)
    _, codes, counts = np.unique(np.asarray(strata, dtype=object).astype(str), return_inverse=True,
                                 return_counts=True)
    return 1.0 / (len(counts) * counts[codes].astype(np.float64))


def aggregate(values: np.ndarray, strata: Sequence[str] | None = None) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    return float(strata_weights(len(v), strata) @ v) if len(v) else None


def strata_mean_statistic(values: np.ndarray, strata: Sequence[str] | None):
    """``aggregate`` as a statistic of bootstrap weights ``[r, n]`` (for :func:`bootstrap_ci`):
    resampling over samples, a stratum no draw reached left out of the mean (the pointing game's
    own interval)."""
    v = np.asarray(values, dtype=np.float64)
    if strata is None:
        return weighted_mean(v)
    _, codes = np.unique(np.asarray(strata, dtype=object).astype(str), return_inverse=True)
    k = int(codes.max()) + 1 if len(codes) else 0
    onehot = np.zeros((len(v), k))
    onehot[np.arange(len(v)), codes] = 1.0

    def stat(w: np.ndarray) -> np.ndarray:
        total = w @ onehot
        good = w @ (onehot * v[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(total > 0, good / np.where(total > 0, total, 1), np.nan), axis=1)

    return stat


_EPS = 1e-14  # scipy.stats.permutation_test's relative tolerance for "as extreme as observed"


def _sign_flip_null(wd: np.ndarray, resamples: int, seed: int, chunk: int = 1024) -> np.ndarray:
    """``resamples`` values of ``sum(s * wd)`` for seeded random signs ``s`` (+1/-1, one random bit
    each), drawn ``chunk`` patterns at a time."""
    rng = np.random.default_rng(seed)
    n = len(wd)
    per_row = (n + 7) // 8
    out, done = [], 0
    while done < resamples:
        r = min(chunk, resamples - done)
        bits = np.unpackbits(np.frombuffer(rng.bytes(r * per_row), np.uint8).reshape(r, per_row), axis=1)[:, :n]
        out.append(wd.sum() - 2.0 * (bits @ wd))  # sign -1 where the bit is set
        done += r
    return np.concatenate(out)


def sign_flip_p(d: np.ndarray, weights: np.ndarray | None = None, resamples: int = 9999,
                seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of ``T = sum(w * d)`` (``d``:
    per-sample differences; ``w``: the column's aggregation weights, 1/n by default).

    Under "the two methods are exchangeable on each sample" every ``d_i`` is as likely ``-d_i``.
    The definition is scipy's ``permutation_test(..., permutation_type='samples')``: the exact
    distribution over all ``2^k`` sign patterns of the ``k`` non-zero differences when
    ``2^k <= resamples`` (p = share of patterns at least as extreme, the observed included),
    else ``resamples`` seeded random patterns (p = (count + 1) / (resamples + 1)); two-sided p =
    twice the smaller one-sided p, at most 1.
    """
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    w = np.full(len(d), 1.0 / max(len(d), 1)) if weights is None else np.asarray(weights, np.float64)
    wd = w * d
    observed = float(wd.sum())
    nz = np.flatnonzero(wd != 0)
    if len(nz) == 0:
        return 1.0
    if 2 ** len(nz) <= resamples:
        k = len(nz)
        bits = (np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1
        null = (1.0 - 2.0 * bits) @ wd[nz]
        adj, total = 0, len(null)
    else:
        null = _sign_flip_null(wd, resamples, seed)
        adj, total = 1, resamples
    gamma = abs(_EPS * observed)
    greater = (np.count_nonzero(null >= observed - gamma) + adj) / (total + adj)
    less = (np.count_nonzero(null <= observed + gamma) + adj) / (total + adj)
    return float(min(1.0, 2.0 * min(greater, less)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: sorted ascending, ``p_(i) * (m - i)`` made monotone, at most 1
    (reject at level a where the adjusted p < a: the family-wise error rate stays <= a)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(np.minimum(1.0, p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return [float(x) for x in out]


@dataclass(frozen=True)
class Paired:
    """Method A minus method B on the ``n`` samples both scored: the difference of the column's
    aggregation, its paired bootstrap interval, the sign-flip p-value."""

    n: int
    a: float
    b: float
    diff: float
    ci: tuple[float, float] | None
    p: float


def paired_test(a: PerSample, b: PerSample, resamples: int = 9999, replicates: int = 1000,
                seed: int = 0, level: float = 0.95) -> Paired | None:
    """Compare two methods' quantities of one column on their common samples (None: none).

    The aggregation (plain mean, or mean over the strata of the common samples) is the column's;
    the interval resamples the pairs (a paired bootstrap of the difference), the p-value flips
    signs of per-sample differences (:func:`sign_flip_p`), both seeded with ``seed``."""
    bset = set(b.ids)
    common = [s for s in a.ids if s in bset]
    if not common:
        return None
    a, b = a.restrict(common), b.restrict(common)
    strata = a.strata if a.strata is not None else b.strata
    w = strata_weights(len(common), strata)
    d = a.values - b.values
    ci = bootstrap_ci(strata_mean_statistic(d, strata), len(d), replicates, seed, level) if replicates else None
    return Paired(n=len(common), a=float(w @ a.values), b=float(w @ b.values), diff=float(w @ d),
                  ci=None if ci is None else (ci[0], ci[1]), p=sign_flip_p(d, w, resamples, seed))
