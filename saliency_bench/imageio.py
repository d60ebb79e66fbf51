"""Reading images the way every part of the harness does, and drawing heatmaps over them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFile

from saliency_bench.ops.blur import pil_gaussian_blur
from saliency_bench.ops.resize import resize_map

# A truncated JPEG must fail loudly, not load half grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    pass


def load_rgb(path: str | Path) -> Image.Image:
    """Decode an image file to RGB. Greyscale, CMYK, palette and RGBA are converted (alpha is
    dropped onto black, as decoders do); a corrupt or truncated file raises :class:`ImageError`."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB") if im.mode != "RGB" else im.copy()
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise ImageError(f"cannot decode image {path}: {type(e).__name__}: {e}") from e


def to_input(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """Resize the **whole** image (no crop, docs/PROTOCOLS.md §1) to ``size`` = (H, W): uint8 [3,H,W]."""
    h, w = size
    im = image.resize((w, h), Image.BILINEAR) if image.size != (w, h) else image
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def stack_images(images: list[torch.Tensor], shared: bool = False) -> torch.Tensor:
    """Images ``[3,H,W]`` -> one batch ``[B,3,H,W]`` in channels-last memory (its values are those
    of ``torch.stack``). :func:`to_input` gives ``[3,H,W]`` views of ``[H,W,3]`` pixels, so the
    batch is made in their own memory order: a plain copy, where ``torch.stack`` gathers each
    channel across the pixels (3.1 -> 0.2 ms for 16 images at 224x224), and
    :meth:`Model.preprocess`'s channels-last copy from it is plain too. ``shared``: made in shared
    memory at once, as torch's own collate does in a loader worker (sending a tensor from there
    copies it into shared memory otherwise: a second copy of the batch, into fresh pages)."""
    hwc = [x.permute(1, 2, 0) for x in images]
    out = None
    if shared and hwc:
        out = torch.empty((len(hwc), *hwc[0].shape), dtype=hwc[0].dtype).share_memory_()
    return torch.stack(hwc, out=out).permute(0, 3, 1, 2)


def blurred_input(image: Image.Image, size: tuple[int, int], radius: float = 10.0) -> torch.Tensor:
    """The blurred copy of Fong & Vedaldi's perturbations as their code made it
    (``get_blurred_img`` in ``ruthcfong/perturb_explanations``, ``optimize_mask.py``): PIL
    ``GaussianBlur(radius)`` of the **original** image at its own resolution (PIL's radius is the
    Gaussian's standard deviation), then the run's whole-image resize to ``size`` = (H, W)
    (:func:`to_input`): uint8 ``[3,H,W]``. ``radius <= 0``: the plain resized image.

    Shared by the methods' ``blurred`` view and the faithfulness benchmarks' substrate."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    return to_input(pil_gaussian_blur(image, radius), size)


def _jet(v: np.ndarray) -> np.ndarray:
    """The classic 'jet' colour map on [0, 1] -> uint8 RGB."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def normalise_map(heatmap: np.ndarray) -> np.ndarray:
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def display_map(heatmap: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """A map at its method's own resolution brought to the network input size (bilinear,
    ``align_corners=False``) for drawing: what ``explain`` and the gallery show, whatever the
    method's resolution. Scoring never uses this (each benchmark resizes as its protocol says)."""
    h = np.asarray(heatmap, dtype=np.float32)
    if h.shape == tuple(input_size):
        return h
    return resize_map(h, input_size, reference="torchray").numpy()


def overlay(image: Image.Image, heatmap: np.ndarray | None = None, point: tuple[float, float] | None = None,
            alpha: float = 0.5, title: str | None = None) -> Image.Image:
    """The image with the heatmap (resized to the image, min-max normalised, jet) blended over it,
    side by side with the plain heatmap; a point is drawn as a ring."""
    image = image.convert("RGB")
    w, h = image.size
    panels = [image]
    if heatmap is not None:
        hm = Image.fromarray((normalise_map(heatmap) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
        colour = Image.fromarray(_jet(np.asarray(hm, dtype=np.float64) / 255.0))
        panels = [Image.blend(image, colour, alpha), colour]
    out = Image.new("RGB", (w * len(panels), h + (18 if title else 0)), "white")
    for i, p in enumerate(panels):
        out.paste(p, (i * w, 18 if title else 0))
    draw = ImageDraw.Draw(out)
    if point is not None:
        x, y = point
        y += 18 if title else 0
        r = max(4, min(w, h) // 30)
        for k in range(len(panels)):
            draw.ellipse([x + k * w - r, y - r, x + k * w + r, y + r], outline=(255, 0, 0), width=3)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0))
    return out
