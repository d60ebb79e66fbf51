"""Summaries: the metrics of each (method, model, dataset) from the store's per-sample records,
and what the leaderboard needs to show them (each benchmark's columns and protocol)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from . import registry
from .compare import COMPARE_ROW, compare_column, is_baseline
from .contracts import Benchmark
from .execute import NOT_EVALUABLE
from .plan import Plan, make_benchmark
from .store import Store


def summarize_run(run_dir: Path) -> list[tuple[str, str]]:
    """Recompute every summary of a run from its per-sample records (``saliency-bench leaderboard
    RUN --summarize``): an interrupted run then shows what its finished samples give. The plan
    is rebuilt from the settings the run stored; returns the (model, dataset) pairs summarised."""
    run_dir = Path(run_dir)
    store = Store(run_dir.parent / "store.sqlite", create=False)
    try:
        info = store.run_info(run_dir.name)
        if info is None:
            raise FileNotFoundError(f"run '{run_dir.name}' is not in {run_dir.parent / 'store.sqlite'}")
        s = info["settings"]
        methods = []
        rows = s.get("methods_plan") or [{"name": n, "base": None, "params": p}
                                          for n, p in (s.get("methods_resolved") or {}).items()]
        for row in rows:
            name = row["name"]
            try:
                if row.get("base"):
                    m = registry.methods.get(row["base"]).variant(**row.get("id_params", {}))
                    m = m.with_params(**row["params"])
                    m = dataclasses.replace(m, name=name)
                else:
                    m = registry.methods.get(name).with_params(**row["params"])
                methods.append(m)
            except Exception as e:
                raise ValueError(f"cannot summarise method '{name}' of the run: {e} (load its plugin with "
                                 "--plugin)") from e
        options = s.get("benchmark_options_resolved") or {}
        benches = [make_benchmark(b, int(s.get("seed", 0)), options.get(b, {}))
                   for b in s.get("benchmarks_resolved") or []]
        plan = Plan(methods, benches, [])
        pairs = store.pairs(run_dir.name)
        rows = store.metrics(run_dir.name)
        for model, dataset in pairs:
            skipped = {r["benchmark"]: r["metrics"].get("why", "") for r in rows
                       if r["model"] == model and r["dataset"] == dataset and r["method"] == "__skipped__"}
            subsets = {r["benchmark"]: r["metrics"].get("note", "") for r in rows
                       if r["model"] == model and r["dataset"] == dataset and r["method"] == SUBSET_ROW}
            summarize_into(store, run_dir.name, model, dataset, plan, skipped, subsets)
        return pairs
    finally:
        store.close()


SUBSET_ROW = "__subset__"  # the metrics row naming the part of a dataset a benchmark scored


def summarize_into(store: Store, run_id: str, model: str, dataset: str, plan: Plan,
                   skipped: dict[str, str] | None = None, subsets: dict[str, str] | None = None) -> None:
    """Every summary of one (model, dataset) from its per-sample records. ``skipped``: the
    benchmarks that do not apply to the dataset, with why (no columns, a note); ``subsets``: the
    benchmarks that score part of it, with the dataset's words for that part."""
    meta = store.samples(run_id, model, dataset)
    skipped = skipped or {}
    store.clear_summaries(run_id, model, dataset)
    for bench in plan.benchmarks:
        if bench.name in skipped:
            store.set_metrics(run_id, model, dataset, "__skipped__", bench.name, {"why": skipped[bench.name]})
            continue
        if (subsets or {}).get(bench.name):
            store.set_metrics(run_id, model, dataset, SUBSET_ROW, bench.name, {"note": subsets[bench.name]})
        # The columns (titles, direction) and the protocol each follows, for the leaderboard.
        store.set_metrics(run_id, model, dataset, "__columns__", bench.name, {"columns": columns_of(bench)})
        protocol = getattr(bench, "protocol", None)
        if callable(protocol):
            store.set_metrics(run_id, model, dataset, "__protocol__", bench.name,
                              {k + bench.suffix: v for k, v in dict(protocol()).items()})
    fb = next((m["metrics"] for m in store.metrics(run_id)
               if m["model"] == model and m["dataset"] == dataset and m["method"] == "__model__"), None)
    computed: dict[str, dict[str, dict]] = {}  # benchmark -> method -> metrics (column keys as stored)
    quantities: dict[str, dict[str, dict]] = {}  # benchmark -> method -> column key -> PerSample
    for method in plan.methods:
        outs = store.outcomes(run_id, model, dataset, method.name)
        not_eval = sum(1 for o in outs if not o["ok"] and (o["reason"] or "").startswith(NOT_EVALUABLE))
        failed = [o for o in outs if not o["ok"] and not (o["reason"] or "").startswith(NOT_EVALUABLE)]
        coverage = {"scored": sum(o["ok"] for o in outs), "failed": len(failed), "not_evaluable": not_eval,
                    "total": len(outs), "failures": [{"id": o["id"], "reason": o["reason"]} for o in failed[:50]]}
        diags = [o["info"] for o in outs if o["ok"] and o["info"]]
        if diags:
            coverage["diagnostics"] = _diagnostics(diags)
        store.set_metrics(run_id, model, dataset, method.name, "coverage", coverage)
        for bench in plan.benchmarks:
            if method.kind not in bench.accepts or bench.name in skipped:
                continue
            if bench.timing:
                metrics = bench.summarize_timings(store.timings(run_id, model, dataset, method.name), fb)
            else:
                recs = store.records(run_id, model, dataset, method.name, bench.name)
                ids = [i for i in recs if i in meta]
                if not ids:  # nothing scored (every sample failed): the coverage says why
                    metrics = _empty_metrics(bench, "no scored sample")
                else:
                    try:
                        metrics = bench.summarize([recs[i] for i in ids], [meta[i] for i in ids])
                    except Exception as e:  # one benchmark's summary must not lose the leaderboard
                        metrics = _empty_metrics(bench, f"benchmark '{bench.name}' could not summarise: "
                                                        f"{type(e).__name__}: {e}")
                    if bench.uses_model:
                        metrics.update(_probe_cost(bench, [recs[i] for i in ids]))
                    quantities.setdefault(bench.name, {})[method.name] = _per_sample(
                        bench, [recs[i] for i in ids], [meta[i] for i in ids])
            if bench.suffix:
                metrics = {k + bench.suffix: v for k, v in metrics.items()}
            store.set_metrics(run_id, model, dataset, method.name, bench.name, metrics)
            computed.setdefault(bench.name, {})[method.name] = metrics
    baselines = [m.name for m in plan.methods if is_baseline(m)]
    for bench in plan.benchmarks:
        if bench.name in computed:
            store.set_metrics(run_id, model, dataset, COMPARE_ROW, bench.name,
                              compare_benchmark(bench, computed[bench.name], quantities.get(bench.name, {}),
                                                baselines))


