"""Weak localization and MaxBoxAccV2 on hand-made maps with known answers, and their two exact
emulations checked against the programs they emulate on thousands of random cases: the authors'
``imresize`` (bytescale + PIL's bilinear resize) and OpenCV's ``findContours(RETR_TREE)``
(docs/PROTOCOLS.md §3)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from saliency_bench.ops.contours import contour_boxes_by_threshold, contour_records
from saliency_bench.ops.geometry import iou_voc, scale_boxes_wsol
from saliency_bench.benchmarks.localization import DEFAULT_ALPHAS, Localization, authors_boxes
from saliency_bench.benchmarks.maxboxacc import maxboxacc_correct, wsol_levels, wsol_scoremaps
from saliency_bench.contracts import Sample

H5 = np.array([[0, 0, 0, 0, 0],
               [0, 1, 2, 0, 0],
               [0, 3, 9, 0, 0],
               [0, 0, 0, 0, 4],
               [0, 0, 0, 0, 0]], np.float32)  # sum 19, mean 0.76, min 0, max 9


# ---------------------------------------------------------------------------------- hand-computed
@pytest.mark.parametrize("kind, alpha, box", [
    ("value", 0.0, (2, 2, 5, 4)),   # h >= 0 keeps every pixel; the zeros bytescale to 0
    ("value", 0.3, (2, 3, 5, 4)),   # h >= 2.7: 3, 9, 4
    ("value", 0.5, (3, 3, 3, 3)),   # h >= 4.5: 9
    ("mean", 2.0, (2, 2, 5, 4)),    # h >= 1.52: 2, 3, 9, 4
    ("mean", 5.0, (3, 3, 5, 4)),    # h >= 3.8: 9, 4
    ("energy", 0.5, (3, 3, 3, 3)),  # cumsum 9,13,16,18,19 reaches 9.5 at position 1: keep 1 pixel
    ("energy", 0.7, (3, 3, 5, 4)),  # reaches 13.3 at position 2: keep 9 and 4
])
def test_thresholding_a_5x5_map_at_its_own_size_gives_the_hand_computed_one_based_box(kind, alpha, box):
    # same size: PIL copies the image, so the box is the kept pixels' box, 1-based
    assert tuple(authors_boxes(H5, (5, 5), {kind: [alpha]})[kind][0]) == box


def test_a_7x7_map_upsampled_twice_has_the_box_pil_fixed_point_arithmetic_gives():
    """Kept pixels 1.0 at (row 3, col 2) and 0.004 at (row 3, col 4), resized 7x7 -> 14x14.

    bytescale: 1.0 -> 255, 0.004 -> uint8(1.02 + 0.5) = 1. Pillow's taps for a 2x upsampling
    are 0.25 / 0.75 (2^20 / 3 * 2^20 in 22-bit fixed point); input column c reaches output
    columns 2c-1 .. 2c+2. Column 2 (255): outputs 3..6, all non-zero (the weakest, 0.25 * 255,
    rounds to 64). Column 4 (1): outputs 7..10 get 1 * 0.25 -> (2^21 + 2^20) >> 22 = 0 at 7 and
    10, 1 * 0.75 -> 1 at 8 and 9. Rows: row 3 (255 after the horizontal pass at 3..6) reaches
    output rows 5..8, the weakest 0.25 * 64 = 16 > 0. Non-zero columns 3..9, rows 5..8: 1-based
    [4, 6, 10, 9] (a footprint of the non-zero taps would say x2 = 11).
    """
    m = np.zeros((7, 7), np.float32)
    m[3, 2] = 1.0
    m[3, 4] = 0.004
    assert tuple(authors_boxes(m, (14, 14), {"value": [0.0]})["value"][0]) == (4, 6, 10, 9)


def test_nothing_non_zero_gives_their_box_1_1_H_W_with_x2_the_height():
    m = np.zeros((7, 7), np.float32)
    m[2, 3] = 1.0
    out = authors_boxes(m, (30, 40), {"energy": [0.0], "value": [0.95]})
    assert tuple(out["energy"][0]) == (1, 1, 30, 40)  # energy alpha 0 keeps no pixel
    assert tuple(out["value"][0]) != (1, 1, 30, 40)


def test_a_constant_kept_map_bytescales_to_all_zeros_and_gives_the_whole_image_box():
    m = np.full((7, 7), 0.5, np.float32)
    out = authors_boxes(m, (20, 30), {"value": [0.0], "mean": [1.0]})  # every pixel kept, range 0
    assert tuple(out["value"][0]) == (1, 1, 20, 30) and tuple(out["mean"][0]) == (1, 1, 20, 30)


def test_a_kept_map_with_negative_values_bytescales_its_rejected_zeros_to_non_zero():
    """value alpha 0.1 on -2 (corner), -1 (elsewhere), 3 (centre): threshold 0.1 * 5 = 0.5 above
    the minimum keeps h >= -1.5, so only the corner is rejected and set to 0. The kept map's range
    is [-1, 3]: -1 -> 0, 3 -> 255, and the rejected 0 -> uint8(1 * 255 / 4 + 0.5) = 64: the box
    runs from the rejected corner to the centre."""
    m = np.full((5, 5), -1.0, np.float32)
    m[0, 0] = -2.0
    m[2, 2] = 3.0
    assert tuple(authors_boxes(m, (5, 5), {"value": [0.1]})["value"][0]) == (1, 1, 3, 3)


@pytest.mark.parametrize("alpha, box", [
    (0.5, (1, 1, 1, 1)),   # cumsum 1,2,3,4 reaches 2 at position 1: the first tie in raster order
    (0.75, (1, 1, 4, 1)),  # reaches 3 at position 2: the two ties of the top row
    (0.9, (1, 1, 4, 4)),   # reaches 3.6 at position 3: three ties, the box spans the map
])
def test_energy_thresholding_cuts_tied_values_in_raster_order(alpha, box):
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = m[0, 3] = m[3, 0] = m[3, 3] = 1.0
    assert tuple(authors_boxes(m, (4, 4), {"energy": [alpha]})["energy"][0]) == box


def test_iou_uses_the_inclusive_plus_one_convention():
    assert iou_voc([0, 0, 9, 9], [0, 0, 9, 9]) == pytest.approx(1.0)
    assert iou_voc([0, 0, 9, 9], [5, 0, 14, 9]) == pytest.approx(50 / 150)  # 5x10 of 10x10 + 10x10
    assert iou_voc([0, 0, 0, 0], [0, 0, 1, 0]) == pytest.approx(0.5)  # one pixel against two


def test_ground_truth_boxes_scale_like_resize_bbox_multiplying_before_dividing():
    # 227 * 224 / 227 is exactly 224; 227 * (224 / 227) is 223.99999999999997, which int() makes 223
    assert scale_boxes_wsol(np.array([[0, 0, 227, 226]]), (227, 227), (224, 224)).tolist() == [[0, 0, 224, 223]]


# ---------------------------------------------------------------------------------- the authors' imresize
def _bytescale(d: np.ndarray) -> np.ndarray:
    """scipy.misc.bytescale (scipy <= 1.2), as the authors' imresize called it on a float32 map."""
    cmin, cmax = d.min(), d.max()
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(255 - 0) / cscale
    return ((d - cmin) * scale + 0).clip(0, 255).__add__(0.5).astype(np.uint8)


