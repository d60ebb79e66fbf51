"""The backprop methods against TorchRay (``torchray`` 1.0 from PyPI, the program behind the
published VGG16/ResNet50 pointing-game table, docs/PROTOCOLS.md §2) and pytorch-grad-cam.

VGG16 and ResNet50 with random weights (no weights file needed), biases and BatchNorm statistics
randomised too (torchvision initialises biases to 0 and BatchNorm to the identity, under which a
rule that drops the bias or folds BatchNorm could not be told from one that does not). Two real
photos of the bundled sample in one batch, each with its own target (its top class). Each method runs at the layers
of TorchRay's benchmark (``examples/attribution_benchmark.py``, which our model roles copy) with
TorchRay's defaults ``resize=False, smooth=0``: maps at the method's own resolution, the
channel reduction of each TorchRay function (gradient and guided backprop: max over channels
of |grad|; Grad-CAM: ReLU of the GAP-weighted sum; excitation backprop: sum over channels, no
ReLU; contrastive: sum over channels, then ReLU). ResNet50 gets TorchRay's ``update_resnet``
(skip connections as ``EltwiseSum``), as its benchmark does for excitation backprop; without it
TorchRay's excitation backprop sends the full signal down both branches of every skip.

Tolerance: both programs compute the same float32 operations in other orders (TorchRay divides
by ``z + 1e-20`` and computes ``a / (a + b) * p``; we divide by ``z`` and compute
``a * (p / (a + b))``; convolution backward sums in other orders) over 16 to 50 layers. Measured
here: VGG16 bit-identical for all five methods; ResNet50 within 3.3e-7 of each map's largest
value. The tests allow 1e-5 of it (30 times that), far below what any other reading changes
(5e-3 and more, asserted below). Two exceptions, each with its reason:

* the contrastive map is a difference of two signals of nearly equal size, so its tolerance is
  1e-5 of the larger signal (the target's excitation map at the same layer);
* guided backprop on ResNet50 differs by 2.5e-5 of the largest value on one photo, through one
  ReLU whose input is exactly 0: TorchRay's guided ReLU passes gradient where its input is
  ``>= 0``, Springenberg et al.'s rule (and Captum's, and our default) where it is ``> 0``.
  With ``at_zero="pass"`` (TorchRay's reading) the maps agree to 1e-5; the default to 1e-4.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from saliency_bench.imageio import load_rgb, to_input
from saliency_bench.registry import get_method, get_model
from saliency_bench.targets import as_target_tensor

tr_common = pytest.importorskip("torchray.attribution.common")
from torchray.attribution.excitation_backprop import (  # noqa: E402
    contrastive_excitation_backprop as tr_contrastive_eb,
    excitation_backprop as tr_excitation_backprop,
    update_resnet,
)
from torchray.attribution.grad_cam import grad_cam as tr_grad_cam  # noqa: E402
from torchray.attribution.gradient import gradient as tr_gradient  # noqa: E402
from torchray.attribution.guided_backprop import guided_backprop as tr_guided_backprop  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "images"
PHOTOS = ("000000000034.jpg", "000000000030.jpg")  # a zebra; a vase of flowers
REL_TOL = 1e-5
GUIDED_REL_TOL = 1e-4  # one ReLU input exactly 0: see the module docstring


def randomise(net: nn.Module, seed: int = 0) -> None:
    """Random biases, and BatchNorm statistics with a fifth of the scales negative."""
    g = torch.Generator().manual_seed(seed)

    def rand(shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                sign = torch.where(rand(m.weight.shape) < 0.2, -1.0, 1.0)
                m.weight.copy_(sign * rand(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(rand(m.running_var.shape, 0.5, 2.0))


@dataclass
class Case:
    model: object
    ref: nn.Module  # TorchRay's copy of the network
    x: torch.Tensor
    targets: torch.Tensor
    cache: dict = field(default_factory=dict)

    def ours(self, method: str, **params) -> torch.Tensor:
        key = (method, tuple(sorted(params.items())))
        if key not in self.cache:
            maps, _ = get_method(method, **params).explain(self.model, self.x, self.targets)
            self.cache[key] = maps.detach()
        return self.cache[key]

    def torchray(self, method: str) -> torch.Tensor:
        key = ("torchray", method)
        if key not in self.cache:
            layer = self.model.layer_name
            x, t = self.x.clone(), self.targets[:, 0]
            if method == "gradient":
                out = tr_gradient(self.ref, x, t)
            elif method == "guided_backprop":
                out = tr_guided_backprop(self.ref, x, t)
            elif method == "grad_cam":
                out = tr_grad_cam(self.ref, x, t, saliency_layer=layer("gradcam"))
            elif method == "excitation_backprop":
                out = tr_excitation_backprop(self.ref, x, t, saliency_layer=layer("excitation"))
            elif method == "contrastive_excitation_backprop":
                out = tr_contrastive_eb(self.ref, x, t, saliency_layer=layer("excitation"),
                                        contrast_layer=layer("contrast"),
                                        classifier_layer=layer("classifier"))
            else:
                raise ValueError(method)
            assert out.shape[1] == 1
            self.cache[key] = out.detach()[:, 0]
        return self.cache[key]


@pytest.fixture(scope="module", params=["vgg16", "resnet50"])
def case(request) -> Case:
    model = get_model(request.param, weights="random")
    randomise(model.net)
    ref = copy.deepcopy(model.net)
    if request.param == "resnet50":
        update_resnet(ref)
    x = model.preprocess(torch.stack([to_input(load_rgb(SAMPLE / p), model.input_size) for p in PHOTOS]))
    return Case(model, ref, x, as_target_tensor(top_classes(model.net, x)))


def top_classes(net: nn.Module, x: torch.Tensor) -> list[int]:
    """Each photo's top class, a different one for each (a batching bug shows): with random
    weights another class's Grad-CAM and contrastive maps can be all zero after their ReLU."""
    with torch.no_grad():
        ranked = net(x).argsort(dim=1, descending=True).tolist()
    first = ranked[0][0]
    return [first, next(c for c in ranked[1] if c != first)]


