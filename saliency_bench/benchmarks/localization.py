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

Speed: every alpha of a thresholding is answered from per-row/column extremes of the map (and,
for energy, one sort); the 100 MaxBoxAccV2 thresholds come from one sweep of the map's component
tree (:func:`~saliency_bench.benchmarks.boxes.component_box_records`), not from 100 labellings.
The loops are compiled with numba at first use.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Sample

from .boxes import best_iou, boxes_from_lines, compiled, component_record_rows, kernel, \
    resize_boxes_through_footprint, scale_boxes_wsol
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
def _masked_extremes(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``[B,H]`` and per column ``[B,W]``: the largest non-zero value (``-inf`` if none),
    in float64. A row holds a kept pixel for a threshold ``thr`` iff its extreme passes it, so a
    tight box needs these ``H + W`` numbers per map, not a ``[B,A,H,W]`` mask."""
    m = np.where(maps == 0, np.float32(-np.inf), maps)
    return m.max(axis=2).astype(np.float64), m.max(axis=1).astype(np.float64)


@kernel
def _energy_boxes(maps, desc, totals, alphas, row_max, col_max):  # pragma: no cover - numba
    """Energy thresholding's tight boxes ``[B,A,4]`` (``-1`` rows: empty) from the values sorted in
    descending order ``desc [B,N]`` (float32) and the float64 ``totals [B]``.

    Position ``i`` (first where the float64 cumulative sum reaches ``alpha * total``) keeps the
    pixels ranked ``< i``: all values above ``v = desc[i-1]``, and, of the pixels equal to ``v``,
    the first ``i - #(> v)`` in raster order (a stable sort). Zeros are never kept.
    """
    n_img, h, w = maps.shape
    n = h * w
    n_a = alphas.shape[0]
    out = np.full((n_img, n_a, 4), -1, np.int64)
    reach = np.empty(n, np.float64)
    for b in range(n_img):
        run = 0.0
        top = -np.inf
        for k in range(n):  # running maximum of the cumulative sum: a sorted array to search
            run += np.float64(desc[b, k])
            top = max(top, run)
            reach[k] = top
        for a in range(n_a):
            thr = alphas[a] * totals[b]
            lo, hi = 0, n  # first k with reach[k] >= thr (n if never: every pixel is kept)
            while lo < hi:
                mid = (lo + hi) // 2
                if reach[mid] >= thr:
                    hi = mid
                else:
                    lo = mid + 1
            i = lo
            if i == 0:
                continue
            v = np.float64(desc[b, i - 1])
            lo, hi = 0, n  # #(> v): first k with desc[k] <= v
            while lo < hi:
                mid = (lo + hi) // 2
                if desc[b, mid] <= v:
                    hi = mid
                else:
                    lo = mid + 1
            above = lo
            lo, hi = above, n  # #(>= v): first k with desc[k] < v
            while lo < hi:
                mid = (lo + hi) // 2
                if desc[b, mid] < v:
                    hi = mid
                else:
                    lo = mid + 1
            ties = i - above  # >= 1 pixels equal to v are kept
            x0, y0, x1, y1 = w, h, -1, -1
            if v == 0.0 or ties == lo - above:
                # all kept pixels are the non-zero ones > v (v == 0) or >= v (every tie kept)
                strict = v == 0.0
                for y in range(h):
                    if row_max[b, y] > v or (not strict and row_max[b, y] == v):
                        y0 = min(y0, y)
                        y1 = y
                for x in range(w):
                    if col_max[b, x] > v or (not strict and col_max[b, x] == v):
                        x0 = min(x0, x)
                        x1 = x
            else:
                # some ties are cut: the > v part from the extremes, then the first ties in raster order
                for y in range(h):
                    if row_max[b, y] > v:
                        y0 = min(y0, y)
                        y1 = y
                for x in range(w):
                    if col_max[b, x] > v:
                        x0 = min(x0, x)
                        x1 = x
                left = ties
                for y in range(h):
                    if left == 0:
                        break
                    for x in range(w):
                        if maps[b, y, x] == v:
                            x0 = min(x0, x)
                            x1 = max(x1, x)
                            y0 = min(y0, y)
                            y1 = max(y1, y)
                            left -= 1
                            if left == 0:
                                break
            if y1 >= 0:
                out[b, a, 0] = x0
                out[b, a, 1] = y0
                out[b, a, 2] = x1
                out[b, a, 3] = y1
    return out


def threshold_boxes(maps: np.ndarray, kind: str, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes ``[B,A,4]`` of the kept pixels at network resolution, and ``empty [B,A]``.

    ``value``: keep ``h - min(h) >= alpha * (max(h) - min(h))``; ``mean``: keep
    ``h >= alpha * mean(h)``; ``energy``: keep the first ``i`` pixels in descending order, ``i``
    the first position where the cumulative sum reaches ``alpha * sum(h)`` (ties in raster
    order). A pixel whose value is 0 is never kept. Arithmetic is float64, as the authors'
    code on a float64 map; only per-row/column extremes are compared against the thresholds.
    """
    h = np.ascontiguousarray(maps, dtype=np.float32)
    b = len(h)
    a = np.asarray(alphas, dtype=np.float64)
    if kind not in THRESHOLDINGS:
        raise ValueError(f"localization: thresholding must be one of {THRESHOLDINGS}, not {kind!r}")
    row_max, col_max = _masked_extremes(h)
    flat = h.reshape(b, -1)
    if kind == "energy":
        desc = np.ascontiguousarray(np.sort(flat, axis=1)[:, ::-1])
        totals = flat.astype(np.float64).sum(axis=1)
        boxes = compiled("_energy_boxes")(h, desc, totals, a, row_max, col_max)
        empty = boxes[..., 3] < 0
        boxes[empty] = 0
        return boxes, empty
    if kind == "value":
        lo = flat.min(axis=1).astype(np.float64)[:, None]
        thr = a[None, :] * (flat.max(axis=1).astype(np.float64)[:, None] - lo)  # [B,A]
        row_v, col_v = row_max - lo, col_max - lo  # exact: subtracting a constant keeps the order
    else:
        thr = a[None, :] * flat.astype(np.float64).mean(axis=1)[:, None]
        row_v, col_v = row_max, col_max
    boxes, empty = boxes_from_lines(row_v[:, None, :] >= thr[:, :, None], col_v[:, None, :] >= thr[:, :, None])
    boxes[empty] = 0
    return boxes, empty


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
def wsol_quantise(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """wsolevaluation's ``normalize_scoremap`` then ``compute_bboxes_from_scoremaps`` thresholds:
    the uint8 maps ``[B,H,W]`` (min-max normalised, a constant map becomes all zeros, then
    ``uint8(s * 255)``) and, per image, how many thresholds each uint8 value passes
    (``[B,256]``; foreground at ``t`` is ``> int(t * max)``)."""
    s = np.asarray(maps, dtype=np.float32)
    lo = s.min(axis=(1, 2), keepdims=True)
    s = s - lo
    hi = s.max(axis=(1, 2), keepdims=True)
    s = np.divide(s, hi, out=np.zeros_like(s), where=hi > 0)
    s8 = (s * 255).astype(np.uint8)
    top = s8.reshape(len(s8), -1).max(axis=1)
    thr = (WSOL_THRESHOLDS[None, :] * top[:, None].astype(np.float64)).astype(np.int64)  # int(t * max), [B,T]
    # thresholds are non-decreasing in t: the count a value passes is a table of 256 entries
    lut = (thr[:, None, :] < np.arange(256)[None, :, None]).sum(axis=2).astype(np.int32)  # [B,256]
    return s8, lut


@kernel
def _record_hits(rec, gt, n_gt, ious, n_img, n_t, w, h):  # pragma: no cover - compiled by numba
    """``[B,K,T]``: at threshold index ``t``, does some region of image ``b`` have a box with IoU
    >= ``ious[k]`` (VOC, +1) with one of its ``n_gt[b]`` boxes ``gt[b]``? A threshold with no
    region scores wsolevaluation's box ``(0, 0, 0, 0)``. Records are ``(image, x1, y1, x2, y2, lo,
    hi)``; boxes become ``boundingRect``'s ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``."""
    n_k = ious.shape[0]
    regions = np.zeros((n_img, n_t + 1), np.int64)
    hits = np.zeros((n_img, n_k, n_t + 1), np.int64)
    for r in range(rec.shape[0]):
        b = rec[r, 0]
        x0 = np.float64(rec[r, 1])
        y0 = np.float64(rec[r, 2])
        x1 = np.float64(min(rec[r, 3] + 1, w - 1))
        y1 = np.float64(min(rec[r, 4] + 1, h - 1))
        lo = rec[r, 5]
        hi = rec[r, 6]
        regions[b, lo] += 1
        regions[b, hi + 1] -= 1
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
        have = 0
        run = np.zeros(n_k, np.int64)
        for t in range(n_t):
            have += regions[b, t]
            for k in range(n_k):
                run[k] += hits[b, k, t]
                out[b, k, t] = run[k] > 0 if have > 0 else none >= ious[k]
    return out


def maxboxacc_correct(maps: np.ndarray, gt_boxes: Sequence[np.ndarray],
                      ious: Sequence[int] = WSOL_IOUS) -> np.ndarray:
    """``[B, len(ious), 100]`` bool: is sample ``b`` correct at IoU ``ious[k]/100`` and threshold ``t``.

    ``gt_boxes[b]`` are sample ``b``'s ground-truth boxes at the map's resolution.
    """
    maps = np.asarray(maps)
    b, H, W = maps.shape
    n_t = len(WSOL_THRESHOLDS)
    rec = component_record_rows(*wsol_quantise(maps), n_t)
    g = max((len(np.asarray(x).reshape(-1, 4)) for x in gt_boxes), default=0)
    gt = np.zeros((b, max(g, 1), 4))
    n_gt = np.zeros(b, np.int64)
    for i, x in enumerate(gt_boxes):
        x = np.asarray(x, dtype=np.float64).reshape(-1, 4)
        gt[i, :len(x)] = x
        n_gt[i] = len(x)
    return compiled("_record_hits")(rec, gt, n_gt, np.array([d / 100.0 for d in ious]), b, n_t, W, H)


def _bits(x: np.ndarray) -> str:
    return np.where(np.asarray(x, dtype=bool).reshape(-1), np.uint8(49), np.uint8(48)).tobytes().decode("ascii")


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
        per_kind = [threshold_boxes(maps, kind, self.alphas(kind)) for kind in THRESHOLDINGS]
        boxes = np.concatenate([bx for bx, _ in per_kind], axis=1)  # [B, sum of A, 4]
        empty = np.concatenate([e for _, e in per_kind], axis=1)
        cuts = np.cumsum([e.shape[1] for _, e in per_kind])[:-1]
        gt = [scale_boxes_wsol(s.boxes, s.size, input_size) for s in samples]
        mba = maxboxacc_correct(maps, gt)
        records: list[dict] = []
        for i, s in enumerate(samples):
            hit = best_iou(original_boxes(boxes[i], empty[i], input_size, s.size), s.boxes) >= iou
            rec = {kind: _bits(h) for kind, h in zip(THRESHOLDINGS, np.split(hit, cuts))}
            for k, d in enumerate(WSOL_IOUS):
                rec[f"mba{d}"] = _bits(mba[i, k])
            records.append(rec)
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
