"""Faithfulness: benchmarks that run the model on inputs perturbed along the map
(docs/PROTOCOLS.md §10).

* ``deletion_game`` (Fong & Vedaldi, ICCV 2017, §5; the authors' ``deletion_game.py``): the
  smallest value-thresholded box whose replacement by the blurred original brings the normalised
  target probability ``(f(x') - f(blur)) / (f(x) - f(blur))`` to 0.01, as % of the input area;
* ``deletion`` and ``insertion`` (Petsiuk et al., "RISE", BMVC 2018; their ``CausalMetric``):
  the area under the target probability as the most salient pixels are removed into, or revealed
  from, a substrate, ``step`` pixels at a time.

Every benchmark here runs the model through the :class:`~saliency_bench.contracts.Probe`: the
perturbed inputs of all samples of a batch, and of all thresholds or steps, are scored chunk by
chunk, and the probe counts the passes and seconds for the runtime table. The probe's model is
the verified, pristine one, and a benchmark that changes it fails, named (docs/ARCHITECTURE.md,
"Isolation").
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

import saliency_bench
from saliency_bench.contracts import HEATMAP, Benchmark, Sample
from saliency_bench.imageio import blurred_input
from saliency_bench.ops.blur import gaussian_blur, gkern, gkern_blur
from saliency_bench.ops.resize import resize_map

from .stats import PerSample, bootstrap_ci, weighted_mean

GAME_ALPHAS = tuple(round(0.01 * i, 2) for i in range(100))  # np.arange(0, 1, 0.01)
SUBSTRATES = ("zeros", "gkern", "blurred")
TARGETS = ("target", "predicted")
BOXES = ("authors", "inclusive")


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------
def auc(curve: np.ndarray) -> float:
    """RISE's normalised area under the curve: ``(sum - c[0]/2 - c[-1]/2) / (len - 1)``."""
    c = np.asarray(curve, dtype=np.float64)
    return float((c.sum() - c[0] / 2 - c[-1] / 2) / (len(c) - 1))


def map_at(output: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A map at its own resolution brought to ``size`` (bilinear, ``align_corners=False``)."""
    return resize_map(output, size, reference="torchray")


class _ModelInTheLoop(Benchmark):
    """What the faithfulness benchmarks share: options, the blurred view, the summary."""

    uses_model = True
    views = ("blurred",)
    accepts = (HEATMAP,)
    needs: tuple[str, ...] = ()
    defaults: dict[str, Any] = {}
    column = ""
    unit = ""
    scale = 1.0  # record value -> column value

    def _option(self, key: str) -> Any:
        return self.options.get(key, self.defaults[key])

    def needs_blurred(self) -> bool:
        return True

    def make_view(self, name: str, image: Any, size: tuple[int, int]) -> torch.Tensor | None:
        if name != "blurred":
            raise KeyError(f"benchmark '{self.name}' makes no view '{name}' (its views: blurred)")
        if not self.needs_blurred():
            return None
        return blurred_input(image, size, radius=float(self._option("blur_radius")))

    def blurred(self, probe: Any, samples: Sequence[Sample]) -> tuple[torch.Tensor, str]:
        """The blurred view of every row, or (no view: a direct call) the input blurred with
        ``blur_radius`` scaled by the resize (input pixels per original pixel), which
        approximates blurring the original first."""
        v = probe.view("blurred")
        if v is not None:
            return v.to(probe.x.device, probe.x.dtype), "blurred original (view)"
        x = probe.x
        r = float(self._option("blur_radius"))
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        for i, s in enumerate(samples):
            h, w = (int(v) for v in (s.size if s.size and min(s.size) > 0 else x.shape[-2:]))
            sigma = r * 0.5 * (x.shape[-2] / h + x.shape[-1] / w)
            out[i] = gaussian_blur(x[i:i + 1], sigma)[0]
        return out, "fallback: the input blurred (sigma scaled to the input)"

    def chunk(self, probe: Any) -> int:
        return max(1, int(self._option("chunk") or 4 * probe.batch_size))

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        replicates = int(self._option("bootstrap"))
        seed = int(self._option("seed"))
        split = np.array([str(s.get("split", "eval")) for s in samples])
        use = split == "eval" if (split == "eval").any() else np.ones(len(samples), bool)
        vals = np.array([r.get("value", np.nan) for r in records], dtype=np.float64)[use] \
            if len(records) else np.zeros(0)
        vals = vals[np.isfinite(vals)]
        n = int(len(vals))
        if n == 0:
            return {self.column: {"value": None, "ci": None, "n": 0, "unit": self.unit, "note": "no samples"}}
        ci = bootstrap_ci(weighted_mean(vals), n, replicates, seed)
        return {self.column: {
            "value": self.scale * float(vals.mean()),
            "ci": None if ci is None else [self.scale * ci[0], self.scale * ci[1]],
            "n": n, "unit": self.unit, "note": self.note(records, n),
        }}

    def per_sample(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, PerSample]:
        """The record's value (an AUC, the deletion game's smallest area) per evaluation sample,
        in the column's units: the column is their mean."""
        split = [str(s.get("split", "eval")) for s in samples]
        use = [i for i, sp in enumerate(split) if sp == "eval"] if "eval" in split else list(range(len(samples)))
        keep = [i for i in use if isinstance(records[i].get("value"), (int, float))
                and np.isfinite(records[i]["value"])]
        return {self.column: PerSample(tuple(str(samples[i]["id"]) for i in keep),
                                       [self.scale * float(records[i]["value"]) for i in keep])}

    def note(self, records: Sequence[dict], n: int) -> str:
        return f"mean over {n} samples"


