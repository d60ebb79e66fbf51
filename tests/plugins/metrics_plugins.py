"""Test plugins for issue 23's benchmarks: a method that ignores the model (an edge detector), one
that fails on any model but the one the run loaded, and a model whose logits are never finite."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import saliency_bench
from saliency_bench.contracts import ClassInfo, Model

_FIRST: dict[str, int] = {}


@saliency_bench.method("sobel_edges")
def sobel_edges(model, x, targets):
    """Sobel gradient magnitude of the input's channel mean: a map that ignores the model."""
    g = x.float().mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device).view(1, 1, 3, 3)
    gx, gy = F.conv2d(g, kx, padding=1), F.conv2d(g, kx.transpose(2, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt()[:, 0]


@saliency_bench.method("fails_when_randomised")
def fails_when_randomised(model, x, targets):
    """|input| averaged over channels, on the run's own model only: any other net raises."""
    first = _FIRST.setdefault(model.name, id(model.net))
    if id(model.net) != first:
        raise RuntimeError("this method only runs on the model it first saw")
    return x.float().abs().mean(dim=1) + 0 * model.net(x).sum()


class _Nan(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3)) * float("nan")


@saliency_bench.model("nan_net")
def nan_net(weights: str | None = None, device: str = "cpu") -> Model:
    """A conv net whose logits are NaN for every input."""
    torch.manual_seed(0)
    return Model(name="nan_net", net=_Nan().to(device), input_size=(32, 32), mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25), classes=[ClassInfo(0, "c0", "zero"), ClassInfo(1, "c1", "one")],
                 roles={"gradcam": "conv"}, digest="nan")
