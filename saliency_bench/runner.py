"""The run: plan it, compute every heatmap once (cached, resumable), score, store, publish.

One pass over each (model, dataset) decodes every sample once (in DataLoader workers) and
hands each batch to every method that still needs it; each method's outputs go to the heatmap
cache and are scored at once by every benchmark that applies to the dataset; outcomes, records
and timings of a batch are written to the store in one transaction. The store's outcomes are
the unit of resume: a run killed at any moment and started again with the same settings (same
run id) computes only what has no outcome yet, reading heatmaps that reached the cache instead
of recomputing them.

The rooms: :mod:`.config` (settings), :mod:`.plan` (rows, columns, variants),
:mod:`.execute` (a batch, failures isolated), :mod:`.distributed`, :mod:`.summary`,
:mod:`.report.gallery`; this module only runs them in order.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape

from . import __version__, registry
from .cache import HeatmapCache, untrusted_note, wait_for_writes
from .compare import is_baseline
from .config import RunConfig, config_from_args, default_device
from .contracts import Method, ModelQuery, Row
from .distributed import Distributed
from .execute import NOT_EVALUABLE, Batch, _collate, _Loaded, call_method
from .imageio import stack_images
from .report.gallery import draw_gallery
from .isolation import Guard
from .plan import benchmark_applies, benchmark_subset, bench_view_key, check_dataset_options, cost, make_plan, open_dataset, view_plan
from .scoring import Scorer, scoring_workers
from .seeding import batch_seed
from .store import Outcome, Store, Timing
from .summary import SCORING_COST, summarize_into
from .targets import Targets
from .timing import model_forward_backward


def _meta(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except Exception:
        commit = ""
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"saliency_bench": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": commit, "device": str(device), "device_name": dev}


class Runner:
    def __init__(self, cfg: RunConfig, console=None) -> None:
        from rich.console import Console

        self.cfg = cfg
        self.console = console or Console(emoji=False)
        device = torch.device(cfg.device or default_device())
        self.plan = make_plan(cfg, cpu_default=cpu_default(cfg, device))
        check_dataset_options(cfg)
        self.run_id = cfg.run_id or cfg.default_run_id()
        self.runs_dir = Path(cfg.runs_dir)
        self.run_dir = self.runs_dir / self.run_id
        self.dist = Distributed(torch.device(cfg.device or default_device()))
        self.device = self.dist.device
        self.rank, self.world = self.dist.rank, self.dist.world
        if self.rank != 0:
            self.cfg.quiet = True
        self.guard: Guard | None = None  # the loaded model's pristine state (isolation.py)
        self._said: set[str] = set()
        self._outside_own = False  # only saliency_bench's own code runs between batches (run())

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
        settings = asdict(cfg) | {
            "run_id": self.run_id,
            "methods_resolved": {m.name: m.params for m in self.plan.methods},
            "methods_plan": [{"name": m.name, "base": m.base, "id_params": m.id_params, "params": m.params}
                             | ({"baseline": True} if is_baseline(m) else {}) for m in self.plan.methods],
            "methods_left_out": [m.name for m in self.plan.left_out],
            "benchmarks_resolved": [b.name for b in self.plan.benchmarks],
            "benchmark_options_resolved": {b.name: {k: v for k, v in b.options.items() if k != "seed"}
                                           for b in self.plan.benchmarks}}
        if self.rank == 0:
            store = Store(self.runs_dir / "store.sqlite")
            store.start_run(self.run_id, settings, _meta(self.device) | {"world_size": self.world,
                                                                        "backend": self.dist.backend})
            self._merge_shards(store, delete=True)  # what an interrupted distributed attempt left
            for line in self.plan.skipped:
                self.console.print(f"[yellow]skipped[/yellow] {escape(line)}")
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
            self.guard = Guard(model)
            for spec in cfg.datasets:
                ds, display, ds_key = open_dataset(spec, cfg)
                # Only the harness's own code runs here between batches when the dataset (factory
                # and adapter), the model and every benchmark are its own: then no check is needed
                # between a batch's last method call and the next batch's first (_batch).
                self._outside_own = all(map(registry.own_code, (registry.datasets.get(spec.partition(":")[0]), ds, model,
                                                   *self.plan.benchmarks)))
                skipped = {b.name: why for b in self.plan.benchmarks if (why := benchmark_applies(b, ds))}
                if self.rank == 0:
                    for why in skipped.values():
                        self.console.print(f"[yellow]skipped[/yellow] on {escape(display)}: {escape(why)}",
                                           highlight=False)
                subsets = {b.name: note for b in self.plan.benchmarks if (note := benchmark_subset(b, ds))}
                self.pass_over(store, writer, model, ds, display, ds_key, skipped)
                self.dist.barrier()
                if self.rank == 0:
                    self._merge_shards(store, delete=False)
                    self.summarize(store, model, display, skipped, subsets)
                    self.draw_gallery(store, model, ds, display, ds_key)
                    self._left_out_note(store, model, display, len(ds) if not cfg.limit else min(len(ds), cfg.limit))
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
            from .report import write_leaderboard

            written = write_leaderboard(self.run_dir, out=cfg.leaderboard_dir, console=self.console)
            self.console.print(f"run {self.run_id}: leaderboard written to "
                               + ", ".join(str(p) for p in written))
        self.dist.close()
        return self.run_dir

    def _left_out_note(self, store: Store, model, display: str, n: int) -> None:
        """Say which heavy methods the CPU default left out, and about how long they would take."""
        if not self.plan.left_out and not self.plan.left_out_benchmarks:
            return
        fb = next((m["metrics"] for m in store.metrics(self.run_id)
                   if m["model"] == model.name and m["dataset"] == display and m["method"] == Row.MODEL), None)
        rate = (fb or {}).get("images_per_s")
        parts = []
        for m in self.plan.left_out:
            c = cost(m) or 0
            est = f", about {_duration(c * n / rate)} here" if rate else ""
            parts.append(f"{m.name} (~{c:.0f} passes/image{est})")
        if parts:
            self.console.print("[yellow]left out on this CPU[/yellow] (a hundred passes per image or more): "
                               + escape("; ".join(parts)) + f" for the {n} samples of {display}. Name them "
                               "(--methods 'mask*,occlusion') or add --all-methods; on a GPU the default runs "
                               "them all.", highlight=False)
        per_method = [f"{b.name} (~{b.cost:.0f} passes/sample"
                      + (f", about {_duration(b.cost * n / rate)} per method here)" if rate else ")")
                      for b in self.plan.left_out_benchmarks]
        if per_method:
            self.console.print("[yellow]benchmarks left out on this CPU[/yellow]: " + escape("; ".join(per_method))
                               + ". Name them (--benchmarks 'deletion*,insertion') or add --all-methods.",
                               highlight=False)

    def pass_over(self, store: Store, writer: Store, model, ds, display: str, ds_key: str,
                  skipped: dict[str, str] | None = None) -> None:
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
        if self.rank == 0 and (note := untrusted_note(self.runs_dir / "cache")):
            self._note(note)
        benches = [b for b in self.plan.benchmarks if b.name not in (skipped or {})]
        if self.rank == 0:
            self._compile_note(benches)
            self._measure_model(writer, model, display, ds, indices)
        loader = torch.utils.data.DataLoader(
            _Loaded(ds, indices, model.input_size, view_plan(self.plan.methods, benches)), batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers, collate_fn=_collate, pin_memory=self.device.type == "cuda")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("left"), TimeRemainingColumn())
        # One bar per (model, dataset): samples x methods done, the method being run, time left;
        # only on a terminal (a pipe or a log file gets the summary, not redraws).
        quiet = cfg.quiet or not self.console.is_terminal
        # The scoring workers are forked here, before the loader's workers and the progress bar.
        with Scorer(benches, scoring_workers(cfg), guard=self.guard) as self.scorer, \
                Progress(*columns, console=self.console, disable=quiet, transient=False) as progress:
            task = progress.add_task(f"{model.name} | {display}", total=sum(len(t) for t in todo.values()))
            for k, loaded in enumerate(loader):
                self._batch(writer, model, display, loaded, todo, caches, progress, task, benches,
                            check_outside=k == 0 or not self._outside_own)
            self.scorer.close()
            wait_for_writes()  # the pass's heatmap files are on disk (the gallery and later passes read them)
            progress.update(task, description=f"{model.name} | {display} | done")

    def _compile_note(self, benches) -> None:
        """Say so before the scoring kernels of ``benches`` are compiled (numba, the first run on a
        machine): else the first batch seems to hang for half a minute."""
        uses = {b.name: set(b.compiled_kernels(self.device)) for b in benches
                if registry.own_code(b) and hasattr(b, "compiled_kernels")}
        modules = sorted(set().union(*uses.values()))
        if not modules:
            return
        from .ops.jit import uncached

        not_yet = set(uncached(modules))
        # A benchmark none of whose modules numba has cached: the first run here, most of the time.
        # (A map seen for the first time can still compile one module's kernels in a later run, a
        # few seconds: the pixel sweeps after runs whose maps were all smooth, say.)
        cold = sorted(name for name, mods in uses.items() if mods and mods <= not_yet)
        if cold:
            self._note(f"compiling the scoring kernels of {', '.join(cold)} for this machine (numba, once: about "
                       "half a minute on two cores; later runs load them from numba's cache)")

    def _note(self, note: str) -> None:
        """Print ``note`` once a run."""
        if note not in self._said:
            self._said.add(note)
            self.console.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False)

    def _measure_model(self, store: Store, model, display: str, ds, indices: list[int]) -> None:
        """The model's own forward+backward at the run's batch size, on real inputs."""
        if not any(b.timing for b in self.plan.benchmarks) and not self.plan.left_out:
            return
        xs, ts = [], []
        for i in indices:
            it = _Loaded(ds, [i], model.input_size)[0]
            t = it.sample.target_in(model.label_space)
            if it.x is not None and t:
                xs.append(it.x)
                ts.append(t)
            if len(xs) == min(self.cfg.batch_size, len(indices)):
                break
        if not xs:
            return
        reps = self.cfg.batch_size
        x = model.preprocess(stack_images([xs[k % len(xs)] for k in range(reps)]))
        targets = Targets([ts[k % len(ts)] for k in range(reps)], device=x.device)
        fb = model_forward_backward(model, x, targets)
        self._verify_outside_methods("measuring the model")
        store.set_metrics(self.run_id, model.name, display, Row.MODEL, "runtime",
                          fb | {"device": str(self.device), "rank": self.rank})

    def _batch(self, store: Store, model, display: str, loaded: Batch, todo: dict, caches: dict, progress,
               task, benches: list, check_outside: bool = True) -> None:
        """One batch through every method and benchmark. ``check_outside``: verify the model and the
        process state before the first method (what ran since the last check may not be the
        harness's: a dataset adapter in this process, a benchmark scoring here, a model's
        preprocessing); every method call is verified after it in any case."""
        batch = loaded.unpack()
        samples = [it.sample for it in batch]
        store.add_samples(self.run_id, model.name, display,
                          [(it.sample.id, it.index, it.sample.category, it.sample.split, it.sample.flags)
                           for it in batch])
        pre_fail: dict[int, str] = {}
        for k, it in enumerate(batch):
            s = it.sample
            if s.error is not None:
                pre_fail[k] = s.error
            elif not s.target_in(model.label_space):
                pre_fail[k] = (f"{NOT_EVALUABLE}: category '{s.category}' has no class in the label space "
                               f"'{model.label_space}' of model '{model.name}'")
        good = [k for k in range(len(batch)) if k not in pre_fail]
        x_all = model.preprocess(loaded.inputs(good)) if good else None
        t_all = Targets([samples[k].target_in(model.label_space) for k in good],
                        device=self.device) if good else None
        if check_outside:
            self._verify_outside_methods("loading the batch")
        views_made: dict = {}  # benchmark views, preprocessed once per batch
        for method in self.plan.methods:
            mine = [k for k, it in enumerate(batch) if it.index in todo[method.name]]
            if not mine:
                continue
            progress.update(task, description=f"{method.name} | {model.name} | {display}")
            cache = caches[method.name]
            outcomes = [Outcome(samples[k].id, False, pre_fail[k]) for k in mine if k in pre_fail]
            run_ks = [k for k in mine if k not in pre_fail]
            # Maps another run left in the cache are re-scored from it (a later re-scoring may use
            # the lossy float16 cache; the run that computes a map scores it as computed, and
            # writes the cache only after the store, so its own resume never reads it back).
            cached = cache.get_many([samples[k].id for k in run_ks])
            outputs: dict[int, np.ndarray] = {k: cached[samples[k].id] for k in run_ks if samples[k].id in cached}
            lossy = {"rescored_from_float16_cache": True} if cache.lossy else {}
            outcomes += [Outcome(samples[k].id, True, None, dict(lossy)) for k in outputs]
            missing = [k for k in run_ks if k not in outputs]
            timing = None
            fresh: list[int] = []
            if missing:
                # The whole batch goes through the method, as in an uninterrupted run; the guard
                # fails the batch if the method changed the model (its maps are not scored or
                # cached) and puts the model back for the next method.
                views = {name: self._view_batch(model, batch, good, method, name) for name in method.views}
                # Inputs the method writes into stay its own: it gets copies unless nothing reads
                # them after it (the batch's last method, no benchmark with the model in the loop).
                shared = method is not self.plan.methods[-1] or any(b.uses_model for b in benches)
                res = call_method(method, model, x_all, t_all, views, self.guard,
                                  batch_seed(self.cfg.seed, [samples[k].id for k in good]), shared=shared)
                fresh = [k for k in missing if res.outputs[good.index(k)] is not None]
                for k in missing:
                    j = good.index(k)
                    outcomes.append(Outcome(samples[k].id, res.outputs[j] is not None, res.reasons[j], res.info[j]))
                outputs.update((k, res.outputs[good.index(k)]) for k in fresh)
                if res.timing is not None:
                    timing = Timing(str(self.device), samples[good[0]].id, len(good), res.timing[0],
                                    res.timing[1], self.rank)
            jobs = []
            scored_ks = sorted(outputs)
            for bench in benches:
                if bench.timing or method.kind not in bench.accepts:
                    continue
                ks = [k for k in scored_ks if bench.applies_to(samples[k])]
                if not ks:
                    continue
                query = self._model_query(model, batch, good, x_all, t_all, ks, bench, views_made,
                                          method if bench.reruns_method else None) if bench.uses_model else None
                jobs.append((bench, [samples[k] for k in ks], [outputs[k] for k in ks], query))
            # Scored here or in the scoring workers; written in this order either way (scoring.py).
            self.scorer.submit(jobs, model.input_size, partial(
                self._write, store, model, display, method, outcomes, timing, jobs, cache,
                [samples[k].id for k in fresh], [outputs[k] for k in fresh], progress, task, len(mine)))

    def _write(self, store: Store, model, display: str, method: Method, outcomes: list[Outcome],
               timing: Timing | None, jobs: list, cache, fresh_ids: list[str], fresh_maps: list, progress, task, advance: int, results: list) -> None:
        """One method's batch, scored: its outcomes, records and timing to the store, then its
        fresh maps to the cache."""
        records = []
        for (bench, _, _, query), (scored, failed) in zip(jobs, results):
            if query is not None and scored:  # its cost, shared by the samples it scored
                share = {"seconds": query.seconds / len(scored), "passes": query.passes / len(scored)}
                scored = [(sid, {**r, SCORING_COST: share}) for sid, r in scored]
            records += [(bench.name, sid, r) for sid, r in scored]
            for o in outcomes:  # the sample counts as failed, with the reason
                if o.sample_id in failed:
                    o.ok, o.reason = False, failed[o.sample_id]
        store.write_batch(self.run_id, model.name, display, method.name, outcomes, records, timing)
        if fresh_ids:  # only maps of a model verified unchanged after the call reach here
            cache.put(fresh_ids, np.stack(fresh_maps))
        progress.advance(task, advance)

    def _verify_outside_methods(self, where: str) -> None:
        """Changes made outside any method (a dataset adapter, the harness) are put back too,
        and said once per kind."""
        what = self.guard.verify() if self.guard is not None else None
        if what is not None and what not in self._said:
            self._said.add(what)
            self.console.print(f"[yellow]restored[/yellow] while {where}, something outside the methods "
                               f"{escape(what)}", highlight=False)

    def _model_query(self, model, batch: list, good: list[int], x_all, t_all, ks: list[int], bench,
                     views_made: dict, method: Method | None = None) -> ModelQuery:
        """The model in the loop for ``bench`` over the batch's samples ``ks``; its views are
        preprocessed once per batch (``views_made``), whichever method's maps it scores. With
        ``method``, the query can re-run it (``ModelQuery.explain``), isolated as the harness calls it;
        those maps are never cached."""
        rows = [good.index(k) for k in ks]
        views = {}
        for v in getattr(bench, "views", ()) or ():
            key = (bench_view_key(bench, v), tuple(ks))
            if key not in views_made:
                views_made[key] = self._view_batch(model, batch, ks, None, v, key[0])
            made = views_made[key]  # a copy: what a benchmark writes into it stays its own
            views[v] = None if made is None else made.clone()
        idx = torch.as_tensor(rows, device=x_all.device)
        if method is None:
            return ModelQuery(model, x_all[idx], t_all[rows], views, batch_size=self.cfg.batch_size)
        method_views = {v: self._view_batch(model, batch, ks, method, v) for v in method.views}
        return ModelQuery(model, x_all[idx], t_all[rows], views, batch_size=self.cfg.batch_size,
                          explainer=rerun(method, batch_seed(self.cfg.seed, [batch[k].sample.id for k in ks])),
                          method_views=method_views)

    @staticmethod
    def _view_batch(model, batch: list, good: list[int], method: Method | None, name: str,
                    key: tuple | None = None) -> torch.Tensor | None:
        """The preprocessed view ``name`` of ``method`` for the batch's good samples (None if a
        sample's view is None: the method then falls back for the whole batch)."""
        key = key or method.view_key(name)
        parts = [batch[k].views.get(key) for k in good]
        if not parts or any(p is None for p in parts):
            return None
        return model.preprocess(stack_images(parts))

    def draw_gallery(self, store: Store, model, ds, display: str, ds_key: str) -> None:
        if self.rank == 0:
            draw_gallery(store, self.run_id, self.run_dir, self.runs_dir, self.plan.methods, self.cfg.gallery,
                         self.cfg.cache_dtype, model, ds, display, ds_key)

    def summarize(self, store: Store, model, display: str, skipped: dict[str, str],
                  subsets: dict[str, str] | None = None) -> None:
        summarize_into(store, self.run_id, model.name, display, self.plan, skipped, subsets)


