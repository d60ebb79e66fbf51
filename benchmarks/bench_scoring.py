"""Scoring speed on CPU: heatmaps scored per second by each benchmark, and our MaxBoxAccV2
sweep side by side with wsolevaluation's (a Python loop of OpenCV contour finding per threshold
per image) on the same maps.

    python benchmarks/bench_scoring.py [--n 64] [--threads 1] [--data ../shared/data]

Maps: real gradient maps of the embedded EfficientNet-Lite0 on ImageNet val images when the
shared test data is there, plus smooth synthetic maps (Gaussian-blurred noise, Grad-CAM-like).
Writes benchmarks/results/scoring-cpu-<date>.json. The wsolevaluation side needs
opencv-python-headless (a test extra); without it the comparison is skipped, and said so.

Timings are the best of several repeats after a warm-up call (the machine may be shared), on
``--threads`` CPU threads (1 by default: the numba kernels are single-threaded, and so is
the throughput per core that matters when scoring is sharded). The numba compile time is
reported on its own: the kernels compiled afresh (no on-disk cache), and the first call of this
process (which reads the on-disk cache when there is one).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from saliency_bench.benchmarks.boxes import iou_voc, scale_boxes_wsol
from saliency_bench.benchmarks.localization import WSOL_THRESHOLDS, Localization, maxboxacc_correct, \
    threshold_boxes
from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Sample

HERE = Path(__file__).resolve().parent


def wsol_reference(maps: np.ndarray, gts: list[np.ndarray], cv2, tree: bool = True) -> np.ndarray:
    """wsolevaluation's BoxEvaluator.accumulate with multi_contour_eval=True, per image.

    ``tree=True`` is wsolevaluation's ``RETR_TREE`` (hole borders are contours too);
    ``tree=False`` keeps the outer borders only (``RETR_EXTERNAL``): the connected regions that
    PROTOCOLS.md §3 names, which our sweep must match exactly."""
    mode = cv2.RETR_TREE if tree else cv2.RETR_EXTERNAL
    out = np.zeros((len(maps), 3, len(WSOL_THRESHOLDS)), bool)
    for i, m in enumerate(maps):
        s = m - m.min()
        s = s / s.max() if s.max() > 0 else np.zeros_like(s)
        img = np.expand_dims((s * 255).astype(np.uint8), 2)
        h, w = s.shape
        boxes, counts = [], []
        for t in WSOL_THRESHOLDS:
            _, thr = cv2.threshold(img, int(t * np.max(img)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(thr, mode, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes.append(np.asarray([[0, 0, 0, 0]])); counts.append(1)
                continue
            est = []
            for c in contours:
                x, y, bw, bh = cv2.boundingRect(c)
                est.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
            boxes.append(np.asarray(est)); counts.append(len(contours))
        allb = np.concatenate(boxes)
        iou = iou_voc(allb[:, None, :], np.asarray(gts[i])[None]).max(axis=1)
        best = np.maximum.reduceat(iou, np.concatenate([[0], np.cumsum(counts)[:-1]]))
        for k, d in enumerate((0.3, 0.5, 0.7)):
            out[i, k] = best >= d
    return out


def real_maps(data: Path, n: int):
    from saliency_bench.imageio import load_rgb, to_input
    from saliency_bench.registry import get_method, get_model

    root = data / "imagenet-val-300"
    boxes: dict[str, list] = {}
    for line in (root / "wsol" / "localization.txt").read_text().split():
        name, *xyxy = line.split(",")
        boxes.setdefault(name, []).append([float(v) for v in xyxy])
    labels = dict(line.split(",") for line in (root / "wsol" / "class_labels.txt").read_text().split())
    names = sorted(boxes)[:n]
    model = get_model("efficientnet_lite0")
    images = [load_rgb(root / nm) for nm in names]
    x = model.preprocess(torch.stack([to_input(im, model.input_size) for im in images]))
    maps, _ = get_method("gradient").explain(model, x, torch.tensor([[int(labels[nm])] for nm in names]))
    samples = [Sample(id=nm, image=None, size=(im.height, im.width), targets={}, category=labels[nm],
                      boxes=np.array(boxes[nm], np.float32), mask=None) for nm, im in zip(names, images)]
    return maps.numpy().astype(np.float32), samples


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    maps = np.stack([ndi.gaussian_filter(rng.standard_normal((224, 224)), 12) for _ in range(n)]).astype(np.float32)
    samples = []
    for i in range(n):
        x1, y1 = rng.integers(0, 150, 2)
        samples.append(Sample(id=str(i), image=None, size=(375, 500), targets={}, category=str(i % 10),
                              boxes=np.array([[x1, y1, x1 + 200, y1 + 150]], np.float32)))
    return maps, samples


def timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up: compiled kernels loaded, caches filled
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best


def compile_times() -> dict:
    """Seconds to compile each numba kernel afresh (no on-disk cache), on tiny inputs."""
    import numba

    from saliency_bench.benchmarks import boxes, localization  # noqa: F401 (registers the kernels)

    rng = np.random.default_rng(0)
    tiny = rng.random((1, 8, 8)).astype(np.float32)
    s8, lut = localization.wsol_quantise(tiny)
    groups = boxes._neighbour_groups()
    rec = boxes.component_record_rows(s8, lut, 100)
    desc = np.ascontiguousarray(np.sort(tiny.reshape(1, -1), axis=1)[:, ::-1])
    rows, cols = localization._masked_extremes(tiny)
    args = {
        "_component_records": (s8, lut, 100, *groups),
        "_record_hits": (rec, np.zeros((1, 1, 4)), np.ones(1, np.int64), np.array([0.5]), 1, 100, 8, 8),
        "_energy_boxes": (tiny, desc, tiny.astype(np.float64).sum(axis=(1, 2)), np.array([0.5]), rows, cols),
    }
    out = {}
    for name, a in args.items():
        fresh = numba.njit(cache=False, nogil=True)(boxes._KERNELS[name])
        t = time.perf_counter(); fresh(*a); t1 = time.perf_counter() - t
        t = time.perf_counter(); fresh(*a); t2 = time.perf_counter() - t
        out[name] = t1 - t2
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="maps per set")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch (numba kernels: 1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    args = ap.parse_args()
    try:
        import cv2
    except ImportError:
        cv2 = None
        print("opencv-python-headless is not installed: the wsolevaluation comparison is SKIPPED "
              "(pip install opencv-python-headless)")
    sets = {"synthetic_smooth": synthetic(args.n)}
    if (Path(args.data) / "imagenet-val-300").is_dir():
        sets["imagenet_gradient"] = real_maps(Path(args.data), args.n)  # the model may use every thread
    else:
        print(f"no shared data at {args.data}: real gradient maps skipped")
    torch.set_num_threads(args.threads)
    cv2_default_threads = None if cv2 is None else cv2.getNumThreads()

    # First call in this process (reads numba's on-disk cache if present, else compiles), then
    # the compile time proper, measured with fresh, uncached copies of the kernels.
    maps0, samples0 = next(iter(sets.values()))
    t = time.perf_counter(); Localization().score_batch(samples0[:1], maps0[:1], (224, 224))
    first_call = time.perf_counter() - t
    compile_s = compile_times()
    result = {"date": dt.date.today().isoformat(), "device": "cpu", "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "n_maps": args.n, "timing": f"best of {args.repeats} after a warm-up call",
              "numba_first_call_s": first_call, "numba_compile_s": compile_s,
              "numba_compile_total_s": sum(compile_s.values()), "opencv": None if cv2 is None else cv2.__version__,
              "opencv_default_threads": cv2_default_threads,
              "sets": {}}
    for name, (maps, samples) in sets.items():
        pointing, loc = Pointing(bootstrap=0), Localization(bootstrap=0)
        r: dict = {}
        t = timed(lambda: pointing.score_batch(samples, maps, (224, 224)), args.repeats)
        r["pointing_maps_per_s"] = len(maps) / t
        t = timed(lambda: loc.score_batch(samples, maps, (224, 224)), args.repeats)
        r["localization_maps_per_s"] = len(maps) / t
        for kind in ("value", "energy", "mean"):
            t = timed(lambda: threshold_boxes(maps, kind, loc.alphas(kind)), args.repeats)
            r[f"threshold_{kind}_maps_per_s"] = len(maps) / t
        gts = [scale_boxes_wsol(s.boxes, s.size, (224, 224)) for s in samples]
        t_ours = timed(lambda: maxboxacc_correct(maps, gts), args.repeats)
        r["maxboxacc_v2_ours_maps_per_s"] = len(maps) / t_ours
        if cv2 is not None:
            # wsolevaluation as it runs (OpenCV's default thread pool), and OpenCV on one thread
            # (on a small shared machine its pool costs more than it brings)
            cv2.setNumThreads(cv2_default_threads)
            t_ref = timed(lambda: wsol_reference(maps, gts, cv2), max(1, args.repeats // 2))
            cv2.setNumThreads(1)
            t_ref1 = timed(lambda: wsol_reference(maps, gts, cv2), max(1, args.repeats // 2))
            r["maxboxacc_v2_wsolevaluation_maps_per_s"] = len(maps) / t_ref
            r["maxboxacc_v2_speedup"] = t_ref / t_ours
            r["maxboxacc_v2_wsolevaluation_cv2_1thread_maps_per_s"] = len(maps) / t_ref1
            r["maxboxacc_v2_speedup_vs_cv2_1thread"] = t_ref1 / t_ours
            ours, ref = maxboxacc_correct(maps, gts), wsol_reference(maps, gts, cv2)
            r["maxboxacc_v2_ours_pct"] = [100 * float(v) for v in ours.mean(0).max(1)]
            r["maxboxacc_v2_wsolevaluation_pct"] = [100 * float(v) for v in ref.mean(0).max(1)]
            r["per_threshold_agreement"] = float((ours == ref).mean())
            outer = wsol_reference(maps, gts, cv2, tree=False)
            r["per_threshold_agreement_outer_contours"] = float((ours == outer).mean())
        else:
            r["maxboxacc_v2_wsolevaluation"] = "skipped: opencv-python-headless is not installed"
        result["sets"][name] = r
        print(name, json.dumps(r, indent=1))
    out = HERE / "results" / f"scoring-cpu-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
