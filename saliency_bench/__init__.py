"""saliency-bench: a benchmark harness for saliency (attribution) methods on image classifiers.

Register a method (the decorator returns the function unchanged)::

    import saliency_bench

    @saliency_bench.method("my_method", variants=[saliency_bench.param(sigma=2.0)])
    def my_method(model, x, targets, *, sigma: float = 1.0):
        ...  # return [B, h, w] heatmaps on x.device; targets.score(logits) is the target score

Or run from Python (the same run as ``saliency-bench run``)::

    res = saliency_bench.run(methods=["grad_cam", my_method], benchmarks="pointing", limit=8)
    res.leaderboard, res.records, res.to_pandas()
"""
from .contracts import HEATMAP, POINT, Benchmark, ClassInfo, Method, Model, Sample
from .registry import (benchmark, dataset, get_benchmark, get_dataset, get_method, get_model,
                       list_methods, load_plugin_file, method, model)
from .targets import Targets
from .variants import param

__version__ = "0.1.0"


def run(*args, **kwargs):
    """Run methods x models x datasets x benchmarks as ``saliency-bench run`` does and return a
    :class:`saliency_bench.api.Results` (see :func:`saliency_bench.api.run`)."""
    from .api import run as _run

    return _run(*args, **kwargs)

__all__ = [
    "HEATMAP", "POINT", "Benchmark", "ClassInfo", "Method", "Model", "Sample",
    "benchmark", "dataset", "method", "model", "get_benchmark", "get_dataset", "get_method",
    "get_model", "list_methods", "load_plugin_file", "param", "run", "Targets",
]
