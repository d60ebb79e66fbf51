"""ROAD: RemOve And Debias (Rong et al., "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022), as pytorch-grad-cam's ``metrics/road.py`` computes it.

For each percentile ``p`` of ``percentiles`` (10, 20, ..., 90) and each order:

* **MoRF** (``ROADMostRelevantFirst(p)``): the pixels whose map value is ``>= np.percentile(map, p)``
  are removed (kept: ``map < threshold``), i.e. the most relevant ``100 - p`` %;
* **LeRF** (``ROADLeastRelevantFirst(p)``): the same on ``1 - map``, i.e. the least relevant removed;

the removed pixels of the (normalised) input are filled by the noisy linear imputation (the neighbours'
weighted mean, plus ``noise * N(0, 1)``; on the CPU by :mod:`.imputation_cpu`'s compiled multigrid, one
chain of percentiles per sample and order in parallel threads; on another device by :mod:`.imputation`'s
conjugate gradients for the whole batch at once), and the score is the model's output on the imputed input minus its output on the
original (``return_diff=True``): the softmax probability of the target (``score="probability"``,
``ClassifierOutputSoftmaxTarget``, the target of pytorch-grad-cam's ROAD tutorial) or its pre-softmax
score (``score="logit"``, ``ClassifierOutputTarget``). Columns: the mean over percentiles of MoRF
(``ROADMostRelevantFirstAverage``; lower is better: removing what the map ranks first should hurt),
of LeRF (``ROADLeastRelevantFirstAverage``; higher is better) and ``ROADCombined``, ``(LeRF - MoRF) / 2``
(higher is better), in float32 as the reference averages them.

The map is brought to the input size (bilinear, ``align_corners=False``: for upsampling it is the
``cv2.resize`` pytorch-grad-cam applies to its CAMs). The noise is drawn from a generator seeded by
``seed`` and the sample id, in the reference's order for one image (LeRF at every percentile, then
MoRF; ``randn_like`` of ``res.t()`` each, where ``res = torch.tensor(spsolve(A, b))`` keeps SuperLU's
Fortran-ordered ``[removed, C]`` solution: ``res.t()`` is contiguous and the draw is exactly
``randn(C, removed)``), so the same seed given to ``torch.manual_seed`` before ``ROADCombined`` on
that image reproduces it. (Drawing ``randn(removed, C).t()`` instead, as a C-ordered solution would,
put every noise value elsewhere: measured 5e-3 off the reference's combined score on Grad-CAM maps,
whose large removed regions make the score follow the noise.)

Degenerate samples (recorded with the reason, no value): a percentile that removes every pixel (a
constant map, or ties at the threshold: the reference's system is singular and ``spsolve`` returns
NaN) and a model that returns non-finite scores on an imputed input.
"""
from __future__ import annotations

import zlib
from typing import Any, Sequence

import numpy as np
import torch

import saliency_bench
from saliency_bench.contracts import Column, Sample

from .imputation import linear_impute
from .scalar import ScalarBenchmark, map_at_input, undefined

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
SCORES = ("probability", "logit")
ORDERS = ("lerf", "morf")  # the reference's order in ROADCombined
CPU_PASS = 2  # imputed inputs per forward pass on a CPU (docs/PERFORMANCE.md §3, ROAD)


def sample_seed(seed: int, sample_id: str) -> int:
    """The noise seed of one sample: stable across runs, batches and processes."""
    return zlib.crc32(f"{int(seed)}:{sample_id}".encode()) & 0x7FFFFFFF


def keep_masks(cam: np.ndarray, percentiles: Sequence[float]) -> dict[str, list[np.ndarray]]:
    """The kept pixels (bool ``[H, W]``) per order and percentile, as ``RemoveMostRelevantFirst``
    thresholds them (``mask < np.percentile(mask, p)``; LeRF on ``1 - mask``)."""
    cam = np.asarray(cam, dtype=np.float32)
    inv = (1 - torch.from_numpy(cam)).numpy()
    return {"morf": [cam < np.percentile(cam, p) for p in percentiles],
            "lerf": [inv < np.percentile(inv, p) for p in percentiles]}


