"""Variants, pytest's way; plain functions from the decorators; the Targets object; the harness's
rooms importing downward only."""
from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import saliency_bench
from saliency_bench import registry
from saliency_bench.cli import main
from saliency_bench.config import RunConfig, parse_params
from saliency_bench.plan import apply_params, make_plan, select_methods
from saliency_bench.targets import Targets
from saliency_bench.variants import format_value, parse_value, parse_variant_id, split_top, variant_id

TOY = str(Path(__file__).parent / "plugins" / "toy.py")


def _toy(runs: Path, *extra: str) -> int:
    return main(["--plugin", TOY, "run", "--model", "toy_net", "--dataset", "toy", "--runs-dir", str(runs),
                 "--workers", "0", "--batch-size", "4", "--quiet", "--benchmarks", "pointing,runtime", *extra])


def _board(run_dir: Path) -> dict:
    return json.loads((run_dir / "leaderboard.json").read_text())


def _rows(board: dict) -> dict:
    return {r["method"]: r for t in board["tables"] for r in t["rows"]}


def _runs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir() and p.name.startswith("run-"))


# -- ids ---------------------------------------------------------------------------------------
def test_variant_ids_read_and_write_like_the_command_line():
    assert parse_variant_id("mask[iterations=100,lr=0.05]") == ("mask", {"iterations": 100, "lr": 0.05})
    assert parse_variant_id("pointing[resolution=input]") == ("pointing", {"resolution": "input"})
    assert parse_variant_id("mask[_]*") is None and parse_variant_id("mask*") is None  # patterns
    assert parse_variant_id("m*[x=1]") is None
    assert variant_id("gradient", {"smooth": 0.02}) == "gradient[smooth=0.02]"
    for v in (0.02, 100, True, None, "input", "3", "a,b", [1, 2], [0.5, "x"]):
        assert parse_value(format_value(v)) == v, v
    assert split_top("a,b[x=1,y=2],c") == ["a", "b[x=1,y=2]", "c"]
    assert parse_params(["gradient[smooth=0.02].layer=features.3", "mask*.iterations=[1,2]", "lr=0.1"]) == {
        "gradient[smooth=0.02]": {"layer": "features.3"}, "mask*": {"iterations": [1, 2]}, "*": {"lr": 0.1}}


# -- plain functions and signature checks -----------------------------------------------------
def test_the_decorator_returns_the_function_and_reads_every_defaulted_parameter(tmp_path):
    f = tmp_path / "plain_plug.py"
    f.write_text(textwrap.dedent('''
        import saliency_bench

        @saliency_bench.method("plain_plug", variants=[saliency_bench.param(sigma=2.0),
                                                       saliency_bench.param(sigma=3.0, id="plain_plug_wide")])
        def plain_plug(model, x, targets, sigma=1.0, *, gain: float = 1.0):
            return x.mean(1) * sigma * gain

        def reuse(model, x, targets):
            return plain_plug(model, x, targets, sigma=5.0)  # a plain call, no .fn
    '''))
    registry.load_plugin_file(f)
    mod = sys.modules[[k for k in sys.modules if k.startswith("saliency_bench_plugin_plain_plug")][0]]
    assert callable(mod.plain_plug) and not isinstance(mod.plain_plug, saliency_bench.Method)
    x = torch.ones(2, 3, 4, 4)
    assert torch.equal(mod.reuse(None, x, None), torch.full((2, 4, 4), 5.0))
    m = registry.methods.get("plain_plug")
    assert m.defaults == {"sigma": 1.0, "gain": 1.0}  # positional-or-keyword with a default counts
    assert registry.methods.get("plain_plug[sigma=2.0]").params["sigma"] == 2.0
    wide = registry.methods.get("plain_plug_wide")
    assert wide.base == "plain_plug" and wide.params["sigma"] == 3.0
    assert wide.key.startswith("plain_plug-") and wide.key != m.key


@pytest.mark.parametrize("sig, why", [
    ("def bad(model, x, targets, sigma):", "sigma have no default"),
    ("def bad(model, x, targets, *, sigma):", "sigma have no default"),
    ("def bad(model, x):", "must take \\(model, x, targets\\)"),
])
def test_a_parameter_that_cannot_be_set_is_an_error_naming_the_plugin(tmp_path, sig, why):
    f = tmp_path / "bad_sig.py"
    f.write_text(f"import saliency_bench\n\n@saliency_bench.method('bad')\n{sig}\n    return x.mean(1)\n")
    with pytest.raises(registry.PluginError, match=f"(?s)bad_sig.py.*{why}"):
        registry.load_plugin_file(f)


