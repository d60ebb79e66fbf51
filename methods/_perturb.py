"""The perturbation engine shared by the mask and occlusion families.

Four pieces, all batched and on the input's device (the views run where images are decoded):

* the **views** :func:`blurred_original`, :func:`jittered_original` and
  :func:`blurred_jittered_original` — inputs made from the *original* image before the run's
  whole-image resize, as the authors' code made them (``get_blurred_img``: PIL
  ``GaussianBlur(10)`` of the original, then the network's resize; the jitter image: the
  original resized to ``(H + J, W + J)``). The mask and the blur-occlusion methods declare
  them with ``@saliency_bench.method(..., views=...)``; the same function read with the same
  parameter values (``blur_sigma``, ``blur_source``, ``jitter``, ``jitter_mode``) is computed
  once per image for all of them;
* :func:`~saliency_bench.ops.blur.gaussian_blur` (the blur, from :mod:`saliency_bench.ops.blur`)
  — the paper-text reading of the "blurred copy" ``blur(x, sigma0)`` of Fong & Vedaldi 2017,
  eq. 2, and the soft edges of discs and masks;
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

from typing import Callable

import torch
from PIL import Image

from saliency_bench.imageio import blurred_input, to_input
from saliency_bench.ops.blur import gaussian_blur, pil_gaussian_blur
from saliency_bench.targets import Targets, as_target_tensor

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BLUR_SOURCES = ("original", "input")
JITTER_MODES = ("resize", "pad")


# --------------------------------------------------------------------------------------------
# Views: made from the original image (PIL), before the run's resize
# --------------------------------------------------------------------------------------------
def check_blur_source(blur_source: str) -> None:
    if blur_source not in BLUR_SOURCES:
        raise ValueError(f"blur_source must be one of {', '.join(map(repr, BLUR_SOURCES))}, not {blur_source!r}")


def check_jitter_mode(jitter_mode: str) -> None:
    if jitter_mode not in JITTER_MODES:
        raise ValueError(f"jitter_mode must be one of {', '.join(map(repr, JITTER_MODES))}, not {jitter_mode!r}")


def blurred_original(image: Image.Image, size: tuple[int, int], *, blur_sigma: float = 10.0,
                     blur_source: str = "original") -> torch.Tensor | None:
    """The perturbation's blurred image as the authors' code made it (``get_blurred_img``):
    PIL ``GaussianBlur(blur_sigma)`` of the **original** image at its own resolution, then the
    run's whole-image resize to ``size`` (:func:`saliency_bench.imageio.to_input`): uint8
    ``[3,H,W]``. None with ``blur_source="input"`` (the method blurs its input instead)."""
    check_blur_source(blur_source)
    if blur_source != "original":
        return None
    return blurred_input(image, size, blur_sigma)


def jittered_original(image: Image.Image, size: tuple[int, int], *, jitter: int = 4,
                      jitter_mode: str = "resize") -> torch.Tensor | None:
    """The original image resized whole to ``(H + jitter, W + jitter)``, which the authors'
    optimisation crops at a random offset every step (``jitter_transformer``): uint8
    ``[3,H+J,W+J]``; None when not needed (``jitter <= 0`` or ``jitter_mode="pad"``)."""
    check_jitter_mode(jitter_mode)
    if jitter <= 0 or jitter_mode != "resize":
        return None
    return to_input(image.convert("RGB"), (size[0] + int(jitter), size[1] + int(jitter)))


def blurred_jittered_original(image: Image.Image, size: tuple[int, int], *, jitter: int = 4,
                              jitter_mode: str = "resize", blur_sigma: float = 10.0,
                              blur_source: str = "original") -> torch.Tensor | None:
    """:func:`blurred_original` at the jitter size ``(H + jitter, W + jitter)`` (the authors'
    ``null_img``, cropped with the image); None when not needed."""
    check_jitter_mode(jitter_mode)
    check_blur_source(blur_source)
    if jitter <= 0 or jitter_mode != "resize" or blur_source != "original":
        return None
    return to_input(pil_gaussian_blur(image.convert("RGB"), blur_sigma), (size[0] + int(jitter), size[1] + int(jitter)))


def null_image(x: torch.Tensor, blurred: torch.Tensor | None, blur_sigma: float, blur_source: str) -> torch.Tensor:
    """The blurred reference for ``x``: the ``blurred`` view when the harness made it
    (``blur_source="original"``), otherwise the paper-text reading, ``x`` blurred with
    ``blur_sigma`` at the input resolution (``blur_source="input"``, and the documented fallback
    of a direct call without the view)."""
    check_blur_source(blur_source)
    if blurred is not None and blur_source == "original":
        if blurred.shape != x.shape:
            raise ValueError(f"the blurred view has shape {tuple(blurred.shape)}, the input {tuple(x.shape)}")
        return blurred.to(device=x.device, dtype=x.dtype)
    return gaussian_blur(x, blur_sigma)


def soft_discs(centres: torch.Tensor, radii: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """``[N,H,W]`` discs (1 inside) of the given ``centres`` ``[N,2]`` as (x, y) pixels and
    ``radii`` ``[N]``, each blurred by a Gaussian of ``sigma`` (blur occlusion and the mask's
    initialisation, docs/PROTOCOLS.md §5.6 and §6). A pixel ``(i, j)`` is inside when ``(j-x)^2 + (i-y)^2 <= r^2``.
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


