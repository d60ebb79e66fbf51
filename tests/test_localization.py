"""Weak localization and MaxBoxAccV2 on hand-made maps and boxes with known answers
(PROTOCOLS.md §3)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from saliency_bench.benchmarks.boxes import component_box_records, iou_voc, resize_boxes_through_footprint
from saliency_bench.benchmarks.localization import (Localization, maxboxacc_correct, original_boxes,
                                                    threshold_boxes)
from saliency_bench.contracts import Sample

H5 = np.array([[0, 0, 0, 0, 0],
               [0, 1, 2, 0, 0],
               [0, 3, 9, 0, 0],
               [0, 0, 0, 0, 4],
               [0, 0, 0, 0, 0]], np.float32)  # sum 19, mean 0.76, min 0, max 9


@pytest.mark.parametrize("kind, alpha, box", [
    ("value", 0.0, (1, 1, 4, 3)),   # h >= 0, zeros excluded: every non-zero pixel
    ("value", 0.3, (1, 2, 4, 3)),   # h >= 2.7: 3, 9, 4
    ("value", 0.5, (2, 2, 2, 2)),   # h >= 4.5: 9
    ("mean", 2.0, (1, 1, 4, 3)),    # h >= 1.52: 2, 3, 9, 4
    ("mean", 5.0, (2, 2, 4, 3)),    # h >= 3.8: 9, 4
    ("energy", 0.5, (2, 2, 2, 2)),  # cumsum 9,13,16,18,19 reaches 9.5 at position 1: keep 1 pixel
    ("energy", 0.7, (2, 2, 4, 3)),  # reaches 13.3 at position 2: keep 9 and 4
])
def test_localization_thresholding_on_a_5x5_map_gives_the_hand_computed_box(kind, alpha, box):
    boxes, empty = threshold_boxes(H5[None], kind, [alpha])
    assert not empty[0, 0]
    assert tuple(original_boxes(boxes[0], empty[0], (5, 5), (5, 5))[0]) == box


@pytest.mark.parametrize("alpha, box", [
    (0.5, (0, 0, 0, 0)),   # cumsum 1,2,3,4 reaches 2 at position 1: the first tie in raster order
    (0.75, (0, 0, 3, 0)),  # reaches 3 at position 2: the two ties of the top row
    (0.9, (0, 0, 3, 3)),   # reaches 3.6 at position 3: three ties, the box spans the map
])
def test_energy_thresholding_cuts_tied_values_in_raster_order(alpha, box):
    m = np.zeros((1, 4, 4), np.float32)
    m[0, 0, 0] = m[0, 0, 3] = m[0, 3, 0] = m[0, 3, 3] = 1.0
    boxes, empty = threshold_boxes(m, "energy", [alpha])
    assert not empty[0, 0] and tuple(boxes[0, 0]) == box


def test_localization_empty_selection_is_the_whole_image():
    boxes, empty = threshold_boxes(np.zeros((1, 5, 5), np.float32), "value", [0.5])
    assert empty[0, 0]
    assert tuple(original_boxes(boxes[0], empty[0], (5, 5), (30, 40))[0]) == (0, 0, 39, 29)


def test_localization_box_after_resize_is_the_box_of_the_bilinearly_resized_kept_map():
    rng = np.random.default_rng(0)
    for out in [(13, 7), (20, 31), (3, 4)]:
        kept = np.zeros((5, 5), np.float32)
        kept[rng.integers(0, 5), rng.integers(0, 5)] = 1
        kept[rng.integers(0, 5), rng.integers(0, 5)] = 1
        big = F.interpolate(torch.from_numpy(kept)[None, None], size=out, mode="bilinear",
                            align_corners=False)[0, 0].numpy()
        ys, xs = np.nonzero(big)
        ky, kx = np.nonzero(kept)
        got = resize_boxes_through_footprint(np.array([kx.min(), ky.min(), kx.max(), ky.max()]), (5, 5), out)
        assert tuple(got) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_iou_uses_the_inclusive_plus_one_convention():
    assert iou_voc([0, 0, 9, 9], [0, 0, 9, 9]) == pytest.approx(1.0)
    assert iou_voc([0, 0, 9, 9], [5, 0, 14, 9]) == pytest.approx(50 / 150)  # 5x10 of 10x10 + 10x10
    assert iou_voc([0, 0, 0, 0], [0, 0, 1, 0]) == pytest.approx(0.5)  # one pixel against two


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


def test_maxboxacc_v2_takes_every_region_of_a_map_with_two_blobs():
    m = np.zeros((1, 20, 20), np.float32)
    m[0, 2:6, 2:6] = 1.0
    m[0, 12:18, 10:18] = 0.5  # uint8 127: above int(t*255) for t <= 0.49 only
    gt = [np.array([[10, 12, 17, 17]])]  # the weaker blob; its box (10,12,18,18) has IoU 48/63
    c = maxboxacc_correct(m, gt)
    for k in range(3):  # IoU 0.3, 0.5, 0.7
        assert c[0, k, :50].all() and not c[0, k, 50:].any()
    # one box around all pixels (not multi-contour) would have missed: IoU well below 0.3
    assert iou_voc([2, 2, 18, 18], [10, 12, 17, 17]) < 0.3


def test_component_boxes_at_every_threshold_match_a_labelling_per_threshold():
    rng = np.random.default_rng(0)
    maps = np.stack([ndi.gaussian_filter(rng.standard_normal((30, 37)), s) for s in (0.3, 1.0, 2.5)])
    levels = np.stack([np.digitize(m, np.quantile(m, np.linspace(0, 1, 12)[1:-1])) for m in maps])
    rec = component_box_records(levels, 11)
    for b in range(len(maps)):
        for j in range(11):
            lab, _ = ndi.label(levels[b] > j, structure=np.ones((3, 3)))
            want = sorted((s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1) for s in ndi.find_objects(lab))
            sel = (rec["image"] == b) & (rec["lo"] <= j) & (rec["hi"] >= j)
            assert sorted(map(tuple, rec["box"][sel].tolist())) == want


def test_localization_benchmark_scores_a_batch_into_compact_records():
    bench = Localization()
    s = Sample(id="a", image=None, size=(10, 10), targets={}, category="c",
               boxes=np.array([[2, 2, 2, 2]], np.float32))
    m = np.zeros((5, 5), np.float32)
    m[1, 1] = 1.0  # at 5x5 -> 10x10 the kept pixel (1,1) reaches rows/cols 1..3: IoU 1/9
    rec = bench.score(s, m, (5, 5))
    assert set(rec) == {"value", "energy", "mean", "mba30", "mba50", "mba70"}
    assert rec["value"] == "0" * 20 and len(rec["mean"]) == 21 and len(rec["mba30"]) == 100
