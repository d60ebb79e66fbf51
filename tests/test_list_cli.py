"""``saliency-bench list``: one line per item at 80 columns (names whole, descriptions cut with an
ellipsis at their end), details of one item with ``list KIND NAME``."""
from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from saliency_bench import cli, registry

TOY = str(Path(__file__).parent / "plugins" / "toy.py")


@pytest.fixture
def run_list(monkeypatch, capsys):
    def go(*argv: str, width: int | None = 80) -> tuple[int, str]:
        monkeypatch.setattr(cli, "console", Console(width=width, color_system=None))
        rc = cli.main(list(argv))
        return rc, capsys.readouterr().out
    return go


def _section(out: str, kind: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(f"{kind} ("))
    body = []
    for line in lines[start + 1:]:
        if not line or line.startswith(("models (", "datasets (", "benchmarks (", "methods (", "details:")):
            break
        body.append(line)
    return body


@pytest.mark.parametrize("width", [80, 200])
def test_list_prints_one_line_per_item_within_the_width(run_list, width):
    rc, out = run_list("list", width=width)
    assert rc == 0
    assert max(map(len, out.splitlines())) <= width
    for kind in registry.KINDS:
        entries = registry.REGISTRIES[kind].entries()
        lines = _section(out, kind)
        assert len(lines) == len(entries), (kind, lines)
        for e, line in zip(entries, lines):
            assert line.split()[0] == e.name  # the name whole, first
    if width == 80:
        assert any(line.endswith("…") for line in out.splitlines())  # long descriptions cut at the end
        assert all("…" not in line[:-1] for line in out.splitlines())  # ... and only there


def test_list_marks_variants_and_point_methods(run_list):
    rc, out = run_list("list", "methods")
    lines = {l.split()[0]: l for l in _section(out, "methods")}
    for e in registry.methods.entries():
        base = getattr(e.obj, "base", None)
        if base:
            assert f"variant of {base}" in lines[e.name]
        elif e.obj.kind == "point":
            assert lines[e.name].split()[1] == "point"


def test_list_with_a_pattern_and_a_plugin(run_list):
    rc, out = run_list("--plugin", TOY, "list", "methods", "always*,brightness")
    assert rc == 0
    assert [l.split()[0] for l in _section(out, "methods")] == ["always_raises", "brightness"]


def test_list_a_method_by_name_prints_its_details(run_list):
    rc, out = run_list("list", "methods", "mask")
    assert rc == 0
    assert out.startswith("method mask  (heatmap)")
    assert "parameters (-p mask.NAME=VALUE):" in out and "  iterations = 300" in out
    assert "views:" in out and "blurred" in out
    assert "defined in: saliency_bench.methods.mask.mask" in out.replace("\n", " ").replace("  ", " ") or \
        "saliency_bench.methods.mask" in out
    assert "Fong & Vedaldi" in out  # the docstring
    assert max(map(len, out.splitlines())) <= 80


def test_a_variants_details_say_what_it_fixes(run_list):
    variants = [e for e in registry.methods.entries() if getattr(e.obj, "base", None)]
    if not variants:
        pytest.skip("no registered method variant")
    e = variants[0]
    rc, out = run_list("list", "methods", e.name)
    assert rc == 0 and f"(variant of {e.obj.base})" in out.splitlines()[0]
    assert f"(fixed by the variant of {e.obj.base})" in out


def test_list_a_benchmark_model_and_dataset_by_name(run_list):
    rc, out = run_list("list", "benchmarks", "localization")
    assert rc == 0 and "options (-B localization.OPTION=VALUE):" in out
    assert "alphas = {value: 0:0.05:0.95" in out and "loc_error_value" in out
    rc, out = run_list("list", "models", "efficientnet_lite0")
    assert rc == 0 and out.startswith("model efficientnet_lite0") and "weights = None" in out
    rc, out = run_list("list", "datasets", "sample")
    assert rc == 0 and out.startswith("dataset sample")
    rc, out = run_list("list", "all", "pointing")
    assert rc == 0 and out.startswith("benchmark pointing")


def test_an_unknown_name_is_an_error_with_suggestions(run_list):
    rc, out = run_list("list", "methods", "grad")
    assert rc == 2 and "no methods named 'grad'" in out and "gradient" in out
