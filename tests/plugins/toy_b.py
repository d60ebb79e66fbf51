"""A second tiny model for the tests that compare two models (load with toy.py)."""
from __future__ import annotations

import torch
from torch import nn

import saliency_bench
from saliency_bench.contracts import ClassInfo, Model


@saliency_bench.model("toy_net_b")
def toy_net_b(weights: str | None = None, device: str = "cpu") -> Model:
    """toy_net's architecture with other random weights and a wider first layer."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 2))
    return Model(name="toy_net_b", net=net.to(device), input_size=(32, 32), mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25), classes=[ClassInfo(0, "c0", "zero"), ClassInfo(1, "c1", "one")],
                 roles={"gradcam": "1"}, digest="toy_b")


@saliency_bench.dataset("toy_shifted")
def toy_shifted(*, n: int = 10):
    """toy's samples under other ids (toy100 ...): a dataset that shares no sample with toy
    (toy.py must be loaded too)."""
    base = type(saliency_bench.get_dataset("toy", n=n))

    class Shifted(base):
        name = "toy_shifted"

        @property
        def ids(self) -> list[str]:
            return [f"toy{100 + i:03d}" for i in range(self.n)]

        def load(self, i: int):
            s = super().load(i)
            s.id = self.ids[i]
            return s

    return Shifted(n)
