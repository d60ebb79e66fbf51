"""The perturbation methods' views: images made from the original before the run's resize,
checked against PIL itself (the authors' ``get_blurred_img``: PIL ``GaussianBlur(10)`` of the
original image, then the resize)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from saliency_bench.imageio import load_rgb
from saliency_bench.methods._perturb import gaussian_blur
from saliency_bench.registry import get_method

pytestmark = pytest.mark.shared_data

PERTURBATION_METHODS = ("mask", "mask_top5", "mask_preserve", "blur_occlusion", "variable_occlusion")


@pytest.fixture(scope="module")
def street(shared_data) -> Image.Image:
    """A 640x480 COCO photo: its own resolution is far from the network's."""
    return load_rgb(shared_data / "coco128" / "train2017" / "000000000009.jpg")


def pil_reference(image: Image.Image, sigma: float, size: tuple[int, int]) -> np.ndarray:
    blurred = image.filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(blurred.resize((size[1], size[0]), Image.BILINEAR)).transpose(2, 0, 1)


@pytest.mark.parametrize("which", ["photo", "street"])
def test_blurred_view_is_pil_gaussian_blur_of_the_original_then_the_resize(which, request):
    image = request.getfixturevalue(which)
    for name in PERTURBATION_METHODS:
        view = get_method(name).make_view("blurred", image, (224, 224))
        assert view.dtype == torch.uint8 and view.shape == (3, 224, 224)
        np.testing.assert_array_equal(view.numpy(), pil_reference(image, 10.0, (224, 224)))
    view = get_method("mask", blur_sigma=4.0).make_view("blurred", image, (224, 200))
    np.testing.assert_array_equal(view.numpy(), pil_reference(image, 4.0, (224, 200)))


def test_jitter_views_are_the_original_resized_to_input_plus_jitter(street):
    m = get_method("mask")
    big = m.make_view("jittered", street, (224, 224))
    np.testing.assert_array_equal(big.numpy(), np.asarray(street.resize((228, 228), Image.BILINEAR)).transpose(2, 0, 1))
    np.testing.assert_array_equal(m.make_view("blurred_jittered", street, (224, 224)).numpy(),
                                  pil_reference(street, 10.0, (228, 228)))
    for params in ({"jitter": 0}, {"jitter_mode": "pad"}):
        assert get_method("mask", **params).make_view("jittered", street, (224, 224)) is None
        assert get_method("mask", **params).make_view("blurred_jittered", street, (224, 224)) is None


def test_views_are_not_made_for_the_paper_text_reading(street):
    for name in PERTURBATION_METHODS:
        m = get_method(name, blur_source="input")
        assert m.make_view("blurred", street, (224, 224)) is None


def test_one_blurred_view_serves_every_perturbation_method():
    """The same function read with the same parameters: the harness computes it once."""
    keys = {get_method(n).view_key("blurred") for n in PERTURBATION_METHODS}
    assert len(keys) == 1
    assert get_method("mask", blur_sigma=5.0).view_key("blurred") not in keys


def test_the_original_resolution_blur_is_less_than_half_as_strong_on_a_640_px_photo(street):
    """Why the view exists: sigma 10 on the 640x480 original is about sigma 10 * 224/640 = 3.5
    at 224 horizontally (4.7 vertically), not the sigma 10 of blurring the 224 input."""
    from saliency_bench.imageio import to_input

    x = to_input(street, (224, 224)).float()[None]
    view = get_method("mask").make_view("blurred", street, (224, 224)).float()[None]
    err = {s: float((gaussian_blur(x, s) - view).abs().mean()) for s in (2, 3, 4, 5, 6, 8, 10)}
    best = min(err, key=err.get)
    assert 3 <= best <= 5 and err[10] > 5 * err[best], err
