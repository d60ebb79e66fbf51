"""A run's store rows -> the run the report shows: its settings, and per (model, dataset) a table
of methods by columns, with coverage, protocols and skipped benchmarks.

The columns are those the benchmarks declared (``Row.COLUMNS`` rows, written by the summary).
A run written before benchmarks declared them is brought up to date by :func:`migrate`, the one
place that knows older runs (with :func:`saliency_bench.store.migrate_settings`, which the
summary also reads settings through): nothing after it has a fallback.
"""
from __future__ import annotations

from pathlib import Path

from ..contracts.benchmark import Row
from ..store import Store, migrate_settings


def open_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """The run's ``run_info`` and its metrics rows, read from the store beside ``run_dir``."""
    run_dir = Path(run_dir)
    store_path = run_dir.parent / "store.sqlite"
    if not store_path.is_file():
        raise FileNotFoundError(f"no results store at {store_path}: is {run_dir} a run directory (runs/<id>)?")
    store = Store(store_path, create=False)
    try:
        info = store.run_info(run_dir.name)
        if info is None:
            raise FileNotFoundError(f"run '{run_dir.name}' is not in {store_path}")
        return info, store.metrics(run_dir.name)
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# The one migration
# --------------------------------------------------------------------------------------------
def migrate(info: dict, rows: list[dict]) -> tuple[dict, list[dict]]:
    """An older run's settings and rows in today's form: every benchmark that has metrics gets
    the ``Row.COLUMNS`` row today's code would write for it (the registered benchmark's
    declaration with the run's options; a benchmark no longer registered: its metric keys as
    they are). A run that has them all comes back unchanged."""
    info = {**info, "settings": migrate_settings(info["settings"])}
    declared = {(r["model"], r["dataset"], r["benchmark"]) for r in rows if r["method"] == Row.COLUMNS}
    metric_keys: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        if r["method"] in Row.KINDS or r["benchmark"] == Row.COVERAGE:
            continue
        key = (r["model"], r["dataset"], r["benchmark"])
        if key not in declared:
            keys = metric_keys.setdefault(key, [])
            keys += [k for k, v in (r["metrics"] or {}).items() if isinstance(v, dict) and k not in keys]
    if not metric_keys:
        return info, rows
    settings = info["settings"]
    added = []
    for (model, dataset, bench), keys in metric_keys.items():
        cols = _declared_columns(bench, settings)
        if cols is None:
            cols = [{"key": k, "title": k, "short": k, "better": "higher", "interval": True, "benchmark": bench}
                    for k in keys]
        added.append({"model": model, "dataset": dataset, "method": Row.COLUMNS, "benchmark": bench,
                      "metrics": {"columns": cols}})
    return info, rows + added


def _declared_columns(name: str, settings: dict) -> list[dict] | None:
    """The columns the registered benchmark ``name`` declares with the run's options; None if
    it is not registered (a plugin not loaded) or does not take those options any more."""
    from ..plan import make_benchmark

    options = (settings.get("benchmark_options_resolved") or {}).get(name, {})
    try:
        return make_benchmark(name, int(settings.get("seed", 0)), options).column_info()
    except Exception:
        return None


def baselines_of(settings: dict, names: list[str]) -> list[str]:
    """The baselines among a run's methods ``names``: those its plan marked, or (a run written
    before methods declared it) the centre and its variants."""
    plan = settings.get("methods_plan") or []
    if any("baseline" in row for row in plan):
        marked = {row["name"] for row in plan if row.get("baseline")}
    else:
        marked = {row["name"] for row in plan if "center" in (row.get("name"), row.get("base"))}
        marked |= {n for n in names if n == "center" or n.startswith("center[")}
    return [n for n in names if n in marked]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _column(c: dict, bench: str) -> dict:
    """A declared column with every field the report reads (a plugin may declare only the key)."""
    col = {"title": c["key"], "short": c["key"], "better": "higher", "interval": True, **c}
    col["benchmark"] = col.get("benchmark") or bench
    return col


