"""The label spaces: ImageNet-1k's classes (the shipped table) and COCO's 80 categories."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .contracts import ClassInfo

DATA = Path(__file__).parent / "data"


#: COCO's 80 categories in category-id order: the label space of a COCO head (index = the
#: ``"coco"`` target of a COCO sample).
COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[ClassInfo, ...]:
    """ImageNet-1k classes in index order (sorted WordNet ids), from the shipped table."""
    rows = (DATA / "imagenet_classes.txt").read_text().splitlines()
    out = []
    for i, line in enumerate(r for r in rows if r.strip()):
        wnid, _, names = line.partition(" ")
        out.append(ClassInfo(i, wnid, names.split(",")[0].strip()))
    return tuple(out)
