"""The VOC 2007 adapter and TorchRay's difficult flags (VOC and COCO), on data in VOC's own layout
made here from the COCO128 images: COCO's boxes of the categories VOC has, written as VOC XML
(1-based inclusive ``xmin = x + 1``, ``xmax = x + w``), objects under 24x24 px marked PASCAL-difficult.

Independent references: TorchRay's ``PointingGameBenchmark`` on its ``VOCDetection`` and
``CocoDetection`` (torchvision's XML and pycocotools), fed with the centre point TorchRay's
benchmark uses; hand-written XMLs for every rule and every kind of bad input.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.datasets.voc import VOC_CLASSES, VOC_TO_COCO, VocDataset, voc
from saliency_bench.registry import get_method

pytestmark = pytest.mark.shared_data

COCO_TO_VOC = {VOC_TO_COCO.get(c, c): c for c in VOC_CLASSES}
N_IMAGES = 60


def _xml(stem: str, size: tuple[int, int], objects) -> str:
    """A VOC annotation: objects ``(name, difficult, (xmin, ymin, xmax, ymax))``, 1-based."""
    h, w = size
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{int(d)}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, d, b in objects)
    return (f"<annotation><folder>VOC2007</folder><filename>{stem}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def _flag(stem: str, c: int) -> int:
    return int(hashlib.sha256(f"{stem}:{c}".encode()).digest()[0] < 96)  # about 3 in 8 flagged


@pytest.fixture(scope="module")
def voc_data(shared_data, tmp_path_factory):
    """``(root, flags file)``: COCO128's first images with VOC objects, in VOCdevkit/VOC2007."""
    coco = json.loads((shared_data / "coco128" / "annotations" / "instances_train2017.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    anns: dict = {}
    for a in coco["annotations"]:
        if names[a["category_id"]] in COCO_TO_VOC and not a.get("iscrowd"):
            anns.setdefault(a["image_id"], []).append(a)
    root = tmp_path_factory.mktemp("voc") / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    stems = []
    for im in sorted(coco["images"], key=lambda i: i["id"]):
        if im["id"] not in anns or len(stems) == N_IMAGES:
            continue
        stem = Path(im["file_name"]).stem
        h, w = im["height"], im["width"]
        objects = []
        for a in anns[im["id"]]:
            x, y, bw, bh = a["bbox"]
            box = (max(1, int(round(x)) + 1), max(1, int(round(y)) + 1), min(w, int(round(x + bw))), min(h, int(round(y + bh))))
            objects.append((COCO_TO_VOC[names[a["category_id"]]], bw < 24 and bh < 24, box))
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(stem, (h, w), objects))
        os.symlink(shared_data / "coco128" / "train2017" / im["file_name"], root / "JPEGImages" / f"{stem}.jpg")
        stems.append(stem)
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(stems) + "\n")
    flags = root.parent.parent / "flags_voc.txt"
    flags.write_text("".join(stem + "".join(f"\t{_flag(stem, c)}" for c in range(20)) + "\n" for stem in stems))
    return root.parent.parent, flags


# ------------------------------------------------------------------ TorchRay's PointingGameBenchmark
def _centre_hits(samples, input_size=(224, 224)):
    """Our benchmark's records for the centre baseline."""
    x = torch.zeros(len(samples), 3, *input_size)
    maps, _ = get_method("center").explain(None, x, [[0]] * len(samples))
    return Pointing(bootstrap=0).score_batch(samples, maps.numpy(), input_size)


def _ours(ds):
    samples = [ds.load(i) for i in range(len(ds))]
    assert all(s.error is None for s in samples), [s.error for s in samples if s.error][:3]
    recs = _centre_hits(samples)
    meta = [{"id": s.id, "category": s.category, "split": s.split, "flags": s.flags} for s in samples]
    out = Pointing(bootstrap=0).summarize(recs, meta)
    return out["pointing_all"]["value"], out["pointing_difficult"]["value"], len(samples)


def _torchray_accuracy(bench, data, class_ids_of, size_of):
    """TorchRay's benchmark loop (examples/attribution_benchmark.py, method "center"), its
    accuracy over the classes that have samples (TorchRay's mean runs over all 20 or 80 classes,
    counting a class without samples as 0; the test data do not have every class)."""
    n = 0
    for i in range(len(data)):
        _, label = data[i]
        for class_id in class_ids_of(label):
            w, h = size_of(label)
            hit = bench.evaluate(label, class_id, torch.tensor([w / 2, h / 2]))
            bench.aggregate(hit, class_id)
            n += hit != 0
    used = (bench.hits + bench.misses) > 0
    return 100 * float((bench.hits[used] / (bench.hits + bench.misses)[used]).mean()), n


