"""Box geometry shared by the benchmarks: VOC IoU, tight boxes, resize footprints, and the
connected-component boxes of a thresholded map at every threshold at once (MaxBoxAccV2).

Boxes are ``(x1, y1, x2, y2)`` in inclusive integer pixel coordinates (the VOC convention,
``w = x2 - x1 + 1``), as in Fong & Vedaldi's evaluation code and in wsolevaluation
(Choe et al., CVPR 2020, ``calculate_multiple_iou``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def iou_voc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [...,4]`` and ``b [...,4]`` (broadcast) with the +1 (inclusive) convention.

    A degenerate union (``<= 0``) gives IoU 0, as wsolevaluation does.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred [...,4]`` against ``gt [G,4]``: the IoU with the best-matching ground-truth box."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return np.zeros(np.shape(pred)[:-1])
    return iou_voc(np.asarray(pred)[..., None, :], gt).max(axis=-1)


def tight_boxes(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes around the ``True`` pixels of ``masks [...,H,W]``: ``(boxes [...,4], empty [...])``.

    An empty mask gets the box ``(0, 0, 0, 0)`` and ``empty = True``; callers decide what an
    empty selection means (the whole image for Fong & Vedaldi's protocol).
    """
    masks = np.asarray(masks, dtype=bool)
    rows = masks.any(axis=-1)  # [...,H]
    cols = masks.any(axis=-2)  # [...,W]
    h, w = rows.shape[-1], cols.shape[-1]
    empty = ~rows.any(axis=-1)
    y1 = rows.argmax(axis=-1)
    y2 = h - 1 - rows[..., ::-1].argmax(axis=-1)
    x1 = cols.argmax(axis=-1)
    x2 = w - 1 - cols[..., ::-1].argmax(axis=-1)
    boxes = np.stack([x1, y1, x2, y2], axis=-1)
    boxes[empty] = 0
    return boxes, empty


@lru_cache(maxsize=256)
def resize_footprint(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """For a bilinear resize of one axis from ``n_in`` to ``n_out`` (torch, ``align_corners=False``):
    the first and last output index that input index ``i`` contributes to with non-zero weight.

    Bilinear resizing is separable with non-negative weights, so the non-zero pixels of a resized
    non-negative map are exactly the outputs some kept input pixel reaches: the tight box of the
    resized map follows from the tight box of the map, without resizing it.
    """
    eye = torch.eye(n_in, dtype=torch.float64)[:, None, :]  # [n_in, 1, n_in]: one impulse per row
    w = F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0, :].numpy()  # [n_in, n_out]
    reach = w > 0
    first = reach.argmax(axis=1)
    last = n_out - 1 - reach[:, ::-1].argmax(axis=1)
    return first, last


def resize_boxes_through_footprint(boxes: np.ndarray, in_size: tuple[int, int],
                                   out_size: tuple[int, int]) -> np.ndarray:
    """Map tight boxes of a map at ``in_size`` (H, W) to the tight boxes of the map resized
    bilinearly to ``out_size``, via :func:`resize_footprint`."""
    fy0, fy1 = resize_footprint(int(in_size[0]), int(out_size[0]))
    fx0, fx1 = resize_footprint(int(in_size[1]), int(out_size[1]))
    b = np.asarray(boxes, dtype=np.int64)
    return np.stack([fx0[b[..., 0]], fy0[b[..., 1]], fx1[b[..., 2]], fy1[b[..., 3]]], axis=-1)


