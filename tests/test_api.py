"""The Python API: ``saliency_bench.run`` is the command line's run, a plain function is a method."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import saliency_bench
from saliency_bench import registry

ROOT = Path(__file__).resolve().parents[1]
TOY = str(Path(__file__).parent / "plugins" / "toy.py")


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_readme_example(), "README.md", "exec"), scope)
    res = scope["res"]
    rows = {r["method"]: r for r in res.leaderboard}
    assert set(rows) == {"grad_cam", "brightness_map"}
    assert rows["brightness_map"]["pointing_all"] is not None and rows["brightness_map"]["scored"] > 0
    assert list(scope["df"]["method"]) == [r["method"] for r in res.leaderboard]
    assert set(scope["hits"]["hit"]) <= {0, 1} and len(scope["hits"]) == sum(
        r["scored"] for r in res.leaderboard)
    assert (tmp_path / "runs" / res.run_id / "leaderboard.md").is_file()
    assert "brightness_map" not in registry.methods.names()  # nothing registered for later


def test_a_function_gets_a_row_and_an_edited_function_is_a_new_run(tmp_path):
    registry.load_plugin_file(TOY)
    opts = dict(model="toy_net", dataset="toy", benchmarks="pointing", runs_dir=str(tmp_path), workers=0,
                quiet=True, dataset_options={"n": 6})

    def corner(model, x, targets, *, size: int = 4):
        out = x.new_zeros(x.shape[0], x.shape[2], x.shape[3])
        out[:, :size, :size] = 1
        return out

    first = saliency_bench.run(methods=[corner, "brightness"], **opts)
    rows = {r["method"]: r for r in first.leaderboard}
    assert set(rows) == {"corner", "brightness"} and rows["corner"]["pointing_all"] is not None
    # the same call again resumes the same run
    assert saliency_bench.run(methods=[corner, "brightness"], **opts).run_id == first.run_id

    def corner(model, x, targets, *, size: int = 4):  # noqa: F811 - edited, same name
        out = x.new_zeros(x.shape[0], x.shape[2], x.shape[3])
        out[:, -size:, -size:] = 1
        return out

    second = saliency_bench.run(methods=[corner, "brightness"], **opts)
    assert second.run_id != first.run_id
    table = first.compare(second)
    assert any(c.get("difference") for c in table["columns"])


def test_bad_calls_say_what_is_wrong(tmp_path):
    with pytest.raises(TypeError, match="unknown setting 'limt'"):
        saliency_bench.run(methods="gradient", limt=3)

    def gradient(model, x, targets):
        return x.mean(1)

    with pytest.raises(ValueError, match="already registered"):
        saliency_bench.run(methods=[gradient], runs_dir=str(tmp_path))
