"""The table model every writer shares: which columns a table shows, how a score reads, the
marks on a cell, and the notes under a table (alpha*, coverage, protocols, settings).

A table (from :func:`~saliency_bench.report.load.load_run`) is ``{"model", "dataset",
"columns", "rows", "protocols", "skipped", "model_forward_backward"}``; a row is ``{"method",
"coverage", column key: metric dict}``.

**Marks.** A cell may carry marks (``"best"``); each writer shows a mark its own way (HTML: a
class of that name). The marks of a table come from the functions in :data:`MARKERS`, each
``marker(table, columns) -> {(method, column key): {mark, ...}}``: a new kind of mark is one
more function there, and every writer shows it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def fmt(metric: dict | None, ci: bool = True) -> str:
    """A score as the text tables print: the value, its interval, the alpha* it was read at."""
    if not metric or metric.get("value") is None:
        return "–"
    v = metric["value"]
    s = fmt_value(v)
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        s += f" [{lo:.1f}, {hi:.1f}]" if abs(v) >= 10 else f" [{lo:.3g}, {hi:.3g}]"
    a = alpha(metric)
    if a:
        s += f" ({a})"
    return s


def fmt_value(v: float) -> str:
    return f"{v:.1f}" if abs(v) >= 10 or v == 0 else f"{v:.3g}"


def alpha(metric: dict) -> str:
    """``alpha*=0.35`` from a localization note (its explanation goes under the table)."""
    note = metric.get("note", "")
    return note.split(" (", 1)[0] if note.startswith("alpha*") else ""


def used_columns(table: dict) -> list[dict]:
    """The table's columns that some method has a value in."""
    return [c for c in table["columns"] if any((r.get(c["key"]) or {}).get("value") is not None
                                               for r in table["rows"])]


def cell(row: dict, col: dict, ci: bool = True) -> str:
    return fmt(row.get(col["key"]), ci=ci and bool(col.get("interval", True)))


# --------------------------------------------------------------------------------------------
# Marks
# --------------------------------------------------------------------------------------------
Marks = dict[tuple[str, str], set[str]]


def best_value(table: dict, cols: list[dict]) -> Marks:
    """``best`` on the best value of each column (lowest where lower is better)."""
    out: Marks = {}
    for c in cols:
        vals = [(r["method"], (r.get(c["key"]) or {}).get("value")) for r in table["rows"]]
        vals = [(m, v) for m, v in vals if v is not None]
        if vals:
            best = (min if c.get("better") == "lower" else max)(v for _, v in vals)
            for m, v in vals:
                if v == best:
                    out.setdefault((m, c["key"]), set()).add("best")
    return out


def paired_best(table: dict, cols: list[dict]) -> Marks:
    """``best`` on the best method of each column that is not a baseline, ``tie`` on every method
    the paired test cannot tell from it (docs/PROTOCOLS.md §9; :func:`saliency_bench.compare.paired_marks`)."""
    from ..compare import paired_marks

    return paired_marks(table, cols)


MARKERS: list[Callable[[dict, list[dict]], Marks]] = [paired_best]
# How marks read, who is a baseline, which part of a dataset a benchmark scored: the comparisons'
# words (saliency_bench.compare), re-exported for the writers.
from ..compare import mark_legend, mark_text, method_label, subset_notes  # noqa: E402


def marks_of(table: dict, cols: list[dict]) -> Marks:
    """Every marker's marks on the table's cells, merged."""
    out: Marks = {}
    for marker in MARKERS:
        for k, ms in marker(table, cols).items():
            out.setdefault(k, set()).update(ms)
    return out


@dataclass(frozen=True)
class Cell:
    """One score cell: its metric (a dict, possibly empty), column and marks."""

    metric: dict
    column: dict
    marks: frozenset[str] = frozenset()

    @property
    def value(self) -> float | None:
        return self.metric.get("value")

    @property
    def interval(self) -> list | None:
        """The cell's interval where its column has one (a spread of calls is not shown)."""
        ci = self.metric.get("ci") if self.column.get("interval", True) else None
        return ci if ci and None not in ci[:2] else None

    def text(self, ci: bool = True) -> str:
        """The score as text, its marks after it (``41.4 [36.0, 47.1] ●``)."""
        s = fmt(self.metric, ci=ci and bool(self.column.get("interval", True)))
        m = mark_text(self.marks)
        return f"{s} {m}" if m and self.value is not None else s


def cells(table: dict, cols: list[dict]) -> list[list[Cell]]:
    """The score cells of a table, row by row, with their marks."""
    marks = marks_of(table, cols)
    return [[Cell(r.get(c["key"]) or {}, c, frozenset(marks.get((r["method"], c["key"]), ())))
             for c in cols] for r in table["rows"]]


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------
def table_notes(table: dict) -> list[str]:
    """The distinct explanations behind the alpha* of a table (how alpha* was chosen)."""
    seen: list[str] = []
    for r in table["rows"]:
        for col in table["columns"]:
            note = (r.get(col["key"]) or {}).get("note", "")
            if note.startswith("alpha*") and " (" in note:
                why = note.split(" (", 1)[1].rstrip(")")
                if why not in seen:
                    seen.append(why)
    return seen


