"""Hash of the first bytes of a packet's L4 payload: part of the correlator's fingerprint, computed by the decoder.

The decode walk has each packet's header bytes in cache when it reaches the payload, so hashing the
prefix there costs almost nothing, where hashing it later means reading every file again. The hash
is splitmix64 over (bytes 0-7, bytes 8-15 as little-endian words, zero-padded; the byte count).
"""

from __future__ import annotations

import numba as nb
import numpy as np

PREFIX_BYTES = 16
"""How many leading L4 payload bytes are hashed."""

IV = 0x6A09E667F3BCC908
GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_K1, _K2, _K3 = (np.uint64((GOLDEN * k) & _MASK) for k in (1, 2, 3))


@nb.njit(cache=True, inline="always")
def mix(x):
    """splitmix64 finaliser of one uint64 (the scalar twin of fingerprint.mix64)."""
    x ^= x >> nb.uint64(30)
    x *= nb.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> nb.uint64(27)
    x *= nb.uint64(0x94D049BB133111EB)
    x ^= x >> nb.uint64(31)
    return x


@nb.njit(cache=True, inline="always")
def hash_at(buf, at, n):
    """Hash of ``buf[at:at+n]`` (n in 0..PREFIX_BYTES; indices clipped into ``buf``)."""
    last = buf.shape[0] - 1
    w0 = nb.uint64(0)
    w1 = nb.uint64(0)
    for i in range(n):
        q = at + i
        q = 0 if q < 0 else (last if q > last else q)
        b = nb.uint64(buf[q]) if last >= 0 else nb.uint64(0)
        if i < 8:
            w0 |= b << nb.uint64(8 * i)
        else:
            w1 |= b << nb.uint64(8 * (i - 8))
    h = mix(nb.uint64(IV) ^ (w0 + _K1))
    h = mix(h ^ (w1 + _K2))
    return mix(h ^ (nb.uint64(n) + _K3))


@nb.njit(cache=True, nogil=True)
def hashes(buf, start, length):
    """Hash of ``buf[start[i]:start[i]+length[i]]`` per row, length clipped to 0..PREFIX_BYTES."""
    out = np.empty(start.shape[0], np.uint64)
    for i in range(start.shape[0]):
        n = length[i]
        n = 0 if n < 0 else (PREFIX_BYTES if n > PREFIX_BYTES else n)
        out[i] = hash_at(buf, start[i], n)
    return out
