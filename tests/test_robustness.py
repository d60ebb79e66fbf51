"""Max-sensitivity and infidelity equal Captum 0.9's ``sensitivity_max`` and ``infidelity`` on real
ImageNet val images with the embedded model, for gradient, Grad-CAM and pytorch-grad-cam's GradCAM (a
pack method), Captum handed the very noise our benchmark draws (a ``perturb_func`` that replays it).

Tolerances. Max-sensitivity: relative 1e-5. Both sides run the same method on the same perturbed
inputs in the same batch (every perturbation of the batch in one call, as Captum's
``max_examples_per_batch=None``) and take float32 norms of the same maps; only the summation order of
the norms may differ (float32, ~1e-7 relative per map of 50k values). Infidelity: relative 1e-6.
The same float32 forward passes of the same inputs in the same batches (the query's batch size set
to Captum's one forward of every perturbed input), the scores taken to float64 on both sides (ours
does so; Captum is handed a forward that does), the dot products in float64 on both sides (ours
sums the channels first, Captum every value at once); what is left is the summation order. In
float32 the difference ``f(x) - f(x - I)`` of two nearby scores keeps only about three digits
(probabilities near 1: 1e-6 absolute error on a 1e-3 change), so either program's float32 result
is that far from the other's. The map is brought to the input with OpenCV's ``INTER_LINEAR`` on
Captum's side (the resize pytorch-grad-cam applies to its CAMs) and with the harness's bilinear
resize on ours."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from saliency_bench.benchmarks.road import sample_seed
from saliency_bench.benchmarks.robustness import Infidelity, MaxSensitivity, normal_noise, uniform_noise
from saliency_bench.contracts import ModelQuery
from saliency_bench.registry import get_method
from saliency_bench.runner import rerun

from metrics_data import METHODS, imagenet_val, maps

captum_metrics = pytest.importorskip("captum.metrics")
N = 10


@pytest.fixture(scope="module")
def imagenet2(shared_data, lite0):
    return imagenet_val(shared_data, lite0, 2)


def _explanation_func(model, method):
    m = get_method(method)

    def explain(inputs, target):
        inputs = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():  # Captum calls it under no_grad
            out, _ = m.explain(model, inputs, torch.as_tensor(target).view(-1, 1))
        return (out.detach().float(),)  # a tuple: Captum iterates over the original explanation

    return explain


@pytest.mark.parametrize("method", METHODS)
def test_max_sensitivity_equals_captum_sensitivity_max(method, imagenet2, lite0):
    samples, x, t = imagenet2
    own = maps(lite0, method, "mprt", x, t)
    recs = MaxSensitivity(bootstrap=0).score_batch(
        samples, own, lite0.input_size, query=ModelQuery(lite0, x, t, explainer=rerun(get_method(method))))
    noise = torch.cat([uniform_noise(sample_seed(0, s.id), N, x.shape[1:], 0.02) for s in samples])
    calls = []

    def replay(inputs, radius):  # Captum's default_perturb_func, with our draws
        calls.append((inputs.shape[0], radius))
        return (inputs + noise,)

    ref = captum_metrics.sensitivity_max(_explanation_func(lite0, method), x, perturb_func=replay,
                                         perturb_radius=0.02, n_perturb_samples=N, norm_ord="fro",
                                         target=torch.tensor([c[0] for c in t]))
    assert calls == [(len(samples) * N, 0.02)]
    for i, r in enumerate(recs):
        assert r["value"] == pytest.approx(float(ref[i]), rel=1e-5), (method, i, r, ref)
    assert all(r["value"] > 0 for r in recs)


def _at_input_cv2(m: np.ndarray, size) -> np.ndarray:
    import cv2

    m = np.asarray(m, np.float32)
    return m if m.shape == tuple(size) else cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("method,normalize,score", [(m, True, "logit") for m in METHODS]
                         + [("gradient", False, "logit"), ("grad_cam", True, "probability")])
def test_infidelity_equals_captum_infidelity(method, normalize, score, imagenet2, lite0):
    samples, x, t = imagenet2
    own = maps(lite0, method, "mprt", x, t)
    q = ModelQuery(lite0, x, t, batch_size=len(samples) * N)  # the batches Captum forwards
    recs = Infidelity(bootstrap=0, normalize=normalize, score=score).score_batch(samples, own, lite0.input_size,
                                                                                 query=q)
    assert q.passes == len(samples) * (N + 1)  # forward passes only: the method is not re-run
    noise = torch.cat([normal_noise(sample_seed(0, s.id), N, x.shape[1:], 0.003) for s in samples])

    def perturb_fn(inputs):  # Captum's docstring perturbation, with our draws (float32 inputs, float64 I)
        return noise.double(), inputs - noise

    attributions = torch.from_numpy(np.stack([_at_input_cv2(o, lite0.input_size) for o in own]))
    attributions = attributions[:, None].expand(-1, x.shape[1], -1, -1).double().contiguous()
    # the model's float32 logits, then in float64 (as ours: a difference of two nearby scores)
    forward = (lambda v: lite0.net(v).double()) if score == "logit" else \
        (lambda v: torch.softmax(lite0.net(v).double(), dim=1))
    ref = captum_metrics.infidelity(forward, perturb_fn, x, attributions, target=torch.tensor([c[0] for c in t]),
                                    n_perturb_samples=N, normalize=normalize)
    for i, r in enumerate(recs):
        assert r["value"] == pytest.approx(float(ref[i]), rel=1e-6, abs=1e-12), (method, i, r, ref)


def test_noise_is_seeded_per_sample_and_is_captums_draw():
    a = uniform_noise(7, 3, (3, 4, 4), 0.02)
    assert torch.equal(a, uniform_noise(7, 3, (3, 4, 4), 0.02)) and a.abs().max() <= 0.02
    torch.manual_seed(7)  # Captum's default_perturb_func: FloatTensor(size).uniform_(-r, r)
    assert torch.equal(a, torch.FloatTensor(3, 3, 4, 4).uniform_(-0.02, 0.02))
    g = normal_noise(7, 2000, (3, 8, 8), 0.003)
    assert g.std().item() == pytest.approx(0.003, rel=0.02)
