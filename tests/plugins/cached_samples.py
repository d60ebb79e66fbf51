"""A plugin file for the loader tests: a dataset adapter that loads each sample once and hands
out the same object on every later load (a cache kept at module level). Loaded with
``--plugin``, beside tests/plugins/toy.py for its model."""
from __future__ import annotations

import numpy as np
from PIL import Image

import saliency_bench
from saliency_bench.contracts import Dataset, Sample

_LOADED: dict[int, Sample] = {}


class CachedToy(Dataset):
    """Six 64x48 images with a bright square (the ground-truth box and mask)."""

    name = "cached_toy"

    @property
    def ids(self) -> list[str]:
        return [f"cached{i:03d}" for i in range(6)]

    def load(self, i: int) -> Sample:
        if i not in _LOADED:
            rng = np.random.default_rng(i)
            img = (rng.random((48, 64, 3)) * 60).astype(np.uint8)
            x0, y0 = 8 + (i * 7) % 30, 6 + (i * 5) % 20
            img[y0:y0 + 16, x0:x0 + 16] = 250
            mask = np.zeros((48, 64), bool)
            mask[y0:y0 + 16, x0:x0 + 16] = True
            _LOADED[i] = Sample(id=self.ids[i], image=Image.fromarray(img), size=(48, 64),
                                targets={"imagenet": (i % 2,)}, category=f"class{i % 2}",
                                boxes=np.array([[x0, y0, x0 + 15, y0 + 15]], np.float32), mask=mask)
        return _LOADED[i]


@saliency_bench.dataset("cached_toy")
def cached_toy() -> CachedToy:
    """Toy samples, each loaded once and kept by the adapter."""
    return CachedToy()
