"""Targets: one class or a set of classes, and the one score every method uses for them.

A target is a row of a ``[B,K]`` long tensor of class indices, padded with -1. A set of
classes (a COCO category seen by an ImageNet model: ``dog`` -> the 118 dog breeds) is
scored as **log-sum-exp of the set's logits**. For one class that is the logit itself, so
single-class methods back-propagate exactly the pre-softmax logit of PROTOCOLS.md §1; for a
set it is the log of the summed (unnormalised) probability, smooth and dominated by the
strongest member. The mask method's probability score of a set is the sum of the set's
softmax probabilities, i.e. ``exp(target_score - logsumexp(all logits))``: the same choice.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


def as_target_tensor(targets: Sequence[Iterable[int]] | Sequence[int] | torch.Tensor,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Normalise targets to a ``[B,K]`` long tensor padded with -1."""
    if isinstance(targets, torch.Tensor):
        t = targets.long()
        t = t[:, None] if t.ndim == 1 else t
        return t.to(device) if device is not None else t
    rows = [[int(c)] if isinstance(c, int) else [int(v) for v in c] for c in targets]
    k = max((len(r) for r in rows), default=1) or 1
    out = torch.full((len(rows), k), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device) if device is not None else out


def target_mask(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B,K]`` indices -> ``[B,C]`` bool membership."""
    t = as_target_tensor(targets)
    valid = t >= 0
    # Padding goes to a spare column: scattering it onto class 0 (clamp) would race with a
    # real class 0 in the same row (scatter_ with repeated indices keeps an arbitrary write).
    m = torch.zeros(t.shape[0], num_classes + 1, dtype=torch.bool, device=t.device)
    m.scatter_(1, torch.where(valid, t, num_classes), True)
    return m[:, :num_classes]


def target_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` pre-softmax target score: log-sum-exp of the target set's logits."""
    m = target_mask(targets.to(logits.device), logits.shape[1])
    return torch.logsumexp(logits.masked_fill(~m, float("-inf")), dim=1)


def target_probability(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B]`` softmax probability of the target set (sum over its classes)."""
    return torch.exp(target_score(logits, targets) - torch.logsumexp(logits, dim=1))


def score_gradient(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d target_score / d logits, the seed that backprop methods inject at the output.

    One-hot for a single class; the softmax of the set's logits over the set otherwise.
    """
    m = target_mask(targets.to(logits.device), logits.shape[1])
    return torch.softmax(logits.detach().masked_fill(~m, float("-inf")), dim=1)
