"""The four contracts every part of saliency-bench speaks: Sample, Model, Method, Benchmark.

A run moves data along these arrows (docs/ARCHITECTURE.md §1)::

    Dataset -> Sample -> Model.preprocess -> Method.explain -> heatmaps [B,h,w] | points [B,2]
            -> Benchmark.score_batch (per sample) -> Benchmark.summarize (per dataset)

Coordinates: images are ``[B,3,H,W]`` tensors, heatmaps ``[B,h,w]`` at the method's own
resolution, points ``[B,2]`` as ``(x, y)`` in the pixel coordinates of the *network input*,
boxes ``[N,4]`` in inclusive pixels of the *original* image. The rooms: :mod:`.sample`,
:mod:`.model`, :mod:`.method`, :mod:`.benchmark` (with the columns, metrics and row kinds).
"""
from __future__ import annotations

from .benchmark import Benchmark, Column, Metric, ModelQuery, Row
from .method import HEATMAP, POINT, Method, MethodOutputError, check_output, method_from_function
from .model import ClassInfo, Model, weights_digest
from .sample import Dataset, Sample

__all__ = ["HEATMAP", "POINT", "Benchmark", "ClassInfo", "Column", "Dataset", "Method", "MethodOutputError",
           "Metric", "Model", "ModelQuery", "Row", "Sample", "check_output", "method_from_function",
           "weights_digest"]
