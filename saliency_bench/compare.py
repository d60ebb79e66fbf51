"""Which method is better, and how sure: paired comparisons within a leaderboard column, and
between runs (``saliency-bench compare``). docs/PROTOCOLS.md §9.

Every pair of methods of a column is compared on the samples both scored (the column's own
aggregation and choices fixed, :class:`~saliency_bench.benchmarks.stats.PerSample`): a paired
bootstrap interval of the difference and a sign-flip permutation p-value, seeded, with Holm's
correction over the pairs of the column. The best method of a column is the best point estimate
among the methods that are not baselines; it and every method whose comparison with it is not
significant at 5% (Holm-adjusted) are marked. A baseline (the centre) is never best.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
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


# --------------------------------------------------------------------------------------------
# Between runs: ``saliency-bench compare RUN_A RUN_B [...]``
# --------------------------------------------------------------------------------------------
def open_run(run_dir: str | Path) -> tuple[dict, dict]:
    """(the run's leaderboard data, its per-sample quantities ``{(model, dataset): {method:
    {column: PerSample}}}``). A directory that is no finished run is a one-line error."""
    from .leaderboard import load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if not (run_dir.parent / "store.sqlite").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no results store beside it at "
                                f"{run_dir.parent / 'store.sqlite'})")
    run = load_run(run_dir)
    if not run.get("finished"):
        raise ValueError(f"{run_dir}: the run has not finished (run its command again to complete it)")
    if not run["tables"]:
        raise ValueError(f"{run_dir}: the run has no scored table")
    return run, run_quantities(run_dir, run["settings"])


def run_benchmarks(settings: Mapping[str, Any]) -> list:
    """The benchmarks of a run, rebuilt from the settings it stored (a plugin benchmark that is
    not loaded is left out: its columns are then compared by value only)."""
    from .plan import make_benchmark

    options = settings.get("benchmark_options_resolved") or {}
    out = []
    for name in settings.get("benchmarks_resolved") or []:
        try:
            out.append(make_benchmark(name, int(settings.get("seed", 0)), options.get(name, {})))
        except Exception:
            continue
    return out


def run_quantities(run_dir: Path, settings: Mapping[str, Any]) -> dict:
    from .store import Store
    from .summary import _per_sample

    benches = [b for b in run_benchmarks(settings) if not b.timing]
    store = Store(Path(run_dir).parent / "store.sqlite", create=False)
    try:
        out: dict = {}
        for model, dataset in store.pairs(run_dir.name):
            meta = store.samples(run_dir.name, model, dataset)
            per_method = out.setdefault((model, dataset), {})
            for method in settings.get("methods_resolved") or {}:
                q: dict = {}
                for bench in benches:
                    recs = store.records(run_dir.name, model, dataset, method, bench.name)
                    ids = [i for i in recs if i in meta]
                    if ids:
                        q.update(_per_sample(bench, [recs[i] for i in ids], [meta[i] for i in ids]))
                per_method[method] = q
        return out
    finally:
        store.close()


def _labels(runs: Sequence[dict]) -> list[list[str]]:
    letters = [chr(ord("A") + i) if i < 26 else f"R{i + 1}" for i in range(len(runs))]
    return [[x] if len(r["tables"]) == 1 else [f"{x}{j + 1}" for j in range(len(r["tables"]))]
            for x, r in zip(letters, runs)]


def _options_of(run: dict, bench: str) -> dict:
    opts = dict((run["settings"].get("benchmark_options_resolved") or {}).get(bench) or {})
    return {k: v for k, v in opts.items() if k not in ("bootstrap", "seed")}  # the interval's, not the score's


def compare_runs(run_dirs: Sequence[str | Path], level: float = LEVEL) -> dict:
    """One table from several runs: every (run, model, dataset) side by side, and for a method in
    two of them on the same dataset, its difference (each against the first) with a paired test
    on the common samples, Holm-corrected over the methods of each difference column."""
    loaded = [open_run(d) for d in run_dirs]
    runs = [r for r, _ in loaded]
    entries = []
    for run, (_, quant), labels in zip(runs, loaded, _labels(runs)):
        for t, label in zip(run["tables"], labels):
            entries.append({"label": label, "run": run, "table": t,
                            "quantities": quant.get((t["model"], t["dataset"]), {}),
                            "methods": {r["method"]: r for r in t["rows"]}})
    methods: list[str] = []
    columns: list[dict] = []
    for e in entries:
        methods += [m for m in e["methods"] if m not in methods]
        used = [c for c in e["table"]["columns"]
                if any((r.get(c["key"]) or {}).get("value") is not None for r in e["table"]["rows"])]
        columns += [c for c in used if all(c["key"] != x["key"] for x in columns)]
    notes: list[str] = []
    out_cols: list[dict] = []
    rows = {m: {"method": m} for m in methods}
    ref = entries[0]
    for c in columns:
        key = c["key"]
        for e in entries:
            if not any(key == x["key"] for x in e["table"]["columns"]):
                notes.append(f"{c['title']}: run {e['label']} has no such column")
            out_cols.append({**c, "key": f"{key}@{e['label']}", "title": f"{c['title']} {e['label']}",
                             "short": f"{c.get('short') or c['title']} {e['label']}", "entry": e["label"],
                             "source": key, "source_title": c["title"]})
            for m in methods:
                metric = (e["methods"].get(m) or {}).get(key)
                if metric:
                    rows[m][f"{key}@{e['label']}"] = dict(metric)
        for e in entries[1:]:
            col = _difference_column(c, ref, e, methods, rows, notes, level)
            if col:
                out_cols.append(col)
    for e in entries[1:]:
        if e["table"]["dataset"] != ref["table"]["dataset"]:
            notes.append(f"{e['label']} ({e['table']['dataset']}) and {ref['label']} ({ref['table']['dataset']}) "
                         "are on different datasets: side by side, no paired difference")
    for m in methods:
        params = [(e["label"], (e["run"]["settings"].get("methods_resolved") or {}).get(m)) for e in entries
                  if m in e["methods"]]
        if len({repr(p) for _, p in params}) > 1:
            notes.append(f"{m}: " + "; ".join(f"{lab} " + (", ".join(f"{k}={v}" for k, v in (p or {}).items())
                                                          or "defaults") for lab, p in params))
    legend = [f"{e['label']}: {e['table']['model']} on {e['table']['dataset']} (run {e['run']['run_id']})"
              for e in entries]
    return {"title": "saliency-bench compare", "entries": legend, "columns": out_cols,
            "rows": [rows[m] for m in methods], "notes": list(dict.fromkeys(notes)), "level": level,
            "test": f"paired sign-flip test, {RESAMPLES} patterns, seed 0, Holm over the methods of a column"}


def _difference_column(c: dict, ref: dict, e: dict, methods: list[str], rows: dict, notes: list[str],
                       level: float) -> dict | None:
    """The column "c: e - ref" (None when there is nothing to pair), its cells written into ``rows``."""
    key, bench = c["key"], str(c.get("benchmark") or "")
    both = [m for m in methods if key in ((e["quantities"].get(m) or {})) and key in (ref["quantities"].get(m) or {})]
    if not both:
        return None
    name = f"{c['title']}: {e['label']} − {ref['label']}"
    if e["table"]["dataset"] != ref["table"]["dataset"]:
        return None
    p_ref, p_e = (ref["table"].get("protocols") or {}).get(key), (e["table"].get("protocols") or {}).get(key)
    o_ref, o_e = _options_of(ref["run"], bench), _options_of(e["run"], bench)
    if p_ref != p_e or o_ref != o_e:
        diff = {k: (o_ref.get(k), o_e.get(k)) for k in sorted(set(o_ref) | set(o_e)) if o_ref.get(k) != o_e.get(k)}
        why = ("options " + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in diff.items())) if diff else \
            f"protocols ({ref['label']}: {p_ref}; {e['label']}: {p_e})"
        notes.append(f"{name}: not compared, the runs' {why} differ")
        return None
    tests = {}
    for m in both:
        r = paired_test(e["quantities"][m][key], ref["quantities"][m][key], seed=0)
        if r is None:
            notes.append(f"{name}: {m} has no sample scored in both runs")
        else:
            tests[m] = r
    if not tests:
        return None
    adjusted = dict(zip(tests, holm([r.p for r in tests.values()])))
    out_key = f"{key}@{e['label']}-{ref['label']}"
    for m, r in tests.items():
        rows[m][out_key] = {"value": r.diff, "ci": None if r.ci is None else list(r.ci), "n": r.n,
                            "unit": c.get("unit", ""), "p": r.p, "p_holm": adjusted[m],
                            "mark": "significant" if adjusted[m] < level else "",
                            "note": f"{e['label']} − {ref['label']} on {r.n} common samples "
                                    f"({r.b:.3g} → {r.a:.3g}), p={r.p:.3g}, Holm {adjusted[m]:.3g}"}
    short = f"Δ{c.get('short') or c['title']} {e['label']}−{ref['label']}"
    return {**c, "key": out_key, "title": name, "short": short, "difference": True, "source": key,
            "source_title": c["title"],
            "better": c.get("better", "higher")}


# --------------------------------------------------------------------------------------------
# On the leaderboard: the marks, the baselines' label, the pairwise matrix
# --------------------------------------------------------------------------------------------
MARK_TEXT = {"best": "●", "tie": "○"}  # how the text tables (terminal, Markdown) show a mark


def mark_text(marks: Any) -> str:
    return "".join(MARK_TEXT[m] for m in ("best", "tie") if m in marks)


def mark_legend(table: dict, cols: list[dict]) -> str | None:
    """The line that explains a table's marks (None when it has none)."""
    if not paired_marks(table, cols):
        return None
    tested = any(((table.get("comparisons") or {}).get(c["key"]) or {}).get("pairs") for c in cols)
    ties = ("not distinguishable from it (paired test on the samples both scored, Holm-corrected, 5%)"
            if tested else "(no paired comparisons stored: best by value only)")
    base = f"; {', '.join(table.get('baselines') or [])}: baseline, never marked" if table.get("baselines") else ""
    return f"{MARK_TEXT['best']} best, {MARK_TEXT['tie']} {ties}{base}"


