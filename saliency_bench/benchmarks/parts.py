"""Part saliency: are eyes more salient than feet? (Fong & Vedaldi, ICCV 2017, §7 and Table 2;
docs/PROTOCOLS.md §7).

The map brought to the original size as the authors' ``animal_parts.ipynb`` did (``imresize``:
bytescale and PIL bilinear), the mean intensity in a 5x5 window around each keypoint, grouped by
part (shell patterns over part names), and the ratio of two part groups (default feet : eyes) per
category group and overall, with a delta-method standard error and a bootstrap interval. The
seed's quantity is the mask's value, so ``quantity="mask"`` reads ``1 -`` the normalised map (a
ratio above 1: the eyes are the more salient).
"""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Sample
from saliency_bench.ops.resize import resize_map

from .stats import bootstrap_ci

DEFAULT_PARTS = {"feet": ("foot", "foot_*", "*_foot", "*feet*", "*paw*", "*hoof*", "*ankle*"),
                 "eyes": ("eye", "eye_*", "*_eye", "*eyes*")}
WINDOWS = ("square", "disc")
QUANTITIES = ("mask", "saliency")
RESIZES = ("authors", "bilinear")


def bytescale_resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``scipy.misc.imresize(h, (H, W)) / 255``: bytescale (``uint8(clip((h - min) * 255 / range,
    0, 255) + 0.5)`` in float32, a zero range counted as 1) and PIL bilinear, as floats in [0, 1]."""
    return np.asarray(resize_map(heatmap, size, reference="authors"), dtype=np.float64) / 255.0


def bilinear_resize(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float bilinear (``align_corners=False``) to ``size``, then min-max to [0, 1]."""
    a = resize_map(heatmap, size, reference="torchray").double().numpy()
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def window_mean(m: np.ndarray, x: float, y: float, size: int, window: str = "square") -> float | None:
    """Mean of ``m`` around ``(x, y)``: the ``size x size`` square whose centre pixel is
    ``(int(x), int(y))`` (the seed's), or the disc of diameter ``size`` centred at ``(x, y)``;
    clipped to the image. None when no pixel of the window is inside."""
    H, W = m.shape
    if window == "square":
        cx, cy = int(x), int(y)
        h0 = cy - (size - 1) // 2
        w0 = cx - (size - 1) // 2
        r0, r1 = max(h0, 0), min(h0 + size, H)
        c0, c1 = max(w0, 0), min(w0 + size, W)
        if r0 >= r1 or c0 >= c1:
            return None
        return float(m[r0:r1, c0:c1].mean())
    r = size / 2.0
    r0, r1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, H)
    c0, c1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, W)
    if r0 >= r1 or c0 >= c1:
        return None
    v = np.arange(r0, r1)[:, None] - y
    u = np.arange(c0, c1)[None, :] - x
    inside = u ** 2 + v ** 2 <= r ** 2
    if not inside.any():
        return None
    return float(m[r0:r1, c0:c1][inside].mean())


