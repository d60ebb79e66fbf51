"""The HTML page shows ROAD's MoRF/LeRF curves per percentile and randomisation's similarity per step,
one SVG line plot per method, averaged over the method's records in the store; an older run whose
records have no curves still renders (without them)."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from saliency_bench.cli import main
from saliency_bench.report import load_run, to_html
from saliency_bench.store import Store


def _run_dir(runs: Path) -> Path:
    (d,) = [p for p in runs.iterdir() if p.is_dir() and (p / "leaderboard.html").is_file()]
    return d


def _figure(page: str, bench: str, method: str) -> str:
    m = re.search(rf"<div class='plots curves' data-benchmark='{bench}'>(.*?)</div>", page)
    assert m, bench
    fig = re.search(rf"<figure data-method='{re.escape(method)}'>(.*?)</figure>", m.group(1))
    assert fig, (bench, method)
    return fig.group(1)


@pytest.mark.shared_data
def test_html_has_the_curves_of_road_and_randomisation_and_an_older_run_renders(tmp_path):
    assert main(["run", "--runs-dir", str(tmp_path), "--workers", "0", "--quiet", "--dataset", "sample",
                 "--limit", "2", "--batch-size", "2", "--methods", "grad_cam,center",
                 "--benchmarks", "road,randomisation", "-B", "road.percentiles=[30,70]",
                 "-B", "randomisation.steps=3"]) == 0
    run = _run_dir(tmp_path)
    page = (run / "leaderboard.html").read_text()
    store = Store(tmp_path / "store.sqlite", create=False)
    try:
        road = store.records(run.name, "efficientnet_lite0", "sample", "grad_cam", "road")
        rand = store.records(run.name, "efficientnet_lite0", "sample", "grad_cam", "randomisation")
    finally:
        store.close()
    # ROAD: two series at the run's percentiles; each point is the mean of the records' values
    fig = _figure(page, "road", "grad_cam")
    assert "<svg class='curve'" in fig and fig.count("<polyline") == 2 and "(n=2)" in fig
    for label, key in (("MoRF", "morf_curve"), ("LeRF", "lerf_curve")):
        for i, p in enumerate(("30", "70")):
            mean = sum(r[key][i] for r in road.values()) / len(road)
            assert f"<title>{label} at {p}: {mean:.4g}</title>" in fig, (label, p)
    # randomisation: Spearman and SSIM per step, the steps named from the logits down
    fig = _figure(page, "randomisation", "grad_cam")
    steps = next(iter(rand.values()))["steps"]
    assert len(steps) == 3 and fig.count("<polyline") == 2
    mean = sum(r["spearman"][0] for r in rand.values()) / len(rand)
    assert f"<title>Spearman at {steps[0]}: {mean:.4g}</title>" in fig
    _figure(page, "randomisation", "center")  # the baseline too (similarity 1 throughout)

    # an older run: records without curves (as written before they held them) render without plots
    con = sqlite3.connect(tmp_path / "store.sqlite")
    for rowid, rec in con.execute("SELECT rowid, record FROM records").fetchall():
        r = {k: v for k, v in json.loads(rec).items()
             if k not in ("morf_curve", "lerf_curve", "spearman", "ssim", "steps")}
        con.execute("UPDATE records SET record=? WHERE rowid=?", (json.dumps(r), rowid))
    con.commit()
    con.close()
    old = load_run(run)
    assert all(t["curves"] == {} for t in old["tables"])
    page = to_html(old)
    assert "<svg class='curve'" not in page and "ROAD combined" in page and "</html>" in page


def test_road_curve_is_labelled_with_the_default_percentiles_when_the_run_named_none():
    """A run's settings keep only the options it named: a ROAD curve of a run with the default
    percentiles is labelled 10..90 (the benchmark's default), not 1..9."""
    from saliency_bench.report.curves import aggregate

    records = [{"morf_curve": [0.1 * i for i in range(9)], "lerf_curve": [0.0] * 9}]
    curve = aggregate("road", records, None)
    assert curve["x"] == [str(p) for p in range(10, 100, 10)]
    assert curve["series"]["MoRF"] == records[0]["morf_curve"]
