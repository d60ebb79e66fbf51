"""Scoring speed on CPU: maps scored per second by each benchmark; weak localization beside the
code it replaces and beside the reference procedure done plainly with PIL; MaxBoxAccV2 beside
wsolevaluation's per-threshold OpenCV loop, on the same maps.

    python perf/bench_scoring.py [--n 64] [--threads 1] [--data ../shared/data] [--baseline REV]

Maps, at their own resolution as the run keeps them: smooth synthetic maps (Gaussian-blurred
noise, 224x224), and, when the shared test data is there, real maps of the embedded
EfficientNet-Lite0 on ImageNet val images: gradient (224x224, noisy) and Grad-CAM (7x7).
Writes perf/results/scoring-cpu-<date>.json (a letter is appended when that file exists).

* localization: :class:`~saliency_bench.benchmarks.localization.Localization` ``score_batch``
  (the authors' thresholding + imresize boxes for 61 alphas, and MaxBoxAccV2), and its two parts.
* ``--baseline REV`` (default: the commit before the authors' imresize was emulated) times the
  localization code of that git revision on the same maps, as it ran then: every map upsampled
  to 224x224 by the harness first (bilinear), outer contours only.
* the authors' procedure done plainly: for each alpha, threshold, bytescale, ``PIL.Image.resize``,
  ``np.nonzero`` (what a straightforward implementation costs).
* wsolevaluation, as its ``inference.py`` + ``BoxEvaluator.accumulate`` (multi-contour) run: t2n
  (float64), ``cv2.resize(INTER_CUBIC)``, ``normalize_scoremap``, per threshold ``cv2.threshold``
  + ``cv2.findContours(RETR_TREE)`` + ``boundingRect``, then ``calculate_multiple_iou`` and the
  per-threshold maxima. Exact agreement with ours is checked on every (map, IoU, threshold).

Timings are CPU seconds of this process (``time.process_time``, robust to a shared machine),
best of several repeats after a warm-up call, on ``--threads`` threads (1 by default: the numba
kernels are single-threaded, and so is the throughput per core that matters when scoring is
sharded); OpenCV is set to the same number of threads. The numba compile time is reported on its
own: every kernel compiled afresh (an empty on-disk cache) in a fresh process.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from PIL import Image

from saliency_bench.benchmarks.localization import DEFAULT_ALPHAS, Localization, authors_boxes
from saliency_bench.benchmarks.maxboxacc import WSOL_THRESHOLDS, maxboxacc_correct
from saliency_bench.ops.geometry import iou_voc, scale_boxes_wsol
from saliency_bench.benchmarks.pointing import Pointing
from saliency_bench.contracts import Sample

HERE = Path(__file__).resolve().parent
BASELINE = "bb35ab1"  # the last commit whose localization thresholded 224x224 maps and boxed a footprint


def wsol_reference(maps: np.ndarray, samples: list[Sample], cv2, input_size=(224, 224)) -> np.ndarray:
    """wsolevaluation's inference.py + BoxEvaluator.accumulate (multi_contour_eval=True), per map."""
    H, W = input_size
    out = np.zeros((len(maps), 3, len(WSOL_THRESHOLDS)), bool)
    for i, (m, s) in enumerate(zip(maps, samples)):
        cam = cv2.resize(m.astype(np.float64), (W, H), interpolation=cv2.INTER_CUBIC)
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        scoremap_image = np.expand_dims((cam * 255).astype(np.uint8), 2)
        boxes, counts = [], []
        for t in WSOL_THRESHOLDS:
            _, thr = cv2.threshold(scoremap_image, int(t * np.max(scoremap_image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes.append(np.asarray([[0, 0, 0, 0]])); counts.append(1)
                continue
            est = []
            for c in contours:
                x, y, w, h = cv2.boundingRect(c)
                est.append([x, y, min(x + w, W - 1), min(y + h, H - 1)])
            boxes.append(np.asarray(est)); counts.append(len(contours))
        gt = np.array([[int(v) for v in (b[0] * W / s.size[1], b[1] * H / s.size[0], b[2] * W / s.size[1],
                                         b[3] * H / s.size[0])] for b in s.boxes])
        iou = iou_voc(np.concatenate(boxes)[:, None, :], gt[None]).max(axis=1)
        idx, best = 0, []
        for nr in counts:  # their per-threshold slices
            best.append(iou[idx:idx + nr].max())
            idx += nr
        for k, d in enumerate((0.3, 0.5, 0.7)):
            out[i, k] = np.asarray(best) >= d
    return out


def plain_authors(maps: np.ndarray, samples: list[Sample]) -> None:
    """The authors' getbb_from_heatmap + imresize done plainly for every alpha (PIL per alpha)."""
    for m, s in zip(maps, samples):
        m64 = m.astype(np.float64)
        order = np.argsort(m.ravel())[::-1]
        cum = np.cumsum(m64.ravel()[order])
        for kind, alphas in DEFAULT_ALPHAS.items():
            for a in alphas:
                k = m.copy()
                if kind == "mean":
                    k[m64 < a * m64.mean()] = 0
                elif kind == "value":
                    k[m64 - m64.min() < a * (m64.max() - m64.min())] = 0
                else:
                    f = k.ravel()
                    f[order[np.nonzero(cum >= a * m64.sum())[0][0]:]] = 0
                lo, hi = k.min(), k.max()
                b = (((k - lo) * (255.0 / ((hi - lo) or 1))).clip(0, 255) + 0.5).astype(np.uint8)
                r = np.asarray(Image.fromarray(b, "L").resize((s.size[1], s.size[0]), Image.BILINEAR))
                np.nonzero(r)


def load_baseline(rev: str):
    """The localization module of git revision ``rev`` (and its boxes module), importable alone."""
    tmp = Path(tempfile.mkdtemp(prefix="scoring-baseline-"))
    for name in ("boxes", "localization"):
        src = subprocess.run(["git", "show", f"{rev}:saliency_bench/benchmarks/{name}.py"], cwd=HERE.parent,
                             check=True, capture_output=True, text=True).stdout
        src = src.replace("from .boxes import", "from _baseline_boxes import") \
                 .replace("from .stats import", "from saliency_bench.benchmarks.stats import") \
                 .replace('@saliency_bench.benchmark("localization")', "")
        (tmp / f"_baseline_{name}.py").write_text(src)
    sys.path.insert(0, str(tmp))
    spec = importlib.util.spec_from_file_location("_baseline_localization", tmp / "_baseline_localization.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def real_sets(data: Path, n: int) -> dict:
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
    t = torch.tensor([[int(labels[nm])] for nm in names])
    samples = [Sample(id=nm, image=None, size=(im.height, im.width), targets={}, category=labels[nm],
                      boxes=np.array(boxes[nm], np.float32), mask=None) for nm, im in zip(names, images)]
    out = {}
    for method, key in (("gradient", "imagenet_gradient_224"), ("grad_cam", "imagenet_gradcam_7x7")):
        maps, _ = get_method(method).explain(model, x, t)
        out[key] = (maps.detach().float().numpy(), samples)
    return out


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
        t = time.process_time(); fn(); best = min(best, time.process_time() - t)
    return best


def compile_seconds() -> float:
    """Seconds to compile every scoring kernel afresh: the first localization call of a fresh
    process whose numba cache is an empty folder, less the same call in a process that has the
    cache (both include importing the package)."""
    code = ("import time, numpy as np; from saliency_bench.benchmarks.localization import Localization; "
            "from saliency_bench.contracts import Sample; "
            "s = Sample(id='a', image=None, size=(9, 9), targets={}, category='c', boxes=np.array([[1, 1, 5, 5]])); "
            "t = time.perf_counter(); Localization().score_batch([s], np.random.rand(1, 7, 7).astype(np.float32), (8, 8)); "
            "print(time.perf_counter() - t)")
    times = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(2):  # the first call fills the empty cache, the second reads it
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
            times.append(float(out.stdout.strip().splitlines()[-1]))
    return times[0] - times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="maps per set")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and OpenCV (numba kernels: 1)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--baseline", default=BASELINE, help="git revision to time as 'before' ('' to skip)")
    ap.add_argument("--out", default="", help="result file (default: perf/results/scoring-cpu-<date>.json)")
    args = ap.parse_args()
    import cv2  # a runtime dependency of the localization benchmark

    sets = {"synthetic_smooth_224": synthetic(args.n)}
    if (Path(args.data) / "imagenet-val-300").is_dir():
        sets.update(real_sets(Path(args.data), args.n))  # the model may use every thread
    else:
        print(f"no shared data at {args.data}: real gradient and Grad-CAM maps skipped")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    baseline = load_baseline(args.baseline) if args.baseline else None

    maps0, samples0 = next(iter(sets.values()))
    t = time.perf_counter(); Localization().score_batch(samples0[:1], maps0[:1], (224, 224))
    first_call = time.perf_counter() - t
    compile_s = compile_seconds()
    result = {"date": dt.date.today().isoformat(), "device": "cpu", "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "n_maps": args.n, "timing": f"CPU time of this process, best of {args.repeats} after a warm-up call",
              "numba_first_call_s": first_call, "numba_compile_total_s": compile_s, "opencv": cv2.__version__,
              "baseline": args.baseline or None, "sets": {}}
    for name, (maps, samples) in sets.items():
        n = len(maps)
        loc = Localization(bootstrap=0)
        r: dict = {"map_shape": list(maps.shape[1:])}
        r["pointing_maps_per_s"] = n / timed(lambda: Pointing(bootstrap=0).score_batch(samples, maps, (224, 224)),
                                             args.repeats)
        r["localization_maps_per_s"] = n / timed(lambda: loc.score_batch(samples, maps, (224, 224)), args.repeats)
        r["authors_boxes_maps_per_s"] = n / timed(
            lambda: [authors_boxes(m, s.size, DEFAULT_ALPHAS) for m, s in zip(maps, samples)], args.repeats)
        k = min(n, 16)
        r["authors_procedure_plain_pil_maps_per_s"] = k / timed(lambda: plain_authors(maps[:k], samples[:k]), 1)
        gts = [scale_boxes_wsol(s.boxes, s.size, (224, 224)) for s in samples]
        t_ours = timed(lambda: maxboxacc_correct(maps, gts, (224, 224)), args.repeats)
        r["maxboxacc_v2_ours_maps_per_s"] = n / t_ours
        t_ref = timed(lambda: wsol_reference(maps, samples, cv2), 1)
        r["maxboxacc_v2_wsolevaluation_maps_per_s"] = n / t_ref
        r["maxboxacc_v2_speedup"] = t_ref / t_ours
        ours, ref = maxboxacc_correct(maps, gts, (224, 224)), wsol_reference(maps, samples, cv2)
        r["maxboxacc_v2_cells_compared"] = int(ours.size)
        r["maxboxacc_v2_cells_equal"] = int((ours == ref).sum())
        r["maxboxacc_v2_ours_pct"] = [100 * float(v) for v in ours.mean(0).max(1)]
        r["maxboxacc_v2_wsolevaluation_pct"] = [100 * float(v) for v in ref.mean(0).max(1)]
        if baseline is not None:
            big = maps if maps.shape[1:] == (224, 224) else torch.nn.functional.interpolate(
                torch.from_numpy(maps)[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0].numpy()
            old = baseline.Localization(bootstrap=0)
            r["before_localization_maps_per_s"] = n / timed(lambda: old.score_batch(samples, big, (224, 224)),
                                                            args.repeats)
            r["before_note"] = (f"localization of {args.baseline} on the same maps, each upsampled to 224x224 "
                                "first as the harness then did (upsampling not timed); outer contours only")
        result["sets"][name] = r
        print(name, json.dumps(r, indent=1))
    out = HERE / "results" / f"scoring-cpu-{result['date']}.json"
    for letter in "bcdefgh":
        if args.out or not out.exists():
            break
        out = HERE / "results" / f"scoring-cpu-{result['date']}{letter}.json"
    out = Path(args.out) if args.out else out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