def assert_maps_close(ours: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor | None = None,
                      tol: float = REL_TOL) -> None:
    """Equal to ``tol`` of each sample's largest value (of ``scale``, default ``ref``)."""
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.float32
    scale = (ref if scale is None else scale).flatten(1).abs().amax(1)
    assert bool((scale > 0).all())
    err = (ours - ref).flatten(1).abs().amax(1)
    assert bool((err <= tol * scale).all()), f"max error {(err / scale).tolist()} of the largest value"


def test_gradient_equals_torchray_max_abs_over_channels(case):
    ours = case.ours("gradient")
    assert ours.shape == (2, 224, 224)
    assert_maps_close(ours, case.torchray("gradient"))


def test_guided_backprop_equals_torchray(case):
    ours = case.ours("guided_backprop")
    assert_maps_close(case.ours("guided_backprop", at_zero="pass"), case.torchray("guided_backprop"))
    assert_maps_close(ours, case.torchray("guided_backprop"), tol=GUIDED_REL_TOL)
    # not the gradient: the guided ReLU rule ran (VGG16's ReLUs are in-place modules)
    assert not torch.allclose(ours, case.ours("gradient"), rtol=0.1, atol=0)


def test_grad_cam_equals_torchray_at_the_gradcam_role(case):
    ours = case.ours("grad_cam")
    assert ours.shape == {"vgg16": (2, 14, 14), "resnet50": (2, 7, 7)}[case.model.name]
    assert_maps_close(ours, case.torchray("grad_cam"))


def test_excitation_backprop_equals_torchray_at_the_excitation_role(case):
    ours = case.ours("excitation_backprop")
    assert ours.shape == (2, 14, 14)  # VGG16 pool4, ResNet50 layer3: stride 16
    assert_maps_close(ours, case.torchray("excitation_backprop"))


def test_contrastive_excitation_backprop_equals_torchray(case):
    ours = case.ours("contrastive_excitation_backprop")
    ref = case.torchray("contrastive_excitation_backprop")
    # non-zero, and cut by the ReLU somewhere, in each sample
    assert bool((ref.flatten(1).amax(1) > 0).all()) and bool((ref == 0).flatten(1).any(1).all())
    assert_maps_close(ours, ref, scale=case.ours("excitation_backprop"))


