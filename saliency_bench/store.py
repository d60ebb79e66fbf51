"""The results store: one SQLite file per runs directory, shared by every run in it.

Tables
    runs      run id, settings (JSON), versions, git commit, device, seed, times
    samples   per (run, model, dataset, sample): category, split, flags
    outcomes  per (run, model, dataset, method, sample): ok | failed, reason, diagnostics.
              This is the unit of resume: a sample with an outcome is not computed again.
    records   per (run, model, dataset, method, benchmark, sample): the benchmark's record
    timings   per timed method call (the runtime benchmark)
    metrics   per (run, model, dataset, method, benchmark): the summary metrics

Writes go through short transactions in WAL mode with a busy timeout, so several processes
(concurrent runs, or the ranks of a distributed run) can share one file without corrupting it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping


@dataclass
class Outcome:
    """A row of ``outcomes``: one method on one sample, ok or failed with the reason, and the
    method's per-sample diagnostics."""

    sample_id: str
    ok: bool
    reason: str | None = None
    info: dict = field(default_factory=dict)


@dataclass
class Timing:
    """A row of ``timings``: one timed method call on a batch (``batch_first`` its first sample)."""

    device: str
    batch_first: str
    batch_size: int
    seconds: float
    peak_bytes: int
    rank: int

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, settings TEXT, meta TEXT, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT, model TEXT, dataset TEXT, sample_id TEXT, idx INTEGER, category TEXT,
    split TEXT, flags TEXT, PRIMARY KEY (run_id, model, dataset, sample_id));
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT, model TEXT, dataset TEXT, method TEXT, sample_id TEXT, ok INTEGER,
    reason TEXT, info TEXT, PRIMARY KEY (run_id, model, dataset, method, sample_id));
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT, model TEXT, dataset TEXT, method TEXT, benchmark TEXT, sample_id TEXT,
    record TEXT, PRIMARY KEY (run_id, model, dataset, method, benchmark, sample_id));
CREATE TABLE IF NOT EXISTS timings (
    run_id TEXT, model TEXT, dataset TEXT, method TEXT, device TEXT, batch_first TEXT,
    batch_size INTEGER, seconds REAL, peak_bytes INTEGER, rank INTEGER,
    PRIMARY KEY (run_id, model, dataset, method, batch_first));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, model TEXT, dataset TEXT, method TEXT, benchmark TEXT, metrics TEXT,
    PRIMARY KEY (run_id, model, dataset, method, benchmark));
