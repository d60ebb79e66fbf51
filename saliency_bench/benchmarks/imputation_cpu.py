"""ROAD's noisy linear imputation on the CPU: compiled geometric multigrid, one system per thread.

The system is :mod:`.imputation`'s (the reference's ``NoisyLinearImputer``): every removed pixel
equals the weighted mean of its in-image neighbours (1/6 direct, 1/12 diagonal). Here it is solved
per image and percentile by multigrid V-cycles in compiled loops (numba, :mod:`saliency_bench.ops.jit`):

* the field is stored ``[H+2, W+2, 4]`` (a zero frame; up to 4 channels side by side, so the channel
  loop is one vector operation), the fine level holds the image itself (kept pixels fixed), so the
  smoother is the neighbours' mean written in place (symmetric Gauss-Seidel: forward before the
  coarse correction, backward after);
* cell-centred coarsening by 2x2 blocks, a coarse cell unknown only if **all** its children are
  (measured: "any child" makes the coarse problems too large and the cycle diverges on real masks;
  "all" converges in 5-9 cycles to a relative residual of 1e-5), the coarse operator the same stencil
  re-discretised on the coarse grid, the residual restricted by 2x2 sums (the stencil's ``h^2``
  scaling), the correction prolonged bilinearly (clamped at the image border, where the stencil drops
  the outside neighbours);
* the percentiles of one image and order are solved as a chain, each from the previous solution
  where the removed sets are nested (warm start: a smaller set starts from the larger set's values;
  the unknowns start at 0 otherwise, never at the image's own values);
* the chains of a batch run in parallel threads (the kernels release the GIL).

It stops when the residual is below ``tol`` times the right-hand side (the kept neighbours' weighted
values), in float32 arithmetic with float64 sums.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from saliency_bench.ops.jit import Kernels

jit = Kernels(__name__)

LANES = 4  # channels per solve (one float32 vector)


@jit.helper
def _level_sizes(H, W, coarsest):
    hs = [H]
    ws = [W]
    while min(hs[-1], ws[-1]) > coarsest:
        hs.append((hs[-1] + 1) // 2)
        ws.append((ws[-1] + 1) // 2)
    return hs, ws


@jit.helper
def _diag(h, w):
    """In-image weight of each pixel's neighbourhood (1 inside, less on the border)."""
    d = np.ones((h + 2, w + 2), np.float32)
    for i in range(1, h + 1):
        for j in range(1, w + 1):
            s = 0.0
            for di in range(-1, 2):
                for dj in range(-1, 2):
                    if (di != 0 or dj != 0) and 1 <= i + di <= h and 1 <= j + dj <= w:
                        s += (1.0 / 6.0) if (di == 0 or dj == 0) else (1.0 / 12.0)
            d[i, j] = s
    return d


@jit.helper
def _neighbours(x, i, j, c):
    """The stencil's weighted sum of the 8 neighbours of ``(i, j)`` in lane ``c``."""
    return (np.float32(1.0 / 6.0) * (x[i - 1, j, c] + x[i + 1, j, c] + x[i, j - 1, c] + x[i, j + 1, c])
            + np.float32(1.0 / 12.0) * (x[i - 1, j - 1, c] + x[i - 1, j + 1, c] + x[i + 1, j - 1, c] + x[i + 1, j + 1, c]))


@jit.helper
def _smooth(x, b, m, d, h, w, sweeps, backward):
    """Gauss-Seidel on ``d x - sum w x = b`` over the unknown cells (``m``)."""
    for _ in range(sweeps):
        for ii in range(h):
            i = h - ii if backward else ii + 1
            for jj in range(w):
                j = w - jj if backward else jj + 1
                if m[i, j]:
                    inv = np.float32(1.0) / d[i, j]
                    for c in range(LANES):
                        s = _neighbours(x, i, j, c)
                        x[i, j, c] = (b[i, j, c] + s) * inv