def _per_sample(bench: Benchmark, records: list[dict], samples: list[dict]) -> dict:
    """A benchmark's per-sample quantities under the column keys it stores (none if it fails:
    the column is then ranked without a paired test)."""
    try:
        per = bench.per_sample(records, samples) or {}
    except Exception:
        return {}
    return {k + bench.suffix: v for k, v in per.items()}


def compare_benchmark(bench: Benchmark, metrics: dict[str, dict], quantities: dict[str, dict],
                      baselines: list[str]) -> dict[str, dict]:
    """The paired comparisons of every column of one benchmark (the ``__compare__`` row)."""
    seed = int(bench.options.get("seed", 0) or 0)
    replicates = int(bench.options.get("bootstrap", 1000) or 0)
    out = {}
    for col in columns_of(bench):
        key = col["key"]
        values = {m: (ms.get(key) or {}).get("value") for m, ms in metrics.items()}
        if all(v is None for v in values.values()):
            continue
        per = {m: q[key] for m, q in quantities.items() if key in q}
        out[key] = compare_column(per, values, col.get("better", "higher"), baselines, seed, replicates)
    return out


def _empty_metrics(bench: Benchmark, why: str) -> dict[str, dict]:
    return {c: {"value": None, "ci": None, "n": 0, "unit": "", "note": why} for c in bench.columns}


PROBE = "_probe"  # the record field where a benchmark that runs the model gets its cost


def _cost_column(bench: Benchmark) -> str:
    """The column of a model-running benchmark's own seconds per image (before its suffix)."""
    return f"{bench.base or bench.name}_s_per_image"


def columns_of(bench: Benchmark) -> list[dict]:
    cols = bench.column_info()
    if bench.uses_model:  # its own runtime, beside the methods'
        cols.append({"key": _cost_column(bench) + bench.suffix,
                     "title": f"{bench.name} s/image", "short": f"{bench.name} s/img", "better": "lower",
                     "interval": False, "benchmark": bench.name})
    return cols


def _probe_cost(bench: Benchmark, records: list[dict]) -> dict[str, dict]:
    """Seconds and forward passes per image that scoring took (from the records' ``_probe``)."""
    costs = [r[PROBE] for r in records if isinstance(r.get(PROBE), dict)]
    if not costs:
        return {}
    sec = float(np.mean([c["seconds"] for c in costs]))
    passes = float(np.mean([c["passes"] for c in costs]))
    return {_cost_column(bench): {
        "value": sec, "ci": None, "n": len(costs), "unit": "s",
        "note": f"scoring by {bench.name}: {passes:.0f} forward passes per image"}}


def _diagnostics(infos: list[dict]) -> dict:
    """Per-method summary of per-sample diagnostics: mean of numbers, counts of flags."""
    out: dict[str, Any] = {}
    for key in sorted({k for d in infos for k in d}):
        vals = [d[key] for d in infos if key in d]
        if all(isinstance(v, bool) for v in vals):
            out[key] = {"true": sum(vals), "false": len(vals) - sum(vals)}
        elif all(isinstance(v, (int, float)) for v in vals):
            arr = np.asarray(vals, dtype=float)
            out[key] = {"mean": float(np.nanmean(arr)) if np.isfinite(arr).any() else None,
                        "nan": int((~np.isfinite(arr)).sum())}
    return out
