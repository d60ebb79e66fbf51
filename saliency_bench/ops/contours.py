"""Bounding boxes of every contour OpenCV's ``findContours(RETR_TREE)`` returns for a
thresholded map, at every threshold at once (MaxBoxAccV2): the two exact paths of
:mod:`.contour_runs` (smooth maps) and :mod:`.contour_pixels` (noisy maps), chosen per map."""
from __future__ import annotations

import numpy as np

from . import contour_pixels, contour_runs

_ROWS_PER_IMAGE: dict[str, int] = {}  # the most records per image a kernel has needed so far


def _run_filling(kernels, kernel_name: str, args: tuple, n_img: int) -> np.ndarray:
    """Run a record kernel into a buffer, doubled until the records fit (a kernel returns -1 when
    its buffer is full: growing an array inside the kernel's loops would cost reference counting
    on every iteration). The buffer starts at twice the most records per image seen so far."""
    size = max(2 * _ROWS_PER_IMAGE.get(kernel_name, 512), 64) * max(n_img, 1)
    while True:
        rec = np.empty((size, 7), np.int64)
        n = kernels.compiled(kernel_name)(*args, rec)
        if n >= 0:
            _ROWS_PER_IMAGE[kernel_name] = max(_ROWS_PER_IMAGE.get(kernel_name, 0), -(-n // max(n_img, 1)))
            return rec[:n]
        size *= 2


RUNS_PER_PIXEL = 1 / 8  # the run path takes a map with at most this many runs of a kind per pixel


def contour_records(values: np.ndarray, lut: np.ndarray, n_t: int, path: str = "auto",
                    took_runs: np.ndarray | None = None, min_area: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`contour_record_parts` in one array."""
    parts, top = contour_record_parts(values, lut, n_t, path, took_runs, min_area)
    return (np.concatenate(parts) if len(parts) > 1 else parts[0]), top


def contour_record_parts(values: np.ndarray, lut: np.ndarray, n_t: int, path: str = "auto",
                         took_runs: np.ndarray | None = None, min_area: np.ndarray | None = None
                         ) -> tuple[list[np.ndarray], np.ndarray]:
    """Bounding boxes of every contour OpenCV's ``findContours(RETR_TREE)`` returns for the binary
    maps ``{level > j}``, ``j = 0..n_t-1``, at once; ``level = lut[b, values[b]]`` (``values [B,H,W]``
    small non-negative integers such as a uint8 map, ``lut [B,V]`` non-decreasing, in ``0..n_t``).

    OpenCV traces (Suzuki & Abe, 1985) the outer border of every 8-connected region of the
    foreground and the border of every hole, a 4-connected background component that does not
    touch the image border; a hole's border is the region pixels 4-adjacent to it, so its box is
    the hole's box grown by one pixel on each side. Two exact ways, chosen per map (``path``
    "auto"; "runs" or "pixels" force one, for tests):

    * runs (:func:`.contour_runs._run_records`): smooth maps (bicubic-upsampled Grad-CAM, blurred maps) have few
      unimodal runs per row and column; the components of every threshold come from union-finds
      over basins of runs, rows giving y-ranges and columns x-ranges. Taken when every kind of run
      stays under ``RUNS_PER_PIXEL`` per pixel.
    * pixels (:func:`.contour_pixels._pixel_records`): one union-find sweep over the pixels in decreasing
      level order for the regions (:func:`.contour_pixels._region_sweep`), and one in increasing order with
      4-connectivity for the holes (:func:`.contour_pixels._hole_sweep`); noisy maps (raw gradients) have about
      a run per three pixels, and go this way.

    Either is O(pixels) for all thresholds, instead of one contour search per threshold.
    ``took_runs`` (bool ``[B]``), when given, is set to which images the run path scored.
    ``min_area`` (float ``[B]``), when given, lets the pixel sweeps leave out the records whose
    box, grown by one pixel to the right and below (``boundingRect``'s extent, +1 VOC areas), has
    an area under ``min_area[b]``: a caller that only asks whether some box reaches an IoU with a
    ground-truth box passes that IoU times the smallest ground-truth area (a box of area ``A``
    has IoU at most ``A / G`` with a box of area ``G``). The run path keeps every record.

    Returns ``parts``, one or more arrays of rows ``[R,7]`` = ``(image, x1, y1, x2, y2, lo, hi)``
    (one per path, not concatenated: noisy maps have many records): the box (inclusive, the
    extreme contour points) is a contour's box at every threshold index ``lo <= j <= hi``; and
    ``top [B]``, each image's highest level (foreground exists at ``j`` iff ``j < top``).
    """
    vals = np.ascontiguousarray(values)
    if vals.ndim != 3:
        raise ValueError(f"contour_records: values must be [B,H,W], not {vals.shape}")
    if path not in ("auto", "runs", "pixels"):
        raise ValueError(f"contour_records: path must be 'auto', 'runs' or 'pixels', not {path!r}")
    n_img, h, w = vals.shape
    table = np.ascontiguousarray(np.clip(lut, 0, n_t), dtype=np.int32)
    parts = []
    todo = np.arange(n_img)
    fits = n_t < 2 ** 15 and max(h, w) < 2 ** 15  # the run path keeps levels and positions in int16
    if path == "runs" and not fits:
        raise ValueError("contour_records: the run path needs n_t and the image sides below 32768")
    if path != "pixels" and fits and n_img and h * w:
        limit = h * w + 1 if path == "runs" else max(int(h * w * RUNS_PER_PIXEL), h, w) + 1
        skipped = np.zeros(n_img, np.bool_)
        parts.append(_run_filling(contour_runs.jit, "_run_records", (vals, table, int(n_t), int(limit), skipped), n_img))
        todo = np.flatnonzero(skipped)
    if took_runs is not None:
        took_runs[:] = True
        took_runs[todo] = False
    if len(todo):
        sub_vals = vals if len(todo) == n_img else np.ascontiguousarray(vals[todo])
        sub_table = table if len(todo) == n_img else np.ascontiguousarray(table[todo])
        amin = np.zeros(len(todo)) if min_area is None else \
            np.ascontiguousarray(np.asarray(min_area, np.float64)[todo])
        rows = _run_filling(contour_pixels.jit, "_pixel_records",
                            (sub_vals, sub_table, int(n_t), *contour_pixels.neighbour_groups(), amin,
                             np.zeros(0, np.int16 if max(h, w) < 2 ** 15 else np.int32)), len(todo))
        if len(todo) < n_img:
            rows[:, 0] = todo[rows[:, 0]]
        parts.append(rows)
    top = table[np.arange(n_img), vals.reshape(n_img, -1).max(axis=1)].astype(np.int64) if h * w else \
        np.zeros(n_img, np.int64)  # lut is non-decreasing
    return (parts if parts else [np.zeros((0, 7), np.int64)]), top


def contour_boxes_by_threshold(levels: np.ndarray, n_t: int, path: str = "auto"
                               ) -> list[list[set[tuple[int, int, int, int]]]]:
    """``[B][n_t]`` sets of contour boxes of ``{levels > j}`` (a readable view of
    :func:`contour_records`, for tests and inspection)."""
    lv = np.ascontiguousarray(np.clip(np.asarray(levels), 0, n_t), dtype=np.int32)
    identity = np.ascontiguousarray(np.broadcast_to(np.arange(n_t + 1, dtype=np.int32), (len(lv), n_t + 1)))
    rows, _ = contour_records(lv, identity, n_t, path)
    out: list[list[set]] = [[set() for _ in range(n_t)] for _ in range(len(lv))]
    for b, x1, y1, x2, y2, lo, hi in rows.tolist():
        for j in range(lo, hi + 1):
            out[b][j].add((x1, y1, x2, y2))
    return out
