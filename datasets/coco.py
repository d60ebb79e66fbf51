"""COCO for the pointing game (Zhang et al., ECCV 2016), and the bundled sample.

One sample per (image, category present in the image), id ``"{image_id}:{category name}"``.
Ground truth (docs/PROTOCOLS.md §2):

* ``mask``: the union of the category's instance masks, decoded as ``COCO.annToMask`` does
  (polygons and RLE through ``pycocotools.mask``), bool ``[H, W]``, in ``load(i)`` only.
* ``boxes``: the category's boxes, float32 ``[N, 4]`` inclusive ``(x1, y1, x2, y2)`` in
  original pixels (the VOC convention of :mod:`saliency_bench.contracts`): COCO's
  ``[x, y, w, h]`` becomes ``x1 = x, y1 = y, x2 = x + w - 1, y2 = y + h - 1``, clipped to the image.
* ``flags["difficult"]``: the total area of the category's boxes (sum of ``w * h``) is below
  1/4 of the image area **and** at least one other category is present (the paper's wording,
  ``difficult="paper"``, the default); ``difficult="torchray"`` reads TorchRay's flags file
  ``pointing_game_ebp_coco_difficult.txt`` from the installed ``torchray`` package instead, and a
  path reads such a file (rows named after the image file without extension; see
  :mod:`._difficult`); an image without a row there costs its samples.

Crowd annotations (``iscrowd = 1``, one RLE region over a group of instances) are, by default
(``crowd="include"``), ground truth like any other: the pixels are the category's, so a point on
them is on the object, and the category counts as present. ``crowd="ignore"`` drops them before
anything else (an image whose only annotation of a category is a crowd then has no sample for it,
and neither the region nor the category counts towards "difficult"); describe() reports how many
crowd annotations there were and what was done with them.

Targets: ``{"coco": (contiguous index 0..79 of the category in id order,), "imagenet": the
classes of :mod:`saliency_bench.datasets.coco_imagenet_map`}``. A model with a COCO head reads
``coco``; an ImageNet model reads ``imagenet``, which is empty for categories ImageNet cannot
score: those samples are kept and reported as not evaluable.

Everything is indexed once at construction (plain lists, cheap to pickle for DataLoader
workers); images are decoded and masks built in ``load(i)``.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import saliency_bench
from saliency_bench.contracts import Dataset, Sample
from saliency_bench.imageio import ImageError, load_rgb

from ._common import LayoutError, clip_boxes, coco_keypoints, require
from ._difficult import COCO_IDS, check_covers, flags_path, read_flags
from .coco_imagenet_map import COCO_TO_IMAGENET

SAMPLE_ROOT = Path(__file__).parent / "sample"

_LAYOUT = """  PATH/annotations/instances_SPLIT.json   (SPLIT: val2014, val2017, train2017 ...)
  PATH/SPLIT/*.jpg                         (or PATH/images/SPLIT/*.jpg)"""


def _ann_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """One annotation's region as compressed RLE, exactly as ``pycocotools.coco.COCO.annToRLE``:
    polygons are rasterised and merged, uncompressed RLE (crowds) compressed."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons (one object may have several parts)
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def union_mask(segmentations: list, height: int, width: int) -> np.ndarray:
    """Union of the instances' ``annToMask`` masks, bool ``[H, W]``: the RLEs are merged
    (a union in run-length space) and decoded once, not once per instance."""
    from pycocotools import mask as mask_utils

    rles = [_ann_to_rle(s, height, width) for s in segmentations]
    rle = rles[0] if len(rles) == 1 else mask_utils.merge(rles, intersect=False)
    return mask_utils.decode(rle).astype(bool)


class CocoDataset(Dataset):
    """A COCO ``instances_*.json`` and its image folder as pointing-game samples."""

    label_space = "coco"  # the native labels; targets also carry the "imagenet" mapping
    label_spaces = ("coco", "imagenet")
    provides = ("mask", "boxes")  # instance masks (pointing game); several classes per image

    def __init__(self, annotations: str | Path, images: str | Path, *, name: str = "coco",
                 cap_per_category: int | None = None, crowd: str = "include",
                 keypoints: str | Path | None = None, difficult: str = "paper",
                 single_class_subset: bool = False) -> None:
        self.name = name
        self.annotation_file = Path(annotations)
        self.image_dir = Path(images)
        if crowd not in ("include", "ignore"):
            raise ValueError(f"crowd must be 'include' or 'ignore', not '{crowd}'")
        if cap_per_category is not None and int(cap_per_category) < 1:
            raise ValueError(f"cap_per_category must be a positive number of images, not {cap_per_category}")
        self.options = {"annotations": str(self.annotation_file), "images": str(self.image_dir),
                        "cap_per_category": None if cap_per_category is None else int(cap_per_category),
                        "crowd": crowd, "keypoints": None if keypoints is None else str(keypoints)}
        if difficult != "paper":  # the option appears in the run's record only when used
            self.options["difficult"] = str(difficult)
        self.flags_file = flags_path(difficult, "coco")
        self.flags = read_flags(self.flags_file, len(COCO_IDS)) if self.flags_file else None
        require(self.annotation_file, "COCO annotation file", _LAYOUT)
        require(self.image_dir, "COCO image folder", _LAYOUT)
        try:
            data = json.loads(self.annotation_file.read_text())
            images_json, anns_json, cats_json = data["images"], data["annotations"], data["categories"]
        except (ValueError, KeyError, TypeError) as e:
            # The whole file is unreadable: no sample can exist, so this is a dataset error.
            raise ValueError(f"{self.annotation_file} is not a COCO instances file "
                             f"(json with images, annotations, categories): {type(e).__name__}: {e}") from e
        self._index(images_json, anns_json, cats_json, cap_per_category, crowd)
        self._attach_keypoints(data, keypoints)
        self.single_class_subset = bool(single_class_subset)
        if self.single_class_subset:  # weak localization on the images with exactly one category
            single = [r for r in self._records if r["error"] is None and r["others"] == 0]
            self.provides = tuple(self.provides) + ("single_class",)
            self.subsets = {"single_class": f"on the {len(single)} images of {name} with exactly one category "
                                            "present (the others have several), box ground truth as annotated"}
        if self.flags is not None:
            self._attach_flags()

    def _attach_flags(self) -> None:
        """TorchRay's difficult flags of each sample (by image name and category id)."""
        names = sorted({Path(str(r["image"].get("file_name") or "")).stem for r in self._records if not r["error"]})
        check_covers(self.flags, names, self.flags_file)
        for rec in self._records:
            if rec["error"]:
                continue
            stem = Path(str(rec["image"]["file_name"])).stem
            cid = rec["anns"][0].get("category_id")
            if stem not in self.flags:
                rec["error"] = f"image {stem} has no row in the difficult flags file {self.flags_file}"
            elif cid not in COCO_IDS:
                rec["error"] = f"category id {cid} is not one of COCO's 80 (the columns of {self.flags_file})"
            else:
                rec["torchray_difficult"] = self.flags[stem][COCO_IDS.index(cid)]

    # -- indexing (once, at construction) ----------------------------------------------------
    def _index(self, images_json: list, anns_json: list, cats_json: list,
               cap: int | None, crowd: str) -> None:
        cats = sorted(cats_json, key=lambda c: c["id"])
        self.categories = [c["name"] for c in cats]
        cat_name = {c["id"]: c["name"] for c in cats}
        contiguous = {c["id"]: i for i, c in enumerate(cats)}
        imgs = {im["id"]: im for im in images_json}

        per_image: dict[int, dict[Any, list]] = defaultdict(lambda: defaultdict(list))
        self.crowd_count = 0
        orphans: list[dict] = []
        crowd_pairs: set = set()
        for a in anns_json:
            if a.get("iscrowd", 0):
                self.crowd_count += 1
                if crowd == "ignore":
                    crowd_pairs.add((a.get("image_id"), a.get("category_id")))
                    continue
            if a.get("image_id") not in imgs:
                orphans.append(a)
                continue
            per_image[a["image_id"]][a.get("category_id")].append(a)

        # (image, category) pairs in image-id order; the cap keeps each category's first images.
        self._records: list[dict] = []
        taken: Counter = Counter()
        self.capped: Counter = Counter()
        for image_id in sorted(per_image):
            im = imgs[image_id]
            present = per_image[image_id]
            for cid in sorted(present, key=lambda c: (c not in cat_name, contiguous.get(c, 0), str(c))):
                anns = present[cid]
                rec = {"image": im, "anns": anns, "others": len(present) - 1, "error": None}
                if cid not in cat_name:
                    rec.update(category=f"unknown category {cid}", coco=None,
                               error=f"annotation {anns[0].get('id')} has category id {cid}, "
                                     f"which {self.annotation_file.name} does not define")
                else:
                    name = cat_name[cid]
                    if cap is not None and taken[name] >= int(cap):
                        self.capped[name] += 1
                        continue
                    taken[name] += 1
                    rec.update(category=name, coco=contiguous[cid])
                self._records.append(rec)
        for a in orphans:  # an annotation whose image the json does not list: reported, not lost
            self._records.append({"image": {"id": a.get("image_id"), "file_name": None},
                                  "anns": [a], "others": 0, "coco": None,
                                  "category": cat_name.get(a.get("category_id"), "unknown"),
                                  "error": f"annotation {a.get('id')} refers to image id "
                                           f"{a.get('image_id')}, which the json does not list"})
        self._ids = [f"{r['image']['id']}:{r['category']}" for r in self._records]
        # With crowds ignored, an (image, category) seen only as a crowd has no sample: counted.
        self.crowd_only = sum(1 for im_id, cid in crowd_pairs if cid not in per_image.get(im_id, {}))
        # Images with no annotation give no (image, category) pair; counted so none goes unseen.
        self.unannotated = sorted(i for i in imgs if i not in per_image)

    def _attach_keypoints(self, data: dict, keypoints: str | Path | None) -> None:
        """Keypoints of each (image, category) sample: those the annotation file carries itself
        (a ``person_keypoints_*.json``), and those of the COCO-keypoint-format file
        ``keypoints`` (matched by annotation id, else by image and category)."""
        sources = [data]
        if keypoints is not None:
            path = Path(keypoints)
            require(path, "COCO keypoint file", "  a json in COCO's keypoint format (person_keypoints_*.json)")
            try:
                sources.append(json.loads(path.read_text()))
            except ValueError as e:
                raise ValueError(f"{path} is not a json file: {e}") from e
        self.keypoint_count = 0
        cat_id = {c["name"]: c["id"] for c in data.get("categories", [])}
        for src in sources:
            by_ann, by_pair = coco_keypoints(src)
            if not by_pair:
                continue
            for rec in self._records:
                if rec["error"]:
                    continue
                ids = [a.get("id") for a in rec["anns"]]
                if any(i in by_ann for i in ids):
                    pts = [p for i in ids for p in by_ann.get(i, [])]
                else:
                    pts = by_pair.get((rec["image"]["id"], cat_id.get(rec["category"])), [])
                if pts:
                    rec["keypoints"] = rec.get("keypoints", []) + list(pts)
                    self.keypoint_count += len(pts)
        if self.keypoint_count:
            self.provides = tuple(getattr(type(self), "provides", ("mask", "boxes"))) + ("keypoints",)

    @property
    def ids(self) -> list[str]:
        return self._ids

    # -- loading (per sample, in a worker) ---------------------------------------------------
    def targets_of(self, category: str, coco_index: int | None) -> dict[str, tuple[int, ...]]:
        mapped = COCO_TO_IMAGENET.get(category, ((), ""))[0]
        return {"coco": () if coco_index is None else (coco_index,), "imagenet": tuple(mapped)}

    def load(self, i: int) -> Sample:
        rec = self._records[i]
        im, anns = rec["image"], rec["anns"]
        sample = Sample(id=self._ids[i], image=None, size=(int(im.get("height", 0) or 0), int(im.get("width", 0) or 0)),
                        targets=self.targets_of(rec["category"], rec["coco"]), category=rec["category"],
                        split="eval")
        if rec["error"]:
            sample.error = rec["error"]
            return sample
        try:
            h, w = int(im["height"]), int(im["width"])
            image = load_rgb(self.image_dir / im["file_name"])
            if image.size != (w, h):
                raise ImageError(f"{im['file_name']} is {image.size[0]}x{image.size[1]} but "
                                 f"{self.annotation_file.name} says {w}x{h}")
            mask = union_mask([a["segmentation"] for a in anns], h, w)
            boxes, area = [], 0.0
            for a in anns:
                x, y, bw, bh = (float(v) for v in a["bbox"])
                boxes.append((x, y, x + bw - 1, y + bh - 1))
                area += bw * bh
        except (ImageError, FileNotFoundError, KeyError, TypeError, ValueError) as e:
            sample.error = f"{type(e).__name__}: {e}"
            return sample
        sample.boxes, _, _ = clip_boxes(np.asarray(boxes, np.float32), h, w)
        sample.image, sample.size, sample.mask = image, (h, w), mask
        if rec.get("keypoints") is not None:
            sample.keypoints = [(str(n), float(x), float(y)) for n, x, y in rec["keypoints"]]
        elif self.keypoint_count:
            sample.keypoints = []  # the dataset has keypoints, this sample none
        if "torchray_difficult" in rec:
            sample.flags = {"difficult": bool(rec["torchray_difficult"])}
        else:
            sample.flags = {"difficult": bool(area < 0.25 * h * w and rec["others"] > 0)}
        if self.single_class_subset:
            sample.flags["single_class"] = rec["others"] == 0
        return sample

    def describe(self) -> dict:
        per_cat = Counter(r["category"] for r in self._records if r["error"] is None)
        failed_at_index = [(self._ids[k], r["error"]) for k, r in enumerate(self._records) if r["error"]]
        inet_missing = {c: COCO_TO_IMAGENET[c][1] for c in sorted(per_cat)
                        if c in COCO_TO_IMAGENET and not COCO_TO_IMAGENET[c][0]}
        return {
            "dataset": self.name,
            "samples": len(self._records),
            "images": len({r["image"]["id"] for r in self._records}),
            "per_category": dict(sorted(per_cat.items())),
            "images_without_annotations": len(self.unannotated),
            "categories_present": len(per_cat),
            "difficult": self.difficult_counts()["difficult"],
            "failed": len(failed_at_index),
            "failed_reasons": dict(failed_at_index[:50]),
            "not_evaluable": {"imagenet": {c: {"samples": per_cat[c], "why": why}
                                           for c, why in inet_missing.items()}},
            "crowd_annotations": {"count": self.crowd_count, "handling": self.options["crowd"]},
            "crowd_only_pairs_dropped": self.crowd_only,
            "keypoints": {"count": self.keypoint_count,
                          "samples": sum(bool(r.get("keypoints")) for r in self._records)},
            "capped_away": dict(sorted(self.capped.items())),
            "options": dict(self.options),
        }

    def difficult_counts(self) -> dict[str, int]:
        """How many samples are difficult, computed from the index alone (no decoding)."""
        n = 0
        for r in self._records:
            if r["error"]:
                continue
            if "torchray_difficult" in r:
                n += int(r["torchray_difficult"])
                continue
            area = sum(float(a["bbox"][2]) * float(a["bbox"][3]) for a in r["anns"])
            hw = float(r["image"]["height"]) * float(r["image"]["width"])
            n += int(area < 0.25 * hw and r["others"] > 0)
        return {"difficult": n, "all": sum(r["error"] is None for r in self._records)}


def _find_split(root: Path, split: str) -> tuple[Path, Path]:
    ann = root / "annotations" / f"instances_{split}.json"
    require(root, "COCO folder", _LAYOUT)
    require(ann, f"COCO annotations for split '{split}'", _LAYOUT)
    for images in (root / split, root / "images" / split):
        if images.is_dir():
            return ann, images
    raise LayoutError(f"COCO image folder for split '{split}' not found: {root / split} "
                      f"(nor {root / 'images' / split})\nexpected layout:\n{_LAYOUT}")


@saliency_bench.dataset("coco")
def coco(path: str, *, split: str = "val2014", cap_per_category: int | None = None,
         crowd: str = "include", keypoints: str | None = None, difficult: str = "paper") -> CocoDataset:
    """COCO instances (val2014, val2017, train2017 ...) via pycocotools: pointing-game samples.

    ``cap_per_category=400`` keeps each category's first 400 images in image-id order (the
    seed's COCO protocol); ``crowd`` is ``include`` (default) or ``ignore``; ``keypoints`` a
    COCO-keypoint-format json (``auto``: ``PATH/annotations/person_keypoints_SPLIT.json``) whose
    keypoints the part-saliency benchmark reads; ``difficult`` is ``paper`` (default: the rule of
    Zhang et al.'s text), ``torchray`` (TorchRay's flags file from the installed package) or a path.
    """
    root = Path(path).expanduser()
    ann, images = _find_split(root, str(split))
    if keypoints == "auto":
        keypoints = str(require(root / "annotations" / f"person_keypoints_{split}.json",
                                f"COCO person keypoints for split '{split}'", _LAYOUT))
    return CocoDataset(ann, images, name="coco", cap_per_category=cap_per_category, crowd=crowd,
                       keypoints=keypoints, difficult=difficult)


@saliency_bench.dataset("sample")
def sample(*, cap_per_category: int | None = None, crowd: str = "include") -> CocoDataset:
    """The bundled sample: 39 freely licensed COCO train2017 images (see sample/CREDITS.md),
    with eyes and feet of its animals marked by hand for this project (``sample/keypoints.json``).
    Weak localization scores its images with exactly one category present (a single-class
    subset, labelled so on the leaderboard); the pointing game scores them all."""
    kp = SAMPLE_ROOT / "keypoints.json"
    return CocoDataset(SAMPLE_ROOT / "instances.json", SAMPLE_ROOT / "images", name="sample",
                       cap_per_category=cap_per_category, crowd=crowd, keypoints=kp if kp.exists() else None,
                       single_class_subset=True)


__all__ = ["CocoDataset", "coco", "sample", "LayoutError"]
