"""The learned mask (meaningful perturbation) on toy models whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.contracts import ClassInfo, Model
from saliency_bench.registry import get_method
from saliency_bench.targets import as_target_tensor, target_probability
from saliency_bench.methods._perturb import gaussian_blur
from saliency_bench.methods.mask import (circular_init, jitter_offsets, learn_mask, mask_heatmap, mask_side,
                                         smooth_mask, total_variation, _layer_defaults)

SIZE = 128
ROWS, COLS = slice(24, 72), slice(56, 104)  # the patch the toy model reads, on the 8-px grid


class PatchReader(nn.Module):
    """logit 0 = 10 * (mean of the patch - 2.5), logit 1 = 0: the probability of class 0 is high
    for the bright patch and falls when the patch is blurred; nothing else matters."""

    def __init__(self, rows: slice = ROWS, cols: slice = COLS) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 10 * (x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3)) - 2.5) + 0 * self.dummy
        return torch.stack([v, torch.zeros_like(v)], dim=1)


def toy_model(net: nn.Module, size: int = SIZE, name: str = "toy", aliases=None) -> Model:
    classes = [ClassInfo(i, f"n{i:08d}", f"class{i}") for i in range(2)]
    return Model(name=name, net=net, input_size=(size, size), mean=(0.0,) * 3, std=(1.0,) * 3,
                 classes=classes, aliases=aliases or {})


def patch_images() -> torch.Tensor:
    x = torch.zeros(2, 3, SIZE, SIZE)
    x[0, :, ROWS, COLS] = 3.0
    x[1, :, ROWS, COLS] = 2.8
    return x


def inside_outside(heat: torch.Tensor) -> tuple[float, float]:
    inside = torch.zeros_like(heat, dtype=torch.bool)
    inside[ROWS, COLS] = True
    return float(heat[inside].mean()), float(heat[~inside].mean())


def test_deletion_mask_deletes_exactly_the_patch_the_score_depends_on():
    model = toy_model(PatchReader())
    # l1/l2 for a 16x16 mask whose score term is a toy's: the paper's 1e-4/1e-2 suit 28x28
    # masks on ImageNet networks
    maps, info = get_method("mask", iterations=60, l1=1e-3, l2=1e-4).explain(
        model, patch_images(), as_target_tensor([0, 0]))
    assert maps.shape == (2, SIZE, SIZE)
    for b in range(2):
        inside, outside = inside_outside(maps[b])
        assert inside > 0.8 and outside < 0.15, (inside, outside)
    assert bool(info["converged"].all())
    assert (info["score_after"] < 0.1 * info["score_before"]).all()


def test_preservation_mask_keeps_exactly_the_patch_the_score_depends_on():
    model = toy_model(PatchReader())
    maps, info = get_method("mask_preserve", iterations=60, l1=1e-3, l2=1e-4).explain(
        model, patch_images(), as_target_tensor([0, 0]))
    for b in range(2):
        inside, outside = inside_outside(maps[b])
        assert inside > 0.9 and outside < 0.2, (inside, outside)
    assert (info["score_after"] > 0.9 * info["score_before"]).all()
    assert bool(info["converged"].all())


def test_batched_mask_equals_per_image_masks_with_seeds_seed_and_seed_plus_one():
    model = toy_model(PatchReader())
    x = patch_images()
    t = as_target_tensor([0, 0])
    batched, info = learn_mask(model, x, t, iterations=15, seed=7)
    for b in range(2):
        single, info1 = learn_mask(model, x[b:b + 1], t[b:b + 1], iterations=15, seed=7 + b)
        torch.testing.assert_close(batched[b:b + 1], single, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(info["loss"][b:b + 1], info1["loss"], rtol=1e-4, atol=1e-5)


def test_jitter_offsets_are_per_image_streams_uniform_over_count_values():
    off = jitter_offsets(3, 4, 300, 5, "cpu")
    assert off.shape == (300, 4, 2) and off.min() == 0 and off.max() == 4
    assert torch.equal(off[:, 2], jitter_offsets(5, 1, 300, 5, "cpu")[:, 0])  # stream seed + i
    assert not torch.equal(off[:, 0], off[:, 1])
    counts = torch.bincount(off.flatten(), minlength=5).float() / off.numel()
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.03)
    assert int(jitter_offsets(0, 2, 300, 4, "cpu").max()) == 3  # np.random.randint(4): 0..3


class InputRecorder(nn.Module):
    """Records every batch the network sees; scores like PatchReader."""

    def __init__(self) -> None:
        super().__init__()
        self.reader = PatchReader()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.reader(x)


@pytest.mark.parametrize("mode", ["resize", "pad"])
def test_each_step_sees_the_jitter_image_cropped_at_that_steps_offset(mode):
    """With nothing perturbed and lr = 0 the mask stays 1, so step t's input is the jitter
    image itself cropped at offsets[t]: the resize views (authors' ``randint(4)``: 0..3) or
    the input replicated on the right and bottom (0..4)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, SIZE, SIZE)
    big = torch.rand(2, 3, SIZE + 4, SIZE + 4)  # stands for the original resized to 132
    net = InputRecorder()
    steps = 12
    learn_mask(toy_model(net), x, as_target_tensor([0, 0]), iterations=steps, lr=0.0, init="ones", seed=5,
               jitter_mode=mode, jittered=big, blurred_jittered=torch.zeros_like(big),
               blurred=torch.zeros_like(x))
    loop = net.seen[2:2 + steps]  # after f(x) and the objective at the initial mask
    source = big if mode == "resize" else torch.nn.functional.pad(x, (0, 4, 0, 4), mode="replicate")
    offsets = jitter_offsets(5, 2, steps, 4 if mode == "resize" else 5, "cpu")
    for t, seen in enumerate(loop):
        for b in range(2):
            oy, ox = offsets[t, b].tolist()
            torch.testing.assert_close(seen[b], source[b, :, oy:oy + SIZE, ox:ox + SIZE], rtol=0, atol=1e-6)
    assert int(offsets.max()) == (3 if mode == "resize" else 4)


