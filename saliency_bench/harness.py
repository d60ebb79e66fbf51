"""The harness: plan a run, compute every heatmap once (cached, resumable), score, store, publish.

One pass over each (model, dataset) decodes every sample once (in DataLoader workers) and
hands each batch to every method that still needs it; each method's outputs go to the heatmap
cache and are scored at once by every benchmark; outcomes, records and timings of a batch are
written to the store in one transaction. The store's outcomes are the unit of resume: a run
killed at any moment and started again with the same settings (same run id) computes only
what has no outcome yet, reading heatmaps that reached the cache instead of recomputing them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import __version__, registry
from .benchmarks.runtime import model_forward_backward, timed
from .cache import HeatmapCache, safe
from .contracts import HEATMAP, POINT, Benchmark, Method, MethodOutputError, Sample, check_output
from .imageio import to_input
from .models import default_device
from .store import Store
from .targets import as_target_tensor

NOT_EVALUABLE = "not evaluable"


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------
@dataclass
class RunConfig:
    """Everything a run depends on; ``--config FILE.toml`` uses the same names."""

    methods: str = "*"
    models: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    weights: dict[str, str] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=lambda: ["sample"])
    split: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    benchmarks: str = "*"
    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> options
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method or "*" -> params
    device: str | None = None
    batch_size: int = 16
    workers: int = 2
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
        return out

    def default_run_id(self) -> str:
        blob = json.dumps(self.result_settings(), sort_keys=True, default=str)
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any of these options (command line wins)")
    p.add_argument("--methods", default=None, help="shell wildcards, e.g. 'grad*,mask' (default: all)")
    p.add_argument("--model", default=None, help="model name(s), comma-separated (default: efficientnet_lite0)")
    p.add_argument("--weights", action="append", metavar="[MODEL=]PATH", help="weights file for a model")
    p.add_argument("--dataset", action="append", metavar="NAME[:PATH]",
                   help="sample (default), imagenet:/data/ILSVRC2012, coco:/data/coco (repeatable)")
    p.add_argument("--split", help="dataset split (COCO: val2014, val2017, train2017 ...)")
    p.add_argument("--dataset-option", "-d", action="append", metavar="NAME=VALUE",
                   help="dataset option, e.g. -d heldout=5000 -d cap_per_category=400")
    p.add_argument("--limit", type=int, help="use only the first N samples of each dataset (0: all)")
    p.add_argument("--benchmarks", default=None, help="shell wildcards (default: all)")
    p.add_argument("--benchmark-option", "-B", action="append", metavar="BENCHMARK.NAME=VALUE",
                   help="benchmark option, e.g. -B pointing.resolution=input (saliency-bench list benchmarks)")
    p.add_argument("--param", "-p", action="append", metavar="[METHOD.]NAME=VALUE",
                   help="method parameter, e.g. -p mask.iterations=100 -p layer=inception4e")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per method call (default 16)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default 2)")
    p.add_argument("--runs-dir", default=None, help="where runs, the store and the heatmap cache live (default: runs)")
    p.add_argument("--run-id", default=None, help="name of the run (default: derived from the settings)")
    p.add_argument("--seed", type=int, default=None, help="seed for methods, splits and bootstrap (default 0)")
    p.add_argument("--cache-dtype", choices=("float16", "float32"), default=None,
                   help="how heatmaps are cached (default float16, scaled)")
    p.add_argument("--leaderboard-dir", default=None, help="also write the leaderboard files here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from .cli import parse_params, parse_value

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
    if args.methods is not None:
        cfg.methods = args.methods
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
    for opt in ("split", "limit", "device", "batch_size", "workers", "runs_dir", "run_id", "seed",
                "leaderboard_dir", "cache_dtype"):
        if getattr(args, opt, None) is not None:
            setattr(cfg, opt, getattr(args, opt))
    if args.benchmarks is not None:
        cfg.benchmarks = args.benchmarks
    for item in getattr(args, "benchmark_option", None) or ():
        key, sep, v = item.partition("=")
        bench, dot, name = key.strip().partition(".")
        if not (sep and dot and bench and name):
            raise ValueError(f"benchmark option '{item}' is not of the form BENCHMARK.NAME=VALUE")
        cfg.benchmark_options.setdefault(bench, {})[name.strip()] = parse_value(v)
    for item in args.dataset_option or ():
        k, _, v = item.partition("=")
        cfg.dataset_options[k.strip()] = parse_value(v)
    for scope, values in parse_params(args.param).items():
        cfg.params.setdefault(scope, {}).update(values)
    cfg.quiet = bool(args.quiet)
    return cfg


# --------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------
@dataclass
class Plan:
    methods: list[Method]
    benchmarks: list[Benchmark]
    skipped: list[str]


def make_plan(cfg: RunConfig) -> Plan:
    from .cli import params_for

    default_m = cfg.methods in ("*", "", None)
    names = registry.methods.select(cfg.methods, skip_broken=default_m)
    methods = []
    for n in names:
        m = registry.methods.get(n)
        methods.append(m.with_params(**params_for(n, cfg.params, m.defaults)))
    unknown_scopes = set(cfg.params) - {"*"} - set(names)
    if unknown_scopes:
        raise ValueError(f"parameters given for method(s) not in the run: {', '.join(sorted(unknown_scopes))}")
    default_b = cfg.benchmarks in ("*", "", None)
    bench_names = registry.benchmarks.select(cfg.benchmarks, skip_broken=default_b)
    unknown_b = sorted(set(cfg.benchmark_options) - set(bench_names))
    if unknown_b:
        raise ValueError(f"options given for benchmark(s) not in the run: {', '.join(unknown_b)}")
    benches = [make_benchmark(b, cfg.seed, cfg.benchmark_options.get(b, {})) for b in bench_names]
    skipped = [f"{m.name} x {b.name}: a {m.kind} method cannot be scored by {b.name}"
               for m in methods for b in benches if m.kind not in b.accepts]
    broken = [f"plugin {k}: {v}" for reg in (registry.methods, registry.benchmarks) for k, v in reg.broken.items()]
    return Plan(methods, benches, skipped + broken)


def make_benchmark(name: str, seed: int, options: dict[str, Any]) -> Benchmark:
    """The benchmark ``name`` with ``options``; an option it does not list in ``defaults`` is an
    error naming the ones it takes (a benchmark without ``defaults`` takes anything)."""
    cls = registry.benchmarks.get(name)
    known = getattr(cls, "defaults", None)
    if known is not None:
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"benchmark '{name}' has no option {', '.join(unknown)}; it takes: "
                             + ", ".join(f"{k}={v!r}" for k, v in known.items()))
    return registry.get_benchmark(name, **{"seed": seed, **options})


def open_dataset(spec: str, cfg: RunConfig):
    name, sep, path = spec.partition(":")
    factory = registry.datasets.get(name)
    kwargs = dict(cfg.dataset_options)
    if cfg.split is not None:
        kwargs["split"] = cfg.split
    accepted = _kwnames(factory)
    if not _takes_kwargs(factory):
        unknown = sorted(set(kwargs) - accepted)
        if unknown and len(cfg.datasets) == 1:
            raise ValueError(f"dataset '{name}' has no option {', '.join(unknown)}; it takes: "
                             f"{', '.join(sorted(accepted - {'path'})) or 'none'}")
        # With several datasets an option goes to those that take it (check_dataset_options
        # made sure that one does).
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    if "seed" in accepted:
        kwargs.setdefault("seed", cfg.seed)
    ds = factory(path, **kwargs) if sep else factory(**kwargs)
    key = f"{name}-" + hashlib.sha256(json.dumps([path, kwargs], sort_keys=True, default=str).encode()).hexdigest()[:8]
    display = getattr(ds, "name", "") or name
    return ds, display, key


def check_dataset_options(cfg: RunConfig) -> None:
    """Every dataset option (and --split) must be taken by at least one dataset of the run."""
    options = set(cfg.dataset_options) | ({"split"} if cfg.split is not None else set())
    if len(cfg.datasets) < 2 or not options:
        return
    factories = [registry.datasets.get(spec.partition(":")[0]) for spec in cfg.datasets]
    if any(_takes_kwargs(f) for f in factories):
        return
    taken = set().union(*(_kwnames(f) for f in factories))
    unknown = sorted(options - taken)
    if unknown:
        raise ValueError(f"no dataset of the run takes the option {', '.join(unknown)}")


def _kwnames(fn) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _takes_kwargs(fn) -> bool:
    import inspect

    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Loading (DataLoader workers decode and resize; the main process computes)
# --------------------------------------------------------------------------------------------
def view_plan(methods: Sequence[Method]) -> dict[tuple, tuple[Method, str]]:
    """The distinct views the methods need: ``{view key: (a method, its view name)}``; methods
    whose view keys are equal (the same function reading the same parameter values) share one
    computation per sample."""
    plan: dict[tuple, tuple[Method, str]] = {}
    for m in methods:
        for v in m.views:
            plan.setdefault(m.view_key(v), (m, v))
    return plan


class _Loaded(torch.utils.data.Dataset):
    """Decode, resize (and make the methods' views of) each sample, in DataLoader workers.

    An item is ``(index, sample, x, views)``: ``x`` the uint8 input, ``views`` ``{view key:
    uint8 tensor or None}`` made from the original image before it is dropped.
    """

    def __init__(self, ds, indices: Sequence[int], size: tuple[int, int],
                 views: dict[tuple, tuple[Method, str]] | None = None) -> None:
        self.ds, self.indices, self.size = ds, list(indices), size
        self.views = views or {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, Sample, torch.Tensor | None, dict]:
        i = self.indices[k]
        try:
            s = self.ds.load(i)
        except Exception as e:  # an adapter bug must cost one sample, not the run
            s = Sample(id=self.ds.ids[i], image=None, size=(0, 0), targets={}, category="?",
                       error=f"loading failed: {type(e).__name__}: {e}")
        x = None
        views: dict[tuple, torch.Tensor | None] = {}
        if s.error is None:
            try:
                x = to_input(s.image, self.size)
                for key, (method, name) in self.views.items():
                    views[key] = method.make_view(name, s.image, self.size)
            except Exception as e:
                s.error = f"resizing failed: {type(e).__name__}: {e}"
        s.image = None  # the decoded original stays in the worker
        return i, s, x, views


def _collate(batch: list) -> list:
    return batch


# --------------------------------------------------------------------------------------------
# Calling a method, with failures isolated to the samples that caused them
# --------------------------------------------------------------------------------------------
@dataclass
class CallResult:
    outputs: list[np.ndarray | None]
    reasons: list[str | None]
    info: list[dict]
    timing: tuple[float, int] | None  # (seconds, peak bytes) of the whole batch call


def call_method(method: Method, model, x: torch.Tensor, targets: torch.Tensor,
                views: dict[str, torch.Tensor | None] | None = None) -> CallResult:
    """Call a method on a batch; maps come back at the method's own resolution (no resizing:
    each benchmark brings them to its scoring resolution, PROTOCOLS.md §1)."""
    b = x.shape[0]
    views = views or {}
    try:
        (maps, info), seconds, peak = timed(lambda: method.explain(model, x, targets, **views), x.device)
        bad = check_output(method, maps, b)
    except MethodOutputError as e:
        return CallResult([None] * b, [str(e)] * b, [{} for _ in range(b)], None)
    except Exception as e:
        if b == 1:
            reason = f"method '{method.name}' raised {type(e).__name__}: {e}"
            return CallResult([None], [reason], [{}], None)
        parts = [call_method(method, model, x[i:i + 1], targets[i:i + 1],
                             {k: None if v is None else v[i:i + 1] for k, v in views.items()}) for i in range(b)]
        return CallResult([p.outputs[0] for p in parts], [p.reasons[0] for p in parts],
                          [p.info[0] for p in parts], None)
    arr = maps.detach().float().cpu().numpy()
    per_info = [{} for _ in range(b)]
    for k, v in info.items():
        vals = v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v)
        if len(vals) == b:
            for i in range(b):
                per_info[i][k] = vals[i]
    outputs = [None if i in bad else arr[i] for i in range(b)]
    reasons = [bad.get(i) for i in range(b)]
    return CallResult(outputs, reasons, per_info, (seconds, peak))


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def _meta(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except Exception:
        commit = ""
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"saliency_bench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": commit, "device": str(device), "device_name": dev}


class Distributed:
    """Rank and world size from torchrun's environment; the process group when world > 1.

    ``torchrun --nproc_per_node N -m saliency_bench run ...`` shards the samples of every
    (model, dataset) across ranks (``todo[rank::world]`` of what the store has not done yet, so a
    restart with another number of ranks still covers exactly the rest). Each rank writes its
    own shard store; rank 0 merges the shards into the run's store between barriers, then
    scores the dataset-level metrics and writes the leaderboard. No two ranks write one file.
    """

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank if device.index is None else device.index)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.backend = dist.get_backend()
        else:
            self.backend = None

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()


class Runner:
    def __init__(self, cfg: RunConfig, console=None) -> None:
        from rich.console import Console

        self.cfg = cfg
        self.console = console or Console()
        self.plan = make_plan(cfg)
        check_dataset_options(cfg)
        self.run_id = cfg.run_id or cfg.default_run_id()
        self.runs_dir = Path(cfg.runs_dir)
        self.run_dir = self.runs_dir / self.run_id
        self.dist = Distributed(torch.device(cfg.device or default_device()))
        self.device = self.dist.device
        self.rank, self.world = self.dist.rank, self.dist.world
        if self.rank != 0:
            self.cfg.quiet = True

    @property
    def shard_dir(self) -> Path:
        return self.run_dir / "shards"

    def _merge_shards(self, store: Store, delete: bool) -> None:
        for f in sorted(self.shard_dir.glob("*.sqlite")) if self.shard_dir.is_dir() else []:
            store.merge_from(f)
            if delete:
                for g in (f, f.with_name(f.name + "-wal"), f.with_name(f.name + "-shm")):
                    g.unlink(missing_ok=True)

    def run(self) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings = asdict(cfg) | {"run_id": self.run_id,
                                  "methods_resolved": {m.name: m.params for m in self.plan.methods},
                                  "benchmarks_resolved": [b.name for b in self.plan.benchmarks]}
        if self.rank == 0:
            store = Store(self.runs_dir / "store.sqlite")
            store.start_run(self.run_id, settings, _meta(self.device) | {"world_size": self.world,
                                                                        "backend": self.dist.backend})
            self._merge_shards(store, delete=True)  # what an interrupted distributed attempt left
            for line in self.plan.skipped:
                self.console.print(f"[yellow]skipped[/yellow] {line}")
        self.dist.barrier()
        if self.rank != 0:
            store = Store(self.runs_dir / "store.sqlite", create=False)
        writer = store
        if self.world > 1:
            import uuid

            self.shard_dir.mkdir(parents=True, exist_ok=True)
            writer = Store(self.shard_dir / f"rank{self.rank}-{uuid.uuid4().hex[:8]}.sqlite")
        torch.manual_seed(cfg.seed)
        for model_name in cfg.models:
            model = registry.get_model(model_name, weights=cfg.weights.get(model_name), device=str(self.device))
            for spec in cfg.datasets:
                ds, display, ds_key = open_dataset(spec, cfg)
                self.pass_over(store, writer, model, ds, display, ds_key)
                self.dist.barrier()
                if self.rank == 0:
                    self._merge_shards(store, delete=False)
                    self.summarize(store, model, display)
                    self.draw_gallery(store, model, ds, display, ds_key)
                self.dist.barrier()
        if writer is not store:
            writer.close()
        self.dist.barrier()
        if self.rank == 0:
            self._merge_shards(store, delete=True)
            if self.shard_dir.is_dir() and not any(self.shard_dir.iterdir()):
                self.shard_dir.rmdir()
            store.finish_run(self.run_id)
        store.close()
        if self.rank == 0:
            from .leaderboard import write_leaderboard

            written = write_leaderboard(self.run_dir, out=cfg.leaderboard_dir, console=self.console)
            self.console.print(f"run {self.run_id}: leaderboard written to "
                               + ", ".join(str(p) for p in written))
        self.dist.close()
        return self.run_dir

    def pass_over(self, store: Store, writer: Store, model, ds, display: str, ds_key: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        cfg = self.cfg
        n = len(ds) if not cfg.limit else min(len(ds), cfg.limit)
        ids = list(ds.ids[:n])
        model_key = f"{model.name}-{model.digest}"
        caches = {m.name: HeatmapCache(self.runs_dir / "cache", model_key, ds_key, m.key, cfg.cache_dtype)
                  for m in self.plan.methods}
        # Batches lie on a fixed grid over the dataset, and ranks take whole batches: every sample
        # is computed in the same batch whatever the number of ranks or interruptions, so the
        # floating-point results (which depend on the batch a sample is in) are the same too.
        grid = [range(j, min(j + cfg.batch_size, n)) for j in range(0, n, cfg.batch_size)]
        todo = {}
        for m in self.plan.methods:
            done = store.done_ids(self.run_id, model.name, display, m.name)
            todo[m.name] = {i for i, sid in enumerate(ids) if sid not in done}
        mine = [b for b in grid if any(i in t for t in todo.values() for i in b)][self.rank::self.world]
        indices = [i for b in mine for i in b]
        todo = {name: t & set(indices) for name, t in todo.items()}
        if not indices:
            return
        if self.rank == 0:
            self._measure_model(writer, model, display, ds, indices)
        loader = torch.utils.data.DataLoader(
            _Loaded(ds, indices, model.input_size, view_plan(self.plan.methods)), batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers, collate_fn=_collate, pin_memory=self.device.type == "cuda")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, disable=cfg.quiet, transient=False) as progress:
            tasks = {m.name: progress.add_task(f"{m.name} | {model.name} | {display}", total=len(todo[m.name]))
                     for m in self.plan.methods}
            for batch in loader:
                self._batch(writer, model, display, batch, todo, caches, progress, tasks)

    def _measure_model(self, store: Store, model, display: str, ds, indices: list[int]) -> None:
        """The model's own forward+backward at the run's batch size, on real inputs."""
        if not any(getattr(b, "timing", False) for b in self.plan.benchmarks):
            return
        xs, ts = [], []
        for i in indices:
            s = _Loaded(ds, [i], model.input_size)[0]
            t = s[1].target_in(model.label_space)
            if s[2] is not None and t:
                xs.append(s[2])
                ts.append(t)
            if len(xs) == min(self.cfg.batch_size, len(indices)):
                break
        if not xs:
            return
        reps = self.cfg.batch_size
        x = model.preprocess(torch.stack([xs[k % len(xs)] for k in range(reps)]))
        targets = as_target_tensor([ts[k % len(ts)] for k in range(reps)], device=x.device)
        fb = model_forward_backward(model, x, targets)
        store.set_metrics(self.run_id, model.name, display, "__model__", "runtime",
                          fb | {"device": str(self.device), "rank": self.rank})

    def _batch(self, store: Store, model, display: str, batch: list, todo: dict, caches: dict, progress,
               tasks: dict) -> None:
        samples = [s for _, s, _, _ in batch]
        store.add_samples(self.run_id, model.name, display,
                          [(s.id, i, s.category, s.split, s.flags) for i, s, _, _ in batch])
        pre_fail: dict[int, str] = {}
        for k, (_, s, x, _) in enumerate(batch):
            if s.error is not None:
                pre_fail[k] = s.error
            elif not s.target_in(model.label_space):
                pre_fail[k] = (f"{NOT_EVALUABLE}: category '{s.category}' has no class in the label space "
                               f"'{model.label_space}' of model '{model.name}'")
        good = [k for k in range(len(batch)) if k not in pre_fail]
        x_all = model.preprocess(torch.stack([batch[k][2] for k in good])) if good else None
        t_all = as_target_tensor([samples[k].target_in(model.label_space) for k in good],
                                 device=self.device) if good else None
        for method in self.plan.methods:
            mine = [k for k, (i, _, _, _) in enumerate(batch) if i in todo[method.name]]
            if not mine:
                continue
            cache = caches[method.name]
            outcomes: list[tuple] = [(samples[k].id, False, pre_fail[k], {}) for k in mine if k in pre_fail]
            run_ks = [k for k in mine if k not in pre_fail]
            # Maps another run left in the cache are re-scored from it (a later re-scoring may use
            # the lossy float16 cache; the run that computes a map scores it as computed, and
            # writes the cache only after the store, so its own resume never reads it back).
            cached = cache.get_many([samples[k].id for k in run_ks])
            outputs: dict[int, np.ndarray] = {k: cached[samples[k].id] for k in run_ks if samples[k].id in cached}
            lossy = {"rescored_from_float16_cache": True} if cache.lossy else {}
            outcomes += [(samples[k].id, True, None, dict(lossy)) for k in outputs]
            missing = [k for k in run_ks if k not in outputs]
            timing = None
            fresh: list[int] = []
            if missing:
                # The whole batch goes through the method, as in an uninterrupted run.
                views = {name: self._view_batch(model, batch, good, method, name) for name in method.views}
                res = call_method(method, model, x_all, t_all, views)
                fresh = [k for k in missing if res.outputs[good.index(k)] is not None]
                for k in missing:
                    j = good.index(k)
                    outcomes.append((samples[k].id, res.outputs[j] is not None, res.reasons[j], res.info[j]))
                outputs.update((k, res.outputs[good.index(k)]) for k in fresh)
                if res.timing is not None:
                    timing = (str(self.device), samples[good[0]].id, len(good), res.timing[0],
                              res.timing[1], self.rank)
            records = []
            scored_ks = sorted(outputs)
            for bench in self.plan.benchmarks:
                if getattr(bench, "timing", False) or method.kind not in bench.accepts:
                    continue
                ks = [k for k in scored_ks if bench.applies_to(samples[k])]
                if not ks:
                    continue
                scored, failed = score_isolated(bench, [samples[k] for k in ks], [outputs[k] for k in ks],
                                                model.input_size)
                records += [(bench.name, sid, r) for sid, r in scored]
                for sid, reason in failed.items():  # the sample counts as failed, with the reason
                    outcomes = [(o[0], False, reason, o[3]) if o[0] == sid else o for o in outcomes]
            store.write_batch(self.run_id, model.name, display, method.name, outcomes, records, timing)
            if fresh:
                cache.put([samples[k].id for k in fresh], np.stack([outputs[k] for k in fresh]))
            progress.advance(tasks[method.name], len(mine))

    @staticmethod
    def _view_batch(model, batch: list, good: list[int], method: Method, name: str) -> torch.Tensor | None:
        """The preprocessed view ``name`` of ``method`` for the batch's good samples (None if a
        sample's view is None: the method then falls back for the whole batch)."""
        key = method.view_key(name)
        parts = [batch[k][3].get(key) for k in good]
        if not parts or any(p is None for p in parts):
            return None
        return model.preprocess(torch.stack(parts))

    def draw_gallery(self, store: Store, model, ds, display: str, ds_key: str) -> None:
        """Overlays of the first few samples that every method explained, for the HTML page."""
        from .imageio import display_map, overlay

        if self.cfg.gallery <= 0 or self.rank != 0:
            return
        count: dict[str, int] = {}
        for m in self.plan.methods:
            for o in store.outcomes(self.run_id, model.name, display, m.name):
                count[o["id"]] = count.get(o["id"], 0) + int(o["ok"])
        meta = store.samples(self.run_id, model.name, display)
        # The first samples (in dataset order) that the most methods explained.
        ranked = sorted((sid for sid in meta if count.get(sid)), key=lambda sid: (-count[sid], meta[sid]["idx"]))
        chosen = ranked[: self.cfg.gallery]
        folder = self.run_dir / "gallery" / safe(model.name) / safe(display)
        folder.mkdir(parents=True, exist_ok=True)
        model_key = f"{model.name}-{model.digest}"
        caches = {m.name: HeatmapCache(self.runs_dir / "cache", model_key, ds_key, m.key, self.cfg.cache_dtype)
                  for m in self.plan.methods}
        for sid in chosen:
            sample = ds.load(meta[sid]["idx"])
            if sample.error is not None:
                continue
            w, h = sample.image.size
            ih, iw = model.input_size
            for m in self.plan.methods:
                cached = caches[m.name].get_many([sid]).get(sid)
                if cached is None:
                    continue
                if m.kind == POINT:
                    x, y = cached
                    pic = overlay(sample.image, point=(x * w / iw, y * h / ih))
                else:
                    pic = overlay(sample.image, display_map(cached, model.input_size))
                pic.thumbnail((2 * 110 * w // max(h, 1), 110))
                pic.save(folder / f"{safe(sid)}__{safe(m.name)}.jpg", quality=85)

    # -- summaries -------------------------------------------------------------------------
    def summarize(self, store: Store, model, display: str) -> None:
        summarize_into(store, self.run_id, model.name, display, self.plan)


def score_isolated(bench: Benchmark, samples: list[Sample], outputs: list[np.ndarray],
                   input_size: tuple[int, int]) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    """Score a batch; if the benchmark raises, score sample by sample so that only the sample
    whose ground truth or output it cannot handle fails, with the reason."""
    try:
        recs = bench.score_batch(samples, np.stack(outputs), input_size)
        return [(s.id, r) for s, r in zip(samples, recs)], {}
    except Exception:
        pass
    scored, failed = [], {}
    for s, o in zip(samples, outputs):
        try:
            scored.append((s.id, bench.score_batch([s], o[None], input_size)[0]))
        except Exception as e:
            failed[s.id] = f"benchmark '{bench.name}' could not score it: {type(e).__name__}: {e}"
    return scored, failed


def summarize_run(run_dir: Path) -> list[tuple[str, str]]:
    """Recompute every summary of a run from its per-sample records (``saliency-bench leaderboard
    RUN --summarize``): an interrupted run then shows what its finished samples give. The plan
    is rebuilt from the settings the run stored; returns the (model, dataset) pairs summarised."""
    run_dir = Path(run_dir)
    store = Store(run_dir.parent / "store.sqlite", create=False)
    try:
        info = store.run_info(run_dir.name)
        if info is None:
            raise FileNotFoundError(f"run '{run_dir.name}' is not in {run_dir.parent / 'store.sqlite'}")
        s = info["settings"]
        methods = []
        for name, params in (s.get("methods_resolved") or {}).items():
            try:
                methods.append(registry.methods.get(name).with_params(**params))
            except Exception as e:
                raise ValueError(f"cannot summarise method '{name}' of the run: {e} (load its plugin with "
                                 "--plugin)") from e
        options = s.get("benchmark_options") or {}
        benches = [make_benchmark(b, int(s.get("seed", 0)), options.get(b, {}))
                   for b in s.get("benchmarks_resolved") or []]
        plan = Plan(methods, benches, [])
        pairs = store.pairs(run_dir.name)
        for model, dataset in pairs:
            summarize_into(store, run_dir.name, model, dataset, plan)
        return pairs
    finally:
        store.close()


def summarize_into(store: Store, run_id: str, model: str, dataset: str, plan: Plan) -> None:
    meta = store.samples(run_id, model, dataset)
    for bench in plan.benchmarks:  # which protocol each column follows, for the leaderboard's notes
        protocol = getattr(bench, "protocol", None)
        if callable(protocol):
            store.set_metrics(run_id, model, dataset, "__protocol__", bench.name, dict(protocol()))
    fb = next((m["metrics"] for m in store.metrics(run_id)
               if m["model"] == model and m["dataset"] == dataset and m["method"] == "__model__"), None)
    for method in plan.methods:
        outs = store.outcomes(run_id, model, dataset, method.name)
        not_eval = sum(1 for o in outs if not o["ok"] and (o["reason"] or "").startswith(NOT_EVALUABLE))
        failed = [o for o in outs if not o["ok"] and not (o["reason"] or "").startswith(NOT_EVALUABLE)]
        coverage = {"scored": sum(o["ok"] for o in outs), "failed": len(failed), "not_evaluable": not_eval,
                    "total": len(outs), "failures": [{"id": o["id"], "reason": o["reason"]} for o in failed[:50]]}
        diags = [o["info"] for o in outs if o["ok"] and o["info"]]
        if diags:
            coverage["diagnostics"] = _diagnostics(diags)
        store.set_metrics(run_id, model, dataset, method.name, "coverage", coverage)
        for bench in plan.benchmarks:
            if method.kind not in bench.accepts:
                continue
            if getattr(bench, "timing", False):
                metrics = bench.summarize_timings(store.timings(run_id, model, dataset, method.name), fb)
            else:
                recs = store.records(run_id, model, dataset, method.name, bench.name)
                ids = [i for i in recs if i in meta]
                if not ids:  # nothing scored (every sample failed): the coverage says why
                    metrics = _empty_metrics(bench, "no scored sample")
                else:
                    try:
                        metrics = bench.summarize([recs[i] for i in ids], [meta[i] for i in ids])
                    except Exception as e:  # one benchmark's summary must not lose the leaderboard
                        metrics = _empty_metrics(bench, f"benchmark '{bench.name}' could not summarise: "
                                                        f"{type(e).__name__}: {e}")
            store.set_metrics(run_id, model, dataset, method.name, bench.name, metrics)


def _empty_metrics(bench: Benchmark, why: str) -> dict[str, dict]:
    return {c: {"value": None, "ci": None, "n": 0, "unit": "", "note": why} for c in bench.columns}


def _diagnostics(infos: list[dict]) -> dict:
    """Per-method summary of per-sample diagnostics: mean of numbers, counts of flags."""
    out: dict[str, Any] = {}
    for key in sorted({k for d in infos for k in d}):
        vals = [d[key] for d in infos if key in d]
        if all(isinstance(v, bool) for v in vals):
            out[key] = {"true": sum(vals), "false": len(vals) - sum(vals)}
        elif all(isinstance(v, (int, float)) for v in vals):
            arr = np.asarray(vals, dtype=float)
            out[key] = {"mean": float(np.nanmean(arr)) if np.isfinite(arr).any() else None,
                        "nan": int((~np.isfinite(arr)).sum())}
    return out


CPU_SAMPLES = 4  # the embedded default's sample size on a CPU (see README: The embedded default)


def embedded_default_limit(cfg: RunConfig, dataset_given: bool) -> int | None:
    """On a CPU, the embedded default (bundled sample, no --limit) takes the first few samples:
    the occlusion family and the mask cost hundreds of passes per image."""
    device = torch.device(cfg.device or default_device())
    if dataset_given or cfg.limit is not None or cfg.datasets != ["sample"] or device.type != "cpu":
        return cfg.limit
    return int(os.environ.get("SALIENCY_BENCH_CPU_SAMPLES", CPU_SAMPLES)) or None


def run_from_args(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    given = bool(args.dataset) or bool(getattr(args, "config", None))
    limit = embedded_default_limit(cfg, given)
    if limit != cfg.limit:
        cfg.limit = limit
        from rich.console import Console

        Console().print(f"[dim]CPU: the embedded default run takes the first {limit} samples of the bundled "
                        "sample (--limit N or SALIENCY_BENCH_CPU_SAMPLES=N to change; 0 for all)[/dim]")
    Runner(cfg).run()
    return 0
