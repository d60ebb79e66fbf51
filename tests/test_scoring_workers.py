"""Scoring in worker processes (``--scoring-workers``): the records, outcomes and metrics of a
run are those of a one-process run whatever the number of workers, of torchrun ranks, or of
interruptions; the store gets each batch in the order it was computed."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from saliency_bench.cli import main
from saliency_bench.contracts import Benchmark, Sample
from saliency_bench.scoring import Scorer, default_workers
from test_distributed import TOY, _results, _single, _torchrun

ARGS = ["--model", "toy_net", "--dataset", "toy", "-d", "n=14", "--methods", "brightness,raise_on_corner,coarse",
        "--benchmarks", "pointing,localization,fragile,runtime", "--batch-size", "4"]


def _run(runs: Path, workers: int) -> None:
    assert main(["--plugin", TOY, "run", "--runs-dir", str(runs), "--workers", "0", "--quiet",
                 "--scoring-workers", str(workers), *ARGS]) == 0


def test_one_two_and_four_scoring_workers_store_what_one_process_stores(tmp_path):
    _run(tmp_path / "w0", 0)
    reference = _results(tmp_path / "w0")
    assert reference[0] and any(not ok for *_, ok, _ in reference[1])  # records, and failed samples
    assert any("could not score it" in (why or "") for *_, why in reference[1])  # fragile's, from a worker too
    for w in (1, 2, 4):
        _run(tmp_path / f"w{w}", w)
        assert _results(tmp_path / f"w{w}") == reference, f"{w} scoring workers"


def test_two_ranks_with_scoring_workers_store_what_one_process_stores(tmp_path):
    _single(tmp_path / "single", ARGS + ["--scoring-workers", "0"])
    proc = _torchrun(tmp_path / "multi", ARGS + ["--scoring-workers", "2"])
    out = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    assert _results(tmp_path / "multi") == _results(tmp_path / "single")


def test_a_run_killed_with_batches_in_the_workers_resumes_to_the_same_results(tmp_path):
    args = ["--model", "toy_net", "--dataset", "toy", "-d", "n=24", "--methods", "sleepy,brightness",
            "--benchmarks", "pointing,localization", "--batch-size", "2"]
    _single(tmp_path / "straight", args + ["--scoring-workers", "0"])
    runs = tmp_path / "killed"
    cmd = [sys.executable, "-m", "saliency_bench", "--plugin", TOY, "run", "--runs-dir", str(runs), "--workers", "0",
           "--quiet", "--scoring-workers", "2", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline, done = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None and done < 4:
        try:
            con = sqlite3.connect(runs / "store.sqlite", timeout=5)
            done = con.execute("SELECT COUNT(*) FROM outcomes WHERE method='sleepy'").fetchone()[0]
            con.close()
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    _single(runs, args + ["--scoring-workers", "1"])  # resumed, with another number of workers
    assert _results(runs) == _results(tmp_path / "straight")


class _Slow(Benchmark):
    """Scores a sample's id after sleeping: the first batches take the longest."""

    name = "slow"
    columns = ("slow",)

    def score(self, sample, output, input_size):
        time.sleep(0.05 * (4 - int(sample.id)))
        return {"id": int(sample.id), "peak": float(output.max())}


def test_batches_finish_in_the_order_they_were_submitted():
    bench = _Slow()
    samples = [Sample(id=str(i), image=None, size=(4, 4), targets={}, category="c") for i in range(4)]
    finished = []
    with Scorer([bench], workers=2, max_pending=8) as scorer:
        for i, s in enumerate(samples):
            scorer.submit([(bench, [s], [np.full((2, 2), i, np.float32)], None)], (4, 4),
                          lambda results, i=i: finished.append((i, results[0][0][0][1])))
    assert finished == [(i, {"id": i, "peak": float(i)}) for i in range(4)]


def test_the_default_leaves_the_main_process_and_the_loader_workers_their_cores(monkeypatch):
    monkeypatch.setattr("saliency_bench.scoring.cores", lambda: 16)
    assert default_workers(2, local_world=1) == 13
    assert default_workers(2, local_world=8) == 0  # 2 cores a rank: the rank and... nothing left
    assert default_workers(0, local_world=4) == 3
    monkeypatch.setattr("saliency_bench.scoring.cores", lambda: 2)
    assert default_workers(2, local_world=1) == 0


