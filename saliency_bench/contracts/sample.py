"""The Sample and Dataset contracts: one scored unit and the adapters that make them.

Boxes are ``[N,4]`` arrays ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates of the
*original* image (the VOC convention, ``w = x2 - x1 + 1``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass
class Sample:
    """One scored unit: an image and one target (a class, or a set of classes scored as one).

    ``targets`` maps a label space (``"imagenet"``, ``"coco"``) to the class indices that make
    the target in that space; a model reads the entry of its own ``label_space``. An empty or
    missing entry means "not evaluable by this model" and is reported, never dropped.
    """

    id: str
    image: Any  # PIL.Image (RGB) once loaded; None for a sample that failed to load
    size: tuple[int, int]  # original (height, width)
    targets: Mapping[str, tuple[int, ...]]
    category: str  # the group per-category metrics average over (wnid, COCO category name)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    mask: np.ndarray | None = None  # bool [H, W] ground-truth region (COCO instance masks)
    flags: dict[str, bool] = field(default_factory=dict)  # e.g. {"difficult": True}
    split: str = "eval"  # "eval" or "heldout" (threshold selection)
    error: str | None = None  # why loading failed; the harness records it as a failure
    # (part name, x, y) in original-image pixels (COCO keypoints, Animal Parts eyes and feet); None:
    # the dataset has no keypoint annotation (the part-saliency benchmark skips it)
    keypoints: list[tuple[str, float, float]] | None = None

    def target_in(self, label_space: str) -> tuple[int, ...]:
        return tuple(self.targets.get(label_space, ()))


class Dataset:
    """A dataset adapter: an indexed list of samples with stable ids.

    ``load(i)`` decodes sample ``i`` (image and ground truth). Per-sample problems (a corrupt
    JPEG, an annotation that does not parse, a category no model can score) do not raise:
    the sample comes back with ``error`` set, and the harness records it as failed. Only a
    problem with the whole dataset (missing folder or annotation file) raises, at construction,
    naming the path and the layout expected. Adapters are picklable (DataLoader workers).
    """

    name: str = ""
    label_space: str = "imagenet"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ids(self) -> list[str]:
        raise NotImplementedError

    def load(self, i: int) -> Sample:
        raise NotImplementedError

    def describe(self) -> dict:
        """Counts for the run's report: samples, per category, failed/not evaluable, options."""
        return {"samples": len(self)}