def authors_corners(size: tuple[int, int], per_side: int = 28, device=None) -> torch.Tensor:
    """``[N,2]`` (x, y) top-left corners of the authors' occlusion grid (``occlusion_mask.py``,
    ``generate_occlusion_masks``): ``linspace(0, side, per_side, endpoint=False).astype(int)``
    on each axis (0, 8, ..., 216 for 224 and 28), row-major."""
    h, w = size
    # numpy's linspace without the endpoint: arange(n) * (side / n)
    ys = (torch.arange(per_side, dtype=torch.float64) * (h / per_side)).floor()
    xs = (torch.arange(per_side, dtype=torch.float64) * (w / per_side)).floor()
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(device=device, dtype=torch.float32)


def valid_corners(size: tuple[int, int], side: int, stride: int, device=None) -> torch.Tensor:
    """``[N,2]`` (x, y) top-left corners ``0, stride, ...`` of the windows that lie wholly in
    the image (Captum ``Occlusion``'s sliding windows), row-major."""
    h, w = size
    ys = torch.arange(0, h - side + 1, stride, dtype=torch.float32)
    xs = torch.arange(0, w - side + 1, stride, dtype=torch.float32)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(device=device)


def squares_at(corners: torch.Tensor, side: int, size: tuple[int, int]) -> torch.Tensor:
    """``[N,H,W]`` squares ``[y0, y0 + side) x [x0, x0 + side)`` with top-left ``corners``
    (x, y), clipped to the image."""
    h, w = size
    device = corners.device
    yy = torch.arange(h, device=device).view(1, h, 1)
    xx = torch.arange(w, device=device).view(1, 1, w)
    x0 = corners[:, 0].round().long().view(-1, 1, 1)
    y0 = corners[:, 1].round().long().view(-1, 1, 1)
    inside = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
    return inside.float()


#: Perturbed copies per forward pass when a method leaves it to the device (``chunk=0``): large
#: passes fill a GPU; on the CPU a pass of 64 GoogLeNet copies costs 1.4x per image what one of
#: 16 does (measured: docs/PERFORMANCE.md §3).
CPU_CHUNK, GPU_CHUNK = 16, 256


def device_chunk(chunk: int, device: torch.device) -> int:
    """``chunk`` when positive, else the device's default (:data:`CPU_CHUNK`, :data:`GPU_CHUNK`)."""
    return int(chunk) if chunk > 0 else (GPU_CHUNK if torch.device(device).type == "cuda" else CPU_CHUNK)


def perturbation_scores(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, null: torch.Tensor,
                        perturb: torch.Tensor, targets: Targets | torch.Tensor, score: ScoreFn,
                        chunk: int = 256) -> torch.Tensor:
    """``[B,N]`` scores of every image under every perturbation.

    ``x``, ``null``: ``[B,C,H,W]`` (``null`` may be ``[1,C,H,W]`` or a scalar tensor for a
    constant fill); ``perturb``: ``[N,H,W]`` (the same maps for every image) or ``[B,N,H,W]``
    (per image), 1 = replaced by ``null``. The ``B*N`` perturbed copies are scored ``chunk`` at a
    time: ``score(net(copies), targets_of_copies)`` must return one value per copy.
    The copies take ``x``'s memory format (the fused op follows its strides): a channels-last
    input gives channels-last copies, as the network's first convolution wants them.
    """
    targets = as_target_tensor(targets, x.device)
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
    ``sum_n drops[b,n] * W[n] / sum_n W[n]`` (docs/PROTOCOLS.md §5.6, occlusion: accumulated on the
    occluded pixels and divided by the number of masks covering each pixel). Pixels no
    perturbation covers are 0."""
    cover = weights.sum(0)
    heat = torch.einsum("bn,nhw->bhw", drops.float(), weights.float())
    return torch.where(cover > eps, heat / cover.clamp_min(eps), torch.zeros_like(heat))
