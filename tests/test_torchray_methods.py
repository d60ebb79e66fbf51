"""deconvnet, rise and extremal_perturbation against TorchRay's own functions (``torchray`` 1.0,
the program of its pointing-game table, ``docs/pointing.csv``).

* deconvnet: equal maps on VGG16 and ResNet50 with random weights (biases and BatchNorm
  randomised, see test_torchray_parity.py) and on a small CNN: the rule is a ReLU of the signal
  at every ReLU, nothing else changes, so the maps are bit-identical (measured) and the test
  allows 1e-6 of the largest value.
* rise: TorchRay's masks are reproduced (its generator replayed draw for draw): ours and
  ``torchray.attribution.rise.rise`` with the same ``seed`` give the same maps; and with masks
  handed in (TorchRay's ``filter_masks``) the same maps too. The masked copy is ``x + (1 - M)(0 -
  x)`` here, ``x * M`` there, and the sums run in other orders: measured 4.5e-7 of the largest
  value; allowed 1e-5.
* extremal_perturbation: no randomness in TorchRay's function. The batch is optimised at once
  and each image follows TorchRay's per-image trajectory: the masks are TorchRay's value for
  value (the same pooling kernels on the same layout), the gradient of the pooling is a closed
  form (round-off apart from autograd's): measured 3.3e-5 of the largest value after 30 steps on
  the small CNN (7.7e-7 with autograd's gradient); allowed 1e-4 (the optimisation is not
  contracting: its area constraint sorts the mask, so masks off by one ulp break its many ties
  otherwise and end 8% apart after 30 steps, measured; a different step, area or smoothing changes
  the map by more than 1e-2, asserted).
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from small_nets import inputs40, small_model  # noqa: E402

from saliency_bench.imageio import load_rgb, to_input  # noqa: E402
from saliency_bench.registry import get_method, get_model  # noqa: E402

pytest.importorskip("torchray")
from torchray.attribution.deconvnet import deconvnet as tr_deconvnet  # noqa: E402
from torchray.attribution.extremal_perturbation import extremal_perturbation as tr_extremal  # noqa: E402
from torchray.attribution.rise import rise as tr_rise  # noqa: E402

from saliency_bench.methods.rise import rise_maps, rise_masks  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "images"
TARGETS = [1, 3, 5]


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(((ours - ref).flatten(1).abs().amax(1) / ref.flatten(1).abs().amax(1)).max())


@pytest.fixture(scope="module")
def small():
    return small_model(), inputs40()


# ------------------------------------------------------------------------------------ deconvnet
def test_deconvnet_equals_torchray_on_a_small_cnn(small):
    model, x = small
    ours, _ = get_method("deconvnet").explain(model, x, TARGETS)
    ref = tr_deconvnet(model.net, x.clone(), torch.tensor(TARGETS))[:, 0]
    assert rel_err(ours, ref) <= 1e-6
    grad, _ = get_method("gradient").explain(model, x, TARGETS)
    assert rel_err(grad, ref) > 1e-2  # the rule ran


@pytest.mark.parametrize("arch", ["vgg16", "resnet50"])
def test_deconvnet_equals_torchray_on_vgg16_and_resnet50(arch):
    from test_torchray_parity import PHOTOS, randomise

    model = get_model(arch, weights="random")
    randomise(model.net)
    ref_net = copy.deepcopy(model.net)
    x = model.preprocess(torch.stack([to_input(load_rgb(SAMPLE / p), model.input_size) for p in PHOTOS]))
    t = [3, 7]
    ours, _ = get_method("deconvnet").explain(model, x, t)
    ref = tr_deconvnet(ref_net, x.clone(), torch.tensor(t))[:, 0]
    assert ours.shape == (2, 224, 224)
    assert rel_err(ours, ref) <= 1e-6
    # smooth=0.02, TorchRay's table setting: TorchRay smooths the same way
    ours_s, _ = get_method("deconvnet", smooth=0.02).explain(model, x, t)
    ref_s = tr_deconvnet(ref_net, x.clone(), torch.tensor(t), smooth=0.02)[:, 0]
    assert rel_err(ours_s, ref_s) <= 1e-5


# ----------------------------------------------------------------------------------------- rise
def test_rise_reproduces_torchrays_masks_and_maps(small):
    model, x = small
    ours, _ = get_method("rise", masks=256).explain(model, x, TARGETS)
    ref = torch.cat([tr_rise(model.net, x[i:i + 1], num_masks=256, seed=0)[:, c] for i, c in enumerate(TARGETS)])
    assert ours.shape == (3, 40, 40)
    assert rel_err(ours, ref) <= 1e-5
    other, _ = get_method("rise", masks=256, seed=1).explain(model, x, TARGETS)
    assert rel_err(other, ref) > 1e-2  # another seed, other masks


def test_rise_with_masks_handed_in_equals_torchray(small):
    model, x = small
    g = torch.Generator().manual_seed(5)
    masks = (torch.rand(96, 1, 40, 40, generator=g) < 0.5).float() * torch.rand(96, 1, 1, 1, generator=g)
    ours = rise_maps(model.net, x, torch.tensor(TARGETS)[:, None], lambda a, b: masks[a:b, 0], 96, chunk=40)
    ref = torch.cat([tr_rise(model.net, x[i:i + 1], num_masks=96, filter_masks=masks)[:, c]
                     for i, c in enumerate(TARGETS)])
    assert rel_err(ours, ref) <= 1e-5


def test_rise_masks_are_torchrays_at_224():
    """The 8000 masks of the default (checked on the first chunks and the last) for a 224 input."""
    torch.manual_seed(0)  # TorchRay draws from the global generator after seeding it
    from torchray.attribution import rise as tr

    got = rise_masks(8000, (224, 224), start=0, stop=64)
    # TorchRay's generation for its first two chunks of 32, replayed with its own helper
    ref = []
    for _ in range(2):
        grid = (torch.rand(32, 1, 7, 7) < 0.5).float()
        up = tr._upsample_reflect(grid, (256, 256))
        sx, sy = torch.randint(0, 32, (32,)), torch.randint(0, 32, (32,))
        ref += [up[i, 0, sx[i]:sx[i] + 224, sy[i]:sy[i] + 224] for i in range(32)]
    assert torch.equal(got, torch.stack(ref))


# ---------------------------------------------------------------------------- extremal perturbation
def test_extremal_perturbation_batched_equals_torchrays_per_image_function(small):
    model, x = small
    areas = [0.05, 0.2]
    ours, _ = get_method("extremal_perturbation", iterations=30, areas=areas).explain(model, x, TARGETS)
    ref = torch.cat([tr_extremal(model.net, x[i:i + 1], c, areas=areas, max_iter=30, smooth=0.09)[0].sum(0)
                     for i, c in enumerate(TARGETS)])
    assert ours.shape == (3, 40, 40)
    assert rel_err(ours, ref) <= 1e-4
    # the same with one image per forward pass (gradients accumulated over passes)
    split, _ = get_method("extremal_perturbation", iterations=30, areas=areas, chunk=1).explain(model, x, TARGETS)
    assert rel_err(split, ref) <= 1e-4
    for other in ({"iterations": 20}, {"smooth": 0.0}):
        params = {"iterations": 30, "areas": areas, **other}
        diff, _ = get_method("extremal_perturbation", **params).explain(model, x, TARGETS)
        assert rel_err(diff, ref) > 1e-2, other


def test_extremal_perturbation_defaults_are_torchrays_pointing_setting():
    m = get_method("extremal_perturbation")
    assert m.params == {"areas": "voc", "iterations": 800, "levels": 8, "step": 7, "sigma": 21.0, "smooth": 0.09,
                        "jitter": True, "chunk": 0}
    from saliency_bench.methods.extremal_perturbation import AREAS, area_list

    assert AREAS == {"voc": (0.025, 0.05, 0.1, 0.2), "coco": (0.018, 0.025, 0.05, 0.1)}
    assert area_list("coco") == (0.018, 0.025, 0.05, 0.1) and area_list([0.1]) == (0.1,)
    with pytest.raises(ValueError, match="areas"):
        area_list("imagenet")
    r = get_method("rise")
    assert (r.params["masks"], r.params["cells"], r.params["p"], r.params["seed"]) == (8000, 7, 0.5, 0)


@pytest.mark.parametrize("shape", [(40, 40), (50, 37), (224, 224)])
def test_extremal_perturbation_masks_are_torchrays_bit_for_bit(shape):
    """The mask generator against TorchRay's ``MaskGenerator``: the masks equal (its area
    constraint sorts them, so even an ulp would matter), the written-out gradient equal to
    autograd's through TorchRay's program to round-off (measured up to 2.9e-6 of the largest value)."""
    from torchray.attribution.extremal_perturbation import MaskGenerator as TRMaskGenerator

    from saliency_bench.methods.extremal_perturbation import MaskGenerator

    ours, ref = MaskGenerator(shape, 7, 21.0, "cpu"), TRMaskGenerator(shape, 7, 21)
    g = torch.Generator().manual_seed(0)
    p0 = torch.rand(4, 1, *ours.shape_in, generator=g)
    p0[:2] = 1  # the start of every optimisation, and where the clamp holds parameters after
    w_crop = torch.randn(4, 1, *shape, generator=g)
    w_full = torch.randn(4, 1, *ours.shape_out, generator=g)

    def run(gen):
        p = p0.clone().requires_grad_(True)
        cropped, full = gen.generate(p)
        ((cropped * w_crop).sum() + (full * w_full).sum()).backward()
        return cropped.detach(), full.detach(), p.grad

    (c, f, grad), (c_ref, f_ref, grad_ref) = run(ours), run(ref)
    assert torch.equal(c, c_ref) and torch.equal(f, f_ref)
    assert rel_err(grad.flatten(1), grad_ref.flatten(1)) <= 1e-5
