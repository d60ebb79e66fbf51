"""Gradient, guided backprop and Grad-CAM against Captum and pytorch-grad-cam on the embedded
model and GoogLeNet with a real photo; batch invariance of all six backprop methods; the centre
baseline; layer overrides. (TorchRay on VGG16 and ResNet50: test_torchray_parity.py.)"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from saliency_bench.imageio import to_input
from saliency_bench.registry import get_method, get_model, list_methods
from saliency_bench.targets import as_target_tensor, target_score

captum_attr = pytest.importorskip("captum.attr")

BACKPROP = ["center", "gradient", "guided_backprop", "excitation_backprop",
            "contrastive_excitation_backprop", "grad_cam"]
LIFEBOAT = 625


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]).double())[0, 1])


def explain(name: str, model, x, targets, **params) -> torch.Tensor:
    maps, _ = get_method(name, **params).explain(model, x, targets)
    return maps.detach()


class _ReLULike(nn.ReLU):
    """Captum's GuidedBackprop overrides nn.ReLU modules only; this one computes another
    clamp (ReLU6) so that Captum applies its guided rule to it."""

    def __init__(self, hi: float) -> None:
        super().__init__()
        self.hi = hi

    def forward(self, x):
        return x.clamp(0, self.hi)


def relus_as_modules(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose ReLU6 modules and GoogLeNet's functional ReLUs are nn.ReLU modules."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, _ReLULike(6.0))
        if type(module).__name__ == "BasicConv2d":  # torchvision GoogLeNet: F.relu in forward
            module.relu = nn.ReLU()
            module.forward = lambda x, m=module: m.relu(m.bn(m.conv(x)))
    return net


@pytest.fixture(scope="module")
def lite0_photo(lite0, photo):
    return lite0, lite0.preprocess(to_input(photo, lite0.input_size)[None])


@pytest.fixture(scope="module")
def googlenet_photo(photo):
    """Random-weight GoogLeNet (no weights file needed) on the photo at 112x112, for speed."""
    model = get_model("googlenet", weights="random")
    return model, model.preprocess(to_input(photo, (112, 112))[None])


@pytest.fixture(params=["lite0", "googlenet"])
def model_and_photo(request):
    return request.getfixturevalue(f"{request.param}_photo")


def test_all_six_backprop_methods_are_registered():
    assert set(BACKPROP) <= set(list_methods())


def test_gradient_equals_captum_saliency(model_and_photo):
    model, x = model_and_photo
    ours = explain("gradient", model, x, as_target_tensor([LIFEBOAT]))
    ref = captum_attr.Saliency(model.net).attribute(x.clone().requires_grad_(), target=LIFEBOAT,
                                                    abs=True).amax(dim=1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-8)


def test_guided_backprop_equals_captum_guided_backprop(model_and_photo):
    model, x = model_and_photo
    ours = explain("guided_backprop", model, x, as_target_tensor([LIFEBOAT]))
    ref = captum_attr.GuidedBackprop(relus_as_modules(model.net)).attribute(
        x.clone().requires_grad_(), target=LIFEBOAT).abs().amax(dim=1)
    assert corr(ours, ref) > 0.999
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.max()))
    # and it is not the plain gradient (the ReLU rule did run, functional ReLUs included)
    assert corr(ours, explain("gradient", model, x, as_target_tensor([LIFEBOAT]))) < 0.99


def test_guided_backprop_relu6_option_is_what_captum_does_to_the_unmodified_network(lite0_photo):
    """Captum hooks nn.ReLU modules only: on EfficientNet-Lite0 (ReLU6 throughout) its guided
    backprop is the plain gradient, our ``relu6="gradient"``."""
    model, x = lite0_photo
    ours = explain("guided_backprop", model, x, as_target_tensor([LIFEBOAT]), relu6="gradient")
    ref = captum_attr.GuidedBackprop(model.net).attribute(x.clone().requires_grad_(),
                                                          target=LIFEBOAT).abs().amax(dim=1)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6 * float(ref.max()))
    assert corr(ours, explain("guided_backprop", model, x, as_target_tensor([LIFEBOAT]))) < 0.99


def test_grad_cam_equals_captum_layer_grad_cam(model_and_photo):
    model, x = model_and_photo
    ours = explain("grad_cam", model, x, as_target_tensor([LIFEBOAT]))
    ref = captum_attr.LayerGradCam(model.net, model.layer("gradcam")).attribute(
        x, target=LIFEBOAT, relu_attributions=True)[:, 0]
    ref = ref.detach()
    assert ours.shape == ref.shape and float(ref.max()) > 0
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7 * float(ref.max()))


def test_grad_cam_equals_pytorch_grad_cam(model_and_photo):
    """pytorch-grad-cam's ``GradCAM`` returns ReLU(map) min-max scaled and resized to the input
    by its ``scale_cam_image``, scaled again after averaging its target layers (one here): the
    same post-processing, by its own function, on our map."""
    gradcam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = model_and_photo
    net = copy.deepcopy(model.net).requires_grad_(True)  # it backpropagates to the weights
    cam = gradcam.GradCAM(net, target_layers=[net.get_submodule(model.layer_name("gradcam"))])
    ref = cam(x.clone(), targets=[ClassifierOutputTarget(LIFEBOAT)])
    ours = explain("grad_cam", model, x, as_target_tensor([LIFEBOAT]))
    assert ours.shape[-2:] != x.shape[-2:]  # ours at the layer's resolution, theirs resized
    ours = scale_cam_image(scale_cam_image(ours.numpy(), target_size=tuple(x.shape[-1:-3:-1])))
    assert ref.shape == ours.shape == (1, *x.shape[-2:])
    torch.testing.assert_close(torch.from_numpy(ours), torch.from_numpy(ref), rtol=0, atol=1e-4)


def test_grad_cam_of_a_class_set_uses_the_gradient_of_logsumexp(lite0_photo):
    model, x = lite0_photo
    targets = as_target_tensor([[LIFEBOAT, 814, 914]])  # lifeboat, speedboat, yawl
    acts = {}
    h = model.layer("gradcam").register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    with torch.enable_grad():
        xx = x.clone().requires_grad_()
        score = target_score(model.net(xx), targets).sum()
    h.remove()
    (g,) = torch.autograd.grad(score, acts["a"])
    ref = torch.relu((g.mean((2, 3), keepdim=True) * acts["a"]).sum(1)).detach()
    torch.testing.assert_close(explain("grad_cam", model, x, targets), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", BACKPROP)
def test_batch_of_8_gives_the_maps_of_8_batches_of_1(lite0, name):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 64, 64)
    targets = as_target_tensor([[1], [LIFEBOAT], [7, 9], [100], [200, 201, 202], [300], [999], [0]])
    together = explain(name, lite0, x, targets)
    apart = torch.cat([explain(name, lite0, x[i:i + 1], targets[i:i + 1]) for i in range(8)])
    scale = apart.flatten(1).abs().amax(1).view(-1, 1, 1)
    assert int((scale > 0).sum()) >= 4  # a ReLU'd map (Grad-CAM, c-EB) may be all zero for noise
    scale = scale.clamp(min=1e-12)
    # float32, and contrastive EB is a difference of two signals: 1e-4 of each map's maximum
    torch.testing.assert_close(together / scale, apart / scale, rtol=1e-4, atol=1e-4)


def test_excitation_maps_are_non_negative_at_the_excitation_layer(googlenet_photo):
    model, x = googlenet_photo
    maps = explain("excitation_backprop", model, x, as_target_tensor([LIFEBOAT]))
    assert maps.shape == (1, 14, 14)  # GoogLeNet maxpool2 = pool2/3x3_s2, stride 8 (112 input)
    assert float(maps.min()) >= 0
    # random GoogLeNet (BatchNorm the identity, no bias-only units): one unit of probability arrives
    assert float(maps.sum()) == pytest.approx(1.0, rel=1e-4)
    c = explain("contrastive_excitation_backprop", model, x, as_target_tensor([LIFEBOAT]))
    assert c.shape == (1, 14, 14) and float(c.min()) >= 0 and float(c.max()) > 0


def test_center_heatmap_peaks_exactly_at_the_input_centre():
    x = torch.zeros(3, 3, 224, 160)
    maps = explain("center", None, x, as_target_tensor([0, 1, 2]))
    assert maps.shape == (3, 224, 160)
    m = maps[0]
    ys, xs = torch.nonzero(m == m.max(), as_tuple=True)
    assert (float(ys.float().mean()), float(xs.float().mean())) == (111.5, 79.5)
    assert torch.equal(maps[0], maps[2])
    sigma = 0.25 * 160  # the documented default: a quarter of the shorter side
    assert float(m[111, 79 - 40] / m[111, 79]) == pytest.approx(
        float(torch.exp(torch.tensor(-(40.5 ** 2 - 0.5 ** 2) / (2 * sigma ** 2)))), rel=1e-4)


def test_gradient_layer_override_probes_that_layer(lite0):
    x = torch.randn(2, 3, 224, 224)
    maps = explain("gradient", lite0, x, as_target_tensor([1, 2]), layer="block2")
    assert maps.shape == (2, 28, 28)
    with pytest.raises(KeyError, match="roles and aliases"):
        explain("grad_cam", lite0, x, as_target_tensor([1, 2]), layer="no_such_layer")


def test_smoothing_keeps_the_mass_centre_and_widens_the_map():
    from saliency_bench.methods._backprop import smooth_maps

    m = torch.zeros(1, 21, 21)
    m[0, 10, 10] = 1.0
    s = smooth_maps(m, 0.1)
    assert float(s.sum()) == pytest.approx(1.0, rel=1e-5)
    assert int(s[0].argmax()) == 10 * 21 + 10 and float((s > 1e-3).sum()) > 9
