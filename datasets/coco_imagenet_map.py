"""Which ImageNet-1k classes stand for each COCO category, so an ImageNet model can be scored on COCO.

The pointing game (Zhang et al., ECCV 2016) asks for a category's heatmap. A model trained on
ImageNet has no ``dog`` output but 118 dog breeds; the category's target is then the **set** of
classes it covers, scored once for every method as log-sum-exp of the set's logits
(:mod:`saliency_bench.targets`). This table is that set for each of the 80 COCO categories.

Rules used to build it (indices are positions in sorted-WordNet-id order, the class table
shipped in ``saliency_bench/data/imagenet_classes.txt``; the WordNet id of each index is checked
by the tests):

* A class belongs to a category when a COCO annotator following COCO's definition of the
  category would label that class's typical ImageNet photo with it (``dog`` -> every breed,
  ``car`` -> cab, convertible, limousine ..., ``boat`` -> every watercraft). Classes that only
  share a word are left out: ImageNet's ``kite`` (21) is the bird, ``passenger car`` (705) is
  a railway carriage (so it goes to ``train``), ``tiger cat`` (282) is a domestic cat but
  ``tiger`` (292) is not.
* Big or wild relatives that COCO would still call by the category's name are in (polar and
  sloth bears and the giant panda for ``bear``; the bighorn for ``sheep``); wild relatives it
  would not (foxes, wolves for ``dog``; lion, tiger for ``cat``) are out.
* A category with no class that fits is **not evaluable** for an ImageNet model: its samples
  stay in the dataset with an empty ImageNet target and are reported, never dropped. ``person``
  is one of them: ImageNet-1k has no person class, only ``ballplayer``, ``groom`` and ``scuba
  diver``, whose logits respond to baseball kit, suits and diving gear rather than to people,
  so no set of them scores "a person" faithfully.

Each entry is ``(indices, note)``; the note says why, and for an empty set why not.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

_BIRDS = tuple(range(7, 25)) + tuple(range(80, 101)) + tuple(range(127, 147))

COCO_TO_IMAGENET: dict[str, tuple[tuple[int, ...], str]] = {
    "person": ((), "ImageNet-1k has no person class (ballplayer/groom/scuba diver score outfits)"),
    "bicycle": ((444, 671), "bicycle-built-for-two, mountain bike"),
    "car": ((407, 436, 468, 511, 609, 627, 656, 661, 734, 751, 817),
            "ambulance, beach wagon, cab, convertible, jeep, limousine, minivan, Model T, "
            "police van, racer, sports car"),
    "motorcycle": ((665, 670), "moped, motor scooter (COCO labels scooters motorcycle)"),
    "airplane": ((404, 895), "airliner, warplane (not airship: no wings)"),
    "bus": ((654, 779, 874), "minibus, school bus, trolleybus"),
    "train": ((466, 547, 565, 705, 820, 829),
              "bullet train, electric locomotive, freight car, passenger car (railway), "
              "steam locomotive, streetcar"),
    "truck": ((555, 569, 675, 717, 864, 867),
              "fire engine, garbage truck, moving van, pickup, tow truck, trailer truck"),
    "boat": ((403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
             "aircraft carrier, canoe, catamaran, container ship, fireboat, gondola, lifeboat, "
             "liner, pirate ship, schooner, speedboat, submarine, trimaran, yawl"),
    "traffic light": ((920,), "traffic light"),
    "fire hydrant": ((), "no ImageNet-1k class shows a fire hydrant"),
    "stop sign": ((919,), "street sign (ImageNet's only road-sign class)"),
    "parking meter": ((704,), "parking meter"),
    "bench": ((703,), "park bench"),
    "bird": (_BIRDS, "the 59 bird classes: 7-24 (cock .. great grey owl, incl. the kite bird), "
                     "80-100 (black grouse .. black swan), 127-146 (white stork .. albatross)"),
    "cat": ((281, 282, 283, 284, 285), "tabby, tiger cat, Persian, Siamese, Egyptian cat "
                                        "(domestic cats; the big cats 286-293 are not COCO cats)"),
    "dog": (tuple(range(151, 269)), "the 118 dog breeds 151 (Chihuahua) .. 268 (Mexican hairless); "
                                    "wolves, foxes, wild dogs are out"),
    "horse": ((339,), "sorrel"),
    "sheep": ((348, 349), "ram, bighorn"),
    "cow": ((345, 346), "ox, water buffalo (bison, a wild bovine, is out)"),
    "elephant": ((101, 385, 386), "tusker, Indian elephant, African elephant"),
    "bear": ((294, 295, 296, 297, 388), "brown, black, ice and sloth bear, giant panda"),
    "zebra": ((340,), "zebra"),
    "giraffe": ((), "no ImageNet-1k class shows a giraffe"),
    "backpack": ((414,), "backpack"),
    "umbrella": ((879,), "umbrella"),
    "handbag": ((748,), "purse"),
    "tie": ((457, 906), "bow tie, Windsor tie"),
    "suitcase": ((), "no ImageNet-1k class shows a suitcase"),
    "frisbee": ((), "no ImageNet-1k class shows a frisbee"),
    "skis": ((795,), "ski"),
    "snowboard": ((), "no ImageNet-1k class shows a snowboard"),
    "sports ball": ((429, 430, 522, 574, 722, 768, 805, 852, 890),
                    "baseball, basketball, croquet, golf, ping-pong, rugby, soccer, tennis ball, "
                    "volleyball"),
    "kite": ((), "ImageNet's 'kite' (21) is the bird of prey; no class shows the toy"),
    "baseball bat": ((), "no ImageNet-1k class shows a baseball bat"),
    "baseball glove": ((), "no ImageNet-1k class shows a baseball glove"),
    "skateboard": ((), "no ImageNet-1k class shows a skateboard"),
    "surfboard": ((), "no ImageNet-1k class shows a surfboard"),
    "tennis racket": ((752,), "racket"),
    "bottle": ((440, 720, 737, 898, 907), "beer, pill, pop, water and wine bottle"),
    "wine glass": ((572,), "goblet (red wine, 966, is the drink and is left out)"),
    "cup": ((504, 968), "coffee mug, cup"),
    "fork": ((), "no ImageNet-1k class shows a fork"),
    "knife": ((499, 623), "cleaver, letter opener (paper knife)"),
    "spoon": ((910,), "wooden spoon"),
    "bowl": ((659, 809), "mixing bowl, soup bowl"),
    "banana": ((954,), "banana"),
    "apple": ((948,), "Granny Smith"),
    "sandwich": ((933,), "cheeseburger"),
    "orange": ((950,), "orange"),
    "broccoli": ((937,), "broccoli"),
    "carrot": ((), "no ImageNet-1k class shows a carrot"),
    "hot dog": ((934,), "hotdog"),
    "pizza": ((963,), "pizza"),
    "donut": ((), "no ImageNet-1k class shows a doughnut (bagel is a different food)"),
    "cake": ((), "no ImageNet-1k class shows a cake"),
    "chair": ((423, 559, 765, 857), "barber chair, folding chair, rocking chair, throne"),
    "couch": ((831,), "studio couch"),
    "potted plant": ((738,), "pot (flowerpot)"),
    "bed": ((516, 520, 564), "cradle, crib, four-poster"),
    "dining table": ((532,), "dining table"),
    "toilet": ((861,), "toilet seat"),
    "tv": ((851,), "television"),
    "laptop": ((620, 681), "laptop, notebook computer"),
    "mouse": ((673,), "computer mouse"),
    "remote": ((761,), "remote control"),
    "keyboard": ((508,), "computer keyboard"),
    "cell phone": ((487,), "cellular telephone"),
    "microwave": ((651,), "microwave"),
    "oven": ((827,), "stove (COCO's ovens are mostly kitchen ranges)"),
    "toaster": ((859,), "toaster"),
    "sink": ((896,), "washbasin"),
    "refrigerator": ((760,), "refrigerator"),
    "book": ((921,), "book jacket"),
    "clock": ((409, 530, 892), "analog, digital and wall clock"),
    "vase": ((883,), "vase"),
    "scissors": ((), "no ImageNet-1k class shows scissors"),
    "teddy bear": ((850,), "teddy"),
    "hair drier": ((589,), "hand blower (hair dryer)"),
    "toothbrush": ((), "no ImageNet-1k class shows a toothbrush"),
}


def imagenet_targets(category: str) -> tuple[int, ...]:
    """The ImageNet-1k classes that make COCO ``category``'s target; ``()`` when not evaluable.

    Raises ``KeyError`` for a name that is not a COCO category.
    """
    return COCO_TO_IMAGENET[category][0]


@lru_cache(maxsize=1)
def not_evaluable() -> Mapping[str, str]:
    """COCO categories an ImageNet model cannot score, each with the reason."""
    return {k: note for k, (idx, note) in COCO_TO_IMAGENET.items() if not idx}
