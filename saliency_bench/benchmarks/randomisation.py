"""Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018),
cascading from the logits down, as Quantus 0.6's ``MPRT`` runs it.

The benchmark asks the harness for a copy of the model (:meth:`~saliency_bench.contracts.ModelQuery.model_copy`;
the run's model stays as loaded) and randomises it step by step, **from the logits down**: the modules
that have ``reset_parameters`` (convolutions, batch norms, the classifier), in reverse order of
``named_modules()`` (Quantus's ``get_random_layer_generator(order="top_down")``), each re-initialised by
its own ``reset_parameters()`` after ``torch.manual_seed(init_seed + 1)`` (Quantus's ``seed``, 42; the
process's random state is restored afterwards). ``granularity="module"`` makes each module one step
(Quantus's); ``"block"`` (the default) randomises the modules of one block per step (the module path cut
to ``depth`` parts: ``blocks.5``), the paper's per-block cascade. After each step the harness runs **the
method under test** on the randomised copy (:meth:`~saliency_bench.contracts.ModelQuery.explain`; those maps
are never cached nor scored as the method's), and its map is compared with the method's own map:

* **Spearman** rank correlation of the absolute maps (Quantus's ``correlation_spearman``; SciPy's
  ``spearmanr``, ties by average rank), on the maps at the input size (bilinear; Quantus needs
  attributions at the input's shape);
* **SSIM** of the absolute maps each divided by its largest value (Quantus's normalisation of one
  sample), skimage's ``structural_similarity`` with ``data_range`` the joint range of the two maps and
  its default 7x7 uniform window (the settings of Quantus's ``ssim``, on the 2-D maps: Quantus's MPRT
  flattens maps before its similarity function, which for SSIM would mean 1-D windows).

The record holds the per-step curve (step names, Spearman, SSIM); the columns hold the similarity after
the last step (the whole model randomised). Lower similarity: the method depends on what the model
learned (the published finding: gradient and Grad-CAM decorrelate; an edge detector, or a map that
ignores the model, stays at 1).

A step where the method fails on the randomised model, or where a similarity is undefined (a constant
map has no ranks), has no value in the curve and a reason in ``failures``; a sample without a value
after the last step is recorded with the reason.
"""
from __future__ import annotations

import dataclasses

from typing import Any, Sequence

import numpy as np
import torch

import saliency_bench
from saliency_bench.contracts import Column, Sample

from .scalar import ScalarBenchmark, map_at_input, undefined

GRANULARITIES = ("block", "module")


def randomisation_steps(net: torch.nn.Module, granularity: str = "block", depth: int = 2
                        ) -> list[tuple[str, list[torch.nn.Module]]]:
    """The cascade from the logits down: ``[(step name, modules)]``, each step's modules re-initialised
    together. Modules with ``reset_parameters`` in reverse ``named_modules()`` order, as Quantus's
    ``get_random_layer_generator(order="top_down")``; ``block`` groups consecutive ones by path prefix."""
    mods = [(n, m) for n, m in net.named_modules() if hasattr(m, "reset_parameters")][::-1]
    if granularity == "module":
        return [(n, [m]) for n, m in mods]
    steps: list[tuple[str, list[torch.nn.Module]]] = []
    for n, m in mods:
        key = ".".join(n.split(".")[:max(1, int(depth))])
        if steps and steps[-1][0] == key:
            steps[-1][1].append(m)
        else:
            steps.append((key, [m]))
    return steps


def randomise(modules: Sequence[torch.nn.Module], seed: int) -> None:
    """Quantus's re-initialisation: ``torch.manual_seed(seed + 1)`` then ``reset_parameters()``, per
    module; the process's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        for m in modules:
            p = next(m.parameters(), None)
            if p is None or p.device.type == "cpu":  # the CPU generator is all a CPU module draws from
                torch.random.default_generator.manual_seed(seed + 1)  # (manual_seed also seeds the
            else:  # lazy CUDA, XPU and MTIA states, formatting a stack trace for each, every call)
                torch.manual_seed(seed + 1)
            m.reset_parameters()


def abs_ranks(a: np.ndarray) -> np.ndarray:
    """SciPy's ``rankdata`` (ties by average rank, float64) of the flattened absolute map: what
    ``spearmanr`` ranks. The method's own map is ranked once, not once per step. The same formula
    as SciPy's on one unstable sort (an average rank does not depend on the order within a tie;
    SciPy's stable mergesort cost three times as much); with a NaN, SciPy's own."""
    x = np.abs(np.asarray(a)).reshape(-1)
    if x.size == 0 or np.isnan(x).any():
        from scipy.stats import rankdata

        return rankdata(x)
    order = np.argsort(x)
    xs = x[order]
    first = np.empty(x.size, bool)  # the first of each run of equal values, in sorted order
    first[0] = True
    np.not_equal(xs[1:], xs[:-1], out=first[1:])
    dense = np.cumsum(first)
    count = np.r_[np.flatnonzero(first), x.size]
    ranks = np.empty(x.size)
    ranks[order] = 0.5 * (count[dense] + count[dense - 1] + 1)
    return ranks


def spearman_ranked(ra: np.ndarray, rb: np.ndarray) -> float:
    """Spearman's rho from two rank vectors: their Pearson correlation, as ``spearmanr`` takes it
    (``np.corrcoef``, clipped to [-1, 1]); NaN where a map is constant (no ranks to correlate)."""
    xa, xb = ra - ra.mean(), rb - rb.mean()  # sums, not np.dot: no BLAS threads for one 50k-vector
    den = float(np.sqrt((xa * xa).sum() * (xb * xb).sum()))
    return float("nan") if den == 0 else float(np.clip((xa * xb).sum() / den, -1.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the absolute maps (SciPy's ``spearmanr`` of ``|a|``, ``|b|``)."""
    return spearman_ranked(abs_ranks(a), abs_ranks(b))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    def norm(m):
        m = np.asarray(m, dtype=np.float64)
        mx = np.max(np.abs(m))
        return np.abs(m / mx) if mx > 0 else np.abs(m)

    aa, bb = norm(a), norm(b)
    both = np.concatenate([aa.reshape(-1), bb.reshape(-1)])
    rng = float(np.abs(both.max() - both.min()))
    if rng == 0:
        return float("nan")
    return float(structural_similarity(aa, bb, data_range=rng))


