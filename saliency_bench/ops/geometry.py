"""Box geometry: VOC IoU, tight boxes, wsolevaluation's box scaling.

Boxes are ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates (the VOC convention,
``w = x2 - x1 + 1``), as in Fong & Vedaldi's evaluation code and in wsolevaluation
(Choe et al., CVPR 2020, ``calculate_multiple_iou``).
"""
from __future__ import annotations

import numpy as np


def iou_voc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [...,4]`` and ``b [...,4]`` (broadcast) with the +1 (inclusive) convention.

    A degenerate union (``<= 0``) gives IoU 0, as wsolevaluation does.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred [...,4]`` against ``gt [G,4]``: the IoU with the best-matching ground-truth box."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return np.zeros(np.shape(pred)[:-1])
    return iou_voc(np.asarray(pred)[..., None, :], gt).max(axis=-1)


def tight_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes around the ``True`` pixels of ``masks [...,H,W]``: ``(boxes [...,4], empty [...])``.

    An empty mask gets the box ``(0, 0, 0, 0)`` and ``empty = True``; callers decide what an
    empty selection means.
    """
    masks = np.asarray(masks, dtype=bool)
    boxes, empty = boxes_from_lines(masks.any(axis=-1), masks.any(axis=-2))
    boxes[empty] = 0
    return boxes, empty


def boxes_from_lines(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes ``[...,4]`` and ``empty [...]`` from which rows ``[...,H]`` and columns
    ``[...,W]`` hold a kept pixel."""
    h, w = rows.shape[-1], cols.shape[-1]
    empty = ~rows.any(axis=-1)
    y1 = rows.argmax(axis=-1)
    y2 = h - 1 - rows[..., ::-1].argmax(axis=-1)
    x1 = cols.argmax(axis=-1)
    x2 = w - 1 - cols[..., ::-1].argmax(axis=-1)
    return np.stack([x1, y1, x2, y2], axis=-1), empty


def scale_boxes_wsol(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale boxes from an image of ``from_size`` (H, W) to ``to_size`` the way wsolevaluation's
    ``resize_bbox`` does: ``int(x * new_w / w)`` in float64, in that order (``x * (new_w / w)``
    rounds differently and truncates to another integer when the exact result is one)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    to = np.array([to_size[1], to_size[0], to_size[1], to_size[0]], np.float64)
    frm = np.array([from_size[1], from_size[0], from_size[1], from_size[0]], np.float64)
    return (b * to / frm).astype(np.int64)
