"""The heatmap cache: every heatmap is computed once and reused by every benchmark and run.

Layout: ``<root>/v2/<model>-<weights digest>/<dataset key>/<method key>/<batch>.npz``, one file
per computed batch, holding the sample ids and their maps (or points); failures are not
cached (the store keeps them, with their reasons). ``v2``: maps at the resolution their method
returned (``v1`` caches held maps upsampled to the input size; they are not read).
A file is written to a temporary name and renamed into place, so a run killed at any moment
(SIGKILL included) leaves only whole files.

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
import re
from pathlib import Path

import numpy as np


VERSION = "v2"


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:120]


class HeatmapCache:
    def __init__(self, root: str | Path, model_key: str, dataset_key: str, method_key: str,
                 dtype: str = "float16") -> None:
        self.dir = Path(root) / VERSION / safe(model_key) / safe(dataset_key) / safe(method_key)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype
        self._index: dict[str, tuple[Path, int]] | None = None

    def _scan(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            for f in sorted(self.dir.glob("*.npz")):
                try:
                    with np.load(f) as z:
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

    def put(self, ids: list[str], outputs: np.ndarray) -> np.ndarray:
        """Store a batch: ``outputs[i]`` is sample ``ids[i]``'s float32 map (or point).

        Returns the outputs exactly as a later read will give them back, so that a fresh run
        and a resumed one score the very same numbers.
        """
        outputs = np.asarray(outputs, dtype=np.float32)
        scale = np.ones(len(ids), np.float32)
        if outputs.ndim == 3 and self.dtype == "float16":
            peak = np.abs(outputs).reshape(len(ids), -1).max(axis=1) if len(ids) else scale
            scale = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0).astype(np.float32)
            outputs = np.nan_to_num(outputs / scale[:, None, None]).astype(np.float16)
        name = hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16]
        final = self.dir / f"{name}.npz"
        tmp = self.dir / f".{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, ids=np.array(ids), maps=outputs, scale=scale)
        os.replace(tmp, final)
        if self._index is not None:
            for row, sid in enumerate(ids):
                self._index[sid] = (final, row)
        stored = outputs.astype(np.float32)
        return stored * scale.reshape((-1,) + (1,) * (stored.ndim - 1)) if stored.ndim == 3 else stored
