"""The default run: on a CPU it leaves out what costs a hundred passes per image or more and
says so; benchmarks run only where their ground truth is defined."""
from __future__ import annotations

import json

import pytest

from saliency_bench import registry
from saliency_bench.cli import main
from saliency_bench.config import RunConfig
from saliency_bench.plan import make_plan

HEAVY = {"mask", "mask_top5", "mask_preserve", "occlusion", "blur_occlusion", "variable_occlusion",
         "rise", "extremal_perturbation"}
CHEAP = {"center", "gradient", "guided_backprop", "grad_cam", "excitation_backprop",
         "contrastive_excitation_backprop", "deconvnet"}


@pytest.fixture(autouse=True)
def installed_only(monkeypatch):
    """Registries with what is installed only (other tests load plugin files into the global ones)."""
    for kind in ("methods", "benchmarks"):
        fresh = registry.Registry(kind)
        monkeypatch.setattr(registry, kind, fresh)
        monkeypatch.setitem(registry.REGISTRIES, kind, fresh)


def test_the_cpu_default_leaves_out_heavy_methods_and_benchmarks_and_the_packs():
    plan = make_plan(RunConfig(), cpu_default=True)
    assert {m.name for m in plan.methods} == CHEAP  # no pack method unless named
    assert {m.name for m in plan.left_out} == HEAVY
    assert {b.name for b in plan.benchmarks} == {"pointing", "localization", "runtime"}
    assert {b.name for b in plan.left_out_benchmarks} == {"deletion_game", "deletion", "insertion"}
    # on a GPU (or with --all-methods) the default runs them all; parts runs when named
    gpu = make_plan(RunConfig(), cpu_default=False)
    assert {m.name for m in gpu.methods} == CHEAP | HEAVY and not gpu.left_out
    assert "parts" not in {b.name for b in gpu.benchmarks}
    assert "deletion_game" in {b.name for b in gpu.benchmarks}
    # asked for by name or pattern, heavy ones run on a CPU too
    named = make_plan(RunConfig(methods="mask*,gradient", benchmarks="deletion*,parts"), cpu_default=True)
    assert {m.name for m in named.methods} == {"mask", "mask_top5", "mask_preserve", "gradient"}
    assert {b.name for b in named.benchmarks} == {"deletion_game", "deletion", "parts"}
    everything = make_plan(RunConfig(methods="*"), cpu_default=True)
    assert HEAVY <= {m.name for m in everything.methods}


def test_a_default_run_says_what_it_left_out_and_skips_undefined_benchmarks(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", "--limit", "4", "--runs-dir", str(runs), "--workers", "0", "--quiet",
                 "--benchmarks", "pointing,localization"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "left out on this CPU" in out and "mask_top5 (~336 passes/image, about" in out
    # weak localization scores the sample's single-category images only, and says so (issue 25)
    assert "localization needs single_class" not in out
    (run,) = [p for p in runs.iterdir() if p.name.startswith("run-")]
    board = json.loads((run / "leaderboard.json").read_text())
    rows = {r["method"]: r for t in board["tables"] for r in t["rows"]}
    assert set(rows) == CHEAP
    assert all(r["pointing_all"]["value"] is not None for r in rows.values())
    (table,) = board["tables"]
    assert table["subsets"]["localization"].startswith("on the 8 images of sample with exactly one category")
