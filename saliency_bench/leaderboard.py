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
from pathlib import Path
from typing import Any

from .store import Store

# (column, header, which benchmark fills it)
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
BUILTIN = {"pointing", "localization", "runtime"}
LOWER_IS_BETTER = {"loc_error_value", "loc_error_energy", "loc_error_mean", "passes_per_image"}
NO_INTERVAL = {"images_per_s", "passes_per_image"}  # a spread of calls, not a confidence interval


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
    for r in rows:
        key = (r["model"], r["dataset"])
        if r["method"] == "__model__":
            model_fb[key] = r["metrics"]
            continue
        if r["method"] == "__protocol__":
            protocols.setdefault(key, {}).update({k: str(v) for k, v in r["metrics"].items()})
            continue
        entry = tables.setdefault(key, {}).setdefault(r["method"], {})
        if r["benchmark"] == "coverage":
            entry["coverage"] = r["metrics"]
        else:
            entry.update({k: v for k, v in r["metrics"].items() if isinstance(v, dict)})
            if r["benchmark"] not in BUILTIN:  # a plugin benchmark's metrics become columns too
                extra.update({k: r["benchmark"] for k, v in r["metrics"].items() if isinstance(v, dict)})
    out = []
    order = info["settings"].get("methods_resolved", {})
    for (model, dataset), methods in tables.items():
        names = [m for m in order if m in methods] + sorted(m for m in methods if m not in order)
        out.append({"model": model, "dataset": dataset, "model_forward_backward": model_fb.get((model, dataset)),
                    "protocols": protocols.get((model, dataset), {}),
                    "rows": [{"method": m, **methods[m]} for m in names]})
    return {"run_id": run_id, "settings": info["settings"], "meta": info["meta"], "tables": out,
            "finished": info.get("finished") is not None,
            "gallery": _gallery(run_dir), "extra_columns": extra}


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
        for c, _, _ in COLUMNS:
            note = (r.get(c) or {}).get("note", "")
            if note.startswith("alpha*") and " (" in note:
                why = note.split(" (", 1)[1].rstrip(")")
                if why not in seen:
                    seen.append(why)
    return seen


def _protocol_notes(table: dict, cols: list[tuple[str, str, str]]) -> list[str]:
    """``Header: protocol`` for each shown column whose benchmark says which protocol it follows."""
    p = table.get("protocols") or {}
    return [f"{h}: {p[c]}" for c, h, _ in cols if p.get(c)]


def _coverage(row: dict) -> str:
    c = row.get("coverage")
    if not c:
        return "–"
    s = f"{c['scored']}/{c['total']}"
    extra = []
    if c.get("failed"):
        extra.append(f"{c['failed']} failed")
    if c.get("not_evaluable"):
        extra.append(f"{c['not_evaluable']} not evaluable")
    unconverged = ((c.get("diagnostics") or {}).get("converged") or {}).get("false")
    if unconverged:
        extra.append(f"{unconverged} not converged")
    return s + (f" ({', '.join(extra)})" if extra else "")