def rerun(method: Method, seed: int | None = None):
    """The method under test as a benchmark may run it again (``ModelQuery.explain``): isolated, its
    failures reasons, its maps for the benchmark only; every re-run starts from the generators
    seeded with ``seed`` (the samples' :func:`batch_seed`)."""

    def explain(model, x, targets, views):
        res = call_method(method, model, x, targets, views, seed=seed)
        return res.outputs, res.reasons

    return explain


def cpu_default(cfg: RunConfig, device: torch.device) -> bool:
    """A run on a CPU without ``--all-methods``: where it names no methods (benchmarks), those
    that cost a hundred passes per image or more are left out (and listed, with the time they
    would take)."""
    return device.type == "cpu" and not cfg.all_methods


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``kept`` says what the store holds (the command line prints it with
    the command that resumes)."""

    def __init__(self, kept: str) -> None:
        super().__init__(kept)
        self.kept = kept


def _kept(runner: Runner) -> str:
    import sqlite3

    path = runner.runs_dir / "store.sqlite"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        n = con.execute("SELECT COUNT(*) FROM outcomes WHERE run_id=?", (runner.run_id,)).fetchone()[0]
        con.close()
    except sqlite3.Error:
        return f"run {runner.run_id}: nothing stored yet"
    return f"run {runner.run_id}: {n} (method, sample) outcomes kept in {path}"


def run_from_args(args: argparse.Namespace) -> int:
    runner = Runner(config_from_args(args))
    try:
        runner.run()
    except KeyboardInterrupt:
        raise RunInterrupted(_kept(runner)) from None
    return 0
