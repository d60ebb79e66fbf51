"""Occlusion saliency: score the image with parts hidden, credit the parts by the score's drop.

* ``occlusion`` (Zeiler & Fergus, ECCV 2014) as Fong & Vedaldi 2017 (§5) ran it in their
  ``occlusion_mask.py``: 35x35 mean-pixel squares on the authors' grid, heatmap = ``1 +`` the
  drop of the target logit averaged over the squares covering each pixel;
* ``blur_occlusion``: soft discs on the stride-8 grid blending in the mask's blurred image;
* ``variable_occlusion``: 784 random soft discs; the centre of the smallest among the 10% most
  suppressing ones, a point method.

The two disc methods follow the paper's text (no released code). Grids, options and the Captum
equivalence: docs/PROTOCOLS.md §5.6. The perturbed copies are scored by :mod:`._perturb`.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

import saliency_bench
from saliency_bench.contracts import POINT
from saliency_bench.targets import Targets, target_score

from ._perturb import (accumulate, authors_corners, blurred_original, device_chunk, grid_centres, null_image,
                       perturbation_scores, soft_discs, square_maps, squares_at, valid_corners)


def _base_score(model, x: torch.Tensor, targets: Targets) -> torch.Tensor:
    with torch.no_grad():
        return target_score(model.net(x), targets).float()


@lru_cache(maxsize=8)
def _grid_discs(size: tuple[int, int], stride: int, diameter: float, sigma: float, device: str) -> torch.Tensor:
    # The grid's discs depend only on the geometry: build them once per size and device.
    c = grid_centres(size, stride, device=torch.device(device))
    r = torch.full((len(c),), diameter / 2.0, device=c.device)
    return soft_discs(c, r, size, sigma)


GRIDS = ("authors", "centred", "valid")


def occlusion_squares(hw: tuple[int, int], grid: str, size: int, per_side: int, stride: int,
                      device) -> torch.Tensor:
    """``[N,H,W]`` the occluding squares of a grid (see :func:`occlusion`)."""
    if grid == "authors":
        return squares_at(authors_corners(hw, per_side, device), size, hw)
    if grid == "centred":
        return square_maps(grid_centres(hw, stride, device=device), size, hw)
    if grid == "valid":
        return squares_at(valid_corners(hw, size, stride, device), size, hw)
    raise ValueError(f"grid must be one of {', '.join(map(repr, GRIDS))}, not {grid!r}")


@saliency_bench.method("occlusion", cost=lambda grid="authors", per_side=28, stride=8, **_: (
    per_side ** 2 if grid == "authors" else (224 // stride) ** 2))
def occlusion(model, x: torch.Tensor, targets: Targets, *, size: int = 35, grid: str = "authors",
              per_side: int = 28, stride: int = 8, offset: float = 1.0, chunk: int = 0) -> torch.Tensor:
    """Occlusion (Zeiler & Fergus 2014) as Fong & Vedaldi ran it (``occlusion_mask.py``):
    35x35 mean-pixel squares, heatmap = ``offset`` + the target logit's drop averaged over the
    squares covering each pixel (their ``1 - (occluded - original)``).

    ``grid``: ``"authors"`` (corners ``linspace(0, side, per_side, endpoint=False).astype(int)``,
    squares clipped at the bottom and right), ``"centred"`` (centred on the ``stride`` grid,
    clipped on every side) or ``"valid"`` (Captum's windows wholly inside the image);
    ``offset=0`` gives the drop itself (docs/PROTOCOLS.md §5.6). ``chunk``: copies per forward
    pass (0: 16 on a CPU, 256 on a GPU).
    """
    hw = tuple(x.shape[-2:])
    squares = occlusion_squares(hw, grid, int(size), int(per_side), int(stride), x.device)
    scores = perturbation_scores(model.net, x, torch.zeros((), device=x.device, dtype=x.dtype),
                                 squares, targets, target_score, device_chunk(chunk, x.device))
    drops = _base_score(model, x, targets)[:, None] - scores
    return accumulate(drops, squares) + float(offset)


@saliency_bench.method("blur_occlusion", views={"blurred": blurred_original}, cost=lambda stride=8, **_: (224 // stride) ** 2)
def blur_occlusion(model, x: torch.Tensor, targets: Targets, *, diameter: float = 35.0, stride: int = 8,
                   edge_sigma: float = 10.0, blur_sigma: float = 10.0, blur_source: str = "original",
                   chunk: int = 0, blurred: torch.Tensor | None = None) -> torch.Tensor:
    """Blur occlusion (Fong & Vedaldi 2017 §5): soft discs (diameter 35, edge sigma 10) blending
    in the blurred image, centred on the stride-8 grid; drop of the target logit averaged with
    the discs' weights. ``blurred`` is the mask's view of the original (docs/PROTOCOLS.md §6);
    ``blur_source="input"``, or a direct call without it, blurs the network input instead.
    ``chunk`` as in :func:`occlusion`.
    """
    hw = tuple(x.shape[-2:])
    discs = _grid_discs(hw, stride, float(diameter), float(edge_sigma), str(x.device))
    null = null_image(x, blurred, blur_sigma, blur_source)
    scores = perturbation_scores(model.net, x, null, discs, targets, target_score, device_chunk(chunk, x.device))
    drops = _base_score(model, x, targets)[:, None] - scores
    return accumulate(drops, discs)


def random_discs(n: int, size: tuple[int, int], seed: int, area_mu: float = 7.5060, area_sigma: float = 1.2848,
                 y_mean: float = 116.0759, y_std: float = 47.5054, reference: int = 224,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random discs, ``(centres [n,2] as (x, y), radii [n])``, reproducible from ``seed``.

    Area ~ LogNormal(mu, sigma) and y ~ Normal(mean, std) are statistics of ``reference`` x
    ``reference`` images; for another size they scale with the image (lengths by H/reference,
    areas by H*W/reference^2). Centres lie in the image (y: the Normal truncated to it).
    """
    h, w = size
    g = torch.Generator().manual_seed(int(seed))  # drawn on the CPU: the same discs on any device
    area = torch.exp(area_mu + area_sigma * torch.randn(n, generator=g)) * (h * w) / reference ** 2
    radius = torch.sqrt(area / math.pi)
    # y is the Normal truncated to the image (redrawn, not clamped: clamping would pile discs
    # on the border rows); 8n candidates leave a shortfall only for absurd statistics
    ys = (y_mean + y_std * torch.randn(8 * n, generator=g)) * h / reference
    ys = ys[(ys >= 0) & (ys <= h - 1)]
    if len(ys) < n:
        raise ValueError(f"y ~ Normal({y_mean}, {y_std}) rarely falls inside a {h}-pixel image")
    y = ys[:n]
    x = torch.rand(n, generator=g) * (w - 1)
    centres = torch.stack([x, y], dim=1)
    return centres.to(device), radius.to(device)


@lru_cache(maxsize=4)
def _random_disc_maps(n: int, size: tuple[int, int], seed: int, edge_sigma: float,
                      device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    centres, radii = random_discs(n, size, seed, device=torch.device(device))
    return centres, radii, soft_discs(centres, radii, size, edge_sigma)


@saliency_bench.method("variable_occlusion", kind=POINT, views={"blurred": blurred_original},
                       cost=lambda discs=784, **_: discs)
def variable_occlusion(model, x: torch.Tensor, targets: Targets, *, discs: int = 784, seed: int = 0,
                       edge_sigma: float = 10.0, blur_sigma: float = 10.0, blur_source: str = "original",
                       top_fraction: float = 0.1, chunk: int = 0, blurred: torch.Tensor | None = None):
    """Variable occlusion (Fong & Vedaldi 2017 §5): 784 random soft blur discs; the centre of the
    smallest disc among the 10% most target-suppressing ones, as an (x, y) point.

    No released program: this follows the paper's text. The blurred image is the mask's
    (``blurred`` view, see :func:`blur_occlusion`; ``blur_source="input"`` or a direct call
    without the view blurs the input). ``chunk`` as in :func:`occlusion`."""
    hw = tuple(x.shape[-2:])
    centres, radii, maps = _random_disc_maps(int(discs), hw, int(seed), float(edge_sigma), str(x.device))
    null = null_image(x, blurred, blur_sigma, blur_source)
    scores = perturbation_scores(model.net, x, null, maps, targets, target_score, device_chunk(chunk, x.device))
    drops = _base_score(model, x, targets)[:, None] - scores  # [B,N]
    k = max(1, int(math.ceil(top_fraction * len(radii))))
    top = drops.topk(k, dim=1).indices  # [B,k] the most suppressing discs
    smallest = top.gather(1, radii[top].argmin(dim=1, keepdim=True))[:, 0]  # [B]
    points = centres[smallest].to(x.dtype)
    return points, {"radius": radii[smallest], "drop": drops.gather(1, smallest[:, None])[:, 0]}
