"""``saliency-bench ARGS`` with each batch's end timed: ``perf/ab_run.py --steady`` runs a tree's
code through this file (the tree on ``PYTHONPATH``) to measure the steady rate of a pass, free of
start-up, the model's load and the pass's set-up and summary.

The command line's own start is kept: ``quiet_idle_threads`` (where the tree has it) runs before
anything imports torch, as in ``saliency_bench.cli.main``. After each ``Runner._batch`` it notes
the wall clock, this process's CPU time and the batch's size; at exit the notes go to the JSON
file named by ``AB_MARKS`` as ``[[wall_s, cpu_s, n], ...]``.
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import time


def main() -> None:
    import saliency_bench.cli as cli_module

    # Before torch is imported, as the command line does it (OMP_WAIT_POLICY; a tree older than
    # that has no such step and runs as its own command line did).
    getattr(cli_module, "quiet_idle_threads", lambda: None)()
    import saliency_bench.runner as runner

    marks: list[list[float]] = []
    batch = runner.Runner._batch

    def timed_batch(self, store, model, display, loaded, *args, **kwargs):
        out = batch(self, store, model, display, loaded, *args, **kwargs)
        items = getattr(loaded, "items", loaded)
        marks.append([time.perf_counter(), time.process_time(), len(items)])
        return out

    runner.Runner._batch = timed_batch
    atexit.register(lambda: open(os.environ["AB_MARKS"], "w").write(json.dumps(marks)))
    sys.argv = ["saliency-bench", *sys.argv[1:]]
    cli_module.main()


if __name__ == "__main__":
    main()
