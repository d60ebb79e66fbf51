"""Our vectorised benchmarks agree with straightforward re-implementations (plain loops,
written here from PROTOCOLS.md §2-3) on real gradient maps of the embedded model over
COCO128 and ImageNet val images."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from saliency_bench.benchmarks.localization import WSOL_THRESHOLDS, Localization
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


def _ref_box_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def _ref_getbb(h, alphas, kind, size):
    """The boxes of ``getbb_from_heatmap`` for every alpha: zero the rejected pixels, resize the
    kept map to the original size (one bilinear resize for all alphas), box its non-zero pixels."""
    h = h.astype(np.float64)
    order = np.argsort(-h.reshape(-1), kind="stable")
    kept = []
    for alpha in alphas:
        k = h.copy()
        if kind == "mean":
            k[k < alpha * k.mean()] = 0
        elif kind == "value":
            k[k - k.min() < alpha * (k.max() - k.min())] = 0
        else:
            f = k.reshape(-1)
            cum = np.cumsum(f[order])
            where = np.nonzero(cum >= alpha * f.sum())[0]
            f[order[where[0] if len(where) else len(f):]] = 0
        kept.append(k != 0)
    big = F.interpolate(torch.from_numpy(np.stack(kept).astype(np.float32))[:, None], size=size,
                        mode="bilinear", align_corners=False)[:, 0].numpy()
    out = []
    for b in big:
        ys, xs = np.nonzero(b)
        out.append((0, 0, size[1] - 1, size[0] - 1) if len(xs) == 0 else (xs.min(), ys.min(), xs.max(), ys.max()))
    return out


def _ref_maxboxacc(heatmap, gt224):
    s = heatmap - heatmap.min()
    s = s / s.max()
    s8 = (s * 255).astype(np.uint8)
    out = np.zeros((3, len(WSOL_THRESHOLDS)), bool)
    for j, t in enumerate(WSOL_THRESHOLDS):
        lab, n = ndi.label(s8 > int(t * s8.max()), structure=np.ones((3, 3)))
        boxes = np.array([(sl[1].start, sl[0].start, min(sl[1].stop, 223), min(sl[0].stop, 223))
                          for sl in ndi.find_objects(lab)] or [(0, 0, 0, 0)], np.float64)
        best = 0.0
        for g in gt224:  # the +1 IoU of every region's box at once
            iw = np.clip(np.minimum(boxes[:, 2], g[2]) - np.maximum(boxes[:, 0], g[0]) + 1, 0, None)
            ih = np.clip(np.minimum(boxes[:, 3], g[3]) - np.maximum(boxes[:, 1], g[1]) + 1, 0, None)
            area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
            inter = iw * ih
            best = max(best, float((inter / (area + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - inter)).max()))
        for k, d in enumerate((0.3, 0.5, 0.7)):
            out[k, j] = best >= d
    return out


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


def test_localization_agrees_with_a_plain_loop_reimplementation_on_imagenet(shared_data, lite0):
    root = shared_data / "imagenet-val-300"
    boxes = defaultdict(list)
    for line in (root / "wsol" / "localization.txt").read_text().split():
        name, *xyxy = line.split(",")
        boxes[name].append([float(v) for v in xyxy])
    labels = dict(line.split(",") for line in (root / "wsol" / "class_labels.txt").read_text().split())
    names = sorted(boxes)[:24]
    images = [load_rgb(root / n) for n in names]
    samples = [Sample(id=n, image=None, size=(im.height, im.width), targets={}, category=labels[n],
                      boxes=np.array(boxes[n], np.float32), split="heldout" if i < 12 else "eval")
               for i, (n, im) in enumerate(zip(names, images))]
    maps = _gradient_maps(lite0, images, [int(labels[n]) for n in names])

    bench = Localization(bootstrap=0)
    recs = bench.score_batch(samples, maps, lite0.input_size)
    summary = bench.summarize(recs, _meta(samples))
    for kind in ("value", "energy", "mean"):
        alphas = bench.alphas(kind)
        correct = np.array([[max(_ref_box_iou(box, g) for g in s.boxes) >= 0.5
                             for box in _ref_getbb(m, alphas, kind, s.size)] for m, s in zip(maps, samples)])
        assert ["".join("1" if v else "0" for v in row) for row in correct] == [r[kind] for r in recs]
        k = int(np.argmax(correct[:12].mean(axis=0)))
        assert summary[f"loc_error_{kind}"]["note"].startswith(f"alpha*={alphas[k]:g}")
        assert summary[f"loc_error_{kind}"]["value"] == pytest.approx(100 * (1 - correct[12:, k].mean()))

    ref = np.stack([_ref_maxboxacc(m, [tuple(int(v * 224 / 227) for v in g) for g in s.boxes])
                    for m, s in zip(maps[12:], samples[12:])])
    ours = np.array([[[c == "1" for c in r[f"mba{d}"]] for d in (30, 50, 70)] for r in recs[12:]])
    np.testing.assert_array_equal(ours, ref)
    assert summary["maxboxacc_v2"]["value"] == pytest.approx(100 * ref.mean(axis=0).max(axis=1).mean())
