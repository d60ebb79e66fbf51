"""PASCAL VOC 2007 for the pointing game, as TorchRay scores it (its ``PointingGameBenchmark``
on ``VOCDetection``, the VOC half of its table).

Layout: ``VOCdevkit/VOC2007/{JPEGImages/*.jpg, Annotations/*.xml, ImageSets/Main/SPLIT.txt}``;
``PATH`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC2007``.

One sample per (image, class present), in the image list's order and TorchRay's class order
(the 20 classes alphabetically), id ``"{image}:{class}"``. Ground truth (docs/PROTOCOLS.md §2):

* ``boxes``: every box of the class, difficult ones included (TorchRay's ``voc_as_mask``),
  VOC's 1-based inclusive ``xmin..xmax`` made 0-based (``x1 = xmin - 1``, ...); the pointing
  region is their union;
* a class whose boxes are **all** PASCAL-difficult (``<difficult>1</difficult>``) gives no
  sample (TorchRay skips it); ``describe()`` counts them;
* ``flags["difficult"]``: ``difficult="paper"`` (default): the class's boxes cover less than
  1/4 of the image and another class is present (the rule of Zhang et al.'s text, as for COCO);
  ``difficult="torchray"``: TorchRay's flags file ``pointing_game_ebp_voc07_difficult.txt`` from
  the installed ``torchray`` package; or a path to such a file (see :mod:`._difficult`).

Bad input costs the samples it touches, with the reason: an XML that does not parse (one failed
record for the image), a class name VOC does not have, a missing image, an image of another size
than its XML says, an image without a row in the flags file. A missing folder, list or flags
file, or a flags file with malformed rows, stops the run with an error naming the file.

Targets: ``{"voc": (class index,), "imagenet": the ImageNet classes of the COCO category of the
same name (:mod:`.coco_imagenet_map`)}``.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

import saliency_bench
from saliency_bench.contracts import Dataset, Sample
from saliency_bench.imageio import ImageError, load_rgb

from ._common import LayoutError, clip_boxes, require
from ._difficult import check_covers, flags_path, read_flags
from .coco_imagenet_map import COCO_TO_IMAGENET

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
VOC_TO_COCO = {"aeroplane": "airplane", "diningtable": "dining table", "motorbike": "motorcycle",
               "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv"}

_LAYOUT = """  PATH/VOCdevkit/VOC2007/JPEGImages/*.jpg
  PATH/VOCdevkit/VOC2007/Annotations/*.xml
  PATH/VOCdevkit/VOC2007/ImageSets/Main/SPLIT.txt   (SPLIT: test, trainval, ...)
  (PATH may also be VOCdevkit or VOC2007 itself)"""


def find_root(path: Path, year: str) -> Path:
    for root in (path / "VOCdevkit" / f"VOC{year}", path / f"VOC{year}", path):
        if (root / "Annotations").is_dir():
            return root
    raise LayoutError(f"PASCAL VOC {year} not found under {path}\nexpected layout:\n{_LAYOUT}")


def parse_annotation(path: Path) -> dict:
    """``{"size": (H, W), "objects": [(name, difficult, (xmin, ymin, xmax, ymax))]}`` of one VOC XML."""
    root = ET.parse(path).getroot()
    size = root.find("size")
    if size is None:
        raise ValueError("no <size>")
    hw = (int(size.findtext("height")), int(size.findtext("width")))
    objs = []
    for o in root.iter("object"):
        b = o.find("bndbox")
        if b is None:
            raise ValueError(f"object {o.findtext('name')!r} has no <bndbox>")
        objs.append((o.findtext("name", "").strip(), bool(int(o.findtext("difficult", "0") or 0)),
                     tuple(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return {"size": hw, "objects": objs}


class VocDataset(Dataset):
    """A VOC ``ImageSets/Main`` list and its XML annotations as pointing-game samples."""

    label_space = "voc"
    label_spaces = ("voc", "imagenet")
    provides = ("boxes",)  # boxes only: the pointing region is their union

    def __init__(self, root: str | Path, *, split: str = "test", year: str = "2007", difficult: str = "paper",
                 name: str = "voc") -> None:
        self.name = name
        self.root = find_root(Path(root).expanduser(), str(year))
        listing = require(self.root / "ImageSets" / "Main" / f"{split}.txt", f"VOC image list for split '{split}'", _LAYOUT)
        self.images = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        self.options = {"split": str(split), "year": str(year), "difficult": str(difficult)}
        self.flags_file = flags_path(difficult, "voc")
        self.flags = read_flags(self.flags_file, len(VOC_CLASSES)) if self.flags_file else None
        if self.flags is not None:
            check_covers(self.flags, self.images, self.flags_file)
        self._index()

    def _index(self) -> None:
        self._records: list[dict] = []
        self.all_difficult = 0
        for stem in self.images:
            xml = self.root / "Annotations" / f"{stem}.xml"
            try:
                ann = parse_annotation(xml)
            except FileNotFoundError:
                self._records.append({"image": stem, "category": "?", "error": f"annotation {xml} not found"})
                continue
            except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
                self._records.append({"image": stem, "category": "?",
                                      "error": f"annotation {xml} does not parse: {type(e).__name__}: {e}"})
                continue
            names = [n for n, _, _ in ann["objects"]]
            present = sorted(set(names), key=lambda n: (n not in VOC_CLASSES, VOC_CLASSES.index(n) if n in VOC_CLASSES else 0, n))
            for name in present:
                objs = [o for o in ann["objects"] if o[0] == name]
                rec = {"image": stem, "category": name, "size": ann["size"], "error": None,
                       "boxes": [o[2] for o in objs], "others": len(present) - 1}
                if name not in VOC_CLASSES:
                    rec["error"] = f"annotation {xml} names class {name!r}, which is not one of VOC's 20"
                elif all(d for _, d, _ in objs):
                    self.all_difficult += 1  # TorchRay: skipped when every box of the class is difficult
                    continue
                elif self.flags is not None and stem not in self.flags:
                    rec["error"] = f"image {stem} has no row in the difficult flags file {self.flags_file}"
                self._records.append(rec)
        self._ids = [f"{r['image']}:{r['category']}" for r in self._records]

    @property
    def ids(self) -> list[str]:
        return self._ids

    def difficult_of(self, rec: dict) -> bool:
        if self.flags is not None:
            return self.flags[rec["image"]][VOC_CLASSES.index(rec["category"])]
        h, w = rec["size"]
        area = sum((x2 - x1 + 1) * (y2 - y1 + 1) for x1, y1, x2, y2 in rec["boxes"])
        return bool(area < 0.25 * h * w and rec["others"] > 0)

    def targets_of(self, category: str) -> dict[str, tuple[int, ...]]:
        if category not in VOC_CLASSES:
            return {"voc": (), "imagenet": ()}
        mapped = COCO_TO_IMAGENET.get(VOC_TO_COCO.get(category, category), ((), ""))[0]
        return {"voc": (VOC_CLASSES.index(category),), "imagenet": tuple(mapped)}

    def load(self, i: int) -> Sample:
        rec = self._records[i]
        size = rec.get("size", (0, 0))
        sample = Sample(id=self._ids[i], image=None, size=size, targets=self.targets_of(rec["category"]),
                        category=rec["category"])
        if rec["error"]:
            sample.error = rec["error"]
            return sample
        h, w = size
        path = self.root / "JPEGImages" / f"{rec['image']}.jpg"
        try:
            image = load_rgb(path)
            if image.size != (w, h):
                raise ImageError(f"{path.name} is {image.size[0]}x{image.size[1]} but its annotation says {w}x{h}")
        except (ImageError, FileNotFoundError, OSError) as e:
            sample.error = f"{type(e).__name__}: {e}"
            return sample
        boxes = np.asarray(rec["boxes"], np.float32).reshape(-1, 4) - 1.0  # VOC is 1-based
        sample.boxes, _, _ = clip_boxes(boxes, h, w)
        sample.image = image
        sample.flags = {"difficult": self.difficult_of(rec)}
        return sample

    def describe(self) -> dict:
        ok = [r for r in self._records if r["error"] is None]
        failed = [(self._ids[k], r["error"]) for k, r in enumerate(self._records) if r["error"]]
        return {"dataset": self.name, "samples": len(self._records), "images": len(self.images),
                "per_category": dict(sorted(Counter(r["category"] for r in ok).items())),
                "difficult": sum(self.difficult_of(r) for r in ok),
                "skipped_all_pascal_difficult": self.all_difficult,
                "difficult_rule": "paper" if self.flags is None else str(self.flags_file),
                "failed": len(failed), "failed_reasons": dict(failed[:50]), "options": dict(self.options)}


@saliency_bench.dataset("voc")
def voc(path: str, *, split: str = "test", year: str = "2007", difficult: str = "paper") -> VocDataset:
    """PASCAL VOC (2007 test by default) for the pointing game, TorchRay's protocol: classes whose
    boxes are all PASCAL-difficult skipped; ``difficult`` = ``paper`` (default), ``torchray``
    (its flags file from the installed package) or a path to a flags file."""
    return VocDataset(path, split=split, year=year, difficult=difficult)


__all__ = ["VocDataset", "voc", "VOC_CLASSES", "parse_annotation"]
