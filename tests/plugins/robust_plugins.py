"""Test plugins for the robustness benchmarks (max-sensitivity, infidelity): an all-zero map, a method
that fails on any input that is not an image (a perturbed one), and a model whose logits are NaN on
such inputs. "An image": the input undone by the model's normalisation is on the uint8 grid (k/255),
as every input the harness makes from a file is; the benchmarks' noise moves it off that grid."""
from __future__ import annotations

import torch
from torch import nn

import saliency_bench
from saliency_bench.contracts import ClassInfo, Model

MEAN, STD = 0.5, 0.25  # the toy models' normalisation


def off_grid(x: torch.Tensor) -> torch.Tensor:
    """``[B]``: True where the input is not an image of uint8 pixels (it has been perturbed)."""
    v = (x.float() * STD + MEAN) * 255
    return (v - v.round()).abs().amax(dim=(1, 2, 3)) > 1e-3


@saliency_bench.method("zero_map")
def zero_map(model, x, targets):
    """Zero everywhere: a map with no norm."""
    return x.new_zeros(x.shape[0], *x.shape[-2:])


@saliency_bench.method("fails_on_perturbed")
def fails_on_perturbed(model, x, targets):
    """Brightness on images; raises on an input that is not one (a perturbed input)."""
    if off_grid(x).any():
        raise RuntimeError("this method only explains images of uint8 pixels")
    return x.float().mean(dim=1) + 2.0


class _NanOffGrid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        out = self.conv(x).mean(dim=(2, 3))
        nan = torch.where(off_grid(x), float("nan"), 1.0).to(out)  # NaN logits, and NaN gradients
        return out * nan[:, None]


@saliency_bench.model("nan_off_grid_net")
def nan_off_grid_net(weights: str | None = None, device: str = "cpu") -> Model:
    """A conv net with finite logits on images and NaN logits on perturbed inputs."""
    torch.manual_seed(0)
    return Model(name="nan_off_grid_net", net=_NanOffGrid().to(device), input_size=(32, 32),
                 mean=(MEAN,) * 3, std=(STD,) * 3,
                 classes=[ClassInfo(0, "c0", "zero"), ClassInfo(1, "c1", "one")],
                 roles={"gradcam": "conv"}, digest="nan_off_grid")
