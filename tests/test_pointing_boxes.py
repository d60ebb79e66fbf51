"""The pointing game on box ground truth (docs/PROTOCOLS.md §2: box datasets score against the union
of the category's boxes, TorchRay's ``voc_as_mask``): ImageNet and VOC are planned and scored."""
from __future__ import annotations

import numpy as np

from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Sample
from saliency_bench.plan import benchmark_applies


class _Provides:
    def __init__(self, name, provides):
        self.name, self.provides = name, provides


def test_pointing_is_planned_on_box_datasets_and_mask_datasets_only():
    bench = Pointing()
    assert benchmark_applies(bench, _Provides("imagenet", ("boxes", "single_class"))) is None
    assert benchmark_applies(bench, _Provides("voc", ("boxes",))) is None
    assert benchmark_applies(bench, _Provides("coco", ("mask", "boxes"))) is None
    why = benchmark_applies(bench, _Provides("parts", ("keypoints",)))
    assert why is not None and "mask|boxes" in why and "parts" in why


def test_pointing_scores_a_box_sample_against_the_union_of_its_boxes():
    # Two boxes of a 100x200 image, inclusive pixels: x 10..19, y 10..19 and x 150..189, y 50..89.
    s = Sample(id="b", image=None, size=(100, 200), targets={}, category="c",
               boxes=np.array([[10, 10, 19, 19], [150, 50, 189, 89]], np.float32))
    bench = Pointing(tie="first")
    assert bench.applies_to(s)
    assert not bench.applies_to(Sample(id="n", image=None, size=(100, 200), targets={}, category="c"))
    region = bench.region(s)
    assert region.sum() == 10 * 10 + 40 * 40
    assert region[10, 10] and region[19, 19] and not region[20, 19] and region[89, 189] and not region[90, 189]
    # A point at (34, 15): 15 px right of column 19, not strictly within 15 -> miss; at (33.9, 15) hit;
    # (170, 36): 14 px above row 50 -> hit (the second box); (100, 50): far from both -> miss.
    def to_input(x, y):  # original pixel centre -> input pixel (the inverse of the whole-image resize)
        return np.array([(x + 0.5) * 224 / 200 - 0.5, (y + 0.5) * 224 / 100 - 0.5])

    for (x, y), hit in (((34.0, 15.0), 0), ((33.9, 15.0), 1), ((170.0, 36.0), 1), ((100.0, 50.0), 0)):
        assert bench.score(s, to_input(x, y), (224, 224))["hit"] == hit, (x, y)
