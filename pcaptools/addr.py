"""Addresses in tables: readable category strings for users, 128-bit integer pairs for numpy.

IPv4 addresses map into the IPv4-mapped IPv6 space (``::ffff:a.b.c.d``) as integers, so one
(hi, lo) uint64 pair represents either family and sorts/joins vectorised.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd

V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_LO_PREFIX = np.uint64(0xFFFF_0000_0000)


def _parse(s: str) -> tuple[int, int]:
    a = ipaddress.ip_address(s)
    v = int(a) if a.version == 6 else (0xFFFF_0000_0000 | int(a))
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def label(value: int, *, v6: bool = False) -> str:
    """Text of a 128-bit address: IPv4 for the ``::ffff:0:0/96`` range unless it came from an IPv6
    header (``v6``), then RFC 5952's mixed form ``::ffff:a.b.c.d`` as tshark prints it."""
    if value >> 32 == 0xFFFF:
        v4 = ipaddress.IPv4Address(value & 0xFFFF_FFFF)
        return f"::ffff:{v4}" if v6 else str(v4)
    return str(ipaddress.IPv6Address(value))


def to_u128(col: pd.Series | pd.Categorical) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, valid) uint64/uint64/bool arrays for an address column; only categories are parsed."""
    cat = pd.Categorical(col) if not isinstance(col, pd.Categorical) else col
    if isinstance(col, pd.Series) and isinstance(col.dtype, pd.CategoricalDtype):
        cat = col.array
    cats = list(cat.categories)
    hi_c = np.zeros(len(cats) + 1, np.uint64)
    lo_c = np.zeros(len(cats) + 1, np.uint64)
    for i, s in enumerate(cats):
        hi_c[i], lo_c[i] = _parse(str(s))
    codes = np.asarray(cat.codes, dtype=np.int64)
    valid = codes >= 0
    idx = np.where(valid, codes, len(cats))
    return hi_c[idx], lo_c[idx], valid


def from_u128(hi: np.ndarray, lo: np.ndarray, valid: np.ndarray | None = None) -> pd.Categorical:
    """Readable category column from (hi, lo) pairs; ``valid`` False rows become missing."""
    n = hi.shape[0]
    if valid is None:
        valid = np.ones(n, bool)
    codes_hi, uniq_hi = pd.factorize(hi, sort=False)
    codes_lo, uniq_lo = pd.factorize(lo, sort=False)
    combo = codes_hi.astype(np.int64) * max(len(uniq_lo), 1) + codes_lo
    combo = np.where(valid, combo, -1)
    codes, uniq = pd.factorize(combo, sort=False)
    labels = []
    keep = uniq >= 0
    for c in uniq[keep]:
        h = int(uniq_hi[c // max(len(uniq_lo), 1)])
        low = int(uniq_lo[c % max(len(uniq_lo), 1)])
        labels.append(label((h << 64) | low))
    # map codes of the invalid (-1) unique to missing
    remap = np.full(len(uniq), -1, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    final = remap[codes] if len(uniq) else np.full(n, -1, np.int64)
    return pd.Categorical.from_codes(final, categories=pd.Index(labels, dtype=object), validate=False)
