"""MaxBoxAccV2 (Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right",
CVPR 2020, §4.1), as wsolevaluation's ``inference.py`` and ``evaluation.py`` compute it
(``compute_bboxes_from_scoremaps`` with ``multi_contour_eval``, ``BoxEvaluator``); the protocol is
described in :mod:`.localization`, whose benchmark reports it.

The 100 thresholds come from sweeps over the level map that give every contour box of every
threshold at once (:func:`saliency_bench.ops.contours.contour_records`), not from 100 contour
searches.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from saliency_bench.ops.contours import contour_record_parts
from saliency_bench.ops.jit import Kernels
from saliency_bench.ops.resize import resize_map

jit = Kernels(__name__)

WSOL_THRESHOLDS = np.arange(0, 1, 0.01)  # wsolevaluation's cam_curve_interval = 0.01
WSOL_IOUS = (30, 50, 70)


@jit.kernel
def _scale_u8(cam, lo, rng, out):  # pragma: no cover - compiled by numba
    """``uint8((cam - lo) / rng * 255)`` in float64, truncated: wsolevaluation's
    ``normalize_scoremap`` (``cam -= min; cam /= max``; the max of ``cam - min`` is ``max - min``, as
    rounding is monotone) and ``(cam * 255).astype(np.uint8)``, the same operations.

    A division per pixel costs more than the rest of the pass, so rows are first computed as
    ``(cam - lo) * (255 / rng)``: both that and the exact value are within 255 * 2**-52 < 1e-12 of
    the real ``255 (cam - lo) / rng`` (two roundings each, values <= 255), so their integer parts
    agree unless one is within 1e-12 of an integer; a row with such a pixel is redone exactly
    (0 is exact in both: ``cam == lo``)."""
    h, w = cam.shape
    c = 255.0 / rng
    fast = c < np.inf
    for y in range(h):
        row = cam[y]
        o = out[y]
        near = not fast
        if fast:
            for x in range(w):
                u = (np.float64(row[x]) - lo) * c
                k = np.int32(u)
                f = u - k
                near |= ((f < 1e-12) & (u != 0.0)) | (f > 1.0 - 1e-12)
                o[x] = np.uint8(k)
        if near:
            for x in range(w):
                o[x] = np.uint8((np.float64(row[x]) - lo) / rng * 255.0)


def wsol_scoremaps(maps: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """wsolevaluation's score maps as uint8 ``[B,H,W]``: each map in float64 (``t2n``), resized to
    ``input_size`` with ``cv2.resize(INTER_CUBIC)`` (``inference.py``), ``normalize_scoremap``
    (NaN or constant: zeros; else ``(s - min) / max``), then ``uint8(s * 255)``."""
    H, W = int(input_size[0]), int(input_size[1])
    out = np.empty((len(maps), H, W), np.uint8)
    scale = jit.compiled("_scale_u8")
    for i, m in enumerate(maps):
        cam = np.asarray(m)
        if cam.shape != (H, W):
            cam = resize_map(cam, (H, W), reference="wsolevaluation")
        elif cam.dtype not in (np.float32, np.float64):  # float32 -> float64 is exact: no copy for it
            cam = cam.astype(np.float64)
        lo, hi = float(cam.min()), float(cam.max())
        if np.isnan(lo) or lo == hi:
            out[i] = 0
        elif np.isinf(lo) or np.isinf(hi):  # NaNs from inf / inf: numpy decides their cast
            cam = cam.astype(np.float64) - lo
            out[i] = (cam / cam.max() * 255).astype(np.uint8)
        else:
            scale(np.ascontiguousarray(cam), lo, hi - lo, out[i])
    return out


@lru_cache(maxsize=1)
def _levels_by_top() -> np.ndarray:
    """``[256,256]``: row ``m`` is :func:`wsol_levels`' table for a map whose maximum is ``m``."""
    thr = (WSOL_THRESHOLDS[None, :] * np.arange(256, dtype=np.float64)[:, None]).astype(np.int64)  # int(t * max)
    table = (thr[:, None, :] < np.arange(256)[None, :, None]).sum(axis=2).astype(np.int32)
    table.flags.writeable = False
    return table


def wsol_levels(s8: np.ndarray) -> np.ndarray:
    """Per image, how many of the 100 thresholds each uint8 value passes (``[B,256]``): the
    foreground at ``t`` is ``> int(t * max)`` (``cv2.threshold(THRESH_BINARY)``), and those
    thresholds are non-decreasing in ``t``, so a value is foreground at index ``j`` iff
    ``j < level``. (Tabled once for the 256 possible maxima.)"""
    return _levels_by_top()[s8.reshape(len(s8), -1).max(axis=1)]


