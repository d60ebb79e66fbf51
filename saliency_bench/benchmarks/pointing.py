"""The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
ECCV 2016, §4.1; PROTOCOLS.md §2).

A method points at the maximum of its heatmap, mapped to the original image size (bilinear
resize of the map, then argmax; ties -> the mean location of the tied maxima). It scores a
hit when some ground-truth pixel lies *strictly* within 15 px of the point (``d^2 < 15^2``).
Accuracy is computed per category, and the score is the mean over categories that have at
least one sample; a "difficult" subset (flag set by the dataset) is scored the same way.
Point methods (variable occlusion) return the point directly, in input pixels.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.contracts import HEATMAP, POINT, Benchmark, Sample

from .stats import bootstrap_ci


def heatmap_points(maps: np.ndarray, size: tuple[int, int], tie: str = "mean") -> np.ndarray:
    """Points ``[B,2]`` (x, y) of the maxima of ``maps [B,h,w]`` resized bilinearly to ``size``.

    ``tie="mean"``: the mean location of all pixels equal to the maximum (Zhang et al.'s
    code); ``tie="first"``: the first maximum in raster order (plain argmax).
    """
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))[:, None]
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    m = m[:, 0].reshape(m.shape[0], -1)
    w = int(size[1])
    if tie == "first":
        i = m.argmax(dim=1)
        return torch.stack([i % w, i // w], dim=1).double().numpy()
    if tie != "mean":
        raise ValueError(f"pointing: tie must be 'mean' or 'first', not {tie!r}")
    # Only the tied maxima are visited (usually one per map): sums of integer coordinates in float64
    # are exact, so the mean does not depend on the order they are added in.
    b, at = torch.nonzero(m == m.max(dim=1, keepdim=True).values, as_tuple=True)
    count = torch.bincount(b, minlength=m.shape[0]).double()
    x = torch.zeros(m.shape[0], dtype=torch.float64).index_add_(0, b, (at % w).double()) / count
    y = torch.zeros(m.shape[0], dtype=torch.float64).index_add_(0, b, torch.div(at, w, rounding_mode="floor").double())
    return torch.stack([x, y / count], dim=1).numpy()


def input_point_to_original(points: np.ndarray, input_size: tuple[int, int],
                            size: tuple[int, int]) -> np.ndarray:
    """Map (x, y) in network-input pixels to original pixels, pixel centres to pixel centres
    (the geometry of a whole-image resize with ``align_corners=False``)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    sx = size[1] / input_size[1]
    sy = size[0] / input_size[0]
    return np.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], axis=1)


