"""Targets: one class or a set of classes, and the one score every method uses for them.

A method gets its batch's targets as a :class:`Targets` object, one row per sample. A row is a
set of classes (one class, or a COCO category seen by an ImageNet model: ``dog`` -> the 118 dog
breeds), scored as the **log-sum-exp of the set's logits**: ``targets.score(logits)``. For one
class that is the logit itself, so single-class methods back-propagate exactly the pre-softmax
logit of docs/PROTOCOLS.md §1; for a set it is the log of the summed (unnormalised) probability,
smooth and dominated by the strongest member. ``targets.probability(logits)`` is the sum of
the set's softmax probabilities, i.e. ``exp(score - logsumexp(all logits))``: the same choice.
The obvious use scores the whole set; the padded indices are there for the rare method that
needs them (``targets.indices``, ``[B,K]`` padded with -1; ``targets.first`` is each row's
first class, for libraries that take one class per sample).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


class Targets:
    """The targets of a batch: row ``i`` is the class set of sample ``i``.

    Indexing selects rows (``targets[2]``, ``targets[1:3]``, ``targets[[0, 0, 1]]``) and gives
    ``Targets``; ``targets.repeat(n)`` tiles the batch n times (as for a batch of n copies of
    each input concatenated), ``targets.repeat_interleave(n)`` repeats each row n times.
    """

    __slots__ = ("indices",)

    def __init__(self, targets: "Targets | Sequence[Iterable[int]] | Sequence[int] | torch.Tensor",
                 device: torch.device | str | None = None) -> None:
        self.indices = as_target_tensor(targets, device)

    # -- the scores ------------------------------------------------------------------------
    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B]`` pre-softmax score of each row's set: log-sum-exp of its logits."""
        return target_score(logits, self.indices)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B]`` softmax probability of each row's set (the sum over its classes)."""
        return target_probability(logits, self.indices)

    def gradient(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B,C]`` d score / d logits: the seed a backprop method injects at the output."""
        return score_gradient(logits, self.indices)

    def mask(self, num_classes: int) -> torch.Tensor:
        """``[B,C]`` bool: class c is in row i's set."""
        return target_mask(self.indices, num_classes)

    # -- rows ------------------------------------------------------------------------------
    @property
    def sets(self) -> list[tuple[int, ...]]:
        return [tuple(int(c) for c in row if c >= 0) for row in self.indices.tolist()]

    @property
    def first(self) -> torch.Tensor:
        """``[B]`` each row's first class (a single-class view; it ignores the rest of a set)."""
        return self.indices[:, 0]

    @property
    def is_single(self) -> bool:
        """Every row is one class."""
        return bool((self.indices[:, 1:] < 0).all()) if self.indices.shape[1] > 1 else True

    @property
    def device(self) -> torch.device:
        return self.indices.device

    def to(self, device: torch.device | str) -> "Targets":
        return Targets(self.indices.to(device))

    def repeat(self, n: int, *_: int) -> "Targets":
        """The batch tiled ``n`` times (``repeat(n, 1)`` as for the padded tensor works too)."""
        return Targets(self.indices.repeat(n, 1))

    def repeat_interleave(self, n: int) -> "Targets":
        return Targets(self.indices.repeat_interleave(n, dim=0))

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, rows) -> "Targets":
        if isinstance(rows, tuple):
            raise TypeError("Targets are indexed by rows (targets[i], targets[a:b]); a row is a class set "
                            "scored as one by targets.score(logits). For the padded class indices use "
                            "targets.indices")
        if isinstance(rows, int):
            rows = slice(rows, rows + 1 if rows != -1 else None)
        return Targets(self.indices[rows])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Targets) and torch.equal(self.indices.cpu(), other.indices.cpu())

    def __repr__(self) -> str:
        return f"Targets({self.sets})"


def as_target_tensor(targets: "Targets | Sequence[Iterable[int]] | Sequence[int] | torch.Tensor",
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Normalise targets to a ``[B,K]`` long tensor padded with -1."""
    if isinstance(targets, Targets):
        targets = targets.indices
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


def target_mask(targets: Targets | torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B,K]`` indices -> ``[B,C]`` bool membership."""
    t = as_target_tensor(targets)
    valid = t >= 0
    # Padding goes to a spare column: scattering it onto class 0 (clamp) would race with a
    # real class 0 in the same row (scatter_ with repeated indices keeps an arbitrary write).
    m = torch.zeros(t.shape[0], num_classes + 1, dtype=torch.bool, device=t.device)
    m.scatter_(1, torch.where(valid, t, num_classes), True)
    return m[:, :num_classes]


def target_score(logits: torch.Tensor, targets: Targets | torch.Tensor) -> torch.Tensor:
    """``[B]`` pre-softmax target score: log-sum-exp of the target set's logits."""
    m = target_mask(as_target_tensor(targets, logits.device), logits.shape[1])
    return torch.logsumexp(logits.masked_fill(~m, float("-inf")), dim=1)


def target_probability(logits: torch.Tensor, targets: Targets | torch.Tensor) -> torch.Tensor:
    """``[B]`` softmax probability of the target set (sum over its classes)."""
    return torch.exp(target_score(logits, targets) - torch.logsumexp(logits, dim=1))


def score_gradient(logits: torch.Tensor, targets: Targets | torch.Tensor) -> torch.Tensor:
    """d target_score / d logits, the seed that backprop methods inject at the output.

    One-hot for a single class; the softmax of the set's logits over the set otherwise.
    """
    m = target_mask(as_target_tensor(targets, logits.device), logits.shape[1])
    return torch.softmax(logits.detach().masked_fill(~m, float("-inf")), dim=1)
