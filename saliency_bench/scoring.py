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
thread each and ignore Ctrl-C, which the main process handles by terminating them. A job goes
to one worker's own pipe, and the main thread itself sends jobs and receives records
(:class:`_Workers`): no threads here, no lock shared by the workers. ``multiprocessing.Pool``'s
three handler threads cost this process 1 ms a job, on the cores the workers need; two of its
workers gave 1.70-1.76x one where two processes alone do 1.98x. The maps and the pickled samples
go through shared memory mapped before the fork (:class:`_Arena`), so a message to a busy worker
is a few bytes and never fills its pipe.
"""
from __future__ import annotations

import contextlib
import mmap
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
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


def _score_shared(start: int, size: int) -> Result:
    """:func:`_score` on a job the main process wrote into the shared arena at ``start``: its
    pickled head (``size`` bytes: the benchmark's index, the samples, the maps' places after the
    head, the input size), then its maps. Each map is read as a copy of its bytes there, the same
    array a pickled map would arrive as."""
    assert _ARENA is not None
    index, samples, specs, input_size = pickle.loads(_ARENA[start:start + size])
    base = start + _Arena.aligned(size)
    outputs = [np.ndarray(shape, np.dtype(dtype), buffer=_ARENA, offset=base + off).copy() for off, shape, dtype in specs]
    return _score(index, samples, outputs, input_size)


def _serve(conn: Connection, benches: Sequence[Benchmark], opencv_inherited: bool, arena: mmap.mmap | None,
           inherited: Sequence[Connection]) -> None:
    """A worker: answers each message with ``(True, result)``, or ``(False, why)`` when the job
    failed as a whole (the main process then scores it itself), until a ``None`` or the main
    process's end of the pipe closes (it exited: no worker outlives it)."""
    for c in inherited:  # the main process's ends of the pipes, copied by the fork: its exit must close them
        c.close()
    _init(benches, opencv_inherited, arena)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        try:
            answer = (True, _score_shared(*message[1:]) if message[0] == "shared" else _score(*message[1:]))
        except BaseException as e:  # noqa: BLE001 - whatever a plugin raises, the main process rescores it
            answer = (False, f"{type(e).__name__}: {e}")
        try:
            conn.send(answer)
        except (BrokenPipeError, ConnectionError, EOFError):
            return
        except Exception as e:  # a record that cannot be pickled: nothing was written yet
            try:
                conn.send((False, f"the records could not be sent back: {type(e).__name__}: {e}"))
            except OSError:
                return


