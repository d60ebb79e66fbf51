"""``saliency-bench compare``'s table in the leaderboard's formats: the terminal (fitted to its
width), Markdown, CSV, JSON and a self-contained HTML page (:func:`saliency_bench.compare.compare_runs`
builds the table)."""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

SIGNIFICANT = "*"


def cell(metric: dict | None, ci: bool = True) -> str:
    """A score, or a difference (signed, ``*`` when significant after Holm)."""
    if not metric or metric.get("value") is None:
        return "–"
    v = metric["value"]
    diff = "p" in metric
    s = (f"{v:+.1f}" if diff else f"{v:.1f}") if abs(v) >= 10 or v == 0 else (f"{v:+.3g}" if diff else f"{v:.3g}")
    if ci and metric.get("ci"):
        lo, hi = metric["ci"]
        s += f" [{lo:.1f}, {hi:.1f}]" if max(abs(lo), abs(hi)) >= 10 else f" [{lo:.3g}, {hi:.3g}]"
    if metric.get("mark") == "significant":
        s += SIGNIFICANT
    return s


def _show(col: dict, ci: bool) -> bool:
    return ci and bool(col.get("interval", True))


def legend(table: dict) -> list[str]:
    lines = list(table["entries"])
    if any(c.get("difference") for c in table["columns"]):
        lines.append(f"X−A: the difference on the samples both scored [95% paired bootstrap interval]; "
                     f"{SIGNIFICANT}: significant at {table['level']:.0%} ({table['test']})")
    return lines


def to_markdown(table: dict) -> str:
    cols = table["columns"]
    out = [f"# {table['title']}", ""] + [f"- {line}" for line in legend(table)] + [""]
    out.append("| Method | " + " | ".join(c["title"] for c in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for r in table["rows"]:
        out.append(f"| {r['method']} | " + " | ".join(cell(r.get(c["key"]), _show(c, True)) for c in cols) + " |")
    if table["notes"]:
        out += ["", "Notes:", ""] + [f"- {n}" for n in table["notes"]]
    return "\n".join(out) + "\n"


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["method"]
    for c in table["columns"]:
        header += [c["key"], f"{c['key']}_ci_low", f"{c['key']}_ci_high", f"{c['key']}_n"]
        if c.get("difference"):
            header += [f"{c['key']}_p", f"{c['key']}_p_holm"]
    w.writerow(header)
    for r in table["rows"]:
        row = [r["method"]]
        for c in table["columns"]:
            m = r.get(c["key"]) or {}
            ci = m.get("ci") or [None, None]
            row += [m.get("value"), ci[0], ci[1], m.get("n")]
            if c.get("difference"):
                row += [m.get("p"), m.get("p_holm")]
        w.writerow(row)
    return buf.getvalue()


def to_json(table: dict) -> str:
    return json.dumps(table, indent=2, sort_keys=True, default=str)


def to_html(table: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>saliency-bench compare</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             ".sig{font-weight:bold}.ci{color:#777;font-size:85%}</style></head><body>",
             f"<h1>{e(table['title'])}</h1><ul>" + "".join(f"<li>{e(x)}</li>" for x in legend(table)) + "</ul>",
             "<table><thead><tr><th>Method</th>" + "".join(f"<th>{e(c['title'])}</th>" for c in table["columns"])
             + "</tr></thead><tbody>"]
    for r in table["rows"]:
        parts.append(f"<tr><td>{e(r['method'])}</td>")
        for c in table["columns"]:
            m = r.get(c["key"]) or {}
            cls = " class='sig'" if m.get("mark") == "significant" else ""
            parts.append(f"<td{cls} title='{e(str(m.get('note', '')))}'>{e(cell(m, _show(c, True)))}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    if table["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in table["notes"]) + "</ul>")
    return "".join(parts) + "</body></html>"


WRITERS = {"md": ("compare.md", to_markdown), "csv": ("compare.csv", to_csv), "json": ("compare.json", to_json),
           "html": ("compare.html", to_html)}


def write(table: dict, out: str | Path, formats: list[str]) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        if fmt not in WRITERS:
            raise ValueError(f"unknown format '{fmt}': use {', '.join(WRITERS)}")
        name, writer = WRITERS[fmt]
        (out / name).write_text(writer(table))
        written.append(out / name)
    return written


def _rich(table: dict, cols: list[dict], compact: bool):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SIMPLE_HEAD if compact else box.SQUARE, pad_edge=not compact)
    t.add_column("Method", style="bold", no_wrap=True)
    for c in cols:
        t.add_column(Text(c.get("short") if compact else c["title"], style="bold"), justify="right",
                     no_wrap=compact)
    for r in table["rows"]:
        t.add_row(Text(r["method"]), *(Text(cell(r.get(c["key"]), _show(c, not compact))) for c in cols))
    return t


def print_table(table: dict, console: Any) -> None:
    """The table at the terminal's width: with intervals if they fit, else values only with as many
    columns as fit (the differences first: they answer "did it help?")."""
    from .leaderboard import print_width

    width = print_width(console)
    saved = getattr(console, "_width", None)
    if not console.is_terminal:
        console.width = width
    try:
        _print(table, console, width)
    finally:
        if not console.is_terminal:
            console._width = saved


def _print(table: dict, console: Any, width: int) -> None:
    from .leaderboard import _natural_width

    cols = table["columns"]
    shown, hidden = cols, []
    if _natural_width(console, _rich(table, cols, False)) <= width:
        rt = _rich(table, cols, False)
    else:
        sources = list(dict.fromkeys(c.get("source") for c in cols))
        order = [i for src in sources for diff in (True, False) for i, c in enumerate(cols)
                 if c.get("source") == src and bool(c.get("difference")) == diff]
        keep: list[int] = []
        for i in order:
            trial = sorted(keep + [i])
            if not keep or _natural_width(console, _rich(table, [cols[j] for j in trial], True)) <= width:
                keep = trial
        shown = [cols[j] for j in keep]
        hidden = [c for c in cols if c not in shown]
        rt = _rich(table, shown, True)
    say = lambda text, style="dim": console.print(text, style=style, highlight=False, markup=False)  # noqa: E731
    for line in legend(table):
        say(line)
    console.print(rt)
    if hidden:
        titles = {c.get("source"): c.get("source_title", c["title"]) for c in hidden}
        say("Not shown at this width: " + ", ".join(titles.values()) + " (widen the terminal, or --out).")
    for n in table["notes"]:
        say(f"note: {n}", style="yellow")
