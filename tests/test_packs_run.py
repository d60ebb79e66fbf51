"""Every pack method through ``saliency-bench run``: two samples of the bundled sample dataset,
the embedded model, each method must score both (Captum's LRP excepted on EfficientNet-Lite0,
whose layers Captum has no rule for: it must fail with Captum's reason, and fail alone).

Parameters that only set how much work a method does are made small with ``-p`` (the methods'
defaults are the libraries' documented ones; tests elsewhere check them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_bench.cli import main
from saliency_bench.registry import methods


def run_pack(tmp_path: Path, pattern: str, params: list[str]) -> dict[str, dict]:
    args = ["run", "--limit", "2", "--methods", pattern, "--batch-size", "2", "--runs-dir", str(tmp_path),
            "--benchmarks", "pointing", "--quiet", "--workers", "0"]
    for p in params:
        args += ["-p", p]
    assert main(args) == 0
    (board,) = tmp_path.glob("*/leaderboard.json")
    data = json.loads(board.read_text())
    (table,) = data["tables"]
    assert table["model"] == "efficientnet_lite0" and table["dataset"] == "sample"
    return {row["method"]: row for row in table["rows"]}


def test_every_captum_method_scores_both_samples(tmp_path):
    pytest.importorskip("captum")
    rows = run_pack(tmp_path, "captum.*", ["n_steps=4", "nt_samples=2", "n_samples=4", "patch=56", "window=56",
                                           "stride=56", "internal_batch_size=16"])
    assert set(rows) == set(methods.names("captum.*")) and len(rows) >= 14
    for name, row in rows.items():
        cov = row["coverage"]
        assert cov["total"] == 2, name
        if name == "captum.lrp":
            assert cov["scored"] == 0 and cov["failed"] == 2
            assert "has no rule defined" in json.dumps(cov["failures"])
            continue
        assert cov["scored"] == 2 and cov["failed"] == 0, (name, cov)
        assert row["pointing_all"]["value"] is not None, name


def test_every_gradcam_method_scores_both_samples(tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    # ScoreCAM and AblationCAM cost one forward per channel: the 40-channel block2 instead of
    # the 1280-channel gradcam layer keeps them to seconds.
    rows = run_pack(tmp_path, "gradcam.*", ["gradcam.score_cam.layer=block2", "gradcam.ablation_cam.layer=block2",
                                            "batch_size=40"])
    assert set(rows) == set(methods.names("gradcam.*")) and len(rows) >= 13
    for name, row in rows.items():
        cov = row["coverage"]
        assert cov["scored"] == 2 and cov["failed"] == 0 and cov["total"] == 2, (name, cov)
        assert row["pointing_all"]["value"] is not None, name
