"""The perturbation engine shared by the mask and occlusion families.

Three pieces, all batched and on the input's device:

* :func:`gaussian_blur` — a separable Gaussian blur (the "blurred copy" ``blur(x, sigma0)``
  of Fong & Vedaldi 2017, eq. 2, and the soft edges of discs and masks);
* :func:`soft_discs` — discs of given centres and radii, edges softened by a Gaussian
  (the blur-occlusion discs, the variable-occlusion discs, the circular mask initialisation);
* :func:`perturbation_scores` — "apply masks, score": for every image ``b`` and every mask
  ``n`` the score of ``x[b] * (1 - P[n]) + null[b] * P[n]``, evaluated in large batches of
  perturbed copies (``chunk`` copies per forward pass), with one Python iteration per chunk,
  never per image or per mask.

Conventions: a *perturbation map* ``P`` is 1 where the image is replaced by the null image
(occluded), 0 where it is kept; the learned mask ``M`` of the paper is the opposite (``M = 1``
keeps the pixel), so ``P = 1 - M``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius ``ceil(truncate * sigma)`` (scipy's convention)."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Blur ``[B,C,H,W]`` with a Gaussian of standard deviation ``sigma`` pixels.

    Borders are extended by replication (the image's edge pixels continue outwards), which,
    unlike zero padding, neither darkens nor brightens the border and works for any image size.
    ``sigma <= 0`` returns ``x`` unchanged. Differentiable (the mask's smoothing is
    back-propagated through, where the released code skipped it in its hand-written gradient).
    """
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma, truncate, device=x.device, dtype=x.dtype)
    r = (k.numel() - 1) // 2
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def soft_discs(centres: torch.Tensor, radii: torch.Tensor, size: tuple[int, int], sigma: float,
               chunk: int = 64) -> torch.Tensor:
    """``[N,H,W]`` discs (1 inside) of the given ``centres`` ``[N,2]`` as (x, y) pixels and
    ``radii`` ``[N]``, each blurred by a Gaussian of ``sigma`` (PROTOCOLS.md §5 blur occlusion,
    §6 initialisation). A pixel ``(i, j)`` is inside when ``(j-x)^2 + (i-y)^2 <= r^2``.
    """
    h, w = size
    device = centres.device
    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    out = torch.empty(len(radii), h, w, device=device)
    for s in range(0, len(radii), chunk):  # bounded memory for the blur; a few passes in all
        c, r = centres[s:s + chunk].float(), radii[s:s + chunk].float()
        d2 = (xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2
        hard = (d2 <= r[:, None, None] ** 2).float()
        out[s:s + chunk] = gaussian_blur(hard[:, None], sigma)[:, 0]
    return out


def grid_centres(size: tuple[int, int], stride: int, device=None) -> torch.Tensor:
    """``[N,2]`` (x, y) centres of a regular grid with ``stride`` pixels, centred in each cell:
    ``stride/2, 3*stride/2, ...`` (a 28x28 grid for 224 px and stride 8), row-major."""
    h, w = size
    ys = torch.arange(stride // 2, h, stride, device=device, dtype=torch.float32)
    xs = torch.arange(stride // 2, w, stride, device=device, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def square_maps(centres: torch.Tensor, side: int, size: tuple[int, int]) -> torch.Tensor:
    """``[N,H,W]`` squares of ``side`` pixels centred on ``centres`` (x, y), clipped to the image.

    An odd side is centred exactly (35 -> centre +-17); an even side extends one pixel further
    up/left than down/right.
    """
    h, w = size
    device = centres.device
    lo = side // 2
    hi = side - 1 - lo
    yy = torch.arange(h, device=device).view(1, h, 1)
    xx = torch.arange(w, device=device).view(1, 1, w)
    cx = centres[:, 0].round().long().view(-1, 1, 1)
    cy = centres[:, 1].round().long().view(-1, 1, 1)
    inside = (yy >= cy - lo) & (yy <= cy + hi) & (xx >= cx - lo) & (xx <= cx + hi)
    return inside.float()


def perturbation_scores(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, null: torch.Tensor,
                        perturb: torch.Tensor, targets: torch.Tensor, score: ScoreFn,
                        chunk: int = 256) -> torch.Tensor:
    """``[B,N]`` scores of every image under every perturbation.

    ``x``, ``null``: ``[B,C,H,W]`` (``null`` may be ``[1,C,H,W]`` or a scalar tensor for a
    constant fill); ``perturb``: ``[N,H,W]`` (the same maps for every image) or ``[B,N,H,W]``
    (per image), 1 = replaced by ``null``. The ``B*N`` perturbed copies are scored ``chunk`` at a
    time: ``score(net(copies), targets_of_copies)`` must return one value per copy.
    """
    b = x.shape[0]
    per_image = perturb.ndim == 4
    n = perturb.shape[1] if per_image else perturb.shape[0]
    total = b * n
    out = torch.empty(total, device=x.device, dtype=torch.float32)
    null = null.expand_as(x) if null.ndim == 4 else null
    with torch.no_grad():
        for s in range(0, total, chunk):
            idx = torch.arange(s, min(s + chunk, total), device=x.device)
            bi, ni = idx // n, idx % n
            p = (perturb[bi, ni] if per_image else perturb[ni]).unsqueeze(1).to(x.dtype)
            nb = null[bi] if null.ndim == 4 else null
            copies = x[bi] * (1 - p) + nb * p
            out[s:s + len(idx)] = score(net(copies), targets[bi]).float()
    return out.view(b, n)


def accumulate(drops: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``[B,H,W]``: each pixel's weighted mean of the drops of the perturbations that cover it,
    ``sum_n drops[b,n] * W[n] / sum_n W[n]`` (PROTOCOLS.md §5, occlusion: accumulated on the
    occluded pixels and divided by the number of masks covering each pixel). Pixels no
    perturbation covers are 0."""
    cover = weights.sum(0)
    heat = torch.einsum("bn,nhw->bhw", drops.float(), weights.float())
    return torch.where(cover > eps, heat / cover.clamp_min(eps), torch.zeros_like(heat))