class _Arena:
    """Anonymous shared memory mapped before the workers are forked, used as a ring: a job's
    pickled head and its maps are copied in (one ``memcpy`` each) and the worker is sent their
    place, not their bytes. Pickling the maps and pushing them through a pipe took this process
    0.2-0.6 ms a 224x224 map, done on the core the workers need. Jobs leave in the order they came
    (:meth:`Scorer.flush` finishes batches in order), so the space is freed first in, first out; a
    job that does not fit (a huge batch, or the ring full) is pickled as before."""

    ALIGN = 64

    def __init__(self, size: int) -> None:
        self.buf = mmap.mmap(-1, size)
        self.size = size
        self.spans: deque[tuple[int, int]] = deque()  # [start, end) of each job's bytes, oldest first

    @classmethod
    def aligned(cls, n: int) -> int:
        return -(-n // cls.ALIGN) * cls.ALIGN

    @classmethod
    def layout(cls, arrays: Sequence[np.ndarray]) -> tuple[list[tuple[int, tuple, str]], int]:
        """Each array's place after the start of the maps (offset, shape, dtype), and their bytes."""
        specs, off = [], 0
        for a in arrays:
            specs.append((off, a.shape, a.dtype.str))
            off += cls.aligned(a.nbytes)
        return specs, off

    def _place(self, need: int) -> int | None:
        """Where ``need`` bytes fit after the newest job's, or None."""
        if not self.spans:
            return 0 if need <= self.size else None
        head, tail = self.spans[0][0], self.spans[-1][1]  # spans are never empty: tail == head is full
        if tail > head:  # in use: [head, tail)
            if tail + need <= self.size:
                return tail
            return 0 if need <= head else None
        return tail if tail + need <= head else None  # wrapped: [head, size) and [0, tail) in use

    def put(self, outputs: Sequence[np.ndarray], head: bytes = b"") -> list[tuple[int, tuple, str]] | None:
        """Copy ``head`` and then the maps into one span: the maps' places (absolute offsets), or
        None when they do not fit or cannot be shared (objects)."""
        arrays = [np.asarray(o) for o in outputs]  # copied in below, whatever their strides
        if any(a.dtype.hasobject for a in arrays):
            return None
        specs, maps_bytes = self.layout(arrays)
        base = self.aligned(len(head))
        need = base + maps_bytes
        start = self._place(need) if need else None
        if start is None:
            return None
        self.buf[start:start + len(head)] = head
        for a, (off, _, _) in zip(arrays, specs):
            np.ndarray(a.shape, a.dtype, buffer=self.buf, offset=start + base + off)[...] = a
        self.spans.append((start, start + need))
        return [(start + base + off, shape, dtype) for off, shape, dtype in specs]

    def put_job(self, job: tuple) -> tuple | None:
        """A job ``(index, samples, outputs, input_size)`` copied in: the message that sends it
        (``("shared", start, head bytes)``), or None when it does not fit."""
        index, samples, outputs, input_size = job
        arrays = [np.asarray(o) for o in outputs]
        if any(a.dtype.hasobject for a in arrays):
            return None
        try:
            head = pickle.dumps((index, samples, self.layout(arrays)[0], input_size), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a sample that cannot be pickled: the pipe's pickling says why, as before
            return None
        if self.put(arrays, head) is None:
            return None
        return ("shared", self.spans[-1][0], len(head))

    def release(self) -> None:
        """Free the oldest job's bytes (it has been scored)."""
        self.spans.popleft()


class _Sent:
    """A job in a worker, and its answer once received."""

    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done, self.ok, self.value = False, False, None


class _Worker:
    __slots__ = ("proc", "conn", "sent")

    def __init__(self, proc, conn: Connection) -> None:
        self.proc, self.conn = proc, conn
        self.sent: deque[_Sent] = deque()  # its jobs not yet answered, in the order it runs them


class _Workers:
    """``n`` scoring processes, each with its own pipe, fed and read by the calling thread only.

    A message to a worker that is busy is small (a job's place in the arena), so sending never
    blocks on a worker that is itself blocked sending its records back; a job sent pickled (it did
    not fit in the arena, or there is no arena) goes to an idle worker only. A worker that ends
    (killed, or crashed in native code) is noticed at its pipe's end: its jobs are answered as
    failed, so the main process scores them, and the others go on."""

    def __init__(self, n: int, benches: Sequence[Benchmark], arena: mmap.mmap | None) -> None:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        self.workers: list[_Worker] = []
        with _serial_opencv():
            inherited = method == "fork" and "cv2" in sys.modules
            for _ in range(n):
                here, there = ctx.Pipe(duplex=True)
                ours = [w.conn for w in self.workers] + [here] if method == "fork" else []
                proc = ctx.Process(target=_serve, args=(there, benches, inherited, arena, ours), daemon=True)
                proc.start()
                there.close()  # the worker's end lives in the worker only: its exit is seen here as EOF
                self.workers.append(_Worker(proc, here))

    def alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.conn is not None]

    def send(self, message, small: bool, stall_seconds: float) -> _Sent | None:
        """Send a job to the least busy worker (an idle one unless ``small``); None when none is
        left. Raises ``mp.TimeoutError`` when no worker becomes idle for ``stall_seconds``."""
        while True:
            alive = self.alive()
            if not alive:
                return None
            if small:
                worker = min(alive, key=lambda w: len(w.sent))
            else:
                worker = next((w for w in alive if not w.sent), None)
                if worker is None:
                    self.wait(lambda: any(not w.sent for w in self.alive()), stall_seconds)
                    continue
            try:
                worker.conn.send(message)
            except (OSError, ValueError):  # it ended: its jobs are answered as failed
                self._ended(worker)
                continue
            sent = _Sent()
            worker.sent.append(sent)
            return sent

    def receive(self, timeout: float | None) -> bool:
        """Take the answers that have arrived, waiting up to ``timeout`` for one; whether any came
        (or a worker ended)."""
        busy = {w.conn: w for w in self.alive() if w.sent}
        if not busy:
            return False
        ready = wait(list(busy), timeout)
        for conn in ready:
            worker = busy[conn]
            try:
                ok, value = conn.recv()
            except (EOFError, OSError):
                self._ended(worker)
                continue
            sent = worker.sent.popleft()
            sent.ok, sent.value, sent.done = ok, value, True
        return bool(ready)

    def wait(self, until: Callable[[], bool], stall_seconds: float) -> None:
        """Receive until ``until()``; ``mp.TimeoutError`` when nothing arrives for ``stall_seconds``."""
        deadline = time.monotonic() + stall_seconds
        while not until():
            if not any(w.sent for w in self.alive()):
                return  # nothing more can arrive (every worker idle or ended)
            left = deadline - time.monotonic()
            if left <= 0:
                raise mp.TimeoutError
            if self.receive(left):
                deadline = time.monotonic() + stall_seconds

    def _ended(self, worker: _Worker) -> None:
        worker.proc.join(timeout=5)
        why = f"the scoring worker ended (exit code {worker.proc.exitcode})"
        if worker.sent:
            sys.stderr.write(f"note: {why} with {len(worker.sent)} batch(es) in it: this process scores "
                             "them (same records)\n")
        for sent in worker.sent:
            sent.ok, sent.value, sent.done = False, why, True
        worker.sent.clear()
        worker.conn.close()
        worker.conn = None

    def close(self) -> None:
        """Let every worker finish what it was sent, then end."""
        for w in self.alive():
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.proc.join()
            if w.conn is not None:
                w.conn.close()
                w.conn = None

    def terminate(self) -> None:
        for w in self.workers:
            if w.proc.is_alive():
                w.proc.terminate()
        for w in self.workers:
            w.proc.join()
            if w.conn is not None:
                w.conn.close()
                w.conn = None


STALL_SECONDS = 600.0  # a job's wait before the pool counts as stuck (Scorer(stall_seconds=...))


class _InFlight:
    """A job in a worker. Should it fail there as a whole (outside the per-sample isolation of
    ``score_isolated``, a record that cannot be sent back, or the worker ended), or should the
    workers stop making progress (one stuck, say in a library that is not safe to fork), it is
    scored here instead: the same call, so the same records."""

    def __init__(self, sent: _Sent | None, job: tuple, scorer: "Scorer", shared: bool = False) -> None:
        self.sent, self.job, self.scorer = sent, job, scorer
        self.shared = shared  # its bytes hold a span of the scorer's arena until it is finished

    def ready(self) -> bool:
        pool = self.scorer._pool
        if pool is None or self.sent is None or self.sent.done:
            return True
        pool.receive(0)
        return self.sent.done

    def get(self) -> Result:
        pool, sent = self.scorer._pool, self.sent
        if pool is not None and sent is not None:
            try:
                pool.wait(lambda: sent.done, self.scorer.stall_seconds)
            except mp.TimeoutError:
                self.scorer._stalled()
            if sent.done and sent.ok:
                return sent.value
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
        self._pool: _Workers | None = None
        self._arena: _Arena | None = None
        if self.workers > 0:
            if "fork" in mp.get_all_start_methods():  # a forked child inherits the mapping (not pickled)
                self._arena = _Arena(ARENA_BYTES)
            self._pool = _Workers(self.workers, self.benches, None if self._arena is None else self._arena.buf)

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
                message = None if self._arena is None else self._arena.put_job(job)
                shared = message is not None
                try:
                    sent = self._pool.send(message if shared else ("job", *job), shared, self.stall_seconds)
                except mp.TimeoutError:
                    self._stalled()
                    sent = None
                if sent is None and self._pool is not None:  # every worker has ended
                    self._stop(terminate=True, why="every scoring worker has ended")
                parts.append(_InFlight(sent, job, self, shared=shared))
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
        self._stop(terminate=True, why=f"the scoring workers returned nothing for {self.stall_seconds:g} s; "
                                       "they are stopped")

    # -- ending --------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish every batch still scoring, then stop the workers."""
        while self._pending:
            self.flush(block=True)
        self._stop(terminate=False)

    def _stop(self, terminate: bool, why: str | None = None) -> None:
        if why is not None:
            sys.stderr.write(f"note: {why} and this process scores the rest of the pass (same records)\n")
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate() if terminate else pool.close()

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
