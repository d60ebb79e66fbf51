"""The cost of isolation (issue 21): the guard's verify after a method's batch, beside the batch.

In the same rounds: ``Guard.verify()`` of an unchanged model (ours, timed by pytest-benchmark)
and a gradient / Grad-CAM batch as the harness calls it (``execute.call_method``, the
reference). ``extra_info["batch_over_verify"]`` is how many verifies fit in one batch; its
inverse is the share of the batch the guarantee costs (``verify_share_of_batch``). EfficientNet-
Lite0 with random weights (296 tensors, 4.7 M values), batch 4, one thread. perf/README.md,
"Isolation", has the script's fuller figures (``bench_isolation.py``: GoogLeNet, VGG16)."""
from __future__ import annotations

import pytest
import torch

from conftest import paired

BATCH = 4


@pytest.fixture(scope="module")
def lite0():
    import bench_common

    bench_common.load_builtins()
    from saliency_bench.isolation import Guard
    from saliency_bench.registry import get_model
    from saliency_bench.targets import Targets

    torch.set_num_threads(1)
    model = get_model("efficientnet_lite0", weights="random", device="cpu")
    x, t = bench_common.random_inputs(model, BATCH)
    return model, x, Targets([tuple(r) for r in t.tolist()], device=x.device), Guard(model)


@pytest.mark.parametrize("name", ["gradient", "grad_cam"])
def test_verify_beside_a_backprop_batch(benchmark, lite0, name):
    from saliency_bench.execute import call_method
    from saliency_bench.registry import get_method

    model, x, targets, guard = lite0
    method = get_method(name)

    def verify():
        assert guard.verify() is None

    info = paired(benchmark, verify, lambda: call_method(method, model, x, targets), rounds=5,
                  key="batch_over_verify")
    if "batch_over_verify" in info:
        info["verify_share_of_batch"] = 1 / info["batch_over_verify"]
    info.update(batch=BATCH, threads=torch.get_num_threads(), tensors=len(guard.model.tensors))
