"""The numerical operations of saliency_bench.ops against independent programs: PIL's resize and
blur, torch's interpolate, OpenCV's bicubic resize, scipy's Gaussian filter; the numba kernels'
dispatch; and the shortcuts of the imresize box kernel against its plain scans and PIL."""
from __future__ import annotations

import importlib
import types

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from saliency_bench.benchmarks.localization import DEFAULT_ALPHAS, THRESHOLDINGS, authors_boxes
from saliency_bench.ops import pil_resize
from saliency_bench.ops.kept_order import RADIX_FROM, kept_counts, kept_facts, map_order, order_and_counts, \
    sorted_order, sorted_values
from saliency_bench.ops.blur import gaussian_blur, pil_gaussian_blur
from saliency_bench.ops.resize import resize_map

KERNEL_MODULES = ("saliency_bench.ops.contour_pixels", "saliency_bench.ops.contour_runs",
                  "saliency_bench.ops.pil_resize", "saliency_bench.ops.kept_order",
                  "saliency_bench.benchmarks.maxboxacc")


def test_compiled_kernels_leave_every_modules_globals_plain_python():
    """After every kernel set is compiled and run, no module's global is a numba dispatcher: the
    sets dispatch explicitly (jit.compiled(name)), they do not rebind other modules' names."""
    m = np.random.default_rng(0).random((9, 9)).astype(np.float32)
    authors_boxes(m, (20, 20), DEFAULT_ALPHAS)
    from saliency_bench.benchmarks.maxboxacc import maxboxacc_correct

    maxboxacc_correct(m[None], [np.array([[1, 1, 5, 5]])], (16, 16))
    for name in KERNEL_MODULES:
        mod = importlib.import_module(name)
        plain = mod.jit._plain
        assert plain, name
        for fn_name, fn in plain.items():
            assert isinstance(getattr(mod, fn_name), types.FunctionType), (name, fn_name)
            assert getattr(mod, fn_name) is fn
        for key, val in vars(mod).items():
            assert "numba" not in type(val).__module__, (name, key)
    compiled = importlib.import_module("saliency_bench.ops.pil_resize").jit.compiled("_resized_box")
    assert compiled.py_func is not pil_resize._resized_box  # a copy with its own namespace


# ------------------------------------------------------------------------------------- resize
def test_torchray_resize_is_torch_bilinear_without_corner_alignment_for_one_map_and_a_batch():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((3, 7, 9)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(maps)[:, None], size=(50, 31), mode="bilinear", align_corners=False)[:, 0]
    assert torch.equal(resize_map(maps, (50, 31)), ref)
    assert torch.equal(resize_map(maps[1], (50, 31)), ref[1])
    assert torch.equal(resize_map(maps[0], (7, 9)), torch.from_numpy(maps[0]))


def test_authors_resize_is_bytescale_then_pil_bilinear():
    """scipy.misc.imresize (scipy <= 1.2): bytescale a float map to uint8, PIL bilinear."""
    rng = np.random.default_rng(2)
    for m in (rng.standard_normal((13, 8)), np.full((5, 5), 3.0), rng.random((1, 1))):
        m = m.astype(np.float32)
        lo, hi = m.min(), m.max()
        u8 = ((m - lo) * (255.0 / ((hi - lo) or 1))).clip(0, 255).__add__(0.5).astype(np.uint8)
        ref = np.asarray(Image.frombytes("L", (m.shape[1], m.shape[0]), u8.tobytes()).resize((41, 37), Image.BILINEAR))
        assert np.array_equal(resize_map(m, (37, 41), reference="authors"), ref)