def test_the_blurred_view_is_the_perturbation_and_a_direct_call_falls_back_to_blurring_the_input():
    model = toy_model(PatchReader())
    x = patch_images()
    t = as_target_tensor([0, 0])
    view = torch.full_like(x, 2.0)  # a "blurred original" that the input blur could never give
    _, with_view = learn_mask(model, x, t, iterations=2, blurred=view)
    _, direct = learn_mask(model, x, t, iterations=2)
    _, as_input = learn_mask(model, x, t, iterations=2, blur_source="input", blurred=view)
    torch.testing.assert_close(with_view["score_blurred"], target_probability(model.net(view), t))
    expected = target_probability(model.net(gaussian_blur(x, 10.0)), t)
    torch.testing.assert_close(direct["score_blurred"], expected)
    torch.testing.assert_close(as_input["score_blurred"], expected)  # blur_source="input" ignores the view


def reference_radius(model: Model, x: torch.Tensor, radii: np.ndarray, game: str) -> float:
    """docs/PROTOCOLS.md §6, written out one radius at a time with SciPy's filter."""
    from scipy.ndimage import gaussian_filter

    h, w = x.shape[-2:]
    null = torch.from_numpy(np.stack([gaussian_filter(c, 10, mode="nearest") for c in x[0].numpy()]))[None]
    t = as_target_tensor([0])

    def f(img: torch.Tensor) -> float:
        return float(target_probability(model.net(img.float()), t))

    f_x, f_null = f(x), f(null)
    yy, xx = np.mgrid[:h, :w]
    for r in radii:
        disc = gaussian_filter(((xx - w // 2) ** 2 + (yy - h // 2) ** 2 <= r * r).astype(np.float64), 10,
                               mode="nearest")
        keep = torch.from_numpy(1 - disc if game == "deletion" else disc)
        norm = (f(x * keep + null * (1 - keep)) - f_null) / (f_x - f_null)
        if (norm <= 0.01) if game == "deletion" else (norm >= 0.99):
            return float(r)
    return -1.0


@pytest.mark.parametrize("game", ["deletion", "preservation"])
def test_radius_search_picks_the_smallest_radius_of_the_documented_rule(game):
    model = toy_model(PatchReader(slice(50, 78), slice(54, 82)))  # a patch near the centre
    x = torch.zeros(1, 3, SIZE, SIZE)
    x[0, :, 50:78, 54:82] = 3.0
    radii = torch.arange(0.0, 176.0, 5.0)
    null = gaussian_blur(x, 10.0)
    keep, radius = circular_init(model.net, x, null, as_target_tensor([0]), game, radii, 0.01, 10.0, chunk=16)
    expected = reference_radius(model, x, radii.numpy(), game)
    assert 0 < expected < 175  # the constructed case is not decided by the first or last radius
    assert float(radius[0]) == expected
    # the initial mask is that disc: perturbed inside for deletion, kept inside for preservation
    centre, corner = float(keep[0, 0, SIZE // 2, SIZE // 2]), float(keep[0, 0, 0, 0])
    # (a soft disc: sigma 10 leaves a small disc's centre short of 0 or 1)
    assert (centre < 0.2 and corner > 0.95) if game == "deletion" else (centre > 0.8 and corner < 0.05)


@pytest.mark.parametrize("game", ["deletion", "preservation"])
def test_radius_search_falls_back_to_the_largest_radius_when_blur_changes_nothing(game):
    """The released code's ``radii[first_i]`` with ``first_i = -1``: deletion starts with (nearly)
    everything perturbed, preservation with (nearly) everything kept."""
    from scipy.ndimage import gaussian_filter

    model = toy_model(PatchReader())
    x = torch.full((1, 3, SIZE, SIZE), 3.0)  # a flat image: its blur is itself, f(x) = f(blurred)
    radii = torch.arange(0.0, 176.0, 5.0)
    keep, radius = circular_init(model.net, x, gaussian_blur(x, 10.0), as_target_tensor([0]), game,
                                 radii, 0.01, 10.0, chunk=64)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = gaussian_filter((((xx - SIZE // 2) ** 2 + (yy - SIZE // 2) ** 2) <= 175.0 ** 2).astype(np.float64), 10,
                           mode="nearest")
    expected = 1 - disc if game == "deletion" else disc
    assert float(radius[0]) == -1.0
    np.testing.assert_allclose(keep[0, 0].numpy(), expected, atol=1e-5)
    assert float(keep.max()) < 0.05 if game == "deletion" else float(keep.min()) > 0.95


def test_mask_side_is_28_for_224_and_32_for_227():
    assert mask_side(224) == 28 and mask_side(227) == 32 and mask_side(128) == 16


def test_total_variation_is_the_sum_of_gradient_norms_to_the_beta():
    m = torch.zeros(1, 1, 3, 3)
    m[0, 0, 1, 1] = 1.0
    # forward differences: (0,1) and (1,0) see +1 one way; (1,1) sees -1 both ways -> sqrt(2)
    assert float(total_variation(m, 3.0)) == pytest.approx(1 + 1 + 2 ** 1.5, rel=1e-5)
    assert float(total_variation(m, 2.0)) == pytest.approx(1 + 1 + 2, rel=1e-5)


class TwoStage(nn.Module):
    """A 'pool' layer (4x4 average) then a head that reads a patch of its activation."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.head = PatchReader(slice(6, 18), slice(14, 26))  # = input rows 24:72, cols 56:104

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))


def test_layer_mask_is_learned_on_the_activation_grid_and_deletes_the_patch_there():
    model = toy_model(TwoStage(), aliases={"pool3": "pool"})
    maps, info = get_method("mask", layer="pool3", iterations=60, l1=1e-3, l2=1e-4).explain(
        model, patch_images(), as_target_tensor([0, 0]))
    assert maps.shape == (2, SIZE // 4, SIZE // 4)
    for b in range(2):
        # zeroing a third of the activation already kills the score, so l1 stops there:
        # the deletion is partial but confined to the patch
        inside = float(maps[b, 6:18, 14:26].mean())
        outside = maps[b].clone()
        outside[6:18, 14:26] = 0
        assert inside > 0.2 and float(outside.sum()) / (32 * 32 - 12 * 12) < 0.05 * inside
    assert (info["score_after"] < 0.1 * info["score_before"]).all()
    assert torch.isnan(info["init_radius"]).all() and bool(info["converged"].all())


def test_layer_l1_l2_defaults_follow_the_per_layer_tables():
    vgg_like = toy_model(TwoStage(), name="vgg16", aliases={"pool3": "pool", "pool5": "head"})
    assert _layer_defaults(vgg_like, "pool3") == (1e-4, 1e-2)
    assert _layer_defaults(vgg_like, "head") == (1e-2, 1e-3)  # a module path finds its alias
    alex_like = toy_model(TwoStage(), name="alexnet", aliases={"relu3": "pool"})
    assert _layer_defaults(alex_like, "relu3") == (5e-3, 1e-2)
    assert _layer_defaults(toy_model(TwoStage(), aliases={"pool3": "pool"}), "pool3") is None


def test_mask_top5_targets_the_five_top_predicted_classes():
    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.linspace(-1, 1, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3))[:, None] * self.w  # class 9 highest when the image is bright

    classes = [ClassInfo(i, f"n{i:08d}", f"c{i}") for i in range(10)]
    model = Model(name="toy10", net=Fixed(), input_size=(32, 32), mean=(0.0,) * 3, std=(1.0,) * 3,
                  classes=classes)
    x = torch.ones(1, 3, 32, 32) * 5
    _, info = get_method("mask_top5", iterations=2).explain(model, x, as_target_tensor([0]))
    logits = model.net(x)
    top5 = torch.softmax(logits, 1)[0, 5:].sum()
    assert float(info["score_before"][0]) == pytest.approx(float(top5), rel=1e-5)


def test_nan_is_reported_as_not_converged_not_hidden():
    class NaNAfterStart(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            v = x.mean(dim=(1, 2, 3))
            return torch.stack([torch.sqrt(v - 10), v], dim=1)  # NaN for any image here

    model = toy_model(NaNAfterStart(), size=32)
    _, info = get_method("mask", iterations=3, init="ones").explain(model, torch.rand(1, 3, 32, 32),
                                                                     as_target_tensor([0]))
    assert not bool(info["converged"][0])


@pytest.mark.parametrize("game", ["deletion", "preservation"])
def test_a_plateau_of_the_mask_gives_exactly_tied_maxima(game):
    """The heatmap's maximum on a plateau is a tie (which the pointing game averages), not the
    pixel where float32 rounding landed highest."""
    m = torch.zeros(1, 1, 28, 28) if game == "preservation" else torch.ones(1, 1, 28, 28)
    m[0, 0, 5:20, 12:27] = 1.0 if game == "preservation" else 0.0  # the salient block
    heat = mask_heatmap(m, (224, 224), 8, 5.0, game)[0]
    top = heat == heat.max()
    assert float(heat.max()) == 1.0
    ys, xs = torch.nonzero(top, as_tuple=True)
    # the plateau's interior (>= 4 sigma from its edges), wholly tied
    assert top[5 * 8 + 20:20 * 8 - 20, 12 * 8 + 20:27 * 8 - 20].all()
    assert ys.float().mean() == pytest.approx((5 * 8 + 20 * 8 - 1) / 2, abs=2)
    # mathematically the same map as the float32 smoothing
    smooth = smooth_mask(m, (224, 224), 8, 5.0)[0, 0]
    torch.testing.assert_close(heat, 1 - smooth if game == "deletion" else smooth, rtol=0, atol=1e-6)


def test_cuda_graph_option_leaves_the_cpu_path_unchanged():
    model = toy_model(PatchReader())
    x, t = patch_images(), as_target_tensor([0, 0])
    a, ia = learn_mask(model, x, t, iterations=6, seed=3)
    b, ib = learn_mask(model, x, t, iterations=6, seed=3, cuda_graph=True)
    assert torch.equal(a, b) and torch.equal(ia["loss"], ib["loss"])


@pytest.mark.parametrize("bad", [{"blur_source": "pil"}, {"jitter_mode": "shift"}, {"game": "both"}])
def test_unknown_readings_are_refused(bad):
    with pytest.raises(ValueError):
        learn_mask(toy_model(PatchReader()), patch_images(), as_target_tensor([0, 0]), iterations=1, **bad)


def test_amp_option_runs_and_learns_the_same_deletion():
    model = toy_model(PatchReader())
    maps, info = get_method("mask", iterations=60, l1=1e-3, l2=1e-4, amp=True).explain(
        model, patch_images(), as_target_tensor([0, 0]))
    for b in range(2):
        inside, outside = inside_outside(maps[b])
        assert inside > 0.8 and outside < 0.15, (inside, outside)
    assert maps.dtype == torch.float32 and bool(info["converged"].all())


def test_the_registered_mask_parameters_are_the_settings_fields_with_the_same_defaults():
    """``mask``'s keywords (what the registry and ``list methods`` read) and
    :class:`MaskSettings` (what travels inside) must not drift apart."""
    import dataclasses
    import inspect

    from saliency_bench.methods.mask import VIEWS, MaskSettings, mask

    fields = {f.name: f.default for f in dataclasses.fields(MaskSettings)}
    params = {p.name: p.default for p in inspect.signature(mask).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in VIEWS}
    assert params == {k: fields[k] for k in params}
    assert set(fields) - set(params) == {"radius_step", "radius_max", "init_threshold"}
