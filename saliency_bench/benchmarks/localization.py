"""Weak localization (Fong & Vedaldi, ICCV 2017, §5 "Localization"; PROTOCOLS.md §3) and
MaxBoxAccV2 (Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right",
CVPR 2020, §4.1).

Fong & Vedaldi: threshold the heatmap ``h`` at network resolution (value, energy or mean
thresholding, each over its alpha grid, as their ``getbb_from_heatmap``), resize the kept map
to the original image size, box **all** its non-zero pixels (no kept pixel -> the whole image)
and count a hit when the IoU (VOC, +1) with some ground-truth box is >= 0.5. alpha* is chosen
per thresholding on the held-out split; the error is reported on the evaluation split.

MaxBoxAccV2, as wsolevaluation computes it: min-max normalise the map, quantise it to uint8,
and for each ``t`` in ``0:0.01:0.99`` keep the pixels ``> int(t * max)``; every 8-connected
region's box is a candidate (multi-contour); a sample is correct at ``t`` when some candidate
has IoU >= delta with some ground-truth box; the score per delta in {0.3, 0.5, 0.7} is the
accuracy at the best ``t``, and MaxBoxAccV2 is their mean. Like wsolevaluation, this works at
the network input size (224x224), with ground-truth boxes scaled to it by truncation
(``resize_bbox``) and candidate boxes ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` from
OpenCV's ``boundingRect``. Where wsolevaluation's ``RETR_TREE`` also returns the borders of
holes as contours, we take the connected regions only, as PROTOCOLS.md §3 words it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Sample

from .boxes import best_iou, component_box_records, iou_voc, resize_boxes_through_footprint, \
    scale_boxes_wsol, tight_boxes
from .stats import bootstrap_ci, weighted_mean

THRESHOLDINGS = ("value", "energy", "mean")
DEFAULT_ALPHAS = {
    "value": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "energy": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "mean": tuple(round(0.5 * i, 1) for i in range(21)),  # 0:0.5:10
}
WSOL_THRESHOLDS = np.arange(0, 1, 0.01)  # wsolevaluation's cam_curve_interval = 0.01
WSOL_IOUS = (30, 50, 70)


# --------------------------------------------------------------------------------------------
# Fong & Vedaldi thresholding: boxes for every alpha at once.
# --------------------------------------------------------------------------------------------
def kept_extents(maps: np.ndarray, kind: str, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Which rows and columns hold a kept pixel, for every alpha: ``rows [B,A,H]``, ``cols [B,A,W]``.

    ``value``: keep ``h - min(h) >= alpha * (max(h) - min(h))``; ``mean``: keep
    ``h >= alpha * mean(h)``; ``energy``: keep the first ``i`` pixels in descending order, ``i``
    the first position where the cumulative sum reaches ``alpha * sum(h)`` (ties in raster
    order). A pixel whose value is 0 is never kept. Only the per-row/column extremes are
    needed for a tight box, so no ``[B,A,H,W]`` mask is built.
    """
    h = torch.as_tensor(np.asarray(maps), dtype=torch.float64)
    b, H, W = h.shape
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float64))[None, :]  # [1,A]
    flat = h.reshape(b, -1)
    zero = flat == 0
    if kind in ("value", "mean"):
        if kind == "value":
            lo = flat.min(dim=1, keepdim=True).values
            v = flat - lo
            thr = a * (flat.max(dim=1, keepdim=True).values - lo)  # [B,A]
        else:
            v = flat
            thr = a * flat.mean(dim=1, keepdim=True)
        v = v.masked_fill(zero, float("-inf")).reshape(b, H, W)
        rows = v.amax(dim=2)[:, None, :] >= thr[:, :, None]
        cols = v.amax(dim=1)[:, None, :] >= thr[:, :, None]
    elif kind == "energy":
        order = torch.sort(flat, dim=1, descending=True, stable=True)
        cum = torch.cumsum(order.values, dim=1)
        # first index where cum >= thr; cummax makes it a sorted search even with negative values
        reach = torch.cummax(cum, dim=1).values
        thr = a * flat.sum(dim=1, keepdim=True)  # [B,A]
        first = torch.searchsorted(reach.contiguous(), thr.contiguous(), side="left")  # [B,A], N if never
        rank = torch.empty_like(order.indices)
        rank.scatter_(1, order.indices, torch.arange(flat.shape[1]).expand(b, -1))
        rank = rank.masked_fill(zero, flat.shape[1]).reshape(b, H, W)  # zeros never kept
        rows = rank.amin(dim=2)[:, None, :] < first[:, :, None]
        cols = rank.amin(dim=1)[:, None, :] < first[:, :, None]
    else:
        raise ValueError(f"localization: thresholding must be one of {THRESHOLDINGS}, not {kind!r}")
    return rows.numpy(), cols.numpy()