def test_centre_pointing_on_voc_equals_torchrays_benchmark_all_and_difficult(voc_data):
    from torchray.benchmark import datasets as trd
    from torchray.benchmark.pointing_game import PointingGameBenchmark

    root, flags = voc_data
    from torchvision.datasets import VOCDetection

    # torchvision's VOCDetection, which TorchRay's benchmark takes (TorchRay's own subclass does not
    # construct under today's torchvision); it parses the XML its own way
    data = VOCDetection(str(root), year="2007", image_set="test")
    ours_all, _, n_ours = _ours(voc(str(root)))
    ref_all, n_ref = _torchray_accuracy(PointingGameBenchmark(data), data, trd.voc_as_class_ids, trd.voc_as_image_size)
    assert n_ours == n_ref and ours_all == pytest.approx(ref_all, abs=1e-9)
    _, ours_dif, _ = _ours(voc(str(root), difficult=str(flags)))
    bench = PointingGameBenchmark(data, difficult=True)
    bench.difficult_flags = {r.split("\t")[0]: [bool(int(v)) for v in r.split("\t")[1:]]
                             for r in flags.read_text().splitlines()}
    ref_dif, _ = _torchray_accuracy(bench, data, trd.voc_as_class_ids, trd.voc_as_image_size)
    assert ours_dif == pytest.approx(ref_dif, abs=1e-9)


def test_centre_pointing_on_coco128_equals_torchrays_benchmark_all_and_difficult(shared_data, tmp_path):
    from torchray.benchmark import datasets as trd
    from torchray.benchmark.pointing_game import PointingGameBenchmark

    from saliency_bench.datasets.coco import CocoDataset
    from saliency_bench.datasets._difficult import COCO_IDS

    ann = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    images = shared_data / "coco128" / "train2017"
    data = trd.CocoDetection(str(images), str(ann))
    stems = [Path(data.coco.loadImgs(i)[0]["file_name"]).stem for i in data.ids]
    flags = tmp_path / "flags_coco.txt"
    flags.write_text("".join(s + "".join(f"\t{_flag(s, c)}" for c in range(80)) + "\n" for s in stems))

    def size_of(label):
        return trd.coco_as_image_size(data, label)

    def class_ids(label):
        return trd.coco_as_class_ids(label)

    ours_all, _, n_ours = _ours(CocoDataset(ann, images))
    ref_all, n_ref = _torchray_accuracy(PointingGameBenchmark(data), data, class_ids, size_of)
    assert n_ours == n_ref and ours_all == pytest.approx(ref_all, abs=1e-9)
    _, ours_dif, _ = _ours(CocoDataset(ann, images, difficult=str(flags)))
    bench = PointingGameBenchmark(data, difficult=True)
    bench.difficult_flags = {r.split("\t")[0]: [bool(int(v)) for v in r.split("\t")[1:]]
                             for r in flags.read_text().splitlines()}
    ref_dif, _ = _torchray_accuracy(bench, data, class_ids, size_of)
    assert ours_dif == pytest.approx(ref_dif, abs=1e-9)
    assert len(COCO_IDS) == 80 and list(trd._COCO_CLASS_TO_INDEX) == list(COCO_IDS)


def test_the_torchray_option_reads_the_installed_packages_flags_files():
    from saliency_bench.datasets._difficult import flags_path, read_flags

    voc_flags = read_flags(flags_path("torchray", "voc"), 20)
    coco_flags = read_flags(flags_path("torchray", "coco"), 80)
    assert len(voc_flags) == 4952 and voc_flags["000001"][VOC_CLASSES.index("dog")]  # row 1: dog flagged
    assert len(coco_flags) == 40137


# ------------------------------------------------------------------------ hand-checked rules
@pytest.fixture
def hand(voc_data, tmp_path):
    """A VOC folder of hand-written annotations over four COCO128 photos (640x480 and others)."""
    src, _ = voc_data
    src_root = src / "VOCdevkit" / "VOC2007"
    stems = sorted(p.stem for p in (src_root / "JPEGImages").iterdir())[:4]
    root = tmp_path / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    from PIL import Image

    sizes = {}
    for s in stems:
        os.symlink(os.readlink(src_root / "JPEGImages" / f"{s}.jpg"), root / "JPEGImages" / f"{s}.jpg")
        w, h = Image.open(root / "JPEGImages" / f"{s}.jpg").size
        sizes[s] = (h, w)
    a, b, c, d = stems
    ha, wa = sizes[a]
    ann = {
        # a: two dogs (one difficult) and a cat whose only box is difficult -> dog only, region = both boxes
        a: [("dog", False, (1, 1, 10, 20)), ("dog", True, (101, 51, 110, 60)), ("cat", True, (5, 5, 50, 50))],
        # b: a big person alone -> not difficult (no other class); a small bottle + the person -> difficult
        b: [("person", False, (1, 1, sizes[b][1], sizes[b][0])), ("bottle", False, (1, 1, 10, 10))],
        # c: an unknown class beside a known one
        c: [("unicorn", False, (1, 1, 5, 5)), ("horse", False, (1, 1, sizes[c][1], sizes[c][0]))],
    }
    for s, objs in ann.items():
        (root / "Annotations" / f"{s}.xml").write_text(_xml(s, sizes[s], objs))
    (root / "Annotations" / f"{d}.xml").write_text("<annotation><size>")  # does not parse
    (root / "Annotations" / "gone.xml").write_text(_xml("gone", (10, 10), [("car", False, (1, 1, 5, 5))]))
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join([a, b, c, d, "gone"]) + "\n")
    return root, stems