def protocol_notes(table: dict, cols: list[dict]) -> list[str]:
    """``Header: protocol`` for each shown column whose benchmark says which protocol it follows."""
    p = table.get("protocols") or {}
    return [f"{c['title']}: {p[c['key']]}" for c in cols if p.get(c["key"])]


def coverage(row: dict, short: bool = False) -> str:
    c = row.get("coverage")
    if not c:
        return "–"
    s = f"{c['scored']}/{c['total']}"
    if short:
        return s
    extra = []
    if c.get("failed"):
        extra.append(f"{c['failed']} failed")
    if c.get("not_evaluable"):
        extra.append(f"{c['not_evaluable']} not evaluable")
    unconverged = ((c.get("diagnostics") or {}).get("converged") or {}).get("false")
    if unconverged:
        extra.append(f"{unconverged} not converged")
    return s + (f" ({', '.join(extra)})" if extra else "")


def why_not_all(row: dict) -> str | None:
    """One line on why a method's row rests on fewer samples than it had (its first failure)."""
    c = row.get("coverage") or {}
    if not c or (not c.get("failed") and not c.get("not_evaluable") and c.get("scored") == c.get("total")):
        return None
    parts = []
    if c.get("failed"):
        first = (c.get("failures") or [{}])[0]
        reason = f": {first.get('id')}: {first.get('reason')}" if first.get("reason") else ""
        parts.append(f"{c['failed']} failed{reason}")
    if c.get("not_evaluable"):
        parts.append(f"{c['not_evaluable']} not evaluable")
    if not c.get("total"):
        parts.append("no sample to score")
    return f"{row['method']} {c.get('scored', 0)}/{c.get('total', 0)}: " + "; ".join(parts) if parts else None


def empty_notes(table: dict) -> list[str]:
    """Why a table lacks some columns: benchmarks skipped for the dataset, and columns that no
    method has a value in, with the note their benchmark gave and how many samples it had."""
    out = [f"{b}: skipped: {why}" for b, why in (table.get("skipped") or {}).items()]
    total = max([(r.get("coverage") or {}).get("total") or 0 for r in table["rows"]] + [0])
    groups: dict[tuple[str, str], list[str]] = {}
    counts: dict[tuple[str, str], int] = {}
    for c in table["columns"]:
        ms = [r.get(c["key"]) for r in table["rows"] if isinstance(r.get(c["key"]), dict)]
        if not ms or any(m.get("value") is not None for m in ms):
            continue
        notes = sorted({str(m.get("note") or "no value") for m in ms})
        key = (str(c.get("benchmark") or ""), "; ".join(notes))
        groups.setdefault(key, []).append(c["title"])
        counts[key] = max([counts.get(key, 0)] + [int(m.get("n") or 0) for m in ms])
    for (bench, note), titles in groups.items():
        out.append(f"{bench}: no {', '.join(titles)}: {note} ({counts[(bench, note)]}/{total} samples)")
    return out


def coverage_notes(table: dict) -> list[str]:
    """The coverage lines under a table: rows on fewer samples, then empty columns."""
    return [w for w in map(why_not_all, table["rows"]) if w] + empty_notes(table)


def settings_lines(run: dict) -> list[str]:
    s, m = run["settings"], run["meta"]
    lines = [
        f"run `{run['run_id']}`; saliency-bench {m.get('saliency_bench')}, torch {m.get('torch')}, "
        f"python {m.get('python')}, commit {m.get('git_commit') or 'unknown'}",
        f"device {m.get('device')} ({m.get('device_name')}), batch size {s.get('batch_size')}, seed {s.get('seed')}",
        f"models {', '.join(s.get('models', []))}; datasets {', '.join(s.get('datasets', []))}"
        + (f" (limit {s['limit']} samples)" if s.get("limit") else ""),
    ]
    bopts = s.get("benchmark_options") or {}
    if bopts:
        lines.append("benchmark options: " + "; ".join(
            f"{k}({', '.join(f'{a}={b}' for a, b in v.items())})" for k, v in bopts.items()))
    params = s.get("methods_resolved", {})
    if any(params.values()):
        lines.append("method parameters: " + "; ".join(
            f"{k}({', '.join(f'{a}={b}' for a, b in v.items())})" for k, v in params.items() if v))
    lines.append("scores: mean [95% bootstrap interval]; loc. error at alpha* chosen on the held-out split")
    if run.get("finished") is False:
        lines.append("UNFINISHED run: the scores summarise the samples it had done when it stopped "
                     "(coverage counts them); running its command again completes it")
    return lines
