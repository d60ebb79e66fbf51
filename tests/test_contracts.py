"""Output validation and targets: a bad return is a clear error naming the method."""
from __future__ import annotations

import pytest
import torch

from saliency_bench.contracts import MethodOutputError, check_output, method_from_function
from saliency_bench.targets import as_target_tensor, score_gradient, target_probability, target_score


def _m(kind="heatmap"):
    return method_from_function(lambda model, x, t: None, "demo", kind)


def test_check_output_accepts_finite_heatmaps_and_points():
    assert check_output(_m(), torch.rand(3, 7, 7), 3) == {}
    assert check_output(_m("point"), torch.rand(3, 2), 3) == {}


@pytest.mark.parametrize("out, message", [
    (torch.rand(3, 7), "shape \\(3, 7\\), expected heatmaps \\[3, h, w\\]"),
    (torch.rand(2, 7, 7), "shape \\(2, 7, 7\\)"),
    (torch.ones(3, 7, 7, dtype=torch.long), "dtype torch.int64"),
    ([1, 2, 3], "returned list"),
])
def test_check_output_rejects_wrong_shape_dtype_type_naming_the_method(out, message):
    with pytest.raises(MethodOutputError, match=f"method 'demo'.*{message}"):
        check_output(_m(), out, 3)


def test_check_output_flags_only_the_samples_with_nan_or_inf():
    out = torch.rand(4, 5, 5)
    out[1, 2, 2] = float("nan")
    out[3, 0, 0] = float("inf")
    bad = check_output(_m(), out, 4)
    assert sorted(bad) == [1, 3] and "non-finite" in bad[1] and "'demo'" in bad[1]


def test_point_methods_must_return_b_by_2():
    with pytest.raises(MethodOutputError, match="expected points \\[3, 2\\]"):
        check_output(_m("point"), torch.rand(3, 3), 3)


def test_target_score_is_the_logit_for_one_class_and_logsumexp_for_a_set():
    logits = torch.tensor([[1.0, 2.0, 3.0, 0.5], [0.0, -1.0, 4.0, 2.0]])
    t = as_target_tensor([[2], [1, 3]])
    assert t.tolist() == [[2, -1], [1, 3]]
    s = target_score(logits, t)
    assert s[0] == pytest.approx(3.0)
    assert s[1] == pytest.approx(torch.logsumexp(torch.tensor([-1.0, 2.0]), 0).item())
    p = target_probability(logits, t)
    probs = logits.softmax(1)
    assert p[1] == pytest.approx((probs[1, 1] + probs[1, 3]).item())
    g = score_gradient(logits, t)
    assert g[0].tolist() == [0, 0, 1, 0]
    assert g[1].sum() == pytest.approx(1.0) and g[1, 0] == 0 and g[1, 3] > g[1, 1] > 0