def test_voc_rules_on_hand_written_annotations(hand):
    root, (a, b, c, d) = hand
    ds = VocDataset(root)
    assert ds.ids == [f"{a}:dog", f"{b}:bottle", f"{b}:person", f"{c}:horse", f"{c}:unicorn", f"{d}:?", "gone:car"]
    assert ds.describe()["skipped_all_pascal_difficult"] == 1  # a's cat
    dog = ds.load(0)
    np.testing.assert_array_equal(dog.boxes, [[0, 0, 9, 19], [100, 50, 109, 59]])  # 1-based -> 0-based
    assert dog.targets["voc"] == (VOC_CLASSES.index("dog"),) and dog.targets["imagenet"]  # dog breeds
    region = Pointing().region(dog)
    assert region.sum() == 10 * 20 + 10 * 10 and region[0, 0] and region[19, 9] and not region[20, 9]
    bottle, person = ds.load(1), ds.load(2)
    assert bottle.flags == {"difficult": True} and person.flags == {"difficult": False}  # paper rule
    assert dog.flags == {"difficult": True}  # small, and the (difficult-only) cat counts as another class
    unknown = ds.load(4)
    assert "unicorn" in unknown.error and "not one of VOC's 20" in unknown.error and ds.load(3).error is None
    assert f"{d}.xml does not parse" in ds.load(5).error
    assert ds.load(6).error and "gone.jpg" in ds.load(6).error  # no image: the sample fails, named
    assert ds.describe()["failed"] == 2  # known from the index; the missing image fails when loaded


def test_voc_flags_file_rules_and_errors(hand, tmp_path):
    root, (a, b, c, d) = hand
    flags = tmp_path / "flags.txt"
    row = ["0"] * 20
    row[VOC_CLASSES.index("person")] = "1"
    flags.write_text(f"{b}\t" + "\t".join(row) + "\n" + f"{a}\t" + "\t".join(["0"] * 20) + "\n")
    ds = VocDataset(root, difficult=str(flags))
    by_id = {ds.ids[i]: ds.load(i) for i in range(len(ds))}
    assert by_id[f"{b}:person"].flags == {"difficult": True} and by_id[f"{b}:bottle"].flags == {"difficult": False}
    assert by_id[f"{a}:dog"].flags == {"difficult": False}
    assert f"{c} has no row" in by_id[f"{c}:horse"].error  # an image without a row costs its samples
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a}\t" + "\t".join(["0"] * 19) + "\n")
    with pytest.raises(ValueError, match=r"bad.txt line 1.*20 flags"):
        VocDataset(root, difficult=str(bad))
    other = tmp_path / "other.txt"
    other.write_text("009999\t" + "\t".join(["0"] * 20) + "\n")
    with pytest.raises(ValueError, match="lists none of the dataset"):
        VocDataset(root, difficult=str(other))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        VocDataset(root, difficult=str(tmp_path / "missing.txt"))


def test_torchray_flags_missing_is_a_clear_error(hand, monkeypatch):
    import sys

    root, _ = hand
    monkeypatch.setitem(sys.modules, "torchray.benchmark", None)  # as if torchray were not installed
    with pytest.raises(FileNotFoundError, match="pointing_game_ebp_voc07_difficult.txt.*difficult=PATH"):
        VocDataset(root, difficult="torchray")


def test_voc_layout_errors_name_what_is_missing(tmp_path):
    from saliency_bench.datasets._common import LayoutError

    with pytest.raises(LayoutError, match="VOCdevkit/VOC2007/Annotations"):
        voc(str(tmp_path))
    (tmp_path / "VOC2007" / "Annotations").mkdir(parents=True)
    with pytest.raises(LayoutError, match="test.txt"):
        voc(str(tmp_path))
    shutil.rmtree(tmp_path / "VOC2007")