@jit.helper
def _residual(x, b, r, m, d, h, w):
    """``r = b - (d x - sum w x)`` on the unknown cells (0 elsewhere); returns ``|r|^2``."""
    tot = 0.0
    for i in range(1, h + 1):
        for j in range(1, w + 1):
            if m[i, j]:
                for c in range(LANES):
                    s = _neighbours(x, i, j, c)
                    v = b[i, j, c] + s - d[i, j] * x[i, j, c]
                    r[i, j, c] = v
                    tot += v * v
            else:
                for c in range(LANES):
                    r[i, j, c] = 0.0
    return tot


@jit.helper
def _restrict(r, bc, mc, h, w, hc, wc):
    for I in range(1, hc + 1):
        for J in range(1, wc + 1):
            i, j = 2 * I - 1, 2 * J - 1
            for c in range(LANES):
                if mc[I, J]:
                    v = r[i, j, c]
                    if j + 1 <= w:
                        v += r[i, j + 1, c]
                    if i + 1 <= h:
                        v += r[i + 1, j, c]
                        if j + 1 <= w:
                            v += r[i + 1, j + 1, c]
                    bc[I, J, c] = v
                else:
                    bc[I, J, c] = 0.0


@jit.helper
def _prolong(x, xc, m, h, w, hc, wc):
    """``x += P xc`` on the unknown fine cells (cell-centred bilinear, clamped at the border)."""
    for i in range(1, h + 1):
        I = (i + 1) // 2
        I2 = min(max(I - 1 if i % 2 == 1 else I + 1, 1), hc)
        for j in range(1, w + 1):
            if m[i, j]:
                J = (j + 1) // 2
                J2 = min(max(J - 1 if j % 2 == 1 else J + 1, 1), wc)
                for c in range(LANES):
                    x[i, j, c] += (np.float32(0.5625) * xc[I, J, c]
                                   + np.float32(0.1875) * (xc[I2, J, c] + xc[I, J2, c])
                                   + np.float32(0.0625) * xc[I2, J2, c])


@jit.kernel
def _impute_chain(field, keeps, tol, max_cycles, nu, coarsest, coarse_sweeps, out, iters):
    """Solve ``keeps`` ``[K, H, W]`` (True: kept) in order for one image ``field`` ``[H+2, W+2, 4]``
    (zero frame); ``out`` ``[K, H+2, W+2, 4]`` gets each filled field, ``iters`` ``[K]`` the cycles."""
    K, H, W = keeps.shape
    hs, ws = _level_sizes(H, W, coarsest)
    L = len(hs)
    ds = [_diag(hs[l], ws[l]) for l in range(L)]
    ms = [np.zeros((hs[l] + 2, ws[l] + 2), np.uint8) for l in range(L)]
    xs = [np.zeros((hs[l] + 2, ws[l] + 2, LANES), np.float32) for l in range(L)]
    bs = [np.zeros((hs[l] + 2, ws[l] + 2, LANES), np.float32) for l in range(L)]
    rs = [np.zeros((hs[l] + 2, ws[l] + 2, LANES), np.float32) for l in range(L)]
    for k in range(K):
        m0 = ms[0]
        for i in range(H):
            for j in range(W):
                m0[i + 1, j + 1] = 0 if keeps[k, i, j] else 1
        for l in range(1, L):
            mp, mc, h, w = ms[l - 1], ms[l], hs[l - 1], ws[l - 1]
            for I in range(1, hs[l] + 1):
                for J in range(1, ws[l] + 1):
                    i, j = 2 * I - 1, 2 * J - 1
                    a = mp[i, j] == 1 and (j + 1 > w or mp[i, j + 1] == 1)
                    a = a and (i + 1 > h or (mp[i + 1, j] == 1 and (j + 1 > w or mp[i + 1, j + 1] == 1)))
                    mc[I, J] = 1 if a else 0
        # a warm start only from a larger removed set (nested: the previous solution saw no pixel
        # that is removed now); else, and first, the unknowns start at 0 (never at the image's values)
        warm = k > 0
        if warm:
            for i in range(H):
                for j in range(W):
                    if not keeps[k, i, j] and keeps[k - 1, i, j]:
                        warm = False
        # the fine level holds the field: kept pixels the image (zero frame), unknown ones the start
        x0 = xs[0]
        z = out[k]  # scratch until the solution is written there: the field with its unknowns at 0
        for i in range(H + 2):
            for j in range(W + 2):
                for c in range(LANES):
                    v = 0.0 if m0[i, j] else field[i, j, c]
                    z[i, j, c] = v
                    x0[i, j, c] = out[k - 1, i, j, c] if (warm and m0[i, j]) else v
        # |b|: the kept neighbours' weighted values (the residual of z; bs[0] stays 0 on the fine level)
        bn = _residual(z, bs[0], rs[0], m0, ds[0], H, W)
        n = 0
        while n < max_cycles:
            rn = _residual(x0, bs[0], rs[0], m0, ds[0], H, W)
            if rn <= tol * tol * bn:
                break
            n += 1
            _smooth(x0, bs[0], m0, ds[0], H, W, nu, False)
            for l in range(L - 1):
                if l > 0:
                    xs[l][:] = 0.0
                    _smooth(xs[l], bs[l], ms[l], ds[l], hs[l], ws[l], nu, False)
                _residual(xs[l], bs[l], rs[l], ms[l], ds[l], hs[l], ws[l])
                _restrict(rs[l], bs[l + 1], ms[l + 1], hs[l], ws[l], hs[l + 1], ws[l + 1])
            xs[L - 1][:] = 0.0
            _smooth(xs[L - 1], bs[L - 1], ms[L - 1], ds[L - 1], hs[L - 1], ws[L - 1], coarse_sweeps, False)
            for l in range(L - 2, -1, -1):
                _prolong(xs[l], xs[l + 1], ms[l], hs[l], ws[l], hs[l + 1], ws[l + 1])
                _smooth(xs[l], bs[l], ms[l], ds[l], hs[l], ws[l], nu, True)
        iters[k] = n
        for i in range(H + 2):
            for j in range(W + 2):
                for c in range(LANES):
                    out[k, i, j, c] = x0[i, j, c]


