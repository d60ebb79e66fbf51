"""Faithfulness benchmarks on toy models whose answers are known by hand.

The toy model has two classes: logit 0 is ``a`` times the mean of channel 0 over a region R of
the input, logit 1 is 0, so the probability of class 0 is ``sigmoid(a * f)`` where ``f`` is the
fraction of R still showing a 1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from saliency_bench.benchmarks.faithfulness import (Deletion, DeletionGame, Insertion, auc, boxes_at_input,
                                                    gkern, gkern_blur)
from saliency_bench.contracts import ClassInfo, Model, ModelQuery, Sample


class RegionMean(nn.Module):
    def __init__(self, rows: slice, cols: slice, a: float) -> None:
        super().__init__()
        self.rows, self.cols, self.a = rows, cols, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.a * x[:, 0, self.rows, self.cols].mean(dim=(1, 2))
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def toy_model(rows: slice, cols: slice, a: float, size: int) -> Model:
    return Model(name="toy", net=RegionMean(rows, cols, a), input_size=(size, size), mean=(0, 0, 0),
                 std=(1, 1, 1), classes=[ClassInfo(0, "n0", "zero"), ClassInfo(1, "n1", "one")])


def sample(size: int, i: int = 0) -> Sample:
    return Sample(id=f"s{i}", image=None, size=(size, size), targets={"imagenet": (0,)}, category="c")


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# --------------------------------------------------------------------------------------------
# The deletion game
# --------------------------------------------------------------------------------------------
def square_map(size: int = 32, centre: float = 11.5) -> np.ndarray:
    """h = 20 - (Chebyshev distance to the centre): thresholds keep centred squares."""
    r = np.arange(size, dtype=np.float32)
    d = np.maximum(np.abs(r[:, None] - centre), np.abs(r[None, :] - centre))
    return (20.0 - d).astype(np.float32)


def run_game(maps, box="authors", chunk=0, size=32):
    model = toy_model(slice(8, 16), slice(8, 16), 10.0, size)
    b = len(maps)
    x = torch.ones(b, 3, size, size)
    query = ModelQuery(model, x, [[0]] * b, views={"blurred": torch.zeros(b, 3, size, size)}, batch_size=7)
    bench = DeletionGame(box=box, chunk=chunk, bootstrap=0)
    return bench.score_batch([sample(size, i) for i in range(b)], maps, (size, size), query=query), query


def test_boxes_at_input_follow_getbb_from_heatmap():
    # alpha 0.78: 19.5 - d >= 19 * 0.78 = 14.82 keeps d <= 4.68: the square of half-size 4.5,
    # 0-based columns 7..16, i.e. 1-based 8..17.
    b = boxes_at_input(square_map(), [0.0, 0.78, 0.79])
    assert b[0].tolist() == [1, 1, 32, 32]
    assert b[1].tolist() == [8, 8, 17, 17]
    assert b[2].tolist() == [9, 9, 16, 16]
    # nothing non-zero: [1, 1, h, w]
    assert boxes_at_input(np.zeros((5, 6), np.float32), [0.5])[0].tolist() == [1, 1, 5, 6]


def test_deletion_game_on_a_toy_model_with_a_known_answer():
    # R = rows/cols 8..15 (64 pixels). The normalised score reaches 0.01 only when all of R is
    # deleted (sigmoid(10 f) - 1/2 <= 0.01 (sigmoid(10) - 1/2) needs f < 0.002). The authors'
    # slicing mask[y0:y1, x0:x1] of the 1-based box deletes 0-based y0..y1-1: the box 8..17
    # (alpha 0.78) deletes 8..16 (81 pixels) and covers R; the box 9..16 (alpha 0.79) deletes
    # 9..15 and leaves R's first row and column.
    recs, query = run_game([square_map()])
    r = recs[0]
    assert r["alpha"] == 0.78 and r["reached"]
    assert r["value"] == pytest.approx(81 / 1024)
    assert r["p"] == pytest.approx(sig(10.0), abs=1e-6) and r["p_blur"] == pytest.approx(0.5)
    assert r["substrate"] == "blurred original (view)"
    # one pass for x and one for the blur, then one per distinct box (not per alpha)
    assert query.passes == 2 + r["boxes"] and r["boxes"] < 100


def test_deletion_game_inclusive_box_and_a_worse_map():
    # inclusive: the half-size 3.5 square (columns 8..15) is R itself; it is kept while
    # 19.5 - 3.5 >= 19 alpha, i.e. up to alpha 0.84 (the last alpha of that box).
    recs, _ = run_game([square_map()], box="inclusive")
    assert recs[0]["value"] == pytest.approx(64 / 1024) and recs[0]["alpha"] == 0.84
    # A map centred off the object needs a larger box to delete R.
    recs, _ = run_game([square_map(centre=20.5)])
    assert recs[0]["value"] > 81 / 1024


def test_deletion_game_batches_across_samples_and_chunks():
    maps = [square_map(), square_map(centre=20.5), square_map(centre=11.5)]
    a, _ = run_game(maps, chunk=0)
    b, query = run_game(maps, chunk=5)
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert a[0]["value"] == a[2]["value"] == pytest.approx(81 / 1024)


def test_deletion_game_summary_is_a_percentage_with_interval():
    recs, _ = run_game([square_map(), square_map(centre=20.5)])
    bench = DeletionGame(bootstrap=200)
    meta = [{"id": f"s{i}", "category": "c", "split": "eval", "flags": {}} for i in range(2)]
    out = bench.summarize(recs, meta)["deletion_game"]
    assert out["unit"] == "%" and out["n"] == 2
    assert out["value"] == pytest.approx(100 * np.mean([r["value"] for r in recs]))
    assert out["ci"][0] <= out["value"] <= out["ci"][1]


def test_deletion_game_without_view_falls_back_and_says_so():
    model = toy_model(slice(8, 16), slice(8, 16), 10.0, 32)
    query = ModelQuery(model, torch.ones(1, 3, 32, 32), [[0]])
    r = DeletionGame().score_batch([sample(32)], [square_map()], (32, 32), query=query)[0]
    assert r["substrate"].startswith("fallback")


# --------------------------------------------------------------------------------------------
# RISE deletion and insertion
# --------------------------------------------------------------------------------------------
def raster_map(size: int = 8) -> np.ndarray:
    """Saliency decreasing in raster order: step k (8 pixels) changes row k."""
    return (size * size - np.arange(size * size, dtype=np.float32)).reshape(size, size)


def causal(bench, maps, a=4.0, chunk=0):
    model = toy_model(slice(0, 2), slice(0, 8), a, 8)  # R = the first two rows
    b = len(maps)
    query = ModelQuery(model, torch.ones(b, 3, 8, 8), [[0]] * b, batch_size=4)
    bench.options["chunk"] = chunk
    return bench.score_batch([sample(8, i) for i in range(b)], maps, (8, 8), query=query), query


def test_rise_auc_formula_by_hand():
    assert auc([1.0, 0.0]) == pytest.approx(0.5)
    assert auc([0.2, 0.4, 0.6]) == pytest.approx((0.1 + 0.4 + 0.3) / 2)


def test_deletion_auc_against_a_hand_computed_curve():
    # 8x8 input, step 8: 8 steps, 9 scores. Deleting rows in raster order into zeros leaves
    # f = 1, 1/2, 0, 0, ... of R: the curve is sigmoid(4), sigmoid(2), then 1/2 seven times.
    recs, query = causal(Deletion(step=8, bootstrap=0), [raster_map()])
    curve = [sig(4), sig(2)] + [0.5] * 7
    assert recs[0]["curve"] == pytest.approx(curve, abs=1e-5)
    hand = (sum(curve) - curve[0] / 2 - curve[-1] / 2) / 8
    assert hand == pytest.approx(0.5777255, abs=1e-6)
    assert recs[0]["value"] == pytest.approx(hand, abs=1e-6)
    assert query.passes == 9


def test_insertion_auc_against_a_hand_computed_curve():
    # Inserting the image's rows into a zero substrate: f = 0, 1/2, 1, 1, ...
    recs, _ = causal(Insertion(step=8, substrate="zeros", bootstrap=0), [raster_map()])
    curve = [0.5, sig(2)] + [sig(4)] * 7
    assert recs[0]["curve"] == pytest.approx(curve, abs=1e-5)
    assert recs[0]["value"] == pytest.approx((sum(curve) - curve[0] / 2 - curve[-1] / 2) / 8, abs=1e-6)


def test_deletion_order_follows_the_map_and_batches_agree():
    # The reversed map deletes R last: rows 6 and 7 go first, so f stays 1 for 6 steps.
    rev = raster_map()[::-1].copy()
    recs, _ = causal(Deletion(step=8, bootstrap=0), [raster_map(), rev], chunk=4)
    assert recs[1]["curve"] == pytest.approx([sig(4)] * 7 + [sig(2), 0.5], abs=1e-5)
    assert recs[1]["value"] > recs[0]["value"]
    again, _ = causal(Deletion(step=8, bootstrap=0), [raster_map(), rev], chunk=0)
    assert [r["curve"] for r in again] == [r["curve"] for r in recs]


def test_low_resolution_map_is_resized_before_ordering():
    # A 2x2 map whose top row is salient: bilinear to 8x8 orders the top half first.
    m = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    recs, _ = causal(Deletion(step=8, bootstrap=0), [m])
    assert recs[0]["curve"][:3] == pytest.approx([sig(4), sig(2), 0.5], abs=1e-5)


def test_gkern_is_rise_kernel_and_blur_keeps_constants_inside():
    k = gkern(11, 5.0)
    assert k.shape == (11, 11) and float(k.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    x = torch.full((1, 3, 20, 20), 2.0)
    y = gkern_blur(x)
    assert torch.allclose(y[:, :, 5:15, 5:15], x[:, :, 5:15, 5:15], atol=1e-5)
    assert float(y[0, 0, 0, 0]) < 2.0  # zero padding at the border, as RISE's conv2d


def test_options_are_checked():
    with pytest.raises(ValueError):
        Deletion(substrate="noise")
    with pytest.raises(ValueError):
        Insertion(target="top5")
    with pytest.raises(ValueError):
        DeletionGame(box="loose")
    # only the blurred substrate needs the view made in the workers
    assert Deletion().make_view("blurred", None, (8, 8)) is None
