"""Weak localization (Fong & Vedaldi, ICCV 2017, §5 "Localization"), computed as the authors'
``getbb_from_heatmap`` and ``compute_overlap`` did for the published numbers; the benchmark also
reports MaxBoxAccV2 (:mod:`.maxboxacc`). docs/PROTOCOLS.md §3.

For each thresholding (``value``, ``energy``, ``mean``) and each alpha of its grid, at the map's
own resolution, the rejected pixels are set to 0; the kept map goes to the original size as
scipy's ``imresize`` did (bytescale to uint8, Pillow's bilinear resize); the box is the 1-based
tight box of all non-zero pixels (none: ``[1, 1, H, W]``), a hit at IoU >= 0.5 (+1 convention)
with a box of the class as annotated. alpha* is chosen on the held-out split. The resize is
emulated exactly and only where the box needs it, columns and rows whose byte bounds cannot
reach 1 skipped (:func:`saliency_bench.ops.pil_resize.kept_set_boxes`): no image is resized.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Column, Metric, Sample
from saliency_bench.ops.geometry import iou_voc, scale_boxes_wsol
from saliency_bench.ops.kept_order import order_and_counts
from saliency_bench.ops.pil_resize import kept_set_boxes

from .maxboxacc import WSOL_IOUS, WSOL_THRESHOLDS, maxboxacc_correct
from .stats import PerSample, bootstrap_ci, weighted_mean

THRESHOLDINGS = ("value", "energy", "mean")
DEFAULT_ALPHAS = {
    "value": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "energy": tuple(round(0.05 * i, 2) for i in range(20)),  # 0:0.05:0.95
    "mean": tuple(round(0.5 * i, 1) for i in range(21)),  # 0:0.5:10
}
_KIND_CODE = {"value": 0, "energy": 1, "mean": 2}


def _alpha_grid(alphas: dict[str, Sequence[float]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The thresholdings asked for, in order, and every (thresholding code, alpha) pair, flat."""
    for k in alphas:
        if k not in THRESHOLDINGS:
            raise ValueError(f"localization: thresholding must be one of {THRESHOLDINGS}, not {k!r}")
    kinds = [k for k in THRESHOLDINGS if k in alphas]
    codes = np.concatenate([np.full(len(alphas[k]), _KIND_CODE[k], np.int64) for k in kinds]) if kinds \
        else np.zeros(0, np.int64)
    a = np.concatenate([np.asarray(alphas[k], np.float64) for k in kinds]) if kinds else np.zeros(0)
    return kinds, codes, a


def _flat_boxes(heatmap: np.ndarray, size: tuple[int, int], codes: np.ndarray, a: np.ndarray) -> np.ndarray:
    """:func:`authors_boxes` for the flat grid of :func:`_alpha_grid`: ``[A,4]``."""
    m = np.ascontiguousarray(heatmap, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"authors_boxes: heatmap must be [h,w], not {m.shape}")
    order, counts = order_and_counts(m, codes, a)  # (the mean: NumPy's pairwise sum, as on their map)
    return kept_set_boxes(m, order, counts, size)


def authors_boxes(heatmap: np.ndarray, size: tuple[int, int], alphas: dict[str, Sequence[float]]
                  ) -> dict[str, np.ndarray]:
    """``getbb_from_heatmap(heatmap, alpha, method, resize=size, thres_first=True)`` for every
    thresholding and alpha: ``{kind: [A,4]}`` int64 boxes in the authors' 1-based coordinates
    (``[1, 1, H, W]`` when nothing is non-zero after the resize)."""
    kinds, codes, a = _alpha_grid(alphas)
    boxes = _flat_boxes(heatmap, size, codes, a)
    out, start = {}, 0
    for k in kinds:
        out[k] = boxes[start:start + len(alphas[k])]
        start += len(alphas[k])
    return out


def _ascii_bits(x: np.ndarray) -> np.ndarray:
    """``x`` (bool) as the bytes of "0" and "1"."""
    return np.where(np.asarray(x, dtype=bool), np.uint8(49), np.uint8(48))


def _bits(x: np.ndarray) -> str:
    return _ascii_bits(x).reshape(-1).tobytes().decode("ascii")


def _unbits(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), dtype=np.uint8) == ord("1")


def choose_alpha(correct_heldout: np.ndarray) -> int:
    """Index of alpha* = the alpha with the highest held-out accuracy (ties: the smallest)."""
    return int(np.argmax(np.asarray(correct_heldout, dtype=np.float64).mean(axis=0)))