def _getbb_stable(h: np.ndarray, alpha: float, method: str, size: tuple[int, int]) -> list[int]:
    """getbb_from_heatmap(thres_first=True) with PIL as imresize's resize; energy ties in raster
    order (stable), as ours."""
    h = h.copy()
    h64 = h.astype(np.float64)
    if method == "mean":
        h[h64 < alpha * h64.mean()] = 0
    elif method == "value":
        h[h64 - h64.min() < alpha * (h64.max() - h64.min())] = 0
    else:
        f = h.flatten()
        idx = np.argsort(-f, kind="stable")
        cum = np.cumsum(f.astype(np.float64)[idx])
        ind = np.nonzero(cum >= alpha * h64.sum())[0][0]
        f[idx[ind:]] = 0
        h = f.reshape(h.shape)
    im = Image.frombytes("L", (h.shape[1], h.shape[0]), _bytescale(h).tobytes())
    r = np.asarray(im.resize((size[1], size[0]), Image.BILINEAR))
    if (r == 0).all():
        return [1, 1, size[0], size[1]]
    ys, xs = np.nonzero(r)
    return [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1]


def test_authors_boxes_equal_bytescale_and_pil_bilinear_on_thousands_of_random_maps_and_sizes():
    """Every thresholding and alpha of 360 random maps (non-negative, signed, sparse, tied, heavy
    tailed, symmetric bumps whose ties the energy cut splits, as the centre's; 1..40 pixels a side)
    resized to random sizes (1..120, up and down, both pass orders of Pillow): 21,960 boxes, all
    equal."""
    rng = np.random.default_rng(0)
    cells = 0
    for trial in range(360):
        h, w = rng.integers(1, 41, 2)
        size = tuple(int(v) for v in rng.integers(1, 121, 2))
        kind = trial % 6
        if kind == 0:
            m = rng.random((h, w))
        elif kind == 1:
            m = np.maximum(rng.standard_normal((h, w)), 0)
        elif kind == 2:
            m = rng.standard_normal((h, w))
        elif kind == 3:
            m = rng.integers(0, 4, (h, w))
        elif kind == 4:
            m = rng.random((h, w)) ** 8
        else:  # symmetric about a (half-)pixel centre: 4- or 8-fold ties; shifted below 0 at times
            yy, xx = np.mgrid[:h, :w]
            cy, cx = rng.integers(0, 2 * h) / 2, rng.integers(0, 2 * w) / 2
            m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(1, 20) ** 2)) - rng.choice([0, 0.3])
        m = m.astype(np.float32)
        got = authors_boxes(m, size, DEFAULT_ALPHAS)
        for method, alphas in DEFAULT_ALPHAS.items():
            for i, a in enumerate(alphas):
                assert list(got[method][i]) == _getbb_stable(m, a, method, size), (trial, method, a, m.shape, size)
                cells += 1
    assert cells == 360 * 61


