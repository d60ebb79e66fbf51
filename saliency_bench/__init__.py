"""saliency-bench: a benchmark harness for saliency (attribution) methods on image classifiers.

Register a method (the decorator returns the function unchanged)::

    import saliency_bench

    @saliency_bench.method("my_method", variants=[saliency_bench.param(sigma=2.0)])
    def my_method(model, x, targets, *, sigma: float = 1.0):
        ...  # return [B, h, w] heatmaps on x.device; targets.score(logits) is the target score
"""
from .contracts import HEATMAP, POINT, Benchmark, ClassInfo, Column, Method, Metric, Model, Sample
from .registry import (benchmark, dataset, get_benchmark, get_dataset, get_method, get_model,
                       list_methods, load_plugin_file, method, model)
from .targets import Targets
from .variants import param

__version__ = "0.1.0"
__all__ = [
    "HEATMAP", "POINT", "Benchmark", "ClassInfo", "Column", "Method", "Metric", "Model", "Sample",
    "benchmark", "dataset", "method", "model", "get_benchmark", "get_dataset", "get_method",
    "get_model", "list_methods", "load_plugin_file", "param", "Targets",
]
