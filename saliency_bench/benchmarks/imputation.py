"""ROAD's noisy linear imputation (Rong et al., ICML 2022), batched on the device.

The reference (``NoisyLinearImputer`` in pytorch-grad-cam's ``metrics/road.py``, from the authors'
``tleemann/road_evaluation``) fills every removed pixel with the weighted mean of its 8 neighbours
(weight 1/6 for the 4 direct ones, 1/12 for the diagonals; neighbours outside the image do not
count), a sparse linear system over the removed pixels that it solves with SciPy's ``spsolve``, one
image and one percentile at a time on the CPU, then adds ``noise * N(0, 1)`` to each filled value.

Here the same system, ``d_p x_p - sum_{q removed} w_pq x_q = sum_{q kept} w_pq v_q`` (``d_p`` the
in-image weight of ``p``'s neighbourhood), is solved for **all** images, channels and percentiles at
once with the conjugate gradient method (the matrix is symmetric positive definite whenever one
pixel is kept), the operator applied as one 3x3 convolution of the whole batch, preconditioned by a
geometric multigrid V-cycle (damped Jacobi smoothing on the masked stencil, full-weighting restriction,
the coarse system re-discretised from the coarsened mask). It stops when every system's residual is
below ``tol`` times its right-hand side (default ``1e-6``, float32); the filled values then agree with
``spsolve``'s to about ``1e-4`` in normalised input units, a hundredth of the noise (``0.01``) that the
imputation adds on purpose (test_road.py measures it on real maps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
              ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def _kernel(device, dtype) -> torch.Tensor:
    k = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    for (dy, dx), w in NEIGHBOURS:
        k[0, 0, 1 + dy, 1 + dx] = w
    return k.to(device, dtype)


class _Level:
    """One grid of the hierarchy: the removed-pixel mask ``u`` ``[S,1,h,w]`` and the diagonal."""

    def __init__(self, u: torch.Tensor, k: torch.Tensor) -> None:
        self.u = u
        self.k = k
        self.d = F.conv2d(torch.ones_like(u[:1]), k, padding=1)  # in-image neighbour weight

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """A x on the removed pixels (x is zero on the kept ones): ``[S,C,h,w]``."""
        s, c, h, w = x.shape
        wx = F.conv2d(x.reshape(s * c, 1, h, w), self.k, padding=1).view(s, c, h, w)
        return self.u * (self.d * x - wx)


def _restrict(r: torch.Tensor) -> torch.Tensor:
    """Sum of each 2x2 block (an odd last row or column on its own)."""
    h, w = r.shape[-2:]
    r = F.pad(r, (0, w % 2, 0, h % 2))
    return F.avg_pool2d(r, 2, divisor_override=1)


def _prolong(e: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(e, scale_factor=2, mode="nearest")[..., :size[0], :size[1]]


def _hierarchy(u: torch.Tensor, k: torch.Tensor, coarsest: int = 8) -> list[_Level]:
    levels = [_Level(u, k)]
    while min(levels[-1].u.shape[-2:]) > coarsest:
        cu = (_restrict(levels[-1].u) >= COARSE_RULE).to(u.dtype)  # removed if that many children are
        levels.append(_Level(cu, k))
    return levels


def _smooth(lv: _Level, x: torch.Tensor, b: torch.Tensor, steps: int, omega: float = 0.6) -> torch.Tensor:
    for _ in range(steps):
        x = x + omega * lv.u * (b - lv.apply(x)) / lv.d
    return x


COARSE_RULE = 1  # a coarse pixel is removed if one of its 4 children is
COARSE_SCALE = 1.0  # Galerkin scaling of the summed residual (15 iterations on real maps; 1/4: 100)


def _vcycle(levels: list[_Level], b: torch.Tensor, i: int = 0, steps: int = 2) -> torch.Tensor:
    lv = levels[i]
    if i == len(levels) - 1:
        return _smooth(lv, torch.zeros_like(b), b, 20)
    x = _smooth(lv, torch.zeros_like(b), b, steps)
    r = b - lv.apply(x)
    e = _vcycle(levels, levels[i + 1].u * _restrict(r) * COARSE_SCALE, i + 1, steps)
    x = x + lv.u * _prolong(e, b.shape[-2:])
    return _smooth(lv, x, b, steps)


def linear_impute(img: torch.Tensor, keep: torch.Tensor, tol: float = 1e-6, max_iter: int = 500,
                  multigrid: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill the pixels where ``keep`` is False with the solution of ROAD's linear system.

    ``img`` ``[S,C,H,W]``, ``keep`` bool ``[S,H,W]`` (at least one pixel kept per system, else the
    system is singular; the caller checks). Returns the filled images (no noise yet) and the number
    of iterations each system took (``[S]``)."""
    dev, dt = img.device, img.dtype
    k = _kernel(dev, dt)
    u = (~keep).to(dt)[:, None]
    levels = _hierarchy(u, k) if multigrid else [_Level(u, k)]
    top = levels[0]
    v = img * (1 - u)
    s, c, h, w = img.shape
    b = u * F.conv2d(v.reshape(s * c, 1, h, w), k, padding=1).view(s, c, h, w)

    def precond(r):
        return _vcycle(levels, r) if multigrid else r * top.u / top.d

    def dot(a, bb):
        return (a * bb).sum(dim=(2, 3), dtype=torch.float64)  # [S, C]

    x = torch.zeros_like(b)
    r = b.clone()
    z = precond(r)
    p = z.clone()
    rz = dot(r, z)
    bn = dot(b, b).sqrt().clamp_min(1e-30)
    iters = torch.zeros(s, dtype=torch.long, device=dev)
    for _ in range(max_iter):
        rn = dot(r, r).sqrt()
        active = rn > tol * bn  # [S, C]
        if not bool(active.any()):
            break
        iters += active.any(dim=1).long()
        ap = top.apply(p)
        pap = dot(p, ap)
        alpha = torch.where(active & (pap > 0), rz / pap.clamp_min(1e-300), torch.zeros_like(rz))
        x = x + alpha.to(dt)[..., None, None] * p
        r = r - alpha.to(dt)[..., None, None] * ap
        z = precond(r)
        rz_new = dot(r, z)
        beta = torch.where(active & (rz > 0), rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta.to(dt)[..., None, None] * p
        rz = rz_new
    return v + u * x, iters
