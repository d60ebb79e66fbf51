"""The pytorch-grad-cam pack (``gradcam.*``) against pytorch-grad-cam itself and our Grad-CAM.

Expected values come from the library called directly (``cam(input_tensor, targets)``, its own
``scale_cam_image``) and, for Grad-CAM, from our ``grad_cam``.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import Model
from saliency_bench.registry import get_method, methods
from saliency_bench.targets import Targets
from small_nets import SmallCNN, inputs40, run, small_model  # noqa: F401

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


@pytest.fixture(scope="module")
def cnn() -> Model:
    return small_model()


@pytest.fixture(scope="module")
def x40() -> torch.Tensor:
    return inputs40()


LAYER_METHODS = {
    "gradcam.grad_cam": ("GradCAM", {}), "gradcam.grad_cam_plus_plus": ("GradCAMPlusPlus", {}),
    "gradcam.xgrad_cam": ("XGradCAM", {}), "gradcam.layer_cam": ("LayerCAM", {}),
    "gradcam.hires_cam": ("HiResCAM", {}), "gradcam.grad_cam_element_wise": ("GradCAMElementWise", {}),
    "gradcam.eigen_cam": ("EigenCAM", {}), "gradcam.eigen_grad_cam": ("EigenGradCAM", {}),
    "gradcam.score_cam": ("ScoreCAM", {}), "gradcam.ablation_cam": ("AblationCAM", {}),
    "gradcam.fem": ("FEM", {}), "gradcam.kpca_cam": ("KPCA_CAM", {}),
}


def library(cls_name: str, model: Model, x: torch.Tensor, classes: list[int], layer: str = "gradcam") -> np.ndarray:
    """The library's own call: min-max scaled CAM resized to the input."""
    cls = getattr(pgc, cls_name)
    layers = [] if cls_name == "FullGrad" else [model.layer(layer)]
    with cls(model=model.net, target_layers=layers) as cam:
        return cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(c) for c in classes])


def test_the_pack_registers_at_least_twenty_methods_with_captum():
    names = methods.names("gradcam.*")
    assert set(LAYER_METHODS) | {"gradcam.full_grad"} <= set(names)
    assert len(names) + len(methods.names("captum.*")) >= 20
    assert "saliency_bench.packs.gradcam_pack" in methods.source("gradcam.grad_cam")


@pytest.mark.parametrize("name", sorted(LAYER_METHODS))
def test_layer_maps_are_the_librarys_cam_before_its_scaling_and_resize(cnn, x40, name):
    """The library's output is its CAM min-max scaled and resized per layer, then the layers'
    mean min-max scaled again (``aggregate_multi_layers``): scale_cam_image twice of ours."""
    classes = [1, 4, 0]
    ours = run(name, cnn, x40, Targets(classes))
    assert ours.shape == (3, 20, 20)  # the layer's resolution
    assert (ours >= 0).all()
    ref = library(LAYER_METHODS[name][0], cnn, x40, classes)
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(ours.numpy(), (40, 40))), ref, rtol=1e-4, atol=2e-5)
    # and resolution="input" is the library's output itself
    np.testing.assert_allclose(run(name, cnn, x40, Targets(classes), resolution="input").numpy(), ref,
                               rtol=1e-5, atol=1e-6)


def test_full_grad_is_the_librarys_output(cnn, x40):
    classes = [2, 3, 5]
    ours = run("gradcam.full_grad", cnn, x40, Targets(classes))
    assert ours.shape == (3, 40, 40)
    np.testing.assert_allclose(ours.numpy(), library("FullGrad", cnn, x40, classes), rtol=1e-5, atol=1e-6)


def test_grad_cam_equals_our_grad_cam_for_classes_and_sets(cnn, x40):
    for t in (Targets([1, 4, 0]), Targets([[1, 2], [4], [0, 3, 5]])):
        torch.testing.assert_close(run("gradcam.grad_cam", cnn, x40, t), run("grad_cam", cnn, x40, t),
                                   rtol=1e-4, atol=1e-6)


def test_the_layer_parameter_takes_roles_aliases_and_paths(cnn, x40):
    t = Targets([1, 4, 0])
    a = run("gradcam.grad_cam", cnn, x40, t, layer="conv2")
    b = run("gradcam.grad_cam", cnn, x40, t, layer="features.4")
    assert a.shape == (3, 20, 20)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, run("grad_cam", cnn, x40, t, layer="features.4"), rtol=1e-4, atol=1e-6)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        run("gradcam.grad_cam", cnn, x40, t, layer="nope")


def test_grad_cam_on_the_embedded_model_equals_ours_and_captums(lite0):
    """EfficientNet-Lite0's ``gradcam`` layer (bn2, 7x7): three programs, one map."""
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3)).contiguous(
        memory_format=torch.channels_last)
    t = Targets([[625], [151, 152, 153]])
    ours = run("grad_cam", lite0, x, t)
    assert ours.shape == (2, 7, 7) and ours.abs().sum() > 0
    torch.testing.assert_close(run("gradcam.grad_cam", lite0, x, t), ours, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(run("captum.layer_gradcam", lite0, x, t, relu_attributions=True), ours,
                               rtol=1e-4, atol=1e-5)


def test_a_pack_without_its_library_registers_nothing_and_breaks_nothing():
    """Block the libraries' imports in a fresh interpreter: the entry points still load, no
    pack method is registered, no plugin is broken, the built-in methods are all there."""
    code = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('captum', 'pytorch_grad_cam'):
            raise ImportError(f'blocked {name}')
        return None
sys.meta_path.insert(0, Block())
from saliency_bench.registry import methods
names = methods.names()
assert not [n for n in names if n.startswith(('captum.', 'gradcam.'))], names
assert not methods.broken, methods.broken
assert 'grad_cam' in names and 'gradient' in names
import saliency_bench.packs.captum_pack as c, saliency_bench.packs.gradcam_pack as g
assert not c.AVAILABLE and not g.AVAILABLE
print('OK', len(names))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK")
