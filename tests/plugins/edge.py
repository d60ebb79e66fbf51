"""A plugin file for the edge-case tests: methods whose maps are legal but degenerate (constant,
negative, 1x1) or all NaN, and a dataset whose samples carry no ground truth a benchmark can use.
Loaded with ``--plugin`` beside tests/plugins/toy.py."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import saliency_bench
from saliency_bench.contracts import Dataset, Sample


@saliency_bench.method("constant_map")
def constant_map(model, x, targets):
    """The same value everywhere: no maximum to point at, no threshold that separates anything."""
    return x.new_ones(x.shape[0], *x.shape[-2:])


@saliency_bench.method("negative_map")
def negative_map(model, x, targets):
    """Minus the brightness: every value below zero."""
    return -x.mean(1) - 10.0


@saliency_bench.method("one_pixel_map")
def one_pixel_map(model, x, targets):
    """A 1x1 map (a method at the coarsest resolution there is)."""
    return x.mean(dim=(1, 2, 3)).reshape(-1, 1, 1)


@saliency_bench.method("all_nan_map")
def all_nan_map(model, x, targets):
    """NaN everywhere, on every sample."""
    return torch.full((x.shape[0], *x.shape[-2:]), float("nan"), device=x.device)


class NoTruth(Dataset):
    """``n`` images with a target class but no boxes and no mask: nothing to point at or localise."""

    name = "no_truth"

    def __init__(self, n: int = 4) -> None:
        self.n = n

    @property
    def ids(self) -> list[str]:
        return [f"nt{i}" for i in range(self.n)]

    def load(self, i: int) -> Sample:
        img = Image.fromarray((np.random.default_rng(i).random((24, 24, 3)) * 255).astype(np.uint8))
        return Sample(id=self.ids[i], image=img, size=(24, 24), targets={"imagenet": (i % 2,)},
                      category=f"class{i % 2}", boxes=np.zeros((0, 4), np.float32), mask=None)


@saliency_bench.dataset("no_truth")
def no_truth(*, n: int = 4) -> NoTruth:
    """Samples without boxes or masks."""
    return NoTruth(n)