@saliency_bench.benchmark("randomisation")
class Randomisation(ScalarBenchmark):
    """Model-parameter randomisation (Adebayo et al. 2018) as Quantus's MPRT: similarity (Spearman of
    |maps|, SSIM) of the method's map on the model randomised from the logits down to its own map;
    lower means the method depends on the model.

    Options: ``granularity`` ("block": one block per step, the module path cut to ``depth`` parts;
    "module": each module with parameters, Quantus's), ``depth`` (2), ``steps`` (0: the whole cascade;
    ``k``: its first ``k`` steps from the logits), ``init_seed`` (42, Quantus's
    ``seed``), ``resolution`` ("input": maps bilinear to the input, as Quantus; "map"), ``bootstrap``
    (1000), ``seed`` (the run's: the bootstrap).
    """

    name = "randomisation"
    uses_model = True
    reruns_method = True
    cost = 100  # one re-run of the method per step (12 blocks of EfficientNet-Lite0): heavy on a CPU
    columns = (Column('randomisation_spearman', 'Randomisation Spearman', 'MPRT rho', lower_is_better=True), Column('randomisation_ssim', 'Randomisation SSIM', 'MPRT SSIM', lower_is_better=True))
    column = "randomisation_spearman"
    defaults: dict[str, Any] = {"granularity": "block", "depth": 2, "steps": 0, "init_seed": 42,
                                "resolution": "input", "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.option("granularity") not in GRANULARITIES:
            raise ValueError(f"randomisation: granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"not {self.option('granularity')!r}")
        if self.option("resolution") not in ("input", "map"):
            raise ValueError(f"randomisation: resolution must be input or map, not {self.option('resolution')!r}")

    def protocol(self) -> dict[str, str]:
        g = self.option("granularity")
        line = (f"Quantus MPRT, cascading from the logits down ({g} steps, reset_parameters after "
                f"manual_seed({int(self.option('init_seed'))} + 1)), the method re-run on the randomised copy")
        return {"randomisation_spearman": line + "; Spearman of |maps| after the last step; lower is better",
                "randomisation_ssim": line + "; SSIM (skimage, 7x7) of max-normalised |maps| after the last step"}

    def _at(self, m: np.ndarray, size) -> np.ndarray:
        return map_at_input(m, size) if self.option("resolution") == "input" else np.asarray(m, np.float32)

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, query: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, query=query)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    query: Any = None) -> list[dict]:
        if query is None:
            raise TypeError("randomisation re-runs the method: score_batch needs query=")
        B = len(samples)
        size = tuple(int(v) for v in input_size)
        own = [self._at(o, size) for o in outputs]
        own_ranks = [abs_ranks(o) for o in own]
        copy = query.model_copy()
        steps = randomisation_steps(copy.net, str(self.option("granularity")), int(self.option("depth")))
        if int(self.option("steps")) > 0:
            steps = steps[:int(self.option("steps"))]
        names, rho, sim = [], [[] for _ in range(B)], [[] for _ in range(B)]
        fails: list[list[str]] = [[] for _ in range(B)]
        for name, mods in steps:
            randomise(mods, int(self.option("init_seed")))
            maps, reasons = query.explain(model=copy)
            names.append(name)
            for i in range(B):
                if maps[i] is None:
                    rho[i].append(None)
                    sim[i].append(None)
                    fails[i].append(f"{name}: {reasons[i]}")
                    continue
                m = self._at(maps[i], size)
                r, s = spearman_ranked(own_ranks[i], abs_ranks(m)), ssim(own[i], m)
                rho[i].append(r if np.isfinite(r) else None)
                sim[i].append(s if np.isfinite(s) else None)
                if not np.isfinite(r):
                    fails[i].append(f"{name}: Spearman undefined (a constant map has no ranks)")
        records = []
        for i in range(B):
            curve = {"steps": names, "spearman": rho[i], "ssim": sim[i]}
            if fails[i]:
                curve["failures"] = fails[i][:5]
            if rho[i][-1] is None:
                why = fails[i][-1] if fails[i] else "no similarity after the last step"
                records.append({**undefined(f"after the whole model is randomised: {why}"), **curve})
            else:
                records.append({"value": rho[i][-1], "ssim_last": sim[i][-1], **curve})
        return records

    def summarize(self, records: Sequence[dict], samples: Sequence[dict]) -> dict[str, dict]:
        out = {"randomisation_spearman": self.column_metric(records, samples)}
        ssim_recs = [r if r.get("ssim_last") is not None or r.get("value") is None
                     else undefined("SSIM undefined (constant maps)") for r in records]
        out["randomisation_ssim"] = self.column_metric(ssim_recs, samples, "ssim_last")
        curves = [r["spearman"] for r in records if r.get("spearman")]
        if curves and len({len(c) for c in curves}) == 1:
            arr = np.array([[np.nan if v is None else v for v in c] for c in curves], dtype=np.float64)
            with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore")
                mean = np.nanmean(arr, axis=0)
            steps = next(r["steps"] for r in records if r.get("steps"))
            m = out["randomisation_spearman"]
            out["randomisation_spearman"] = dataclasses.replace(m, note=m.note + "; mean Spearman per step from the logits down: "
                                                                + ", ".join(f"{s} {v:.2f}" for s, v in zip(steps, mean) if np.isfinite(v)))
        return out