def scale_boxes_wsol(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale boxes from an image of ``from_size`` (H, W) to ``to_size`` the way wsolevaluation's
    ``resize_bbox`` does: multiply each coordinate by the size ratio and truncate to int."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx = float(to_size[1]) / float(from_size[1])
    sy = float(to_size[0]) / float(from_size[0])
    return (b * np.array([sx, sy, sx, sy])).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Connected-component boxes at every threshold at once (a component tree by union-find).
# --------------------------------------------------------------------------------------------
# 8-connectivity, as the outer borders of cv2.findContours (Suzuki & Abe): each undirected edge
# once, as an offset (dy, dx) to the neighbour.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            return r
        r = rr


def component_box_records(levels: np.ndarray, n_levels: int) -> dict[str, np.ndarray]:
    """Boxes of the 8-connected components of ``{levels > j}`` for every ``j in 0..n_levels-1``.

    ``levels [B,H,W]`` holds, per pixel, how many thresholds it passes: the pixel is foreground
    at threshold index ``j`` iff ``j < levels``. Foreground sets shrink as ``j`` grows, so the
    components form a tree; we sweep ``j`` downwards, adding each level's pixels and the edges
    they bring, and merging components by union-find (vectorised over pixels, edges and the
    whole batch: O(pixels + edges) work for all thresholds, instead of one labelling per
    threshold). A component's box is reported as a *record* valid over the range of thresholds
    during which it did not change.

    Returns arrays of equal length: ``image`` (index in the batch), ``box [R,4]`` (tight,
    inclusive), ``lo``, ``hi``: the record's box is a component's box at every ``lo <= j <= hi``.
    """
    levels = np.asarray(levels)
    b, h, w = levels.shape
    n = h * w
    lv = levels.reshape(-1).astype(np.int64)
    total = lv.size
    gid = np.arange(total, dtype=np.int64)
    ys = (gid % n) // w
    xs = gid % w

    # Edges with the threshold index at which both ends are foreground: min(level) - 1.
    ep, eq, ea = [], [], []
    grid = lv.reshape(b, h, w)
    idx = gid.reshape(b, h, w)
    for dy, dx in _OFFSETS:
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -dx), w - max(0, dx)
        p = idx[:, y0:y1, x0:x1]
        q = idx[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]
        a = np.minimum(grid[:, y0:y1, x0:x1], grid[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx]) - 1
        keep = a >= 0
        ep.append(p[keep]); eq.append(q[keep]); ea.append(a[keep])
    ep = np.concatenate(ep); eq = np.concatenate(eq); ea = np.concatenate(ea)
    order = np.argsort((n_levels - ea).astype(np.int16), kind="stable")  # radix sort
    ep, eq, ea = ep[order], eq[order], ea[order]
    # ea is sorted descending: the edges of level j are ea_start[j]:ea_start[j] + ea_count[j].
    e_count = np.bincount(ea, minlength=n_levels)
    e_start = np.concatenate([[0], np.cumsum(e_count[::-1])])[::-1][1:]

    entry = lv - 1  # the threshold index at which the pixel appears (-1: never)
    active = entry >= 0
    pix = gid[active]
    pent = entry[active]
    pix = pix[np.argsort((n_levels - pent).astype(np.int16), kind="stable")]
    p_count = np.bincount(pent, minlength=n_levels)
    p_start = np.concatenate([[0], np.cumsum(p_count[::-1])])[::-1][1:]

    parent = gid.copy()
    bx0, by0, bx1, by1 = xs.copy(), ys.copy(), xs.copy(), ys.copy()
    start = np.full(total, -1, dtype=np.int64)  # open record's top level, for current roots
    slot = np.zeros(total, dtype=np.int64)  # scratch for de-duplicating ids

    out_img, out_box, out_lo, out_hi = [], [], [], []

    def close(roots: np.ndarray, j: int) -> None:
        out_img.append(roots // n)
        out_box.append(np.stack([bx0[roots], by0[roots], bx1[roots], by1[roots]], axis=1))
        out_lo.append(np.full(len(roots), j + 1, dtype=np.int64))
        out_hi.append(start[roots])

    for j in range(n_levels - 1, -1, -1):
        # pixels entering at level j: pent == j
        new = pix[p_start[j]:p_start[j] + p_count[j]]
        p, q = ep[e_start[j]:e_start[j] + e_count[j]], eq[e_start[j]:e_start[j] + e_count[j]]
        if len(p):
            rp, rq = _find(parent, p), _find(parent, q)
            # The distinct roots and new pixels involved, without sorting: each id remembers the
            # last position it was written at; an id is kept where that position is its own.
            cat = np.concatenate([rp, rq, new])
            slot[cat] = np.arange(len(cat))
            first = slot[cat] == np.arange(len(cat))
            touched = cat[first]
            compact = np.cumsum(first) - 1  # position in `touched` of each first occurrence
            where = compact[slot[cat]]  # position in `touched` of every entry of cat
            old = touched[start[touched] >= 0]
            if len(old):
                close(old, j)
            # Merge the touched trees: connected components of the graph of their roots (C code,
            # linear in the edges), each represented by its smallest root id.
            m = len(touched)
            a, c = where[:len(rp)], where[len(rp):len(rp) + len(rq)]
            graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, c)), shape=(m, m))
            _, comp = connected_components(graph, directed=False)
            rep = np.full(comp.max() + 1, total, dtype=np.int64)
            np.minimum.at(rep, comp, touched)
            parent[touched] = rep[comp]
            parent[q] = rep[comp[c]]  # path compression for the old pixels just visited
            final = parent[touched]
            np.minimum.at(bx0, final, bx0[touched]); np.minimum.at(by0, final, by0[touched])
            np.maximum.at(bx1, final, bx1[touched]); np.maximum.at(by1, final, by1[touched])
            start[touched] = -1
            start[final] = j
        elif len(new):
            start[new] = j
    roots = gid[(parent == gid) & (start >= 0)]
    close(roots, -1)
    if not out_img:
        z = np.zeros(0, dtype=np.int64)
        return {"image": z, "box": np.zeros((0, 4), np.int64), "lo": z, "hi": z}
    return {"image": np.concatenate(out_img), "box": np.concatenate(out_box),
            "lo": np.concatenate(out_lo), "hi": np.concatenate(out_hi)}
