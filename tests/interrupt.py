"""Interrupting a run from a test: start ``saliency-bench`` in a child process and wait until its
store holds some outcomes, so the test can then stop it (Ctrl-C, a kill) mid-run."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path


def start_and_wait(cmd: list[str], store: Path, method: str, at_least: int, timeout: float = 120,
                   **popen) -> tuple[subprocess.Popen, int]:
    """Start ``cmd``; return it once ``store`` has ``at_least`` outcomes of ``method`` (or it ended,
    or ``timeout`` passed), with the count seen. The child gets Ctrl-C's default action even where
    this process was started with SIGINT ignored (a background job of a script), as a terminal gives it."""
    popen.setdefault("preexec_fn", lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc = subprocess.Popen(cmd, **popen)
    deadline, done = time.time() + timeout, 0
    while time.time() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(store, timeout=5)
            done = con.execute("SELECT COUNT(*) FROM outcomes WHERE method=?", (method,)).fetchone()[0]
            con.close()
        except sqlite3.Error:
            done = 0
        if done >= at_least:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    return proc, done
