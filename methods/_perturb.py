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
from functools import lru_cache
from typing import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius ``ceil(truncate * sigma)`` (scipy's convention)."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@lru_cache(maxsize=32)
def _blur_matrix(n: int, sigma: float, truncate: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[n,n]`` matrix of the 1-D Gaussian blur with edge replication folded in."""
    k = gaussian_kernel1d(sigma, truncate, dtype=torch.float64)
    r = (k.numel() - 1) // 2
    cols = (torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]).clamp(0, n - 1)
    g = torch.zeros(n, n, dtype=torch.float64).scatter_add_(1, cols, k.expand(n, -1).contiguous())
    return g.to(device=device, dtype=dtype)


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Blur ``[..., H, W]`` with a Gaussian of standard deviation ``sigma`` pixels.

    Borders are extended by replication (the image's edge pixels continue outwards), which,
    unlike zero padding, neither darkens nor brightens the border and works for any image size.
    Computed as ``G_H @ x @ G_W^T`` with banded blur matrices: dense matrix products are faster
    than a wide depthwise convolution on both CPU and GPU at these sizes. ``sigma <= 0``
    returns ``x``. Differentiable (the mask's smoothing is back-propagated through, where the
    released code skipped it in its hand-written gradient).
    """
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    gh = _blur_matrix(h, float(sigma), float(truncate), x.device, x.dtype)
    gw = gh if w == h else _blur_matrix(w, float(sigma), float(truncate), x.device, x.dtype)
    return torch.matmul(torch.matmul(gh, x), gw.t())


def soft_discs(centres: torch.Tensor, radii: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """``[N,H,W]`` discs (1 inside) of the given ``centres`` ``[N,2]`` as (x, y) pixels and
    ``radii`` ``[N]``, each blurred by a Gaussian of ``sigma`` (PROTOCOLS.md §5 blur occlusion,
    §6 initialisation). A pixel ``(i, j)`` is inside when ``(j-x)^2 + (i-y)^2 <= r^2``.
    """
    h, w = size
    device = centres.device
    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    c, r = centres.float(), radii.float()
    d2 = (xx - c[:, 0, None, None]) ** 2 + (yy - c[:, 1, None, None]) ** 2
    return gaussian_blur((d2 <= r[:, None, None] ** 2).float(), sigma)


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
    out = torch.empty(b, n, device=x.device, dtype=torch.float32)
    # One image often comes several times (COCO: one sample per category present): its perturbed
    # copies, and so their logits, are the same for every target, so each distinct image is
    # passed through the network once and its logits scored for each of its samples' targets.
    members = [[i] for i in range(b)]
    if not per_image and b > 1:
        _, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
        groups: dict[int, list[int]] = {}
        for i, u in enumerate(inverse.tolist()):
            groups.setdefault(u, []).append(i)
        members = sorted(groups.values())
    firsts = [m[0] for m in members]
    xu = x[firsts] if len(firsts) < b else x
    nullu = null[firsts] if null.ndim == 4 and null.shape[0] == b and len(firsts) < b else null
    bu = xu.shape[0]
    diff = nullu.to(x.dtype) - xu  # copies = x + P * (null - x): one fused op per pass
    # Each pass is a block of whole images times all masks, or one image times a block of
    # masks: contiguous slices and broadcasting, no gathered copies of the images.
    if chunk >= n:
        step = max(1, chunk // n)
        blocks = [(b0, min(b0 + step, bu), 0, n) for b0 in range(0, bu, step)]
    else:
        blocks = [(b0, b0 + 1, n0, min(n0 + chunk, n)) for b0 in range(bu) for n0 in range(0, n, chunk)]
    with torch.no_grad():
        for b0, b1, n0, n1 in blocks:
            p = perturb[b0:b1, n0:n1] if per_image else perturb[None, n0:n1]
            copies = torch.addcmul(xu[b0:b1, None], p[:, :, None].to(x.dtype), diff[b0:b1, None])
            logits = net(copies.flatten(0, 1))
            logits = logits.view(b1 - b0, n1 - n0, *logits.shape[1:])
            for u in range(b0, b1):
                for i in members[u]:
                    t = targets[i:i + 1].expand(n1 - n0, *targets.shape[1:])
                    out[i, n0:n1] = score(logits[u - b0], t).float()
    return out


def accumulate(drops: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``[B,H,W]``: each pixel's weighted mean of the drops of the perturbations that cover it,
    ``sum_n drops[b,n] * W[n] / sum_n W[n]`` (PROTOCOLS.md §5, occlusion: accumulated on the
    occluded pixels and divided by the number of masks covering each pixel). Pixels no
    perturbation covers are 0."""
    cover = weights.sum(0)
    heat = torch.einsum("bn,nhw->bhw", drops.float(), weights.float())
    return torch.where(cover > eps, heat / cover.clamp_min(eps), torch.zeros_like(heat))
