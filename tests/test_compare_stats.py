"""Paired comparisons (docs/PROTOCOLS.md §9) against scipy's own permutation test and bootstrap."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from saliency_bench.benchmarks.stats import (PerSample, aggregate, bootstrap_ci, holm, paired_test,
                                             sign_flip_p, strata_weights, weighted_mean)


def _scipy_p(a, b, w, n_resamples, seed=0):
    def stat(x, y, axis=-1):
        return np.sum(w * (x - y), axis=axis)

    return stats.permutation_test((a, b), stat, permutation_type="samples", vectorized=True,
                                  n_resamples=n_resamples, alternative="two-sided", random_state=seed).pvalue


def test_sign_flip_exact_equals_scipy_on_the_same_values():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=11), rng.normal(size=11) + 0.4
    for w in (None, rng.random(11)):
        ww = np.full(11, 1 / 11) if w is None else w
        # 2^11 patterns <= resamples: both enumerate every sign pattern, so the p-values are equal
        assert sign_flip_p(a - b, w, resamples=9999) == pytest.approx(_scipy_p(a, b, ww, 9999), abs=1e-12)


def test_sign_flip_binary_hits_with_ties_equals_scipy():
    # 0/1 hits: many zero differences and many patterns exactly as extreme as the observed one
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1], float)
    b = np.array([0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 1], float)
    w = strata_weights(12, list("aabbbccccddd"))
    assert sign_flip_p(a - b, w, resamples=9999) == pytest.approx(_scipy_p(a, b, w, 9999), abs=1e-12)


def test_sign_flip_random_patterns_agree_with_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(5)
    a = (rng.random(300) < 0.5).astype(float)
    b = np.where(rng.random(300) < 0.12, 1 - a, a)
    b[:8] = 0  # a is a little better
    ours = sign_flip_p(a - b, None, resamples=20000, seed=1)
    ref = _scipy_p(a, b, np.full(300, 1 / 300), 20000, seed=1)
    assert 0.001 < ref < 0.5
    assert abs(ours - ref) < 4 * np.sqrt(ref * (1 - ref) / 20000) + 2e-3
    assert sign_flip_p(a - b, None, 20000, seed=1) == ours  # seeded


def test_paired_bootstrap_interval_agrees_with_scipy_paired_bootstrap():
    rng = np.random.default_rng(7)
    base = rng.normal(50, 20, size=200)
    a, b = base + rng.normal(2, 3, size=200), base + rng.normal(0, 3, size=200)
    ids = tuple(map(str, range(200)))
    r = paired_test(PerSample(ids, a), PerSample(ids, b), resamples=999, replicates=4000, seed=0)
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                          n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert r.diff == pytest.approx(np.mean(a - b))
    assert r.ci[0] == pytest.approx(ref.low, abs=0.12) and r.ci[1] == pytest.approx(ref.high, abs=0.12)


def test_stratified_aggregation_is_the_mean_over_strata():
    v = np.array([1, 0, 0, 1, 1, 1.0])
    cats = ["x", "x", "y", "z", "z", "z"]
    assert aggregate(v, cats) == pytest.approx((0.5 + 0 + 1) / 3)
    assert aggregate(v) == pytest.approx(4 / 6)


def test_overlapping_unpaired_intervals_but_the_paired_test_separates():
    # Method B hits every sample A hits, and 12 more of 100: 50% against 62%. The unpaired 95%
    # intervals overlap (each is about +-10 points); the paired test sees 12 discordant pairs, all
    # one way: p = 2 / 2^12.
    a = np.zeros(100); a[:50] = 1
    b = a.copy(); b[50:62] = 1
    ci_a = bootstrap_ci(weighted_mean(a), 100, 2000, seed=0)
    ci_b = bootstrap_ci(weighted_mean(b), 100, 2000, seed=0)
    assert ci_a[1] > ci_b[0]  # they overlap
    ids = tuple(f"s{i}" for i in range(100))
    r = paired_test(PerSample(ids, 100 * b), PerSample(ids, 100 * a), seed=0)
    assert r.diff == pytest.approx(12.0) and r.n == 100
    assert r.p == pytest.approx(2 / 2 ** 12)
    assert r.ci[0] > 0


def test_a_pair_correctly_called_tied():
    # Two methods that disagree on 20 samples, 10 each way: same accuracy, p = 1.
    a = np.zeros(100); a[:40] = 1
    b = a.copy(); b[:10] = 0; b[40:50] = 1
    ids = tuple(f"s{i}" for i in range(100))
    r = paired_test(PerSample(ids, a), PerSample(ids, b), seed=0)
    assert r.diff == 0 and r.p == pytest.approx(1.0)
    assert r.ci[0] < 0 < r.ci[1]
    # and a small difference that 100 samples cannot show: 4 against 2 discordant pairs. By hand:
    # P(at least 4 of 6 signs +) = (15 + 6 + 1) / 64, two-sided 0.6875
    c = a.copy(); c[:2] = 0; c[40:44] = 1
    assert paired_test(PerSample(ids, c), PerSample(ids, a)).p == pytest.approx(0.6875)


def test_paired_test_uses_only_common_samples():
    a = PerSample(("1", "2", "3", "4"), [1, 1, 1, 0], ("x", "x", "y", "y"))
    b = PerSample(("2", "3", "4", "5"), [0, 1, 1, 1], ("x", "y", "y", "z"))
    r = paired_test(a, b, replicates=0)
    assert r.n == 3 and r.ci is None
    assert r.a == pytest.approx((1 + 0.5) / 2) and r.b == pytest.approx((0 + 1) / 2)
    assert paired_test(a, PerSample(("9",), [1])) is None


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


# -- every benchmark's per-sample quantity aggregates to its column ------------------------------
def _bits(a):
    return "".join("1" if x else "0" for x in a)


def test_per_sample_quantities_aggregate_to_the_columns():
    from saliency_bench import get_benchmark

    rng = np.random.default_rng(0)
    n = 40
    samples = [{"id": f"s{i}", "category": "abc"[i % 3] if i < 30 else "d", "split": "eval",
                "flags": {"difficult": bool(i % 4 == 0)}} for i in range(n)]
    checks = []
    pointing = get_benchmark("pointing", bootstrap=0)
    recs = [{"hit": int(rng.random() < 0.5)} for _ in range(n)]
    checks.append((pointing, recs))
    loc = get_benchmark("localization", bootstrap=0)
    t = 100
    recs = [{**{k: _bits(rng.random(len(loc.alphas(k))) < 0.4) for k in ("value", "energy", "mean")},
             **{f"mba{d}": _bits(np.sort(rng.random(t)) < 0.5) for d in (30, 50, 70)}} for _ in range(n)]
    checks.append((loc, recs))
    game = get_benchmark("deletion_game", bootstrap=0)
    recs = [{"value": float(rng.random())} for _ in range(n)]
    recs[3] = {"value": None}
    checks.append((game, recs))
    for bench, recs in checks:
        summary = bench.summarize(recs, samples)
        per = bench.per_sample(recs, samples)
        assert set(per) == set(bench.columns), bench.name
        for column, q in per.items():
            assert summary[column]["n"] == len(q.ids), (bench.name, column)
            assert aggregate(q.values, q.strata) == pytest.approx(summary[column]["value"]), (bench.name, column)
    assert get_benchmark("runtime").per_sample([], []) == {}
