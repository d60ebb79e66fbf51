"""What the per-sample scalar benchmarks share (issue 23's families): options with defaults,
the map brought to the network input the way their reference programs require it, a value or a
recorded reason per sample, and a mean with a bootstrap interval that leaves the undefined
samples out and says how many and why.

A record is ``{"value": float}`` or ``{"value": None, "reason": "..."}``: a degenerate map (all
zero, constant) or a degenerate perturbation (non-finite logits) is a sample the metric cannot
score, never a NaN in a table. The column's ``n`` counts the samples with a value, its note the
others by reason.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from saliency_bench.contracts import HEATMAP, Benchmark, Metric

from .stats import bootstrap_ci, weighted_mean


def map_at_input(output: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """A map at the network input size, float32 ``[H, W]``: as it is when it already is, else
    bilinear with ``align_corners=False`` (the harness's display resize; for upsampling it is
    OpenCV's ``INTER_LINEAR``, the resize pytorch-grad-cam applies to its CAMs)."""
    m = np.ascontiguousarray(output, dtype=np.float32)
    size = tuple(int(s) for s in input_size)
    if m.shape == size:
        return m
    t = torch.from_numpy(m)[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def undefined(reason: str, **extra: Any) -> dict:
    return {"value": None, "reason": reason, **extra}


class ScalarBenchmark(Benchmark):
    """A benchmark whose record is one number per sample (or a reason), summarised as a mean."""

    accepts = (HEATMAP,)
    # Issue 23's families run when named (--benchmarks 'sparseness,road'), as parts does: the
    # default selection (pointing, localization, runtime; the faithfulness games on a GPU) is kept.
    default = False
    defaults: dict[str, Any] = {"bootstrap": 1000, "seed": 0}
    column = ""
    unit = ""
    scale = 1.0

    def protocol(self) -> dict[str, str]:
        return {self.column: (self.__doc__ or "").strip().splitlines()[0]}

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        return {self.column: self.column_metric(records, samples)}

    def column_metric(self, records: Sequence[dict], samples: Sequence[dict], key: str = "value") -> Metric:
        """Mean of the records' ``key`` (eval split), interval, and how many samples have none and why."""
        records = [r if r.get("value") is None else {**r, "value": r.get(key)} for r in records]
        split = np.array([str(s.get("split", "eval")) for s in samples])
        use = split == "eval" if (split == "eval").any() else np.ones(len(samples), bool)
        recs = [r for r, u in zip(records, use) if u]
        vals = np.array([r["value"] for r in recs if r.get("value") is not None], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        why = Counter(str(r.get("reason", "no value")) for r in recs if r.get("value") is None)
        left = "; ".join(f"{k} ({v})" for k, v in why.most_common(3))
        n = int(len(vals))
        if n == 0:
            return Metric.empty("no sample with a value" + (f": {left}" if left else ""), unit=self.unit)
        ci = bootstrap_ci(weighted_mean(vals), n, int(self.option("bootstrap")), int(self.option("seed")))
        note = f"mean over {n} samples" + (f"; {sum(why.values())} without a value: {left}" if why else "")
        return Metric(self.scale * float(vals.mean()),
                      None if ci is None else [self.scale * ci[0], self.scale * ci[1]], n, self.unit, note)