"""


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=_default)


def _default(o: Any) -> Any:
    if isinstance(o, Mapping):  # a Metric: stored as the dict it reads as
        return dict(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _retry_locked(step, attempts: int = 50, pause: float = 0.2) -> None:
    """``step()``, again while SQLite says the database is locked (beyond its busy timeout)."""
    for attempt in range(attempts):
        try:
            step()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(pause)


class Store:
    def __init__(self, path: str | Path, create: bool = True) -> None:
        """``create=False`` opens an existing store without writing to it (its readers)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 120000")
        if not create:
            return
        self._write_ahead_log()
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction() as c:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)

    def _write_ahead_log(self) -> None:
        """Switch the file to WAL (a setting the file keeps). The switch needs the file to
        itself, and SQLite can refuse it at once, without waiting out the busy timeout, while
        another process is creating or writing the store: it is retried like a transaction."""
        def switch() -> None:
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")

        _retry_locked(switch)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        _retry_locked(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, run_id: str, settings: dict, meta: dict) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO runs (run_id, settings, meta, started) VALUES (?,?,?,?)",
                      (run_id, _dumps(settings), _dumps(meta), time.time()))
            c.execute("UPDATE runs SET meta = ? WHERE run_id = ?", (_dumps(meta), run_id))

    def finish_run(self, run_id: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    def run_info(self, run_id: str) -> dict | None:
        row = self._conn.execute("SELECT settings, meta, started, finished FROM runs WHERE run_id = ?",
                                 (run_id,)).fetchone()
        if row is None:
            return None
        return {"settings": json.loads(row[0]), "meta": json.loads(row[1]), "started": row[2],
                "finished": row[3]}

    # -- samples & outcomes ----------------------------------------------------------------
    def add_samples(self, run_id: str, model: str, dataset: str, rows: Iterable[tuple]) -> None:
        """rows: (sample_id, idx, category, split, flags dict)."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, model, dataset, sid, idx, cat, split, _dumps(flags))
                 for sid, idx, cat, split, flags in rows])

    def pairs(self, run_id: str) -> list[tuple[str, str]]:
        """The (model, dataset) pairs a run has samples of, in the order they were first added."""
        cur = self._conn.execute("SELECT model, dataset, MIN(rowid) FROM samples WHERE run_id=? "
                                 "GROUP BY model, dataset ORDER BY 3", (run_id,))
        return [(r[0], r[1]) for r in cur]

    def done_ids(self, run_id: str, model: str, dataset: str, method: str) -> set[str]:
        cur = self._conn.execute(
            "SELECT sample_id FROM outcomes WHERE run_id=? AND model=? AND dataset=? AND method=?",
            (run_id, model, dataset, method))
        return {r[0] for r in cur}

    def write_batch(self, run_id: str, model: str, dataset: str, method: str, outcomes: list[Outcome],
                    records: list[tuple[str, str, dict]], timing: Timing | None = None) -> None:
        """One batch of one method, atomically: its outcomes, records (benchmark, sample,
        record) and the call's timing."""
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, model, dataset, method, o.sample_id, int(o.ok), o.reason, _dumps(o.info))
                 for o in outcomes])
            c.executemany(
                "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?)",
                [(run_id, model, dataset, method, b, sid, _dumps(rec)) for b, sid, rec in records])
            if timing is not None:
                c.execute("INSERT OR REPLACE INTO timings VALUES (?,?,?,?,?,?,?,?,?,?)",
                          (run_id, model, dataset, method) + astuple(timing))

    # -- reading ---------------------------------------------------------------------------
    def samples(self, run_id: str, model: str, dataset: str) -> dict[str, dict]:
        cur = self._conn.execute(
            "SELECT sample_id, idx, category, split, flags FROM samples "
            "WHERE run_id=? AND model=? AND dataset=? ORDER BY idx", (run_id, model, dataset))
        return {sid: {"id": sid, "idx": idx, "category": cat, "split": split, "flags": json.loads(fl)}
                for sid, idx, cat, split, fl in cur}

    def outcomes(self, run_id: str, model: str, dataset: str, method: str) -> list[dict]:
        cur = self._conn.execute(
            "SELECT sample_id, ok, reason, info FROM outcomes "
            "WHERE run_id=? AND model=? AND dataset=? AND method=? ORDER BY sample_id",
            (run_id, model, dataset, method))
        return [{"id": s, "ok": bool(ok), "reason": r, "info": json.loads(i)} for s, ok, r, i in cur]

    def records(self, run_id: str, model: str, dataset: str, method: str, benchmark: str) -> dict[str, dict]:
        cur = self._conn.execute(
            "SELECT sample_id, record FROM records WHERE run_id=? AND model=? AND dataset=? "
            "AND method=? AND benchmark=? ORDER BY sample_id", (run_id, model, dataset, method, benchmark))
        return {s: json.loads(r) for s, r in cur}

    def timings(self, run_id: str, model: str, dataset: str, method: str) -> list[dict]:
        cur = self._conn.execute(
            "SELECT device, batch_first, batch_size, seconds, peak_bytes, rank FROM timings "
            "WHERE run_id=? AND model=? AND dataset=? AND method=?", (run_id, model, dataset, method))
        return [dict(zip(("device", "batch_first", "batch_size", "seconds", "peak_bytes", "rank"), r))
                for r in cur]

    def set_metrics(self, run_id: str, model: str, dataset: str, method: str, benchmark: str,
                    metrics: dict) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?,?)",
                      (run_id, model, dataset, method, benchmark, _dumps(metrics)))

    def clear_summaries(self, run_id: str, model: str, dataset: str, keep: Iterable[str] = ()) -> None:
        """Drop the summaries of one (model, dataset) before they are written again, so that no
        row of an earlier pass (a benchmark since skipped, a method since left out) lingers; the rows
        of the methods ``keep`` names stay."""
        keep = list(keep)
        with self.transaction() as c:
            c.execute(f"DELETE FROM metrics WHERE run_id=? AND model=? AND dataset=? AND method NOT IN "
                      f"({','.join('?' * len(keep))})", (run_id, model, dataset, *keep))

    def metrics(self, run_id: str) -> list[dict]:
        cur = self._conn.execute(
            "SELECT model, dataset, method, benchmark, metrics FROM metrics WHERE run_id=? "
            "ORDER BY model, dataset, method, benchmark", (run_id,))
        return [{"model": m, "dataset": d, "method": me, "benchmark": b, "metrics": json.loads(x)}
                for m, d, me, b, x in cur]

    def merge_from(self, path: str | Path) -> None:
        """Copy another store's rows in (a rank's shard); idempotent, one transaction."""
        self._conn.execute("ATTACH DATABASE ? AS shard", (str(path),))
        try:
            with self.transaction() as c:
                for table in MERGED_TABLES:
                    c.execute(f"INSERT OR REPLACE INTO main.{table} SELECT * FROM shard.{table}")
        finally:
            self._conn.execute("DETACH DATABASE shard")


MERGED_TABLES = ("samples", "outcomes", "records", "timings", "metrics")


def migrate_settings(settings: dict) -> dict:
    """Settings of an older run with what later runs store: ``methods_plan`` (the method rows
    with their variant origin; older runs stored ``methods_resolved`` only)."""
    s = dict(settings)
    if not s.get("methods_plan"):
        s["methods_plan"] = [{"name": n, "base": None, "id_params": {}, "params": p}
                             for n, p in (s.get("methods_resolved") or {}).items()]
    s["benchmarks_resolved"] = list(s.get("benchmarks_resolved") or [])
    return s
