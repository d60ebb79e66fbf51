"""What every dataset adapter shares: the seeded held-out split, box checks, option parsing.

Kept free of any one format so that the ImageNet and COCO adapters apply the same rules.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class LayoutError(FileNotFoundError):
    """A dataset folder or annotation file is missing; the message names it and the layout expected."""


def require(path: Path, what: str, layout: str) -> Path:
    """``path`` if it exists, else :class:`LayoutError` naming the path and the expected layout."""
    if not path.exists():
        raise LayoutError(f"{what} not found: {path}\nexpected layout:\n{layout}")
    return path


def split_rank(ids: Iterable[str], seed: int) -> list[str]:
    """Ids ordered by SHA-256 of ``"{seed}:{id}"``: the seeded split's order.

    A hash rather than a shuffled RNG stream, so an image's side of the split depends only on its
    own id and the seed: the same on every platform, whatever the file order, and stable when a
    user adds or removes other images.
    """
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def heldout_ids(ids: Sequence[str], count: int, seed: int) -> set[str]:
    """The ``count`` ids that come first in :func:`split_rank` order (the threshold-tuning split)."""
    return set(split_rank(ids, seed)[: max(0, int(count))])


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Clip inclusive ``(x1, y1, x2, y2)`` boxes to the image ``[0, W-1] x [0, H-1]``.

    Returns ``(kept, clipped, dropped)``: a box that reaches outside is clipped (counted), a box
    with no pixel inside the image is dropped (counted): the caller reports both.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(b) == 0:
        return b, 0, 0
    inside = (b[:, 2] >= 0) & (b[:, 3] >= 0) & (b[:, 0] <= width - 1) & (b[:, 1] <= height - 1) \
        & (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])
    lim = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float32)
    c = np.clip(b, 0, lim)
    clipped = int((np.abs(c - b).max(axis=1) > 0)[inside].sum())
    return c[inside], clipped, int((~inside).sum())


def boxes_inside(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Keep inclusive ``(x1, y1, x2, y2)`` boxes **as written** (not clipped), dropping those with no
    pixel inside the image ``[0, W-1] x [0, H-1]`` (or with x2 < x1 or y2 < y1).

    Returns ``(kept, outside, dropped)``: ``outside`` counts the kept boxes that reach outside the
    image, ``dropped`` the boxes left out; the caller reports both. Weak localization scores
    against the boxes as the annotation files write them (PROTOCOLS.md §3, the authors'
    ``compute_overlap`` and wsolevaluation's ``resize_bbox`` clip nothing).
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(b) == 0:
        return b, 0, 0
    inside = (b[:, 2] >= 0) & (b[:, 3] >= 0) & (b[:, 0] <= width - 1) & (b[:, 1] <= height - 1) \
        & (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])
    reach = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width - 1) | (b[:, 3] > height - 1)
    return b[inside], int((reach & inside).sum()), int((~inside).sum())


def as_bool(value: object) -> bool:
    """CLI options arrive parsed to literals, but ``-d x=yes`` arrives as a string."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got '{value}'")
    return bool(value)
