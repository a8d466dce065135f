"""Spine's (flow, next point) counts are the same by hashing as by sorting every pair."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pcaptools.correlate.spine import pair_counts as _pair_counts


def _sorted_counts(f: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference, independent of both paths: count every (flow, point) pair in a dict, sort the keys."""
    counts = Counter(zip(f.tolist(), q.tolist(), strict=True))
    keys = sorted(counts)
    return (np.array([k[0] for k in keys], np.int64), np.array([k[1] for k in keys], np.int64),
            np.array([counts[k] for k in keys], np.int64))


def test_pair_counts_match_a_full_sort_for_few_and_many_flows() -> None:
    """Few distinct flows (the bincount path), all distinct (the sort fallback) and none give the reference."""
    rng = np.random.default_rng(7)
    for nflows, n, npts in ((5, 1000, 4), (3000, 3000, 64), (1, 0, 4), (200, 50, 3)):
        flows = rng.integers(-(2**63), 2**63 - 1, max(nflows, 1))
        f = flows[rng.integers(0, flows.shape[0], n)]
        q = rng.integers(0, npts, n).astype(np.int64)
        got, want = _pair_counts(f, q, npts), _sorted_counts(f, q)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
