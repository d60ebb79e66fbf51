"""Scoring speed on the CPU: maps scored per second by the benchmarks, beside the reference
procedures they replace, on the same maps in the same rounds (see bench_scoring.py for what
each reference is). Maps: smooth synthetic maps (224x224) whose originals are 500x375, as real
ImageNet images are, and 227x227; with the shared data, real gradient and Grad-CAM (7x7) maps."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, needs_data, paired

N = 16  # maps per call


@pytest.fixture(scope="module")
def bench_scoring():
    import bench_scoring

    return bench_scoring


def _maps(bench_scoring, original: tuple[int, int]):
    maps, samples = bench_scoring.synthetic(N)
    for s in samples:
        s.size = original
        h, w = original
        s.boxes = np.array([[w * 0.2, h * 0.2, w * 0.7, h * 0.8]], np.float32)
    return maps, samples


@pytest.fixture(scope="module")
def real_maps(bench_scoring):
    return bench_scoring.real_sets(DATA, N)


@pytest.mark.parametrize("original", [(375, 500), (227, 227)], ids=["500x375", "227x227"])
def test_localization_score_batch_beside_the_authors_procedure_done_plainly(benchmark, bench_scoring, original):
    """The localization benchmark (the authors' boxes for 61 alphas + MaxBoxAccV2) against the
    authors' thresholding and PIL imresize, one resize per alpha (without MaxBoxAccV2)."""
    from saliency_bench.benchmarks.localization import Localization

    maps, samples = _maps(bench_scoring, original)
    loc = Localization(bootstrap=0)
    info = paired(benchmark, lambda: loc.score_batch(samples, maps, (224, 224)),
                  lambda: bench_scoring.plain_authors(maps, samples), rounds=3)
    if "speedup" in info:
        info["maps_per_s"] = N / benchmark.stats.stats.median
        info["maps_per_cpu_s"] = N / info["ours_cpu_median_s"]  # one thread: maps per second of one core
        info["target_maps_per_s_per_core"] = 400


@pytest.mark.parametrize("kind", ["smooth_224", "gradcam_7x7"])
def test_maxboxacc_v2_beside_wsolevaluations_loop(benchmark, bench_scoring, kind, request):
    """Our MaxBoxAccV2 sweep against wsolevaluation's per-threshold OpenCV loop; every cell equal."""
    import cv2
    import torch

    scale_boxes_wsol, maxboxacc_correct = bench_scoring.scale_boxes_wsol, bench_scoring.maxboxacc_correct
    if kind == "smooth_224":
        maps, samples = _maps(bench_scoring, (375, 500))
    else:  # Grad-CAM-like 7x7 maps: smooth, coarse, non-negative
        maps, samples = _maps(bench_scoring, (375, 500))
        maps = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(maps)[:, None], 7)[:, 0].relu().numpy()
    gts = [scale_boxes_wsol(s.boxes, s.size, (224, 224)) for s in samples]
    ours = maxboxacc_correct(maps, gts, (224, 224))
    assert (ours == bench_scoring.wsol_reference(maps, samples, cv2)).all()
    info = paired(benchmark, lambda: maxboxacc_correct(maps, gts, (224, 224)),
                  lambda: bench_scoring.wsol_reference(maps, samples, cv2), rounds=3, target=10.0)
    info["cells_equal"] = int(ours.size)


def test_pointing_score_batch(benchmark, bench_scoring):
    from saliency_bench.benchmarks.pointing import Pointing

    maps, samples = _maps(bench_scoring, (375, 500))
    bench = Pointing(bootstrap=0)
    paired(benchmark, lambda: bench.score_batch(samples, maps, (224, 224)), rounds=3)
    if benchmark.stats is not None and getattr(benchmark, "enabled", False):
        benchmark.extra_info["maps_per_s"] = N / benchmark.stats.stats.median


@needs_data
@pytest.mark.parametrize("kind", ["imagenet_gradient_224", "imagenet_gradcam_7x7"])
def test_localization_on_real_maps(benchmark, bench_scoring, real_maps, kind):
    import cv2

    from saliency_bench.benchmarks.localization import Localization

    maps, samples = real_maps[kind]
    loc = Localization(bootstrap=0)
    info = paired(benchmark, lambda: loc.score_batch(samples, maps, (224, 224)),
                  lambda: bench_scoring.wsol_reference(maps, samples, cv2), rounds=3, key="speedup_vs_wsol_maxboxacc")
    if "speedup_vs_wsol_maxboxacc" in info:
        info["maps_per_s"] = len(maps) / benchmark.stats.stats.median
        info["maps_per_cpu_s"] = len(maps) / info["ours_cpu_median_s"]
