"""Which method is better, and how sure: paired comparisons within a leaderboard column, and
between runs (``saliency-bench compare``). PROTOCOLS.md §9.

Every pair of methods of a column is compared on the samples both scored (the column's own
aggregation and choices fixed, :class:`~saliency_bench.benchmarks.stats.PerSample`): a paired
bootstrap interval of the difference and a sign-flip permutation p-value, seeded, with Holm's
correction over the pairs of the column. The best method of a column is the best point estimate
among the methods that are not baselines; it and every method whose comparison with it is not
significant at 5% (Holm-adjusted) are marked. A baseline (the centre) is never best.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Mapping, Sequence

from .benchmarks.stats import PerSample, holm, paired_test

COMPARE_ROW = "__compare__"  # the metrics row of a benchmark's comparisons, per (model, dataset)
BASELINE = "__saliency_bench_baseline__"  # set on a method's function by method(..., baseline=True)
LEVEL = 0.05  # family-wise error rate of a column's comparisons
RESAMPLES = 9999  # sign-flip patterns (exact enumeration below 2^13 patterns)
TEST = ("paired sign-flip permutation test ({resamples} patterns, seed {seed}), Holm-corrected over the "
        "{m} pairs of the column; interval: paired bootstrap of the difference ({replicates} replicates)")


def is_baseline(method: Any) -> bool:
    """A method registered as a baseline (``saliency_bench.method(..., baseline=True)``)."""
    return bool(getattr(getattr(method, "fn", None), BASELINE, False))


def baselines_of(settings: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    """The baselines among a run's methods ``names``: those its plan marked, or (a run written
    before methods declared it) the centre and its variants."""
    plan = settings.get("methods_plan") or []
    if any("baseline" in row for row in plan):
        marked = {row["name"] for row in plan if row.get("baseline")}
    else:
        marked = {row["name"] for row in plan if "center" in (row.get("name"), row.get("base"))}
        marked |= {n for n in names if n == "center" or n.startswith("center[")}
    return [n for n in names if n in marked]


def pick_best(values: Mapping[str, float | None], better: str, baselines: Sequence[str] = ()) -> str | None:
    """The method with the best value (``better``: "higher" | "lower"), baselines left out."""
    cand = [(v, m) for m, v in values.items() if v is not None and m not in set(baselines)]
    if not cand:
        return None
    sign = -1.0 if better == "lower" else 1.0
    return max(cand, key=lambda t: sign * t[0])[1]


def compare_column(quantities: Mapping[str, PerSample], values: Mapping[str, float | None], better: str,
                   baselines: Sequence[str] = (), seed: int = 0, replicates: int = 1000,
                   resamples: int = RESAMPLES, level: float = LEVEL) -> dict[str, Any]:
    """One column's comparisons: ``{"best", "ties", "pairs": [...], "test", "level"}``.

    ``quantities``: each method's per-sample quantity (a method without one is only ranked);
    ``values``: each method's column value (the leaderboard's, over all its samples). ``pairs``:
    ``{"a", "b", "n", "diff" (a - b on the common samples), "ci", "p", "p_holm"}`` for every pair
    with a common sample. ``ties``: the methods (not baselines) indistinguishable from the best."""
    best = pick_best(values, better, baselines)
    names = [m for m in values if m in quantities and values.get(m) is not None]
    pairs = []
    for a, b in combinations(names, 2):
        r = paired_test(quantities[a], quantities[b], resamples=resamples, replicates=replicates, seed=seed)
        if r is not None:
            pairs.append({"a": a, "b": b, "n": r.n, "diff": r.diff, "ci": None if r.ci is None else list(r.ci),
                          "p": r.p})
    for pair, adj in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_holm"] = adj
    ties = []
    if best is not None and best in quantities:
        for p in pairs:
            if best in (p["a"], p["b"]) and p["p_holm"] >= level:
                other = p["b"] if p["a"] == best else p["a"]
                if other not in set(baselines):
                    ties.append(other)
    order = {m: i for i, m in enumerate(values)}
    tested = best in quantities
    return {"best": best, "ties": sorted(ties, key=order.get), "pairs": pairs, "level": level,
            "test": TEST.format(resamples=resamples, seed=seed, m=len(pairs), replicates=replicates)
            if tested and pairs else "no paired test (no per-sample quantity): best by its value only"}


def pair_of(comparison: Mapping[str, Any], a: str, b: str) -> dict | None:
    """The comparison of ``a`` with ``b`` (diff as a - b), from a column's ``pairs``."""
    for p in comparison.get("pairs") or ():
        if (p["a"], p["b"]) == (a, b):
            return dict(p)
        if (p["a"], p["b"]) == (b, a):
            ci = p.get("ci")
            return {**p, "a": a, "b": b, "diff": -p["diff"], "ci": None if ci is None else [-ci[1], -ci[0]]}
    return None
