"""Relevance mass and relevance rank accuracy (Arras et al., "CLEVR-XAI: A benchmark dataset for
the ground truth evaluation of neural network explanations", Information Fusion 2022), exactly
Quantus 0.6's ``RelevanceMassAccuracy`` and ``RelevanceRankAccuracy`` with their defaults
(``abs=False, normalise=True``: the map divided by its largest absolute value, signs kept).

The ground truth ``s`` is the sample's mask (COCO instance masks) or, without one, the union of
its boxes (inclusive pixel boxes), in the original image, brought to **the network input size by
nearest neighbour at pixel centres** (:func:`~saliency_bench.benchmarks.pointing.region_to_size`).
That is the resolution the reference uses: Quantus requires ``s_batch`` and the attributions to have
the input's spatial shape, so the map is brought there too (bilinear,
:func:`~saliency_bench.benchmarks.scalar.map_at_input`).

* **Mass**: ``sum(a * s) / sum(a)``: the share of the map's (signed) relevance inside the ground
  truth. Higher is better.
* **Rank**: with ``K = sum(s)``, the share of the ``K`` highest-ranked pixels (``np.argsort(-a)``, as
  Quantus sorts, ties in numpy's quicksort order) that lie in the ground truth. Higher is better.

Degenerate cases, recorded with a reason and no value (Quantus returns NaN or infinity): a ground
truth that is empty at the input size, a map whose sum is 0 (all zero, or signed values that
cancel: no mass to share), and for the rank a constant map (every pixel ties: the value would be
an artefact of the sort order).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import Column, Sample

from .pointing import region_from_boxes, region_to_size
from .scalar import ScalarBenchmark, map_at_input, undefined

TRUTHS = ("auto", "mask", "boxes")


def ground_truth(sample: Sample, size: tuple[int, int], kind: str = "auto") -> np.ndarray | None:
    """The sample's ground truth as a bool mask at ``size`` (H, W), or None if it has none of ``kind``."""
    if kind in ("auto", "mask") and sample.mask is not None:
        region = np.asarray(sample.mask, dtype=bool)
    elif kind in ("auto", "boxes") and len(sample.boxes):
        region = region_from_boxes(sample.boxes, sample.size)
    else:
        return None
    return region_to_size(region, size)


def normalise_by_max(a: np.ndarray) -> np.ndarray:
    """Quantus's ``normalise_by_max`` per sample on ``[B, n]`` float32 (all-zero rows unchanged)."""
    a = np.asarray(a, dtype=np.float32).reshape(len(a), -1).copy()
    nz = (a != 0).any(axis=1)
    a[nz] = a[nz] / np.max(np.abs(a[nz]), axis=1, keepdims=True)
    return a


def mass_accuracy(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Quantus ``RelevanceMassAccuracy.evaluate_batch`` on ``[B, n]`` maps and masks."""
    s = np.asarray(s).reshape(len(s), -1).astype(bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * s).sum(-1) / a.sum(-1)


def rank_accuracy(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Quantus ``RelevanceRankAccuracy.evaluate_batch`` on ``[B, n]`` maps and masks (the top ``K``
    by ``np.argsort(-a)`` counted in ``s``, divided by ``K``)."""
    s = np.asarray(s).reshape(len(s), -1).astype(bool)
    k = s.sum(-1)
    order = np.argsort(-a, axis=-1)
    hits = s[np.arange(len(s))[:, None], order]
    top = np.arange(a.shape[-1])[None, :] < k[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (hits * top).sum(-1) / top.sum(-1)


class _Relevance(ScalarBenchmark):
    needs = ("mask|boxes",)  # the mask, else the union of the boxes (ground_truth)
    defaults: dict[str, Any] = {"ground_truth": "auto", "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.option("ground_truth") not in TRUTHS:
            raise ValueError(f"{self.name}: ground_truth must be one of {', '.join(TRUTHS)}, "
                             f"not {self.option('ground_truth')!r}")

    def statistic(self, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def degenerate(self, a: np.ndarray) -> str | None:
        if float(a.sum(dtype=np.float64)) == 0.0 or a.sum() == 0:
            return "the map sums to 0: no relevance mass to share"
        return None

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], [output], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        size = tuple(int(v) for v in input_size)
        records = []
        for sample, o in zip(samples, outputs):
            s = ground_truth(sample, size, str(self.option("ground_truth")))
            if s is None:
                records.append(undefined(f"no {self.option('ground_truth')} ground truth"))
                continue
            if not s.any():
                records.append(undefined("the ground truth is empty at the input size"))
                continue
            a = normalise_by_max(map_at_input(o, size)[None])
            why = self.degenerate(a[0])
            if why:
                records.append(undefined(why))
                continue
            v = float(self.statistic(a, s[None])[0])
            records.append({"value": v, "gt_pixels": int(s.sum())} if np.isfinite(v)
                           else undefined(f"{self.name} is not finite for this map"))
        return records


@saliency_bench.benchmark("relevance_mass")
class RelevanceMass(_Relevance):
    """Relevance mass accuracy: the share of the (max-normalised, signed) map's sum inside the
    ground truth at the input size, as Quantus's ``RelevanceMassAccuracy`` (Arras et al. 2022).

    Options: ``ground_truth`` ("auto": the mask, else the boxes; "mask"; "boxes"), ``bootstrap``
    (1000), ``seed`` (0).
    """

    name = "relevance_mass"
    columns = (Column('relevance_mass', 'Relevance mass', 'RelMass'),)
    column = "relevance_mass"

    def statistic(self, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        return mass_accuracy(a, s)

    def protocol(self) -> dict[str, str]:
        return {self.column: "Quantus RelevanceMassAccuracy: sum(a s) / sum(a), a = map / max|map| bilinear to "
                             "the input, s = ground truth (mask, else boxes) nearest to the input; higher is better"}


@saliency_bench.benchmark("relevance_rank")
class RelevanceRank(_Relevance):
    """Relevance rank accuracy: the share of the ``K`` highest pixels of the map (``K`` = ground-truth
    pixels) inside the ground truth at the input size, as Quantus's ``RelevanceRankAccuracy``.

    Options: ``ground_truth`` ("auto" | "mask" | "boxes"), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "relevance_rank"
    columns = (Column('relevance_rank', 'Relevance rank', 'RelRank'),)
    column = "relevance_rank"

    def degenerate(self, a: np.ndarray) -> str | None:
        if a.min() == a.max():
            return "constant map: every pixel ties, so no ranking"
        return None

    def statistic(self, a: np.ndarray, s: np.ndarray) -> np.ndarray:
        return rank_accuracy(a, s)

    def protocol(self) -> dict[str, str]:
        return {self.column: "Quantus RelevanceRankAccuracy: share of the K = |s| top pixels (argsort(-a)) in s, "
                             "map bilinear and ground truth nearest to the input; higher is better"}


__all__ = ["RelevanceMass", "RelevanceRank", "ground_truth", "mass_accuracy", "rank_accuracy"]
