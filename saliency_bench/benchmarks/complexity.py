"""Complexity: how concentrated a map is. Pure functions of the map (no model, no ground truth).

**Sparseness** (``sparseness``; Chalasani et al., "Concise explanations of neural networks using
adversarial training", ICML 2020), exactly Quantus 0.6's ``Sparseness`` with its defaults
(``abs=True, normalise=True``, ``normalise_by_max``): the map at the network input size, divided
by its largest absolute value, made absolute, ``+1e-7``, sorted ascending, and the Gini index
``sum((2 i - n - 1) a_(i)) / (n sum(a))``, ``i = 1..n``. Higher: a sparser (more concise) map.

**Complexity** (``complexity``; Bhatt et al., "Evaluating and aggregating feature-based model
explanations", IJCAI 2020), exactly Quantus 0.6's ``Complexity`` (``abs=True, normalise=True``):
the same normalised absolute map divided by its sum and the entropy
``-sum(p log(p + 1e-12))``. Lower: a less complex map.

Both need the map at the input size (Quantus checks that attributions have the input's spatial
shape): a map at another resolution (Grad-CAM 7x7) is brought there bilinearly
(:func:`~saliency_bench.benchmarks.scalar.map_at_input`); ``resolution="map"`` scores the map at its
own resolution instead (not Quantus's). Quantus normalises a whole **batch** by the batch's largest
value; here each map is normalised by its own, which equals Quantus called one sample at a time
(the only choice under which a sample's score does not depend on its batch).

Degenerate maps: an all-zero map has no Gini index and no entropy (Quantus's ``1e-7`` offset gives it
a Gini index of 0, its division a NaN entropy); it is recorded with that reason, without a value.
A constant non-zero map is well defined (Gini 0, entropy ``log n``) and scored.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import Column, Sample

from .scalar import ScalarBenchmark, map_at_input, undefined

RESOLUTIONS = ("input", "map")


def quantus_normalised_abs(maps: np.ndarray) -> np.ndarray:
    """Quantus's ``normalise_by_max`` then ``np.abs``, per sample: ``[B, n]`` float32."""
    a = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1).copy()
    mx = np.max(np.abs(a), axis=1, keepdims=True)
    nz = (a != 0).any(axis=1)
    a[nz] = np.divide(a[nz], mx[nz])
    return np.abs(a)


def gini(a: np.ndarray) -> np.ndarray:
    """Quantus ``Sparseness.evaluate_batch`` on ``[B, n]`` normalised absolute maps (float32)."""
    a = np.array(a, dtype=np.float32, copy=True)
    n_features = a.shape[-1]
    a += 1e-7
    a = np.sort(a, axis=-1)
    a_arange = np.stack([np.arange(1, n_features + 1) for _ in a])
    return ((2 * a_arange - n_features - 1) * a).sum(axis=-1) / (n_features * a.sum(axis=-1))


def entropy(a: np.ndarray) -> np.ndarray:
    """Quantus ``Complexity.evaluate_batch`` on ``[B, n]`` normalised absolute maps (float32)."""
    a = np.array(a, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        a /= np.abs(a).sum(-1, keepdims=True)
        return -(a * np.log(a + 1e-12)).sum(-1)


class _MapMetric(ScalarBenchmark):
    defaults: dict[str, Any] = {"resolution": "input", "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.option("resolution") not in RESOLUTIONS:
            raise ValueError(f"{self.name}: resolution must be one of {', '.join(RESOLUTIONS)}, "
                             f"not {self.option('resolution')!r}")

    def maps(self, outputs: Sequence[np.ndarray], input_size: tuple[int, int]) -> list[np.ndarray]:
        if self.option("resolution") == "map":
            return [np.asarray(o, np.float32) for o in outputs]
        return [map_at_input(o, input_size) for o in outputs]

    def statistic(self, a: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        return self.score_batch([sample], [output], input_size)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int]) -> list[dict]:
        records: list[dict] = []
        for m in self.maps(outputs, input_size):
            if not (m != 0).any():
                records.append(undefined(f"all-zero map: {self.name} is undefined"))
                continue
            v = float(self.statistic(quantus_normalised_abs(m[None]))[0])
            records.append({"value": v} if np.isfinite(v)
                           else undefined(f"{self.name} is not finite for this map"))
        return records


@saliency_bench.benchmark("sparseness")
class Sparseness(_MapMetric):
    """Sparseness: Gini index of the max-normalised absolute map at the input size, as Quantus's
    ``Sparseness`` (Chalasani et al. 2020); higher is sparser.

    Options: ``resolution`` ("input": the map bilinear to the network input, as Quantus needs it;
    "map": at its own resolution), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "sparseness"
    columns = (Column('sparseness', 'Sparseness (Gini)', 'Gini'),)
    column = "sparseness"

    def statistic(self, a: np.ndarray) -> np.ndarray:
        return gini(a)

    def protocol(self) -> dict[str, str]:
        return {self.column: f"Quantus Sparseness: Gini index of |map| / max|map| (+1e-7) at the "
                             f"{self.option('resolution')} resolution; higher is sparser"}


@saliency_bench.benchmark("complexity")
class Complexity(_MapMetric):
    """Complexity: entropy of the normalised absolute map at the input size, as Quantus's
    ``Complexity`` (Bhatt et al. 2020); lower is simpler.

    Options: ``resolution`` ("input" | "map"), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "complexity"
    columns = (Column('complexity', 'Complexity (entropy)', 'Entropy', lower_is_better=True),)
    column = "complexity"

    def statistic(self, a: np.ndarray) -> np.ndarray:
        return entropy(a)

    def protocol(self) -> dict[str, str]:
        return {self.column: f"Quantus Complexity: entropy -sum(p log(p + 1e-12)) of p = |map| / sum|map| at "
                             f"the {self.option('resolution')} resolution; lower is simpler"}


__all__ = ["Sparseness", "Complexity", "gini", "entropy", "quantus_normalised_abs"]
