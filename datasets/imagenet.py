"""ImageNet (ILSVRC2012) validation images with boxes, for weak localization (Fong & Vedaldi §5).

One sample per image, id = the file stem (``ILSVRC2012_val_00000556``), target = the
ground-truth class (index in sorted-WordNet-id order, the models' label space), category =
its WordNet id, boxes = that class's boxes, float32 ``[N, 4]`` inclusive ``(x1, y1, x2, y2)``
in original pixels (VOC convention), taken as written in the annotation files, **not clipped**
to the image: weak localization scores against the boxes as annotated (docs/PROTOCOLS.md §3; the
authors' ``compute_overlap`` and wsolevaluation's ``resize_bbox`` clip nothing). A box with no
pixel inside the image is left out (and a sample left with none fails, with the reason).

Layouts read (``PATH`` is what the user passes):

* images: ``PATH/val/`` (flat, or one sub-folder per class), ``PATH/ILSVRC/Data/CLS-LOC/val/``
  (Kaggle), or ``PATH`` itself;
* boxes, ``boxes="auto"`` takes the first found of:
  ``xml`` — one VOC XML per image (``ILSVRC2012_bbox_val_v3``): ``PATH/bbox_val/``,
  ``PATH/ILSVRC2012_bbox_val_v3/val/``, ``PATH/ILSVRC/Annotations/CLS-LOC/val/``, ``PATH/val/``;
  ``csv`` — ``PATH/LOC_val_solution.csv`` (Kaggle: ``ImageId,PredictionString`` with
  ``wnid x1 y1 x2 y2`` repeated);
  ``wsol`` — the wsolevaluation metadata ``localization.txt`` + ``class_labels.txt`` (+
  ``image_sizes.txt``) in ``PATH/wsol/``, ``PATH/metadata/ILSVRC/test/`` or ``PATH``;
  ``boxes`` may also be one of those names, or a path to the file or folder itself.
* classes: the shipped table (``saliency_bench.labels.imagenet_classes()``);
  ``PATH/LOC_synset_mapping.txt``, when present, must list the same WordNet ids in the same order.

Splits (``Sample.split``):

* default: a seeded split of the dataset itself: the ``heldout`` images (default 5,000, as in
  the paper; at most half the dataset, so evaluation keeps the other half) whose SHA-256 of
  ``"{seed}:{id}"`` is smallest are ``"heldout"`` (for choosing alpha*), the rest ``"eval"``.
* the published protocol: ``heldout_list="protocol"`` (the shipped
  ``annotated_train_heldout.txt``, 5,000 annotated *train* images) or a path to a file of the same
  form (``wnid/file.JPEG label``), with ``train=TRAIN`` the user's train folder (images
  ``TRAIN/wnid/*.JPEG``, ``TRAIN/train/wnid/``, or Kaggle's ``TRAIN/ILSVRC/Data/CLS-LOC/train/wnid/``;
  boxes ``TRAIN/LOC_train_solution.csv`` or per-image XMLs in ``TRAIN/Annotation/wnid/``,
  ``TRAIN/bbox_train/wnid/`` or ``TRAIN/ILSVRC/Annotations/CLS-LOC/train/wnid/``). Those
  images are the held-out split and every val image is ``"eval"``.
* ``exclude_blacklist=True`` leaves out the 1,762 val images of the ILSVRC2014 localization
  blacklist (shipped), as the published evaluation did; describe() reports how many.

Per-image problems (a corrupt or CMYK/greyscale image, an XML that does not parse, an unknown
WordNet id, a box outside the image, an image without boxes or boxes without an image) never
raise: greyscale/CMYK are converted, boxes outside the image left out, and anything else makes a
sample with ``error`` set. When the annotation states the image size (XML ``<size>``, ``image_sizes.txt``)
and the file has another size, the boxes are scaled to the file (users keep resized copies).
"""
from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

import saliency_bench
from saliency_bench.contracts import Dataset, Sample
from saliency_bench.imageio import ImageError, load_rgb
from saliency_bench.labels import DATA, imagenet_classes

from ._common import LayoutError, as_bool, boxes_inside, heldout_ids, require