def relative_error(ours: torch.Tensor, ref: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (ours - ref).flatten(1).abs().amax(1) / scale.flatten(1).abs().amax(1)


@pytest.mark.parametrize("case", ["resnet50"], indirect=True)
@pytest.mark.parametrize("method, option", [
    ("contrastive_excitation_backprop", {"relu_before_sum": True}),  # an earlier specification
    ("excitation_backprop", {"residual": "positive"}),
    ("excitation_backprop", {"batchnorm": "fold"}),
    ("contrastive_excitation_backprop", {"residual": "positive"}),
])
def test_the_other_readings_are_options_that_differ_from_torchray(case, method, option):
    """ResNet50 has what each option names (residual sums; BatchNorm with negative scales; a
    contrastive signal of both signs across channels): each changes the maps by far more than
    the tolerance, so the parity above is a test of the defaults."""
    err = relative_error(case.ours(method, **option), case.torchray(method), case.ours("excitation_backprop"))
    assert bool((err > 100 * REL_TOL).all()), err


@pytest.mark.parametrize("case", ["vgg16"], indirect=True)
@pytest.mark.parametrize("option", [{"residual": "positive"}, {"batchnorm": "fold"}])
def test_residual_and_batchnorm_options_change_nothing_on_vgg16(case, option):
    """VGG16 has no residual sum and no BatchNorm. (Its contrastive signal, with random weights,
    has one sign across channels almost everywhere: the order of ReLU and channel sum changes
    its maps by 5e-7 only, so that option is told apart on ResNet50 alone.)"""
    err = relative_error(case.ours("excitation_backprop", **option), case.torchray("excitation_backprop"),
                         case.ours("excitation_backprop"))
    assert bool((err <= REL_TOL).all()), err


@pytest.mark.parametrize("signed_inputs", ["as_is", "clamp"])
def test_signed_input_readings_agree_where_every_conv_reads_non_negative_inputs(case, signed_inputs):
    """In both networks every conv and linear layer above the excitation layer reads a ReLU or
    max-pool output (>= 0), where every reading of signed inputs is the paper's rule."""
    err = relative_error(case.ours("excitation_backprop", signed_inputs=signed_inputs),
                         case.torchray("excitation_backprop"), case.ours("excitation_backprop"))
    assert bool((err <= REL_TOL).all()), err


def test_smoothing_equals_torchray_imsmooth():
    """``smooth`` is TorchRay's: a Gaussian of ``smooth * max(h, w)``, replicate padding."""
    from torchray.utils import imsmooth

    from saliency_bench.methods._backprop import smooth_maps

    maps = torch.rand(3, 14, 20, generator=torch.Generator().manual_seed(0))
    for sigma in (0.02, 0.1):
        ref = imsmooth(maps[:, None], sigma=sigma * 20, padding_mode="replicate")[:, 0]
        torch.testing.assert_close(smooth_maps(maps, sigma), ref, rtol=1e-5, atol=1e-6)


def test_grad_cam_equals_pytorch_grad_cam(case):
    """pytorch-grad-cam's ``GradCAM`` returns ReLU(map) min-max scaled and resized to the input
    by its ``scale_cam_image``, scaled again after averaging its target layers (one here): the
    same post-processing, by its own function, on our map."""
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = copy.deepcopy(case.model.net).requires_grad_(True)  # it backpropagates to the weights
    cam = gradcam.GradCAM(net, target_layers=[net.get_submodule(case.model.layer_name("gradcam"))])
    ref = cam(case.x.clone(), targets=[ClassifierOutputTarget(int(t)) for t in case.targets[:, 0]])
    ours = scale_cam_image(scale_cam_image(case.ours("grad_cam").numpy(), target_size=(224, 224)))
    assert ref.shape == ours.shape == (2, 224, 224)
    torch.testing.assert_close(torch.from_numpy(ours), torch.from_numpy(ref), rtol=0, atol=1e-4)


class _Padded(nn.Module):
    """Every kind of border the zoo has: TensorFlow "same" padding (timm's ``Conv2dSame``, the
    ``tf_`` models' stride-2 convs: ``F.pad`` by 0 left/top and 1 right/bottom for a 3x3 kernel,
    1 and 2 for a 5x5, then an unpadded conv), average pooling that counts its zero padding,
    padded max pooling, a symmetric padded conv and a depthwise conv."""

    def __init__(self) -> None:
        from timm.layers import Conv2dSame

        super().__init__()
        self.conv1, self.relu1 = Conv2dSame(3, 8, 3, stride=2), nn.ReLU()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)
        self.conv2, self.relu2 = Conv2dSame(8, 8, 5, stride=2, groups=8), nn.ReLU()
        self.mpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv3, self.relu3 = nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.mpool(self.relu2(self.conv2(x)))
        return self.fc(self.gap(self.relu3(self.conv3(x))).flatten(1))


def test_borders_are_treated_as_torchray_treats_them():
    """Padding is no neuron: a zero there excites nothing and gets no probability, in either
    program, so a border unit's probability goes to its fewer real inputs. The maps agree at
    every pixel, border rows and columns included."""
    from saliency_bench.contracts import ClassInfo, Model

    torch.manual_seed(0)
    net = _Padded().eval()
    randomise(net)
    model = Model(name="padded", net=net, input_size=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3,
                  classes=[ClassInfo(i, str(i), str(i)) for i in range(5)],
                  roles={"excitation": "pool", "contrast": "gap", "classifier": "fc"})
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([1, 3])
    ref = copy.deepcopy(net)
    for method, theirs in [
        ("excitation_backprop", lambda: tr_excitation_backprop(ref, x.clone(), targets, saliency_layer="pool")),
        ("contrastive_excitation_backprop", lambda: tr_contrastive_eb(
            ref, x.clone(), targets, saliency_layer="pool", contrast_layer="gap", classifier_layer="fc")),
    ]:
        ours = get_method(method).explain(model, x, targets[:, None])[0].detach()
        expected = theirs().detach()[:, 0]
        assert ours.shape == (2, 16, 16)
        assert bool((expected[:, :, [0, -1]].abs().amax((1, 2)) > 0).all())  # the borders carry signal
        scale = get_method("excitation_backprop").explain(model, x, targets[:, None])[0]
        assert_maps_close(ours, expected, scale=scale)
