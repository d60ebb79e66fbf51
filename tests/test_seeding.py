"""A method's random draws depend on its batch alone (saliency_bench/seeding.py).

``noisy_brightness`` (tests/plugins/stochastic.py) draws from torch's generator, NumPy's global
one and Python's ``random``, as Captum's NoiseTunnel draws from torch's. Its maps, read from the
float32 cache, must be the same alone, after a method that consumes draws, and when a second run
computes the batches a first one left (as a resume does: the run seeds torch afresh, so its first
batch would otherwise draw what the first batch of the whole dataset drew). The expected maps of one call are computed here by seeding the three generators by
hand and drawing as the plugin does.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

from saliency_bench.cli import main
from saliency_bench.execute import call_method
from saliency_bench.registry import get_method, load_plugin_file
from saliency_bench.seeding import batch_seed, seeded
from saliency_bench.targets import Targets

PLUGINS = Path(__file__).parent / "plugins"
TOY, STOCHASTIC = str(PLUGINS / "toy.py"), str(PLUGINS / "stochastic.py")
load_plugin_file(STOCHASTIC)
noise = next(m for n, m in sys.modules.items() if n.startswith("saliency_bench_plugin_stochastic")).noise


def _run(runs: Path, methods: str, *extra: str) -> int:
    return main(["--plugin", TOY, "--plugin", STOCHASTIC, "run", "--model", "toy_net", "--dataset", "toy",
                 "--runs-dir", str(runs), "--workers", "0", "--batch-size", "4", "--quiet", "--methods", methods,
                 "--benchmarks", "pointing", "--cache-dtype", "float32", *extra])


def _maps(runs: Path, method: str = "noisy_brightness") -> dict[str, np.ndarray]:
    out = {}
    for f in (runs / "cache").rglob(f"{method}-*/*.npz"):
        with np.load(f) as z:
            out.update(zip(z["ids"].tolist(), z["maps"] * z["scale"][:, None, None]))
    return out


def test_the_draws_of_a_batch_do_not_depend_on_what_ran_before(tmp_path):
    assert _run(tmp_path / "alone", "noisy_brightness") == 0
    assert _run(tmp_path / "after", "draws_random,noisy_brightness") == 0
    resumed = tmp_path / "resumed"
    assert _run(resumed, "noisy_brightness", "--limit", "4") == 0  # the first batch
    assert _run(resumed, "noisy_brightness") == 0  # the rest, after a fresh torch.manual_seed
    want = _maps(tmp_path / "alone")
    assert sorted(want) == [f"toy{i:03d}" for i in range(10) if i % 3 != 2]  # every third is corrupt
    for other in ("after", "resumed"):
        got = _maps(tmp_path / other)
        assert sorted(got) == sorted(want), other
        for sid, m in want.items():
            assert np.array_equal(got[sid], m), (other, sid)
    # the noise is real: two batches never share their draws
    assert not np.allclose(want["toy000"] - want["toy000"].mean(), want["toy004"] - want["toy004"].mean())


def test_a_call_draws_from_generators_seeded_by_hand_and_leaves_them_as_they_were():
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)
    before = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)

    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    seed = batch_seed(7, ["a", "b"])
    res = call_method(get_method("noisy_brightness"), None, x, Targets([[0], [1]]), {}, seed=seed)

    assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()) == \
        (before[0].tolist(), before[1].tolist(), before[2])  # the process's generators: untouched
    state = (torch.random.get_rng_state(), np.random.get_state(), random.getstate())
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    want = (x.mean(1) + noise(2, 8, 8)).numpy()
    torch.random.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])
    assert np.array_equal(np.stack(res.outputs), want)


def test_batch_seeds_differ_by_run_seed_and_samples_and_not_by_anything_else():
    assert batch_seed(0, ["a", "b"]) == batch_seed(0, ["a", "b"])
    assert len({batch_seed(0, ["a", "b"]), batch_seed(1, ["a", "b"]), batch_seed(0, ["b", "a"]),
                batch_seed(0, ["ab"]), batch_seed(0, ["a", "b", "c"])}) == 5
    assert 0 <= batch_seed(0, ["a"]) < 2 ** 63
    with seeded(None):  # no seed: nothing touched
        pass
