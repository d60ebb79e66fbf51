"""Scoring on every core: the pure benchmarks score a batch's maps in worker processes while the
device computes the next maps; the store receives each batch in the order it was computed.

A method's batch of maps is handed to :meth:`Scorer.submit` as one job per benchmark
(``(bench, samples, outputs, query)``) with a ``finish`` callback that writes the batch (its
outcomes, records and timing, then the heatmap cache). With ``workers=0`` everything happens at
once in this process, as it always did. With ``workers >= 1`` the jobs of benchmarks that do
not run the model go to a pool of that many processes; the jobs of benchmarks with the model
in the loop (``uses_model``) are scored at once here, since they need the device. ``finish``
runs for every batch in submission order, once all its jobs are scored.

Exactness: a worker calls the very :func:`~saliency_bench.execute.score_isolated` this process
would, on the same samples and maps, so the records are the same bytes whatever the number of
workers (the benchmarks draw no random numbers while scoring; their bootstraps run in
``summarize``). Resume is unchanged: a batch reaches the store only with all its records, so a
run interrupted with jobs in flight recomputes those batches, as it would any batch whose
outcomes are not stored. A pool that returns nothing for ``stall_seconds`` (10 minutes) is
stopped with a note, and this process scores the rest of the pass: slower, the same records.

The workers are forked once per pass over a dataset, before the data loader starts (a forked
child inherits the benchmarks, plugin files included, without pickling them); they run one
thread each and ignore Ctrl-C, which the main process handles by terminating them. The maps go
to them through shared memory mapped before the fork (:class:`_Arena`), the samples by pickle.
"""
from __future__ import annotations

import contextlib
import mmap
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from typing import Any, Callable, Sequence

import numpy as np

from .contracts import Benchmark, ModelQuery, Sample
from .execute import score_isolated
from .isolation import Guard, process_changes
from .registry import own_code

Job = tuple[Benchmark, list[Sample], list[np.ndarray], ModelQuery | None]
Result = tuple[list[tuple[str, dict]], dict[str, str]]  # score_isolated's (scored, failed)