FORK_AFTER_OPENCV = """
import sys
import numpy as np
import cv2
from saliency_bench.cli import main
cv2.setNumThreads(4)  # the parent's pool has threads, as after a pass scored here (MaxBoxAccV2's resize)
big = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)
for _ in range(3):
    cv2.resize(big, (3000, 3000), interpolation=cv2.INTER_CUBIC)
sys.exit(main(sys.argv[1:]))
"""


def test_workers_forked_after_opencv_ran_threads_here_do_not_hang(tmp_path):
    # a child forked while OpenCV's pool had threads here waited forever in the worker's
    # cv2.setNumThreads(1)
    args = lambda runs, w: ["--plugin", TOY, "run", "--runs-dir", str(tmp_path / runs), "--workers", "0",  # noqa: E731
                            "--quiet", "--scoring-workers", str(w), "--model", "toy_net", "--dataset", "toy",
                            "-d", "n=6", "--methods", "brightness", "--benchmarks", "localization",
                            "--batch-size", "3"]
    proc = subprocess.run([sys.executable, "-c", FORK_AFTER_OPENCV, *args("w1", 1)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(args("w0", 0)) == 0
    assert _results(tmp_path / "w1") == _results(tmp_path / "w0")


class _StuckInWorkers(Benchmark):
    """Scores here, never in a forked worker: stands for a worker stuck in a library."""

    name = "stuck_in_workers"
    columns = ("stuck_in_workers",)
    parent = os.getpid()

    def score(self, sample, output, input_size):
        if os.getpid() != self.parent:
            time.sleep(3600)
        return {"id": int(sample.id), "peak": float(output.max())}


def test_a_pool_that_returns_nothing_is_stopped_and_the_pass_scored_here(capsys):
    bench = _StuckInWorkers()
    samples = [Sample(id=str(i), image=None, size=(4, 4), targets={}, category="c") for i in range(5)]
    finished = []
    started = time.time()
    with Scorer([bench], workers=2, max_pending=2, stall_seconds=1.0) as scorer:
        for i, s in enumerate(samples):
            scorer.submit([(bench, [s], [np.full((2, 2), i, np.float32)], None)], (4, 4),
                          lambda results, i=i: finished.append((i, results[0][0][0][1])))
        assert scorer._pool is None  # stopped at the first wait that timed out
    assert finished == [(i, {"id": i, "peak": float(i)}) for i in range(5)]  # every batch, in order
    assert time.time() - started < 60
    assert "returned nothing for 1 s" in capsys.readouterr().err


class _DiesInAWorker(Benchmark):
    """Kills the worker that scores sample 2 (as a crash in native code would); scores the rest,
    saying which process scored it."""

    name = "dies_in_a_worker"
    columns = ("dies_in_a_worker",)
    parent = os.getpid()

    def score(self, sample, output, input_size):
        if os.getpid() != self.parent and sample.id == "2":
            os.kill(os.getpid(), signal.SIGKILL)
        return {"id": int(sample.id), "peak": float(output.max()), "here": os.getpid() == self.parent}


def test_a_worker_that_dies_has_its_batches_scored_here_and_the_other_goes_on(capsys):
    bench = _DiesInAWorker()
    samples = [Sample(id=str(i), image=None, size=(4, 4), targets={}, category="c") for i in range(12)]
    finished = []
    started = time.time()

    def hung(signum, frame):
        raise AssertionError("the pass did not end: the dead worker's batches were never answered")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)  # the failure this guards against is a hang, not a wrong record
    try:
        with Scorer([bench], workers=2, max_pending=2, stall_seconds=30) as scorer:  # a death is seen before
            for i, s in enumerate(samples):
                scorer.submit([(bench, [s], [np.full((2, 2), i, np.float32)], None)], (4, 4),
                              lambda results, i=i: finished.append((i, results[0][0][0][1])))
            assert scorer._pool is not None and len(scorer._pool.alive()) == 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert time.time() - started < 25  # noticed at once, not after the stall
    assert [(i, r["id"], r["peak"]) for i, r in finished] == [(i, i, float(i)) for i in range(12)]
    here = [i for i, r in finished if r["here"]]  # the batches the dead worker held (at most 3 are in flight)
    assert 2 in here and len(here) <= 3 and max(here) < 6  # and the rest, by the worker left
    assert "scoring worker ended (exit code -9) with" in capsys.readouterr().err


def test_the_arena_places_jobs_first_in_first_out_and_refuses_what_does_not_fit():
    from saliency_bench.scoring import _Arena

    arena = _Arena(1024)
    m = lambda n: [np.zeros(n, np.uint8)]  # noqa: E731 - n bytes, rounded up to 64 in the ring
    assert [s[0] for s in arena.put(m(300))] == [0]  # [0, 320)
    assert [s[0] for s in arena.put(m(400))] == [320]  # [320, 768)
    assert arena.put(m(300)) is None  # 768 + 320 > 1024, and [0, 320) is still in use
    arena.release()  # the first job is done: [320, 768) in use
    assert [s[0] for s in arena.put(m(256))] == [768]  # [768, 1024): fits exactly at the end
    assert [s[0] for s in arena.put(m(300))] == [0]  # wrapped: [0, 320) is free again
    assert arena.put(m(1)) is None  # wrapped: [320, ...) still holds the second job
    arena.release(); arena.release(); arena.release()
    assert not arena.spans and [s[0] for s in arena.put(m(1024))] == [0]
    assert arena.put(m(2048)) is None and arena.put([np.array([object()])]) is None and arena.put([]) is None


class _Exact(Benchmark):
    """Records the exact bytes of each map as it arrived, its dtype and shape."""

    name = "exact"
    columns = ("exact",)

    def score_batch(self, samples, outputs, input_size):
        recs = [{"id": s.id, "bytes": np.asarray(o).tobytes().hex(), "dtype": str(np.asarray(o).dtype),
                 "shape": list(np.shape(o))} for s, o in zip(samples, outputs)]
        for o in outputs:
            np.asarray(o)[...] = 0  # a benchmark writing into its maps touches its own copy only
        return recs


def test_maps_through_a_small_shared_arena_arrive_exactly_wrapped_or_pickled(monkeypatch):
    monkeypatch.setattr("saliency_bench.scoring.ARENA_BYTES", 4096)  # a few jobs: the ring wraps, some are pickled
    rng = np.random.default_rng(0)
    bench = _Exact()
    jobs = []
    for i in range(24):
        shape = [(7, 7), (20, 30), (2, 3, 5), (33,)][i % 4]
        dtype = [np.float32, np.float64, np.float16, np.uint8][i % 4]
        maps = [rng.standard_normal(shape).astype(dtype) for _ in range(1 + i % 3)]
        if i % 5 == 0:
            maps[0] = maps[0][..., ::-1]  # not contiguous
        samples = [Sample(id=f"{i}-{k}", image=None, size=(4, 4), targets={}, category="c") for k in range(len(maps))]
        jobs.append((samples, maps))
    expected = [[(s.id, {"id": s.id, "bytes": np.ascontiguousarray(o).tobytes().hex(), "dtype": str(o.dtype),
                         "shape": list(o.shape)}) for s, o in zip(samples, maps)] for samples, maps in jobs]
    kept = [[o.copy() for o in maps] for _, maps in jobs]
    from saliency_bench.scoring import _Arena

    placed = []  # where each job's span starts in the ring (None: it did not fit, and went pickled)
    put = _Arena.put

    def placing(self, outputs, head=b""):
        specs = put(self, outputs, head)
        placed.append(None if specs is None else self.spans[-1][0])
        return specs

    monkeypatch.setattr(_Arena, "put", placing)
    finished = []
    with Scorer([bench], workers=2, max_pending=3) as scorer:
        assert scorer._arena is not None and scorer._arena.size == 4096
        for i, (samples, maps) in enumerate(jobs):
            scorer.submit([(bench, samples, maps, None)], (4, 4), lambda results, i=i: finished.append((i, results[0][0])))
    assert finished == [(i, e) for i, e in enumerate(expected)]
    shared = [p for p in placed if p is not None]
    assert 0 < len(shared) < len(jobs) and 0 in shared[1:]  # ring, wrapped, and pickled
    assert all(np.array_equal(a, b) for (_, maps), k in zip(jobs, kept) for a, b in zip(maps, k))  # ours untouched
