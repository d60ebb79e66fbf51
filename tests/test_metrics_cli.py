"""Issue 23's benchmarks through ``saliency-bench run``: degenerate maps (constant), a method that fails
on a randomised model, a model whose logits are not finite; each sample without a value has a reason,
no table cell is NaN, the maps a benchmark asks for are never cached as the method's, and the run's
model stays as loaded."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from saliency_bench.cli import main
from saliency_bench.store import Store

PLUGINS = Path(__file__).parent / "plugins"
PLUGS = ["--plugin", str(PLUGINS / "toy.py"), "--plugin", str(PLUGINS / "edge.py"),
         "--plugin", str(PLUGINS / "metrics_plugins.py")]
NEW = "sparseness,complexity,relevance_mass,relevance_rank,road,randomisation"


def _run(runs: Path, *args: str) -> int:
    return main([*PLUGS, "run", "--runs-dir", str(runs), "--workers", "0", "--quiet", *args])


def _run_dir(runs: Path) -> Path:
    (d,) = [p for p in runs.iterdir() if p.is_dir() and (p / "leaderboard.json").is_file()]
    return d


def _rows(runs: Path) -> dict[str, dict]:
    (table,) = json.loads((_run_dir(runs) / "leaderboard.json").read_text())["tables"]
    return {r["method"]: r for r in table["rows"]}


def _records(runs: Path, model: str, dataset: str, method: str, bench: str) -> dict[str, dict]:
    store = Store(runs / "store.sqlite", create=False)
    try:
        return store.records(_run_dir(runs).name, model, dataset, method, bench)
    finally:
        store.close()


def _no_nan(rows: dict) -> None:
    for r in rows.values():
        for k, v in r.items():
            if isinstance(v, dict) and "value" in v and v["value"] is not None:
                assert math.isfinite(v["value"]), (r["method"], k, v)


def test_degenerate_maps_and_a_method_that_fails_on_a_randomised_model(tmp_path):
    methods = "constant_map,brightness,sobel_edges,fails_when_randomised"
    assert _run(tmp_path, "--model", "toy_net", "--dataset", "toy", "--methods", methods, "--benchmarks", NEW,
                "-B", "road.percentiles=[30,70]", "-B", "randomisation.granularity=module") == 0
    rows = _rows(tmp_path)
    _no_nan(rows)
    const = _records(tmp_path, "toy_net", "toy", "constant_map", "road")
    assert const and all(r["value"] is None and "every pixel removed" in r["reason"] for r in const.values())
    assert all("constant map" in r["reason"]
               for r in _records(tmp_path, "toy_net", "toy", "constant_map", "relevance_rank").values())
    assert rows["constant_map"]["sparseness"]["value"] == pytest.approx(0.0, abs=1e-5)  # defined: Gini 0
    assert rows["constant_map"]["road_combined"]["value"] is None
    assert "every pixel removed" in rows["constant_map"]["road_combined"]["note"]
    # the method that fails on any model but the run's: every sample has the reason, its own maps are scored
    fails = _records(tmp_path, "toy_net", "toy", "fails_when_randomised", "randomisation")
    assert fails and all(r["value"] is None and "only runs on the model it first saw" in r["reason"]
                         for r in fails.values())
    assert rows["fails_when_randomised"]["coverage"]["scored"] == 7
    assert rows["fails_when_randomised"]["sparseness"]["value"] is not None
    # a map that ignores the model is unchanged by randomisation; each step is in the record
    edges = _records(tmp_path, "toy_net", "toy", "sobel_edges", "randomisation")
    for r in edges.values():
        assert r["value"] == pytest.approx(1.0) and r["steps"] == ["4", "0"]
        assert r["spearman"] == pytest.approx([1.0, 1.0])
    assert rows["sobel_edges"]["randomisation_spearman"]["value"] == pytest.approx(1.0)
    assert rows["brightness"]["randomisation_s_per_image"]["value"] > 0  # the re-runs' cost column
    assert rows["brightness"]["road_lerf"]["value"] is not None


def test_maps_of_re_runs_are_not_cached_and_the_model_is_untouched(tmp_path):
    from saliency_bench import registry

    assert _run(tmp_path, "--model", "toy_net", "--dataset", "toy", "--methods", "brightness",
                "--benchmarks", "randomisation,sparseness") == 0
    cache_files = sorted(p for p in (tmp_path / "cache").rglob("*") if p.is_file())
    first = {p: p.read_bytes() for p in cache_files}
    rerun = tmp_path / "again"
    assert _run(rerun, "--model", "toy_net", "--dataset", "toy", "--methods", "brightness",
                "--benchmarks", "sparseness") == 0
    # the cache of a run with randomisation holds the same maps as one without
    second = sorted(p for p in (rerun / "cache").rglob("*") if p.is_file())
    assert [p.relative_to(rerun) for p in second] == [p.relative_to(tmp_path) for p in cache_files]
    assert all(first[a] == b.read_bytes() for a, b in zip(cache_files, second) if a.suffix == ".npy")
    # the sparseness of the run with randomisation equals the run without: the model was not randomised
    a = _records(tmp_path, "toy_net", "toy", "brightness", "sparseness")
    b = _records(rerun, "toy_net", "toy", "brightness", "sparseness")
    assert a == b


def test_non_finite_logits_are_a_recorded_reason(tmp_path):
    assert _run(tmp_path, "--model", "nan_net", "--dataset", "toy", "--methods", "sobel_edges",
                "--benchmarks", "road,randomisation", "-B", "road.percentiles=[50]") == 0
    rows = _rows(tmp_path)
    _no_nan(rows)
    recs = _records(tmp_path, "nan_net", "toy", "sobel_edges", "road")
    assert recs and all("non-finite" in r["reason"] for r in recs.values())
    assert rows["sobel_edges"]["randomisation_spearman"]["value"] == pytest.approx(1.0)


@pytest.mark.shared_data
def test_sanity_check_in_kind_on_the_embedded_model(tmp_path):
    """Adebayo et al.'s finding: on trained weights, gradient and Grad-CAM decorrelate as the model is
    randomised from the logits down; the centre baseline (it ignores the model) stays at 1."""
    assert _run(tmp_path, "--dataset", "sample", "--limit", "2", "--batch-size", "2",
                "--methods", "gradient,grad_cam,center", "--benchmarks", "randomisation") == 0
    rows = _rows(tmp_path)
    assert rows["center"]["randomisation_spearman"]["value"] == pytest.approx(1.0)
    for m in ("gradient", "grad_cam"):
        assert rows[m]["randomisation_spearman"]["value"] < 0.5, rows[m]["randomisation_spearman"]
        recs = _records(tmp_path, "efficientnet_lite0", "sample", m, "randomisation")
        for r in recs.values():
            assert r["steps"][0] == "classifier" and len(r["steps"]) == 12