@saliency_bench.benchmark("road")
class Road(ScalarBenchmark):
    """ROAD (Rong et al. 2022) as pytorch-grad-cam's ROADMostRelevantFirstAverage, ...LeastRelevant...
    and ROADCombined: change of the target probability when the most (least) relevant pixels are
    removed and filled by noisy linear imputation, averaged over percentiles 10..90.

    Options: ``percentiles`` (10, 20, ..., 90), ``noise`` (0.01), ``score`` ("probability": softmax of
    the target; "logit"), ``tol`` (1e-5: relative residual of the iterative solve), ``max_iter`` (500:
    V-cycles on the CPU, CG iterations elsewhere), ``solver`` ("auto": the compiled multigrid on the CPU,
    the batched CG on the device elsewhere; "cg": the batched CG everywhere), ``threads`` (0: torch's
    thread count; CPU solver threads), ``systems`` (CG: images x percentiles imputed at once; 0: the
    whole batch), ``chunk`` (imputed inputs per forward call; 0: 2 on a CPU, where small
    passes are the fastest per input, 4 x the batch size elsewhere), ``bootstrap``
    (1000), ``seed`` (0: the noise).
    """

    name = "road"
    uses_model = True
    # 2 x 9 + 1 forward passes per sample; the 18 imputations (compiled multigrid on the CPU) cost
    # about as much as 3 to 12 more there (measured on EfficientNet-Lite0: docs/PERFORMANCE.md)
    cost = 30
    columns = (Column('road_morf', 'ROAD MoRF', 'MoRF', lower_is_better=True), Column('road_lerf', 'ROAD LeRF', 'LeRF'), Column('road_combined', 'ROAD combined', 'ROAD'))
    column = "road_combined"
    defaults: dict[str, Any] = {"percentiles": PERCENTILES, "noise": 0.01, "score": "probability", "tol": 1e-5,
                                "max_iter": 500, "solver": "auto", "threads": 0, "systems": 18, "chunk": 0, "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.option("score") not in SCORES:
            raise ValueError(f"road: score must be one of {', '.join(SCORES)}, not {self.option('score')!r}")
        if self.option("solver") not in ("auto", "cg"):
            raise ValueError(f"road: solver must be 'auto' or 'cg', not {self.option('solver')!r}")
        ps = self.percentiles
        if not ps or not all(0 <= p <= 100 for p in ps):
            raise ValueError(f"road: percentiles must be values in 0..100, not {self.option('percentiles')!r}")

    @property
    def percentiles(self) -> tuple[float, ...]:
        return tuple(float(p) for p in self.option("percentiles"))

    def compiled_kernels(self, device) -> tuple[str, ...]:
        """The modules whose numba kernels scoring calls on ``device`` (see :meth:`_imputed`)."""
        cpu = getattr(device, "type", str(device)) == "cpu"
        return ("saliency_bench.benchmarks.imputation_cpu",) if cpu and self.option("solver") == "auto" else ()

    def protocol(self) -> dict[str, str]:
        ps = ", ".join(f"{p:g}" for p in self.percentiles)
        what = "softmax probability" if self.option("score") == "probability" else "logit"
        base = (f"pytorch-grad-cam ROAD: change of the target {what} after noisy linear imputation "
                f"(noise {float(self.option('noise')):g}) of the pixels removed at percentiles {ps}")
        return {"road_morf": base + ", most relevant first; lower is better",
                "road_lerf": base + ", least relevant first; higher is better",
                "road_combined": base + "; (LeRF - MoRF) / 2, higher is better"}

    def _scores(self, query: Any, x: torch.Tensor, rows: Sequence[int]) -> np.ndarray:
        f = query.probabilities if self.option("score") == "probability" else query.scores
        return f(x, list(rows)).float().cpu().numpy().astype(np.float32)

    def _imputed(self, x: torch.Tensor, jobs: list[tuple]):
        """Yield ``(j0, j1, filled [j1 - j0, C, H, W] on x's device, iterations)`` for consecutive
        runs of ``jobs`` (no noise yet). On the CPU (``solver="auto"``): the compiled multigrid of
        :mod:`.imputation_cpu`, each (sample, order) a chain of percentiles from the largest removed
        set down (warm starts), the chains of ``threads`` samples at once in parallel threads; else
        (another device, or ``solver="cg"``): the batched conjugate gradient of :mod:`.imputation`
        on the device, ``systems`` at once."""
        tol, max_iter = float(self.option("tol")), int(self.option("max_iter"))
        if x.device.type == "cpu" and self.option("solver") == "auto":
            from .imputation_cpu import impute_chains

            threads = int(self.option("threads")) or torch.get_num_threads()
            per = 2 * len(self.percentiles)  # jobs per sample, consecutive (ORDERS x percentiles)
            xs = x.detach().numpy()
            for j0 in range(0, len(jobs), per * threads):
                part = jobs[j0:j0 + per * threads]
                chains, images, order = [], [], []
                for c0 in range(0, len(part), len(self.percentiles)):
                    chain = list(range(c0, c0 + len(self.percentiles)))
                    chain.sort(key=lambda n: -int((~part[n][3]).sum()))  # the largest removed set first
                    chains.append(np.stack([part[n][3] for n in chain]))
                    images.append(xs[part[c0][0]])
                    order.append(chain)
                filled, cycles = impute_chains(np.stack(images), chains, tol=tol, max_cycles=max_iter,
                                               threads=threads)
                out = torch.empty((len(part),) + tuple(x.shape[1:]), dtype=x.dtype)
                it = np.zeros(len(part), np.int64)
                for chain, f, c in zip(order, filled, cycles):
                    out[chain] = torch.from_numpy(f)
                    it[chain] = c
                yield j0, j0 + len(part), out, it
            return
        step = int(self.option("systems")) or max(1, len(jobs))
        for j0 in range(0, len(jobs), step):
            part = jobs[j0:j0 + step]
            keep = torch.from_numpy(np.stack([j[3] for j in part])).to(x.device)
            filled, it = linear_impute(x[[j[0] for j in part]], keep, tol=tol, max_iter=max_iter)
            yield j0, j0 + len(part), filled, it.cpu().numpy()

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, query: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, query=query)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    query: Any = None) -> list[dict]:
        if query is None:
            raise TypeError("road runs the model: score_batch needs query=")
        size = tuple(int(v) for v in input_size)
        x = query.x.float().contiguous()
        B, C = x.shape[0], x.shape[1]
        ps = self.percentiles
        noise = float(self.option("noise"))
        reasons: dict[int, str] = {}
        jobs: list[tuple] = []  # (row, order, percentile index, kept, noise)
        for i, o in enumerate(outputs):
            masks = keep_masks(map_at_input(o, size), ps)
            empty = [f"{order} {ps[k]:g}" for order in ORDERS for k, m in enumerate(masks[order]) if not m.any()]
            if empty:
                reasons[i] = (f"every pixel removed at percentile(s) {', '.join(empty)} (a constant map or ties "
                              "at the threshold): nothing to impute from")
                continue
            gen = torch.Generator().manual_seed(sample_seed(int(self.option("seed")), samples[i].id))
            for order in ORDERS:  # the reference's order of draws for one image
                for k, m in enumerate(masks[order]):
                    # the reference's randn_like(res.t()): res = torch.tensor(spsolve(A, b)) keeps
                    # SuperLU's Fortran-ordered [removed, C] solution, so res.t() is a contiguous
                    # [C, removed] and randn_like draws exactly randn(C, removed)
                    z = torch.randn(C, int((~m).sum()), generator=gen)
                    jobs.append((i, order, k, m, z))
        base = self._scores(query, x, range(B))
        fwd = max(1, int(self.option("chunk")) or (CPU_PASS if x.device.type == "cpu" else 4 * query.batch_size))
        after = np.zeros(len(jobs), np.float32)
        iters = np.zeros(len(jobs), np.int64)
        for j0, j1, filled, it in self._imputed(x, jobs):
            rows = [j[0] for j in jobs[j0:j1]]
            for n, j in enumerate(jobs[j0:j1]):
                flat = filled[n].view(C, -1)
                idx = torch.from_numpy(np.flatnonzero(~j[3].reshape(-1))).to(x.device)
                flat[:, idx] += noise * j[4].to(x.device)
            for f0 in range(0, j1 - j0, fwd):
                after[j0 + f0:j0 + min(f0 + fwd, j1 - j0)] = self._scores(query, filled[f0:f0 + fwd], rows[f0:f0 + fwd])
            iters[j0:j1] = it
        diffs = {i: {"lerf": np.zeros(len(ps), np.float32), "morf": np.zeros(len(ps), np.float32)} for i in range(B)}
        worst = {i: 0 for i in range(B)}
        for n, (i, order, k, _, _) in enumerate(jobs):
            diffs[i][order][k] = after[n] - base[i]
            worst[i] = max(worst[i], int(iters[n]))
        records = []
        for i in range(B):
            if i in reasons:
                records.append(undefined(reasons[i]))
                continue
            d = diffs[i]
            if not (np.isfinite(d["lerf"]).all() and np.isfinite(d["morf"]).all() and np.isfinite(base[i])):
                records.append(undefined("the model returned non-finite scores on the input or an imputed input"))
                continue
            morf, lerf = np.mean(d["morf"], axis=0), np.mean(d["lerf"], axis=0)
            records.append({"value": float((lerf - morf) / 2), "morf": float(morf), "lerf": float(lerf),
                            "morf_curve": [float(v) for v in d["morf"]], "lerf_curve": [float(v) for v in d["lerf"]],
                            "iterations": worst[i]})
        return records

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        return {column: self.column_metric(records, samples, key)
                for column, key in (("road_morf", "morf"), ("road_lerf", "lerf"), ("road_combined", "value"))}


__all__ = ["Road", "keep_masks", "sample_seed", "PERCENTILES"]
