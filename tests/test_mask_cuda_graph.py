"""The mask's CUDA-graph loop (``cuda_graph=True``) against the eager loop, on a GPU.

Skipped without CUDA. The graph replays the same step (offsets copied into a static tensor
before each replay; Adam with its step count on the device, as the eager loop on a GPU), so with
deterministic kernels the masks must agree to float tolerance; the network's Python forward is
entered only by the warm-up, the capture and the evaluations outside the loop, not once per
step.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.targets import as_target_tensor
from saliency_bench.methods.mask import _GRAPH_WARMUP, learn_mask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.f = nn.Sequential(nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16), nn.ReLU(),
                               nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(32, 10))
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


@pytest.mark.parametrize("amp", [False, True])
def test_graphed_loop_equals_the_eager_loop(amp):
    net = SmallCNN().cuda().eval()
    classes = [ClassInfo(i, f"n{i:08d}", f"c{i}") for i in range(10)]
    model = Model(name="cnn", net=net, input_size=(64, 64), mean=(0.0,) * 3, std=(1.0,) * 3, classes=classes)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 64, 64, generator=g).cuda()
    t = as_target_tensor([0, 3, 5, 9]).cuda()
    calls = [0]
    net.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    det = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        runs = {}
        for graphed in (False, True):
            calls[0] = 0
            runs[graphed] = learn_mask(model, x, t, iterations=40, amp=amp, cuda_graph=graphed, seed=2)
            runs[graphed] = (*runs[graphed], calls[0])
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det
    (eager, info_e, calls_e), (graph, info_g, calls_g) = runs[False], runs[True]
    assert calls_e - calls_g == 40 - _GRAPH_WARMUP - 1  # replays, not Python forwards
    torch.testing.assert_close(graph, eager, rtol=0, atol=1e-5)
    torch.testing.assert_close(info_g["loss"], info_e["loss"], rtol=1e-4, atol=1e-6)