def _used_columns(table: dict, extra: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    columns = COLUMNS + [(c, c, b) for c, b in (extra or {}).items()]
    return [c for c in columns if any((r.get(c[0]) or {}).get("value") is not None for r in table["rows"])]


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
    if params:
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
        out.append("| Method | " + " | ".join(h for _, h, _ in cols) + " | Coverage |")
        out.append("|---|" + "---|" * len(cols) + "---|")
        for r in t["rows"]:
            cells = [_fmt(r.get(c), ci=c not in NO_INTERVAL) for c, _, _ in cols]
            out.append(f"| {r['method']} | " + " | ".join(cells) + f" | {_coverage(r)} |")
        fb = t.get("model_forward_backward")
        if fb:
            out += ["", f"Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}."]
        out += [""] + [f"alpha*: {why}." for why in _table_notes(t)]
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
    columns = COLUMNS + [(c, c, b) for c, b in run.get("extra_columns", {}).items()]
    for c, _, _ in columns:
        header += [c, f"{c}_ci_low", f"{c}_ci_high", f"{c}_note"]
    header += ["scored", "failed", "not_evaluable", "total"]
    w.writerow(header)
    for t in run["tables"]:
        for r in t["rows"]:
            row = [t["model"], t["dataset"], r["method"]]
            for c, _, _ in columns:
                m = r.get(c) or {}
                ci = m.get("ci") or [None, None]
                row += [m.get("value"), ci[0], ci[1], m.get("note", "")]
            cov = r.get("coverage") or {}
            row += [cov.get("scored"), cov.get("failed"), cov.get("not_evaluable"), cov.get("total")]
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
.gallery td{text-align:center;font-size:80%;vertical-align:top}.gallery img{height:110px}"""
_JS = """document.querySelectorAll('table.lb th').forEach((th,i)=>th.addEventListener('click',()=>{
const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
rows.sort((a,b)=>{const x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;const fx=parseFloat(x),fy=parseFloat(y);
if(isNaN(fx)&&isNaN(fy))return (x||'').localeCompare(y||'')*(asc?1:-1);if(isNaN(fx))return 1;if(isNaN(fy))return -1;
return (fx-fy)*(asc?1:-1)});rows.forEach(r=>tb.appendChild(r))}));"""


def to_html(run: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>saliency-bench leaderboard</title>",
             f"<style>{_CSS}</style></head><body><h1>saliency-bench leaderboard</h1>",
             "<p>Click a column header to sort. Scores: mean with its 95% bootstrap interval.</p>"]
    for t in run["tables"]:
        cols = _used_columns(t, run.get("extra_columns"))
        parts.append(f"<h2>{e(t['model'])} on {e(t['dataset'])}</h2><table class='lb'><thead><tr><th>Method</th>")
        parts += [f"<th>{e(h)}</th>" for _, h, _ in cols] + ["<th>Coverage</th></tr></thead><tbody>"]
        best = {}
        for c, _, _ in cols:
            vals = [(r.get(c) or {}).get("value") for r in t["rows"]]
            vals = [v for v in vals if v is not None]
            if vals:
                best[c] = min(vals) if c in LOWER_IS_BETTER else max(vals)
        for r in t["rows"]:
            parts.append(f"<tr><td data-v='{e(r['method'])}'>{e(r['method'])}</td>")
            for c, _, _ in cols:
                m = r.get(c) or {}
                v = m.get("value")
                if v is None:
                    parts.append("<td data-v=''>–</td>")
                    continue
                ci = m.get("ci") if c not in NO_INTERVAL else None
                cls = " class='best'" if best.get(c) == v else ""
                ci_s = f" <span class='ci'>[{ci[0]:.3g}, {ci[1]:.3g}]</span>" if ci else ""
                note = m.get("note", "")
                note_s = f" <span class='ci'>{e(_alpha(m))}</span>" if _alpha(m) else ""
                parts.append(f"<td data-v='{v}'{cls} title='{e(note)}'>{v:.3g}{ci_s}{note_s}</td>")
            cov = r.get("coverage") or {}
            reasons = "; ".join(f"{f['id']}: {f['reason']}" for f in cov.get("failures", [])[:10])
            parts.append(f"<td data-v='{cov.get('scored', '')}' title='{e(reasons)}'>{e(_coverage(r))}</td></tr>")
        parts.append("</tbody></table>")
        fb = t.get("model_forward_backward")
        if fb:
            parts.append(f"<p>Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}.</p>")
        parts += [f"<p>alpha*: {e(why)}.</p>" for why in _table_notes(t)]
        notes = _protocol_notes(t, cols)
        if notes:
            parts.append("<details><summary>Protocols</summary><ul>"
                         + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></details>")
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


def print_tables(run: dict, console) -> None:
    from rich.table import Table

    for t in run["tables"]:
        cols = _used_columns(t, run.get("extra_columns"))
        table = Table(title=f"{t['model']} on {t['dataset']}")
        table.add_column("Method", style="bold")
        for _, h, _ in cols:
            table.add_column(h, justify="right")
        table.add_column("Coverage", justify="right")
        for r in t["rows"]:
            table.add_row(r["method"], *[_fmt(r.get(c), ci=c not in NO_INTERVAL) for c, _, _ in cols], _coverage(r))
        console.print(table)
        for why in _table_notes(t):
            console.print(f"alpha*: {why}.", style="dim", highlight=False, markup=False)
    for line in _settings_lines(run):
        console.print(line, style="dim", highlight=False, markup=False)


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