def ratio_with_se(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None, dict]:
    """``mean(a) / mean(b)`` and its delta-method standard error from ``std / sqrt(n)`` of each
    (NumPy's ``std``, ddof 0, as the seed's notebook)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    info = {"n_a": int(len(a)), "n_b": int(len(b))}
    if len(a) == 0 or len(b) == 0:
        return None, None, info
    ma, mb = a.mean(), b.mean()
    sa, sb = a.std() / np.sqrt(len(a)), b.std() / np.sqrt(len(b))
    info.update(mean_a=float(ma), se_a=float(sa), mean_b=float(mb), se_b=float(sb))
    if mb == 0:
        return None, None, info
    r = ma / mb
    se = abs(r) * np.sqrt((sa / ma) ** 2 + (sb / mb) ** 2) if ma != 0 else sa / abs(mb)
    return float(r), float(se), info


@saliency_bench.benchmark("parts")
class Parts(Benchmark):
    """Part saliency (the seed's Table 2): ratio of mean map intensity at ``ratio[0]`` keypoints to
    ``ratio[1]`` keypoints (default feet : eyes), overall and per category group, with standard
    errors.

    Options: ``ratio`` (("feet", "eyes")), ``parts`` (part group -> name patterns), ``quantity``
    ("mask": 1 - normalised map, the seed's mask intensity, > 1 = eyes more salient;
    "saliency": the normalised map), ``resize`` ("authors": imresize to the original size;
    "bilinear": float bilinear + min-max), ``window`` ("square" | "disc"), ``size`` (5 px,
    original pixels), ``groups`` (category -> group; default: the category), ``bootstrap``
    (1000), ``seed`` (0).
    """

    name = "parts"
    default = False  # asked for by name: the bundled sample's hand-marked keypoints are a handful
    needs = ("keypoints",)
    accepts = (HEATMAP,)
    columns = ("parts_ratio",)
    titles = {"parts_ratio": "Feet:eyes"}
    short = {"parts_ratio": "Feet:eyes"}
    defaults: dict[str, Any] = {"ratio": ("feet", "eyes"), "parts": DEFAULT_PARTS, "quantity": "mask",
                                "resize": "authors", "window": "square", "size": 5, "groups": None,
                                "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for key, allowed in (("quantity", QUANTITIES), ("resize", RESIZES), ("window", WINDOWS)):
            if self._option(key) not in allowed:
                raise ValueError(f"parts: {key} must be one of {', '.join(allowed)}, not {self._option(key)!r}")
        ratio = tuple(self._option("ratio"))
        if len(ratio) != 2 or any(r not in self.parts for r in ratio):
            raise ValueError(f"parts: ratio must name two part groups of {', '.join(self.parts)}, not {ratio!r}")
        if int(self._option("size")) < 1:
            raise ValueError(f"parts: size must be a positive number of pixels, not {self._option('size')!r}")

    def _option(self, key: str) -> Any:
        return self.options.get(key, self.defaults[key])

    @property
    def parts(self) -> dict[str, tuple[str, ...]]:
        return {str(k): tuple(v) for k, v in dict(self._option("parts")).items()}

    @property
    def ratio(self) -> tuple[str, str]:
        a, b = self._option("ratio")
        return str(a), str(b)

    def part_group(self, name: str) -> str | None:
        n = str(name).lower()
        for group, patterns in self.parts.items():
            if any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns):
                return group
        return None

    def applies_to(self, sample: Sample) -> bool:
        kp = getattr(sample, "keypoints", None)
        if not kp:
            return False
        found = {self.part_group(n) for n, _, _ in kp}
        return all(r in found for r in self.ratio)

    def group_of(self, category: str) -> str:
        groups = self._option("groups") or {}
        return str(groups.get(category, category))

    def protocol(self) -> dict[str, str]:
        a, b = self.ratio
        q = ("the mask intensity 1 - map (the seed's; > 1: " + b + " more salient)"
             if self._option("quantity") == "mask" else "the map (< 1: " + b + " more salient)")
        rs = ("imresize to the original size (bytescale, PIL bilinear)" if self._option("resize") == "authors"
              else "bilinear to the original size, min-max")
        return {"parts_ratio": f"{a}:{b} ratio of the mean of {q}, {rs}, {self._option('window')} window of "
                               f"{int(self._option('size'))} px around each keypoint, pooled over keypoints; "
                               f"Fong & Vedaldi §7, Table 2"}

    def intensity_map(self, output: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        m = bytescale_resize(output, size) if self._option("resize") == "authors" else bilinear_resize(output, size)
        return 1.0 - m if self._option("quantity") == "mask" else m

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int]) -> dict:
        m = self.intensity_map(output, sample.size)
        size, window = int(self._option("size")), str(self._option("window"))
        parts: dict[str, list[float]] = defaultdict(list)
        ignored = 0
        for name, x, y in sample.keypoints or []:
            g = self.part_group(name)
            v = None if g is None else window_mean(m, float(x), float(y), size, window)
            if v is None:
                ignored += 1
                continue
            parts[g].append(round(v, 8))
        return {"parts": dict(parts), "ignored": ignored}

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        a, b = self.ratio
        cats = [self.group_of(str(s.get("category", ""))) for s in samples]
        A = [list((r.get("parts") or {}).get(a, [])) for r in records]
        Bv = [list((r.get("parts") or {}).get(b, [])) for r in records]
        n = len(records)
        r, se, info = ratio_with_se(np.concatenate([np.asarray(v) for v in A] + [np.zeros(0)]),
                                    np.concatenate([np.asarray(v) for v in Bv] + [np.zeros(0)]))
        sums = np.array([[sum(x), len(x), sum(y), len(y)] for x, y in zip(A, Bv)], np.float64).reshape(n, 4)

        def stat(w: np.ndarray) -> np.ndarray:
            t = w @ sums
            with np.errstate(invalid="ignore", divide="ignore"):
                return (t[:, 0] / t[:, 1]) / (t[:, 2] / t[:, 3])

        ci = bootstrap_ci(stat, n, int(self._option("bootstrap")), int(self._option("seed"))) if n and r is not None \
            else None
        per_group = {}
        for g in sorted(set(cats)):
            idx = [i for i, c in enumerate(cats) if c == g]
            rg, seg, ig = ratio_with_se(np.array([v for i in idx for v in A[i]]), np.array([v for i in idx for v in Bv[i]]))
            per_group[g] = {"ratio": rg, "se": seg, "samples": len(idx), **ig}
        groups_txt = "; ".join(f"{g} {v['ratio']:.2f}±{v['se']:.2f} (n={v['samples']})"
                               for g, v in per_group.items() if v["ratio"] is not None)
        out = {"parts_ratio": {
            "value": r, "ci": ci, "n": n, "unit": "",
            "se": se, "per_group": per_group, **info,
            "note": (f"{a}:{b} = {r:.3f}±{se:.3f} (delta-method SE) over {info['n_a']} {a} and {info['n_b']} {b} "
                     f"keypoints of {n} samples; quantity={self._option('quantity')}; per group: {groups_txt}"
                     if r is not None else f"no {a} or {b} keypoints in {n} samples"),
        }}
        return out  # per-group ratios ride in "per_group" and the note, not as table columns


__all__ = ["Parts", "bytescale_resize", "bilinear_resize", "window_mean", "ratio_with_se", "DEFAULT_PARTS"]
