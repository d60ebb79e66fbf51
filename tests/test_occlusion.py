"""Occlusion, blur occlusion and variable occlusion on toy models with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.registry import get_method
from saliency_bench.targets import as_target_tensor
from saliency_bench.methods._perturb import authors_corners, gaussian_blur, grid_centres, soft_discs, square_maps, \
    squares_at


class Linear(nn.Module):
    """logit_c = <W_c, x>: every occlusion drop is a known sum of pixels."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)  # [C,3,H,W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,kchw->bk", x, self.w)


class PatchReader(nn.Module):
    """logit 0 = 10 * mean of the image over a fixed patch; logit 1 = 0."""

    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 10 * x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1) + 0 * self.dummy


def toy_model(net: nn.Module, size: int) -> Model:
    classes = [ClassInfo(i, f"n{i:08d}", f"class{i}") for i in range(2)]
    return Model(name="toy", net=net, input_size=(size, size), mean=(0.0,) * 3, std=(1.0,) * 3, classes=classes)


def hand_occlusion(w: np.ndarray, x: np.ndarray, side: int, stride: int) -> np.ndarray:
    """The centred reading, pixel by pixel: drop of <w, x> when a square centred on the grid
    ``stride/2 + k*stride`` is zeroed, averaged over the squares covering each pixel."""
    _, h, wd = x.shape
    heat = np.zeros((h, wd))
    count = np.zeros((h, wd))
    lo, hi = side // 2, side - 1 - side // 2
    for cy in range(stride // 2, h, stride):
        for cx in range(stride // 2, wd, stride):
            y0, y1 = max(0, cy - lo), min(h, cy + hi + 1)
            x0, x1 = max(0, cx - lo), min(wd, cx + hi + 1)
            drop = float((w[:, y0:y1, x0:x1] * x[:, y0:y1, x0:x1]).sum())
            heat[y0:y1, x0:x1] += drop
            count[y0:y1, x0:x1] += 1
    return heat / count


def authors_occlusion(w: np.ndarray, x: np.ndarray, side: int, per_side: int) -> np.ndarray:
    """The authors' ``occlusion_mask.py`` in NumPy: masks ``[locs[i]:locs[i]+side,
    locs[j]:locs[j]+side]`` with ``locs = linspace(0, H, per_side, False).astype(int)``,
    ``heatmap = sum(m * scores) / sum(m) - orig``, localised as ``1 - heatmap``."""
    _, h, wd = x.shape
    locs = np.linspace(0, h, per_side, False).astype(int)
    masks = np.zeros((per_side ** 2, h, wd))
    c = 0
    for i in range(per_side):
        for j in range(per_side):
            masks[c, locs[i]:locs[i] + side, locs[j]:locs[j] + side] = 1
            c += 1
    orig = float((w * x).sum())
    scores = np.array([float((w * x * (1 - mk)).sum()) for mk in masks])
    heatmap = (masks * scores[:, None, None]).sum(0) / masks.sum(0) - orig
    return 1 - heatmap


@pytest.mark.parametrize("grid", ["authors", "centred"])
def test_occlusion_equals_the_reference_map_for_a_linear_logit(grid):
    torch.manual_seed(0)
    size = 40
    w = torch.randn(2, 3, size, size)
    x = torch.randn(2, 3, size, size)
    model = toy_model(Linear(w), size)
    targets = as_target_tensor([0, 1])
    params = {"offset": 0.0} if grid == "centred" else {}
    method = get_method("occlusion", size=9, grid=grid, per_side=10, stride=4, chunk=37, **params)  # chunk splits images
    maps, _ = method.explain(model, x, targets)
    for b in range(2):
        wb, xb = w[int(targets[b, 0])].numpy(), x[b].numpy()
        expected = authors_occlusion(wb, xb, 9, 10) if grid == "authors" else hand_occlusion(wb, xb, 9, 4)
        np.testing.assert_allclose(maps[b].numpy(), expected, rtol=1e-4, atol=1e-4)


class PixelSum(nn.Module):
    """logit 0 = the sum of the image over its pixels, averaged over channels; logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=1).sum(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_authors_grid_and_the_one_plus_drop_offset_by_hand():
    """16x16 ones, 4 corners per side (0, 4, 8, 12), 6-px squares clipped at the border: a
    square's drop is its clipped area, and a pixel's value is 1 + the mean area of the squares
    covering it."""
    maps, _ = get_method("occlusion", size=6, per_side=4).explain(toy_model(PixelSum(), 16),
                                                                  torch.ones(1, 3, 16, 16), as_target_tensor([0]))
    m = maps[0]
    assert float(m[0, 0]) == pytest.approx(1 + 36)  # square (0, 0) alone
    assert float(m[5, 5]) == pytest.approx(1 + 36)  # squares (0|4, 0|4), all whole
    assert float(m[15, 15]) == pytest.approx(1 + 16)  # square (12, 12) alone, clipped to 4x4
    assert float(m[13, 13]) == pytest.approx(1 + (36 + 24 + 24 + 16) / 4)  # (8|12, 8|12)
    assert float(m[3, 13]) == pytest.approx(1 + (36 + 24) / 2)  # (0, 8|12)
    drop, _ = get_method("occlusion", size=6, per_side=4, offset=0.0).explain(
        toy_model(PixelSum(), 16), torch.ones(1, 3, 16, 16), as_target_tensor([0]))
    torch.testing.assert_close(maps, drop + 1)


def test_authors_grid_is_28x28_corners_0_to_216_with_squares_clipped_at_the_border():
    corners = authors_corners((224, 224), 28)
    assert len(corners) == 784
    assert corners[0].tolist() == [0.0, 0.0] and corners[1].tolist() == [8.0, 0.0]
    assert corners[-1].tolist() == [216.0, 216.0]
    np.testing.assert_array_equal(corners[:28, 0].numpy(), np.linspace(0, 224, 28, endpoint=False).astype(int))
    last = squares_at(corners[-1:], 35, (224, 224))[0]
    assert last.sum().item() == 8 * 8 and bool(last[216:, 216:].all())
    cover = squares_at(corners, 35, (224, 224)).sum(0)
    assert cover[0, 0] == 1 and cover[223, 223] == 16 and cover.min() >= 1  # every pixel covered


def test_centred_grid_is_28x28_squares_of_35_px_at_stride_8():
    centres = grid_centres((224, 224), 8)
    assert len(centres) == 784
    assert centres[0].tolist() == [4.0, 4.0] and centres[-1].tolist() == [220.0, 220.0]
    sq = square_maps(centres[29:30], 35, (224, 224))[0]  # centre (12, 12)
    ys, xs = torch.nonzero(sq, as_tuple=True)
    assert (ys.min().item(), ys.max().item(), xs.min().item(), xs.max().item()) == (0, 29, 0, 29)
    full = square_maps(torch.tensor([[112.0, 112.0]]), 35, (224, 224))[0]
    assert full.sum().item() == 35 * 35


def test_occlusion_result_does_not_depend_on_chunk_or_batching():
    torch.manual_seed(1)
    w = torch.randn(2, 3, 24, 24)
    x = torch.randn(3, 3, 24, 24)
    model = toy_model(Linear(w), 24)
    t = as_target_tensor([0, 1, 0])
    a, _ = get_method("occlusion", size=7, per_side=6, chunk=5).explain(model, x, t)
    b = torch.cat([get_method("occlusion", size=7, per_side=6, chunk=1000).explain(model, x[i:i + 1], t[i:i + 1])[0]
                   for i in range(3)])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)  # logits ~ 40: float32 sums in another order


def test_copies_of_a_channels_last_input_are_channels_last_and_the_default_chunk_is_the_devices():
    """The perturbed copies of a channels-last input (as the models' inputs are) reach the network
    channels-last, in blocks of one image and of several, with the values of ``x + P (null - x)``."""
    from saliency_bench.methods._perturb import CPU_CHUNK, device_chunk, perturbation_scores

    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 10).contiguous(memory_format=torch.channels_last)
    null = torch.randn(2, 3, 12, 10)
    perturb = (torch.rand(7, 12, 10) > 0.5).float()
    seen: list[torch.Tensor] = []

    def net(c):
        seen.append(c.clone(memory_format=torch.preserve_format))
        return c.flatten(1)[:, :4].double()

    for chunk in (3, 100):  # one image times a block of masks; a block of both images times every mask
        perturbation_scores(net, x, null, perturb, as_target_tensor([1, 2]), lambda o, t: o.gather(1, t).squeeze(1),
                            chunk=chunk)
    want = x[:, None] + perturb[None, :, None] * (null - x)[:, None]  # [B, N, C, H, W]
    blocks = [want[b, n0:n0 + 3] for b in range(2) for n0 in (0, 3, 6)] + [want.flatten(0, 1)]
    assert len(seen) == len(blocks) == 7
    for got, w in zip(seen, blocks):
        assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
        torch.testing.assert_close(got, w, rtol=0, atol=1e-6)
    assert device_chunk(0, torch.device("cpu")) == CPU_CHUNK and device_chunk(5, torch.device("cpu")) == 5
    assert device_chunk(0, torch.device("cuda")) == 256


def test_gaussian_blur_matches_scipy_with_edge_replication():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(1, 1, 30, 41)
    ours = gaussian_blur(x, 3.0)[0, 0].numpy()
    ref = gaussian_filter(x[0, 0].numpy().astype(np.float64), 3.0, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_blur_occlusion_peaks_on_the_patch_the_model_reads():
    size = 64
    x = torch.zeros(1, 3, size, size)
    x[:, :, 40:52, 8:20] = 3.0  # a bright patch: blurring it lowers the score
    model = toy_model(PatchReader(slice(40, 52), slice(8, 20)), size)
    maps, _ = get_method("blur_occlusion", chunk=100).explain(model, x, as_target_tensor([0]))
    peak = maps[0].max()
    # the coverage-weighted average spreads the credit: the patch holds the top of the map,
    # pixels far from it get none
    assert maps[0, 40:52, 8:20].mean() >= 0.8 * peak
    assert maps[0, 46, 14] > 0 and maps[0, 5, 60].abs() < 0.02 * maps[0, 46, 14]


def test_blur_occlusion_discs_have_diameter_35_and_soft_edges():
    disc = soft_discs(torch.tensor([[112.0, 112.0]]), torch.tensor([17.5]), (224, 224), 10.0)[0]
    assert disc.max() < 1.0  # the Gaussian edge reaches the centre of so small a disc
    assert disc[112, 112] > 0.5 and disc[112, 112 + 17] == pytest.approx(0.5, abs=0.1)
    assert disc[112, 112 + 60] < 1e-3


def test_variable_occlusion_points_into_the_region_the_model_reads():
    size = 224
    torch.manual_seed(0)
    x = torch.rand(2, 3, size, size) * 0.2
    x[0, :, 100:120, 150:170] = 3.0
    x[1, :, 100:120, 150:170] = 3.0
    model = toy_model(PatchReader(slice(100, 120), slice(150, 170)), size)
    method = get_method("variable_occlusion", chunk=512)
    assert method.kind == "point"
    points, info = method.explain(model, x, as_target_tensor([0, 0]))
    assert points.shape == (2, 2)
    for b in range(2):
        px, py = points[b].tolist()
        # the disc chosen suppresses the score, so it (with its soft edge) reaches the patch
        reach = float(info["radius"][b]) + 3 * 10.0
        dx = max(150 - px, 0, px - 169)
        dy = max(100 - py, 0, py - 119)
        assert (dx * dx + dy * dy) ** 0.5 <= reach
    assert torch.equal(points[0], points[1])  # same image, same seed: the same answer


def test_variable_occlusion_discs_follow_the_stated_distributions():
    from saliency_bench.methods.occlusion import random_discs

    centres, radii = random_discs(20000, (224, 224), seed=3)
    area = np.pi * radii.numpy() ** 2
    assert np.log(area).mean() == pytest.approx(7.5060, abs=0.05)
    assert np.log(area).std() == pytest.approx(1.2848, abs=0.05)
    assert centres.min() >= 0 and centres.max() <= 223
    assert centres[:, 1].median().item() == pytest.approx(116.0759, abs=2.0)
    again, _ = random_discs(20000, (224, 224), seed=3)
    assert torch.equal(centres, again)


@pytest.mark.parametrize("name", ["occlusion", "blur_occlusion"])
def test_a_repeated_image_is_passed_through_the_network_once_for_all_its_targets(name):
    """COCO gives one sample per category of an image: the copies of one image serve them all."""
    torch.manual_seed(0)
    net = Linear(torch.randn(3, 3, 24, 24))
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]) and None)
    model = toy_model(net, 24)
    a, b = torch.randn(1, 3, 24, 24), torch.randn(1, 3, 24, 24)
    method = get_method(name, stride=4, chunk=1000, **({"per_side": 6} if name == "occlusion" else {}))
    batch = torch.cat([a, b, a, a])
    targets = as_target_tensor([[0], [1], [1], [2]])
    maps = method.explain(model, batch, targets)[0]
    copies = sum(calls)
    calls.clear()
    alone = [method.explain(model, x, as_target_tensor([[t]]))[0][0]
             for x, t in ((a, 0), (b, 1), (a, 1), (a, 2))]
    per_image = (sum(calls) - 4) // 4  # alone: the copies plus one unperturbed forward each
    assert copies == 2 * per_image + 4  # batched: the copies of two distinct images, not four
    for got, want in zip(maps, alone):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["blur_occlusion", "variable_occlusion"])
def test_the_blurred_view_is_the_occluders_fill(name):
    """With a 'blurred' view equal to the image itself no disc changes anything: every drop is
    0. Without the view (a direct call) the input's blur is the fill and the drops are not."""
    size = 64
    torch.manual_seed(0)
    x = torch.zeros(1, 3, size, size)
    x[:, :, 20:40, 20:40] = 3.0
    model = toy_model(PatchReader(slice(20, 40), slice(20, 40)), size)
    params = {"chunk": 400, **({"discs": 64} if name == "variable_occlusion" else {})}
    method = get_method(name, **params)
    same, info_same = method.explain(model, x, as_target_tensor([0]), blurred=x.clone())
    direct, info_direct = method.explain(model, x, as_target_tensor([0]))
    if name == "blur_occlusion":
        assert float(same.abs().max()) == 0.0 and float(direct.max()) > 0.1
    else:
        assert float(info_same["drop"].abs().max()) == 0.0 and float(info_direct["drop"].max()) > 0.1
    as_input, _ = get_method(name, blur_source="input", **params).explain(model, x, as_target_tensor([0]),
                                                                         blurred=x.clone())
    torch.testing.assert_close(as_input, direct)  # blur_source="input" ignores the view