def test_wsolevaluation_resize_is_opencv_bicubic_in_float64():
    m = np.random.default_rng(3).random((7, 7)).astype(np.float32)
    ref = cv2.resize(m.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(resize_map(m, (224, 224), reference="wsolevaluation"), ref)
    with pytest.raises(ValueError, match="reference"):
        resize_map(m, (3, 3), reference="nearest")


# --------------------------------------------------------------------------------------- blur
def test_pil_blur_is_pils_gaussian_blur_and_radius_zero_is_the_image():
    im = Image.fromarray(np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(pil_gaussian_blur(im, 3.5)), np.asarray(im.filter(ImageFilter.GaussianBlur(3.5))))
    assert pil_gaussian_blur(im, 0) is im


def test_the_blur_is_scipys_gaussian_filter_with_nearest_edges_in_every_caller():
    """The mask, the occluders and the faithfulness fallback share one blur: scipy's
    gaussian_filter(mode="nearest", truncate=4) of each channel."""
    x = torch.from_numpy(np.random.default_rng(5).random((1, 3, 40, 30)))
    ref = np.stack([ndi.gaussian_filter(x[0, c].numpy(), 2.5, mode="nearest", truncate=4.0) for c in range(3)])
    np.testing.assert_allclose(gaussian_blur(x, 2.5)[0].numpy(), ref, rtol=0, atol=1e-12)

    from saliency_bench.benchmarks.faithfulness import DeletionGame
    from saliency_bench.contracts import Sample

    class _Probe:  # a direct call: no blurred view
        def __init__(self, x):
            self.x = x

        def view(self, name):
            return None

    s = Sample(id="a", image=None, size=(80, 60), targets={}, category="c", boxes=None)
    out, how = DeletionGame().blurred(_Probe(x.float()), [s])
    sigma = 10.0 * 0.5 * (40 / 80 + 30 / 60)
    ref = np.stack([ndi.gaussian_filter(x[0, c].numpy(), sigma, mode="nearest", truncate=4.0) for c in range(3)])
    assert how.startswith("fallback")
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=0, atol=1e-5)


# ------------------------------------------------------------------- imresize box shortcuts
def _pil_getbb(h: np.ndarray, alpha: float, method: str, size: tuple[int, int]) -> list[int]:
    """getbb_from_heatmap(thres_first=True) done plainly: threshold, bytescale, PIL bilinear,
    np.nonzero (energy ties in raster order)."""
    h = h.copy()
    h64 = h.astype(np.float64)
    if method == "mean":
        h[h64 < alpha * h64.mean()] = 0
    elif method == "value":
        h[h64 - h64.min() < alpha * (h64.max() - h64.min())] = 0
    else:
        f = h.flatten()
        idx = np.argsort(-f, kind="stable")
        reach = np.nonzero(np.cumsum(f.astype(np.float64)[idx]) >= alpha * h64.sum())[0]
        ind = reach[0] if len(reach) else len(f)  # never reached (signed maps; their code raises): keep all
        f[idx[ind:]] = 0
        h = f.reshape(h.shape)
    lo, hi = h.min(), h.max()
    u8 = ((h - lo) * (255.0 / ((hi - lo) or 1))).clip(0, 255).__add__(0.5).astype(np.uint8)
    r = np.asarray(Image.frombytes("L", (h.shape[1], h.shape[0]), u8.tobytes()).resize((size[1], size[0]),
                                                                                         Image.BILINEAR))
    if (r == 0).all():
        return [1, 1, size[0], size[1]]
    ys, xs = np.nonzero(r)
    return [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1]


def _adversarial_maps(rng: np.random.Generator) -> list[np.ndarray]:
    smooth = ndi.gaussian_filter(rng.standard_normal((224, 224)), 12)
    spike = np.zeros((224, 224))
    spike[100, 37] = 1.0
    spike[101, 37] = 1e-6  # bytescales to 0 next to a 255
    return [
        np.zeros((5, 6)), np.full((7, 7), 2.5), np.ones((1, 1)), np.array([[-1.0]]),
        rng.integers(0, 3, (7, 7)),  # ties everywhere
        np.maximum(rng.standard_normal((7, 7)), 0),  # a Grad-CAM-like 7x7 map
        rng.standard_normal((7, 7)),  # signed: rejected zeros bytescale to non-zero
        smooth, np.maximum(smooth, 0), spike, rng.random((224, 224)) ** 8,
        np.where(rng.random((224, 224)) < 0.2, -0.0, np.where(rng.random((224, 224)) < 0.2, 0.0, smooth)),  # signed, ±0
        np.abs(rng.standard_normal((224, 224))) * (ndi.gaussian_filter(rng.standard_normal((224, 224)), 30) > 0),
    ]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    from saliency_bench.benchmarks.localization import _KIND_CODE

    codes = np.concatenate([np.full(len(DEFAULT_ALPHAS[k]), _KIND_CODE[k], np.int64) for k in THRESHOLDINGS])
    return codes, np.concatenate([np.asarray(DEFAULT_ALPHAS[k], np.float64) for k in THRESHOLDINGS])


def _centre(h: int, w: int) -> np.ndarray:
    """The centre method's map (methods/center.py), as a float32 array."""
    s = 0.25 * min(h, w)
    v = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    u = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    return torch.exp(-(v[:, None] ** 2 + u[None, :] ** 2) / (2 * s * s)).numpy()