def threshold_boxes(maps: np.ndarray, kind: str, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes ``[B,A,4]`` of the kept pixels at network resolution, and ``empty [B,A]``."""
    rows, cols = kept_extents(maps, kind, alphas)
    H, W = rows.shape[-1], cols.shape[-1]
    empty = ~rows.any(axis=-1)
    y1 = rows.argmax(axis=-1)
    y2 = H - 1 - rows[..., ::-1].argmax(axis=-1)
    x1 = cols.argmax(axis=-1)
    x2 = W - 1 - cols[..., ::-1].argmax(axis=-1)
    return np.stack([x1, y1, x2, y2], axis=-1), empty


def original_boxes(boxes: np.ndarray, empty: np.ndarray, input_size: tuple[int, int],
                   size: tuple[int, int]) -> np.ndarray:
    """Boxes of the kept map after its bilinear resize to the original ``size``; an empty
    selection is the whole image."""
    out = resize_boxes_through_footprint(boxes, input_size, size)
    out[empty] = np.array([0, 0, size[1] - 1, size[0] - 1])
    return out


# --------------------------------------------------------------------------------------------
# MaxBoxAccV2
# --------------------------------------------------------------------------------------------
def wsol_levels(maps: np.ndarray) -> np.ndarray:
    """Per pixel, how many of wsolevaluation's thresholds it passes (``[B,H,W]`` in 0..100).

    As ``normalize_scoremap`` then ``compute_bboxes_from_scoremaps``: min-max normalise
    (a constant map becomes all zeros), ``uint8(s * 255)``, foreground ``> int(t * max)``.
    """
    s = np.asarray(maps, dtype=np.float32)
    lo = s.min(axis=(1, 2), keepdims=True)
    s = s - lo
    hi = s.max(axis=(1, 2), keepdims=True)
    s = np.divide(s, hi, out=np.zeros_like(s), where=hi > 0)
    s8 = (s * 255).astype(np.uint8)
    top = s8.reshape(len(s8), -1).max(axis=1)
    thr = np.array([[int(t * m) for t in WSOL_THRESHOLDS] for m in top], dtype=np.int64)  # [B,T]
    # thresholds are non-decreasing in t: the count passed is a sorted search per image
    return np.stack([np.searchsorted(thr[i], s8[i].astype(np.int64), side="left") for i in range(len(s8))])


def maxboxacc_correct(maps: np.ndarray, gt_boxes: Sequence[np.ndarray],
                      ious: Sequence[int] = WSOL_IOUS) -> np.ndarray:
    """``[B, len(ious), 100]`` bool: is sample ``b`` correct at IoU ``ious[k]/100`` and threshold ``t``.

    ``gt_boxes[b]`` are sample ``b``'s ground-truth boxes at the map's resolution.
    """
    maps = np.asarray(maps)
    b, H, W = maps.shape
    n_t = len(WSOL_THRESHOLDS)
    rec = component_box_records(wsol_levels(maps), n_t)
    box = rec["box"].copy()
    box[:, 2] = np.minimum(box[:, 2] + 1, W - 1)  # boundingRect's x + w, clipped as wsolevaluation
    box[:, 3] = np.minimum(box[:, 3] + 1, H - 1)
    g = max((len(x) for x in gt_boxes), default=0)
    gt = np.full((b, max(g, 1), 4), -1.0)
    valid = np.zeros((b, max(g, 1)), bool)
    for i, x in enumerate(gt_boxes):
        gt[i, :len(x)] = np.asarray(x, dtype=np.float64).reshape(-1, 4)
        valid[i, :len(x)] = True
    iou = np.where(valid[rec["image"]], iou_voc(box[:, None, :], gt[rec["image"]]), 0.0).max(axis=1)
    # thresholds at which an image has no region: wsolevaluation's box (0, 0, 0, 0)
    none_iou = np.where(valid, iou_voc(np.zeros(4)[None, None, :], gt), 0.0).max(axis=1)  # [B]
    cover = np.zeros((b, n_t + 1), np.int64)
    np.add.at(cover, (rec["image"], rec["lo"]), 1)
    np.add.at(cover, (rec["image"], rec["hi"] + 1), -1)
    has_region = np.cumsum(cover, axis=1)[:, :n_t] > 0
    out = np.zeros((b, len(ious), n_t), bool)
    for k, d in enumerate(ious):
        ok = iou >= d / 100.0
        diff = np.zeros((b, n_t + 1), np.int64)
        np.add.at(diff, (rec["image"][ok], rec["lo"][ok]), 1)
        np.add.at(diff, (rec["image"][ok], rec["hi"][ok] + 1), -1)
        hit = np.cumsum(diff, axis=1)[:, :n_t] > 0
        out[:, k] = np.where(has_region, hit, (none_iou >= d / 100.0)[:, None])
    return out


def _bits(x: np.ndarray) -> str:
    return "".join("1" if v else "0" for v in np.asarray(x).reshape(-1))


def _unbits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) == ord("1")


def choose_alpha(correct_heldout: np.ndarray) -> int:
    """Index of alpha* = the alpha with the highest held-out accuracy (ties: the smallest)."""
    return int(np.argmax(np.asarray(correct_heldout, dtype=np.float64).mean(axis=0)))


@saliency_bench.benchmark("localization")
class Localization(Benchmark):
    """Weak localization error (value, energy, mean thresholding at alpha*) and MaxBoxAccV2.

    Options: ``alphas`` (dict per thresholding, PROTOCOLS.md §3 grids), ``iou`` (0.5),
    ``heldout`` ("split": alpha* on the held-out split, or, when a dataset has none, on a
    seeded half of the samples with the error on the other half; "oracle": alpha* on the
    evaluation samples themselves, labelled so), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "localization"
    needs = ("boxes",)
    accepts = (HEATMAP,)
    columns = ("loc_error_value", "loc_error_energy", "loc_error_mean", "maxboxacc_v2")

    def alphas(self, kind: str) -> tuple[float, ...]:
        return tuple((self.options.get("alphas") or {}).get(kind, DEFAULT_ALPHAS[kind]))

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], np.asarray(output)[None], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        maps = np.stack([np.asarray(o, dtype=np.float32) for o in outputs])
        iou = float(self.options.get("iou", 0.5))
        records: list[dict] = [{} for _ in samples]
        for kind in THRESHOLDINGS:
            boxes, empty = threshold_boxes(maps, kind, self.alphas(kind))
            for i, s in enumerate(samples):
                ob = original_boxes(boxes[i], empty[i], input_size, s.size)
                records[i][kind] = _bits(best_iou(ob, s.boxes) >= iou)
        gt = [scale_boxes_wsol(s.boxes, s.size, input_size) for s in samples]
        mba = maxboxacc_correct(maps, gt)
        for i in range(len(samples)):
            for k, d in enumerate(WSOL_IOUS):
                records[i][f"mba{d}"] = _bits(mba[i, k])
        return records

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self.options.get("bootstrap", 1000))
        seed = int(self.options.get("seed", 0))
        mode = str(self.options.get("heldout", "split"))
        split = np.array([str(s.get("split", "eval")) for s in samples])
        held = split == "heldout"
        evals = split == "eval"
        if mode == "oracle":
            choose, report, how = evals, evals, "oracle: alpha* chosen on the evaluation samples"
        elif held.any():
            choose, report, how = held, evals, f"alpha* on {int(held.sum())} held-out samples"
        else:
            perm = np.random.default_rng(seed).permutation(np.flatnonzero(evals))
            choose = np.zeros(len(samples), bool); choose[perm[: len(perm) // 2]] = True
            report = evals & ~choose
            how = f"no held-out split: alpha* on a seeded half ({int(choose.sum())}), error on the other half"
        out: dict[str, dict] = {}
        for kind in THRESHOLDINGS:
            alphas = self.alphas(kind)
            c = np.array([_unbits(r[kind]) for r in records], dtype=bool).reshape(len(records), len(alphas))
            n = int(report.sum())
            if not choose.any() or n == 0:
                out[f"loc_error_{kind}"] = {"value": None, "ci": None, "n": n, "unit": "%",
                                            "note": "not enough samples to choose alpha* and report"}
                continue
            k = choose_alpha(c[choose])
            hit = c[report, k].astype(np.float64)
            ci = bootstrap_ci(weighted_mean(hit), n, replicates, seed)
            out[f"loc_error_{kind}"] = {
                "value": float(100.0 * (1.0 - hit.mean())),
                "ci": None if ci is None else [100.0 * (1 - ci[1]), 100.0 * (1 - ci[0])],
                "n": n, "unit": "%", "note": f"alpha*={alphas[k]:g} ({how})",
            }
        use = evals if evals.any() else np.ones(len(samples), bool)
        m = np.array([[_unbits(r[f"mba{d}"]) for d in WSOL_IOUS] for r in records], dtype=np.float64)
        m = m.reshape(len(records), len(WSOL_IOUS), -1)[use]
        n = len(m)
        if n == 0:
            out["maxboxacc_v2"] = {"value": None, "ci": None, "n": 0, "unit": "%", "note": "no samples"}
            return out
        acc = m.mean(axis=0)  # [3, T]
        best = acc.max(axis=1)
        flat = m.reshape(n, -1)

        def stat(w: np.ndarray) -> np.ndarray:
            a = (w @ flat / w.sum(axis=1, keepdims=True)).reshape(len(w), len(WSOL_IOUS), -1)
            return a.max(axis=2).mean(axis=1)

        ci = bootstrap_ci(stat, n, replicates, seed)
        out["maxboxacc_v2"] = {
            "value": 100.0 * float(best.mean()),
            "ci": None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
            "n": n, "unit": "%",
            "note": "mean over IoU 0.3/0.5/0.7 of " + ", ".join(
                f"{b * 100:.1f} (t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f})" for k, b in enumerate(best)),
        }
        for k, d in enumerate(WSOL_IOUS):
            out[f"maxboxacc_v2_iou{d}"] = {"value": 100.0 * float(best[k]), "ci": None, "n": n, "unit": "%",
                                           "note": f"best threshold t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f}"}
        return out
