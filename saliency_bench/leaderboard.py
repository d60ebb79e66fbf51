"""The leaderboard: Markdown, CSV, JSON and a self-contained HTML page from a run's store rows.

Rows are methods, one table per (model, dataset); every score carries its 95% bootstrap
interval where the benchmark gives one, and every row its coverage (samples scored / failed /
not evaluable), so a reader sees both when two methods are not distinguishable and when a
method's score rests on fewer samples.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import textwrap
from pathlib import Path
from typing import Any

from .compare import (COMPARE_ROW, baselines_of, mark_legend, mark_text, method_label, paired_marks,
                      pairwise_matrix, subset_notes)
from .store import Store

# The fallback columns, for runs whose store has no ``__columns__`` rows (runs written before the
# benchmarks declared their columns, and the committed leaderboards): (column, header, benchmark).
COLUMNS: list[tuple[str, str, str]] = [
    ("pointing_all", "Pointing all (%)", "pointing"),
    ("pointing_difficult", "Pointing difficult (%)", "pointing"),
    ("loc_error_value", "Loc. error value (%)", "localization"),
    ("loc_error_energy", "Loc. error energy (%)", "localization"),
    ("loc_error_mean", "Loc. error mean (%)", "localization"),
    ("maxboxacc_v2", "MaxBoxAccV2 (%)", "localization"),
    ("images_per_s", "Images/s", "runtime"),
    ("passes_per_image", "Passes/image", "runtime"),
]
SHORT = {"pointing_all": "Point.all", "pointing_difficult": "Point.dif", "loc_error_value": "Loc.val",
         "loc_error_energy": "Loc.en", "loc_error_mean": "Loc.mean", "maxboxacc_v2": "MaxBox",
         "images_per_s": "img/s", "passes_per_image": "pass/img"}
BUILTIN = {"pointing", "localization", "runtime"}
LOWER_IS_BETTER = {"loc_error_value", "loc_error_energy", "loc_error_mean", "passes_per_image"}
NO_INTERVAL = {"images_per_s", "passes_per_image"}  # a spread of calls, not a confidence interval
COLUMNS_ROW = "__columns__"  # the metrics row in which a benchmark declares its columns
SPEED = "images_per_s"  # the column the score-against-speed plots take their x from


def _fallback_column(key: str, benchmark: str) -> dict:
    """A column's description for a run that did not write one: the built-in table, else the key."""
    base, sep, suffix = key.partition("[")
    known = {c: (h, b) for c, h, b in COLUMNS}
    title = known[base][0] + (f" [{suffix}" if sep else "") if base in known else key
    return {"key": key, "title": title, "short": SHORT.get(base, key) + (f"[{suffix}" if sep else ""),
            "better": "lower" if base in LOWER_IS_BETTER else "higher", "interval": base not in NO_INTERVAL,
            "benchmark": benchmark}


def _table_columns(declared: dict[str, list[dict]], bench_order: list[str], seen: dict[str, str]) -> list[dict]:
    """The columns of one table: those its benchmarks declared (benchmarks in the run's order,
    columns in each benchmark's order), then, for metrics no benchmark declared (an older run),
    the built-in columns in their usual order and any plugin benchmark's metrics."""
    cols: list[dict] = []
    order = [b for b in bench_order if b in declared] + [b for b in declared if b not in bench_order]
    for b in order:
        for c in declared[b]:
            if isinstance(c, dict) and c.get("key") and all(c["key"] != x["key"] for x in cols):
                col = {"title": c["key"], "short": c["key"], "better": "higher", "interval": True, **c}
                col.setdefault("benchmark", b)
                col["benchmark"] = col["benchmark"] or b
                cols.append(col)
    have = {c["key"] for c in cols}
    for key, _, bench in COLUMNS:
        if key in seen and key not in have:
            cols.append(_fallback_column(key, seen[key]))
            have.add(key)
    for key, bench in seen.items():  # a built-in benchmark's other metrics stay in the json
        if key not in have and bench not in BUILTIN:
            cols.append(_fallback_column(key, bench))
            have.add(key)
    return cols


