"""The diagnosis's counting shortcuts give what the general computation gives: sequences of points numbered as one
number per journey (calico-vxlan sample) and as the definition, tables of small key ranges as numpy's and pandas'
sorting and hashing (seeded keys, small and large ranges, negative keys)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.k8s.diagnose import PacketEvidence, _factorize_small, _stable_order, _unique_inverse
from pcaptools.k8s.diagnose_journeys import JourneyTable, _bitsets, _find, sequence_ids
from pcaptools.k8s.paths import load_paths

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "calico-vxlan"
RNG = np.random.default_rng(12)
KEYS = [RNG.integers(0, 50, 5000), RNG.integers(0, 10**12, 500), RNG.integers(-3, 40, 300), np.array([7, 7, 2, 9, 2]),
        np.zeros(0, np.int64)]  # fmt: skip


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample_pcaps/calico-vxlan is not checked out")
def test_sequences_of_points_numbered_in_one_pass_are_numbered_as_their_tuples_are():
    ps = load_paths(SAMPLE)
    t = JourneyTable(ps.hops, PacketEvidence.of(ps.captures, ps.correlation))
    idx = np.arange(t.n)[::-1]  # any order: ids follow first appearance in it
    want = pd.factorize(pd.Series([tuple(t.pt[t.s[i]:t.e[i]].tolist()) for i in idx.tolist()]))[0]
    assert len(set(want.tolist())) > 3  # journeys cross several sequences of points
    np.testing.assert_array_equal(sequence_ids(t, idx), want)


@pytest.mark.parametrize("k", range(len(KEYS)))
def test_keys_counted_through_a_table_of_their_range_are_factorized_as_by_hashing(k: int):
    key = np.asarray(KEYS[k], np.int64)
    codes, uniq = _factorize_small(key)
    want_codes, want_uniq = pd.factorize(key)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(uniq, want_uniq)
    if len(key) and key.min() >= 0:
        u, inv = _unique_inverse(key)
        want_u, want_inv = np.unique(key, return_inverse=True)
        np.testing.assert_array_equal(u, want_u)
        np.testing.assert_array_equal(inv, want_inv)
        np.testing.assert_array_equal(_stable_order(key), np.argsort(key, kind="stable"))
        sk = np.unique(key)
        at, hit = _find(sk, key[::2])
        pos = np.clip(np.searchsorted(sk, key[::2]), 0, len(sk) - 1)
        np.testing.assert_array_equal(hit, sk[pos] == key[::2])
        np.testing.assert_array_equal(at[hit], pos[hit])


@pytest.mark.parametrize("n", [1, 4, 64, 65, 200])  # one word, a full word, two and four words
def test_point_sets_as_bits_hold_each_slices_codes(n: int):
    codes = RNG.integers(-1, n, 3000).astype(np.int64)
    starts = np.unique(np.r_[0, RNG.integers(0, 3000, 400)])
    bits = _bitsets(codes, starts, n)
    for i, (a, b) in enumerate(zip(starts.tolist(), [*starts[1:].tolist(), len(codes)], strict=True)):
        got = {w * 64 + k for w in range(bits.shape[1]) for k in range(64) if int(bits[i, w]) >> k & 1}
        assert got == {c for c in codes[a:b].tolist() if c >= 0}
