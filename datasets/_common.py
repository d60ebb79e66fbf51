"""What every dataset adapter shares: the seeded held-out split, box checks, option parsing.

Kept free of any one format so that the ImageNet and COCO adapters apply the same rules.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


class LayoutError(FileNotFoundError):
    """A dataset folder or annotation file is missing; the message names it and the layout expected."""


def require(path: Path, what: str, layout: str) -> Path:
    """``path`` if it exists, else :class:`LayoutError` naming the path and the expected layout."""
    if not path.exists():
        raise LayoutError(f"{what} not found: {path}\nexpected layout:\n{layout}")
    return path


def split_rank(ids: Iterable[str], seed: int) -> list[str]:
    """Ids ordered by SHA-256 of ``"{seed}:{id}"``: the seeded split's order.

    A hash rather than a shuffled RNG stream, so an image's side of the split depends only on its
    own id and the seed: the same on every platform, whatever the file order, and stable when a
    user adds or removes other images.
    """
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def heldout_ids(ids: Sequence[str], count: int, seed: int) -> set[str]:
    """The ``count`` ids that come first in :func:`split_rank` order (the threshold-tuning split)."""
    return set(split_rank(ids, seed)[: max(0, int(count))])


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Clip inclusive ``(x1, y1, x2, y2)`` boxes to the image ``[0, W-1] x [0, H-1]``.

    Returns ``(kept, clipped, dropped)``: a box that reaches outside is clipped (counted), a box
    with no pixel inside the image is dropped (counted): the caller reports both.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(b) == 0:
        return b, 0, 0
    inside = (b[:, 2] >= 0) & (b[:, 3] >= 0) & (b[:, 0] <= width - 1) & (b[:, 1] <= height - 1) \
        & (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])
    lim = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float32)
    c = np.clip(b, 0, lim)
    clipped = int((np.abs(c - b).max(axis=1) > 0)[inside].sum())
    return c[inside], clipped, int((~inside).sum())


def boxes_inside(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """Keep inclusive ``(x1, y1, x2, y2)`` boxes **as written** (not clipped), dropping those with no
    pixel inside the image ``[0, W-1] x [0, H-1]`` (or with x2 < x1 or y2 < y1).

    Returns ``(kept, outside, dropped)``: ``outside`` counts the kept boxes that reach outside the
    image, ``dropped`` the boxes left out; the caller reports both. Weak localization scores
    against the boxes as the annotation files write them (docs/PROTOCOLS.md §3, the authors'
    ``compute_overlap`` and wsolevaluation's ``resize_bbox`` clip nothing).
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(b) == 0:
        return b, 0, 0
    inside = (b[:, 2] >= 0) & (b[:, 3] >= 0) & (b[:, 0] <= width - 1) & (b[:, 1] <= height - 1) \
        & (b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])
    reach = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width - 1) | (b[:, 3] > height - 1)
    return b[inside], int((reach & inside).sum()), int((~inside).sum())


def as_bool(value: object) -> bool:
    """CLI options arrive parsed to literals, but ``-d x=yes`` arrives as a string."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got '{value}'")
    return bool(value)


# --------------------------------------------------------------------------------------------
# Keypoints: COCO's keypoint format and the Animal Parts layout (Novotny et al., BMVC 2016)
# --------------------------------------------------------------------------------------------
def coco_keypoints(data: dict) -> tuple[dict, dict]:
    """Visible keypoints of a COCO keypoint json (``person_keypoints_*.json``, or any json whose
    annotations carry ``keypoints: [x1, y1, v1, ...]`` and whose categories name them in
    ``keypoints: [name, ...]``): ``({annotation id: [(name, x, y)]}, {(image id, category id):
    [(name, x, y)]})``. A keypoint with ``v = 0`` (not labelled) is left out; ``v = 1`` (labelled,
    occluded) and ``v = 2`` (visible) are kept. Coordinates are COCO's, original-image pixels."""
    names = {c["id"]: list(c.get("keypoints") or []) for c in data.get("categories", [])}
    by_ann: dict = {}
    by_pair: dict = {}
    for a in data.get("annotations", []):
        kp = a.get("keypoints")
        if not kp:
            continue
        cat = a.get("category_id")
        labels = names.get(cat, [])
        pts = []
        for k in range(len(kp) // 3):
            x, y, v = kp[3 * k], kp[3 * k + 1], kp[3 * k + 2]
            if v and v > 0:
                pts.append((labels[k] if k < len(labels) else f"keypoint_{k}", float(x), float(y)))
        if "id" in a:
            by_ann[a["id"]] = pts
        by_pair.setdefault((a.get("image_id"), cat), []).extend(pts)
    return by_ann, by_pair


ANIMAL_PARTS_LAYOUT = """  PATH/xml/eye/<image>.xml, PATH/xml/foot/<image>.xml   (or PATH/eye/, PATH/foot/)
  each a PASCAL-VOC-style file: <object><name>WNID</name><bndbox>...</bndbox>
  <point><x>X</x><y>Y</y><class>eye</class></point>...</object>"""


def animal_parts_keypoints(root: str | Path) -> dict[str, list[tuple[str, float, float]]]:
    """The Animal Parts keypoints (Novotny, Larlus & Vedaldi, "I have seen enough: transferring
    parts across categories", BMVC 2016) as Fong & Vedaldi read them (``load_objs`` in
    ``perturb_explanations/code/caffe/python/helpers.py``): one folder per part under
    ``PATH/xml`` (``eye``, ``foot``), one PASCAL-VOC-style xml per image named like the image
    (``n01531178_1234.xml``, ``ILSVRC2012_val_00000001.xml``), whose ``<object>`` elements hold
    ``<point>`` elements with ``<x>``, ``<y>`` and ``<class>``. Returns ``{image stem: [(part, x, y)]}``;
    the part is the point's ``<class>`` unless that is a bare number (the dataset's MATLAB
    release numbers its keypoint classes), then the folder's name. (The dataset's ``.mat``
    release is not read.)"""
    import xml.etree.ElementTree as ET

    root = Path(root)
    base = root / "xml" if (root / "xml").is_dir() else root
    require(base, "Animal Parts folder", ANIMAL_PARTS_LAYOUT)
    out: dict[str, list[tuple[str, float, float]]] = {}
    folders = sorted(p for p in base.iterdir() if p.is_dir())
    if not folders:
        raise LayoutError(f"no part folders in {base}\nexpected layout:\n{ANIMAL_PARTS_LAYOUT}")
    for folder in folders:
        for f in sorted(folder.glob("*.xml")):
            try:
                tree = ET.parse(f)
            except ET.ParseError as e:
                raise ValueError(f"{f} is not an xml file: {e}") from e
            pts = out.setdefault(f.stem, [])
            for point in tree.iter("point"):
                x, y = point.findtext("x"), point.findtext("y")
                if x is None or y is None:
                    continue
                cls = (point.findtext("class") or "").strip()
                part = cls if cls and not cls.replace(".", "").isdigit() else folder.name
                pts.append((part, float(x), float(y)))
    return out