def _split_tie_maps():
    """Maps whose energy cut splits a tie where the shortcuts of the tie path matter."""
    small = np.ones((10, 10), np.float32)  # at alpha 0.9 and 0.95 the cut is in the ties of 1, whose byte
    small[4, 5] = 600.0  # is 0 (255 / 600 + 0.5 < 1), as are the two 1.1s: the box is the peak's alone
    small[0, 9] = small[9, 0] = 1.1
    ring = np.zeros((7, 7), np.float32)  # ties of 2 on a ring around a peak: the kept ties decide the box
    ring[1, 1:6] = ring[5, 1:6] = ring[1:6, 1] = ring[1:6, 5] = 2.0
    ring[3, 3] = 3.0
    return {"small_ties_beside_small_values": small, "ring_of_ties": ring}


@pytest.mark.parametrize("name", ["small_ties_beside_small_values", "ring_of_ties"])
@pytest.mark.parametrize("size", [(7, 10), (13, 9), (3, 17)])
def test_energy_cuts_inside_a_tie_give_pils_boxes_where_the_ties_decide(name, size):
    alphas = {"energy": DEFAULT_ALPHAS["energy"][1:]}  # alpha 0 is never reached: their code raises
    m = _split_tie_maps()[name]
    got = authors_boxes(m, size, alphas)["energy"]
    want = [_getbb_stable(m, a, "energy", size) for a in alphas["energy"]]
    assert [list(b) for b in got] == want
    assert len({tuple(b) for b in want}) > 1  # the alphas do not all give one box


