"""The pointing game equals TorchRay's, the reference program (docs/PROTOCOLS.md §2).

Real maps of several methods at the resolution each returns (gradient 224x224, Grad-CAM 7x7,
excitation backprop 28x28, the centre baseline), on COCO128 with the union of each category's
``annToMask`` instance masks as ground truth, scored by our benchmark at both resolutions and
both tie rules. Each sample's hit is compared with TorchRay's
``torchray.benchmark.pointing_game.PointingGame.evaluate(mask, point)``, fed with

* the map resized by TorchRay's own ``resize_saliency`` (bilinear, ``align_corners=False``, as
  its ``examples/attribution_benchmark.py`` calls it with ``resize=image_size``) to the
  original image (``original``) or to the network input (``input``);
* the point found TorchRay's way for ``tie="first"`` (argmax of the flattened resized map,
  ``(i % w, i // w)``), and for ``tie="mean"`` the mean location of the tied maxima found by
  plain NumPy;
* for ``input``, the region resampled to the input by torch's ``nearest-exact``.

The per-category mean is compared with ``PointingGame.accuracy`` over the same hits/misses.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Sample
from saliency_bench.imageio import load_rgb, to_input
from saliency_bench.registry import get_method

pytestmark = pytest.mark.shared_data

METHODS = ("gradient", "grad_cam", "excitation_backprop", "center")
NATIVE = {"gradient": (224, 224), "grad_cam": (7, 7), "excitation_backprop": (28, 28), "center": (224, 224)}
N_IMAGES = 48  # of COCO128's 128


@pytest.fixture(scope="module")
def coco_maps(shared_data, lite0):
    """Samples (one per image and category), the image of each sample, and each method's native
    maps, one per image (for the model's top-1 class; it serves all the image's categories)."""
    from pycocotools.coco import COCO

    root = shared_data / "coco128"
    coco = COCO(str(root / "annotations" / "instances_train2017.json"))
    samples, images, owner = [], [], []
    for img_id in sorted(coco.getImgIds())[:N_IMAGES]:
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        cats = sorted({a["category_id"] for a in anns})
        if not cats:
            continue
        images.append(load_rgb(root / "train2017" / info["file_name"]))
        for c in cats:
            mine = [a for a in anns if a["category_id"] == c]
            box_area = sum(a["bbox"][2] * a["bbox"][3] for a in mine)
            samples.append(Sample(
                id=f"{img_id}-{c}", image=None, size=(info["height"], info["width"]), targets={},
                category=coco.loadCats(c)[0]["name"],
                mask=np.any([coco.annToMask(a).astype(bool) for a in mine], axis=0),
                flags={"difficult": bool(box_area < info["height"] * info["width"] / 4 and len(cats) > 1)}))
            owner.append(len(images) - 1)
    x = lite0.preprocess(torch.stack([to_input(im, lite0.input_size) for im in images]))
    with torch.no_grad():
        t = lite0.net(x).argmax(dim=1)[:, None]
    maps = {}
    for name in METHODS:
        out, _ = get_method(name).explain(lite0, x, t)
        maps[name] = out.detach().float().numpy()
    return samples, np.array(owner), maps


def _torchray_hits(samples, owner, maps, resolution, tie, input_size, cache):
    """Hits (bool) of TorchRay's PointingGame.evaluate on the TorchRay-resized maps, and the points.
    ``cache`` keeps what does not depend on the map (regions, evaluations of a point)."""
    from torchray.attribution.common import resize_saliency
    from torchray.benchmark.pointing_game import PointingGame

    game = PointingGame(num_classes=1, tolerance=15)
    resized = {}  # an image's map serves all its samples
    hits, points = [], []
    for k, (s, o) in enumerate(zip(samples, owner)):
        h, w = s.size if resolution == "original" else input_size
        if o not in resized:
            resized[o] = resize_saliency(None, torch.from_numpy(maps[o])[None, None], (w, h), "bilinear")[0, 0]
        big = resized[o]
        if tie == "first":
            i = int(torch.argmax(big.reshape(-1)))
            point = (i % w, i // w)
        else:
            arr = big.numpy()
            ys, xs = np.nonzero(arr == arr.max())
            point = (float(xs.mean()), float(ys.mean()))
        if (k, resolution) not in cache:
            region = torch.from_numpy(s.mask)
            if resolution == "input":
                region = F.interpolate(region[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0] > 0
            cache[k, resolution] = region
        if (k, resolution, point) not in cache:
            cache[k, resolution, point] = game.evaluate(cache[k, resolution], point) == 1
        hits.append(cache[k, resolution, point])
        points.append(point)
    return np.array(hits), np.array(points, dtype=np.float64)


def _torchray_accuracy(hits, categories) -> float | None:
    """TorchRay's per-class mean: ``PointingGame.aggregate`` then ``.accuracy``, with one class
    per category present (TorchRay would count an absent class as 0)."""
    from torchray.benchmark.pointing_game import PointingGame

    names = sorted(set(categories))
    if not names:
        return None
    game = PointingGame(num_classes=len(names), tolerance=15)
    for h, c in zip(hits, categories):
        game.aggregate(+1 if h else -1, names.index(c))
    return 100.0 * float(game.accuracy)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside TorchRay's evaluate
@pytest.mark.parametrize("resolution", ["original", "input"])
def test_pointing_hits_equal_torchray_pointing_game(coco_maps, lite0, resolution):
    samples, owner, maps = coco_maps
    assert len(samples) >= 120 and len({s.size for s in samples}) >= 20
    meta = [{"id": s.id, "category": s.category, "split": s.split, "flags": s.flags} for s in samples]
    compared, cache = 0, {}
    for name in METHODS:
        assert maps[name].shape[1:] == NATIVE[name]  # scored at the method's own resolution
        for tie in ("first", "mean"):
            bench = Pointing(resolution=resolution, tie=tie, bootstrap=0)
            recs = bench.score_batch(samples, maps[name][owner], lite0.input_size)
            ours = np.array([r["hit"] == 1 for r in recs])
            ref, ref_points = _torchray_hits(samples, owner, maps[name], resolution, tie, lite0.input_size, cache)
            # Points too (records round them to 0.01 px): a map resized another way moves them.
            np.testing.assert_allclose([[r["x"], r["y"]] for r in recs], ref_points, atol=0.0051,
                                       err_msg=f"{name} tie={tie}")
            differ = [s.id for s, a, b in zip(samples, ours, ref) if a != b]
            assert differ == [], f"{name} tie={tie}: {len(differ)} hits differ from TorchRay: {differ[:10]}"
            compared += len(samples)
            summary = bench.summarize(recs, meta)
            for column, keep in (("pointing_all", np.ones(len(samples), bool)),
                                 ("pointing_difficult", np.array([s.flags["difficult"] for s in samples]))):
                cats = [s.category for s, k in zip(samples, keep) if k]
                expected = _torchray_accuracy(ref[keep], cats)
                assert summary[column]["value"] == pytest.approx(expected, abs=1e-9), (name, tie, column)
    assert compared == 8 * len(samples)


def test_pointing_resolutions_differ_on_real_maps(coco_maps, lite0):
    """The option matters on real data: Grad-CAM's 7x7 maps do not score the same at both."""
    samples, owner, maps = coco_maps
    hits = {r: np.array([rec["hit"] for rec in Pointing(resolution=r, bootstrap=0).score_batch(
        samples, maps["grad_cam"][owner], lite0.input_size)]) for r in ("original", "input")}
    assert (hits["original"] != hits["input"]).any()
