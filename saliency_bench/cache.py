"""The heatmap cache: every heatmap is computed once and reused by every benchmark and run.

Layout: ``<root>/v4/<model>-<weights digest>/<dataset key>/<method key>/<batch>.npz``, one file
per computed batch, holding the sample ids and their maps (or points); failures are not
cached (the store keeps them, with their reasons). ``v4``: maps at the resolution their method
returned, each file written only from a call after which the model and the process state were
verified unchanged (:mod:`.isolation`), and saying so (its ``provenance``); a file without it
is not read. Older layouts are not read: ``v1`` held maps upsampled to the input size, ``v2``
maps written without that check (a method that changed the model left maps of the changed
model there, which later runs read back), ``v3`` maps checked by the guard before 2026-12-03
(a norm of the weights, blind to a negated or permuted weight; inputs shared between methods;
patched classes and NumPy unseen; random draws that depended on earlier methods); the run says
so when it finds one.
A file is written to a temporary name and renamed into place, so a run killed at any moment
(SIGKILL included) leaves only whole files. The writing happens on a thread of its own
(:class:`_Writer`), off the run's critical path: the maps are converted before :meth:`put`
returns, and every read waits for the writes it could need (a run killed with writes pending
loses only those cache files: their samples are computed again when a later run needs them).

Heatmaps are stored as float16 after division by their largest absolute value (float16 keeps
11 significant bits, so maxima closer than 1 part in 2048 become ties), or ``dtype="float32"``
as computed. The run that computes a map scores it as computed and writes the cache after the
store (so its own resume never reads its maps back from a lossy cache); the cache serves the
gallery and later runs (other benchmarks, re-scoring), which mark such records as re-scored
from float16. Points are always float32.
"""
from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from pathlib import Path
from typing import Callable

import numpy as np


VERSION = "v4"
PROVENANCE = ("model, inputs and process state verified unchanged after the call, random generators "
              "seeded by the batch (isolation 2)")
# Layouts of earlier versions, not read (the run names them), and what their maps lacked.
UNTRUSTED = {"v2": "without checking that each map came from an unchanged model",
             "v3": "with a weaker check than today's (a weight negated or permuted through .data, a write "
                   "into a method's inputs and a patched layer class went unseen, and random draws depended "
                   "on the methods before)"}


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:120]


class _Writer:
    """One thread that writes the cache's files in the order they were put. Writing a batch's file
    (NumPy's zip format: its checksum, the copy to the file) took the run's main thread about
    2-4 ms per batch of 16 maps at 224x224 on a CPU; the thread holds the GIL only for zipfile's
    bookkeeping. At most ``depth`` files wait (a put then waits for the oldest). An error in a write
    is raised by the next :meth:`wait` or :meth:`submit`."""

    def __init__(self, depth: int = 4) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._cv = threading.Condition()
        self._pending = 0
        self._depth = depth
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._cv:
            while self._pending >= self._depth:
                self._cv.wait()
            self._raise()
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="saliency-bench cache writer", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def wait(self) -> None:
        """Until every file put so far is written (then raise a write's error, if one failed)."""
        with self._cv:
            while self._pending:
                self._cv.wait()
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except BaseException as e:  # kept for the caller, whose cache write it was
                with self._cv:
                    self._error = self._error or e
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()


_WRITER = _Writer()


def wait_for_writes() -> None:
    """Every cache file put so far is on disk (raises the error of a write that failed)."""
    _WRITER.wait()


class HeatmapCache:
    def __init__(self, root: str | Path, model_key: str, dataset_key: str, method_key: str,
                 dtype: str = "float16") -> None:
        self.dir = Path(root) / VERSION / safe(model_key) / safe(dataset_key) / safe(method_key)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self._index: dict[str, tuple[Path, int]] | None = None
        self._unwritten: set[str] = set()  # ids put whose file the writer has not renamed into place yet

    def _scan(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            _WRITER.wait()  # the files put so far, by any cache of this process
            self._index = {}
            for f in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(f) as z:
                        if str(z["provenance"]) != PROVENANCE:
                            continue
                        ids = [str(s) for s in z["ids"]]
                except Exception:  # a foreign or damaged file: ignore it, recompute its samples
                    continue
                for row, sid in enumerate(ids):
                    self._index[sid] = (f, row)
        return self._index

    @property
    def lossy(self) -> bool:
        """Whether maps read back differ from the maps as computed (float16)."""
        return self.dtype == "float16"

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._scan()

    def get_many(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The cached float32 outputs of those of ``ids`` that have one."""
        index = self._scan()
        if self._unwritten and not self._unwritten.isdisjoint(ids):
            _WRITER.wait()
        by_file: dict[Path, list[tuple[str, int]]] = {}
        for sid in ids:
            if sid in index:
                f, row = index[sid]
                by_file.setdefault(f, []).append((sid, row))
        out: dict[str, np.ndarray] = {}
        for f, rows in by_file.items():
            with np.load(f) as z:
                maps, scale = z["maps"], z["scale"]
                for sid, row in rows:
                    out[sid] = maps[row].astype(np.float32) * np.float32(scale[row])
        return out

    def put(self, ids: list[str], outputs: np.ndarray) -> None:
        """Store a batch: ``outputs[i]`` is sample ``ids[i]``'s float32 map (or point).

        float16 maps are ``nan_to_num(map / peak)`` rounded to nearest-even: NumPy's values,
        computed with torch's vector conversion (NumPy converts one value at a time, at twice
        the cost of the whole write; the bytes are the same, tests/test_harness.py)."""
        outputs = np.asarray(outputs, dtype=np.float32)
        scale = np.ones(len(ids), np.float32)
        if outputs.ndim == 3 and self.dtype == "float16":
            flat = outputs.reshape(len(ids), -1)  # the largest absolute value, without |map| made
            peak = np.maximum(flat.max(axis=1), -flat.min(axis=1)) if flat.size else scale
            scale = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0).astype(np.float32)
            outputs = to_float16(outputs / scale[:, None, None])
        else:
            outputs = outputs.copy()  # the caller's array may change once put returns
        ids = list(ids)
        name = hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16]
        final = self.dir / f"{name}.npz"
        tmp = self.dir / f".{name}.{os.getpid()}.tmp.npz"
        self._unwritten.update(ids)

        def write() -> None:
            try:
                np.savez(tmp, ids=np.array(ids), maps=outputs, scale=scale, provenance=np.array(PROVENANCE))
                os.replace(tmp, final)
            finally:
                self._unwritten.difference_update(ids)

        _WRITER.submit(write)
        if self._index is not None:
            for row, sid in enumerate(ids):
                self._index[sid] = (final, row)


def to_float16(a: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(a).astype(np.float16)`` for a float32 array, bit for bit (NaN -> 0, an
    infinity -> float32's largest value, which float16 rounds to an infinity)."""
    import torch

    from .threads import one_thread

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    with one_thread():
        return torch.nan_to_num(t).half().numpy()


def untrusted_note(root: str | Path) -> str | None:
    """A line for a run whose cache folder holds an older layout (not read, maps recomputed)."""
    old = [v for v in UNTRUSTED if (Path(root) / v).is_dir()]
    if not old:
        return None
    said = "; ".join(f"{Path(root) / v} was written by an earlier version, {UNTRUSTED[v]}" for v in old)
    return (f"the heatmap cache {said}; it is not read (maps are computed again into {Path(root) / VERSION}); "
            "delete it to free the space")
