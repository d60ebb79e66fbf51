"""The guard's exact fingerprint (saliency_bench/ops/checksum.py).

The reference sums are computed here from the tensor's raw memory, as Python's ``struct`` reads
it (little-endian int32 words, or bytes), with Python's unbounded integers reduced mod 2**64:
neither the compiled loop's views nor torch's integer operations are involved.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from saliency_bench.ops.checksum import Checksums, torch_checksums

M = 1 << 64


def _signed(v: int) -> int:
    v %= M
    return v - M if v >= 1 << 63 else v


def _reference(t: torch.Tensor) -> tuple[int, int]:
    """(S, P) of the tensor's memory: its storage's bytes when they are exactly its elements
    (contiguous or a permuted dense layout), else those of a contiguous copy."""
    n = t.numel() * t.element_size()
    st = t.untyped_storage()
    if not (st.nbytes() == n and t.storage_offset() == 0):  # not exactly its own elements
        st = t.contiguous().untyped_storage()
    raw = bytes(st.tolist())[:n]
    vals = struct.unpack(f"<{n // 4}i", raw) if n % 4 == 0 else tuple(raw)
    return _signed(sum(vals)), _signed(sum(i * v for i, v in enumerate(vals)))


def _cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "float32": torch.randn(3, 4, 5, generator=g),
        "channels_last": torch.randn(2, 3, 4, 5, generator=g).to(memory_format=torch.channels_last),
        "transposed": torch.randn(4, 6, generator=g).t(),
        "float16_odd": torch.randn(7, generator=g).half(),
        "bfloat16": torch.randn(6, generator=g).bfloat16(),
        "int64": torch.arange(-5, 5),
        "bool_odd": torch.tensor([True, False, True]),
        "expanded": torch.randn(1, 4, generator=g).expand(3, 4),
        "empty": torch.zeros(0),
        "scalar": torch.tensor(-2.5),
        "parameter": torch.nn.Parameter(torch.randn(5, generator=g)),
    }


def test_hand_computed_sums():
    # 1.0 is 0x3f800000 and -2.0 is 0xc0000000 (as a signed word, -2**30): S and P by hand.
    s, p = Checksums([torch.tensor([1.0, -2.0])])()[0]
    assert (s, p) == (0x3F800000 - (1 << 30), -(1 << 30))
    assert Checksums([torch.arange(5)])().tolist() == [[10, 60]]  # int64 words (v, 0): 0+1+..+4, 2+8+18+32


@pytest.mark.parametrize("name", sorted(_cases()))
def test_both_paths_equal_the_memory_read_by_struct(name):
    t = _cases()[name]
    want = _reference(t.detach())
    assert tuple(Checksums([t])()[0]) == want
    assert tuple(torch_checksums([t])[0]) == want


def test_many_tensors_at_once_and_views_into_one_storage():
    cases = list(_cases().values())
    base = torch.randn(10, 8)
    cases += [base[2:5], base[7]]  # slices: their own elements, not the whole storage
    got = Checksums(cases)()
    assert got.tolist() == torch_checksums(cases).tolist()
    for chunk in (1, 7, 64):  # torch's path in steps that end inside tensors and between them
        assert got.tolist() == torch_checksums(cases, chunk=chunk).tolist(), chunk
    assert tuple(got[-2]) == _reference(base[2:5].clone()) and tuple(got[-1]) == _reference(base[7].clone())


def _changed(t: torch.Tensor, change) -> bool:
    c = Checksums([t])
    before = c()
    change(t)
    return not np.array_equal(c(), before)


@pytest.mark.parametrize("how", ["sign", "flip", "one_last_place", "add_and_subtract", "swap_two", "opposite_pair"])
def test_changes_a_norm_cannot_see_are_seen(how):
    t = torch.randn(64, 27, generator=torch.Generator().manual_seed(1))
    norm = t.norm().item()
    changes = {
        "sign": lambda w: w.neg_(),
        "flip": lambda w: w.copy_(w.flip(0).clone()),
        "one_last_place": lambda w: w.view(-1)[17].copy_(torch.nextafter(w.view(-1)[17], torch.tensor(np.inf))),
        "add_and_subtract": lambda w: w.add_(0.1).sub_(0.1),
        "swap_two": lambda w: w.view(-1).index_copy_(0, torch.tensor([3, 900]), w.view(-1)[[900, 3]]),
        # two words whose sum is unchanged: +1 in one, -1 in another (only P sees it)
        "opposite_pair": lambda w: w.view(torch.int32).view(-1).index_add_(
            0, torch.tensor([5, 6]), torch.tensor([1, -1], dtype=torch.int32)),
    }
    data = t.clone()
    assert _changed(data, changes[how])
    if how in ("sign", "flip", "swap_two"):
        assert data.norm().item() == pytest.approx(norm, rel=1e-6)  # the norm barely moves, or not at all


def test_every_single_bit_of_a_value_is_seen():
    t = torch.randn(9, 5)
    c = Checksums([t])
    before = c()
    words = t.view(torch.int32).view(-1)
    for pos in (0, 13, 44):
        for bit in range(32):
            w = words[pos].item()
            words[pos] = w ^ (1 << bit) if bit < 31 else w ^ -(1 << 31)
            assert not np.array_equal(c(), before), (pos, bit)
            words[pos] = w
    assert np.array_equal(c(), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_device_path_on_cuda_gives_the_cpu_loop_s_sums():
    cases = list(_cases().values())
    want = Checksums(cases)().tolist()
    on_device = [t.detach().cuda() for t in cases]
    assert Checksums(on_device)().tolist() == want
    assert torch_checksums(on_device, chunk=7).tolist() == want
    w = on_device[0]
    before = Checksums([w])()
    w.neg_()
    assert not np.array_equal(Checksums([w])(), before)