def method_label(table: dict, method: str) -> str:
    """The method's name as a table shows it: a baseline says so."""
    return method + (" (baseline)" if method in set(table.get("baselines") or ()) else "")


def subset_notes(table: dict) -> list[str]:
    """``benchmark: on ...`` for each benchmark that scored part of the dataset (which part)."""
    return [f"{b}: {note}" for b, note in (table.get("subsets") or {}).items() if note]


def paired_marks(table: dict, cols: list[dict]) -> dict[tuple[str, str], set[str]]:
    """``best`` and ``tie`` on a table's cells from its paired comparisons (the summary's
    ``__compare__`` rows); a run written before them: ``best`` on the best value, baselines
    excluded. Never on a baseline."""
    comparisons = table.get("comparisons") or {}
    baselines = set(table.get("baselines") or ())
    methods = {r["method"] for r in table["rows"]}
    out: dict[tuple[str, str], set[str]] = {}
    for c in cols:
        comp = comparisons.get(c["key"])
        if comp is None:
            values = {r["method"]: (r.get(c["key"]) or {}).get("value") for r in table["rows"]}
            comp = {"best": pick_best(values, c.get("better", "higher"), sorted(baselines)), "ties": []}
        best = comp.get("best")
        if best in methods and best not in baselines:
            out.setdefault((best, c["key"]), set()).add("best")
            for m in comp.get("ties") or ():
                if m in methods and m not in baselines:
                    out.setdefault((m, c["key"]), set()).add("tie")
    return out


def pairwise_matrix(table: dict, key: str) -> tuple[list[str], list[list[dict | None]]] | None:
    """A column's comparisons as a matrix: methods, and cell ``[i][j]`` = row i minus column j
    (``diff``, ``ci``, ``p_holm``, ``n``), None on the diagonal or where no sample is shared."""
    comp = (table.get("comparisons") or {}).get(key)
    if not comp or not comp.get("pairs"):
        return None
    names = [r["method"] for r in table["rows"] if any(r["method"] in (p["a"], p["b"]) for p in comp["pairs"])]
    return names, [[None if a == b else pair_of(comp, a, b) for b in names] for a in names]