# ---------------------------------------------------------------------------------- contours
def _cv2_boxes(mask: np.ndarray) -> set[tuple[int, int, int, int]]:
    contours = cv2.findContours(mask.astype(np.uint8) * 255, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    out = set()
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        out.add((x, y, x + w - 1, y + h - 1))
    return out


def _level_map(rng: np.random.Generator, kind: int, h: int, w: int) -> np.ndarray:
    """Integer level maps of many shapes: noisy, binary (holes everywhere), smooth with few or many
    levels (plateaus), tilted planes and rings (holes that grow and reach the border), constant."""
    if kind == 0:
        return rng.integers(0, 4, (h, w))
    if kind == 1:
        return (rng.random((h, w)) < 0.5).astype(int) * 2
    if kind in (2, 3):
        m = ndi.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(0.5, 4))
        n = 8 if kind == 2 else int(rng.integers(2, 40))
        return np.digitize(m, np.quantile(m, np.linspace(0, 1, n)[1:-1]))
    if kind == 4:
        return rng.integers(0, 10, (h, w))
    if kind == 5:  # bicubic upsampling of a tiny map, as Grad-CAM's are scored
        small = rng.random((int(rng.integers(2, 6)), int(rng.integers(2, 6))))
        m = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.round((m - m.min()) / (np.ptp(m) or 1) * rng.integers(3, 60)).astype(int)
    if kind == 6:  # rings around random centres: holes inside, crossing the border
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2), rng.uniform(1, max(h, w))
        return np.round(20 * np.exp(-((np.hypot(yy - cy, xx - cx) - r) ** 2) / rng.uniform(1, 30))).astype(int)
    if kind == 7:  # a tilted plane with steps: long runs, extremes on the border
        yy, xx = np.mgrid[:h, :w]
        return ((rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx) // rng.uniform(0.5, 3)).astype(int) % 7
    return np.full((h, w), int(rng.integers(0, 3)))


@pytest.mark.parametrize("path", ["runs", "pixels"])
def test_contour_boxes_at_every_threshold_equal_opencv_retr_tree_holes_included(path):
    """Both ways of :func:`contour_records` (unimodal runs; the pixel union-finds), forced, on 360
    maps of 1..40 pixels a side: at every threshold the set of boxes equals that of
    ``cv2.findContours(RETR_TREE)`` + ``boundingRect``."""
    rng = np.random.default_rng(0)
    cases = holes = 0
    for trial in range(360):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        lv = _level_map(rng, trial % 9, h, w)
        lv = lv - lv.min()
        n_t = int(lv.max()) + 1
        got = contour_boxes_by_threshold(lv[None], n_t, path)[0]
        for j in range(n_t):
            want = _cv2_boxes(lv > j)
            outer = _cv2_boxes_external(lv > j)
            holes += len(want - outer)
            assert got[j] == want, (trial, j)
            cases += 1
    assert cases > 3000 and holes > 300  # holes were exercised


def test_pixel_sweeps_with_a_min_area_keep_exactly_opencvs_boxes_of_that_area():
    """With ``min_area``, the pixel sweeps track records only for boxes that can reach it: at every
    threshold the boxes they return are exactly OpenCV's contour boxes whose area, grown by one
    pixel to the right and below, is at least ``min_area`` (noisy maps, binary ones full of holes,
    rings whose holes grow and reach the border, on 240 maps and four areas each)."""
    rng = np.random.default_rng(5)
    cases = kept = dropped = 0
    for trial in range(240):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        lv = _level_map(rng, (0, 1, 4, 6, 2)[trial % 5], h, w)
        lv = np.ascontiguousarray(lv - lv.min(), dtype=np.int32)
        n_t = int(lv.max()) + 1
        identity = np.arange(n_t + 1, dtype=np.int32)[None]
        for amin in (0.0, 4.0, 16.5, float(rng.uniform(0, (h + 1) * (w + 1)))):
            rows, _ = contour_records(lv[None], identity, n_t, "pixels", min_area=np.array([amin]))
            got = [set() for _ in range(n_t)]
            for _, x1, y1, x2, y2, lo, hi in rows.tolist():
                for j in range(lo, hi + 1):
                    got[j].add((x1, y1, x2, y2))
            for j in range(n_t):
                every = _cv2_boxes(lv > j)
                want = {b for b in every if (b[2] - b[0] + 2) * (b[3] - b[1] + 2) >= amin}
                assert got[j] == want, (trial, amin, j)
                cases += 1
                kept += len(want)
                dropped += len(every - want)
    assert cases > 2000 and kept > 1000 and dropped > 1000  # both sides of the area were exercised


@pytest.mark.parametrize("w", [2 ** 15 - 1, 2 ** 15 + 3], ids=["int16-boxes", "int32-boxes"])
def test_pixel_sweeps_of_a_map_too_wide_for_int16_boxes_equal_opencv(w):
    """The sweeps keep their boxes in int16 while every coordinate fits, int32 for a map with a side
    of 2^15 or more: a 3-pixel-high noisy strip on either side of that width, with a hole near its
    end, is OpenCV's at every threshold."""
    rng = np.random.default_rng(9)
    lv = rng.integers(0, 4, (3, w))
    lv[:, -6:-3] = [[3, 3, 3], [3, 0, 3], [3, 3, 3]]  # a ring near the end: a hole inside
    got = contour_boxes_by_threshold(lv[None], 4, "pixels")[0]
    for j in range(4):
        want = _cv2_boxes(lv > j)
        assert got[j] == want, j
    assert (w - 6, 0, w - 4, 2) in got[2]  # the hole's border, beyond int16 in the wide map


def test_auto_scores_smooth_maps_by_runs_and_noisy_maps_by_pixels_both_as_opencv():
    """Per map, the way is chosen by how many runs it has: bicubic-upsampled small maps and blurred
    maps by runs, noise by pixels; all 100 thresholds of each equal OpenCV's contour boxes."""
    rng = np.random.default_rng(1)
    smooth = [cv2.resize(rng.random((7, 7)), (96, 96), interpolation=cv2.INTER_CUBIC),
              ndi.gaussian_filter(rng.standard_normal((96, 96)), 6), _ring(96).astype(np.float64)]
    noisy = [rng.random((96, 96)), ndi.gaussian_filter(rng.standard_normal((96, 96)), 0.5)]
    s8 = wsol_scoremaps(np.stack(smooth + noisy).astype(np.float32), (96, 96))
    lut = wsol_levels(s8)
    took = np.zeros(len(s8), bool)
    rows, top = contour_records(s8, lut, 100, took_runs=took)
    assert took.tolist() == [True] * len(smooth) + [False] * len(noisy)
    for b in range(len(s8)):
        level = lut[b][s8[b]]
        got = [set() for _ in range(100)]
        for _, x1, y1, x2, y2, lo, hi in rows[rows[:, 0] == b].tolist():
            for j in range(lo, hi + 1):
                got[j].add((x1, y1, x2, y2))
        for j in range(100):
            assert got[j] == (_cv2_boxes(level > j) if j < top[b] else set()), (b, j)


def _cv2_boxes_external(mask: np.ndarray) -> set[tuple[int, int, int, int]]:
    contours = cv2.findContours(mask.astype(np.uint8) * 255, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    return {(x, y, x + w - 1, y + h - 1) for x, y, w, h in (cv2.boundingRect(c) for c in contours)}


def _ring(size: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 19.5, xx - 19.5)
    return np.exp(-((r - 12) ** 2) / 8).astype(np.float32)  # a ring around an empty disc


def _wsol_loop(s8: np.ndarray, gt: np.ndarray, mode: int) -> np.ndarray:
    """wsolevaluation's per-threshold boxes and IoU test on one uint8 score map."""
    h, w = s8.shape
    out = np.zeros((3, 100), bool)
    for j, t in enumerate(np.arange(0, 1, 0.01)):
        _, thr = cv2.threshold(s8[:, :, None], int(t * s8.max()), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(thr, mode, cv2.CHAIN_APPROX_SIMPLE)[0]
        boxes = [(x, y, min(x + bw, w - 1), min(y + bh, h - 1))
                 for x, y, bw, bh in map(cv2.boundingRect, contours)] or [(0, 0, 0, 0)]
        best = max(float(iou_voc(b, g)) for b in boxes for g in gt)
        out[:, j] = [best >= d for d in (0.3, 0.5, 0.7)]
    return out


def test_maxboxacc_scores_the_hole_of_a_ring_as_opencv_retr_tree_does():
    m = _ring()
    s8 = wsol_scoremaps(m[None], (40, 40))[0]
    fg = s8 > int(0.5 * s8.max())
    ys, xs = np.nonzero(ndi.binary_fill_holes(fg) & ~fg)  # the disc the ring encloses at t = 0.5
    gt = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]])
    got = maxboxacc_correct(m[None], [gt], (40, 40))[0]
    want = _wsol_loop(s8, gt, cv2.RETR_TREE)
    np.testing.assert_array_equal(got, want)
    outer_only = _wsol_loop(s8, gt, cv2.RETR_EXTERNAL)
    assert (want & ~outer_only).sum() >= 10  # thresholds where only the hole's border matches