# -- selection ----------------------------------------------------------------------------------
def test_requests_variant_ids_wildcard_scopes_and_grids():
    ms = apply_params(select_methods("gradient,gradient[smooth=0.02],mask*"),
                      parse_params(["mask*.iterations=7", "mask.lr=[0.05,0.2]"]))
    names = [m.name for m in ms]
    assert names == ["gradient", "gradient[smooth=0.02]", "mask[lr=0.05]", "mask[lr=0.2]", "mask_preserve",
                     "mask_top5"]
    by = {m.name: m for m in ms}
    assert by["gradient[smooth=0.02]"].params["smooth"] == 0.02 and by["gradient"].params["smooth"] != 0.02
    assert all(by[n].params["iterations"] == 7 for n in names if n.startswith("mask"))  # the wildcard scope
    assert by["mask[lr=0.2]"].params["lr"] == 0.2 and by["mask_top5"].params["lr"] == 0.1
    assert by["mask_top5"].params["top_k"] == 5 and by["mask_preserve"].params["game"] == "preservation"
    # each variant its own cache key; a variant and the method run with its parameters share one
    assert len({m.key for m in ms}) == len(ms)
    same = apply_params(select_methods("gradient"), {"gradient": {"smooth": 0.02}})[0]
    assert same.name == "gradient" and same.key == by["gradient[smooth=0.02]"].key
    # a parameter the method lacks, scoped to it exactly, is an error; a grid of a list-valued
    # parameter needs a list of lists
    with pytest.raises(TypeError, match="no parameter nonsense"):
        apply_params(select_methods("gradient"), {"gradient": {"nonsense": 1}})
    with pytest.raises(ValueError, match="not in the run: occlusion"):
        apply_params(select_methods("gradient"), {"occlusion": {"size": 3}})


def test_toml_parameter_sets_are_rows(tmp_path):
    cfg = RunConfig(methods="brightness", params={"brightness": [{"power": 1.0}, {"power": 2.0}]})
    registry.load_plugin_file(TOY)
    plan = make_plan(cfg)
    assert [m.name for m in plan.methods] == ["brightness[power=1.0]", "brightness[power=2.0]"]


def test_a_selection_that_matches_nothing_names_the_broken_plugins(tmp_path, monkeypatch):
    reg = registry.Registry("methods")
    reg._load()
    reg._broken["toyplug_broken"] = "entry point 'toyplug_broken = x' failed to load: ImportError: nope"
    with pytest.raises(registry.RegistryError, match="no method matches 'my_metod'.*failed to load.*nope"):
        reg.select("my_metod")


# -- targets -----------------------------------------------------------------------------------
def test_targets_score_the_whole_class_set_and_refuse_column_slicing():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    t = Targets([[0, 1], [2]])
    # log-sum-exp of the set's logits, by hand: log(e^1 + e^2) and 5
    assert torch.allclose(t.score(logits), torch.tensor([2.3132617, 5.0]))
    p0 = (torch.exp(torch.tensor(1.0)) + torch.exp(torch.tensor(2.0))) / torch.exp(logits[0]).sum()
    assert torch.allclose(t.probability(logits)[0], p0)
    assert t.sets == [(0, 1), (2,)] and len(t[1:]) == 1 and t[1].sets == [(2,)]
    with pytest.raises(TypeError, match="indexed by rows"):
        t[:, :1]