def load_run(run_dir: Path) -> dict:
    """Everything the leaderboard shows, read from the store beside the run directory."""
    run_dir = Path(run_dir)
    store_path = run_dir.parent / "store.sqlite"
    if not store_path.is_file():
        raise FileNotFoundError(f"no results store at {store_path}: is {run_dir} a run directory (runs/<id>)?")
    store = Store(store_path)
    try:
        run_id = run_dir.name
        info = store.run_info(run_id)
        if info is None:
            raise FileNotFoundError(f"run '{run_id}' is not in {store_path}")
        rows = store.metrics(run_id)
    finally:
        store.close()
    tables: dict[tuple[str, str], dict[str, dict]] = {}
    extra: dict[str, str] = {}  # column -> plugin benchmark
    model_fb: dict[tuple[str, str], dict] = {}
    protocols: dict[tuple[str, str], dict[str, str]] = {}
    declared: dict[tuple[str, str], dict[str, list[dict]]] = {}  # (model, dataset) -> benchmark -> columns
    seen: dict[tuple[str, str], dict[str, str]] = {}  # (model, dataset) -> metric key -> benchmark
    skipped: dict[tuple[str, str], dict[str, str]] = {}  # (model, dataset) -> benchmark -> why
    comparisons: dict[tuple[str, str], dict[str, dict]] = {}  # (model, dataset) -> column -> comparison
    subsets: dict[tuple[str, str], dict[str, str]] = {}  # (model, dataset) -> benchmark -> which part
    for r in rows:
        key = (r["model"], r["dataset"])
        if r["method"] == "__model__":
            model_fb[key] = r["metrics"]
            continue
        if r["method"] == "__protocol__":
            protocols.setdefault(key, {}).update({k: str(v) for k, v in r["metrics"].items()})
            continue
        if r["method"] == "__skipped__":  # a benchmark the dataset cannot feed, and why
            skipped.setdefault(key, {})[r["benchmark"]] = str((r["metrics"] or {}).get("why", ""))
            continue
        if r["method"] == "__subset__":  # a benchmark that scored part of the dataset, which part
            subsets.setdefault(key, {})[r["benchmark"]] = str((r["metrics"] or {}).get("note", ""))
            continue
        if r["method"] == COMPARE_ROW:  # the paired comparisons of a benchmark's columns
            comparisons.setdefault(key, {}).update(r["metrics"] or {})
            continue
        if r["method"] == COLUMNS_ROW:
            declared.setdefault(key, {})[r["benchmark"]] = list((r["metrics"] or {}).get("columns") or [])
            continue
        entry = tables.setdefault(key, {}).setdefault(r["method"], {})
        if r["benchmark"] == "coverage":
            entry["coverage"] = r["metrics"]
        else:
            metrics = {k: v for k, v in r["metrics"].items() if isinstance(v, dict)}
            entry.update(metrics)
            for k in metrics:
                seen.setdefault(key, {}).setdefault(k, r["benchmark"])
            if r["benchmark"] not in BUILTIN:  # a plugin benchmark's metrics become columns too
                extra.update({k: r["benchmark"] for k in metrics})
    out = []
    order = info["settings"].get("methods_resolved", {})
    bench_order = [b if isinstance(b, str) else str(b) for b in info["settings"].get("benchmarks_resolved") or []]
    all_columns: list[dict] = []
    for (model, dataset), methods in tables.items():
        names = [m for m in order if m in methods] + sorted(m for m in methods if m not in order)
        cols = _table_columns(declared.get((model, dataset), {}), bench_order, seen.get((model, dataset), {}))
        all_columns += [c for c in cols if all(c["key"] != x["key"] for x in all_columns)]
        out.append({"model": model, "dataset": dataset, "model_forward_backward": model_fb.get((model, dataset)),
                    "protocols": protocols.get((model, dataset), {}), "columns": cols,
                    "skipped": skipped.get((model, dataset), {}),
                    "comparisons": comparisons.get((model, dataset), {}),
                    "subsets": subsets.get((model, dataset), {}),
                    "baselines": baselines_of(info["settings"], names),
                    "rows": [{"method": m, **methods[m]} for m in names]})
    return {"run_id": run_id, "settings": info["settings"], "meta": info["meta"], "tables": out,
            "finished": info.get("finished") is not None, "columns": all_columns,
            "gallery": _gallery(run_dir), "extra_columns": extra}