# --------------------------------------------------------------------------------------------
# The deletion game
# --------------------------------------------------------------------------------------------
def boxes_at_input(heatmap: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """``getbb_from_heatmap(h, alpha, "min_max_diff", resize=None)`` for every alpha: ``[A,4]``
    1-based ``(x1, y1, x2, y2)``; ``[1, 1, h, w]`` (their order) when nothing is non-zero.

    As their code: ``h[h - min(h) < alpha (max(h) - min(h))] = 0``, then the columns and rows
    whose **sum** is positive. Thresholds in float64 on the float32 map."""
    m = np.asarray(heatmap, dtype=np.float32)
    lo = m.min()
    hm = (m - lo).astype(np.float64)
    rng = float(m.max()) - float(lo)
    out = np.zeros((len(alphas), 4), np.int64)
    h, w = m.shape
    for k, a in enumerate(alphas):
        kept = np.where(hm < float(a) * rng, np.float32(0), m)
        cols = np.flatnonzero(kept.sum(axis=0, dtype=np.float64) > 0)
        rows = np.flatnonzero(kept.sum(axis=1, dtype=np.float64) > 0)
        if len(cols) == 0 or len(rows) == 0 or not kept.any():
            out[k] = (1, 1, h, w)
        else:
            out[k] = (cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1)
    return out


def game_boxes(heatmap: np.ndarray, input_size: tuple[int, int], alphas: Sequence[float]) -> np.ndarray:
    """The deletion game's boxes (authors' 1-based) at the input size, for every alpha."""
    m = np.asarray(heatmap, dtype=np.float32)
    if m.shape == tuple(input_size):
        return boxes_at_input(m, alphas)
    from .localization import authors_boxes

    return np.asarray(authors_boxes(m, input_size, {"value": tuple(alphas)})["value"], np.int64)


def deleted_region(box: Sequence[int], mode: str, size: tuple[int, int]) -> tuple[slice, slice, int]:
    """(rows, cols, area) deleted for a 1-based box: ``authors`` slices ``[y0:y1, x0:x1]`` with the
    1-based numbers as their code does, ``inclusive`` deletes the box's own pixels."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if mode == "authors":
        rows, cols = slice(max(y0, 0), max(y1, 0)), slice(max(x0, 0), max(x1, 0))
        return rows, cols, (y1 - y0) * (x1 - x0)
    rows, cols = slice(y0 - 1, y1), slice(x0 - 1, x1)
    return rows, cols, (y1 - y0 + 1) * (x1 - x0 + 1)


@saliency_bench.benchmark("deletion_game")
class DeletionGame(_ModelInTheLoop):
    """The authors' deletion game: the smallest box (value thresholding of the map) whose
    replacement by the blurred image brings the normalised target probability to <= 0.01,
    as % of the input area (lower is better).

    Options: ``alphas`` (0:0.01:0.99), ``threshold`` (0.01), ``box`` ("authors": their
    ``mask[y0:y1, x0:x1]`` slicing of the 1-based box; "inclusive"), ``blur_radius`` (10: PIL
    GaussianBlur of the original), ``chunk`` (perturbed inputs per probe call; 0: 4 x the
    probe's batch size), ``bootstrap`` (1000), ``seed`` (0).
    """

    name = "deletion_game"
    cost = 100  # up to one forward pass per threshold (equal boxes share one)
    columns = ("deletion_game",)
    column = "deletion_game"
    titles = {"deletion_game": "Deletion game box (%)"}
    short = {"deletion_game": "DelGame"}
    lower_is_better = ("deletion_game",)
    unit = "%"
    scale = 100.0
    defaults: dict[str, Any] = {"alphas": GAME_ALPHAS, "threshold": 0.01, "box": "authors",
                                "blur_radius": 10.0, "chunk": 0, "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self._option("box") not in BOXES:
            raise ValueError(f"deletion_game: box must be one of {', '.join(BOXES)}, not {self._option('box')!r}")
        if not len(self.alphas):
            raise ValueError("deletion_game: alphas must not be empty")

    @property
    def alphas(self) -> tuple[float, ...]:
        return tuple(float(a) for a in self._option("alphas"))

    def protocol(self) -> dict[str, str]:
        return {"deletion_game": (
            f"Fong & Vedaldi's deletion_game.py: value-threshold boxes (alpha {self.alphas[0]:g}.."
            f"{self.alphas[-1]:g}, {len(self.alphas)} values; maps not at the input size thresholded first, "
            f"then bytescaled and PIL-bilinear resized), box replaced by the blurred original (PIL "
            f"GaussianBlur({float(self._option('blur_radius')):g}), resized), {self._option('box')} slicing; "
            f"the last alpha with (p(x')-p(blur))/(p(x)-p(blur)) <= {float(self._option('threshold')):g} "
            f"(else the smallest), box area as % of the input; lower is better")}

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, probe: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, probe=probe)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    probe: Any = None) -> list[dict]:
        if probe is None:
            raise TypeError("deletion_game runs the model: score_batch needs probe=")
        H, W = (int(v) for v in input_size)
        x = probe.x
        B = len(samples)
        null, how = self.blurred(probe, samples)
        base = probe.probabilities(torch.cat([x, null]), list(range(B)) * 2).double().cpu().numpy()
        p_x, p_null = base[:B], base[B:]
        mode = str(self._option("box"))
        alphas = self.alphas
        jobs: list[tuple[int, tuple[int, ...]]] = []
        inverse, sizes = [], []
        for i, o in enumerate(outputs):
            boxes = game_boxes(o, (H, W), alphas)
            uniq, inv = np.unique(boxes, axis=0, return_inverse=True)
            inverse.append((len(jobs), inv.reshape(-1)))
            sizes.append(np.array([deleted_region(b, mode, (H, W))[2] for b in boxes], np.float64))
            jobs.extend((i, tuple(int(v) for v in b)) for b in uniq)
        probs = np.zeros(len(jobs))
        step = self.chunk(probe)
        for j0 in range(0, len(jobs), step):
            part = jobs[j0:j0 + step]
            rows = [i for i, _ in part]
            keep = torch.ones(len(part), 1, H, W, device=x.device, dtype=x.dtype)
            for n, (_, b) in enumerate(part):
                r, c, _ = deleted_region(b, mode, (H, W))
                keep[n, :, r, c] = 0
            idx = torch.as_tensor(rows, device=x.device)
            xp = x[idx] * keep + null[idx] * (1 - keep)
            probs[j0:j0 + len(part)] = probe.probabilities(xp, rows).double().cpu().numpy()
        thr = float(self._option("threshold"))
        records = []
        for i in range(B):
            start, inv = inverse[i]
            p = probs[start + inv]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = (p - p_null[i]) / (p_x[i] - p_null[i])
            hit = np.flatnonzero(s <= thr)
            best = int(hit[-1]) if len(hit) else int(np.argmin(s))
            records.append({
                "value": float(sizes[i][best] / (H * W)), "alpha": alphas[best], "reached": bool(len(hit)),
                "score": None if not np.isfinite(s[best]) else round(float(s[best]), 5),
                "p": round(float(p_x[i]), 6), "p_blur": round(float(p_null[i]), 6),
                "boxes": int(len(np.unique(inv))), "substrate": how,
            })
        return records

    def note(self, records: Sequence[dict], n: int) -> str:
        reached = sum(bool(r.get("reached")) for r in records)
        fallback = sum("fallback" in str(r.get("substrate", "")) for r in records)
        extra = f"; {fallback} with the input blurred (no view)" if fallback else ""
        return (f"mean smallest deleting box over {n} samples; {reached}/{len(records)} reached "
                f"<= {float(self._option('threshold')):g} (others: the box of the lowest score){extra}; lower is better")


# --------------------------------------------------------------------------------------------
# RISE deletion and insertion
# --------------------------------------------------------------------------------------------
class _Causal(_ModelInTheLoop):
    """RISE's ``CausalMetric``: ``mode`` "del" or "ins"."""

    mode = "del"
    defaults: dict[str, Any] = {}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self._option("substrate") not in SUBSTRATES:
            raise ValueError(f"{self.name}: substrate must be one of {', '.join(SUBSTRATES)}, "
                             f"not {self._option('substrate')!r}")
        if self._option("target") not in TARGETS:
            raise ValueError(f"{self.name}: target must be one of {', '.join(TARGETS)}, not {self._option('target')!r}")
        if int(self._option("step")) < 1:
            raise ValueError(f"{self.name}: step must be a positive number of pixels, not {self._option('step')!r}")

    def needs_blurred(self) -> bool:
        return self._option("substrate") == "blurred"

    def protocol(self) -> dict[str, str]:
        verb = "deleting (most salient first) into" if self.mode == "del" else "inserting (most salient first) from"
        sub = {"zeros": "zeros (the mean pixel)",
               "gkern": f"RISE's gkern({int(self._option('klen'))}, {float(self._option('nsig')):g}) blur of the input",
               "blurred": f"the blurred original (PIL GaussianBlur({float(self._option('blur_radius')):g}), resized)"}
        tgt = "the map's target class" if self._option("target") == "target" else "the top-1 predicted class"
        better = "lower" if self.mode == "del" else "higher"
        return {self.column: (f"RISE CausalMetric: {int(self._option('step'))} pixels per step {verb} "
                              f"{sub[str(self._option('substrate'))]}, map bilinear to the input; softmax "
                              f"probability of {tgt}; AUC (sum - c0/2 - cN/2)/N; {better} is better")}

    def substrate(self, probe: Any, samples: Sequence[Sample]) -> tuple[torch.Tensor, str]:
        kind = str(self._option("substrate"))
        x = probe.x
        if kind == "zeros":
            return torch.zeros_like(x), "zeros"
        if kind == "gkern":
            return gkern_blur(x, int(self._option("klen")), float(self._option("nsig"))), "gkern"
        return self.blurred(probe, samples)

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, probe: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, probe=probe)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    probe: Any = None) -> list[dict]:
        if probe is None:
            raise TypeError(f"{self.name} runs the model: score_batch needs probe=")
        H, W = (int(v) for v in input_size)
        HW = H * W
        x = probe.x.contiguous()
        B = len(samples)
        sub, how = self.substrate(probe, samples)
        start, finish = (x, sub) if self.mode == "del" else (sub, x)
        pix = int(self._option("step"))
        n_steps = (HW + pix - 1) // pix
        # rank[b, p]: position of pixel p in decreasing saliency (ties: raster order)
        rank = torch.empty(B, HW, dtype=torch.long)
        for i, o in enumerate(outputs):
            order = torch.argsort(-map_at(o, (H, W)).reshape(-1).double(), stable=True)
            rank[i, order] = torch.arange(HW)
        rank = rank.to(x.device)
        classes = None
        if self._option("target") == "predicted":
            classes = probe.logits(x).argmax(dim=1)
        jobs = [(i, k) for i in range(B) for k in range(n_steps + 1)]
        curves = np.zeros((B, n_steps + 1))
        step = self.chunk(probe)
        for j0 in range(0, len(jobs), step):
            part = jobs[j0:j0 + step]
            rows = torch.as_tensor([i for i, _ in part], device=x.device)
            done = torch.as_tensor([k * pix for _, k in part], device=x.device)
            sel = (rank[rows] < done[:, None]).view(len(part), 1, H, W)
            xp = torch.where(sel, finish[rows], start[rows])
            if classes is None:
                p = probe.probabilities(xp, rows.cpu())
            else:
                p = torch.softmax(probe.logits(xp), dim=1).gather(1, classes[rows][:, None])[:, 0]
            p = p.double().cpu().numpy()
            for n, (i, k) in enumerate(part):
                curves[i, k] = p[n]
        return [{"value": auc(c), "curve": [round(float(v), 5) for v in c], "substrate": how} for c in curves]

    def note(self, records: Sequence[dict], n: int) -> str:
        better = "lower" if self.mode == "del" else "higher"
        return (f"mean AUC over {n} samples; step={int(self._option('step'))} px, "
                f"substrate={self._option('substrate')}, target={self._option('target')}; {better} is better")


