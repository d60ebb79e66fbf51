"""The methods' CPU proxies of their GPU targets (docs/PERFORMANCE.md §1): in the same rounds,
a backprop method's batch beside the model's own forward+backward on it (target >= 0.8 of it), occlusion's
forward passes per second beside Captum's ``Occlusion`` on the same model and batch (target: at
least as many). GoogLeNet with random weights (speed does not depend on them), small inputs,
one thread (a loaded 2-core machine runs one thread more steadily than two)."""
from __future__ import annotations

import pytest
import torch

from conftest import paired

BATCH, SIZE = 4, 112


@pytest.fixture(scope="module")
def googlenet():
    import bench_common

    bench_common.load_builtins()
    from saliency_bench.registry import get_model

    torch.set_num_threads(1)
    model = get_model("googlenet", weights="random", device="cpu")
    x, t = bench_common.random_inputs(model, BATCH, SIZE)
    return model, x, t, bench_common


@pytest.mark.parametrize("name", ["gradient", "guided_backprop", "grad_cam", "excitation_backprop",
                                  "contrastive_excitation_backprop"])
def test_backprop_method_beside_forward_backward(benchmark, googlenet, name):
    from saliency_bench.registry import get_method

    model, x, t, common = googlenet
    method = get_method(name)
    info = paired(benchmark, lambda: method.explain(model, x, t), lambda: common.forward_backward(model, x, t),
                  rounds=5, key="fraction_of_forward_backward", target=0.8)
    info.update(batch=BATCH, size=SIZE, threads=torch.get_num_threads())


def test_occlusion_forward_passes_beside_captums_occlusion(benchmark, googlenet):
    """Both on the same image with the same window (ours on the authors' grid, Captum's strided); each side's rate is its images
    sent through the network per second (counted by a forward hook), their ratio the target's."""
    captum = pytest.importorskip("captum.attr")
    from saliency_bench.registry import get_method

    model, x, t, _ = googlenet
    x = x[:1]
    t = t[:1]
    window, stride = 35, 16
    method = get_method("occlusion", size=window, per_side=8)  # the authors' grid, 8x8 squares
    seen = [0]
    hook = model.net.register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + i[0].shape[0]))
    try:
        seen[0] = 0
        method.explain(model, x, t)
        ours_images = seen[0]
        seen[0] = 0
        occ = captum.Occlusion(model.net)

        def reference():
            with torch.no_grad():
                occ.attribute(x, target=t[:, 0].tolist(), sliding_window_shapes=(3, window, window),
                              strides=(3, stride, stride), perturbations_per_eval=16)

        reference()
        captum_images = seen[0]
        info = paired(benchmark, lambda: method.explain(model, x, t), reference, rounds=3,
                      per_round=ours_images / captum_images, key="forward_passes_ratio_vs_captum", target=1.0)
    finally:
        hook.remove()
    info.update(ours_images_per_call=ours_images, captum_images_per_call=captum_images, window=window,
                captum_stride=stride, size=SIZE)