def _columns_of(table: dict, run: dict | None = None) -> list[dict]:
    """A table's columns (a run dict built by an older load_run has none: the fallback)."""
    if table.get("columns") is not None:
        return table["columns"]
    seen = {c: b for c, _, b in COLUMNS}
    seen.update((run or {}).get("extra_columns") or {})
    return [_fallback_column(k, b) for k, b in seen.items()]


def _fmt(metric: dict | None, ci: bool = True) -> str:
    if not metric or metric.get("value") is None:
        return "–"
    v = metric["value"]
    s = f"{v:.1f}" if abs(v) >= 10 or v == 0 else f"{v:.3g}"
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        s += f" [{lo:.1f}, {hi:.1f}]" if abs(v) >= 10 else f" [{lo:.3g}, {hi:.3g}]"
    alpha = _alpha(metric)
    if alpha:
        s += f" ({alpha})"
    return s


def _alpha(metric: dict) -> str:
    """``alpha*=0.35`` from a localization note (its explanation goes under the table)."""
    note = metric.get("note", "")
    return note.split(" (", 1)[0] if note.startswith("alpha*") else ""


def _table_notes(table: dict) -> list[str]:
    """The distinct explanations behind the alpha* of a table (how alpha* was chosen)."""
    seen: list[str] = []
    for r in table["rows"]:
        for col in _columns_of(table):
            note = (r.get(col["key"]) or {}).get("note", "")
            if note.startswith("alpha*") and " (" in note:
                why = note.split(" (", 1)[1].rstrip(")")
                if why not in seen:
                    seen.append(why)
    return seen


def _protocol_notes(table: dict, cols: list[dict]) -> list[str]:
    """``Header: protocol`` for each shown column whose benchmark says which protocol it follows."""
    p = table.get("protocols") or {}
    return [f"{c['title']}: {p[c['key']]}" for c in cols if p.get(c["key"])]


def _coverage(row: dict, short: bool = False) -> str:
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


def _why_not_all(row: dict) -> str | None:
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
    for c in _columns_of(table):
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


def _used_columns(table: dict, extra: dict[str, str] | None = None) -> list[dict]:
    """The table's columns that some method has a value in."""
    cols = table.get("columns")
    if cols is None:
        cols = _columns_of(table, {"extra_columns": extra or {}})
    return [c for c in cols if any((r.get(c["key"]) or {}).get("value") is not None for r in table["rows"])]


def _cell(row: dict, col: dict, ci: bool = True, marks: dict | None = None) -> str:
    """A score cell's text, with its marks (best, tie: :func:`saliency_bench.compare.paired_marks`)."""
    s = _fmt(row.get(col["key"]), ci=ci and bool(col.get("interval", True)))
    m = mark_text((marks or {}).get((row["method"], col["key"]), ()))
    return f"{s} {m}" if m and s != "–" else s


def _settings_lines(run: dict) -> list[str]:
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


# --------------------------------------------------------------------------------------------
def to_markdown(run: dict) -> str:
    out = ["# saliency-bench leaderboard", ""]
    for t in run["tables"]:
        cols = _used_columns(t, run.get("extra_columns"))
        out += [f"## {t['model']} on {t['dataset']}", ""]
        out.append("| Method | " + " | ".join(c["title"] for c in cols) + " | Coverage |")
        out.append("|---|" + "---|" * len(cols) + "---|")
        marks = paired_marks(t, cols)
        for r in t["rows"]:
            cells = [_cell(r, c, marks=marks) for c in cols]
            out.append(f"| {method_label(t, r['method'])} | " + " | ".join(cells) + f" | {_coverage(r)} |")
        fb = t.get("model_forward_backward")
        if fb:
            out += ["", f"Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}."]
        legend = mark_legend(t, cols)
        out += [""] + ([f"{legend}."] if legend else []) + [f"{n}." for n in subset_notes(t)]
        out += [f"alpha*: {why}." for why in _table_notes(t)]
        why = [w for w in map(_why_not_all, t["rows"]) if w] + empty_notes(t)
        if why:
            out += ["", "Coverage:", ""] + [f"- {w}" for w in why]
        notes = _protocol_notes(t, cols)
        if notes:
            out += ["", "Protocols:", ""] + [f"- {n}" for n in notes]
        out.append("")
    out += ["## Settings", ""] + [f"- {line}" for line in _settings_lines(run)] + [""]
    return "\n".join(out)


