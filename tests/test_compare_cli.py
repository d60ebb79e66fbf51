"""``saliency-bench compare``: several runs in one table, the same method's difference with a
paired test on the samples both runs scored, and bad input answered in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from saliency_bench.cli import main
from saliency_bench.store import Store

PLUGINS = Path(__file__).parent / "plugins"
TOY, TOY_B = str(PLUGINS / "toy.py"), str(PLUGINS / "toy_b.py")


def _run(runs: Path, run_id: str, *extra: str) -> Path:
    assert main(["--plugin", TOY, "--plugin", TOY_B, "run", "--runs-dir", str(runs), "--run-id", run_id,
                 "--workers", "0", "--batch-size", "8", "--quiet", "-d", "n=16", *extra]) == 0
    return runs / run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base = ["--methods", "brightness,gradient"]
    return {
        "a": _run(root, "a", "--model", "toy_net", "--dataset", "toy", *base, "--benchmarks", "pointing,localization"),
        # the same methods, the gradient smoothed
        "b": _run(root, "b", "--model", "toy_net", "--dataset", "toy", *base, "-p", "gradient.smooth=0.1",
                  "--benchmarks", "pointing,localization"),
        # a second model, pointing only (a column run a has that this run lacks)
        "c": _run(root, "c", "--model", "toy_net_b", "--dataset", "toy", *base, "--benchmarks", "pointing"),
        # a dataset that shares no sample with toy
        "d": _run(root, "d", "--model", "toy_net", "--dataset", "toy_shifted", *base, "--benchmarks", "pointing"),
    }


def _compare(tmp_path: Path, *dirs: Path, capsys=None) -> tuple[dict, str]:
    out = tmp_path / "cmp"
    assert main(["--plugin", TOY, "--plugin", TOY_B, "compare", *map(str, dirs), "--out", str(out)]) == 0
    text = capsys.readouterr().out if capsys else ""
    return json.loads((out / "compare.json").read_text()), text


def _hits(run_dir: Path, method: str) -> dict[str, int]:
    store = Store(run_dir.parent / "store.sqlite", create=False)
    try:
        (model, dataset), = store.pairs(run_dir.name)
        return {k: r["hit"] for k, r in store.records(run_dir.name, model, dataset, method, "pointing").items()}
    finally:
        store.close()


def _board(run_dir: Path) -> dict:
    return {r["method"]: r for r in json.loads((run_dir / "leaderboard.json").read_text())["tables"][0]["rows"]}


def test_the_same_method_with_other_parameters_gets_a_paired_difference(runs, tmp_path, capsys):
    table, text = _compare(tmp_path, runs["a"], runs["b"], capsys=capsys)
    rows = {r["method"]: r for r in table["rows"]}
    a, b = _board(runs["a"]), _board(runs["b"])
    d = rows["gradient"]["pointing_all@B-A"]
    assert d["value"] == pytest.approx(b["gradient"]["pointing_all"]["value"] - a["gradient"]["pointing_all"]["value"])
    assert d["value"] != 0
    # the p-value on the same per-sample hits, from scipy (toy's 2 categories: category means)
    ha, hb = _hits(runs["a"], "gradient"), _hits(runs["b"], "gradient")
    ids = sorted(ha)
    assert sorted(hb) == ids and d["n"] == len(ids)
    cats = np.array([int(i[-3:]) % 2 for i in ids])
    w = np.where(cats == 0, 1 / (2 * (cats == 0).sum()), 1 / (2 * (cats == 1).sum()))
    x, y = np.array([hb[i] for i in ids], float) * 100, np.array([ha[i] for i in ids], float) * 100
    ref = stats.permutation_test((x, y), lambda p, q, axis=-1: np.sum(w * (p - q), axis=axis),
                                 permutation_type="samples", vectorized=True, n_resamples=np.inf).pvalue
    assert d["p"] == pytest.approx(ref)
    # brightness is the same method with the same parameters in both runs: no difference at all
    g = rows["brightness"]["pointing_all@B-A"]
    assert g["value"] == 0 and g["p"] == 1
    assert any(n.startswith("gradient: A layer=input, smooth=0.0; B layer=input, smooth=0.1") for n in table["notes"])
    assert ("B−A" in text or "B − A" in text) and "A: toy_net on toy" in text and "Traceback" not in text
    assert {"loc_error_value@B-A", "maxboxacc_v2@B-A"} <= set(rows["gradient"])


def test_two_models_side_by_side_and_a_column_one_run_lacks(runs, tmp_path, capsys):
    table, text = _compare(tmp_path, runs["a"], runs["c"], capsys=capsys)
    assert table["entries"][:2] == ["A: toy_net on toy (run a)", "B: toy_net_b on toy (run c)"]
    rows = {r["method"]: r for r in table["rows"]}
    assert {"pointing_all@A", "pointing_all@B", "pointing_all@B-A"} <= set(rows["gradient"])
    assert rows["gradient"]["pointing_all@B"]["value"] == _board(runs["c"])["gradient"]["pointing_all"]["value"]
    assert "Loc. error value (%): run B has no such column" in table["notes"]
    assert "loc_error_value@B-A" not in rows["gradient"]


def test_runs_that_share_no_sample_sit_side_by_side_with_a_note(runs, tmp_path, capsys):
    table, _ = _compare(tmp_path, runs["a"], runs["d"], capsys=capsys)
    assert not any(c.get("difference") for c in table["columns"])
    assert any("different datasets" in n for n in table["notes"])


def test_bad_input_is_one_line_never_a_traceback(runs, tmp_path, capsys):
    assert main(["compare", str(runs["a"]), str(tmp_path / "nope")]) == 2
    out = " ".join(capsys.readouterr().out.split())  # one message (rich wraps it at the console's width)
    assert out.startswith("error:") and out.endswith("nope: no such run directory") and "Traceback" not in out
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(runs["a"]), str(tmp_path / "empty")]) == 2
    assert "not a run directory" in " ".join(capsys.readouterr().out.split())
    store = Store(runs["a"].parent / "store.sqlite")
    store.start_run("half", {}, {})  # started, never finished
    store.close()
    (runs["a"].parent / "half").mkdir()
    assert main(["compare", str(runs["a"]), str(runs["a"].parent / "half")]) == 2
    assert "has not finished" in " ".join(capsys.readouterr().out.split())
    assert main(["compare", str(runs["a"])]) == 2
    assert "two run directories" in " ".join(capsys.readouterr().out.split())
