"""Random numbers a method draws: seeded by its batch, and never left behind.

A method that draws from the process's random generators (torch's CPU and CUDA generators,
NumPy's global ``np.random``, Python's ``random``), as Captum's ``NoiseTunnel`` and
``GradientShap`` do, would otherwise get numbers that depend on everything drawn before it in
the process: the methods that ran earlier, where an interrupted run resumed, which rank of a
distributed run took the batch. So each call of a method in a run starts from generators seeded
by the run's ``--seed`` and the ids of the batch's samples (:func:`batch_seed`), and the
generators are put back as they were when the call ends (:func:`seeded`): one method's draws
never move another's numbers, and a batch gives the same maps whatever ran before it.

Batches lie on a fixed grid over the dataset (``runner.py``), so a sample is always drawn for in
the same batch, with the same seed. A method with its own ``torch.Generator`` (RISE, the
benchmarks' noise) is not affected.
"""
from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Iterable, Iterator

import numpy as np
import torch


def batch_seed(seed: int, sample_ids: Iterable[str]) -> int:
    """The seed of one call: the run's ``seed`` and the batch's sample ids, hashed (63 bits)."""
    h = hashlib.blake2b(f"{int(seed)}".encode(), digest_size=8)
    for sid in sample_ids:
        h.update(b"\0" + str(sid).encode())
    return int.from_bytes(h.digest(), "little") & (2 ** 63 - 1)


def _cuda_generators() -> list:
    """The CUDA generators already in use (none when CUDA is not initialised: seeding it would
    initialise it)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    return list(torch.cuda.default_generators)


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Every process-wide generator seeded with ``seed`` for the block, and restored to its state
    before it afterwards (``seed`` None: nothing done)."""
    if seed is None:
        yield
        return
    cpu = torch.random.default_generator
    cudas = _cuda_generators()
    saved = (cpu.get_state(), [g.get_state() for g in cudas], np.random.get_state(), random.getstate())
    cpu.manual_seed(seed)
    for g in cudas:
        g.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        yield
    finally:
        cpu.set_state(saved[0])
        for g, s in zip(cudas, saved[1]):
            g.set_state(s)
        np.random.set_state(saved[2])
        random.setstate(saved[3])
