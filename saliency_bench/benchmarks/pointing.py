"""The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop",
ECCV 2016, §4.1; docs/PROTOCOLS.md §2).

A method points at the maximum of its heatmap (ties: the mean location of the tied maxima, or
plain argmax with ``tie="first"``); a hit is a ground-truth pixel strictly within 15 px
(``d^2 < 15^2``). Accuracy per category, then the mean over categories, for all and for the
difficult samples. ``resolution``: ``original`` (the map resized bilinearly to the original
image, as Zhang et al.'s and TorchRay's code) or ``input`` (map and ground truth at the network
input, the region sampled nearest at pixel centres, as Fong & Vedaldi describe). Point methods
give their point in input pixels, mapped to the original for ``original``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

import saliency_bench
from saliency_bench.contracts import HEATMAP, POINT, Benchmark, Column, Metric, Sample
from saliency_bench.ops.resize import resize_map

from .stats import PerSample, bootstrap_ci


def heatmap_points(maps: np.ndarray, size: tuple[int, int], tie: str = "mean") -> np.ndarray:
    """Points ``[B,2]`` (x, y) of the maxima of ``maps [B,h,w]`` resized bilinearly to ``size``.

    ``tie="mean"``: the mean location of all pixels equal to the maximum (Zhang et al.'s
    code); ``tie="first"``: the first maximum in raster order (plain argmax).
    """
    m = resize_map(maps, size, reference="torchray")
    m = m.reshape(m.shape[0], -1)
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


def nearest_rows(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` output pixels, the input pixel under its centre:
    ``floor((i + 1/2) n_in / n_out)``, in exact integer arithmetic (torch's ``nearest-exact``)."""
    i = np.arange(int(n_out), dtype=np.int64)
    return np.minimum((2 * i + 1) * int(n_in) // (2 * int(n_out)), int(n_in) - 1)


def region_to_size(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool region resampled to ``size`` (H, W) by nearest neighbour at pixel centres."""
    region = np.asarray(region, dtype=bool)
    if region.shape == tuple(size):
        return region
    return region[np.ix_(nearest_rows(region.shape[0], size[0]), nearest_rows(region.shape[1], size[1]))]


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
    import scipy.sparse as sp  # here, not at import: listing and planning a run do not need SciPy

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


RESOLUTIONS = ("original", "input")
TIES = ("mean", "first")


@saliency_bench.benchmark("pointing")
class Pointing(Benchmark):
    """Pointing game: % of hits, mean over categories, for all and for difficult samples.

    Options: ``resolution`` ("original": the map resized bilinearly to the original image, as
    Zhang et al.'s and TorchRay's code do; "input": map and ground truth at the network input
    size, as Fong & Vedaldi describe; see the module docstring), ``tolerance`` (15 px at that
    resolution), ``tie`` ("mean" | "first"), ``bootstrap`` (1000 replicates; 0 turns the
    interval off), ``seed`` (0).
    """

    name = "pointing"
    # The ground-truth region: instance masks where the dataset has them (COCO), else the union
    # of the category's boxes (ImageNet, VOC: TorchRay's ``voc_as_mask``), docs/PROTOCOLS.md §2.
    needs = ("mask|boxes",)
    accepts = (HEATMAP, POINT)
    columns = (Column("pointing_all", "Pointing all (%)", "Point.all", "%"),
               Column("pointing_difficult", "Pointing difficult (%)", "Point.dif", "%"))
    defaults: dict[str, Any] = {"resolution": "original", "tolerance": 15.0, "tie": "mean",
                                "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Bad values fail when the run is planned, not on the first scored batch.
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"pointing: resolution must be one of {', '.join(RESOLUTIONS)}, "
                             f"not {self.resolution!r}")
        if self.tie not in TIES:
            raise ValueError(f"pointing: tie must be one of {', '.join(TIES)}, not {self.tie!r}")
        if not self.tolerance > 0:
            raise ValueError(f"pointing: tolerance must be positive, not {self.tolerance!r}")

    @property
    def resolution(self) -> str:
        return str(self.option("resolution"))

    @property
    def tolerance(self) -> float:
        return float(self.option("tolerance"))

    @property
    def tie(self) -> str:
        return str(self.option("tie"))

    def protocol(self) -> dict[str, str]:
        """One line per column: the protocol these options follow."""
        if self.resolution == "original":
            where = "map bilinear to the original image (Zhang et al., TorchRay)"
            there = "there"
        else:
            where = ("map bilinear to the network input, ground truth nearest (pixel centres) "
                     "to it (Fong & Vedaldi)")
            there = "at input size"
        point = "max (mean of ties)" if self.tie == "mean" else "max (first in raster order)"
        line = f"{where}, {point}, hit if a GT pixel is within {self.tolerance:g} px {there}"
        return {"pointing_all": line,
                "pointing_difficult": line + "; difficult: boxes < 1/4 of the image and another category present"}

    def scoring_size(self, sample: Sample, input_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the grid the point and the ground truth are compared on."""
        size = sample.size if self.resolution == "original" else input_size
        return int(size[0]), int(size[1])

    def region(self, sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
        """Ground truth: the sample's mask if it has one, else the union of its boxes; at the
        original size, or resampled to ``size`` (nearest at pixel centres)."""
        if sample.mask is not None:
            region = np.asarray(sample.mask, dtype=bool)
        else:
            region = region_from_boxes(sample.boxes, sample.size)
        return region if size is None else region_to_size(region, size)

    def points(self, samples: Sequence[Sample], outputs: Sequence[np.ndarray],
               input_size: tuple[int, int]) -> np.ndarray:
        """The point of each output on its scoring grid (``scoring_size``); heatmaps bound for
        one grid size are resized together."""
        pts = np.zeros((len(samples), 2))
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (s, o) in enumerate(zip(samples, outputs)):
            o = np.asarray(o)
            size = self.scoring_size(s, input_size)
            if o.ndim == 1:  # a point method: (x, y) in input pixels
                pts[i] = o if self.resolution == "input" else input_point_to_original(o, input_size, size)[0]
            else:
                groups[size].append(i)
        for size, idx in groups.items():
            pts[idx] = heatmap_points(np.stack([np.asarray(outputs[i], np.float32) for i in idx]), size, self.tie)
        return pts

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], [output], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        """Records ``{"hit", "x", "y"}``, the point in the pixels of the scoring grid."""
        pts = self.points(samples, outputs, input_size)
        return [{"hit": int(is_hit(p, self.region(s, self.scoring_size(s, input_size)), self.tolerance)),
                 "x": round(float(p[0]), 2), "y": round(float(p[1]), 2)} for s, p in zip(samples, pts)]

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, PerSample]:
        """Hit (100 or 0) per sample, stratified by category: the column is the mean over
        categories, so a paired test compares category means on the common samples."""
        out = {}
        for column in self.columns:
            keep = [i for i, s in enumerate(samples) if column == "pointing_all"
                    or bool((s.get("flags") or {}).get("difficult", False))]
            out[column] = PerSample(tuple(str(samples[i]["id"]) for i in keep),
                                    [100.0 * float(records[i]["hit"]) for i in keep],
                                    tuple(str(samples[i]["category"]) for i in keep))
        return out

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self.option("bootstrap"))
        seed = int(self.option("seed"))
        hits = np.array([r["hit"] for r in records], dtype=np.float64)
        cats = [str(s["category"]) for s in samples]
        difficult = np.array([bool((s.get("flags") or {}).get("difficult", False)) for s in samples], dtype=bool)
        out = {}
        for column, sel in (("pointing_all", np.ones(len(hits), bool)), ("pointing_difficult", difficult)):
            h = hits[sel]
            c = [cats[i] for i in np.flatnonzero(sel)]
            value, n_cat = category_mean_accuracy(h, c)
            ci = bootstrap_ci(_category_mean_statistic(h, c), len(h), replicates, seed) if len(h) else None
            out[column] = self.declared_column(column).metric(
                None if value is None else 100.0 * value, None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
                int(len(h)), f"mean over {n_cat} categories; {int(len(h))} samples; "
                             f"resolution={self.resolution}, tie={self.tie}, hit if d<{self.tolerance:g}px")
        return out
