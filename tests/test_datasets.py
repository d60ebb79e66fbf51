"""Dataset adapters: ImageNet (three box formats), COCO (masks, difficult flags, crowds), the
bundled sample, and bad input (each problem recorded on its sample, never silently dropped)."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliency_bench.datasets import coco as coco_mod
from saliency_bench.datasets import imagenet as inet
from saliency_bench.datasets._common import LayoutError, boxes_inside, clip_boxes, heldout_ids
from saliency_bench.registry import datasets as dataset_registry


# ---------------------------------------------------------------------------------------------
# ImageNet on the real 300-image val subset
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def val300(shared_data) -> Path:
    return shared_data / "imagenet-val-300"


def _all(ds):
    return [ds.load(i) for i in range(len(ds))]


def test_imagenet_xml_csv_and_wsol_boxes_give_the_same_300_samples(val300):
    loaded = {fmt: _all(inet.imagenet(str(val300), boxes=fmt)) for fmt in ("xml", "csv", "wsol")}
    ref = loaded["xml"]
    assert len(ref) == 300 and all(s.error is None for s in ref)
    assert sum(len(s.boxes) for s in ref) == 462
    by_path = inet.imagenet(str(val300), boxes=str(val300 / "LOC_val_solution.csv"))
    assert by_path.ids == [s.id for s in ref] and by_path.describe()["options"]["boxes"].startswith("csv:")
    for fmt in ("csv", "wsol"):
        other = loaded[fmt]
        assert [s.id for s in other] == [s.id for s in ref]
        for a, b in zip(ref, other):
            assert a.targets == b.targets and a.category == b.category and a.split == b.split
            np.testing.assert_array_equal(a.boxes, b.boxes, err_msg=f"{fmt} {a.id}")


def test_imagenet_lifeboat_sample_has_its_class_and_box_in_original_pixels(val300):
    ds = inet.imagenet(str(val300))
    s = ds.load(ds.ids.index("ILSVRC2012_val_00000556"))
    assert s.targets == {"imagenet": (625,)} and s.category == "n03662601"
    assert s.size == (227, 227) and s.image.mode == "RGB"
    np.testing.assert_array_equal(s.boxes, np.array([[0, 1, 123, 226]], np.float32))
    assert s.boxes.dtype == np.float32


def test_imagenet_seeded_heldout_is_deterministic_capped_at_half_and_seed_dependent(val300):
    a, b = inet.imagenet(str(val300)), inet.imagenet(str(val300))
    splits = [a.load(i).split for i in range(len(a))]
    assert splits == [b.load(i).split for i in range(len(b))]
    assert splits.count("heldout") == 150  # default 5000, at most half of 300
    assert a.describe()["options"]["heldout"] == 150
    c = inet.imagenet(str(val300), heldout=30, seed=1)
    assert c.describe()["splits"] == {"eval": 270, "heldout": 30}
    held_c = {s for s, r in zip(c.ids, c._records) if r["split"] == "heldout"}
    assert held_c == heldout_ids(c.ids, 30, 1) != heldout_ids(c.ids, 30, 0)


def test_imagenet_blacklist_option_excludes_the_9_listed_images_and_reports_them(val300):
    ds = inet.imagenet(str(val300), exclude_blacklist=True)
    assert len(ds) == 291 and ds.describe()["excluded_blacklist"] == 9
    assert "ILSVRC2012_val_00000036" not in ds.ids


def test_imagenet_protocol_heldout_list_reads_train_images_and_xml_boxes(val300, tmp_path):
    # A miniature train folder in the user's layout: TRAIN/WNID/FILE.JPEG + TRAIN/Annotation/WNID/*.xml
    train = tmp_path / "train"
    (train / "n03662601").mkdir(parents=True)
    (train / "Annotation" / "n03662601").mkdir(parents=True)
    shutil.copy(val300 / "val" / "ILSVRC2012_val_00000556.JPEG", train / "n03662601" / "n03662601_1.JPEG")
    xml = (val300 / "bbox_val" / "ILSVRC2012_val_00000556.xml").read_text()
    (train / "Annotation" / "n03662601" / "n03662601_1.xml").write_text(xml)
    listing = tmp_path / "heldout.txt"
    listing.write_text("n03662601/n03662601_1.JPEG 625\nn03662601/n03662601_2.JPEG 625\n")
    ds = inet.imagenet(str(val300), heldout_list=str(listing), train=str(train))
    assert ds.describe()["splits"] == {"eval": 300, "heldout": 2}
    ok = ds.load(ds.ids.index("n03662601_1"))
    assert ok.split == "heldout" and ok.error is None and ok.targets == {"imagenet": (625,)}
    np.testing.assert_array_equal(ok.boxes, [[0, 1, 123, 226]])
    missing = ds.load(ds.ids.index("n03662601_2"))
    assert missing.error and "n03662601_2" in missing.error  # listed but absent: reported
    with pytest.raises(ValueError, match="train=PATH"):
        inet.imagenet(str(val300), heldout_list="protocol")


# ---------------------------------------------------------------------------------------------
# ImageNet bad input, on a hand-made folder
# ---------------------------------------------------------------------------------------------
def _xml(wnid: str, box: tuple, size=(40, 30)) -> str:
    return (f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>"
            f"<object><name>{wnid}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
            f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>")


@pytest.fixture()
def bad_imagenet(tmp_path) -> Path:
    val, xml = tmp_path / "val", tmp_path / "bbox_val"
    val.mkdir(), xml.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(val / "good.JPEG")
    Image.new("L", (40, 30), 128).save(val / "grey.JPEG")
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(val / "cmyk.JPEG")
    Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(val / "rgba.png")
    Image.new("RGB", (40, 30)).save(val / "trunc.JPEG")
    (val / "trunc.JPEG").write_bytes((val / "trunc.JPEG").read_bytes()[:200])
    Image.new("RGB", (80, 60)).save(val / "resized.JPEG")  # annotated at 40x30
    for name in ("noboxes", "badxml", "unknown", "outside", "alloutside"):
        Image.new("RGB", (40, 30)).save(val / f"{name}.JPEG")
    for name in ("good", "grey", "cmyk", "rgba", "trunc", "resized"):
        (xml / f"{name}.xml").write_text(_xml("n01440764", (2, 3, 20, 25)))
    (xml / "badxml.xml").write_text("<annotation><size><width>40</wid")
    (xml / "unknown.xml").write_text(_xml("n99999999", (2, 3, 20, 25)))
    (xml / "outside.xml").write_text(_xml("n01440764", (-5, 3, 60, 25)))
    (xml / "alloutside.xml").write_text(_xml("n01440764", (50, 40, 60, 45)))
    (xml / "noimage.xml").write_text(_xml("n01440764", (2, 3, 20, 25)))
    return tmp_path


def test_imagenet_bad_samples_are_fixed_or_failed_with_a_reason_and_counted(bad_imagenet):
    ds = inet.imagenet(str(bad_imagenet), heldout=0)
    got = {s.id: s for s in _all(ds)}
    assert len(got) == 12  # 11 images + one XML without an image: nobody is dropped
    for name in ("good", "grey", "cmyk", "rgba"):
        assert got[name].error is None and got[name].image.mode == "RGB", name
        np.testing.assert_array_equal(got[name].boxes, [[2, 3, 20, 25]])
    np.testing.assert_array_equal(got["outside"].boxes, [[-5, 3, 60, 25]])  # as written, not clipped
    np.testing.assert_array_equal(got["resized"].boxes, [[4, 6, 40, 50]])  # scaled to the file
    assert "cannot decode" in got["trunc"].error
    assert "does not parse" in got["badxml"].error
    assert "unknown WordNet id n99999999" in got["unknown"].error
    assert "inside" in got["alloutside"].error
    assert "no boxes" in got["noboxes"].error
    assert "not found" in got["noimage"].error
    # Construction-time failures are counted by describe(); decode failures show on load.
    assert ds.describe()["failed"] == 4


def test_imagenet_missing_folder_or_boxes_raise_naming_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected layout") as e:
        inet.imagenet(str(tmp_path / "nowhere"))
    assert "nowhere" in str(e.value)
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "a.JPEG")
    with pytest.raises(LayoutError, match="LOC_val_solution.csv"):
        inet.imagenet(str(tmp_path))
    with pytest.raises(LayoutError, match="no 'csv' boxes"):
        inet.imagenet(str(tmp_path), boxes="csv")


# ---------------------------------------------------------------------------------------------
# COCO on the real COCO128 (hand-checked against its instances json)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco128(shared_data):
    return coco_mod.coco(str(shared_data / "coco128"), split="train2017")


def test_coco_image_9_has_bowl_orange_broccoli_with_checked_masks_boxes_and_difficult(coco128):
    assert [i for i in coco128.ids if i.startswith("9:")] == ["9:bowl", "9:orange", "9:broccoli"]
    s = {c: coco128.load(coco128.ids.index(f"9:{c}")) for c in ("bowl", "orange", "broccoli")}
    assert all(v.size == (480, 640) and v.mask.shape == (480, 640) and v.mask.dtype == bool for v in s.values())
    # pixel counts of the union of annToMask over the category's instances
    assert [int(s[c].mask.sum()) for c in ("bowl", "orange", "broccoli")] == [188197, 10430, 49529]
    # four oranges, each box [x, y, w, h] -> inclusive (x, y, x + w - 1, y + h - 1)
    assert s["orange"].boxes.shape == (4, 4)
    np.testing.assert_allclose(s["orange"].boxes[0], [376.2, 40.36, 450.75, 85.89], atol=1e-3)
    # oranges: 18,884 px of boxes < 307,200 / 4 -> difficult; broccoli: 77,504 px, just above
    assert s["orange"].flags == {"difficult": True}
    assert s["broccoli"].flags == {"difficult": False}
    assert s["bowl"].flags == {"difficult": False}
    assert s["orange"].targets == {"coco": (49,), "imagenet": (950,)}
    assert s["orange"].split == "eval" and s["orange"].image.size == (640, 480)


def test_coco_crowd_person_in_image_257_counts_by_default_and_can_be_ignored(shared_data, coco128):
    s = coco128.load(coco128.ids.index("257:person"))
    # 13 people + one crowd region (108,758 px of box) -> not difficult
    assert len(s.boxes) == 14 and int(s.mask.sum()) == 22782 and s.flags == {"difficult": False}
    ignored = coco_mod.coco(str(shared_data / "coco128"), split="train2017", crowd="ignore")
    t = ignored.load(ignored.ids.index("257:person"))
    assert len(t.boxes) == 13 and int(t.mask.sum()) < 22782 and t.flags == {"difficult": True}
    assert ignored.describe()["crowd_annotations"] == {"count": 10, "handling": "ignore"}
    # every crowd in COCO128 sits beside ordinary instances of its category: no pair is lost
    assert ignored.ids == coco128.ids and ignored.describe()["crowd_only_pairs_dropped"] == 0


def test_coco_counts_per_category_and_cap_keeps_first_images_by_id(shared_data, coco128):
    d = coco128.describe()
    assert d["samples"] == 362 and d["images"] == 126 and d["failed"] == 0
    assert d["categories_present"] == 71 and d["images_without_annotations"] == 2
    assert d["per_category"]["person"] == 61 and d["per_category"]["bowl"] == 9
    capped = coco_mod.coco(str(shared_data / "coco128"), split="train2017", cap_per_category=2)
    persons = [i for i in capped.ids if i.endswith(":person")]
    all_persons = sorted((i for i in coco128.ids if i.endswith(":person")), key=lambda i: int(i.split(":")[0]))
    assert persons == all_persons[:2]
    assert capped.describe()["capped_away"]["person"] == 59


def test_coco_adapter_pickles_small_and_loads_the_same_after(coco128):
    blob = pickle.dumps(coco128)
    assert len(blob) < 2_000_000  # index only: no decoded image or mask travels to workers
    again = pickle.loads(blob)
    assert again.ids == coco128.ids
    np.testing.assert_array_equal(again.load(5).mask, coco128.load(5).mask)


# ---------------------------------------------------------------------------------------------
# COCO bad input, on a hand-made folder
# ---------------------------------------------------------------------------------------------
def _coco_folder(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    Image.new("L", (40, 30), 100).save(root / "val2017" / "1.jpg")  # greyscale -> RGB
    Image.new("RGB", (40, 30)).save(root / "val2017" / "2.jpg")
    (root / "val2017" / "2.jpg").write_bytes((root / "val2017" / "2.jpg").read_bytes()[:150])
    poly = [[2, 2, 12, 2, 12, 12, 2, 12]]
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "height": 30, "width": 40},
                   {"id": 2, "file_name": "2.jpg", "height": 30, "width": 40},
                   {"id": 3, "file_name": "3.jpg", "height": 30, "width": 40}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 18, "bbox": [30, 20, 20, 20], "segmentation": poly, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "segmentation": poly, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 77, "bbox": [2, 2, 10, 10], "segmentation": poly, "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 18, "bbox": [2, 2, 10, 10], "segmentation": poly, "iscrowd": 0},
            {"id": 14, "image_id": 3, "category_id": 18, "bbox": [2, 2, 10, 10], "segmentation": poly, "iscrowd": 0},
        ],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


def test_coco_bad_samples_are_fixed_or_failed_with_a_reason(tmp_path):
    ds = coco_mod.coco(str(_coco_folder(tmp_path)), split="val2017")
    got = {s.id: s for s in _all(ds)}
    assert sorted(got) == ["1:dog", "1:person", "1:unknown category 77", "2:dog", "3:dog"]
    dog = got["1:dog"]
    assert dog.error is None and dog.image.mode == "RGB"
    np.testing.assert_array_equal(dog.boxes, [[30, 20, 39, 29]])  # clipped to the 40x30 image
    assert dog.targets["imagenet"] == tuple(range(151, 269)) and dog.targets["coco"] == (1,)
    assert int(got["1:person"].mask.sum()) > 0 and got["1:person"].targets["imagenet"] == ()
    assert "category id 77" in got["1:unknown category 77"].error
    assert "cannot decode" in got["2:dog"].error
    assert "3.jpg" in got["3:dog"].error  # listed in the json, missing on disk
    assert ds.describe()["failed"] == 1  # known at construction; the other two on load


def test_coco_missing_files_or_unparsable_json_raise_naming_the_path(tmp_path):
    root = _coco_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="instances_val2014.json") as e:
        coco_mod.coco(str(root))  # default split val2014 is absent
    assert "expected layout" in str(e.value)
    shutil.rmtree(root / "val2017")
    with pytest.raises(LayoutError, match="image folder"):
        coco_mod.coco(str(root), split="val2017")
    (root / "val2017").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="instances_val2017.json"):
        coco_mod.coco(str(root), split="val2017")


# ---------------------------------------------------------------------------------------------
# The bundled sample and the registry
# ---------------------------------------------------------------------------------------------
def test_sample_is_the_39_permissive_coco128_images_byte_for_byte_with_credits():
    root = coco_mod.SAMPLE_ROOT
    data = json.loads((root / "instances.json").read_text())
    assert len(data["images"]) == 39 and {im["license"] for im in data["images"]} <= {4, 5, 6, 7, 8}
    files = sorted(p.name for p in (root / "images").glob("*.jpg"))
    assert files == sorted(im["file_name"] for im in data["images"])
    credits = (root / "CREDITS.md").read_text()
    assert all(im["flickr_url"] in credits for im in data["images"])


def test_sample_bytes_equal_the_coco128_originals(shared_data):
    for p in (coco_mod.SAMPLE_ROOT / "images").glob("*.jpg"):
        assert p.read_bytes() == (shared_data / "coco128" / "train2017" / p.name).read_bytes(), p.name


def test_sample_loads_without_paths_and_all_three_datasets_are_registered():
    assert {"imagenet", "coco", "sample"} <= set(dataset_registry.names())
    ds = dataset_registry.get("sample")()
    d = ds.describe()
    assert d["samples"] == 104 and d["failed"] == 0 and len(ds) == 104
    s = ds.load(0)
    assert s.error is None and s.mask.any() and s.boxes.shape[1] == 4


def test_clip_boxes_counts_clipped_and_dropped():
    kept, clipped, dropped = clip_boxes(np.array([[-1, 0, 5, 5], [1, 1, 2, 2], [20, 20, 30, 30]]), 10, 10)
    np.testing.assert_array_equal(kept, [[0, 0, 5, 5], [1, 1, 2, 2]])
    assert (clipped, dropped) == (1, 1)


def test_boxes_inside_keeps_boxes_as_written_and_counts_those_reaching_out_and_those_left_out():
    kept, outside, dropped = boxes_inside(np.array([[-1, 0, 5, 5], [1, 1, 2, 2], [20, 20, 30, 30], [3, 3, 2, 4]]),
                                          10, 10)
    np.testing.assert_array_equal(kept, [[-1, 0, 5, 5], [1, 1, 2, 2]])
    assert (outside, dropped) == (1, 2)


def test_imagenet_reports_boxes_as_written_none_clipped(bad_imagenet):
    d = inet.imagenet(str(bad_imagenet), heldout=0).describe()
    assert d["boxes_clipped"] == 0
    assert d["boxes_outside_stated_size"] == 2  # "outside" and "alloutside" reach beyond their 40x30
    assert d["boxes_wholly_outside_stated_size"] == 1  # "alloutside" has no pixel inside: left out
