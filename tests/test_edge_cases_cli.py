"""Nothing falls over, through ``saliency-bench run``: a method with no scored sample, maps that
are constant, negative, 1x1 or all NaN, a dataset with no evaluable sample, a held-out split left
empty by ``--limit``. The run finishes (exit 0), records why, and the leaderboard shows the coverage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_bench.cli import main

PLUGINS = Path(__file__).parent / "plugins"
TOY, EDGE = str(PLUGINS / "toy.py"), str(PLUGINS / "edge.py")


def _run(runs: Path, *args: str) -> int:
    return main(["--plugin", TOY, "--plugin", EDGE, "run", "--runs-dir", str(runs), "--workers", "0", "--quiet",
                 *args])


def _run_dir(runs: Path) -> Path:
    (d,) = [p for p in runs.iterdir() if p.is_dir() and (p / "leaderboard.json").is_file()]
    return d


def _rows(runs: Path) -> dict[str, dict]:
    (table,) = json.loads((_run_dir(runs) / "leaderboard.json").read_text())["tables"]
    return {r["method"]: r for r in table["rows"]}


def test_failing_and_degenerate_maps_leave_the_run_and_the_other_rows_whole(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    methods = "constant_map,negative_map,one_pixel_map,all_nan_map,always_raises,brightness"
    assert _run(tmp_path, "--model", "toy_net", "--dataset", "toy", "--methods", methods,
                "--benchmarks", "pointing,localization,runtime") == 0
    out = capsys.readouterr().out
    rows = _rows(tmp_path)
    for name, why in (("always_raises", "broken on purpose"), ("all_nan_map", "non-finite")):
        cov = rows[name]["coverage"]
        assert (cov["scored"], cov["total"]) == (0, 10) and why in cov["failures"][0]["reason"]
        assert rows[name]["pointing_all"]["value"] is None
        assert f"{name} 0/10: 10 failed" in out.replace("\n", " ")  # printed, with the reason
    for name in ("constant_map", "negative_map", "one_pixel_map", "brightness"):  # 3 toy images do not decode
        assert rows[name]["coverage"]["scored"] == 7, rows[name]["coverage"]
        for col in ("pointing_all", "loc_error_value", "maxboxacc_v2", "images_per_s"):
            assert rows[name][col]["value"] is not None, (name, col, rows[name][col])
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "| always_raises |" in md and "0/10 (10 failed)" in md
    table = out[:out.index("run `")]
    assert max(map(len, table.splitlines())) <= 80 and " 0/10" in table


def test_a_dataset_with_no_evaluable_sample_says_so(tmp_path, capsys):
    assert _run(tmp_path, "--model", "toy_net", "--dataset", "no_truth", "--methods", "brightness",
                "--benchmarks", "pointing,localization,runtime") == 0
    rows = _rows(tmp_path)
    assert rows["brightness"]["pointing_all"]["value"] is None
    assert rows["brightness"]["images_per_s"]["value"] is not None  # the runtime is still measured
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "pointing: no Pointing all (%), Pointing difficult (%): no scored sample (0/4 samples)" in md
    assert "pointing: no Pointing all (%)" in capsys.readouterr().out.replace("\n", " ")


def _coco_person_only(tmp_path: Path) -> Path:
    """A COCO folder whose one category (person) has no ImageNet class."""
    from PIL import Image

    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    images, anns = [], []
    for i in (1, 2):
        Image.new("RGB", (40, 30), (20 * i, 80, 160)).save(root / "val2017" / f"{i}.jpg")
        images.append({"id": i, "file_name": f"{i}.jpg", "height": 30, "width": 40})
        anns.append({"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [2, 2, 10, 10],
                     "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "iscrowd": 0})
    data = {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": anns}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_a_coco_dataset_whose_categories_have_no_imagenet_class(tmp_path, capsys):
    coco = _coco_person_only(tmp_path)
    rc = _run(tmp_path / "runs", "--model", "toy_net", "--dataset", f"coco:{coco}", "--split", "val2017",
              "--methods", "brightness", "--benchmarks", "pointing")
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = _rows(tmp_path / "runs")
    cov = rows["brightness"]["coverage"]
    assert cov["scored"] == 0 and cov["total"] == 2 and cov["not_evaluable"] == 2, cov
    assert "0/2" in out


@pytest.mark.shared_data
def test_limit_leaving_the_heldout_split_empty(tmp_path, shared_data, capsys):
    rc = main(["run", "--dataset", f"imagenet:{shared_data / 'imagenet-val-300'}", "--limit", "1",
               "--methods", "center", "--benchmarks", "localization", "--runs-dir", str(tmp_path),
               "--workers", "0", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    row = _rows(tmp_path)["center"]
    assert row["coverage"]["scored"] == 1
    assert row["loc_error_value"]["value"] is None and row["loc_error_value"]["note"]
    md = (_run_dir(tmp_path) / "leaderboard.md").read_text()
    assert "localization: no Loc. error value (%)" in md and "(1/1 samples)" in md
    assert "no Loc. error value (%)" in out.replace("\n", " ")
