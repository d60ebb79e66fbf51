"""A run's configuration: the settings, the command-line options and the TOML file that set them.

Every setting has one name, used by ``--config FILE.toml`` and by the ``RunConfig`` fields;
the command line wins over the file. Parameters and options are parsed here (``parse_params``),
not in the command line's module, so that nothing below the CLI imports it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .variants import parse_value, partition_top, rsplit_top


def default_device() -> str:
    """``SALIENCY_BENCH_DEVICE``, else cuda when there is one, else cpu."""
    import torch

    return os.environ.get("SALIENCY_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def parse_params(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``-p k=v`` (every method that has ``k``) or ``-p SCOPE.k=v`` (the methods SCOPE names: a
    name, a shell pattern or a variant id) -> ``{scope or '*': {k: v}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        key, sep, value = partition_top(item, "=")
        if not sep or not key.strip():
            raise ValueError(f"parameter '{item}' is not of the form [METHOD.]NAME=VALUE")
        scope, name = rsplit_top(key.strip())
        out.setdefault(scope or "*", {})[name.strip()] = parse_value(value)
    return out


@dataclass
class RunConfig:
    """Everything a run depends on; ``--config FILE.toml`` uses the same names."""

    # names, wildcards and variant ids: 'gradient,gradient[smooth=0.02]'; None: every method (on a
    # CPU, those of hundreds of passes per image only with all_methods)
    methods: str | list[str] | None = None
    all_methods: bool = False

    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    weights: dict[str, str] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=lambda: ["sample"])
    split: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    benchmarks: str | list[str] | None = None  # None: those that run by default
    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> options
    # method (name, pattern or variant id; "*": every method that has the parameter) -> params;
    # a list of values for a scalar parameter is a grid (one row each); in TOML a list of
    # parameter sets is one row per set
    params: dict[str, dict[str, Any] | list[dict[str, Any]]] = field(default_factory=dict)
    device: str | None = None
    batch_size: int = 16
    workers: int = 2
    scoring_workers: int | None = None  # processes scoring the maps; None: from the cores (scoring.py)
    runs_dir: str = "runs"
    run_id: str | None = None
    seed: int = 0
    leaderboard_dir: str | None = None
    cache_dtype: str = "float16"
    gallery: int = 3  # samples per method drawn in the HTML leaderboard
    quiet: bool = False

    def result_settings(self) -> dict:
        """The settings that decide the results (and so the default run id)."""
        keys = ("methods", "models", "weights", "datasets", "split", "dataset_options", "limit",
                "benchmarks", "params", "seed")
        out = {k: getattr(self, k) for k in keys}
        if self.benchmark_options:  # only when given: run ids of earlier settings stay the same
            out["benchmark_options"] = self.benchmark_options
        if self.all_methods:
            out["all_methods"] = True
        return out

    def default_run_id(self) -> str:
        blob = json.dumps(self.result_settings(), sort_keys=True, default=str)
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any of these options (command line wins)")
    p.add_argument("--methods", action="append", default=None,
                   help="names, shell wildcards and variant ids, e.g. 'grad*,mask,gradient[smooth=0.02]' (default: all)")
    p.add_argument("--all-methods", action="store_true",
                   help="with no --methods on a CPU, also run the methods of hundreds of passes per image")
    p.add_argument("--model", default=None, help="model name(s), comma-separated (default: efficientnet_lite0)")
    p.add_argument("--weights", action="append", metavar="[MODEL=]PATH", help="weights file for a model")
    p.add_argument("--dataset", action="append", metavar="NAME[:PATH]",
                   help="sample (default), imagenet:/data/ILSVRC2012, coco:/data/coco (repeatable)")
    p.add_argument("--split", help="dataset split (COCO: val2014, val2017, train2017 ...)")
    p.add_argument("--dataset-option", "-d", action="append", metavar="NAME=VALUE",
                   help="dataset option, e.g. -d heldout=5000 -d cap_per_category=400")
    p.add_argument("--limit", type=int, help="use only the first N samples of each dataset (0: all)")
    p.add_argument("--benchmarks", default=None,
                   help="names, shell wildcards and variant ids, e.g. 'pointing,pointing[resolution=input]' (default: all)")
    p.add_argument("--benchmark-option", "-B", action="append", metavar="BENCHMARK.NAME=VALUE",
                   help="benchmark option, e.g. -B pointing.resolution=input (saliency-bench list benchmarks)")
    p.add_argument("--param", "-p", action="append", metavar="[METHOD.]NAME=VALUE",
                   help="method parameter, e.g. -p mask.iterations=100 -p layer=inception4e; METHOD may be a "
                        "wildcard ('mask*.iterations=100'); a list is a grid, one row per value "
                        "(-p 'mask.iterations=[100,300]')")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per method call (default 16)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default 2)")
    p.add_argument("--scoring-workers", type=int, default=None, metavar="N",
                   help="processes that score the maps while the device computes the next ones; 0: score in "
                        "the main process (default: the cores left after the main process and the loader workers)")
    p.add_argument("--runs-dir", default=None, help="where runs, the store and the heatmap cache live (default: runs)")
    p.add_argument("--run-id", default=None, help="name of the run (default: derived from the settings)")
    p.add_argument("--seed", type=int, default=None, help="seed for methods, splits and bootstrap (default 0)")
    p.add_argument("--cache-dtype", choices=("float16", "float32"), default=None,
                   help="how heatmaps are cached (default float16, scaled)")
    p.add_argument("--leaderboard-dir", default=None, help="also write the leaderboard files here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = RunConfig()
    if getattr(args, "config", None):
        data = tomllib.loads(Path(args.config).read_text())
        aliases = {"model": "models", "dataset": "datasets", "method": "methods", "benchmark": "benchmarks"}
        for key, value in data.items():
            key = aliases.get(key, key).replace("-", "_")
            if not hasattr(cfg, key):
                raise ValueError(f"{args.config}: unknown setting '{key}'")
            if key in ("models", "datasets") and isinstance(value, str):
                value = [v.strip() for v in value.split(",")] if key == "models" else [value]
            setattr(cfg, key, value)
    if args.methods:
        cfg.methods = ",".join(args.methods)
    if args.model is not None:
        cfg.models = [m.strip() for m in args.model.split(",") if m.strip()]
    for w in args.weights or ():
        name, sep, path = w.partition("=")
        if sep and not os.path.exists(w):
            cfg.weights[name] = path
        elif len(cfg.models) == 1:
            cfg.weights[cfg.models[0]] = w
        else:
            raise ValueError(f"--weights {w}: with several models write MODEL=PATH")
    if args.dataset:
        cfg.datasets = list(args.dataset)
    for opt in ("split", "limit", "device", "batch_size", "workers", "scoring_workers", "runs_dir", "run_id", "seed",
                "leaderboard_dir", "cache_dtype"):
        if getattr(args, opt, None) is not None:
            setattr(cfg, opt, getattr(args, opt))
    if args.benchmarks is not None:
        cfg.benchmarks = args.benchmarks
    for item in getattr(args, "benchmark_option", None) or ():
        key, sep, v = partition_top(item, "=")
        bench, name = rsplit_top(key.strip())
        dot = "." if bench else ""
        if not (sep and dot and bench and name):
            raise ValueError(f"benchmark option '{item}' is not of the form BENCHMARK.NAME=VALUE")
        cfg.benchmark_options.setdefault(bench, {})[name.strip()] = parse_value(v)
    for item in args.dataset_option or ():
        k, _, v = item.partition("=")
        cfg.dataset_options[k.strip()] = parse_value(v)
    for scope, values in parse_params(args.param).items():
        old = cfg.params.get(scope, {})
        cfg.params[scope] = [{**o, **values} for o in old] if isinstance(old, list) else {**old, **values}
    cfg.quiet = bool(args.quiet)
    cfg.all_methods = cfg.all_methods or bool(getattr(args, "all_methods", False))
    return cfg
