"""The COCO -> ImageNet-1k category map: complete, valid, and meaning what its notes say."""
from __future__ import annotations

import json
from collections import Counter

import torch

from saliency_bench.datasets import coco as coco_mod
from saliency_bench.datasets.coco_imagenet_map import COCO_TO_IMAGENET, imagenet_targets, not_evaluable
from saliency_bench.imageio import to_input
from saliency_bench.models import imagenet_classes
from saliency_bench.targets import as_target_tensor, target_probability


def _coco_names() -> list[str]:
    data = json.loads((coco_mod.SAMPLE_ROOT / "instances.json").read_text())
    return [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]


def test_map_covers_exactly_the_80_coco_categories():
    names = _coco_names()
    assert len(names) == 80
    assert set(COCO_TO_IMAGENET) == set(names)


def test_every_mapped_index_is_an_imagenet_class_listed_once():
    used = Counter(i for idx, _ in COCO_TO_IMAGENET.values() for i in idx)
    assert all(0 <= i < 1000 for i in used)
    assert [i for i, n in used.items() if n > 1] == []  # no class stands for two categories
    for name, (idx, note) in COCO_TO_IMAGENET.items():
        assert len(set(idx)) == len(idx), name
        assert note, f"{name} has no note saying why"


def test_dog_is_the_118_breeds_chihuahua_to_mexican_hairless():
    classes = imagenet_classes()
    dog = imagenet_targets("dog")
    assert len(dog) == 118
    assert classes[dog[0]].wnid == "n02085620" and classes[dog[0]].name == "Chihuahua"
    assert classes[dog[-1]].name == "Mexican hairless"
    assert classes[dog[-1] + 1].name == "timber wolf"  # the next class is not a dog


def test_cat_is_the_five_domestic_cats_and_bird_excludes_nothing_but_kite_the_toy():
    classes = imagenet_classes()
    assert [classes[i].wnid for i in imagenet_targets("cat")] == [
        "n02123045", "n02123159", "n02123394", "n02123597", "n02124075"]
    birds = imagenet_targets("bird")
    assert len(birds) == 59
    assert 21 in birds and classes[21].name == "kite"  # the kite of ImageNet is a bird
    assert imagenet_targets("kite") == ()
    assert classes[705].wnid == "n03895866" and 705 in imagenet_targets("train")  # a railway car


def test_person_and_categories_without_a_class_are_reported_not_evaluable():
    ne = not_evaluable()
    assert "person" in ne and "giraffe" in ne and "toothbrush" in ne
    assert "dog" not in ne
    assert all(imagenet_targets(c) == () for c in ne)
    assert len(ne) == 17


def test_sample_marks_person_not_evaluable_for_imagenet_but_scorable_by_a_coco_head():
    ds = coco_mod.sample()
    person = ds.load(ds.ids.index("257:person"))
    assert person.targets == {"coco": (0,), "imagenet": ()}
    report = ds.describe()["not_evaluable"]["imagenet"]
    assert report["person"]["samples"] == 20 and "no person class" in report["person"]["why"]


def test_lite0_gives_the_mapped_set_most_of_its_probability_on_sample_zebra_and_bus(lite0):
    ds = coco_mod.sample()
    samples = [ds.load(ds.ids.index(i)) for i in ("34:zebra", "471:bus")]
    x = lite0.preprocess(torch.stack([to_input(s.image, lite0.input_size) for s in samples]))
    t = as_target_tensor([s.target_in("imagenet") for s in samples])
    with torch.no_grad():
        p = target_probability(lite0.net(x), t)
    # chance for a set of k classes is k/1000; the model puts most of its mass on the set
    assert (p > 0.5).all(), p
