"""The part-saliency benchmark on synthetic maps whose ratios are known by hand, and the
keypoint readers (COCO keypoint format, the Animal Parts layout, the bundled sample)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from saliency_bench.benchmarks.parts import Parts, window_mean
from saliency_bench.contracts import Sample


def block_map() -> np.ndarray:
    """100x100, 0 except: eyes at (20, 20) and (40, 20) in 0.75 blocks, feet at (20, 80) in a
    0.25 block and (60, 80) in a 0.5 block, and one pixel of 1 (the maximum) at (95, 2)."""
    m = np.zeros((100, 100), np.float32)
    m[15:26, 15:46] = 0.75
    m[75:86, 15:26] = 0.25
    m[75:86, 55:66] = 0.5
    m[2, 95] = 1.0
    return m


def sample(i=0, category="cat", keypoints=None) -> Sample:
    kp = keypoints if keypoints is not None else [("eye_1", 20.0, 20.0), ("left_eye", 40.5, 20.9),
                                                  ("foot_1", 20.0, 80.0), ("front_paw", 60.0, 80.0)]
    return Sample(id=f"s{i}", image=None, size=(100, 100), targets={"imagenet": (0,)}, category=category,
                  keypoints=kp)


def meta(samples):
    return [{"id": s.id, "category": s.category, "split": "eval", "flags": {}} for s in samples]


def test_ratio_on_a_synthetic_map_by_hand():
    # bytescale (max 1): 0.75 -> 191, 0.25 -> 64, 0.5 -> 128 (uint8(x * 255 + 0.5)).
    # mask quantity 1 - v: eyes 64/255 twice, feet 191/255 and 127/255.
    # ratio = (159/255) / (64/255) = 159/64; SE: eyes have none, feet std 32/255 (ddof 0) over
    # sqrt(2): se = r * (32 / sqrt 2) / 159 = 32 / (64 sqrt 2).
    bench = Parts(bootstrap=0)
    s = sample()
    rec = bench.score(s, block_map(), (224, 224))
    assert rec["parts"]["eyes"] == pytest.approx([64 / 255] * 2, abs=1e-6)
    assert rec["parts"]["feet"] == pytest.approx([191 / 255, 127 / 255], abs=1e-6)
    out = bench.summarize([rec], meta([s]))["parts_ratio"]
    assert out["value"] == pytest.approx(159 / 64)
    assert out["se"] == pytest.approx(32 / (64 * math.sqrt(2)))
    # The saliency quantity reads the map itself: (96/255) / (191/255)
    sal = Parts(quantity="saliency", bootstrap=0)
    r2 = sal.summarize([sal.score(s, block_map(), (224, 224))], meta([s]))["parts_ratio"]
    assert r2["value"] == pytest.approx(96 / 191)


def test_groups_pool_categories_and_overall_pools_keypoints():
    bench = Parts(bootstrap=200, groups={"cat": "mammal", "dog": "mammal", "robin": "bird"})
    flipped = block_map()[:, ::-1].copy()  # a map that misses every keypoint region: all 0 there
    s1, s2, s3 = sample(0, "cat"), sample(1, "dog"), sample(2, "robin")
    recs = [bench.score(s1, block_map(), (224, 224)), bench.score(s2, block_map(), (224, 224)),
            bench.score(s3, flipped, (224, 224))]
    out = bench.summarize(recs, meta([s1, s2, s3]))
    assert out["parts_ratio"]["per_group"]["mammal"]["ratio"] == pytest.approx(159 / 64)
    assert out["parts_ratio"]["per_group"]["bird"]["ratio"] == pytest.approx(1.0)  # mask 1 at eyes and feet
    # overall: feet (2 x (191 + 127) + 2 x 255) / 6, eyes (4 x 64 + 2 x 255) / 6, both over 255
    assert out["parts_ratio"]["value"] == pytest.approx((2 * 318 + 510) / (4 * 64 + 510))
    lo, hi = out["parts_ratio"]["ci"]
    assert lo <= out["parts_ratio"]["value"] <= hi


def test_low_resolution_map_is_brought_to_the_original_size():
    # 10x10, top half salient: at 100x100 the eyes (y = 20) read 255, the feet (y = 80) 0.
    m = np.zeros((10, 10), np.float32)
    m[:5] = 1.0
    bench = Parts(quantity="saliency", bootstrap=0)
    rec = bench.score(sample(), m, (224, 224))
    assert rec["parts"]["eyes"] == pytest.approx([1.0, 1.0]) and rec["parts"]["feet"] == pytest.approx([0.0, 0.0])


def test_window_square_is_the_seeds_and_clipped_disc_option():
    m = np.arange(100, dtype=np.float64).reshape(10, 10)
    # 5x5 window centred on int(x), int(y) = (4, 4): rows/cols 2..6, mean = 44
    assert window_mean(m, 4.9, 4.2, 5) == pytest.approx(44.0)
    # clipped at the corner: rows/cols 0..2
    assert window_mean(m, 0.0, 0.0, 5) == pytest.approx(m[:3, :3].mean())
    # disc of diameter 2 at (5, 5): the centre and its 4 neighbours
    assert window_mean(m, 5.0, 5.0, 2, "disc") == pytest.approx(55.0)
    assert window_mean(m, 50.0, 50.0, 5) is None


def test_applies_only_with_both_part_groups():
    bench = Parts()
    assert bench.applies_to(sample())
    assert not bench.applies_to(sample(keypoints=[("eye_1", 1.0, 1.0)]))
    assert not bench.applies_to(Sample(id="x", image=None, size=(9, 9), targets={}, category="c"))
    # COCO person keypoints: ankles are feet
    assert bench.applies_to(sample(keypoints=[("left_eye", 1.0, 1.0), ("right_ankle", 3.0, 3.0)]))
    with pytest.raises(ValueError):
        Parts(ratio=("feet", "tails"))


def test_bundled_sample_has_hand_marked_keypoints():
    from saliency_bench.datasets.coco import sample as bundled

    d = bundled()
    assert "keypoints" in d.provides and d.keypoint_count == 14
    bench = Parts()
    have = [d.load(i) for i, sid in enumerate(d.ids) if sid.split(":")[1] in ("cat", "dog", "zebra", "giraffe")]
    both = [s.id for s in have if bench.applies_to(s)]
    assert sorted(both) == ["309:dog", "34:zebra", "575:cat", "599:cat"]
    dog = next(s for s in have if s.id == "309:dog")
    assert ("eye_1", 479.0, 92.0) in dog.keypoints


def test_animal_parts_layout(tmp_path):
    from saliency_bench.datasets._common import animal_parts_keypoints

    for part, pts in (("eye", [(10, 12)]), ("foot", [(30, 40), (35, 41)])):
        (tmp_path / "xml" / part).mkdir(parents=True)
        points = "".join(f"<point><x>{x}</x><y>{y}</y><class>{part}</class></point>" for x, y in pts)
        (tmp_path / "xml" / part / "n01530575_1.xml").write_text(
            f"<annotation><object><name>n01530575</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            f"<xmax>50</xmax><ymax>50</ymax></bndbox>{points}</object></annotation>")
    kp = animal_parts_keypoints(tmp_path)
    assert sorted(kp["n01530575_1"]) == [("eye", 10.0, 12.0), ("foot", 30.0, 40.0), ("foot", 35.0, 41.0)]


def test_coco_keypoint_format(tmp_path):
    from saliency_bench.datasets._common import coco_keypoints

    data = {"categories": [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "left_ankle"]}],
            "annotations": [{"id": 7, "image_id": 3, "category_id": 1, "keypoints": [5, 6, 2, 0, 0, 0, 9, 10, 1]}]}
    by_ann, by_pair = coco_keypoints(data)
    assert by_ann[7] == [("nose", 5.0, 6.0), ("left_ankle", 9.0, 10.0)]
    assert by_pair[(3, 1)] == by_ann[7]