@saliency_bench.benchmark("localization")
class Localization(Benchmark):
    """Weak localization error (value, energy, mean thresholding at alpha*) and MaxBoxAccV2.

    Options: ``alphas`` (dict per thresholding, docs/PROTOCOLS.md §3 grids), ``iou`` (0.5),
    ``heldout`` ("split": alpha* on the held-out split, or, when a dataset has none, on a
    seeded half of the samples with the error on the other half; "oracle": alpha* on the
    evaluation samples themselves, labelled so), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "localization"
    needs = ("boxes", "single_class")  # one labelled object class per image, with its boxes
    accepts = (HEATMAP,)
    columns = (Column("loc_error_value", "Loc. error value (%)", "Loc.val", "%", lower_is_better=True),
               Column("loc_error_energy", "Loc. error energy (%)", "Loc.en", "%", lower_is_better=True),
               Column("loc_error_mean", "Loc. error mean (%)", "Loc.mean", "%", lower_is_better=True),
               Column("maxboxacc_v2", "MaxBoxAccV2 (%)", "MaxBox", "%"))
    defaults: dict[str, Any] = {"alphas": DEFAULT_ALPHAS, "iou": 0.5, "heldout": "split", "bootstrap": 1000,
                                "seed": 0}

    def compiled_kernels(self, device) -> tuple[str, ...]:
        """The modules whose numba kernels scoring calls (the runner says when they still have to be
        compiled on this machine)."""
        return ("saliency_bench.ops.kept_order", "saliency_bench.ops.pil_resize", "saliency_bench.ops.contour_runs",
                "saliency_bench.ops.contour_pixels", "saliency_bench.benchmarks.maxboxacc")

    def alphas(self, kind: str) -> tuple[float, ...]:
        return tuple((self.option("alphas") or {}).get(kind, DEFAULT_ALPHAS[kind]))

    def protocol(self) -> dict[str, str]:
        iou = float(self.option("iou"))
        tail = (f"at the map's own resolution, then the authors' imresize (bytescale to uint8, PIL bilinear "
                f"to the original size), box of all non-zero pixels (1-based; none: [1, 1, H, W]), "
                f"hit at IoU>={iou:g} (+1) with a box as annotated; alpha* on the held-out split")
        return {
            "loc_error_value": "value thresholding (h - min >= alpha (max - min)) " + tail,
            "loc_error_energy": "energy thresholding (the top pixels holding alpha of the sum; ties in raster "
                                "order) " + tail,
            "loc_error_mean": "mean thresholding (h >= alpha mean) " + tail,
            "maxboxacc_v2": "wsolevaluation: OpenCV bicubic resize to the input size, min-max to uint8, "
                            "t in 0:0.01:0.99, a box per findContours(RETR_TREE) contour (regions and holes), "
                            "GT boxes by resize_bbox; mean over IoU 0.3/0.5/0.7 of the accuracy at the best t",
        }

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], np.asarray(output)[None], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        maps = outputs if isinstance(outputs, np.ndarray) and outputs.dtype == np.float32 and outputs.ndim == 3 \
            else np.stack([np.asarray(o, dtype=np.float32) for o in outputs])  # (read only: no copy needed)
        iou = float(self.option("iou"))
        alphas = {kind: self.alphas(kind) for kind in THRESHOLDINGS}
        gt = [scale_boxes_wsol(s.boxes, s.size, input_size) for s in samples]
        mba = maxboxacc_correct(maps, gt, input_size)
        kinds, codes, a = _alpha_grid(alphas)
        ends = np.cumsum([len(alphas[k]) for k in kinds]).tolist()
        spans = list(zip(kinds, [0, *ends[:-1]], ends))
        if not len(samples):
            return []
        boxes = np.stack([_flat_boxes(maps[i], s.size, codes, a) for i, s in enumerate(samples)])  # [B,A,4]
        # Every sample's boxes against its ground truth in one call; a sample with fewer boxes is
        # padded with [0, 0, -1, 0], which has no area and meets no box (IoU 0, the IoU a sample
        # without boxes gets): the best IoU of each row is that of best_iou on its own boxes.
        gts = [np.asarray(s.boxes, np.float64).reshape(-1, 4) for s in samples]
        gt = np.tile(np.array([0.0, 0.0, -1.0, 0.0]), (len(samples), max(1, *map(len, gts)), 1))
        for i, g in enumerate(gts):
            gt[i, :len(g)] = g
        hits = _ascii_bits(iou_voc(boxes[:, :, None, :], gt[:, None, :, :]).max(axis=-1) >= iou)  # [B,A]
        mba_bits = _ascii_bits(mba)  # [B,3,T]
        records: list[dict] = []
        for i in range(len(samples)):
            rec = {k: hits[i, s0:s1].tobytes().decode("ascii") for k, s0, s1 in spans}
            for k, d in enumerate(WSOL_IOUS):
                rec[f"mba{d}"] = mba_bits[i, k].tobytes().decode("ascii")
            records.append(rec)
        return records

    def _splits(self, samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """(samples alpha* is chosen on, samples the error is reported on, the evaluation split,
        how alpha* was chosen)."""
        seed = int(self.option("seed"))
        mode = str(self.option("heldout"))
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
        return choose, report, evals, how

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, PerSample]:
        """Localization error (100: missed, 0: correct) of each reported sample at the method's own
        alpha* (chosen as :meth:`summarize` chooses it); MaxBoxAccV2: the mean over IoU 0.3/0.5/0.7
        of "a box at that IoU's best threshold is correct", 100 x."""
        choose, report, evals, _ = self._splits(samples)
        ids = np.array([str(s["id"]) for s in samples], dtype=object)
        out: dict[str, PerSample] = {}
        for kind in THRESHOLDINGS:
            alphas = self.alphas(kind)
            if choose.any() and report.any():
                c = np.array([_unbits(r[kind]) for r in records], dtype=bool).reshape(len(records), len(alphas))
                k = choose_alpha(c[choose])
                out[f"loc_error_{kind}"] = PerSample(tuple(ids[report]), 100.0 * (1.0 - c[report, k]))
        use = evals if evals.any() else np.ones(len(samples), bool)
        if use.any():
            m = np.array([[_unbits(r[f"mba{d}"]) for d in WSOL_IOUS] for r in records], dtype=np.float64)
            m = m.reshape(len(records), len(WSOL_IOUS), -1)[use]
            best_t = m.mean(axis=0).argmax(axis=1)  # [3]: each IoU's best threshold, as summarize picks it
            per = m[:, np.arange(len(WSOL_IOUS)), best_t].mean(axis=1)
            out["maxboxacc_v2"] = PerSample(tuple(ids[use]), 100.0 * per)
        return out

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self.option("bootstrap"))
        seed = int(self.option("seed"))
        choose, report, evals, how = self._splits(samples)
        out: dict[str, dict] = {}
        for kind in THRESHOLDINGS:
            alphas = self.alphas(kind)
            c = np.array([_unbits(r[kind]) for r in records], dtype=bool).reshape(len(records), len(alphas))
            n = int(report.sum())
            if not choose.any() or n == 0:
                out[f"loc_error_{kind}"] = Metric.empty("not enough samples to choose alpha* and report", n, "%")
                continue
            k = choose_alpha(c[choose])
            hit = c[report, k].astype(np.float64)
            ci = bootstrap_ci(weighted_mean(hit), n, replicates, seed)
            out[f"loc_error_{kind}"] = Metric(float(100.0 * (1.0 - hit.mean())),
                                              None if ci is None else [100.0 * (1 - ci[1]), 100.0 * (1 - ci[0])],
                                              n, "%", f"alpha*={alphas[k]:g} ({how})")
        use = evals if evals.any() else np.ones(len(samples), bool)
        m = np.array([[_unbits(r[f"mba{d}"]) for d in WSOL_IOUS] for r in records], dtype=np.float64)
        m = m.reshape(len(records), len(WSOL_IOUS), -1)[use]
        n = len(m)
        if n == 0:
            out["maxboxacc_v2"] = Metric.empty("no samples", 0, "%")
            return out
        acc = m.mean(axis=0)  # [3, T]
        best = acc.max(axis=1)
        flat = m.reshape(n, -1)

        def stat(w: np.ndarray) -> np.ndarray:
            a = (w @ flat / w.sum(axis=1, keepdims=True)).reshape(len(w), len(WSOL_IOUS), -1)
            return a.max(axis=2).mean(axis=1)

        ci = bootstrap_ci(stat, n, replicates, seed)
        out["maxboxacc_v2"] = Metric(100.0 * float(best.mean()), None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
                                     n, "%", "mean over IoU 0.3/0.5/0.7 of " + ", ".join(
                                         f"{b * 100:.1f} (t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f})"
                                         for k, b in enumerate(best)))
        for k, d in enumerate(WSOL_IOUS):  # beside the columns, in the files
            out[f"maxboxacc_v2_iou{d}"] = Metric(100.0 * float(best[k]), None, n, "%",
                                                 f"best threshold t={WSOL_THRESHOLDS[acc[k].argmax()]:.2f}")
        return out
