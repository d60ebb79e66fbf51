"""Our vectorised pointing game agrees with a straightforward re-implementation (plain loops,
written here from docs/PROTOCOLS.md §2) on real gradient maps of the embedded model over COCO128.
(Localization and MaxBoxAccV2 are checked cell by cell against the reference programs'
procedures in test_localization_reference.py.)"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Sample
from saliency_bench.imageio import load_rgb, to_input
from saliency_bench.registry import get_method

pytestmark = pytest.mark.shared_data


def _gradient_maps(model, images, targets):
    x = model.preprocess(torch.stack([to_input(im, model.input_size) for im in images]))
    t = torch.tensor(targets, dtype=torch.long)[:, None]
    maps, _ = get_method("gradient").explain(model, x, t)
    return maps.numpy().astype(np.float32)


def _meta(samples):
    return [{"id": s.id, "category": s.category, "split": s.split, "flags": s.flags} for s in samples]


# ---------------------------------------------------------------------------------- references
def _ref_point(heatmap, size):
    big = F.interpolate(torch.from_numpy(heatmap)[None, None], size=size, mode="bilinear",
                        align_corners=False)[0, 0].numpy()
    ys, xs = np.nonzero(big == big.max())
    return xs.mean(), ys.mean()


def _ref_hit(point, region):
    h, w = region.shape
    for y in range(max(0, int(point[1]) - 16), min(h, int(point[1]) + 17)):
        for x in range(max(0, int(point[0]) - 16), min(w, int(point[0]) + 17)):
            if region[y, x] and (x - point[0]) ** 2 + (y - point[1]) ** 2 < 15 ** 2:
                return True
    return False


# ---------------------------------------------------------------------------------- tests
def test_pointing_agrees_with_a_plain_loop_reimplementation_on_coco128(shared_data, lite0):
    from pycocotools.coco import COCO

    root = shared_data / "coco128"
    coco = COCO(str(root / "annotations" / "instances_train2017.json"))
    samples, images, owner = [], [], []  # owner: the image of each (image, category) sample
    for img_id in sorted(coco.getImgIds())[:6]:
        info = coco.loadImgs(img_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))]
        cats = sorted({a["category_id"] for a in anns})
        images.append(load_rgb(root / "train2017" / info["file_name"]))
        area = info["height"] * info["width"]
        for c in cats:
            mine = [a for a in anns if a["category_id"] == c]
            region = np.any([coco.annToMask(a).astype(bool) for a in mine], axis=0)
            box_area = sum(a["bbox"][2] * a["bbox"][3] for a in mine)
            difficult = box_area < area / 4 and len(cats) > 1
            samples.append(Sample(id=f"{img_id}-{c}", image=None, size=(info["height"], info["width"]),
                                  targets={}, category=coco.loadCats(c)[0]["name"], mask=region,
                                  flags={"difficult": difficult}))
            owner.append(len(images) - 1)
    assert len(samples) >= 10
    with torch.no_grad():
        x = lite0.preprocess(torch.stack([to_input(im, lite0.input_size) for im in images]))
        top = lite0.net(x).argmax(dim=1).tolist()
    maps = _gradient_maps(lite0, images, top)[owner]  # one map per image, shared by its categories

    bench = Pointing(bootstrap=0)
    recs = bench.score_batch(samples, maps, lite0.input_size)
    ref_hits = [_ref_hit(_ref_point(m, s.size), s.mask) for m, s in zip(maps, samples)]
    assert [r["hit"] for r in recs] == [int(h) for h in ref_hits]
    summary = bench.summarize(recs, _meta(samples))
    for column, keep in (("pointing_all", lambda s: True), ("pointing_difficult", lambda s: s.flags["difficult"])):
        per = defaultdict(list)
        for s, h in zip(samples, ref_hits):
            if keep(s):
                per[s.category].append(h)
        ref = 100 * np.mean([np.mean(v) for v in per.values()]) if per else None
        assert summary[column]["value"] == pytest.approx(ref)