# -- end to end --------------------------------------------------------------------------------
def test_variants_are_rows_with_their_own_cache_reused_by_a_later_run(tmp_path):
    runs = tmp_path / "runs"
    args = ["--methods", "brightness,brightness[power=2.0]", "-p", "brightness.power=[1.0,3.0]"]
    assert _toy(runs, *args, "--run-id", "run-a") == 0
    rows = _rows(_board(runs / "run-a"))
    assert set(rows) == {"brightness[power=1.0]", "brightness[power=3.0]", "brightness[power=2.0]"}
    assert all(r["coverage"]["scored"] == 7 for r in rows.values())
    # the powers give different maps, so (some) different pointing outcomes are possible; the
    # store holds each row's records under its own name
    settings = json.loads((runs / "run-a" / "leaderboard.json").read_text())["settings"]
    assert {m["name"] for m in settings["methods_plan"]} == set(rows)
    # a second run with the same settings under another id reads every map from the cache
    assert _toy(runs, *args, "--run-id", "run-b") == 0
    rows_b = _rows(_board(runs / "run-b"))
    for name, r in rows_b.items():
        assert r["coverage"]["diagnostics"]["rescored_from_float16_cache"] == {"true": 7, "false": 0}, name
        assert r["pointing_all"]["value"] == rows[name]["pointing_all"]["value"]


def test_benchmark_variants_get_their_own_columns(tmp_path):
    runs = tmp_path / "runs"
    assert main(["--plugin", TOY, "run", "--model", "toy_net", "--dataset", "toy", "--runs-dir", str(runs),
                 "--workers", "0", "--quiet", "--methods", "brightness",
                 "--benchmarks", "pointing,pointing[tolerance=1]"]) == 0
    (run,) = _runs(runs)
    row = _rows(_board(run))["brightness"]
    assert row["pointing_all"]["value"] is not None
    assert row["pointing_all[tolerance=1]"]["value"] is not None
    assert row["pointing_all[tolerance=1]"]["value"] <= row["pointing_all"]["value"]


def test_an_installed_one_file_plugin_with_a_variant_runs_beside_the_builtins(tmp_path, monkeypatch):
    (tmp_path / "varplug.py").write_text(textwrap.dedent('''
        import saliency_bench

        @saliency_bench.method("tonecurve", variants=[saliency_bench.param(gamma=2.0)])
        def tonecurve(model, x, targets, *, gamma: float = 1.0):
            """Brightness to a power: a model-free map."""
            g = x.mean(1)
            return (g - g.amin(dim=(1, 2), keepdim=True)) ** gamma
    '''))
    dist = tmp_path / "varplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: varplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[saliency_bench.methods]\nvarplug = varplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "methods", registry.Registry("methods"))
    monkeypatch.setitem(registry.REGISTRIES, "methods", registry.methods)
    runs = tmp_path / "runs"
    assert main(["run", "--limit", "3", "--methods", "tonecurve*,center", "--benchmarks", "pointing",
                 "--runs-dir", str(runs), "--workers", "0", "--quiet"]) == 0
    (run,) = _runs(runs)
    rows = _rows(_board(run))
    assert set(rows) == {"tonecurve", "tonecurve[gamma=2.0]", "center"}
    assert all(r["coverage"]["scored"] == r["coverage"]["total"] > 0 for r in rows.values())
    sys.modules.pop("varplug", None)


# -- the rooms ---------------------------------------------------------------------------------
def _imports(path: Path, package: str) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            mod = f"{base}.{node.module}" if node.module else base
            out.add(mod)
            if not node.module:
                out |= {f"{base}.{a.name}" for a in node.names}
            else:
                out |= {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saliency_bench"):
            out.add(node.module)
    return out


def test_no_module_of_the_core_imports_one_that_imports_it_back():
    root = Path(saliency_bench.__file__).parent
    mods = {}
    for f in root.rglob("*.py"):
        rel = f.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        mods[name] = f, pkg
    graph = {n: {i for i in _imports(f, pkg) if i in mods and i != n} for n, (f, pkg) in mods.items()}
    # the package root re-exports the public API; leave it out of the cycle check
    graph = {n: d - {"saliency_bench"} for n, d in graph.items() if n != "saliency_bench"}

    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted(n for n in graph if n in reach(n))
    assert not cycles, f"import cycles through: {cycles}"
    # lower layers never import higher ones
    low = ["saliency_bench.variants", "saliency_bench.contracts", "saliency_bench.targets", "saliency_bench.registry",
           "saliency_bench.config", "saliency_bench.plan", "saliency_bench.execute", "saliency_bench.summary"]
    high = {"saliency_bench.cli", "saliency_bench.runner"}
    for n in low:
        assert not (reach(n) & high), (n, reach(n) & high)
    assert not reach("saliency_bench.models") & {"saliency_bench.config", "saliency_bench.runner"}
