"""The leaderboard in a terminal: each table in the widest form that fits the width (scores with
intervals on one line, else stacked, else compact with short headers and the headline columns
first), the notes under it; the files keep everything."""
from __future__ import annotations

import os
import textwrap
from typing import Any

from .tables import (cells, coverage, coverage_notes, fmt_value, mark_legend, mark_text, method_label,
                     settings_lines, subset_notes, table_notes, used_columns)

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
    table.add_column("Method", style="bold", no_wrap=True, overflow="fold",
                     min_width=max(len("Method"), *map(len, names)))
    texts: list[list[str]] = []
    for r, row_cells in zip(t["rows"], cells(t, cols)):
        row = []
        for c in row_cells:
            if compact:
                mark = mark_text(c.marks)
                row.append("–" if c.value is None else fmt_value(c.value) + (f" {mark}" if mark else ""))
            else:
                text = c.text()
                if form == "stacked":
                    text = text.replace(" [", "\n[", 1).replace(" (alpha", "\n(alpha", 1)
                row.append(text)
        cov = coverage(r, short=compact)
        row.append(cov.replace(" (", "\n(", 1) if form == "stacked" else cov)
        texts.append(row)
    for j, c in enumerate(cols + [{"title": "Coverage", "short": "Cov."}]):
        if compact:
            header = c.get("short") or c["title"]
        else:
            widest = max([len(line) for row in texts for line in row[j].split("\n")] or [1])
            header = _wrap_header(c["title"], widest)
        table.add_column(Text(header, style="bold"), justify="right", no_wrap=compact, overflow="fold")
    for r, row in zip(t["rows"], texts):  # Text: a name such as mask[iterations=100] is not markup
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
            cols = used_columns(t)
            table, form, hidden = fit_table(t, cols, width, console)
            console.print(table)
            marks = mark_legend(t, [c for c in cols if c not in hidden])
            if marks:
                say(marks + ".")
            if form == "compact" and (cols or hidden):
                say(_legend([c for c in cols if c not in hidden], hidden))
            for note in subset_notes(t):
                say(note + ".")
            for why in table_notes(t):
                say(f"alpha*: {why}.")
            for why in coverage_notes(t):
                say(f"coverage: {why}", style="yellow")
        for line in settings_lines(run):
            say(line)
    finally:
        if piped:
            console._width = saved