__all__ = ["Randomisation", "randomisation_steps", "randomise", "spearman", "spearman_ranked", "abs_ranks", "ssim"]


def off_target_class(target: int, n_classes: int, seed: int) -> int:
    """Quantus ``RandomLogit``'s off-target class for a batch of one: ``np.random.seed(seed)``,
    ``randint(0, n_classes - 1)``-th of the classes other than ``target``."""
    rs = np.random.RandomState(int(seed))
    k = int(rs.randint(0, n_classes - 1, 1)[0])
    return k if k < target else k + 1


def ssim_flat(a: np.ndarray, b: np.ndarray) -> float:
    """Quantus's ``ssim`` as ``RandomLogit`` calls it: on the flattened maps (1-D, 7-sample window),
    ``data_range`` the joint range."""
    from skimage.metrics import structural_similarity

    aa, bb = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    both = np.concatenate([aa, bb])
    rng = float(np.abs(np.max(both) - np.min(both)))
    if rng == 0:
        return float("nan")
    return float(structural_similarity(im1=aa, im2=bb, win_size=None, data_range=rng))


@saliency_bench.benchmark("random_logit")
class RandomLogit(ScalarBenchmark):
    """Random logit (Sixt et al. 2020) as Quantus's RandomLogit: SSIM of the method's map for its target
    with its map for a seeded off-target class (lower: the map depends on the class explained).

    Options: ``init_seed`` (42, Quantus's ``seed``), ``resolution`` ("input" | "map"), ``bootstrap``
    (1000), ``seed`` (the run's: the bootstrap).
    """

    name = "random_logit"
    uses_model = True
    reruns_method = True
    cost = 2  # one re-run of the method per sample
    columns = (Column('random_logit_ssim', 'Random logit SSIM', 'RLogit', lower_is_better=True),)
    column = "random_logit_ssim"
    defaults: dict[str, Any] = {"init_seed": 42, "resolution": "input", "bootstrap": 1000, "seed": 0}

    def protocol(self) -> dict[str, str]:
        return {self.column: (f"Quantus RandomLogit: SSIM (flattened, as Quantus) of the max-normalised map for the "
                              f"target and for an off-target class drawn with seed {int(self.option('init_seed'))}; "
                              "lower is better")}

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, query: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, query=query)[0]

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    query: Any = None) -> list[dict]:
        if query is None:
            raise TypeError("random_logit re-runs the method: score_batch needs query=")
        size = tuple(int(v) for v in input_size)
        n_classes = len(query.model.classes)
        label = query.model.label_space
        off = [off_target_class(int(s.target_in(label)[0]), n_classes, int(self.option("init_seed")))
               for s in samples]
        maps, reasons = query.explain(targets=[[c] for c in off])
        at = (lambda m: map_at_input(m, size)) if self.option("resolution") == "input" else \
            (lambda m: np.asarray(m, np.float32))

        def norm(m):
            mx = np.max(np.abs(m))
            return m / mx if mx > 0 else m

        records = []
        for i, o in enumerate(outputs):
            if maps[i] is None:
                records.append(undefined(f"for the off-target class {off[i]}: {reasons[i]}", off_class=off[i]))
                continue
            v = ssim_flat(norm(at(o)), norm(at(maps[i])))
            records.append({"value": v, "off_class": off[i]} if np.isfinite(v)
                           else undefined("SSIM undefined (both maps constant)", off_class=off[i]))
        return records


__all__ += ["RandomLogit", "off_target_class", "ssim_flat"]
