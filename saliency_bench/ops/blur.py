"""The blurs: THE Gaussian blur of tensors (:func:`gaussian_blur`), PIL's ``GaussianBlur`` of an
image (:func:`pil_gaussian_blur`, the authors' ``get_blurred_img``), and RISE's ``gkern`` blur
(:func:`gkern_blur`, a different operation on purpose: an 11x11 kernel with zero padding)."""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


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
    unlike zero padding, neither darkens nor brightens the border and works for any image size
    (scipy's ``gaussian_filter(mode="nearest")``). Computed as ``G_H @ x @ G_W^T`` with banded
    blur matrices: dense matrix products are faster than a wide depthwise convolution on both
    CPU and GPU at these sizes. ``sigma <= 0`` returns ``x``. Differentiable.
    """
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    gh = _blur_matrix(h, float(sigma), float(truncate), x.device, x.dtype)
    gw = gh if w == h else _blur_matrix(w, float(sigma), float(truncate), x.device, x.dtype)
    return torch.matmul(torch.matmul(gh, x), gw.t())


def pil_gaussian_blur(image: Image.Image, radius: float) -> Image.Image:
    """PIL's ``ImageFilter.GaussianBlur(radius)`` (PIL's radius is the Gaussian's standard
    deviation); ``radius <= 0`` returns the image unchanged."""
    return image.filter(ImageFilter.GaussianBlur(float(radius))) if radius > 0 else image


@lru_cache(maxsize=8)
def gkern(klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's ``gkern``: a ``klen x klen`` delta smoothed by ``scipy.ndimage.gaussian_filter``
    (sigma ``nsig``, its default ``reflect`` border), as a float32 ``[klen, klen]`` kernel."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    return torch.from_numpy(gaussian_filter(inp, nsig).astype(np.float32))


def gkern_blur(x: torch.Tensor, klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: ``conv2d(x, gkern, padding=klen // 2)`` channel by channel
    (zero padding), on the normalised input ``[B,3,H,W]``."""
    k = gkern(int(klen), float(nsig)).to(x.device, x.dtype)
    c = x.shape[1]
    w = k[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x.contiguous(), w, padding=int(klen) // 2, groups=c)
