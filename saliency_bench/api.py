"""The Python door: ``saliency_bench.run(...)`` runs exactly what ``saliency-bench run`` runs (the
same plan, store, heatmap cache and resume) and returns a :class:`Results`.

    import saliency_bench
    res = saliency_bench.run(methods=["grad_cam", my_function], benchmarks="pointing", limit=8)
    res.leaderboard        # one dict per (model, dataset, method)
    res.records            # one dict per scored (model, dataset, method, benchmark, sample)
    res.to_pandas()        # the leaderboard as a DataFrame (pip install 'saliency-bench[pandas]')

A plain function ``fn(model, x, targets, *, param=default)`` passed in ``methods`` is scored as a
heatmap method named after it, for this run only (nothing is registered for later): its code is
part of the run id and the heatmap cache key, so an edited function is computed again.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from . import registry
from .config import RunConfig
from .contracts import HEATMAP, Method, method_from_function

_ALIASES = {"model": "models", "dataset": "datasets", "method": "methods", "benchmark": "benchmarks"}


def _digest(fn: Callable) -> str:
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = repr((code.co_code, code.co_consts)) if code is not None else repr(fn)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Method)) or callable(value):
        return [value]
    return list(value)


def run(methods: Any = None, model: str | Sequence[str] | None = None, dataset: str | Sequence[str] | None = None,
        benchmarks: str | Sequence[str] | None = None, *, console: Any = None, **options: Any) -> "Results":
    """Run methods x models x datasets x benchmarks as ``saliency-bench run`` does.

    ``methods``: names, shell patterns and variant ids (``"gradient,grad_cam"``), functions, or a
    list of them (None: the default selection); ``model``/``dataset``: a name (``"imagenet:/data/..."``)
    or a list; ``benchmarks``: names, patterns, variant ids. ``options``: any other setting of a run,
    as ``--config`` names them (``limit=8``, ``runs_dir="runs"``, ``params={"mask": {"iterations": 100}}``,
    ``batch_size``, ``device``, ``seed``, ``benchmark_options``, ``quiet`` ...).
    """
    from .runner import Runner

    known = {f.name for f in fields(RunConfig)}
    cfg = RunConfig()
    for key, value in options.items():
        key = _ALIASES.get(key, key)
        if key not in known:
            raise TypeError(f"saliency_bench.run() got an unknown setting '{key}' (settings: {', '.join(sorted(known))})")
        setattr(cfg, key, value)
    if model is not None:
        cfg.models = _as_list(model)
    if dataset is not None:
        cfg.datasets = _as_list(dataset)
    if benchmarks is not None:
        cfg.benchmarks = benchmarks
    added: list[tuple[str, Method]] = []
    digests: dict[str, str] = {}
    try:
        if methods is not None:
            names = []
            for m in _as_list(methods):
                if isinstance(m, str):
                    names.append(m)
                    continue
                if isinstance(m, Method):
                    meth = m
                elif callable(m):
                    name = getattr(m, "__name__", "") or "function"
                    if name == "<lambda>":
                        name = "lambda"
                    meth = method_from_function(m, name, HEATMAP)
                    meth = replace(meth, code=_digest(m))
                else:
                    raise TypeError(f"saliency_bench.run(): a method is a name, a function or a Method, not {m!r}")
                if meth.name in registry.methods.names() and registry.methods.get(meth.name) is not meth:
                    raise ValueError(f"a method named '{meth.name}' is already registered "
                                     f"({registry.methods.source(meth.name)}): give your function another name")
                registry.methods.add(meth.name, meth, f"function passed to saliency_bench.run ({_where(m)})")
                added.append((meth.name, meth))
                digests[meth.name] = meth.code or _digest(meth.fn)
                names.append(meth.name)
            cfg.methods = ",".join(names)
        if digests and not cfg.run_id:  # an edited function is another run, not a resumed one
            blob = json.dumps([cfg.result_settings(), digests], sort_keys=True, default=str)
            cfg.run_id = "run-" + hashlib.sha256(blob.encode()).hexdigest()[:10]
        run_dir = Runner(cfg, console=console).run()
    finally:
        for name, meth in added:
            registry.methods.remove(name, meth)
    return Results(run_dir)


def _where(fn: Any) -> str:
    mod = getattr(fn, "__module__", "") or ""
    return f"{mod}.{getattr(fn, '__qualname__', fn)}" if mod else str(getattr(fn, "__qualname__", fn))


class Results:
    """A finished run, read back from its store: the leaderboard and the per-sample records."""

    def __init__(self, run_dir: str | Path) -> None:
        from .leaderboard import load_run

        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self._run = load_run(self.run_dir)
        self.tables = self._run["tables"]

    @property
    def leaderboard(self) -> list[dict]:
        """One row per (model, dataset, method): each column's value, ``<column>_ci`` and
        ``<column>_mark`` ("best", "tie" or ""), the coverage and whether it is a baseline."""
        rows = []
        for t in self.tables:
            comp = t.get("comparisons") or {}
            for r in t["rows"]:
                row: dict[str, Any] = {"model": t["model"], "dataset": t["dataset"], "method": r["method"],
                                       "baseline": r["method"] in (t.get("baselines") or [])}
                for c in t["columns"]:
                    m = r.get(c["key"])
                    if not isinstance(m, dict):
                        continue
                    row[c["key"]] = m.get("value")
                    row[f"{c['key']}_ci"] = m.get("ci")
                    cmp = comp.get(c["key"]) or {}
                    row[f"{c['key']}_mark"] = ("best" if cmp.get("best") == r["method"] else
                                               "tie" if r["method"] in (cmp.get("ties") or []) else "")
                cov = r.get("coverage") or {}
                row.update(scored=cov.get("scored"), total=cov.get("total"))
                rows.append(row)
        return rows

    @property
    def records(self) -> list[dict]:
        """One dict per scored sample of every (model, dataset, method, benchmark): the
        benchmark's record with the sample's id, category and split."""
        from .store import Store

        store = Store(self.run_dir.parent / "store.sqlite", create=False)
        try:
            out = []
            benches = self._run["settings"].get("benchmarks_resolved") or []
            for model, dataset in store.pairs(self.run_id):
                meta = store.samples(self.run_id, model, dataset)
                for method in self._run["settings"].get("methods_resolved") or {}:
                    for bench in benches:
                        for sid, rec in store.records(self.run_id, model, dataset, method, bench).items():
                            s = meta.get(sid, {})
                            out.append({"model": model, "dataset": dataset, "method": method, "benchmark": bench,
                                        "sample": sid, "category": s.get("category"), "split": s.get("split"),
                                        **rec})
            return out
        finally:
            store.close()

    def to_pandas(self, what: str = "leaderboard"):
        """The leaderboard (or ``"records"``) as a pandas DataFrame (pandas is an optional extra)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - pandas is installed where the tests run
            raise ImportError("to_pandas() needs pandas: pip install 'saliency-bench[pandas]'") from e
        if what not in ("leaderboard", "records"):
            raise ValueError(f"to_pandas(): 'leaderboard' or 'records', not {what!r}")
        return pd.DataFrame(self.leaderboard if what == "leaderboard" else self.records)

    def compare(self, *others: "Results | str | Path") -> dict:
        """The table of ``saliency-bench compare`` between this run and others."""
        from .compare import compare_runs

        return compare_runs([self.run_dir] + [o.run_dir if isinstance(o, Results) else Path(o) for o in others])

    def __str__(self) -> str:
        from rich.console import Console

        from .leaderboard import print_tables

        buf = io.StringIO()
        print_tables(self._run, Console(file=buf, width=100, emoji=False, color_system=None))
        return buf.getvalue()

    def __repr__(self) -> str:
        return f"<saliency_bench.Results {self.run_id}: {len(self.leaderboard)} rows, {self.run_dir}>"
