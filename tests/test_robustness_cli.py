"""Max-sensitivity and infidelity through ``saliency-bench run``: an all-zero map (sensitivity's
normaliser is 0), a method that fails on a perturbed input, a model whose logits are not finite on
perturbed inputs: each sample has a reason, the columns say how many and why, no table cell is NaN;
the maps the benchmark asks for are never cached as the method's; the extra runs are timed in the
benchmark's own cost column; the bundled sample runs end to end."""
from __future__ import annotations

from pathlib import Path

import pytest

from saliency_bench.summary import SCORING_COST

from saliency_bench.cli import main

from test_metrics_cli import PLUGS, _no_nan, _records, _rows

ROBUST = ["--plugin", str(Path(__file__).parent / "plugins" / "robust_plugins.py")]
BOTH = "max_sensitivity,infidelity"


def _run(runs: Path, *args: str) -> int:
    return main([*PLUGS, *ROBUST, "run", "--runs-dir", str(runs), "--workers", "0", "--quiet", *args])


def test_degenerate_maps_and_a_method_that_fails_on_perturbed_inputs(tmp_path):
    methods = "brightness,zero_map,fails_on_perturbed,sobel_edges"
    assert _run(tmp_path, "--model", "toy_net", "--dataset", "toy", "--methods", methods,
                "--benchmarks", BOTH) == 0
    rows = _rows(tmp_path)
    _no_nan(rows)
    zero = _records(tmp_path, "toy_net", "toy", "zero_map", "max_sensitivity")
    assert len(zero) == 7 and all(r["value"] is None and "all zero" in r["reason"] for r in zero.values())
    assert rows["zero_map"]["max_sensitivity"]["value"] is None
    assert "all zero" in rows["zero_map"]["max_sensitivity"]["note"]
    # infidelity of a zero map is defined (Captum's: beta 0, the mean squared change of the score)
    assert rows["zero_map"]["infidelity"]["value"] is not None
    fails = _records(tmp_path, "toy_net", "toy", "fails_on_perturbed", "max_sensitivity")
    assert len(fails) == 7 and all(r["value"] is None and "failed on perturbed input 1 of 10" in r["reason"]
                                   and "only explains images" in r["reason"] for r in fails.values())
    assert rows["fails_on_perturbed"]["coverage"]["scored"] == 7  # its own maps are fine
    assert "failed on perturbed input" in rows["fails_on_perturbed"]["max_sensitivity"]["note"]
    assert rows["fails_on_perturbed"]["infidelity"]["value"] is not None  # infidelity does not re-run it
    for m in ("brightness", "sobel_edges"):
        assert rows[m]["max_sensitivity"]["value"] > 0 and rows[m]["max_sensitivity"]["n"] == 3  # the eval split
        assert rows[m]["max_sensitivity_s_per_image"]["value"] > 0  # the re-runs' cost column
        assert rows[m]["infidelity_s_per_image"]["value"] > 0
    recs = _records(tmp_path, "toy_net", "toy", "brightness", "infidelity")
    assert all(r["value"] >= 0 and "beta" in r for r in recs.values())


def test_non_finite_logits_on_perturbed_inputs_are_a_recorded_reason(tmp_path):
    assert _run(tmp_path, "--model", "nan_off_grid_net", "--dataset", "toy",
                "--methods", "brightness,gradient", "--benchmarks", BOTH) == 0
    rows = _rows(tmp_path)
    _no_nan(rows)
    inf = _records(tmp_path, "nan_off_grid_net", "toy", "brightness", "infidelity")
    assert len(inf) == 7 and all("non-finite scores" in r["reason"] for r in inf.values())
    assert rows["brightness"]["infidelity"]["value"] is None
    # gradient's maps on the perturbed inputs are NaN: the method's check says so, per sample
    grad = _records(tmp_path, "nan_off_grid_net", "toy", "gradient", "max_sensitivity")
    assert len(grad) == 7 and all("non-finite" in r["reason"] for r in grad.values())
    assert rows["brightness"]["max_sensitivity"]["value"] is not None  # a model-free map is unaffected


def test_maps_of_re_runs_are_not_cached_and_runs_are_reproducible(tmp_path):
    args = ("--model", "toy_net", "--dataset", "toy", "--methods", "brightness")
    assert _run(tmp_path / "a", *args, "--benchmarks", "max_sensitivity,sparseness") == 0
    assert _run(tmp_path / "b", *args, "--benchmarks", "sparseness") == 0
    files = {d: sorted(p for p in (tmp_path / d / "cache").rglob("*") if p.is_file()) for d in "ab"}
    assert [p.relative_to(tmp_path / "a") for p in files["a"]] == [p.relative_to(tmp_path / "b") for p in files["b"]]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(files["a"], files["b"]) if x.suffix == ".npy")
    assert _run(tmp_path / "c", *args, "--benchmarks", "max_sensitivity") == 0
    strip = lambda recs: {k: {f: v for f, v in r.items() if f != SCORING_COST} for k, r in recs.items()}  # noqa: E731
    a = _records(tmp_path / "a", "toy_net", "toy", "brightness", "max_sensitivity")
    c = _records(tmp_path / "c", "toy_net", "toy", "brightness", "max_sensitivity")
    assert a and strip(a) == strip(c)  # the same seeded noise in another run


def test_the_bundled_sample_through_the_cli(tmp_path):
    assert _run(tmp_path, "--dataset", "sample", "--limit", "2", "--batch-size", "2",
                "--methods", "gradient,grad_cam,center", "--benchmarks", BOTH) == 0
    rows = _rows(tmp_path)
    _no_nan(rows)
    for m in ("gradient", "grad_cam"):
        assert rows[m]["max_sensitivity"]["value"] > 0 and rows[m]["infidelity"]["value"] >= 0
    assert rows["center"]["max_sensitivity"]["value"] == pytest.approx(0.0, abs=1e-6)  # ignores the input
