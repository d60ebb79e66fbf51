"""A small random-weight CNN as a saliency_bench Model, shared by the pack tests (their expected
values come from the libraries themselves, run on this same network)."""
from __future__ import annotations

import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.registry import get_method


class SmallCNN(nn.Module):
    """A nonlinear network of random weights: convolutions, BatchNorm, ReLU modules, pooling."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3
        self.features[1].running_mean = torch.randn(8, generator=g) * 0.1
        self.features[1].running_var = torch.rand(8, generator=g) + 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def small_model() -> Model:
    classes = [ClassInfo(i, f"n{i:08d}", f"c{i}") for i in range(6)]
    return Model(name="cnn", net=SmallCNN(), input_size=(40, 40), mean=(0.0,) * 3, std=(1.0,) * 3,
                 classes=classes, roles={"gradcam": "features.5"}, aliases={"conv2": "features.4"})


def inputs40() -> torch.Tensor:
    return torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))


def run(name: str, model: Model, x: torch.Tensor, targets, **params) -> torch.Tensor:
    maps, _ = get_method(name, **params).explain(model, x, targets)
    return maps