_BENCHES: Sequence[Benchmark] = ()  # a worker's benchmarks, inherited at fork
_ARENA: mmap.mmap | None = None  # the maps' shared memory, inherited at fork (see _Arena)
_PROCESS = None  # a worker's process state after its start (isolation.ProcessState), checked after plugins
ARENA_BYTES = 256 << 20  # address space only: pages are committed as the ring reaches them


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers(loader_workers: int, local_world: int | None = None) -> int:
    """Scoring processes for one rank: its share of the node's cores, less one for the main
    process (the device's driver) and one per data loader worker; 0 (score in this process)
    where nothing is left, as on a 2-core machine with the default two loader workers."""
    local = local_world or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(0, cores() // max(1, local) - 1 - max(0, loader_workers))


def scoring_workers(cfg) -> int:
    """The run's ``--scoring-workers``, else :func:`default_workers`."""
    if cfg.scoring_workers is not None:
        if cfg.scoring_workers < 0:
            raise ValueError(f"--scoring-workers {cfg.scoring_workers}: give 0 or more")
        return int(cfg.scoring_workers)
    return default_workers(cfg.workers)


def _init(benches: Sequence[Benchmark], opencv_inherited: bool, arena: mmap.mmap | None = None) -> None:
    global _BENCHES, _ARENA
    _BENCHES, _ARENA = benches, arena
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what a Ctrl-C ends
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    if not opencv_inherited:  # a fresh import here; else the pool was made serial before the fork
        try:
            import cv2

            cv2.setNumThreads(1)
        except Exception:  # pragma: no cover - OpenCV is imported only by the benchmarks that need it
            pass
    global _PROCESS
    if not all(own_code(b) for b in benches):
        from .isolation import ProcessState

        _PROCESS = ProcessState()


@contextlib.contextmanager
def _serial_opencv():
    """OpenCV's thread pool made serial for the fork, then restored: a child forked while the
    parent's pool has threads waited forever in its ``cv2.setNumThreads`` (the pool's state is
    copied, its threads are not; a parallel resize in such a child did run, so the data
    loader's workers need nothing)."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        yield
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _score(index: int, samples: list[Sample], outputs: list[np.ndarray], input_size: tuple[int, int]) -> Result:
    bench = _BENCHES[index]
    res = score_isolated(bench, samples, outputs, input_size)
    if _PROCESS is not None and not own_code(bench):
        # A plugin's benchmark that changes this worker's process state (NumPy's functions or
        # error handling, torch's settings) would change the scores of every benchmark the worker
        # runs after it: it fails on this batch, as in the main process, and the state is put back.
        what = process_changes(_PROCESS)
        if what is not None:
            return [], {s.id: f"benchmark '{bench.name}' {what}" for s in samples}
    return res


def _score_shared(index: int, samples: list[Sample], specs: list[tuple[int, tuple, str]],
                  input_size: tuple[int, int]) -> Result:
    """:func:`_score` on maps the main process wrote into the shared arena: each map is read as
    a copy of its bytes there, the same array a pickled map would arrive as."""
    assert _ARENA is not None
    outputs = [np.ndarray(shape, np.dtype(dtype), buffer=_ARENA, offset=off).copy() for off, shape, dtype in specs]
    return _score(index, samples, outputs, input_size)


class _Arena:
    """Anonymous shared memory mapped before the workers are forked, used as a ring: a job's maps
    are copied in (one ``memcpy`` each) and the worker is sent their places, not their bytes.
    Pickling the maps and pushing them through the pool's pipe took this process 0.2-0.6 ms a
    224x224 map, done on the core the workers need. Jobs leave in the order they came
    (:meth:`Scorer.flush` finishes batches in order), so the space is freed first in, first out; a
    job that does not fit (a huge batch, or the ring full) is pickled as before."""

    ALIGN = 64

    def __init__(self, size: int) -> None:
        self.buf = mmap.mmap(-1, size)
        self.size = size
        self.spans: deque[tuple[int, int]] = deque()  # [start, end) of each job's maps, oldest first

    def _place(self, need: int) -> int | None:
        """Where ``need`` bytes fit after the newest job's maps, or None."""
        if not self.spans:
            return 0 if need <= self.size else None
        head, tail = self.spans[0][0], self.spans[-1][1]  # spans are never empty: tail == head is full
        if tail > head:  # in use: [head, tail)
            if tail + need <= self.size:
                return tail
            return 0 if need <= head else None
        return tail if tail + need <= head else None  # wrapped: [head, size) and [0, tail) in use

    def put(self, outputs: Sequence[np.ndarray]) -> list[tuple[int, tuple, str]] | None:
        arrays = [np.asarray(o) for o in outputs]  # copied in below, whatever their strides
        if any(a.dtype.hasobject for a in arrays):
            return None
        sizes = [-(-a.nbytes // self.ALIGN) * self.ALIGN for a in arrays]
        need = sum(sizes)
        start = self._place(need) if need else None
        if start is None:
            return None
        specs, off = [], start
        for a, n in zip(arrays, sizes):
            np.ndarray(a.shape, a.dtype, buffer=self.buf, offset=off)[...] = a
            specs.append((off, a.shape, a.dtype.str))
            off += n
        self.spans.append((start, off))
        return specs

    def release(self) -> None:
        """Free the oldest job's maps (it has been scored)."""
        self.spans.popleft()


STALL_SECONDS = 600.0  # a job's wait before the pool counts as stuck (Scorer(stall_seconds=...))


class _InFlight:
    """A job in the pool. Should it fail there as a whole (outside the per-sample isolation of
    ``score_isolated``, or a record that cannot be sent back), or should the pool stop making
    progress (a worker stuck, say in a library that is not safe to fork), it is scored here
    instead: the same call, so the same records."""

    def __init__(self, result, job: tuple, scorer: "Scorer", shared: bool = False) -> None:
        self.result, self.job, self.scorer = result, job, scorer
        self.shared = shared  # its maps hold a span of the scorer's arena until it is finished

    def ready(self) -> bool:
        return self.scorer._pool is None or self.result.ready()

    def get(self) -> Result:
        if self.scorer._pool is not None:
            try:
                return self.result.get(timeout=self.scorer.stall_seconds)
            except mp.TimeoutError:
                self.scorer._stalled()
            except Exception:
                pass
        index, samples, outputs, input_size = self.job
        bench = self.scorer.benches[index]
        return score_isolated(bench, samples, outputs, input_size, guard=self.scorer.guard_for(bench))


class Scorer:
    """Scores jobs here (``workers=0``) or in ``workers`` forked processes; see the module."""

    def __init__(self, benches: Sequence[Benchmark], workers: int = 0, max_pending: int | None = None,
                 guard: Guard | None = None, stall_seconds: float = STALL_SECONDS) -> None:
        self.benches = list(benches)
        self.stall_seconds = float(stall_seconds)
        self.guard = guard  # verifies the model after a benchmark scored here (guard_for)
        pure = [b for b in self.benches if not b.uses_model and not b.timing]
        self.workers = int(workers) if pure else 0
        self.max_pending = max_pending or 2 * max(1, self.workers)
        self._pending: deque[tuple[list[Any], Callable[[list[Result]], None]]] = deque()
        self._pool = None
        self._arena: _Arena | None = None
        if self.workers > 0:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            if method == "fork":  # a forked child inherits the mapping (initargs are not pickled)
                self._arena = _Arena(ARENA_BYTES)
            with _serial_opencv():
                inherited = method == "fork" and "cv2" in sys.modules
                self._pool = mp.get_context(method).Pool(
                    self.workers, initializer=_init,
                    initargs=(self.benches, inherited, None if self._arena is None else self._arena.buf))

    def guard_for(self, bench: Benchmark) -> Guard | None:
        """The guard that checks ``bench`` after it scores in this process: a benchmark with the
        model in the loop, or a plugin's (saliency_bench's own pure benchmarks read only their
        samples and maps)."""
        return self.guard if bench.uses_model or not own_code(bench) else None

    # -- feeding -------------------------------------------------------------------------------
    def submit(self, jobs: Sequence[Job], input_size: tuple[int, int],
               finish: Callable[[list[Result]], None]) -> None:
        """Score ``jobs``; ``finish(results)`` (one result per job, in order) runs once all are
        scored, after every batch submitted before."""
        parts: list[Any] = []
        for bench, samples, outputs, query in jobs:
            if self._pool is None or bench.uses_model or query is not None:
                parts.append(score_isolated(bench, samples, outputs, input_size, query, self.guard_for(bench)))
            else:
                job = (self.benches.index(bench), samples, outputs, input_size)
                specs = None if self._arena is None else self._arena.put(outputs)
                if specs is None:
                    parts.append(_InFlight(self._pool.apply_async(_score, job), job, self))
                else:
                    sent = (job[0], samples, specs, input_size)
                    parts.append(_InFlight(self._pool.apply_async(_score_shared, sent), job, self, shared=True))
        self._pending.append((parts, finish))
        self.flush(block=len(self._pending) > self.max_pending)

    def flush(self, block: bool = False) -> None:
        """Finish the batches at the head of the queue that are scored; with ``block``, wait for
        the head first (the queue stays at most ``max_pending`` long)."""
        while self._pending:
            parts, finish = self._pending[0]
            if not block and any(isinstance(p, _InFlight) and not p.ready() for p in parts):
                return
            results = [p.get() if isinstance(p, _InFlight) else p for p in parts]
            self._pending.popleft()
            for p in parts:
                if isinstance(p, _InFlight) and p.shared:
                    self._arena.release()
            finish(results)
            block = len(self._pending) > self.max_pending

    def _stalled(self) -> None:
        """No job came back for ``stall_seconds``: stop the workers and score the rest here."""
        sys.stderr.write(f"note: the scoring workers returned nothing for {self.stall_seconds:g} s; "
                         "they are stopped and this process scores the rest of the pass (same records)\n")
        self._stop(terminate=True)

    # -- ending --------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish every batch still scoring, then stop the workers."""
        while self._pending:
            self.flush(block=True)
        self._stop(terminate=False)

    def _stop(self, terminate: bool) -> None:
        if self._pool is not None:
            if terminate:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # an interrupted pass: what is in flight is dropped (resume recomputes it)
            self._pending.clear()
            self._stop(terminate=True)
            if self._arena is not None:
                self._arena.spans.clear()
