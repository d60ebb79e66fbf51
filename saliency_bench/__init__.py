"""saliency-bench: a benchmark harness for saliency (attribution) methods on image classifiers.

Register a method (the decorator returns the function unchanged)::

    import saliency_bench

    @saliency_bench.method("my_method", variants=[saliency_bench.param(sigma=2.0)])
    def my_method(model, x, targets, *, sigma: float = 1.0):
        ...  # return [B, h, w] heatmaps on x.device; targets.score(logits) is the target score

The names below are imported on first use (PEP 562), so that importing a submodule, such as
the command line for its ``--help``, does not import torch.

Or run from Python (the same run as ``saliency-bench run``)::

    res = saliency_bench.run(methods=["grad_cam", my_method], benchmarks="pointing", limit=8)
    res.leaderboard, res.records, res.to_pandas()
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    **dict.fromkeys(("HEATMAP", "POINT", "Benchmark", "ClassInfo", "Method", "Model", "Sample"), "contracts"),
    **dict.fromkeys(("benchmark", "dataset", "get_benchmark", "get_dataset", "get_method", "get_model",
                     "list_methods", "load_plugin_file", "method", "model"), "registry"),
    "Targets": "targets",
    "param": "variants",
}


def run(*args: Any, **kwargs: Any) -> Any:
    """Run methods x models x datasets x benchmarks as ``saliency-bench run`` does and return a
    :class:`saliency_bench.api.Results` (see :func:`saliency_bench.api.run`)."""
    from .api import run as _run

    return _run(*args, **kwargs)

__all__ = [
    "HEATMAP", "POINT", "Benchmark", "ClassInfo", "Method", "Model", "Sample",
    "benchmark", "dataset", "method", "model", "get_benchmark", "get_dataset", "get_method",
    "get_model", "list_methods", "load_plugin_file", "param", "run", "Targets",
]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .contracts import HEATMAP, POINT, Benchmark, ClassInfo, Method, Model, Sample  # noqa: F401
    from .registry import (benchmark, dataset, get_benchmark, get_dataset, get_method,  # noqa: F401
                           get_model, list_methods, load_plugin_file, method, model)
    from .targets import Targets  # noqa: F401
    from .variants import param  # noqa: F401


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'saliency_bench' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
