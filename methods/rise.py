"""RISE (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018, eq. 6): the expected score under random masks, credited to the kept pixels,

    heatmap(u) = 1/N sum_n  sigmoid(s_target(x * M_n)) * M_n(u)

with ``M_n`` a ``cells x cells`` grid of cells kept with probability ``p``, upsampled bilinearly
to the input plus one cell and cropped at a random shift (sec. 3.2). The masked copy ``x * M``
is taken in the network's normalised input space, where 0 is the mean pixel.

Program followed: TorchRay's ``rise`` (the program of its pointing-game table, run there with
its defaults: ``num_masks=8000``, ``num_cells=7``, ``p=0.5``, ``seed=0``; the reflection-padded
upsampling ``_upsample_reflect``; the sigmoid of the output; the sum divided by N). The masks
are TorchRay's own: its generator seeded with ``seed`` is replayed draw for draw (in its chunks
of ``batch_size=32``), so a run here and TorchRay's ``rise`` use the same 8000 masks for every
image, and the maps are equal (tests; also with masks handed in). Batched: every chunk of masks
is made once and scored on the whole batch (:func:`._perturb.perturbation_scores`, one pass per
distinct image for the categories of one image), and only the targets' maps are accumulated
(TorchRay accumulates all classes); the copies go to the network channels-last. For a set of
classes the sigmoid is of its log-sum-exp.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.targets import Targets, target_score

from ._perturb import perturbation_scores


@lru_cache(maxsize=4)
def _draws(n: int, cells: int, p: float, size: tuple[int, int], seed: int, batch_size: int):
    """TorchRay's random draws, in its order: per chunk of ``batch_size`` masks the grid
    ``rand(k,1,cells,cells) < p``, then the row shifts, then the column shifts."""
    g = torch.Generator().manual_seed(int(seed))
    cell = [int(math.ceil(s / cells)) for s in size]
    grids, sx, sy = [], [], []
    for k0 in range(0, n, batch_size):
        k = min(batch_size, n - k0)
        grids.append((torch.rand(k, 1, cells, cells, generator=g) < p).float())
        sx.append(torch.randint(0, cell[0], (k,), generator=g))
        sy.append(torch.randint(0, cell[1], (k,), generator=g))
    return torch.cat(grids), torch.cat(sx), torch.cat(sy)


def _upsample_reflect(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TorchRay's ``_upsample_reflect``: reflection-pad by one cell, bilinear to whole cells, crop."""
    cell = [int(math.ceil(s / o)) for s, o in zip(size, grid.shape[2:])]
    pad = [c * (o + 2) for c, o in zip(cell, grid.shape[2:])]
    up = F.interpolate(F.pad(grid, (1, 1, 1, 1), mode="reflect"), pad, mode="bilinear", align_corners=False)
    return up[:, :, cell[0]:cell[0] + size[0], cell[1]:cell[1] + size[1]]


def rise_masks(n: int, size: tuple[int, int], *, cells: int = 7, p: float = 0.5, seed: int = 0,
               start: int = 0, stop: int | None = None, batch_size: int = 32, device=None) -> torch.Tensor:
    """Masks ``start..stop`` ``[k,H,W]`` of TorchRay's ``rise(seed=seed, num_masks=n)`` for an input of ``size``."""
    h, w = size
    grids, sx, sy = _draws(int(n), int(cells), float(p), (h, w), int(seed), int(batch_size))
    stop = n if stop is None else stop
    cell = [int(math.ceil(s / cells)) for s in size]
    up = _upsample_reflect(grids[start:stop].to(device), (h + cell[0], w + cell[1]))[:, 0]
    rows = sx[start:stop, None].to(up.device) + torch.arange(h, device=up.device)  # [k,H]
    cols = sy[start:stop, None].to(up.device) + torch.arange(w, device=up.device)  # [k,W]
    k = torch.arange(stop - start, device=up.device)[:, None, None]
    return up[k, rows[:, :, None], cols[:, None, :]]


def rise_maps(net, x: torch.Tensor, targets, masks, n: int, chunk: int = 256) -> torch.Tensor:
    """``[B,H,W]`` RISE maps of ``x`` from the masks ``masks(start, stop) -> [k,H,W]`` (``n`` of them)."""
    b, _, h, w = x.shape
    x = x.contiguous(memory_format=torch.channels_last)  # the masked copies too: oneDNN's and cuDNN's fast layout
    sal = torch.zeros(b, h * w, device=x.device, dtype=torch.float32)
    zero = torch.zeros((), device=x.device, dtype=x.dtype)

    def score(logits, t):
        return torch.sigmoid(target_score(logits.flatten(1), t))

    for k0 in range(0, n, chunk):
        m = masks(k0, min(n, k0 + chunk)).to(device=x.device, dtype=torch.float32)
        s = perturbation_scores(net, x, zero, 1 - m, targets, score, chunk)  # x * M: x + (1 - M) * (0 - x)
        sal += s @ m.flatten(1)
    return (sal / n).view(b, h, w)


@saliency_bench.method("rise", cost=lambda masks=8000, **_: masks)
def rise(model, x: torch.Tensor, targets: Targets, *, masks: int = 8000, cells: int = 7,
         p: float = 0.5, seed: int = 0, chunk: int = 0) -> torch.Tensor:
    """RISE (Petsiuk et al. 2018): mean of the masks weighted by the sigmoid of the masked
    image's target score; TorchRay's masks (8000 of 7x7 cells, p = 0.5, seed 0)."""
    size = tuple(x.shape[-2:])
    chunk = chunk if chunk > 0 else (256 if x.device.type == "cuda" else 32)  # masks per pass (TorchRay: 32)

    def make(start: int, stop: int) -> torch.Tensor:
        return rise_masks(int(masks), size, cells=cells, p=p, seed=seed, start=start, stop=stop, device=x.device)

    return rise_maps(model.net, x, targets, make, int(masks), int(chunk))
