"""Occlusion against Captum's ``Occlusion`` (an independent implementation).

Captum slides windows from 0 with the given stride and never clips them at the border; its
attribution is, per pixel, the mean over the windows covering it of ``original - occluded``
(the output for the target class). Our ``grid="valid"`` is exactly that grid, so with
``offset=0`` the maps must agree to float tolerance; the input sizes are chosen so that the
windows cover every pixel (Captum leaves uncovered pixels undefined).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.registry import get_method
from saliency_bench.targets import as_target_tensor

captum_attr = pytest.importorskip("captum.attr")


def captum_map(net: nn.Module, x: torch.Tensor, targets: list[int], window: int, stride: int) -> torch.Tensor:
    occ = captum_attr.Occlusion(net)
    with torch.no_grad():
        a = occ.attribute(x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0,
                          target=targets, perturbations_per_eval=64)
    assert torch.allclose(a[:, 0], a[:, 2])  # the window spans the channels
    return a[:, 0]


class SmallCNN(nn.Module):
    """A nonlinear network of random weights (convolutions, ReLU, pooling)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.f = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                               nn.Linear(16 * 9, 5))
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


def test_valid_grid_equals_captum_occlusion_on_a_small_cnn():
    torch.manual_seed(0)
    size, window, stride = 41, 9, 4  # (41 - 9) / 4 = 8: windows 0..32 reach the last pixel
    net = SmallCNN().eval()
    classes = [ClassInfo(i, f"n{i:08d}", f"c{i}") for i in range(5)]
    model = Model(name="cnn", net=net, input_size=(size, size), mean=(0.0,) * 3, std=(1.0,) * 3, classes=classes)
    x = torch.randn(3, 3, size, size)
    targets = [1, 4, 0]
    ours, _ = get_method("occlusion", grid="valid", size=window, stride=stride, offset=0.0, chunk=50).explain(
        model, x, as_target_tensor(targets))
    torch.testing.assert_close(ours, captum_map(net, x, targets, window, stride), rtol=1e-4, atol=1e-5)


@pytest.mark.shared_data
def test_valid_grid_equals_captum_occlusion_on_the_embedded_model_and_a_photo(lite0, photo):
    """The protocol's window and stride (35, 8) on a real photo and the real network; the input
    is 99 px so that the 9x9 windows (0..64) cover it and the test stays fast."""
    from saliency_bench.imageio import to_input

    size = 99
    x = lite0.preprocess(to_input(photo, (size, size))[None]).contiguous()
    x = torch.cat([x, x.flip(-1)])
    targets = [625, 814]  # lifeboat (the photo's class) and another
    ours, _ = get_method("occlusion", grid="valid", offset=0.0).explain(lite0, x, as_target_tensor(targets))
    ref = captum_map(lite0.net, x, targets, 35, 8)
    scale = float(ref.abs().max())
    assert scale > 0.1  # the occlusion matters on this photo: not a comparison of zeros
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * scale)
