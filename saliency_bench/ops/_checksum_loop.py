"""The compiled loop of :mod:`saliency_bench.ops.checksum`: (S, P) of memory given by address.

Imported on the first checksum of a tensor in CPU memory (numba is imported then). The loop
reads each tensor where it lies, from its address and size, in one call for all of them: a
list of array views would cost numba a second of compilation at every start, and a call per
tensor costs more than the sums. The caller keeps the tensors (and so their memory) alive, and
makes a new address list whenever a data pointer moves.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


@intrinsic
def _as_pointer(typingctx, address, like):
    """The integer ``address`` as a pointer to the element type of the array ``like``."""
    ptr = types.CPointer(like.dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ptr))

    return ptr(address, like), codegen


_WORD = np.zeros(1, dtype=np.int32)
_BYTE = np.zeros(1, dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _sums(w, n):
    s = np.int64(0)
    p = np.int64(0)
    for i in range(n):
        v = np.int64(w[i])
        s += v
        p += v * i
    return s, p


@numba.njit(cache=True, nogil=True)
def _sum_all(addresses, sizes, kinds, out, word, byte):
    for k in range(addresses.size):
        n = sizes[k]
        if kinds[k] == 4:
            s, p = _sums(numba.carray(_as_pointer(addresses[k], word), (n,)), n)
        else:
            s, p = _sums(numba.carray(_as_pointer(addresses[k], byte), (n,)), n)
        out[k, 0] = s
        out[k, 1] = p


def sum_memory(addresses: np.ndarray, sizes: np.ndarray, kinds: np.ndarray, out: np.ndarray) -> None:
    """out[k] = (S, P) of the ``sizes[k]`` elements at ``addresses[k]`` (int64 arrays), read as
    signed int32 words (``kinds[k]`` 4) or as bytes 0..255 (1), mod 2**64."""
    _sum_all(addresses, sizes, kinds, out, _WORD, _BYTE)