_CAUSAL_DEFAULTS = {"step": 224, "klen": 11, "nsig": 5.0, "blur_radius": 10.0, "target": "target",
                    "chunk": 0, "bootstrap": 1000, "seed": 0}


@saliency_bench.benchmark("deletion")
class Deletion(_Causal):
    """RISE deletion: AUC of the target probability as the most salient pixels are replaced by
    the substrate, ``step`` at a time (lower is better).

    Options: ``step`` (224 px), ``substrate`` ("zeros": the mean pixel, RISE's; "gkern": RISE's
    insertion blur; "blurred": the authors' blurred original), ``klen``/``nsig`` (11, 5),
    ``blur_radius`` (10), ``target`` ("target": the class the map explains; "predicted": the
    top-1 class, as RISE), ``chunk`` (0: 4 x the probe's batch size), ``bootstrap``, ``seed``.
    """

    name = "deletion"
    cost = 225  # one forward pass per step (224 pixels a step on a 224x224 input)
    mode = "del"
    columns = ("deletion_auc",)
    column = "deletion_auc"
    titles = {"deletion_auc": "Deletion AUC"}
    short = {"deletion_auc": "Del.AUC"}
    lower_is_better = ("deletion_auc",)
    defaults: dict[str, Any] = {**_CAUSAL_DEFAULTS, "substrate": "zeros"}


@saliency_bench.benchmark("insertion")
class Insertion(_Causal):
    """RISE insertion: AUC of the target probability as the most salient pixels of the image are
    revealed on the substrate, ``step`` at a time (higher is better). Options as ``deletion``;
    the default substrate is RISE's ``gkern`` blur."""

    name = "insertion"
    cost = 225
    mode = "ins"
    columns = ("insertion_auc",)
    column = "insertion_auc"
    titles = {"insertion_auc": "Insertion AUC"}
    short = {"insertion_auc": "Ins.AUC"}
    defaults: dict[str, Any] = {**_CAUSAL_DEFAULTS, "substrate": "gkern"}


__all__ = ["DeletionGame", "Deletion", "Insertion", "auc", "gkern", "gkern_blur", "boxes_at_input",
           "game_boxes", "deleted_region", "GAME_ALPHAS"]
