"""THE map resize: a saliency map brought from its method's resolution to another size, the way
a named reference program does it (``reference``):

* ``"torchray"``: bilinear, ``align_corners=False``, in float32 (TorchRay's ``resize_saliency``,
  ``F.interpolate``): the pointing game, the displayed maps, RISE's pixel order, part saliency's
  ``resize="bilinear"``. A float32 tensor.
* ``"authors"``: Fong & Vedaldi's ``scipy.misc.imresize``: bytescale to uint8 (min to 0, max to
  255, ``uint8(clip((h - min) * 255 / range, 0, 255) + 0.5)`` in float32, a zero range counted as
  1), then PIL's bilinear resize. A uint8 array. (:mod:`.pil_resize` emulates it for boxes.)
* ``"wsolevaluation"``: ``cv2.resize(INTER_CUBIC)`` of the map in float64 (wsolevaluation's
  ``inference.py``, MaxBoxAccV2). A float64 array.

A map already at ``size`` is returned as it is, in the reference's type and precision."""
from __future__ import annotations

import numpy as np

REFERENCES = ("torchray", "authors", "wsolevaluation")


def resize_map(maps, size: tuple[int, int], reference: str = "torchray"):
    """``maps`` (``[h,w]``, or ``[..., h, w]`` for ``"torchray"``) resized to ``size = (H, W)`` as
    ``reference`` does it (see the module docstring)."""
    H, W = int(size[0]), int(size[1])
    if reference == "torchray":
        import torch
        import torch.nn.functional as F

        m = torch.as_tensor(np.ascontiguousarray(maps, dtype=np.float32))
        if tuple(m.shape[-2:]) == (H, W):
            return m
        lead = m.shape[:-2]
        out = F.interpolate(m.reshape(-1, 1, *m.shape[-2:]), size=(H, W), mode="bilinear", align_corners=False)
        return out.reshape(*lead, H, W)
    if reference == "authors":
        from PIL import Image

        m = np.asarray(maps, dtype=np.float32)
        lo, hi = np.float32(m.min()), np.float32(m.max())
        rng = hi - lo if hi > lo else np.float32(1.0)
        u8 = (np.clip((m - lo) * np.float32(255.0 / rng), 0, 255) + np.float32(0.5)).astype(np.uint8)
        if u8.shape == (H, W):
            return u8
        return np.asarray(Image.fromarray(u8).resize((W, H), Image.BILINEAR))
    if reference == "wsolevaluation":
        import cv2  # a runtime dependency of MaxBoxAccV2 (opencv-python-headless)

        m = np.asarray(maps, dtype=np.float64)
        if m.shape == (H, W):
            return m
        return cv2.resize(m, (W, H), interpolation=cv2.INTER_CUBIC)
    raise ValueError(f"resize_map: reference must be one of {', '.join(map(repr, REFERENCES))}, not {reference!r}")
