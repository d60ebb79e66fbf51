"""Executing a batch: loading in workers, calling a method and scoring its outputs, with
every failure isolated to the samples that caused it."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .contracts import Benchmark, MethodOutputError, ModelQuery, Sample, check_output
from .imageio import stack_images, to_input
from .isolation import Guard
from .seeding import batch_seed, seeded
from .targets import Targets
from .timing import timed

NOT_EVALUABLE = "not evaluable"


@dataclass
class Item:
    """One loaded sample of a batch: its ``index`` in the dataset, the ``sample`` (image
    dropped), ``x`` the uint8 input at the model's size (None when loading failed), ``views``
    ``{view key: uint8 tensor or None}`` made from the original image before it was dropped."""

    index: int
    sample: Sample
    x: torch.Tensor | None
    views: dict


class _Loaded(torch.utils.data.Dataset):
    """Decode, resize (and make the methods' views of) each sample, in DataLoader workers;
    each item an :class:`Item`."""

    def __init__(self, ds, indices: Sequence[int], size: tuple[int, int],
                 views: dict[tuple, tuple[Any, str]] | None = None) -> None:
        self.ds, self.indices, self.size = ds, list(indices), size
        self.views = views or {}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Item:
        i = self.indices[k]
        try:
            s = copy.copy(self.ds.load(i))  # the adapter's object stays as it gave it (it may keep it)
        except Exception as e:  # an adapter bug must cost one sample, not the run
            s = Sample(id=self.ds.ids[i], image=None, size=(0, 0), targets={}, category="?",
                       error=f"loading failed: {type(e).__name__}: {e}")
        x = None
        views: dict[tuple, torch.Tensor | None] = {}
        if s.error is None:
            try:
                x = to_input(s.image, self.size)
                for key, (maker, name) in self.views.items():  # a method's or a benchmark's view
                    views[key] = maker.make_view(name, s.image, self.size)
            except Exception as e:
                s.error = f"resizing failed: {type(e).__name__}: {e}"
        s.image = None  # the decoded original stays in the worker
        return Item(i, s, x, views)


class Batch:
    """A loader batch as a worker sends it: the items, and their inputs stacked once there
    (:func:`~saliency_bench.imageio.stack_images`): one shared-memory tensor crosses to the
    main process instead of one per image (each costs a file descriptor passed and mapped).
    ``images`` has a row per item with an input, in order (``rows``: those items' positions)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.rows = [k for k, it in enumerate(items) if it.x is not None]
        in_worker = torch.utils.data.get_worker_info() is not None
        self.images = stack_images([items[k].x for k in self.rows], shared=in_worker) if self.rows else None
        for k in self.rows:
            items[k].x = None  # sent once, in ``images``

    def pin_memory(self) -> "Batch":  # the DataLoader's pinning thread, for a CUDA run
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self

    def unpack(self) -> list[Item]:
        """The items, each ``x`` again (a view of its row of ``images``)."""
        for j, k in enumerate(self.rows):
            self.items[k].x = self.images[j]
        return self.items

    def inputs(self, ks: list[int]) -> torch.Tensor:
        """The inputs of items ``ks`` as one batch: ``images`` itself when ``ks`` are its rows."""
        if ks == self.rows:
            return self.images
        return stack_images([self.items[k].x for k in ks])


def _collate(items: list) -> Batch:
    return Batch(items)


# --------------------------------------------------------------------------------------------
# Calling a method, with failures isolated to the samples that caused them
# --------------------------------------------------------------------------------------------
@dataclass
class CallResult:
    outputs: list[np.ndarray | None]
    reasons: list[str | None]
    info: list[dict]
    timing: tuple[float, int] | None  # (seconds, peak bytes) of the whole batch call


def call_method(method, model, x: torch.Tensor, targets,
                views: dict[str, torch.Tensor | None] | None = None, guard: Guard | None = None,
                seed: int | None = None, shared: bool = True) -> CallResult:
    """Call a method on a batch; maps come back at the method's own resolution (no resizing:
    each benchmark brings them to its scoring resolution, docs/PROTOCOLS.md §1).

    Any exception (``SystemExit`` included; ``KeyboardInterrupt`` stops the run) fails the
    samples that caused it. With a ``guard``, the model and the process state are verified after
    the call: if the method changed them, they are restored and the whole batch fails with what
    changed (its maps came from another model). With a ``seed`` (a run's :func:`batch_seed`), the
    process's random generators are seeded with it for the call and restored after it
    (:mod:`saliency_bench.seeding`).

    The method gets copies of ``x``, the targets and the views when they are ``shared`` (read
    again after the call: by the next method, a benchmark, a retry), so that what it writes into
    its inputs stays its own; ``shared=False`` hands over the caller's tensors, for the last
    reader."""
    b = x.shape[0]
    views = views or {}
    if not isinstance(targets, Targets):
        targets = Targets(targets, x.device)
    if shared:
        mx, mt = x.clone(), Targets(targets.indices.clone())
        mviews = {k: None if v is None else v.clone() for k, v in views.items()}
    else:
        mx, mt, mviews = x, targets, views

    def changed() -> CallResult | None:
        what = guard.verify() if guard is not None else None
        if what is None:
            return None
        return CallResult([None] * b, [f"method '{method.name}' {what}"] * b, [{} for _ in range(b)], None)

    try:
        with seeded(seed):
            (maps, info), seconds, peak = timed(lambda: method.explain(model, mx, mt, **mviews), x.device)
        bad = check_output(method, maps, b)
    except KeyboardInterrupt:
        raise
    except MethodOutputError as e:
        return changed() or CallResult([None] * b, [str(e)] * b, [{} for _ in range(b)], None)
    except BaseException as e:  # a plugin's sys.exit() costs its samples, not the run
        if (res := changed()) is not None:
            return res
        if b == 1:
            reason = f"method '{method.name}' raised {type(e).__name__}: {e}"
            return CallResult([None], [reason], [{}], None)
        parts = [call_method(method, model, x[i:i + 1], targets[i:i + 1],
                             {k: None if v is None else v[i:i + 1] for k, v in views.items()}, guard,
                             None if seed is None else batch_seed(seed, [str(i)]))
                 for i in range(b)]
        return CallResult([p.outputs[0] for p in parts], [p.reasons[0] for p in parts],
                          [p.info[0] for p in parts], None)
    if (res := changed()) is not None:
        return res
    host = maps.detach().float().cpu()
    # The harness's own copy: a method that returns a buffer it keeps and rewrites at its next
    # call (a preallocated output) must not rewrite maps still waiting to be scored or cached.
    arr = host.numpy().copy() if host.data_ptr() == maps.data_ptr() else host.numpy()
    per_info = [{} for _ in range(b)]
    for k, v in info.items():
        vals = v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v)
        if len(vals) == b:
            for i in range(b):
                per_info[i][k] = vals[i]
    outputs = [None if i in bad else arr[i] for i in range(b)]
    reasons = [bad.get(i) for i in range(b)]
    return CallResult(outputs, reasons, per_info, (seconds, peak))


def _frozen(v: Any) -> Any:
    """``v`` as a benchmark may see it: an array as a read-only view, a dict or list copied."""
    if isinstance(v, np.ndarray):
        v = v.view()
        v.flags.writeable = False
        return v
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, list):
        return list(v)
    return v