def test_maxboxacc_on_noisy_maps_equals_opencv_for_ground_truth_boxes_of_every_size():
    """The pixel sweeps leave out boxes too small to reach IoU 0.3 with any ground-truth box;
    on noisy maps (thousands of contours per threshold) with boxes from one pixel to the whole
    map, several per image, non-integer and degenerate ones, every cell equals the plain
    per-threshold OpenCV loop."""
    rng = np.random.default_rng(3)
    maps = np.stack([ndi.gaussian_filter(rng.random((48, 48)), s) for s in (0, 0.5, 0.7, 0, 0.5, 0, 0.6, 0)])
    gts = [np.array([[20, 20, 20, 20]]), np.array([[0, 0, 47, 47]]), np.array([[3.5, 4.25, 30.75, 20.5]]),
           np.array([[5, 5, 9, 8], [10, 2, 45, 40]]), np.array([[30, 30, 29, 40]]),  # an empty one
           np.array([[1, 1, 3, 3], [2, 2, 4, 4], [40, 0, 47, 6]]), np.array([[0, 10, 47, 12]]),
           np.array([[12, 12, 30, 34]])]
    got = maxboxacc_correct(maps.astype(np.float32), gts)
    s8 = wsol_scoremaps(maps.astype(np.float32), (48, 48))
    hits = 0
    for b in range(len(maps)):
        want = _wsol_loop(s8[b], gts[b], cv2.RETR_TREE)
        np.testing.assert_array_equal(got[b], want, err_msg=str(b))
        hits += int(want.sum())
    assert 0 < hits < got.size  # some cells hit, some miss


