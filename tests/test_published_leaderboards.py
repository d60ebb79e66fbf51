"""Every committed leaderboard (``leaderboard/*/``) is what today's code would produce for its
``COMMAND``: the settings that decide the results, and per (model, dataset) table the columns
and the skipped benchmarks. Cheap: the command is parsed with the CLI's own parser and planned
(methods, benchmarks, options, the datasets' ground truth), nothing is run."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from saliency_bench.cli import build_parser
from saliency_bench.config import config_from_args
from saliency_bench.plan import benchmark_applies, make_plan, open_dataset

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(p.parent.name for p in (ROOT / "leaderboard").glob("*/COMMAND"))

# The settings that decide a leaderboard's numbers and layout (paths, progress bars and the
# number of loader workers do not).
RESULT_KEYS = ("methods", "all_methods", "models", "weights", "datasets", "split", "dataset_options", "limit",
               "benchmarks", "benchmark_options", "params", "seed", "batch_size", "cache_dtype",
               "methods_resolved", "methods_left_out", "benchmarks_resolved", "benchmark_options_resolved")

# Folders written by older code, to be regenerated with their COMMAND (the test then passes and
# strict xfail asks for the entry to go).
STALE: dict[str, str] = {}


def command_argv(folder: str) -> list[str]:
    """The ``saliency-bench`` arguments of a folder's COMMAND (comments and line breaks dropped)."""
    lines = [line.split(" #", 1)[0].rstrip() for line in (ROOT / "leaderboard" / folder / "COMMAND").read_text()
             .splitlines() if not line.lstrip().startswith("#")]
    argv = shlex.split(" ".join(line.rstrip("\\") for line in lines))
    assert argv and argv[0] == "saliency-bench", f"{folder}/COMMAND does not run saliency-bench: {argv[:1]}"
    return argv[1:]


def expected(folder: str) -> tuple[dict, dict[tuple[str, str], dict]]:
    """Today's settings and tables for the folder's COMMAND: (settings, {(model, dataset):
    {"columns": [...], "skipped": [...]}})."""
    args = build_parser().parse_args(command_argv(folder))
    assert args.command == "run"
    cfg = config_from_args(args)
    plan = make_plan(cfg, cpu_default=not cfg.all_methods)  # the committed runs were made on CPUs
    settings = {k: v for k, v in vars(cfg).items()} | {
        "methods_resolved": {m.name: m.params for m in plan.methods},
        "methods_left_out": [m.name for m in plan.left_out],
        "benchmarks_resolved": [b.name for b in plan.benchmarks],
        "benchmark_options_resolved": {b.name: {k: v for k, v in b.options.items() if k != "seed"}
                                       for b in plan.benchmarks}}
    tables = {}
    for model in cfg.models:
        for spec in cfg.datasets:
            ds, display, _ = open_dataset(spec, cfg)
            skipped = [b.name for b in plan.benchmarks if benchmark_applies(b, ds)]
            cols = [c for b in plan.benchmarks if b.name not in skipped for c in b.column_info()]
            tables[(model, display)] = {"columns": cols, "skipped": skipped}
    return json.loads(json.dumps(settings, default=str)), tables


def differences(folder: str) -> list[str]:
    """What in the committed folder differs from what today's code produces for its COMMAND."""
    committed = json.loads((ROOT / "leaderboard" / folder / "leaderboard.json").read_text())
    settings, tables = expected(folder)
    out = []
    for k in RESULT_KEYS:
        have, want = committed["settings"].get(k, "(missing)"), settings.get(k)
        if have != want:
            out.append(f"settings.{k}: committed {have!r}, today {want!r}")
    shown = {(t["model"], t["dataset"]): t for t in committed["tables"]}
    for key in sorted(set(shown) - set(tables)):
        out.append(f"table {key}: committed, not in today's plan")
    for key, want in tables.items():
        t = shown.get(key)
        if t is None:
            if any(want["columns"]):
                out.append(f"table {key}: missing")
            continue
        if "columns" not in t:
            keys = {k for r in t["rows"] for k, v in r.items() if isinstance(v, dict) and "value" in v}
            extra = sorted(keys - {c["key"] for c in want["columns"]})
            out.append(f"table {key}: written before benchmarks declared their columns; metrics today's code "
                       f"would not show: {', '.join(extra) or 'none'}")
        elif t["columns"] != want["columns"]:
            have_keys, want_keys = [c["key"] for c in t["columns"]], [c["key"] for c in want["columns"]]
            out.append(f"table {key}: columns {have_keys}, today {want_keys}" if have_keys != want_keys else
                       f"table {key}: column descriptions differ: {t['columns']} != {want['columns']}")
        if "skipped" in t and sorted(t["skipped"]) != sorted(want["skipped"]):
            out.append(f"table {key}: skipped {sorted(t['skipped'])}, today {sorted(want['skipped'])}")
    return out


def _needs(folder: str) -> None:
    """Skip, saying why, when the folder's datasets or methods are not here."""
    from saliency_bench import registry

    text = (ROOT / "leaderboard" / folder / "COMMAND").read_text()
    if "../shared/data" in text and not (ROOT.parent / "shared" / "data" / "README.md").is_file():
        pytest.skip(f"{folder}: needs the shared test data at ../shared/data")
    for pack in ("captum.", "gradcam."):
        if pack in text and not registry.methods.select(pack + "*", skip_broken=True):
            pytest.skip(f"{folder}: needs the {pack.rstrip('.')} method pack's library")


@pytest.mark.parametrize("folder", [pytest.param(f, marks=pytest.mark.xfail(reason=STALE[f], strict=True))
                                    if f in STALE else f for f in FOLDERS])
def test_committed_leaderboard_is_what_its_command_produces(folder, monkeypatch):
    from saliency_bench import registry

    for kind in ("methods", "benchmarks"):  # what is installed only (other tests load plugin files)
        fresh = registry.Registry(kind)
        monkeypatch.setattr(registry, kind, fresh)
        monkeypatch.setitem(registry.REGISTRIES, kind, fresh)
    _needs(folder)
    monkeypatch.chdir(ROOT)  # COMMANDs run from the project root (../shared/data)
    diff = differences(folder)
    assert not diff, f"leaderboard/{folder} is stale (regenerate it with its COMMAND):\n  " + "\n  ".join(diff)


def test_every_folder_has_a_command_and_a_leaderboard():
    folders = [p for p in (ROOT / "leaderboard").iterdir() if p.is_dir()]
    assert folders
    for p in folders:
        assert (p / "COMMAND").is_file() and (p / "leaderboard.json").is_file(), p.name