def impute_chains(images: np.ndarray, chains: Sequence[np.ndarray], *, tol: float = 1e-5, max_cycles: int = 100,
                  nu: int = 2, threads: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fill the removed pixels of ``images[n]`` (``[N, C, H, W]`` float32) for each mask of
    ``chains[n]`` (bool ``[K_n, H, W]``, True: kept; solved in that order, each from the previous:
    put the largest removed set first). Returns per chain the filled images ``[K_n, C, H, W]``
    (no noise) and the V-cycles each took ``[K_n]``."""
    images = np.asarray(images, np.float32)
    N, C, H, W = images.shape
    groups = [(g, min(C, g + LANES)) for g in range(0, C, LANES)]
    kernel = jit.compiled("_impute_chain")

    def one(n: int):
        keeps = np.ascontiguousarray(chains[n], dtype=np.bool_)
        K = keeps.shape[0]
        filled = np.empty((K, C, H, W), np.float32)
        cycles = np.zeros(K, np.int64)
        for g0, g1 in groups:
            field = np.zeros((H + 2, W + 2, LANES), np.float32)
            field[1:-1, 1:-1, :g1 - g0] = images[n, g0:g1].transpose(1, 2, 0)
            out = np.empty((K, H + 2, W + 2, LANES), np.float32)
            it = np.zeros(K, np.int64)
            kernel(field, keeps, float(tol), int(max_cycles), int(nu), 4, 30, out, it)
            filled[:, g0:g1] = out[:, 1:-1, 1:-1, :g1 - g0].transpose(0, 3, 1, 2)
            cycles = np.maximum(cycles, it)
        return filled, cycles

    workers = max(1, min(len(chains), threads or (os.cpu_count() or 1)))
    if workers == 1:
        res = [one(n) for n in range(len(chains))]
    else:
        with ThreadPoolExecutor(workers) as pool:
            res = list(pool.map(one, range(len(chains))))
    return [r[0] for r in res], [r[1] for r in res]


__all__ = ["impute_chains"]
