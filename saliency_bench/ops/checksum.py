"""Exact checksums of many tensors' contents at once: the isolation guard's fingerprint.

A tensor's bytes are read as signed 32-bit words (as bytes, 0..255, when its size in bytes is not
a multiple of four) and summarised by two sums modulo 2**64:

    S = sum_i w_i        P = sum_i i * w_i        (i: the word's position in the tensor)

Integer sums are exact, so the checksum does not depend on threads or reduction order, and:

- any change of one word changes S (a difference d with 0 < |d| < 2**32 is not 0 modulo 2**64),
  so one changed bit of one value is seen, a float's last place included;
- any change of two words changes (S, P): S unchanged means d_b = -d_a, and then P changes by
  (a - b) * d_a, which is not 0 modulo 2**64 either (|(a - b) * d_a| < 2**63 for fewer than 2**31
  words);
- a permutation changes P unless the values moved are equal, and a sign flip of every value
  changes S or P unless the positive and negative values balance exactly in count and position.

An L2 norm, by contrast, is blind to sign flips and permutations, and a float reduction loses a
change below its rounding.

:class:`Checksums` is built once over a list of tensors (the views it reads are made then) and
called as often as needed; it returns an ``int64`` array ``[len(tensors), 2]`` of (S, P). CPU
tensors whose memory is dense are read in place by one compiled loop over all of them (numba);
other CPU tensors, and tensors on other devices, go through torch's integer operations on their
device (a few kernels per device, whatever the number of tensors), with the same result.
The views stay valid while the tensors keep their storage: a caller that sees a tensor's data
pointer change must build a new :class:`Checksums`.
"""
from __future__ import annotations

import numpy as np
import torch

WORDS, BYTES = 4, 1  # how a tensor's memory is read: int32 words, or uint8 bytes


def _dense(t: torch.Tensor) -> torch.Tensor | None:
    """``t``'s elements in memory order as a 1-D view (None when its memory is not dense)."""
    if t.is_contiguous():
        return t.reshape(-1)
    order = sorted(range(t.dim()), key=lambda d: (-t.stride(d), -t.shape[d]))
    p = t.permute(order)  # a dense layout (channels-last, a transpose) is a permuted contiguous one
    return p.view(-1) if p.is_contiguous() else None


def _word_view(flat: torch.Tensor) -> torch.Tensor:
    """A 1-D dense tensor's bytes as int32 words, or as uint8 when they do not divide into words."""
    b = flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)
    if b.numel() % 4 == 0 and b.data_ptr() % 4 == 0:
        return b.view(torch.int32)
    return b


CHUNK = 1 << 22  # words per step of torch's path: its temporary memory is about 40 bytes per word