def benchmark_samples(samples: Sequence[Sample]) -> list[Sample]:
    """The samples as a benchmark gets them: a shallow copy of each (an attribute it assigns
    stays its own), whose arrays are read-only views (an in-place write fails loudly, on that
    sample, instead of changing the ground truth every later benchmark and method scores
    against) and whose dicts and lists are copies. The same in this process and in a scoring
    worker, so that the records do not depend on where a batch was scored."""
    out = []
    for s in samples:
        c = copy.copy(s)
        names = list(vars(c)) if hasattr(c, "__dict__") else [f.name for f in dataclasses.fields(c)] \
            if dataclasses.is_dataclass(c) else []  # a slotted Sample subclass: its fields
        for k in names:
            v = getattr(c, k)
            if isinstance(v, (np.ndarray, dict, list)):
                setattr(c, k, _frozen(v))
        out.append(c)
    return out


def score_isolated(bench: Benchmark, samples: list[Sample], outputs: list[np.ndarray],
                   input_size: tuple[int, int], query: ModelQuery | None = None, guard: Guard | None = None
                   ) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    """Score a batch; if the benchmark raises, score sample by sample so that only the sample
    whose ground truth or output it cannot handle fails, with the reason. ``query`` (rows
    aligned with ``samples``) goes to a benchmark that runs the model. With a ``guard`` (the
    scorer gives one for a benchmark with the model in the loop, and for a plugin's benchmark
    scored in the main process), the scores count only if the model and the process state are
    unchanged after it (else they are restored, and the batch's samples fail with what changed:
    a benchmark's leftovers are never blamed on the next method)."""

    def score(ss: list[Sample], arr: np.ndarray, rows: list[int]) -> list[dict]:
        if not bench.uses_model:
            return bench.score_batch(ss, arr, input_size)
        if query is None:
            raise RuntimeError(f"benchmark '{bench.name}' runs the model, and no query was given")
        return bench.score_batch(ss, arr, input_size,
                                 query=query if len(rows) == len(query) else query.rows(rows))

    def verified(scored: list[tuple[str, dict]], failed: dict[str, str]):
        what = guard.verify() if guard is not None else None
        if what is None:
            return scored, failed
        return [], {s.id: f"benchmark '{bench.name}' {what}" for s in samples}

    same = len({o.shape for o in outputs}) <= 1
    try:
        if not same:
            raise ValueError("maps of different shapes")
        # Its own samples and maps (np.stack copies): nothing it writes reaches the next reader.
        recs = score(benchmark_samples(samples), np.stack(outputs), list(range(len(samples))))
        return verified([(s.id, r) for s, r in zip(samples, recs)], {})
    except KeyboardInterrupt:
        raise
    except BaseException:
        pass
    if guard is not None and (what := guard.verify()) is not None:
        return [], {s.id: f"benchmark '{bench.name}' {what}" for s in samples}
    scored, failed = [], {}
    for k, (s, o) in enumerate(zip(samples, outputs)):
        try:
            scored.append((s.id, score(benchmark_samples([s]), o[None].copy(), [k])[0]))
        except KeyboardInterrupt:
            raise
        except BaseException as e:
            hint = (" (a benchmark gets the samples' arrays read-only: copy one before writing into it)"
                    if isinstance(e, ValueError) and "read-only" in str(e) else "")
            failed[s.id] = f"benchmark '{bench.name}' could not score it: {type(e).__name__}: {e}{hint}"
    return verified(scored, failed)
