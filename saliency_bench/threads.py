"""The harness's own CPU tensor work, on the calling thread alone.

A run's main process shares its cores with the loader's and the scoring workers' processes. A
torch operation there that splits over torch's intra-op threads can wait at its end for threads
the operating system has not scheduled. With OpenMP's default (active) wait policy, which a
process gets when it imports torch before ``saliency_bench`` (a notebook using the API), the
guard's verify and the cache's float16 conversion of a batch took 5.9 ms with a busy process on
the other core, and 2.5 ms on one thread. Under the passive policy the command line sets, the
two are the same (docs/PERFORMANCE.md §3). The methods and the model keep the thread count torch
chose, so no method's output can move; only the harness's own operations, whose results do not
depend on the thread count or are compared only with values computed the same way, run inside
:func:`one_thread`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """torch's intra-op thread count set to 1 for the block, and put back after it (a switch
    costs well under a microsecond; torch's thread pool is kept)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
