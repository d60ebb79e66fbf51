"""Robustness (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019), as
Captum 0.9's ``captum.metrics.sensitivity_max`` and ``captum.metrics.infidelity`` compute them.

Both perturb the model's input **after normalisation** (the tensor the network and the method are
given, as Captum perturbs the ``inputs`` it is handed), with noise drawn on the CPU from a generator
seeded by ``seed`` and the sample id (``road.sample_seed``), ``n_perturb_samples`` draws per sample in
the order Captum's perturbation function fills its ``repeat_interleave``-expanded batch; the noise is
then moved to the device, as Captum's ``default_perturb_func`` does (``torch.FloatTensor(...).uniform_``
then ``.to(device)``). The same seed gives the same noise on any device.

**Max-sensitivity** (``max_sensitivity``) re-runs **the method under test** on the perturbed inputs
(:meth:`~saliency_bench.contracts.ModelQuery.explain`: every sample's perturbations in one call, or
``max_examples_per_batch`` at a time; those maps are never cached nor scored as the method's, and their
time is the benchmark's cost column). With Captum's default perturbation (``default_perturb_func``:
``x + U(-r, r)``, ``perturb_radius`` r = 0.02) it is, per sample,
``max_j ||e(x + d_j) - e(x)|| / ||e(x)||`` (``norm_ord="fro"``: the 2-norm of the flattened maps), on
the maps at the method's own resolution (``resolution="map"``) or bilinear at the input's
(``"input"``). ``e(x)`` is the method's own map, the one every other benchmark scores. Lower is better.

**Infidelity** (``infidelity``) runs the model only: with Captum's docstring perturbation
(``perturb_fn``: ``I ~ N(0, 0.003)`` per input value, perturbed input ``x - I``, ``noise_std``), the map
``m`` bilinear at the input and repeated over its channels (Captum needs attributions of the input's
shape), ``a_j = sum(m * I_j)`` and ``b_j = f(x) - f(x - I_j)`` with ``f`` the target's pre-softmax score
(the logit; a set of classes: their log-sum-exp) or its softmax probability (``score``), it is
``mean_j (a_j - b_j)^2``, or with ``normalize=True`` (the default here, Captum's option and the paper's
code) ``mean_j (beta a_j - b_j)^2`` with ``beta = sum_j a_j b_j / sum_j a_j^2``, the least-squares
scale, so a map's arbitrary scale does not decide its rank. The forward passes are the model's
(float32); the scores, dot products and sums are taken in float64, since ``b_j`` is the difference of
two nearby scores (in float32 it keeps about three digits). Lower is better.

Degenerate samples (recorded with the reason, no value): an all-zero original map (max-sensitivity's
normaliser is 0; Captum divides by 1 there, which makes the value an absolute one on another scale),
a method that fails on a perturbed input, non-finite maps or scores.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import saliency_bench
from saliency_bench.contracts import Column, Sample

from .road import sample_seed
from .scalar import ScalarBenchmark, undefined

SCORES = ("logit", "probability")
RESOLUTIONS = ("map", "input")


def uniform_noise(seed: int, n: int, shape: Sequence[int], radius: float) -> torch.Tensor:
    """Captum's ``default_perturb_func`` noise for one sample: ``[n, *shape]`` float32 uniform in
    ``[-radius, radius)``, from a CPU generator seeded with ``seed``."""
    return torch.empty(int(n), *shape).uniform_(-float(radius), float(radius),
                                                generator=torch.Generator().manual_seed(int(seed)))


def normal_noise(seed: int, n: int, shape: Sequence[int], std: float) -> torch.Tensor:
    """The noise of Captum's infidelity docstring perturbation for one sample: ``[n, *shape]`` float32
    ``N(0, std)``, from a CPU generator seeded with ``seed``."""
    return torch.randn(int(n), *shape, generator=torch.Generator().manual_seed(int(seed))) * float(std)


def _vector_norm(v: torch.Tensor, ord_: Any) -> torch.Tensor:
    """``torch.norm(v, p=ord_, dim=1)`` of flattened rows, as Captum calls it (``"fro"``: the 2-norm)."""
    return torch.norm(v, p=ord_ if ord_ == "fro" else float(ord_), dim=1)


def _maps_at(maps: Sequence[np.ndarray], size: tuple[int, int], device) -> torch.Tensor:
    """``[N, H, W]`` float32 maps on ``device``: bilinear (``align_corners=False``, the harness's
    display resize, ``scalar.map_at_input``) to ``size`` in one call where they share a shape."""
    shapes = {tuple(np.shape(m)) for m in maps}
    if len(shapes) == 1:
        t = torch.from_numpy(np.ascontiguousarray(np.stack(maps), dtype=np.float32)).to(device)
        if t.shape[-2:] == size:
            return t
        return F.interpolate(t[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return torch.cat([_maps_at([m], size, device) for m in maps])


def _perturbed(x: torch.Tensor, n: int, noise: torch.Tensor, sign: float) -> torch.Tensor:
    """``n`` copies of each input (``repeat_interleave``, Captum's order) plus ``sign * noise``, in the
    input's memory format (the harness's channels-last batch stays channels-last)."""
    cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    out = x.repeat_interleave(n, dim=0) + sign * noise.to(x.device, x.dtype)
    return out.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


class _Robustness(ScalarBenchmark):
    uses_model = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if int(self.option("n_perturb_samples")) < 1:
            raise ValueError(f"{self.name}: n_perturb_samples must be at least 1")

    def _choice(self, key: str, allowed: Sequence[str]) -> None:
        if self.option(key) not in allowed:
            raise ValueError(f"{self.name}: {key} must be one of {', '.join(allowed)}, not {self.option(key)!r}")

    def _draws(self, samples: Sequence[Sample], query: Any, draw, scale: float):
        """``(x, B, n, noise)``: the batch's inputs, its size, the draws per sample, and the noise of every
        sample (``draw(seed, n, shape, scale)`` with the sample's seed), stacked in Captum's order."""
        if query is None:
            raise TypeError(f"{self.name} runs the model: score_batch needs query=")
        x, n = query.x, int(self.option("n_perturb_samples"))
        noise = torch.cat([draw(sample_seed(int(self.option("seed")), s.id), n, x.shape[1:], scale) for s in samples])
        return x, int(x.shape[0]), n, noise

    def score(self, sample: Sample, output: np.ndarray, input_size: tuple[int, int], *, query: Any = None) -> dict:
        return self.score_batch([sample], [output], input_size, query=query)[0]


@saliency_bench.benchmark("max_sensitivity")
class MaxSensitivity(_Robustness):
    """Max-sensitivity (Yeh et al. 2019) as Captum's sensitivity_max with its default perturbation: the
    largest relative change of the method's map, ||e(x+d) - e(x)|| / ||e(x)||, over uniform input noise
    d in [-0.02, 0.02]; lower is better.

    Options: ``n_perturb_samples`` (10), ``perturb_radius`` (0.02, of the normalised input), ``norm_ord``
    ("fro"; or a number: ``torch.norm``'s ``p``), ``resolution`` ("map": the method's own; "input":
    bilinear to the input), ``max_examples_per_batch`` (0: every perturbed input of the batch in one
    call of the method; else that many per call, as Captum's), ``bootstrap`` (1000), ``seed`` (the
    run's: the noise and the bootstrap).
    """

    name = "max_sensitivity"
    reruns_method = True
    # n_perturb_samples re-runs of the method per sample: 10 x (forward + backward) for a backprop
    # method, 10 x its whole cost for a perturbation method; heavy on a CPU
    cost = 100
    columns = (Column("max_sensitivity", "Max-sensitivity", "MaxSens", lower_is_better=True),)
    column = "max_sensitivity"
    defaults: dict[str, Any] = {"n_perturb_samples": 10, "perturb_radius": 0.02, "norm_ord": "fro",
                                "resolution": "map", "max_examples_per_batch": 0, "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._choice("resolution", RESOLUTIONS)
        if self.option("norm_ord") != "fro":
            float(self.option("norm_ord"))  # a number, or this says why not

    def protocol(self) -> dict[str, str]:
        return {self.column: (f"Captum sensitivity_max: max over {int(self.option('n_perturb_samples'))} "
                              f"perturbations x + U(-{float(self.option('perturb_radius')):g}, "
                              f"{float(self.option('perturb_radius')):g}) of the normalised input of "
                              f"||e(x+d) - e(x)||_{self.option('norm_ord')} / ||e(x)||, the method re-run "
                              f"on each (maps at the {self.option('resolution')} resolution); lower is better")}

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    query: Any = None) -> list[dict]:
        x, B, n, noise = self._draws(samples, query, uniform_noise, float(self.option("perturb_radius")))
        xp = _perturbed(x, n, noise, 1.0)
        rows = torch.arange(B).repeat_interleave(n)
        step = int(self.option("max_examples_per_batch")) or B * n
        maps: list[np.ndarray | None] = []
        reasons: list[str | None] = []
        for j in range(0, B * n, step):
            m, why = query.explain(x=xp[j:j + step], rows=rows[j:j + step])
            maps += list(m)
            reasons += list(why)
        records = []
        for i in range(B):
            mine = range(i * n, (i + 1) * n)
            bad = [(j - i * n, reasons[j]) for j in mine if maps[j] is None]
            if bad:
                k, why = bad[0]
                records.append(undefined(f"the method failed on perturbed input {k + 1} of {n}: {why}",
                                         failed_perturbations=len(bad)))
                continue
            size = (tuple(int(v) for v in input_size) if self.option("resolution") == "input"
                    else tuple(np.shape(outputs[i])))
            e0 = _maps_at([outputs[i]], size, "cpu").reshape(1, -1)
            ej = _maps_at([maps[j] for j in mine], size, "cpu").reshape(n, -1)
            norm0 = _vector_norm(e0, self.option("norm_ord"))
            if not torch.isfinite(e0).all() or not torch.isfinite(ej).all():
                records.append(undefined("non-finite values in the map or in a map of a perturbed input"))
                continue
            if float(norm0) == 0.0:
                records.append(undefined("the original map is all zero: no relative sensitivity (its norm, "
                                         "the normaliser, is 0)"))
                continue
            sens = _vector_norm(ej - e0, self.option("norm_ord")) / norm0
            if not torch.isfinite(sens).all():
                records.append(undefined("non-finite sensitivity (the maps' norms overflow)"))
                continue
            records.append({"value": float(sens.max()), "mean": float(sens.mean())})
        return records


@saliency_bench.benchmark("infidelity")
class Infidelity(_Robustness):
    """Infidelity (Yeh et al. 2019) as Captum's infidelity with its docstring's perturbation (I ~ N(0,
    0.003), input x - I): mean squared error between the map's dot product with I and the change of the
    target score f(x) - f(x - I), normalised by the least-squares scale beta; lower is better.

    Options: ``n_perturb_samples`` (10), ``noise_std`` (0.003, of the normalised input), ``normalize``
    (true: scaled by beta, as Captum's ``normalize=True`` and the paper's code; false: Captum's
    default, the map's own scale), ``score`` ("logit": the target's pre-softmax score; "probability":
    its softmax probability), ``bootstrap`` (1000), ``seed`` (the run's: the noise and the bootstrap).
    """

    name = "infidelity"
    cost = 11  # n_perturb_samples + 1 forward passes per sample
    columns = (Column("infidelity", "Infidelity", "Infid", lower_is_better=True),)
    column = "infidelity"
    defaults: dict[str, Any] = {"n_perturb_samples": 10, "noise_std": 0.003, "normalize": True,
                                "score": "logit", "bootstrap": 1000, "seed": 0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._choice("score", SCORES)

    def protocol(self) -> dict[str, str]:
        what = "pre-softmax score" if self.option("score") == "logit" else "softmax probability"
        norm = "normalize=True (beta-scaled)" if self.option("normalize") else "normalize=False"
        return {self.column: (f"Captum infidelity, {norm}: {int(self.option('n_perturb_samples'))} perturbations "
                              f"I ~ N(0, {float(self.option('noise_std')):g}) of the normalised input, the map "
                              f"(bilinear to the input, on every channel) dotted with I against the change of "
                              f"the target {what} f(x) - f(x - I); lower is better")}

    def _f(self, query: Any, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The target's score of each input, from the model's float32 logits taken to float64 (the
        difference f(x) - f(x - I) of two nearby scores would lose its last digits in float32)."""
        logits = query.logits(x).double()
        t = query.targets[rows].to(logits.device)
        return t.probability(logits) if self.option("score") == "probability" else t.score(logits)

    def score_batch(self, samples: Sequence[Sample], outputs, input_size: tuple[int, int], *,
                    query: Any = None) -> list[dict]:
        x, B, n, noise = self._draws(samples, query, normal_noise, float(self.option("noise_std")))
        dev = x.device
        noise = noise.to(dev)
        rows = torch.arange(B).repeat_interleave(n)
        f0 = self._f(query, x, torch.arange(B))
        fp = self._f(query, _perturbed(x, n, noise, -1.0), rows)
        m = _maps_at(list(outputs), tuple(int(v) for v in input_size), dev).double()  # [B, H, W]
        # Captum: sum over the input of attribution * perturbation; the map is the same on every channel
        # (in float64, as the scores: a and b are compared, and summed squared)
        a = torch.einsum("bnhw,bhw->bn", noise.double().sum(dim=1).view(B, n, *m.shape[1:]), m)
        b = (f0.repeat_interleave(n) - fp).view(B, n)
        if self.option("normalize"):
            aa, ab, bb = a.pow(2).sum(-1), (a * b).sum(-1), b.pow(2).sum(-1)
            beta = ab / torch.where(aa != 0, aa, torch.ones_like(aa))  # Captum's safe_div
            infid = (beta * beta * aa - 2 * beta * ab + bb) / n
        else:
            beta = None
            infid = (a - b).pow(2).sum(-1) / n
        f_ok = torch.isfinite(f0) & torch.isfinite(fp.view(B, n)).all(dim=1)
        m_ok = torch.isfinite(m.reshape(B, -1)).all(dim=1)
        infid, f_ok, m_ok = infid.cpu().tolist(), f_ok.cpu().tolist(), m_ok.cpu().tolist()
        beta = None if beta is None else beta.cpu().tolist()
        records = []
        for i in range(B):
            if not f_ok[i]:
                records.append(undefined("the model returned non-finite scores on the input or a perturbed input"))
            elif not m_ok[i]:
                records.append(undefined("non-finite values in the map"))
            elif not np.isfinite(infid[i]):
                records.append(undefined("non-finite infidelity (the map's dot products overflow)"))
            else:
                records.append({"value": float(infid[i]), **({} if beta is None else {"beta": float(beta[i])})})
        return records


__all__ = ["MaxSensitivity", "Infidelity", "uniform_noise", "normal_noise"]
