"""The leaderboard marks the best method of a column and every method the paired test cannot
tell from it, in Markdown, HTML and the terminal; a baseline is labelled and never best."""
from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from saliency_bench import leaderboard as lb
from saliency_bench.benchmarks.stats import PerSample, aggregate
from saliency_bench.compare import compare_column, paired_marks

N = 200
IDS = tuple(f"s{i:03d}" for i in range(N))


def _table():
    rng = np.random.default_rng(0)
    a = (rng.random(N) < 0.6).astype(float) * 100
    b = a.copy()  # b: a, with 6 of its hits turned into misses and 4 misses into hits (tied)
    b[np.flatnonzero(a == 100)[:6]] = 0
    b[np.flatnonzero(a == 0)[:4]] = 100
    c = (rng.random(N) < 0.2).astype(float) * 100  # far worse
    center = (rng.random(N) < 0.9).astype(float) * 100  # the best value, but a baseline
    q = {m: PerSample(IDS, v) for m, v in {"center": center, "A": a, "B": b, "C": c}.items()}
    values = {m: aggregate(p.values) for m, p in q.items()}
    speed = {"center": 9000.0, "A": 50.0, "B": 20.0, "C": 80.0}
    cols = [{"key": "pointing_all", "title": "Pointing all (%)", "short": "Point.all", "better": "higher",
             "interval": True, "benchmark": "pointing"},
            {"key": "images_per_s", "title": "Images/s", "short": "img/s", "better": "higher", "interval": False,
             "benchmark": "runtime"}]
    comparisons = {"pointing_all": compare_column(q, values, "higher", ["center"], seed=0),
                   "images_per_s": compare_column({}, speed, "higher", ["center"])}
    rows = [{"method": m, "coverage": {"scored": N, "total": N, "failed": 0, "not_evaluable": 0},
             "pointing_all": {"value": values[m], "ci": [values[m] - 7, values[m] + 7], "n": N, "note": ""},
             "images_per_s": {"value": speed[m], "ci": None, "n": N, "note": ""}} for m in q]
    table = {"model": "toy_net", "dataset": "toy", "columns": cols, "rows": rows, "protocols": {}, "skipped": {},
             "comparisons": comparisons, "baselines": ["center"],
             "subsets": {"pointing": "on the 8 images with one category"}}
    run = {"run_id": "run-x", "settings": {"seed": 0}, "meta": {}, "tables": [table], "finished": True,
           "columns": cols, "gallery": {}}
    return run, table


def test_best_is_never_a_baseline_and_ties_are_the_paired_tests():
    run, t = _table()
    comp = t["comparisons"]["pointing_all"]
    assert comp["best"] == "A" and comp["ties"] == ["B"]  # center's 90% is a baseline's; C is separated
    marks = paired_marks(t, t["columns"])
    assert marks[("A", "pointing_all")] == {"best"} and marks[("B", "pointing_all")] == {"tie"}
    assert ("C", "pointing_all") not in marks and ("center", "pointing_all") not in marks
    # speed: no per-sample quantity, so no ties; the centre is the fastest but never best
    assert marks[("C", "images_per_s")] == {"best"} and ("center", "images_per_s") not in marks
    pair = next(p for p in comp["pairs"] if {p["a"], p["b"]} == {"A", "B"})
    assert pair["p_holm"] >= 0.05 and pair["n"] == N


def test_markdown_html_and_the_80_column_terminal_show_the_marks():
    run, t = _table()
    md = lb.to_markdown(run)
    point = {row.split("|")[1].strip(): row.split("|")[2] for row in md.splitlines()
             if row.startswith("| ") and "Method" not in row}  # method -> its pointing cell
    assert "●" in point["A"] and "○" in point["B"]
    assert not {"●", "○"} & set(point["C"] + point["center (baseline)"])
    assert "● best, ○ not distinguishable from it" in md and "pointing: on the 8 images with one category." in md
    page = lb.to_html(run)
    assert "class='best'" in page and "class='tie'" in page and "<tr class='baseline'>" in page
    assert "Pairwise: Pointing all (%)" in page and "center (baseline)" in page
    buf = io.StringIO()
    lb.print_tables(run, Console(file=buf, width=80, color_system=None))
    out = buf.getvalue()
    rows = {ln.strip("│ ").split()[0]: ln.split("│")[2] for ln in out.splitlines() if ln.startswith("│ ")
            and ln.strip("│ ").split()[0] in ("A", "B", "C", "center")}  # method -> its pointing cell
    assert "(baseline)" in out.split("center")[1].split("│")[0]
    assert "●" in rows["A"] and "○" in rows["B"] and "[" in rows["A"]  # intervals: the width allows them
    assert not {"●", "○"} & set(rows["center"])
    assert max(len(ln) for ln in out.splitlines()) <= 80


def test_a_compact_table_keeps_the_marks():
    run, _ = _table()
    buf = io.StringIO()
    lb.print_tables(run, Console(file=buf, width=44, color_system=None))
    lines = {ln.split()[0]: ln for ln in buf.getvalue().splitlines() if ln.strip()}
    assert "[" not in lines["A"] and "●" in lines["A"] and "○" in lines["B"]  # values only, marks kept
