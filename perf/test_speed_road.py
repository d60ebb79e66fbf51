"""ROAD's speed on the CPU: the whole benchmark per sample (the 18 imputations at percentiles 10..90,
MoRF and LeRF, and the 19 forward passes) against pytorch-grad-cam's ``ROADCombined`` per image (18
``NoisyLinearImputer`` systems built in numpy and solved by ``spsolve``, and its 36 forward passes),
in the same rounds (``paired``), on real ImageNet val images of the shared data with the embedded
EfficientNet-Lite0 and its real maps (gradient: scattered removed pixels; Grad-CAM: large removed
regions, the harder case for an iterative solver). Target: 10x per sample (issue 23)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, needs_data, paired

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the parity tests' real inputs

B = 2  # images per call of ours (one ROADCombined call per image for the reference)


@pytest.fixture(scope="module")
def real_batch():
    from metrics_data import imagenet_val

    from saliency_bench.registry import get_model

    model = get_model("efficientnet_lite0")
    samples, x, t = imagenet_val(DATA, model, B)
    return model, samples, x, t


@needs_data
@pytest.mark.parametrize("method", ["gradient", "grad_cam"])
def test_road_per_sample_beside_pytorch_grad_cam_road_combined(benchmark, real_batch, method):
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from saliency_bench.benchmarks.road import PERCENTILES, Road, sample_seed
    from saliency_bench.benchmarks.scalar import map_at_input
    from saliency_bench.contracts import ModelQuery
    from saliency_bench.registry import get_method

    model, samples, x, t = real_batch
    maps, _ = get_method(method).explain(model, x, torch.tensor(t, dtype=torch.long))
    maps = maps.detach().float().cpu().numpy()
    cams = [map_at_input(m, model.input_size) for m in maps]
    road = Road(bootstrap=0)
    turn = iter(range(10 ** 6))
    records = []

    def ours():
        records[:] = road.score_batch(samples, maps, model.input_size, query=ModelQuery(model, x, t, batch_size=8))

    def reference():  # one image per round, the images in turn
        i = next(turn) % B
        torch.manual_seed(sample_seed(0, samples[i].id))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ROADCombined(percentiles=list(PERCENTILES))(x[i][None], cams[i][None],
                                                        [ClassifierOutputSoftmaxTarget(t[i][0])], model.net)

    info = paired(benchmark, ours, reference, rounds=3, per_round=B, key="speedup_per_sample", target=10)
    info.update(images_per_call=B, torch_threads=torch.get_num_threads(), method=method,
                v_cycles_max=max(int(r.get("iterations", 0)) for r in records))
