"""The leaderboard from a store filled by hand: columns declared by the benchmarks (``__columns__``
rows) or the built-in fallback, printed tables fitted to the terminal's width, the files keeping
everything, and the score-against-speed plots of the HTML page."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from saliency_bench import report as lb
from saliency_bench.store import Store

LONG = "contrastive_excitation_backprop[layer=inception4e]"


def _m(value, ci=None, note=""):
    return {"value": value, "ci": ci, "n": 10, "unit": "%", "note": note}


POINTING_COLS = [
    {"key": "pointing_all", "title": "Pointing all (%)", "short": "Point.all", "better": "higher", "interval": True},
    {"key": "pointing_difficult", "title": "Pointing difficult (%)", "short": "Point.dif", "better": "higher",
     "interval": True},
]
VARIANT = "pointing[resolution=input]"
VARIANT_COLS = [{**c, "key": c["key"] + "[resolution=input]", "title": c["title"] + " [resolution=input]",
                 "short": c["short"] + "[in]"} for c in POINTING_COLS]
LOC_COLS = [
    {"key": "loc_error_value", "title": "Loc. error value (%)", "short": "Loc.val", "better": "lower",
     "interval": True},
    {"key": "maxboxacc_v2", "title": "MaxBoxAccV2 (%)", "short": "MaxBox", "better": "higher", "interval": True},
]
RUNTIME_COLS = [
    {"key": "images_per_s", "title": "Images/s", "short": "img/s", "better": "higher", "interval": False},
    {"key": "passes_per_image", "title": "Passes/image", "short": "pass/img", "better": "lower", "interval": False},
]
SCORES = {  # method -> (pointing all, loc error value, maxboxacc, images/s)
    "center": (62.5, 71.0, 40.0, 900.0),
    "gradient": (70.25, 66.5, 45.5, 35.0),
    LONG: (80.0, 58.0, 52.25, 4.5),
}


def fake_run(tmp_path: Path, declared: bool = True, failing: bool = True, long: bool = True) -> Path:
    """runs/store.sqlite with one run: three methods (one with a long name), pointing, its variant,
    localization and runtime, and a method that scored nothing (0/4)."""
    runs = tmp_path / "runs"
    store = Store(runs / "store.sqlite")
    methods = {m: {} for m in SCORES} | ({"always_raises": {}} if failing else {})
    benches = ["pointing", VARIANT, "localization", "runtime"]
    store.start_run("run-x", {"methods_resolved": methods, "benchmarks_resolved": benches, "seed": 0,
                              "models": ["toy_net"], "datasets": ["toy"]}, {"device": "cpu"})
    key = ("run-x", "toy_net", "toy")
    if declared:
        for b, cols in zip(benches, (POINTING_COLS, VARIANT_COLS, LOC_COLS, RUNTIME_COLS)):
            store.set_metrics(*key, "__columns__", b, {"columns": cols})
    for i, (m, (pa, lv, mb, ips)) in enumerate(SCORES.items()):
        if m == LONG and not long:
            continue
        store.set_metrics(*key, m, "coverage", {"scored": 4, "failed": 0, "not_evaluable": 0, "total": 4,
                                                "failures": []})
        store.set_metrics(*key, m, "pointing", {"pointing_all": _m(pa, [pa - 10, pa + 5]),
                                                "pointing_difficult": _m(50.0 + i, [40.0, 60.0])})
        if declared:
            store.set_metrics(*key, m, VARIANT, {"pointing_all[resolution=input]": _m(pa - 1, [pa - 9, pa + 4]),
                                                 "pointing_difficult[resolution=input]": _m(51.0, [41.0, 61.0])})
        store.set_metrics(*key, m, "localization", {"loc_error_value": _m(lv, [lv - 3, lv + 3], "alpha*=0.35"),
                                                    "maxboxacc_v2": _m(mb, [mb - 2, mb + 2])})
        store.set_metrics(*key, m, "runtime", {"images_per_s": _m(ips), "passes_per_image": _m(1.0 + i)})
    if failing:
        store.set_metrics(*key, "always_raises", "coverage", {
            "scored": 0, "failed": 4, "not_evaluable": 0, "total": 4,
            "failures": [{"id": f"toy00{i}", "reason": "method 'always_raises' raised RuntimeError: broken on purpose"}
                         for i in range(4)]})
        for b, cols in (("pointing", POINTING_COLS), ("localization", LOC_COLS)):
            store.set_metrics(*key, "always_raises", b, {c["key"]: _m(None, note="no scored sample") for c in cols})
        store.set_metrics(*key, "always_raises", "runtime", {c["key"]: _m(None) for c in RUNTIME_COLS})
    store.finish_run("run-x")
    store.close()
    (runs / "run-x").mkdir()
    return runs / "run-x"


def _printed(run: dict, width: int | None = None, terminal: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=terminal, color_system=None)
    lb.print_tables(run, console)
    return buf.getvalue()


# -- columns -----------------------------------------------------------------------------------
def test_columns_come_from_the_benchmarks_in_the_runs_order(tmp_path):
    run = lb.load_run(fake_run(tmp_path))
    (t,) = run["tables"]
    keys = [c["key"] for c in t["columns"]]
    assert keys == ["pointing_all", "pointing_difficult", "pointing_all[resolution=input]",
                    "pointing_difficult[resolution=input]", "loc_error_value", "maxboxacc_v2",
                    "images_per_s", "passes_per_image"]
    assert t["columns"][2]["benchmark"] == VARIANT and t["columns"][2]["title"].endswith("[resolution=input]")
    md = lb.to_markdown(run)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert "Pointing all (%) [resolution=input]" in header and "loc_error_mean" not in header
    csv_header = lb.to_csv(run).splitlines()[0].split(",")
    assert "pointing_all[resolution=input]_ci_low" in csv_header
    data = json.loads(lb.to_json(run))
    assert data["tables"][0]["columns"][0]["short"] == "Point.all"


def test_a_run_without_declared_columns_falls_back_to_the_builtin_ones(tmp_path):
    run = lb.load_run(fake_run(tmp_path, declared=False))
    keys = [c["key"] for c in lb.used_columns(run["tables"][0])]
    assert keys == ["pointing_all", "pointing_difficult", "loc_error_value", "maxboxacc_v2", "images_per_s",
                    "passes_per_image"]
    cols = {c["key"]: c for c in run["tables"][0]["columns"]}
    assert cols["loc_error_value"]["better"] == "lower" and cols["images_per_s"]["interval"] is False
    md = lb.to_markdown(run)
    assert "| Method | Pointing all (%) | Pointing difficult (%) | Loc. error value (%) |" in md


def test_better_direction_decides_the_bold_cell(tmp_path):
    html = lb.to_html(lb.load_run(fake_run(tmp_path)))
    assert "class='best' title='alpha*=0.35'>58" in html  # the lowest loc. error is the best


# -- the printed tables ------------------------------------------------------------------------
@pytest.mark.parametrize("width", [80, 100, 120, 160, 200])
def test_printed_tables_fit_the_width_and_never_cut_a_method_name(tmp_path, width):
    out = _printed(lb.load_run(fake_run(tmp_path)), width)
    lines = out.splitlines()
    assert max(map(len, lines)) <= width, "\n".join(l for l in lines if len(l) > width)
    assert LONG in out and "always_raises" in out and "…" not in out
    assert "0/4" in out and "broken on" in out  # the coverage, and why


def test_at_80_columns_the_table_is_compact_with_a_legend(tmp_path):
    out = _printed(lb.load_run(fake_run(tmp_path, long=False)), 80)
    head = next(line for line in out.splitlines() if line.lstrip().startswith("Method"))
    assert "Point.all" in head and "Loc.val" in head and "img/s" in head and "Cov." in head
    assert "[" not in out.split("Point.all:")[0].split(head)[1]  # no intervals in the rows
    assert "Loc.val: Loc. error value (%) ↓" in out and "leaderboard.md/.html/.csv/.json" in out
    row = next(line for line in out.splitlines() if line.lstrip().startswith("gradient"))
    assert row.split()[1:3] == ["70.2", "50.0"] or row.split()[1] == "70.2"


def test_wide_terminals_get_the_intervals(tmp_path):
    out = _printed(lb.load_run(fake_run(tmp_path)), 260)
    assert "[60.2, 75.2]" in out and "(alpha*=0.35)" in out and "0/4 (4 failed)" in out


def test_piped_output_is_120_wide_unless_columns_says(tmp_path, monkeypatch):
    run = lb.load_run(fake_run(tmp_path))
    monkeypatch.delenv("COLUMNS", raising=False)
    console = Console(file=io.StringIO())
    assert lb.print_width(console) == 120
    monkeypatch.setenv("COLUMNS", "80")
    assert lb.print_width(Console(file=io.StringIO())) == 80
    monkeypatch.delenv("COLUMNS")
    out = _printed(run)
    table_lines = [l for l in out.splitlines() if l.startswith(" ") or l.startswith("toy_net on")]
    assert max(map(len, table_lines)) <= 120 and any(LONG in l for l in table_lines)
    # notes are not hard-wrapped in a pipe: each is one line
    assert any(line.startswith("coverage: always_raises 0/4: 4 failed") and line.endswith("broken on purpose")
               for line in out.splitlines())


def test_printing_leaves_the_consoles_width_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    console = Console(file=io.StringIO())
    before = console.width
    lb.print_tables(lb.load_run(fake_run(tmp_path)), console)
    assert console.width == before


# -- the files ---------------------------------------------------------------------------------
def test_the_files_keep_everything(tmp_path):
    run_dir = fake_run(tmp_path)
    lb.write_leaderboard(run_dir)
    md = (run_dir / "leaderboard.md").read_text()
    assert "[60.2, 75.2]" in md and "| always_raises |" in md and "0/4 (4 failed)" in md
    assert "always_raises 0/4: 4 failed: toy000: method 'always_raises' raised RuntimeError" in md
    rows = list(__import__("csv").DictReader(io.StringIO((run_dir / "leaderboard.csv").read_text())))
    bad = next(r for r in rows if r["method"] == "always_raises")
    assert bad["scored"] == "0" and bad["total"] == "4" and "broken on purpose" in bad["first_failure"]
    data = json.loads((run_dir / "leaderboard.json").read_text())
    assert {r["method"] for r in data["tables"][0]["rows"]} == set(SCORES) | {"always_raises"}


def test_html_has_a_score_against_speed_plot_per_benchmark_column(tmp_path):
    html = lb.to_html(lb.load_run(fake_run(tmp_path)))
    figures = re.findall(r"<figure data-column='([^']+)'>(.*?)</figure>", html)
    assert [c for c, _ in figures] == ["pointing_all", "pointing_difficult", "pointing_all[resolution=input]",
                                       "pointing_difficult[resolution=input]", "loc_error_value", "maxboxacc_v2"]
    svg = dict(figures)["maxboxacc_v2"]
    assert svg.count("<circle") == 3 and svg.count("class='bar'") == 3  # always_raises has no point
    assert LONG in svg and "images/s (log scale)" in svg
    # the fastest method is rightmost; the best MaxBoxAccV2 is highest (smallest y)
    pts = {m: (float(x), float(y)) for m, x, y in
           re.findall(r"data-method='([^']+)'>.*?<circle class='pt' cx='([\d.]+)' cy='([\d.]+)'", svg)}
    assert pts["center"][0] > pts["gradient"][0] > pts[LONG][0]
    assert pts[LONG][1] < pts["gradient"][1] < pts["center"][1]
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html


def test_no_plot_without_a_speed_column(tmp_path):
    run = lb.load_run(fake_run(tmp_path))
    t = run["tables"][0]
    t["columns"] = [c for c in t["columns"] if c["key"] != "images_per_s"]
    assert "<svg" not in lb.to_html(run)


def test_a_plot_of_one_method_or_equal_values_is_still_drawn(tmp_path):
    run = lb.load_run(fake_run(tmp_path, failing=False))
    t = run["tables"][0]
    t["rows"] = t["rows"][:1]
    svg = lb.speed_plot_svg(t, t["columns"][0], t["columns"][6])
    assert svg.count("<circle") == 1 and "nan" not in svg.lower()
