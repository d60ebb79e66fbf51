"""Seeded bootstrap confidence intervals over samples (Efron's percentile bootstrap).

Every score of a leaderboard carries a 95% interval so that two methods whose intervals
overlap read as "not distinguishable on this data". Resampling is over samples (images or
(image, category) pairs), with replacement, ``n`` draws per replicate; a statistic is written
against **per-sample weights** (how many times each sample was drawn), so that every
replicate is one matrix product instead of a Python loop.
"""
from __future__ import annotations

from typing import Callable, Iterator

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