def load_run(run_dir: Path) -> dict:
    """Everything the leaderboard shows, read from the store beside the run directory."""
    from .gallery import load_gallery

    run_dir = Path(run_dir)
    info, rows = migrate(*open_run(run_dir))
    tables: dict[tuple[str, str], dict[str, dict]] = {}
    model_fb: dict[tuple[str, str], dict] = {}
    protocols: dict[tuple[str, str], dict[str, str]] = {}
    declared: dict[tuple[str, str], dict[str, list[dict]]] = {}  # (model, dataset) -> benchmark -> columns
    skipped: dict[tuple[str, str], dict[str, str]] = {}  # (model, dataset) -> benchmark -> why
    comparisons: dict[tuple[str, str], dict[str, dict]] = {}  # (model, dataset) -> column -> comparison
    subsets: dict[tuple[str, str], dict[str, str]] = {}  # (model, dataset) -> benchmark -> which part
    for r in rows:
        key = (r["model"], r["dataset"])
        kind, metrics = r["method"], r["metrics"] or {}
        if kind == Row.MODEL:
            model_fb[key] = metrics
        elif kind == Row.PROTOCOL:
            protocols.setdefault(key, {}).update({k: str(v) for k, v in metrics.items()})
        elif kind == Row.SKIPPED:  # a benchmark the dataset cannot feed, and why
            skipped.setdefault(key, {})[r["benchmark"]] = str(metrics.get("why", ""))
        elif kind == Row.COMPARE:  # the paired comparisons of a benchmark's columns
            comparisons.setdefault(key, {}).update(metrics)
        elif kind == Row.SUBSET:  # a benchmark that scored part of the dataset, which part
            subsets.setdefault(key, {})[r["benchmark"]] = str(metrics.get("note", ""))
        elif kind == Row.COLUMNS:
            declared.setdefault(key, {})[r["benchmark"]] = list(metrics.get("columns") or [])
        elif r["benchmark"] == Row.COVERAGE:
            tables.setdefault(key, {}).setdefault(kind, {})["coverage"] = metrics
        else:
            tables.setdefault(key, {}).setdefault(kind, {}).update(
                {k: v for k, v in metrics.items() if isinstance(v, dict)})
    settings = info["settings"]
    order = settings.get("methods_resolved", {})
    bench_order = settings["benchmarks_resolved"]
    out, all_columns = [], []
    for (model, dataset), methods in tables.items():
        names = [m for m in order if m in methods] + sorted(m for m in methods if m not in order)
        decl = declared.get((model, dataset), {})
        cols: list[dict] = []
        for b in [b for b in bench_order if b in decl] + [b for b in decl if b not in bench_order]:
            cols += [_column(c, b) for c in decl[b]
                     if isinstance(c, dict) and c.get("key") and all(c["key"] != x["key"] for x in cols)]
        all_columns += [c for c in cols if all(c["key"] != x["key"] for x in all_columns)]
        out.append({"model": model, "dataset": dataset, "model_forward_backward": model_fb.get((model, dataset)),
                    "protocols": protocols.get((model, dataset), {}), "columns": cols,
                    "skipped": skipped.get((model, dataset), {}),
                    "comparisons": comparisons.get((model, dataset), {}),
                    "subsets": subsets.get((model, dataset), {}),
                    "baselines": baselines_of(settings, names),
                    "rows": [{"method": m, **methods[m]} for m in names]})
    from .curves import read_curves

    curves = read_curves(run_dir.parent / "store.sqlite", run_dir.name, settings,
                         {(t["model"], t["dataset"]): [r["method"] for r in t["rows"]] for t in out})
    for t in out:
        t["curves"] = curves.get((t["model"], t["dataset"]), {})
    return {"run_id": run_dir.name, "settings": settings, "meta": info["meta"], "tables": out,
            "finished": info.get("finished") is not None, "columns": all_columns,
            "gallery": load_gallery(run_dir)}