def _order_maps(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Maps on both sides of the histogram's conditions (non-negative, finite, exact sums)."""
    tiny = np.full((9, 9), 3e-39, np.float32)  # subnormals
    tiny[4, 4] = 1e-37
    wide = rng.random((64, 64)).astype(np.float32)
    wide[0, 0] = 1e-30  # a value 100 binades down: float64 sums are no longer exact in any order
    ties = rng.integers(0, 5, (50, 70)).astype(np.float32) * np.float32(0.25)
    spike = np.full((30, 30), 1.0, np.float32)
    spike[7, 9] = 1e5
    return [
        ("centre 224", _centre(224, 224)), ("centre 7x13", _centre(7, 13)),
        ("uniform", rng.random((40, 33)).astype(np.float32)),
        ("relu'd", np.maximum(rng.standard_normal((37, 41)), 0).astype(np.float32)),
        ("ties and zeros", ties), ("one value", np.full((6, 5), 0.7, np.float32)),
        ("zeros", np.zeros((4, 4), np.float32)), ("one pixel", np.array([[2.0]], np.float32)),
        ("negative zero", np.where(rng.random((12, 12)) < 0.3, np.float32(-0.0), rng.random((12, 12))).astype(np.float32)),
        ("subnormal", tiny), ("spike", spike),
        ("wide range", wide), ("signed", rng.standard_normal((20, 20)).astype(np.float32)),
        ("NaN", np.where(rng.random((15, 15)) < 0.1, np.nan, rng.random((15, 15))).astype(np.float32)),
        ("infinite", np.where(rng.random((15, 15)) < 0.1, np.inf, rng.random((15, 15))).astype(np.float32)),
        ("gradient-like", (np.abs(rng.standard_normal((224, 224))) ** 6).astype(np.float32)),
        ("signed, ties, -0.0 beside 0.0", np.where(rng.random((64, 64)) < 0.3, np.float32(-0.0) * rng.integers(0, 2, (64, 64)),
                                                   rng.integers(-3, 4, (64, 64)) * np.float32(0.5)).astype(np.float32)),
    ]


def test_the_radix_sort_of_a_map_is_numpys_sort():
    """np.sort is the reference: the same values in the same order, bit for bit, on signed maps,
    ties, infinities, subnormals of both signs, one value (every pass skipped), keys that differ in
    one digit only, sizes on both sides of RADIX_FROM; where -0.0 and 0.0 both occur (np.sort puts
    them in no defined order) the zeros come -0.0 first. A map with a NaN, of either sign, is
    np.sort's own result."""
    rng = np.random.default_rng(31)
    n = 224 * 224
    sub = rng.random(n).astype(np.float32) * np.float32(1e-39) * rng.choice([-1, 1], n).astype(np.float32)
    zeros = np.where(rng.random(n) < 0.5, np.float32(-0.0), np.float32(0.0)) * rng.integers(0, 2, n)
    cases = {
        "signed normal": rng.standard_normal(n), "ties": rng.integers(-5, 6, n) * 0.25,
        "infinite": np.where(rng.random(n) < 0.01, np.inf * rng.choice([-1, 1], n), rng.standard_normal(n)),
        "subnormal": sub, "-0.0 and 0.0": np.where(rng.random(n) < 0.5, zeros, rng.standard_normal(n)),
        "one value": np.full(n, -2.5), "low digit only": 1.0 + rng.integers(0, 2048, n) * 2.0 ** -23,
        "at the threshold": rng.standard_normal(RADIX_FROM), "below it": rng.standard_normal(RADIX_FROM - 1),
        "positive NaN": np.where(rng.random(n) < 0.01, np.nan, rng.standard_normal(n)),
        "negative NaN": np.where(rng.random(n) < 0.01, -np.nan, rng.standard_normal(n)),
    }
    for name, x in cases.items():
        x = np.asarray(x, np.float32)
        got, want = sorted_values(x), np.sort(x)
        assert got.dtype == np.float32 and got.shape == want.shape, name
        bits, ref_bits = got.view(np.uint32), want.view(np.uint32)
        zero = want == 0
        assert np.array_equal(bits[~zero], ref_bits[~zero]) or np.isnan(want).any(), name
        assert np.array_equal(got, want, equal_nan=True), name
        if np.isnan(want).any():
            assert np.array_equal(bits, ref_bits), name
        signs = np.signbit(got[zero])
        assert not (np.diff(signs.astype(np.int8)) > 0).any(), name  # no -0.0 after a 0.0


def test_the_histogram_order_answers_every_query_as_the_sorted_map_does():
    """Counts of every thresholding and alpha, and for each count the kept value, the values above
    it and its ties: the same numbers from the buckets (mode 1) as from the sorted map (mode 0),
    on maps with ties, zeros, -0.0, subnormals, one value, one pixel and spikes; the maps the
    histogram cannot order (signed, NaN, inf) are sorted; those whose small values lie dozens or a
    hundred binades down (gradient-like, wide range) are bucketed, their cuts where the sums are
    exact."""
    rng = np.random.default_rng(11)
    codes, alphas = _grid()
    modes = {}
    for name, m in _order_maps(rng):
        total = map_order(m)[1]
        order, counts = order_and_counts(m, codes, alphas)
        modes[name] = order.mode
        asc = np.sort(m, axis=None)
        ref_total = m.astype(np.float64).sum()
        assert total == ref_total or (np.isnan(total) and np.isnan(ref_total)), name
        ref = sorted_order(asc)
        ref_counts = kept_counts(ref, codes, alphas, ref_total, m.size)
        assert counts.tolist() == ref_counts.tolist(), name
        got, want = kept_facts(order, counts), kept_facts(ref, ref_counts)
        for g, w in zip(got[:3], want[:3]):
            assert np.array_equal(g, w), name
        assert got[3] == want[3] or np.isnan(want[3]), name
        assert got[4] == want[4], name
        # the kept value is the c-th largest, with the values above it and its ties counted plainly
        n = m.size
        for c, v, above, ties in zip(counts, *got[:3]):
            if c and not np.isnan(m).any():  # (NaN, sorted last, counts as above: as it always did)
                assert v == asc[n - c] and above == int((asc > v).sum()) and ties == int((asc == v).sum()), name
    bucketed = {k for k, v in modes.items() if v == 1}
    assert bucketed == {"centre 224", "centre 7x13", "uniform", "relu'd", "ties and zeros", "one value", "zeros",
                        "one pixel", "negative zero", "subnormal", "spike", "wide range", "gradient-like"}, modes


@pytest.mark.parametrize("size", [(227, 227), (375, 500), (60, 200), (5, 3)])
def test_the_boxes_from_the_histogram_order_equal_those_from_the_sorted_map(size):
    """Every cut's box, ties marked from the buckets' positions (mode 1) or found by scanning the map
    (mode 0), both of Pillow's pass orders: the same boxes, which the plain scans give too."""
    rng = np.random.default_rng(12)
    codes, alphas = _grid()
    for name, m in _order_maps(rng):
        order, counts = order_and_counts(m, codes, alphas)
        got = pil_resize.kept_set_boxes(m, order, counts, size)
        want = pil_resize.kept_set_boxes(m, np.sort(m, axis=None), counts, size)
        assert np.array_equal(got, want), (name, size)
        assert np.array_equal(got, pil_resize.kept_set_boxes(m, np.sort(m, axis=None), counts, size, fast=False))


def test_an_energy_cut_where_the_bucket_sums_could_round_is_answered_by_sorting():
    """The exactness bound of the buckets' sums: with 255 ones, a value of 2^-20 still adds exactly
    (255 < 2^53 x 2^-43) and every cut is answered from the buckets; one of 2^-30 (255 > 2^53 x 2^-53)
    does not, so the cut of energy 1.0, which must reach it, is not answered there and the map is
    sorted, with the counts of the sorted map. Cuts above the small value are still exact."""
    codes = np.array([1, 1, 1, 0, 2], np.int64)
    alphas = np.array([0.5, 0.95, 1.0, 0.5, 1.0])
    for low, mode, unanswered in ((2.0 ** -20, 1, []), (2.0 ** -30, 0, [2])):
        m = np.full((16, 16), 1.0, np.float32)
        m[0, 0] = np.float32(low)
        order, total = map_order(m)
        assert order.mode == 1 and total == m.astype(np.float64).sum()
        counts = kept_counts(order, codes, alphas, total, m.size)
        assert np.flatnonzero(counts < 0).tolist() == unanswered
        ref_counts = kept_counts(sorted_order(np.sort(m, axis=None)), codes, alphas, total, m.size)
        assert ref_counts.tolist() == [127, 242, 255, 255, 255]  # (a cut keeps the values before the sum reaches it)
        got_order, got = order_and_counts(m, codes, alphas)
        assert got_order.mode == mode and got.tolist() == ref_counts.tolist()
        assert [c for i, c in enumerate(counts) if i not in unanswered] == \
            [c for i, c in enumerate(ref_counts) if i not in unanswered]


def test_random_maps_and_alpha_grids_get_the_sorted_maps_counts_facts_and_boxes():
    """600 random small maps (uniform, powers of |N(0,1)| up to 30, ties, zeros beside values 40
    binades apart, powers of two over 240 binades, one tiny value in a constant map, subnormals)
    with random grids (alpha 0, 0.95, 0.999, 1 and 1.5 among them): the bucketed order, falling back
    to sorting where an energy cut cannot be told exactly, gives the sorted map's counts, kept
    values, ties and boxes. Some maps must take the fallback."""
    rng = np.random.default_rng(21)
    fallbacks = 0
    for _ in range(600):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        kind = int(rng.integers(0, 7))
        m = [lambda: rng.random((h, w)), lambda: np.abs(rng.standard_normal((h, w))) ** rng.uniform(1, 30),
             lambda: rng.integers(0, 4, (h, w)) * 0.5,
             lambda: np.where(rng.random((h, w)) < 0.5, 0, rng.random((h, w)) * 10.0 ** rng.uniform(-40, 30)),
             lambda: 2.0 ** rng.integers(-140, 100, (h, w)).astype(float),
             lambda: np.where(np.arange(h * w).reshape(h, w) == 0, 2.0 ** -int(rng.integers(20, 140)), rng.random()),
             lambda: rng.random((h, w)) * 1e-38][kind]().astype(np.float32)
        n_a = int(rng.integers(1, 12))
        codes = rng.integers(0, 3, n_a).astype(np.int64)
        alphas = np.where(rng.random(n_a) < 0.3, rng.choice([0.0, 1.0, 0.999, 1.5, 0.95], n_a),
                          rng.random(n_a) * (1 + 9 * (codes == 2)))
        order, counts = order_and_counts(m, codes, alphas)
        fallbacks += order.mode == 0
        asc = np.sort(m, axis=None)
        ref = sorted_order(asc)
        ref_counts = kept_counts(ref, codes, alphas, m.astype(np.float64).sum(), m.size)
        assert counts.tolist() == ref_counts.tolist(), (kind, m.shape)
        for g, want in zip(kept_facts(order, counts)[:3], kept_facts(ref, ref_counts)[:3]):
            assert np.array_equal(g, want), (kind, m.shape)
        size = tuple(int(v) for v in rng.integers(1, 60, 2))
        boxes = pil_resize.kept_set_boxes(m, order, counts, size)
        assert np.array_equal(boxes, pil_resize.kept_set_boxes(m, asc, ref_counts, size)), (kind, m.shape)
        pil = [_pil_getbb(m, al, THRESHOLDINGS[c], size) for c, al in zip(codes, alphas)]  # the authors' way, PIL
        assert boxes.tolist() == [[int(v) for v in r] for r in pil], (kind, m.shape)
    assert 20 <= fallbacks <= 200, fallbacks


def test_the_compiled_row_and_column_extremes_equal_numpys_on_finite_maps():
    """The box kernel's row/column maxima (read at NumPy's argmax: the first position), minima and
    argmax positions, from one compiled pass, on ties, constants, -0.0 beside 0.0, subnormals,
    1xN and Nx1 maps and real-like ones: what NumPy gives."""
    rng = np.random.default_rng(13)
    maps = [m for _, m in _order_maps(rng) if np.isfinite(m).all()] + [
        np.ascontiguousarray(m, dtype=np.float32) for m in _adversarial_maps(rng)]
    maps += [np.array([[0.0, -0.0, 0.0], [-0.0, 0.0, -0.0]], np.float32), rng.random((1, 9)).astype(np.float32),
             rng.random((9, 1)).astype(np.float32), np.repeat(rng.random((1, 30)), 40, axis=0).astype(np.float32)]
    kernel = pil_resize.jit.compiled("_finite_extremes")
    for m in maps:
        h, w = m.shape
        ra, ca = m.argmax(axis=1), m.argmax(axis=0)
        want = (m[np.arange(h), ra], m[ca, np.arange(w)], m.min(axis=1), m.min(axis=0), ra, ca)
        got = kernel(m)
        for g, wnt in zip(got, want):
            assert g.shape == wnt.shape and np.array_equal(g, wnt), m.shape
        assert np.array_equal(np.signbit(got[0]), np.signbit(want[0])) and \
            np.array_equal(np.signbit(got[1]), np.signbit(want[1]))  # the very values NumPy reads


@pytest.mark.parametrize("size", [(375, 500), (227, 227), (224, 224), (60, 200), (500, 120), (1, 1)])
def test_imresize_box_shortcuts_equal_the_plain_scans_and_pil_on_adversarial_maps(size):
    """The bounds and hints of the box kernel change no box: every alpha of maps with ties,
    constant, zero, 1x1, 7x7, signed, spiky and noisy values, up- and downsized (both of Pillow's
    pass orders), equals the kernel's plain scans and the plain procedure with PIL."""
    rng = np.random.default_rng(6)
    for m in _adversarial_maps(rng):
        m = np.ascontiguousarray(m, dtype=np.float32)
        got = authors_boxes(m, size, DEFAULT_ALPHAS)
        flat = np.concatenate([got[k] for k in THRESHOLDINGS])
        asc = np.sort(m, axis=None)
        codes, alphas = _grid()
        total = m.astype(np.float64).sum()
        counts = kept_counts(sorted_order(asc), codes, alphas, total, m.size)
        plain = pil_resize.kept_set_boxes(m, asc, counts, size, fast=False)
        assert np.array_equal(flat, plain), (m.shape, size)
        ref = [_pil_getbb(m, a, k, size) for k in THRESHOLDINGS for a in DEFAULT_ALPHAS[k]]
        assert flat.tolist() == [[int(v) for v in r] for r in ref], (m.shape, size)


# ---------------------------------------------------------------------- MaxBoxAccV2 records
def _wsolevaluation(maps: np.ndarray, gts: list[np.ndarray], size=(224, 224)) -> np.ndarray:
    """wsolevaluation's inference.py + BoxEvaluator (multi_contour_eval) per map, with OpenCV."""
    H, W = size
    out = np.zeros((len(maps), 3, 100), bool)
    for i, (m, gt) in enumerate(zip(maps, gts)):
        cam = cv2.resize(m.astype(np.float64), (W, H), interpolation=cv2.INTER_CUBIC)
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        s = np.expand_dims((cam * 255).astype(np.uint8), 2)
        for j, t in enumerate(np.arange(0, 1, 0.01)):
            _, thr = cv2.threshold(s, int(t * np.max(s)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(thr, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            boxes = [[0, 0, 0, 0]] if len(contours) == 0 else []
            for c in contours:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append([x, y, min(x + w, W - 1), min(y + h, H - 1)])
            b = np.asarray(boxes, np.float64)[:, None, :]
            g = np.asarray(gt, np.float64)[None]
            iw = np.clip(np.minimum(b[..., 2], g[..., 2]) - np.maximum(b[..., 0], g[..., 0]) + 1, 0, None)
            ih = np.clip(np.minimum(b[..., 3], g[..., 3]) - np.maximum(b[..., 1], g[..., 1]) + 1, 0, None)
            inter = iw * ih
            union = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1) + \
                (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1) - inter
            best = (inter / union).max()
            out[i, :, j] = [best >= d for d in (0.3, 0.5, 0.7)]
    return out


def test_maxboxacc_of_a_batch_mixing_both_sweeps_and_degenerate_maps_equals_wsolevaluation():
    """One batch with smooth maps (the run sweep), noisy maps (the pixel sweeps, whose records
    are scored part by part), and zeros, a constant, 1x1 and tied 7x7 maps: every cell equals
    wsolevaluation's loop with OpenCV."""
    from saliency_bench.benchmarks.maxboxacc import maxboxacc_correct

    rng = np.random.default_rng(7)
    small = [np.zeros((7, 7)), np.full((7, 7), 0.3), rng.integers(0, 3, (7, 7)),
             np.maximum(rng.standard_normal((7, 7)), 0), np.ones((1, 1))]
    big = [ndi.gaussian_filter(rng.standard_normal((224, 224)), 10), np.abs(rng.standard_normal((224, 224))),
           ndi.gaussian_filter(rng.standard_normal((224, 224)), 3) ** 2, np.zeros((224, 224)),
           rng.integers(0, 4, (224, 224)).astype(np.float64)]
    gts = [np.array([[20, 30, 180, 200]]), np.array([[0, 0, 223, 223]]), np.array([[100, 100, 120, 130], [5, 5, 60, 60]])]
    for group in (small[:4], small[4:], big):  # a batch's maps share one shape
        maps = np.stack(group).astype(np.float32)
        g = [gts[i % len(gts)] for i in range(len(maps))]
        assert np.array_equal(maxboxacc_correct(maps, g, (224, 224)), _wsolevaluation(maps, g)), maps.shape