_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
_LAYOUT = """  PATH/val/*.JPEG  (or PATH/val/WNID/*.JPEG, or PATH/ILSVRC/Data/CLS-LOC/val/)
  and boxes in one of:
    PATH/bbox_val/*.xml  (or PATH/ILSVRC2012_bbox_val_v3/val/*.xml)   boxes=xml
    PATH/LOC_val_solution.csv                                          boxes=csv
    PATH/wsol/{localization,class_labels,image_sizes}.txt              boxes=wsol"""


# ---------------------------------------------------------------------------------------------
# Annotation readers: each returns {stem: record}, record = dict(wnid | label, boxes, size, error)
# ---------------------------------------------------------------------------------------------
def _xml_record(path: Path) -> dict:
    """One VOC XML: ``<size>`` and every ``<object>``'s WordNet id and ``<bndbox>``."""
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
        objs = []
        for o in root.iter("object"):
            b = o.find("bndbox")
            objs.append((o.findtext("name", "").strip(),
                         tuple(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        return {"error": f"annotation {path.name} does not parse: {type(e).__name__}: {e}"}
    return {"objects": objs, "size": wh}


def read_xml(folder: Path) -> dict[str, dict]:
    files = sorted(folder.rglob("*.xml"))
    if not files:
        raise LayoutError(f"no VOC XML box files in {folder}\nexpected layout:\n{_LAYOUT}")
    return {f.stem: _xml_record(f) for f in files}


def read_csv(path: Path) -> dict[str, dict]:
    """Kaggle's ``LOC_*_solution.csv``: ``ImageId,PredictionString`` = ``wnid x1 y1 x2 y2 ...``."""
    out: dict[str, dict] = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path} is not a LOC solution file (header 'ImageId,PredictionString')")
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            stem = row[0].strip()
            fields = row[1].split() if len(row) > 1 else []
            try:
                if not fields or len(fields) % 5:
                    raise ValueError(f"{len(fields)} fields, expected groups of 'wnid x1 y1 x2 y2'")
                objs = [(fields[k], tuple(float(v) for v in fields[k + 1:k + 5]))
                        for k in range(0, len(fields), 5)]
                out[stem] = {"objects": objs, "size": None}
            except ValueError as e:
                out[stem] = {"error": f"{path.name} line {line} does not parse: {e}"}
    return out


def read_wsol(folder: Path) -> dict[str, dict]:
    """wsolevaluation metadata: ``localization.txt`` (``val/NAME,x0,y0,x1,y1``, one line per
    box), ``class_labels.txt`` (``val/NAME,label``), optional ``image_sizes.txt`` (``val/NAME,w,h``)."""
    def lines(name: str) -> Iterable[tuple[int, list[str]]]:
        with open(folder / name) as f:
            for k, line in enumerate(f, start=1):
                if line.strip():
                    yield k, [v.strip() for v in line.split(",")]

    require(folder / "class_labels.txt", "wsol class labels", _LAYOUT)
    out: dict[str, dict] = {}
    for k, row in lines("class_labels.txt"):
        stem = Path(row[0]).stem
        try:
            out[stem] = {"label": int(row[1]), "objects": [], "size": None}
        except (IndexError, ValueError):
            out[stem] = {"error": f"class_labels.txt line {k} does not parse: {','.join(row)}"}
    for k, row in lines("localization.txt"):
        rec = out.setdefault(Path(row[0]).stem, {"objects": [], "size": None,
                                                 "error": "no entry in class_labels.txt"})
        try:
            if len(row) != 5:
                raise ValueError(row)
            rec["objects"].append((None, tuple(float(v) for v in row[1:5])))
        except ValueError:
            rec["error"] = f"localization.txt line {k} does not parse: {','.join(row)}"
    if (folder / "image_sizes.txt").is_file():
        for k, row in lines("image_sizes.txt"):
            rec = out.get(Path(row[0]).stem)
            if rec is not None and len(row) == 3:
                rec["size"] = (int(row[1]), int(row[2]))
    return out


_READERS = {"xml": read_xml, "csv": read_csv, "wsol": read_wsol}


def _find_boxes(root: Path, boxes: str) -> tuple[str, Path]:
    """(format, location) of the boxes: a named format searched in its usual places, or a path."""
    candidates = {
        "xml": [root / "bbox_val", root / "ILSVRC2012_bbox_val_v3" / "val", root / "ILSVRC2012_bbox_val_v3",
                root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val", root / "val"],
        "csv": [root / "LOC_val_solution.csv"],
        "wsol": [root / "wsol", root / "metadata" / "ILSVRC" / "test", root / "metadata" / "ILSVRC" / "val", root],
    }
    found = {
        "xml": lambda p: p.is_dir() and next(p.glob("*.xml"), None) is not None,
        "csv": lambda p: p.is_file(),
        "wsol": lambda p: (p / "localization.txt").is_file(),
    }
    if boxes in candidates:
        for p in candidates[boxes]:
            if found[boxes](p):
                return boxes, p
        raise LayoutError(f"no '{boxes}' boxes under {root} (looked in "
                          f"{', '.join(str(p) for p in candidates[boxes])})\nexpected layout:\n{_LAYOUT}")
    if boxes == "auto":
        for fmt in ("xml", "csv", "wsol"):
            for p in candidates[fmt]:
                if found[fmt](p):
                    return fmt, p
        raise LayoutError(f"no box annotations found under {root}\nexpected layout:\n{_LAYOUT}")
    p = Path(boxes).expanduser()
    require(p, "box annotations", _LAYOUT)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv", p
    if p.is_file() and p.name == "localization.txt":
        return "wsol", p.parent
    if p.is_dir() and (p / "localization.txt").is_file():
        return "wsol", p
    if p.is_dir():
        return "xml", p
    raise ValueError(f"boxes={boxes!r}: expected auto, xml, csv, wsol, or a path to "
                     f"LOC_val_solution.csv, a folder of XMLs, or a folder with localization.txt")


def _index_images(folder: Path) -> dict[str, Path]:
    """Every image under ``folder`` (flat or class sub-folders), by file stem."""
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in _IMAGE_SUFFIXES}


def _find_images(root: Path) -> Path:
    for p in (root / "val", root / "ILSVRC" / "Data" / "CLS-LOC" / "val"):
        if p.is_dir():
            return p
    if root.is_dir() and any(p.suffix.lower() in _IMAGE_SUFFIXES for p in root.iterdir()):
        return root
    raise LayoutError(f"no ImageNet validation images under {root}\nexpected layout:\n{_LAYOUT}")


def _check_synsets(root: Path) -> None:
    path = root / "LOC_synset_mapping.txt"
    if not path.is_file():
        return
    theirs = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    ours = [c.wnid for c in imagenet_classes()]
    if theirs != ours:
        raise ValueError(f"{path} does not list the 1000 ImageNet WordNet ids in sorted order, "
                         "so its class indices would not match the models' outputs")


# ---------------------------------------------------------------------------------------------
class ImageNetDataset(Dataset):
    """ImageNet images with boxes of their ground-truth class: weak-localization samples."""

    label_space = "imagenet"
    provides = ("boxes", "single_class")  # one labelled class per image, its boxes

    def __init__(self, records: list[dict], *, name: str = "imagenet", options: dict | None = None,
                 excluded: int = 0) -> None:
        self.name = name
        self._records = records
        self._ids = [r["id"] for r in records]
        if len(set(self._ids)) != len(self._ids):
            dup = [k for k, n in Counter(self._ids).items() if n > 1][:5]
            raise ValueError(f"sample ids are not unique ({', '.join(dup)}): two images share a file stem")
        self.options = dict(options or {})
        self.excluded = excluded

    @property
    def ids(self) -> list[str]:
        return self._ids

    def load(self, i: int) -> Sample:
        r = self._records[i]
        sample = Sample(id=r["id"], image=None, size=(0, 0), targets={"imagenet": r["targets"]},
                        category=r["wnid"] or "unknown", split=r["split"], error=r["error"])
        if r["error"]:
            return sample
        try:
            image = load_rgb(r["path"])
        except (ImageError, OSError) as e:
            sample.error = str(e)
            return sample
        w, h = image.size
        boxes = np.asarray(r["boxes"], np.float32).reshape(-1, 4)
        if r["size"] and tuple(r["size"]) != (w, h):
            sx, sy = w / r["size"][0], h / r["size"][1]
            boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
        boxes, _, dropped = boxes_inside(boxes, h, w)
        if len(boxes) == 0:
            sample.error = f"none of the {dropped} boxes of {r['wnid']} lies inside the {w}x{h} image"
            return sample
        sample.image, sample.size, sample.boxes = image, (h, w), boxes
        return sample

    def describe(self) -> dict:
        ok = [r for r in self._records if not r["error"]]
        failed = [(r["id"], r["error"]) for r in self._records if r["error"]]
        return {
            "dataset": self.name,
            "samples": len(self._records),
            "splits": dict(Counter(r["split"] for r in self._records)),
            "per_category": dict(sorted(Counter(r["wnid"] for r in ok).items())),
            "categories": len({r["wnid"] for r in ok}),
            "boxes": sum(len(r["boxes"]) for r in ok),
            "boxes_outside_stated_size": sum(r.get("outside", 0) for r in ok),  # kept as written
            "boxes_clipped": 0,  # boxes are scored as annotated (docs/PROTOCOLS.md §3)
            "boxes_wholly_outside_stated_size": sum(r.get("wholly_outside", 0) for r in ok),  # left out
            "failed": len(failed),
            "failed_reasons": dict(failed[:50]),
            "excluded_blacklist": self.excluded,
            "not_evaluable": {},
            "options": dict(self.options),
        }


def build_records(images: dict[str, Path], annotations: dict[str, dict], source: str,
                  split_of: dict[str, str] | None = None, labels: dict[str, int] | None = None) -> list[dict]:
    """One record per image or annotated id (their union, so neither side is lost)."""
    classes = imagenet_classes()
    by_wnid = {c.wnid: c.index for c in classes}
    records = []
    for stem in sorted(set(images) | set(annotations)):
        ann = annotations.get(stem)
        rec = {"id": stem, "path": images.get(stem), "wnid": None, "targets": (), "boxes": [],
               "size": None, "split": (split_of or {}).get(stem, "eval"), "error": None}
        records.append(rec)
        if ann is None:
            rec["error"] = f"no boxes for {stem} in {source}"
            continue
        if ann.get("error"):
            rec["error"] = ann["error"]
            continue
        label = (labels or {}).get(stem, ann.get("label"))
        objs = ann["objects"]
        if label is not None:
            if not 0 <= int(label) < len(classes):
                rec["error"] = f"class label {label} is outside 0..{len(classes) - 1}"
                continue
            wnid = classes[int(label)].wnid
        else:
            wnid = objs[0][0] if objs else None
        rec["wnid"] = wnid
        unknown = sorted({o[0] for o in objs if o[0] is not None and o[0] not in by_wnid})
        if wnid not in by_wnid or unknown:
            rec["error"] = f"unknown WordNet id {wnid if wnid not in by_wnid else unknown[0]} in {source}"
            continue
        rec["targets"] = (by_wnid[wnid],)
        rec["boxes"] = [o[1] for o in objs if o[0] in (None, wnid)]
        rec["size"] = ann.get("size")
        if rec["size"]:
            w, h = rec["size"]
            rec["outside"] = sum(b[0] < 0 or b[1] < 0 or b[2] > w - 1 or b[3] > h - 1 for b in rec["boxes"])
            rec["wholly_outside"] = sum(b[2] < 0 or b[3] < 0 or b[0] > w - 1 or b[1] > h - 1 for b in rec["boxes"])
        if not rec["boxes"]:
            rec["error"] = f"no boxes of {wnid} for {stem} in {source}"
        elif rec["path"] is None:
            rec["error"] = f"image file for {stem} not found (it has boxes in {source})"
    return records


def _protocol_heldout(list_file: str, train: str | None) -> list[dict]:
    """The held-out split from a list of annotated train images and the user's train folder."""
    path = DATA / "annotated_train_heldout.txt" if list_file == "protocol" else Path(list_file).expanduser()
    require(path, "held-out list", "  lines 'WNID/FILE.JPEG LABEL' (like the shipped annotated_train_heldout.txt)")
    if not train:
        raise ValueError("heldout_list needs train=PATH, the folder of the ImageNet train images "
                         "(TRAIN/WNID/*.JPEG) with their boxes (TRAIN/LOC_train_solution.csv or "
                         "TRAIN/Annotation/WNID/*.xml)")
    root = Path(train).expanduser()
    layout = ("  TRAIN/WNID/*.JPEG (or TRAIN/train/WNID/, TRAIN/ILSVRC/Data/CLS-LOC/train/WNID/)\n"
              "  boxes: TRAIN/LOC_train_solution.csv or TRAIN/Annotation/WNID/*.xml "
              "(or TRAIN/bbox_train/WNID/, TRAIN/ILSVRC/Annotations/CLS-LOC/train/WNID/)")
    require(root, "ImageNet train folder", layout)
    img_root = next((p for p in (root / "train", root / "ILSVRC" / "Data" / "CLS-LOC" / "train") if p.is_dir()), root)
    wanted: dict[str, tuple[str, int]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rel, label = line.split()
            wanted[Path(rel).stem] = (rel, int(label))
    images = {stem: img_root / rel for stem, (rel, _) in wanted.items() if (img_root / rel).is_file()}
    csv_path = root / "LOC_train_solution.csv"
    if csv_path.is_file():
        all_boxes, source = read_csv(csv_path), csv_path.name
    else:
        xml_root = next((p for p in (root / "Annotation", root / "bbox_train",
                                     root / "ILSVRC" / "Annotations" / "CLS-LOC" / "train") if p.is_dir()), None)
        if xml_root is None:
            raise LayoutError(f"no train boxes under {root}\nexpected layout:\n{layout}")
        all_boxes, source = {}, xml_root.name
        for stem, (rel, _) in wanted.items():
            f = xml_root / Path(rel).parent / f"{stem}.xml"
            if f.is_file():
                all_boxes[stem] = _xml_record(f)
    annotations = {s: all_boxes[s] for s in wanted if s in all_boxes}
    missing_images = {s: None for s in wanted if s not in images}
    recs = build_records({**images, **missing_images}, annotations, source,
                         split_of={s: "heldout" for s in wanted}, labels={s: lab for s, (_, lab) in wanted.items()})
    for r in recs:
        if r["path"] is None and not r["error"]:
            r["error"] = f"train image {wanted[r['id']][0]} not found under {img_root}"
    return recs


@saliency_bench.dataset("imagenet")
def imagenet(path: str, *, heldout: int = 5000, seed: int = 0, boxes: str = "auto",
             exclude_blacklist: bool = False, heldout_list: str | None = None,
             train: str | None = None) -> ImageNetDataset:
    """ImageNet val with boxes (VOC XML, LOC_val_solution.csv or wsol metadata): localization samples.

    Held-out split: ``heldout`` images chosen by ``seed`` (at most half), or the published
    5,000 annotated train images with ``heldout_list=protocol train=TRAIN``;
    ``exclude_blacklist=True`` drops the ILSVRC2014 blacklist from evaluation.
    """
    root = Path(path).expanduser()
    require(root, "ImageNet folder", _LAYOUT)
    _check_synsets(root)
    image_dir = _find_images(root)
    fmt, where = _find_boxes(root, str(boxes))
    annotations = _READERS[fmt](where)
    images = _index_images(image_dir)
    excluded = 0
    if as_bool(exclude_blacklist):
        black = {f"ILSVRC2012_val_{int(n):08d}"
                 for n in (DATA / "ILSVRC2014_clsloc_validation_blacklist.txt").read_text().split()}
        excluded = len((set(images) | set(annotations)) & black)
        images = {k: v for k, v in images.items() if k not in black}
        annotations = {k: v for k, v in annotations.items() if k not in black}
    options = {"path": str(root), "images": str(image_dir), "boxes": f"{fmt}:{where}",
               "exclude_blacklist": as_bool(exclude_blacklist), "seed": int(seed)}
    if heldout_list:
        records = build_records(images, annotations, where.name)
        records += _protocol_heldout(str(heldout_list), train)
        options.update(heldout_list=str(heldout_list), train=str(train))
    else:
        ids = sorted(set(images) | set(annotations))
        k = min(int(heldout), len(ids) // 2)
        held = heldout_ids(ids, k, int(seed))
        records = build_records(images, annotations, where.name,
                                split_of={s: "heldout" for s in held})
        options.update(heldout_requested=int(heldout), heldout=k)
    return ImageNetDataset(records, name="imagenet", options=options, excluded=excluded)


__all__ = ["ImageNetDataset", "imagenet", "read_xml", "read_csv", "read_wsol", "build_records"]