def to_csv(run: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["model", "dataset", "method"]
    columns = run.get("columns")
    if columns is None:
        columns = _columns_of({}, run)
    for c in columns:
        k = c["key"]
        header += [k, f"{k}_ci_low", f"{k}_ci_high", f"{k}_note"]
    header += ["scored", "failed", "not_evaluable", "total", "first_failure"]
    w.writerow(header)
    for t in run["tables"]:
        for r in t["rows"]:
            row = [t["model"], t["dataset"], r["method"]]
            for c in columns:
                m = r.get(c["key"]) or {}
                ci = m.get("ci") or [None, None]
                row += [m.get("value"), ci[0], ci[1], m.get("note", "")]
            cov = r.get("coverage") or {}
            first = (cov.get("failures") or [{}])[0]
            row += [cov.get("scored"), cov.get("failed"), cov.get("not_evaluable"), cov.get("total"),
                    f"{first['id']}: {first['reason']}" if first.get("reason") else ""]
            w.writerow(row)
    return buf.getvalue()


def to_json(run: dict) -> str:
    data = {k: v for k, v in run.items() if k != "gallery"}
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def _gallery(run_dir: Path) -> dict:
    """{(model, dataset): {sample: {method: jpeg bytes}}} from run_dir/gallery."""
    out: dict[str, dict[str, dict[str, bytes]]] = {}
    root = run_dir / "gallery"
    for f in sorted(root.glob("*/*/*.jpg")) if root.is_dir() else []:
        sample, _, method = f.stem.partition("__")
        key = f"{f.parent.parent.name} on {f.parent.name}"
        out.setdefault(key, {}).setdefault(sample, {})[method] = f.read_bytes()
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3;cursor:pointer}
td:first-child,th:first-child{text-align:left}.ci{color:#777;font-size:85%}.best{font-weight:bold}
.tie{font-weight:600}.mark{color:#1f4e8c}.baseline td:first-child{font-style:italic;color:#555}
.marks{font-size:90%;color:#444}table.pairs td,table.pairs th{font-size:85%;cursor:default}table.pairs .sig{font-weight:bold}
.gallery td{text-align:center;font-size:80%;vertical-align:top}.gallery img{height:110px}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0}.plots figcaption{font-size:85%;color:#555}
svg.speed text{font-size:10px;font-family:system-ui,sans-serif}svg.speed .axis{stroke:#888}
svg.speed .grid{stroke:#eee}svg.speed .bar{stroke:#4a7ab5;stroke-width:1.5}svg.speed .pt{fill:#1f4e8c}"""
_JS = """document.querySelectorAll('table.lb th').forEach((th,i)=>th.addEventListener('click',()=>{
const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort((a,b)=>{const x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;const fx=parseFloat(x),fy=parseFloat(y);
if(isNaN(fx)&&isNaN(fy))return (x||'').localeCompare(y||'')*(asc?1:-1);if(isNaN(fx))return 1;if(isNaN(fy))return -1;
return (fx-fy)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r))}));"""


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    import math

    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _speed_columns(table: dict) -> tuple[dict | None, list[dict]]:
    """The images/s column of a table and the score columns to plot against it."""
    cols = _used_columns(table)
    speed = next((c for c in cols if c["key"].partition("[")[0] == SPEED), None)
    if speed is None:
        return None, []
    bench = speed.get("benchmark")
    return speed, [c for c in cols if c.get("benchmark") != bench and c is not speed]


def speed_plot_svg(table: dict, col: dict, speed: dict, width: int = 440, height: int = 300) -> str:
    """An inline SVG: one point per method at (images/s on a log axis, score), the 95% interval
    as a vertical bar, the method's name beside it. Drawn here, without scripts or a network."""
    import math

    e = html.escape
    pts = []
    for r in table["rows"]:
        m, s = r.get(col["key"]) or {}, r.get(speed["key"]) or {}
        v, x = m.get("value"), s.get("value")
        if v is None or x is None or not (x > 0) or not math.isfinite(v):
            continue
        ci = m.get("ci") if col.get("interval", True) else None
        lo, hi = (ci[0], ci[1]) if ci and None not in ci[:2] else (v, v)
        pts.append((r["method"], math.log10(x), x, v, lo, hi))
    if not pts:
        return ""
    left, right, top, bottom = 52, 18, 14, 40
    xs = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1:  # at least a decade, centred
        mid = (x0 + x1) / 2
        x0, x1 = mid - 0.5, mid + 0.5
    pad = 0.08 * (x1 - x0)
    x0, x1 = x0 - pad, x1 + pad
    y0, y1 = min(p[4] for p in pts), max(p[5] for p in pts)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    ypad = 0.08 * (y1 - y0)
    y0, y1 = y0 - ypad, y1 + ypad
    pw, ph = width - left - right, height - top - bottom

    def X(lx: float) -> float:
        return left + (lx - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    out = [f"<svg class='speed' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='{e(col['title'])} against images/s'>"]
    for t in _nice_ticks(y0, y1):
        y = Y(t)
        out.append(f"<line class='grid' x1='{left}' x2='{left + pw}' y1='{y:.1f}' y2='{y:.1f}'/>"
                   f"<text x='{left - 4}' y='{y + 3:.1f}' text-anchor='end'>{t:g}</text>")
    decades = range(math.ceil(x0), math.floor(x1) + 1)
    for d in decades:
        for k in ((1, 2, 5) if len(decades) <= 3 else (1,)):
            lx = d + math.log10(k)
            if x0 <= lx <= x1:
                out.append(f"<line class='grid' x1='{X(lx):.1f}' x2='{X(lx):.1f}' y1='{top}' y2='{top + ph}'/>"
                           f"<text x='{X(lx):.1f}' y='{top + ph + 13}' text-anchor='middle'>{k * 10.0 ** d:g}</text>")
    out.append(f"<line class='axis' x1='{left}' x2='{left + pw}' y1='{top + ph}' y2='{top + ph}'/>"
               f"<line class='axis' x1='{left}' x2='{left}' y1='{top}' y2='{top + ph}'/>"
               f"<text x='{left + pw / 2:.1f}' y='{height - 6}' text-anchor='middle'>images/s (log scale)</text>"
               f"<text transform='translate(12,{top + ph / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{e(col['title'])}</text>")
    for name, lx, x, v, lo, hi in pts:
        cx, cy = X(lx), Y(v)
        tip = f"{name}: {v:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if hi > lo else "") + f" at {x:.3g} images/s"
        anchor, dx = ("end", -6) if cx > left + 0.7 * pw else ("start", 6)
        out.append(f"<g class='method' data-method='{e(name)}'><title>{e(tip)}</title>"
                   f"<line class='bar' x1='{cx:.1f}' x2='{cx:.1f}' y1='{Y(hi):.1f}' y2='{Y(lo):.1f}'/>"
                   f"<circle class='pt' cx='{cx:.1f}' cy='{cy:.1f}' r='3.5'/>"
                   f"<text x='{cx + dx:.1f}' y='{cy - 4:.1f}' text-anchor='{anchor}'>{e(name)}</text></g>")
    out.append("</svg>")
    return "".join(out)


def _matrices(t: dict, cols: list[dict]) -> list[str]:
    """Per column, the paired comparison of every two methods: row minus column on the samples
    both scored, its interval and Holm-adjusted p; bold where significant at 5%."""
    e = html.escape
    out = []
    for c in cols:
        mat = pairwise_matrix(t, c["key"])
        if mat is None:
            continue
        names, grid = mat
        comp = t["comparisons"][c["key"]]
        rows = ["<tr><th>row − column</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
        for a, line in zip(names, grid):
            tds = []
            for p in line:
                if p is None:
                    tds.append("<td>–</td>")
                    continue
                sig = " class='sig'" if p["p_holm"] < comp.get("level", 0.05) else ""
                ci = p.get("ci")
                ci_s = f" <span class='ci'>[{ci[0]:.3g}, {ci[1]:.3g}]</span>" if ci else ""
                tds.append(f"<td{sig} title='n={p['n']}, p={p['p']:.3g}, Holm {p['p_holm']:.3g}'>{p['diff']:+.3g}"
                           f"{ci_s}<br><span class='ci'>p={p['p_holm']:.2g}</span></td>")
            rows.append(f"<tr><th>{e(a)}</th>" + "".join(tds) + "</tr>")
        out.append(f"<details class='pairs' data-column='{e(c['key'])}'><summary>Pairwise: {e(c['title'])}"
                   f"</summary><p>{e(comp.get('test', ''))}.</p><table class='pairs'>" + "".join(rows)
                   + "</table></details>")
    return out


def to_html(run: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>saliency-bench leaderboard</title>",
             f"<style>{_CSS}</style></head><body><h1>saliency-bench leaderboard</h1>",
             "<p>Click a column header to sort. Scores: mean with its 95% bootstrap interval.</p>"]
    for t in run["tables"]:
        cols = _used_columns(t, run.get("extra_columns"))
        parts.append(f"<h2>{e(t['model'])} on {e(t['dataset'])}</h2><table class='lb'><thead><tr><th>Method</th>")
        parts += [f"<th title='{e(c['key'])}'>{e(c['title'])}</th>" for c in cols]
        parts.append("<th>Coverage</th></tr></thead><tbody>")
        marks = paired_marks(t, cols)  # best and its ties (never a baseline)
        for r in t["rows"]:
            base = " class='baseline'" if r["method"] in set(t.get("baselines") or ()) else ""
            parts.append(f"<tr{base}><td data-v='{e(r['method'])}'>{e(method_label(t, r['method']))}</td>")
            for c in cols:
                m = r.get(c["key"]) or {}
                v = m.get("value")
                if v is None:
                    parts.append(f"<td data-v='' title='{e(m.get('note', ''))}'>–</td>")
                    continue
                ci = m.get("ci") if c.get("interval", True) else None
                mk = marks.get((r["method"], c["key"]), set())
                cls = f" class='{' '.join(sorted(mk))}'" if mk else ""
                ci_s = f" <span class='ci'>[{ci[0]:.3g}, {ci[1]:.3g}]</span>" if ci and None not in ci[:2] else ""
                note = m.get("note", "")
                note_s = f" <span class='ci'>{e(_alpha(m))}</span>" if _alpha(m) else ""
                mk_s = f" <span class='mark'>{mark_text(mk)}</span>" if mk else ""
                parts.append(f"<td data-v='{v}'{cls} title='{e(note)}'>{v:.3g}{ci_s}{note_s}{mk_s}</td>")
            cov = r.get("coverage") or {}
            reasons = "; ".join(f"{f['id']}: {f['reason']}" for f in cov.get("failures", [])[:10])
            parts.append(f"<td data-v='{cov.get('scored', '')}' title='{e(reasons)}'>{e(_coverage(r))}</td></tr>")
        parts.append("</tbody></table>")
        fb = t.get("model_forward_backward")
        if fb:
            parts.append(f"<p>Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}.</p>")
        legend = mark_legend(t, cols)
        parts += ([f"<p class='marks'>{e(legend)}.</p>"] if legend else []) + [f"<p>{e(n)}.</p>" for n in subset_notes(t)]
        parts += [f"<p>alpha*: {e(why)}.</p>" for why in _table_notes(t)]
        parts += _matrices(t, cols)
        why = [w for w in map(_why_not_all, t["rows"]) if w] + empty_notes(t)
        if why:
            parts.append("<details><summary>Coverage</summary><ul>"
                         + "".join(f"<li>{e(w)}</li>" for w in why) + "</ul></details>")
        notes = _protocol_notes(t, cols)
        if notes:
            parts.append("<details><summary>Protocols</summary><ul>"
                         + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></details>")
        speed, scored = _speed_columns(t)
        plots = [(c, speed_plot_svg(t, c, speed)) for c in scored] if speed else []
        plots = [(c, svg) for c, svg in plots if svg]
        if plots:
            parts.append("<h3>Score against speed</h3><p>One point per method; the bar is its 95% interval; "
                         "images/s on a log scale.</p><div class='plots'>")
            parts += [f"<figure data-column='{e(c['key'])}'>{svg}<figcaption>{e(c['title'])} "
                      f"({'lower' if c.get('better') == 'lower' else 'higher'} is better)</figcaption></figure>"
                      for c, svg in plots]
            parts.append("</div>")
        gal = run.get("gallery", {}).get(f"{t['model']} on {t['dataset']}")
        if gal:
            methods = [r["method"] for r in t["rows"]]
            parts.append("<h3>Gallery</h3><table class='gallery'><tr><th>sample</th>"
                         + "".join(f"<th>{e(m)}</th>" for m in methods) + "</tr>")
            for sample, pics in gal.items():
                parts.append(f"<tr><td>{e(sample)}</td>")
                for m in methods:
                    b = pics.get(m)
                    img = (f"<img alt='{e(m)}' src='data:image/jpeg;base64,{base64.b64encode(b).decode()}'>"
                           if b else "–")
                    parts.append(f"<td>{img}</td>")
                parts.append("</tr>")
            parts.append("</table>")
    parts.append("<h2>Settings</h2><ul>" + "".join(f"<li>{e(l)}</li>" for l in _settings_lines(run)) + "</ul>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts)


WRITERS = {"md": ("leaderboard.md", to_markdown), "csv": ("leaderboard.csv", to_csv),
           "json": ("leaderboard.json", to_json), "html": ("leaderboard.html", to_html)}


PIPED_WIDTH = 120  # the printed tables' width when the output is not a terminal and COLUMNS is unset
FILES = "leaderboard.md/.html/.csv/.json"


def print_width(console) -> int:
    """The width to print at: the terminal's (or the console's own, when it was given one);
    when the output is piped, ``COLUMNS`` if set, else 120."""
    if getattr(console, "_width", None) is not None or console.is_terminal:
        return int(console.width)
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def _wrap_header(title: str, width: int) -> str:
    """A header broken at spaces into lines of about ``width`` (never inside a word)."""
    return "\n".join(textwrap.wrap(title, width=max(width, 1), break_long_words=False,
                                   break_on_hyphens=False)) or title


def _natural_width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(100_000), table).maximum


def _rich_table(t: dict, cols: list[dict], form: str):
    """One table in one of three forms: ``full`` (value, interval and note on one line),
    ``stacked`` (each on its own line) or ``compact`` (the value only, short headers)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    compact = form == "compact"
    table = Table(title=f"{t['model']} on {t['dataset']}", box=box.SIMPLE_HEAD if compact else box.SQUARE,
                  pad_edge=not compact, title_justify="left" if compact else "center")
    names = [method_label(t, r["method"]) for r in t["rows"]] or ["Method"]
    marks = paired_marks(t, cols)
    table.add_column("Method", style="bold", no_wrap=True, overflow="fold",
                     min_width=max(len("Method"), *map(len, names)))
    cells: list[list[str]] = []
    for r in t["rows"]:
        row = []
        for c in cols:
            m = r.get(c["key"])
            if compact:
                v = (m or {}).get("value")
                mk = mark_text(marks.get((r["method"], c["key"]), ()))
                row.append("–" if v is None else (f"{v:.1f}" if abs(v) >= 10 or v == 0 else f"{v:.3g}")
                           + (f" {mk}" if mk else ""))
            else:
                text = _cell(r, c, marks=marks)
                if form == "stacked":
                    text = text.replace(" [", "\n[", 1).replace(" (alpha", "\n(alpha", 1)
                row.append(text)
        cov = _coverage(r, short=compact)
        row.append(cov.replace(" (", "\n(", 1) if form == "stacked" else cov)
        cells.append(row)
    for j, c in enumerate(cols + [{"title": "Coverage", "short": "Cov."}]):
        if compact:
            header = c.get("short") or c["title"]
        else:
            widest = max([len(line) for row in cells for line in row[j].split("\n")] or [1])
            header = _wrap_header(c["title"], widest)
        table.add_column(Text(header, style="bold"), justify="right", no_wrap=compact, overflow="fold")
    for r, row in zip(t["rows"], cells):  # Text: a name such as mask[iterations=100] is not markup
        table.add_row(Text(method_label(t, r["method"])), *map(Text, row))
    return table


def _priority(cols: list[dict]) -> list[int]:
    """Column indices, the first column of each benchmark first (its headline score), then
    those of benchmark variants (``pointing[resolution=input]``), then the rest in order: a compact
    table too narrow for all keeps the headlines."""
    firsts, variants, rest, benches = [], [], [], set()
    for i, c in enumerate(cols):
        b = str(c.get("benchmark"))
        (rest if b in benches else variants if "[" in b else firsts).append(i)
        benches.add(b)
    return firsts + variants + rest


def fit_table(t: dict, cols: list[dict], width: int, console) -> tuple[Any, str, list[dict]]:
    """The widest form of a table that fits ``width`` columns: every score with its interval on
    one line, else stacked, else compact with as many columns as fit (the headline column of each
    benchmark first). Returns (rich table, form, the columns left out)."""
    for form in ("full", "stacked"):
        table = _rich_table(t, cols, form)
        if _natural_width(console, table) <= width:
            return table, form, []
    keep: list[int] = []
    for i in _priority(cols):
        trial = sorted(keep + [i])
        if not keep or _natural_width(console, _rich_table(t, [cols[j] for j in trial], "compact")) <= width:
            keep = trial
    shown = [cols[j] for j in keep]
    return _rich_table(t, shown, "compact"), "compact", [c for c in cols if c not in shown]


def _legend(cols: list[dict], hidden: list[dict]) -> str:
    items = [f"{c.get('short') or c['title']}: {c['title']}" + (" ↓" if c.get("better") == "lower" else "")
             for c in cols]
    line = " · ".join(items + ["Cov.: samples scored/total"])
    line += " (↓: lower is better)." if any(c.get("better") == "lower" for c in cols) else "."
    if hidden:
        line += " Not shown at this width: " + ", ".join(c["title"] for c in hidden) + "."
    return line + f" Intervals and notes: {FILES}."


def print_tables(run: dict, console) -> None:
    """The tables for a terminal, fitted to its width (see :func:`fit_table`); the files keep everything."""
    width = print_width(console)
    piped = not console.is_terminal
    # piped with no width asked for: notes stay one line each (for grep and pagers), not hard-wrapped
    unwrapped = piped and getattr(console, "_width", None) is None and not os.environ.get("COLUMNS", "").isdigit()

    def say(text: str, style: str = "dim") -> None:
        console.print(text, style=style, highlight=False, markup=False, soft_wrap=unwrapped)

    saved = getattr(console, "_width", None)
    try:
        if piped:
            console.width = width
        for t in run["tables"]:
            cols = _used_columns(t, run.get("extra_columns"))
            table, form, hidden = fit_table(t, cols, width, console)
            console.print(table)
            legend = mark_legend(t, [c for c in cols if c not in hidden])
            if legend:
                say(legend + ".")
            if form == "compact" and (cols or hidden):
                say(_legend([c for c in cols if c not in hidden], hidden))
            for note in subset_notes(t):
                say(note + ".")
            for why in _table_notes(t):
                say(f"alpha*: {why}.")
            for why in [w for w in map(_why_not_all, t["rows"]) if w] + empty_notes(t):
                say(f"coverage: {why}", style="yellow")
        for line in _settings_lines(run):
            say(line)
    finally:
        if piped:
            console._width = saved


def write_leaderboard(run_dir: Path, formats: list[str] | None = None, out: str | Path | None = None,
                      console: Any = None) -> list[Path]:
    run = load_run(Path(run_dir))
    formats = formats or list(WRITERS)
    written = []
    for target in [Path(run_dir)] + ([Path(out)] if out else []):
        target.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            if fmt not in WRITERS:
                raise ValueError(f"unknown leaderboard format '{fmt}': use {', '.join(WRITERS)}")
            name, writer = WRITERS[fmt]
            (target / name).write_text(writer(run))
            written.append(target / name)
    if console is not None:
        print_tables(run, console)
    return written