class _TorchSums:
    """(S, P) of tensors on one device by torch's integer operations there: the tensors' words
    (or bytes) laid end to end, running sums over chunks of them, and each tensor's sums as the
    difference of the running sums at its two ends (integer: exact, wrapping). A few kernels per
    chunk, whatever the number of tensors, and one transfer of the result; dense tensors are read
    through views made once, the others copied at each call. Every index is made at
    construction, so a call sends nothing to the device."""

    def __init__(self, tensors: list[torch.Tensor], chunk: int = CHUNK) -> None:
        self.chunk = chunk
        by_kind: dict[tuple, tuple[list, list]] = {}
        for k, t in enumerate(tensors):
            d = t.detach()
            flat = _dense(d)
            words = _word_view(flat if flat is not None else d.contiguous().reshape(-1))
            sources, rows = by_kind.setdefault((words.dtype, flat is None), ([], []))
            sources.append(words if flat is not None else d)
            rows.append(k)
        self.groups = [(sources, rows, copy, self._plan(sources, copy))
                       for (_, copy), (sources, rows) in by_kind.items()]

    def _plan(self, sources: list[torch.Tensor], copy: bool) -> dict | None:
        sizes = np.array([_word_view(t.contiguous().reshape(-1)).numel() if copy else t.numel() for t in sources],
                         dtype=np.int64)
        total = int(sizes.sum())
        if total == 0:
            return None
        device = sources[0].device
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        ends = starts + sizes
        points = np.unique(np.concatenate([starts, ends]))  # where running sums are read
        steps = []
        for c0 in range(0, total, self.chunk):
            c1 = min(total, c0 + self.chunk)
            inside = np.nonzero((points > c0) & (points <= c1))[0]  # the sum of the words before each
            steps.append((c0, c1, torch.as_tensor(points[inside] - c0 - 1, device=device),
                          torch.as_tensor(inside, device=device)) if inside.size else (c0, c1, None, None))
        return {"total": total, "points": points.size, "steps": steps,
                "lo": torch.as_tensor(np.searchsorted(points, starts), device=device),
                "hi": torch.as_tensor(np.searchsorted(points, ends), device=device),
                "starts": torch.as_tensor(starts, device=device)}

    def __call__(self, out: np.ndarray) -> None:
        with torch.no_grad():
            for sources, rows, copy, plan in self.groups:
                if plan is None:
                    out[rows] = 0
                    continue
                words = [_word_view(t.contiguous().reshape(-1)) for t in sources] if copy else sources
                out[rows] = self._sums(torch.cat(words), plan)

    @staticmethod
    def _sums(flat: torch.Tensor, plan: dict) -> np.ndarray:
        device = flat.device
        run_s = torch.zeros(plan["points"], dtype=torch.int64, device=device)
        run_p = torch.zeros_like(run_s)
        carry_s = torch.zeros((), dtype=torch.int64, device=device)
        carry_p = torch.zeros_like(carry_s)
        for c0, c1, at, idx in plan["steps"]:
            x = flat[c0:c1].to(torch.int64)
            cs = torch.cumsum(x, 0)
            cp = torch.cumsum(x * torch.arange(c0, c1, dtype=torch.int64, device=device), 0)
            if at is not None:
                run_s.index_copy_(0, idx, carry_s + cs[at])
                run_p.index_copy_(0, idx, carry_p + cp[at])
            carry_s = carry_s + cs[-1]
            carry_p = carry_p + cp[-1]
        lo, hi = plan["lo"], plan["hi"]
        s = run_s[hi] - run_s[lo]
        p = (run_p[hi] - run_p[lo]) - plan["starts"] * s  # positions from each tensor's start
        return torch.stack([s, p], 1).cpu().numpy()


def torch_checksums(tensors: list[torch.Tensor], chunk: int = CHUNK) -> np.ndarray:
    """(S, P) of each tensor (all on one device) by torch's path: the compiled loop's numbers."""
    out = np.zeros((len(tensors), 2), dtype=np.int64)
    _TorchSums(tensors, chunk)(out)
    return out


class Checksums:
    """(S, P) of a fixed list of tensors (see the module docstring); calling it reads them now."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.n = len(tensors)
        rows, addresses, sizes, kinds = [], [], [], []
        self._keep: list[torch.Tensor] = []
        other: dict[torch.device, list[int]] = {}  # device -> positions for torch's path
        for k, t in enumerate(tensors):
            d = t.detach()
            flat = _dense(d) if d.device.type == "cpu" else None
            if flat is None:
                other.setdefault(d.device, []).append(k)
                continue
            w = _word_view(flat)
            self._keep.append(w)  # the memory read by address stays alive with this object
            rows.append(k)
            addresses.append(w.data_ptr())
            sizes.append(w.numel())
            kinds.append(WORDS if w.dtype == torch.int32 else BYTES)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._memory = (np.asarray(addresses, dtype=np.uint64).view(np.int64), np.asarray(sizes, dtype=np.int64),
                        np.asarray(kinds, dtype=np.int64))
        self._other = [(np.asarray(ks, dtype=np.int64), _TorchSums([tensors[k] for k in ks])) for ks in other.values()]

    def __call__(self) -> np.ndarray:
        out = np.zeros((self.n, 2), dtype=np.int64)
        if self._rows.size:
            from ._checksum_loop import sum_memory  # numba, only for tensors in CPU memory

            part = np.zeros((self._rows.size, 2), dtype=np.int64)
            sum_memory(*self._memory, part)
            out[self._rows] = part
        for rows, sums in self._other:
            part = np.zeros((rows.size, 2), dtype=np.int64)
            sums(part)
            out[rows] = part
        return out