def test_maxboxacc_takes_every_region_of_a_map_with_two_blobs():
    m = np.zeros((1, 20, 20), np.float32)
    m[0, 2:6, 2:6] = 1.0
    m[0, 12:18, 10:18] = 0.5  # uint8 127: above int(t*255) for t <= 0.49 only
    gt = [np.array([[10, 12, 17, 17]])]  # the weaker blob; its box (10,12,18,18) has IoU 48/63
    c = maxboxacc_correct(m, gt)
    for k in range(3):  # IoU 0.3, 0.5, 0.7
        assert c[0, k, :50].all() and not c[0, k, 50:].any()
    # one box around all pixels (not multi-contour) would have missed: IoU well below 0.3
    assert iou_voc([2, 2, 18, 18], [10, 12, 17, 17]) < 0.3


def test_score_maps_equal_wsolevaluations_resize_normalize_and_uint8_on_many_maps():
    """``wsol_scoremaps`` against wsolevaluation's steps written plainly (float64, cv2 bicubic
    resize, ``normalize_scoremap``, ``(cam * 255).astype(np.uint8)``) on 600 maps: float32 and
    float64, resized or not, with ties on exact quarter values (products that are exact integers),
    tiny and huge ranges, NaN (all zeros), infinities (numpy's own casts) and constant maps."""
    rng = np.random.default_rng(3)

    def reference(maps, size):
        out = []
        for m in maps:
            cam = np.asarray(m, dtype=np.float64)
            if cam.shape != size:
                cam = cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
            if np.isnan(cam).any() or cam.min() == cam.max():
                out.append(np.zeros(size, np.uint8))
                continue
            cam = cam - cam.min()
            cam = cam / cam.max()
            out.append((cam * 255).astype(np.uint8))
        return np.stack(out)

    with np.errstate(invalid="ignore", over="ignore"):  # 1e300 as float32 is inf: a case of its own
        for trial in range(100):
            h, w = (int(v) for v in rng.integers(1, 40, 2))
            m = rng.standard_normal((3, h, w))
            kind = trial % 6
            if kind == 1:
                m = np.round(m * 4) / 4 * 17
            elif kind == 2:
                m[0] = 1.5
                m[1] *= 1e-300
            elif kind == 3:
                m[1, 0, 0] = np.nan
                m[2] *= 1e300
            elif kind == 4:
                m[2, -1, -1] = np.inf
                m[0, 0, -1] = -np.inf
            for dtype in (np.float32, np.float64):
                for size in ((h, w), (int(rng.integers(1, 60)), int(rng.integers(1, 60)))):
                    np.testing.assert_array_equal(wsol_scoremaps(m.astype(dtype), size),
                                                  reference(m.astype(dtype), size), err_msg=str((trial, dtype, size)))


