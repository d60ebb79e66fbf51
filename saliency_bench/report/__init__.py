"""The leaderboard: Markdown, CSV, JSON and a self-contained HTML page from a run's store rows,
and the same tables fitted to a terminal.

Rows are methods, one table per (model, dataset); every score carries its 95% bootstrap
interval where the benchmark gives one, and every row its coverage (samples scored / failed /
not evaluable), so a reader sees both when two methods are not distinguishable and when a
method's score rests on fewer samples.

The rooms: :mod:`.load` (store rows -> tables, the one migration of older runs), :mod:`.tables`
(the table model: columns, cells and their marks, notes), :mod:`.formats` (md, csv, json),
:mod:`.html` (with :mod:`.plots` and ``static/``), :mod:`.terminal`, :mod:`.gallery`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .formats import to_csv, to_json, to_markdown
from .html import to_html
from .load import load_run
from .plots import speed_plot_svg
from .tables import used_columns
from .terminal import FILES, fit_table, print_tables, print_width

WRITERS = {"md": ("leaderboard.md", to_markdown), "csv": ("leaderboard.csv", to_csv),
           "json": ("leaderboard.json", to_json), "html": ("leaderboard.html", to_html)}

__all__ = ["FILES", "WRITERS", "fit_table", "load_run", "print_tables", "print_width", "speed_plot_svg",
           "to_csv", "to_html", "to_json", "to_markdown", "used_columns", "write_leaderboard"]


def write_leaderboard(run_dir: Path, formats: list[str] | None = None, out: str | Path | None = None,
                      console: Any = None) -> list[Path]:
    """Write the run's leaderboard files into its directory (and ``out``); print the tables on
    ``console`` if given."""
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