@jit.kernel
def _record_hits(rec, top, gt, n_gt, ious, n_img, n_t, w, h):  # pragma: no cover - compiled by numba
    """``[B,K,T]``: at threshold index ``t``, has some contour of image ``b`` a box with IoU >=
    ``ious[k]`` (VOC, +1) with one of its ``n_gt[b]`` boxes ``gt[b]``? An image without foreground
    at ``t`` (``t >= top[b]``) scores wsolevaluation's box ``(0, 0, 0, 0)``. Records are ``(image,
    x1, y1, x2, y2, lo, hi)`` with the contour's extreme points; boxes become ``boundingRect``'s
    ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``."""
    n_k = ious.shape[0]
    hits = np.zeros((n_img, n_k, n_t + 1), np.int64)
    for r in range(rec.shape[0]):
        b = rec[r, 0]
        x0 = np.float64(rec[r, 1])
        y0 = np.float64(rec[r, 2])
        x1 = np.float64(min(rec[r, 3] + 1, w - 1))
        y1 = np.float64(min(rec[r, 4] + 1, h - 1))
        lo = rec[r, 5]
        hi = rec[r, 6]
        best = 0.0
        for g in range(n_gt[b]):
            iw = max(min(x1, gt[b, g, 2]) - max(x0, gt[b, g, 0]) + 1.0, 0.0)
            ih = max(min(y1, gt[b, g, 3]) - max(y0, gt[b, g, 1]) + 1.0, 0.0)
            inter = iw * ih
            union = (x1 - x0 + 1.0) * (y1 - y0 + 1.0) + (gt[b, g, 2] - gt[b, g, 0] + 1.0) * \
                (gt[b, g, 3] - gt[b, g, 1] + 1.0) - inter
            if union > 0:
                best = max(best, inter / union)
        for k in range(n_k):
            if best >= ious[k]:
                hits[b, k, lo] += 1
                hits[b, k, hi + 1] -= 1
    out = np.zeros((n_img, n_k, n_t), np.bool_)
    for b in range(n_img):
        none = 0.0  # the IoU of the box (0, 0, 0, 0)
        for g in range(n_gt[b]):
            iw = max(min(0.0, gt[b, g, 2]) - max(0.0, gt[b, g, 0]) + 1.0, 0.0)
            ih = max(min(0.0, gt[b, g, 3]) - max(0.0, gt[b, g, 1]) + 1.0, 0.0)
            inter = iw * ih
            union = 1.0 + (gt[b, g, 2] - gt[b, g, 0] + 1.0) * (gt[b, g, 3] - gt[b, g, 1] + 1.0) - inter
            if union > 0:
                none = max(none, inter / union)
        run = np.zeros(n_k, np.int64)
        for t in range(n_t):
            for k in range(n_k):
                run[k] += hits[b, k, t]
                out[b, k, t] = run[k] > 0 if t < top[b] else none >= ious[k]
    return out


def _min_box_areas(gt: np.ndarray, n_gt: np.ndarray, iou: int) -> np.ndarray:
    """Per image, an area under which no box reaches IoU ``iou/100`` with any of its ground-truth
    boxes (VOC, +1): IoU <= A / G for a box of area ``A`` and one of area ``G`` (the intersection is
    at most ``A``, the union at least ``G``), so ``iou/100`` of the smallest ``G``, less 1e-9 of
    it for the rounding of the IoU's division. 0 (prune nothing) where a box has no positive
    finite area or there are no boxes."""
    used = np.arange(gt.shape[1])[None, :] < n_gt[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        w = gt[..., 2] - gt[..., 0] + 1.0
        h = gt[..., 3] - gt[..., 1] + 1.0
        ok = ((np.isfinite(gt).all(axis=2) & (w > 0) & (h > 0)) | ~used).all(axis=1) & (n_gt > 0)
        smallest = np.where(used, w * h, np.inf).min(axis=1)
    return np.where(ok, iou / 100.0 * smallest * (1.0 - 1e-9), 0.0)


def maxboxacc_correct(maps: np.ndarray, gt_boxes: Sequence[np.ndarray], input_size: tuple[int, int] | None = None,
                      ious: Sequence[int] = WSOL_IOUS) -> np.ndarray:
    """``[B, len(ious), 100]`` bool: is sample ``b`` correct at IoU ``ious[k]/100`` and threshold ``t``.

    ``maps [B,h,w]`` at their own resolution are brought to ``input_size`` (default: their own
    size) as wsolevaluation does (:func:`wsol_scoremaps`); ``gt_boxes[b]`` are sample ``b``'s
    ground-truth boxes at ``input_size`` (:func:`~saliency_bench.ops.geometry.scale_boxes_wsol`).
    """
    maps = np.asarray(maps)
    size = tuple(maps.shape[1:]) if input_size is None else (int(input_size[0]), int(input_size[1]))
    s8 = wsol_scoremaps(maps, size)
    b, H, W = s8.shape
    n_t = len(WSOL_THRESHOLDS)
    g = max((len(np.asarray(x).reshape(-1, 4)) for x in gt_boxes), default=0)
    gt = np.zeros((b, max(g, 1), 4))
    n_gt = np.zeros(b, np.int64)
    for i, x in enumerate(gt_boxes):
        x = np.asarray(x, dtype=np.float64).reshape(-1, 4)
        gt[i, :len(x)] = x
        n_gt[i] = len(x)
    parts, top = contour_record_parts(s8, wsol_levels(s8), n_t, min_area=_min_box_areas(gt, n_gt, min(ious)))
    hits = jit.compiled("_record_hits")
    thresholds = np.array([d / 100.0 for d in ious])
    # The records' coverage counts add up, so a hit of any part is a hit (images without foreground
    # at t score the same box in every part).
    out = hits(parts[0], top, gt, n_gt, thresholds, b, n_t, W, H)
    for rec in parts[1:]:
        out |= hits(rec, top, gt, n_gt, thresholds, b, n_t, W, H)
    return out
