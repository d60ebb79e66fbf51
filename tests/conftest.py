"""Shared fixtures. Real data lives in ../shared/data (from the project root); tests that need
it skip with a reason when it is absent (a fresh clone elsewhere has no ../shared)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SALIENCY_BENCH_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"needs the shared test data at {SHARED_DATA} (../shared/data from the project root)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lite0():
    """The embedded EfficientNet-Lite0 with its real weights, on the CPU."""
    from saliency_bench.registry import get_model

    return get_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def photo(shared_data):
    """A real ImageNet val photo (ILSVRC2012_val_00000556, class 625 lifeboat) as PIL RGB."""
    from saliency_bench.imageio import load_rgb

    return load_rgb(shared_data / "imagenet-val-300" / "val" / "ILSVRC2012_val_00000556.JPEG")
