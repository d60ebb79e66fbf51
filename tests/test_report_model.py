"""The report's building blocks: a Metric is stored exactly as the dict it replaces, a Column is
its key, the table model's marks reach the HTML page, and an older run's columns come from the
registered benchmarks (the one migration)."""
from __future__ import annotations

import json

from saliency_bench import report as lb
from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Column, Metric
from saliency_bench.report import tables
from saliency_bench.store import _dumps

from test_leaderboard import fake_run


def test_a_metric_is_stored_as_the_dict_it_replaces():
    by_hand = {"value": 61.5, "ci": [50.0, 70.25], "n": 12, "unit": "%", "note": "alpha*=0.35 (held out)"}
    m = Metric(61.5, [50.0, 70.25], 12, "%", "alpha*=0.35 (held out)")
    assert _dumps({"pointing_all": m}) == _dumps({"pointing_all": by_hand})
    assert m == by_hand and m["note"] == by_hand["note"] and dict(m) == by_hand
    empty = {"value": None, "ci": None, "n": 0, "unit": "", "note": "no scored sample"}
    assert _dumps(Metric.empty("no scored sample")) == json.dumps(empty, sort_keys=True)
    extra = Metric(1.5, None, 3, "", "ratio", extra={"se": 0.25})
    assert json.loads(_dumps(extra)) == {"value": 1.5, "ci": None, "n": 3, "unit": "", "note": "ratio", "se": 0.25}


def test_a_column_is_its_key_with_its_description():
    c = Column("loc_error_value", "Loc. error value (%)", "Loc.val", "%", lower_is_better=True)
    assert c == "loc_error_value" and {c: 1}["loc_error_value"] == 1 and json.dumps([c]) == '["loc_error_value"]'
    assert (c.title, c.short, c.unit, c.better, c.interval) == ("Loc. error value (%)", "Loc.val", "%", "lower", True)
    assert c.metric(3.0, None, 2, "x") == {"value": 3.0, "ci": None, "n": 2, "unit": "%", "note": "x"}
    plain = Column.of("fragile")  # a plugin's plain string
    assert (plain.title, plain.short, plain.better) == ("fragile", "fragile", "higher")
    assert set(Pointing.columns) == {"pointing_all", "pointing_difficult"}


def test_a_new_marker_reaches_every_cell_it_marks(tmp_path, monkeypatch):
    run = lb.load_run(fake_run(tmp_path))

    def fastest(table, cols):
        return {("center", c["key"]): {"fast"} for c in cols if c["key"] == "images_per_s"}

    monkeypatch.setattr(tables, "MARKERS", tables.MARKERS + [fastest])
    html = lb.to_html(run)
    # center is the fastest: marked by the new marker, but a baseline is never best (issue 25);
    # gradient, the fastest of the others, is
    assert "class='fast'" in html and "class='best'" in html
    t = run["tables"][0]
    marks = {(r["method"], c.column["key"]): c.marks for r, row in zip(t["rows"], tables.cells(t, t["columns"]))
             for c in row}
    assert marks[("center", "images_per_s")] == {"fast"} and marks[("gradient", "images_per_s")] == {"best"}


def test_an_older_run_gets_the_columns_its_benchmarks_declare_today(tmp_path):
    run = lb.load_run(fake_run(tmp_path, declared=False))
    cols = {c["key"]: c for c in run["tables"][0]["columns"]}
    want = {c["key"]: c for b in (Pointing(),) for c in b.column_info()}
    assert all(cols[k] == want[k] for k in want)
    assert cols["ms_per_image"]["short"] == "ms/img" and cols["passes_per_image"]["short"] == "passes"