def test_maxboxacc_resizes_a_small_map_with_opencv_bicubic_and_scores_a_constant_map_as_no_box():
    m = np.zeros((2, 7, 7), np.float32)
    m[0, 3, 3] = 1.0  # map 1: a peak; map 2: constant (all zeros after normalize_scoremap)
    s8 = wsol_scoremaps(m, (224, 224))
    cam = cv2.resize(m[0].astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(s8[0], ((cam - cam.min()) / (cam - cam.min()).max() * 255).astype(np.uint8))
    assert not s8[1].any()
    c = maxboxacc_correct(m, [np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]])], (224, 224))
    assert c[1].all()  # no contour: box (0, 0, 0, 0), which is the ground truth here


# ---------------------------------------------------------------------------------- the benchmark
def test_alpha_star_is_chosen_on_held_out_samples_only():
    bench = Localization(bootstrap=50)
    n_alpha = 20

    def bits(i):
        return "".join("1" if k == i else "0" for k in range(n_alpha))
    recs, meta = [], []
    for i in range(6):  # held-out samples are right only at alpha index 3
        recs.append({"value": bits(3), "energy": bits(3), "mean": bits(3) + "0", "mba30": "0" * 100,
                     "mba50": "0" * 100, "mba70": "0" * 100})
        meta.append({"id": f"h{i}", "category": "c", "split": "heldout", "flags": {}})
    for i in range(4):  # evaluation samples are right only at alpha index 0
        recs.append({"value": bits(0), "energy": bits(0), "mean": bits(0) + "0", "mba30": "1" * 100,
                     "mba50": "1" * 100, "mba70": "0" * 100})
        meta.append({"id": f"e{i}", "category": "c", "split": "eval", "flags": {}})
    out = bench.summarize(recs, meta)
    assert out["loc_error_value"]["note"].startswith("alpha*=0.15")
    assert out["loc_error_value"]["value"] == pytest.approx(100.0)
    assert out["loc_error_value"]["n"] == 4
    assert out["loc_error_mean"]["note"].startswith("alpha*=1.5")
    assert out["maxboxacc_v2"]["value"] == pytest.approx(200 / 3)  # eval only: (100 + 100 + 0) / 3


def test_without_held_out_split_alpha_star_comes_from_a_seeded_half():
    bench = Localization(bootstrap=0, seed=1)
    recs = [{k: "1" + "0" * 19 for k in ("value", "energy")} | {"mean": "1" + "0" * 20,
            "mba30": "0" * 100, "mba50": "0" * 100, "mba70": "0" * 100} for _ in range(10)]
    meta = [{"id": str(i), "category": "c", "split": "eval", "flags": {}} for i in range(10)]
    out = bench.summarize(recs, meta)
    assert out["loc_error_energy"]["n"] == 5 and out["loc_error_energy"]["value"] == 0.0
    assert "seeded half" in out["loc_error_energy"]["note"]


def test_localization_benchmark_scores_a_batch_into_compact_records():
    bench = Localization()
    s = Sample(id="a", image=None, size=(10, 10), targets={}, category="c",
               boxes=np.array([[2, 2, 2, 2]], np.float32))
    m = np.zeros((5, 5), np.float32)
    m[1, 1] = 1.0  # 5x5 -> 10x10: the kept pixel reaches 0-based rows/cols 1..4, 1-based [2, 2, 5, 5]: IoU 1/16
    assert tuple(authors_boxes(m, (10, 10), {"value": [0.5]})["value"][0]) == (2, 2, 5, 5)
    rec = bench.score(s, m, (5, 5))
    assert set(rec) == {"value", "energy", "mean", "mba30", "mba50", "mba70"}
    assert rec["value"] == "0" * 20 and len(rec["mean"]) == 21 and len(rec["mba30"]) == 100


def test_every_option_has_a_default_and_every_column_a_protocol():
    bench = Localization()
    assert set(bench.defaults) == {"alphas", "iou", "heldout", "bootstrap", "seed"}
    assert set(bench.protocol()) == set(bench.columns)
    assert "own resolution" in bench.protocol()["loc_error_value"]
    assert "RETR_TREE" in bench.protocol()["maxboxacc_v2"]