def region_from_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The union of inclusive boxes as a bool mask of ``size`` (H, W)."""
    h, w = int(size[0]), int(size[1])
    mask = np.zeros((h, w), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        x1, y1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        x2, y2 = min(int(np.ceil(x2)), w - 1), min(int(np.ceil(y2)), h - 1)
        mask[y1:y2 + 1, x1:x2 + 1] = True
    return mask


def is_hit(point: tuple[float, float], region: np.ndarray, tolerance: float = 15.0) -> bool:
    """True when a pixel of ``region`` lies strictly within ``tolerance`` px of ``point``:
    ``(u - x)^2 + (v - y)^2 < tolerance^2`` (only the window around the point is examined)."""
    x, y = float(point[0]), float(point[1])
    h, w = region.shape
    r = int(np.ceil(tolerance))
    x0, x1 = max(int(np.floor(x)) - r, 0), min(int(np.ceil(x)) + r, w - 1)
    y0, y1 = max(int(np.floor(y)) - r, 0), min(int(np.ceil(y)) + r, h - 1)
    if x0 > x1 or y0 > y1:
        return False
    win = region[y0:y1 + 1, x0:x1 + 1]
    u = np.arange(x0, x1 + 1, dtype=np.float64) - x
    v = np.arange(y0, y1 + 1, dtype=np.float64) - y
    near = v[:, None] ** 2 + u[None, :] ** 2 < tolerance ** 2
    return bool((win & near).any())


def category_mean_accuracy(hits: np.ndarray, categories: Sequence[str]) -> tuple[float | None, int]:
    """Mean over categories of the per-category hit rate; also the number of categories used."""
    per = defaultdict(list)
    for h, c in zip(np.asarray(hits, dtype=np.float64), categories):
        per[c].append(h)
    if not per:
        return None, 0
    return float(np.mean([np.mean(v) for v in per.values()])), len(per)


def _category_mean_statistic(hits: np.ndarray, categories: Sequence[str]):
    """The per-category mean as a function of bootstrap weights ``[r, n]`` (for the CI)."""
    names, codes = np.unique(np.asarray(categories, dtype=object).astype(str), return_inverse=True)
    n = len(codes)
    onehot = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(names)))
    hit_onehot = sp.csr_matrix((np.asarray(hits, np.float64), (np.arange(n), codes)), shape=(n, len(names)))

    def stat(w: np.ndarray) -> np.ndarray:
        total = np.asarray((onehot.T @ w.T).T)
        good = np.asarray((hit_onehot.T @ w.T).T)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(total > 0, good / np.where(total > 0, total, 1), np.nan)
        return np.nanmean(acc, axis=1)

    return stat


@saliency_bench.benchmark("pointing")
class Pointing(Benchmark):
    """Pointing game: % of hits, mean over categories, for all and for difficult samples.

    Options: ``tolerance`` (15 px), ``tie`` ("mean" | "first"), ``bootstrap`` (1000 replicates;
    0 turns the interval off), ``seed`` (0).
    """

    name = "pointing"
    needs = ("mask",)
    accepts = (HEATMAP, POINT)
    columns = ("pointing_all", "pointing_difficult")

    @property
    def tolerance(self) -> float:
        return float(self.options.get("tolerance", 15.0))

    @property
    def tie(self) -> str:
        return str(self.options.get("tie", "mean"))

    def region(self, sample: Sample) -> np.ndarray:
        """Ground truth: the sample's mask if it has one, else the union of its boxes."""
        if sample.mask is not None:
            return np.asarray(sample.mask, dtype=bool)
        return region_from_boxes(sample.boxes, sample.size)

    def points(self, samples: Sequence[Sample], outputs: Sequence[np.ndarray],
               input_size: tuple[int, int]) -> np.ndarray:
        """The point of each output in original pixels; heatmaps of one original size are
        resized together."""
        pts = np.zeros((len(samples), 2))
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (s, o) in enumerate(zip(samples, outputs)):
            o = np.asarray(o)
            if o.ndim == 1:  # a point method: (x, y) in input pixels
                pts[i] = input_point_to_original(o, input_size, s.size)[0]
            else:
                groups[tuple(int(v) for v in s.size)].append(i)
        for size, idx in groups.items():
            pts[idx] = heatmap_points(np.stack([np.asarray(outputs[i], np.float32) for i in idx]), size, self.tie)
        return pts

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], [output], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        pts = self.points(samples, outputs, input_size)
        return [{"hit": int(is_hit(p, self.region(s), self.tolerance)),
                 "x": round(float(p[0]), 2), "y": round(float(p[1]), 2)} for s, p in zip(samples, pts)]

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self.options.get("bootstrap", 1000))
        seed = int(self.options.get("seed", 0))
        hits = np.array([r["hit"] for r in records], dtype=np.float64)
        cats = [str(s["category"]) for s in samples]
        difficult = np.array([bool((s.get("flags") or {}).get("difficult", False)) for s in samples], dtype=bool)
        out = {}
        for column, sel in (("pointing_all", np.ones(len(hits), bool)), ("pointing_difficult", difficult)):
            h = hits[sel]
            c = [cats[i] for i in np.flatnonzero(sel)]
            value, n_cat = category_mean_accuracy(h, c)
            ci = bootstrap_ci(_category_mean_statistic(h, c), len(h), replicates, seed) if len(h) else None
            out[column] = {
                "value": None if value is None else 100.0 * value,
                "ci": None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
                "n": int(len(h)), "unit": "%",
                "note": f"mean over {n_cat} categories; {int(len(h))} samples; tie={self.tie}, "
                        f"hit if d<{self.tolerance:g}px",
            }
        return out
