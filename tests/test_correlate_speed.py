"""The correlator's compiled passes give what the plain numpy formulations give, on real capture sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.fingerprint import combine, fingerprint
from pcaptools.correlate.match import _walk, by_fingerprint, match, time_order, unique_groups

ROOT = Path(__file__).resolve().parent.parent
SETS = [ROOT / "sample_pcaps" / "calico-vxlan", ROOT / "sample_pcaps" / "vpc"]


@pytest.fixture(scope="module", params=SETS, ids=lambda p: p.name)
def packets(request):
    return CaptureSet.load(request.param).packets


def test_fingerprint_is_combine_of_its_nine_fields(packets) -> None:
    pk = packets
    proto = pk["proto"].to_numpy(np.int64)
    ref = combine([proto] + [pk[c].to_numpy(np.int64) for c in ("ip_id", "frag_offset")]
                  + [pk["more_frags"].to_numpy(bool).astype(np.int64)]
                  + [pk[c].to_numpy(np.int64) for c in ("tcp_seq", "tcp_ack", "tcp_flags", "payload_len")]
                  + [pk["payload_hash"].to_numpy(np.uint64)])  # fmt: skip
    ref[ref == 0] = 1
    ref[proto < 0] = 0
    fp = fingerprint(pk, pk["payload_hash"].to_numpy(np.uint64))
    np.testing.assert_array_equal(fp, ref)
    assert (fp == 0).sum() == (proto < 0).sum()


def _reference_match(fp, ts, pt, ttl, window, npoints):
    out = np.full(fp.shape[0], -1, np.int64)
    rows = np.flatnonzero(fp != 0)
    order = rows[np.lexsort((ts[rows], fp[rows]))]
    out[order] = _walk(fp[order], ts[order], pt[order], ttl[order], window, npoints)
    return out


def _reference_unique(fp, pt):
    out = np.full(fp.shape[0], -1, np.int64)
    rows = np.flatnonzero(fp != 0)
    order = rows[np.lexsort((pt[rows], fp[rows]))]
    f, p = fp[order], pt[order]
    new = np.r_[True, f[1:] != f[:-1]]
    gid = np.cumsum(new) - 1
    dup = np.r_[False, (~new[1:]) & (p[1:] == p[:-1])]
    bad = np.zeros(gid.max() + 1, bool)
    bad[gid[dup]] = True
    keep = (np.bincount(gid) >= 2) & ~bad
    out[order] = np.where(keep[gid], gid, -1)
    return out


def test_one_fingerprint_sort_serves_both_passes_like_two_lexsorts(packets) -> None:
    fp = fingerprint(packets, packets["payload_hash"].to_numpy(np.uint64))
    ts = packets["ts_ns"].to_numpy(np.int64)
    pt = packets["point_id"].to_numpy(np.int64)
    order = by_fingerprint(fp)
    np.testing.assert_array_equal(unique_groups(fp, pt, order=order), _reference_unique(fp, pt))
    ttl = packets["ttl"].to_numpy(np.int64)
    got = match(fp, ts, pt, ttl, window_ns=2_000_000_000, npoints=int(pt.max()) + 1, order=time_order(fp, ts, order))
    np.testing.assert_array_equal(got, _reference_match(fp, ts, pt, ttl, 2_000_000_000, int(pt.max()) + 1))
    assert (got >= 0).sum() == (fp != 0).sum()


def test_a_fingerprint_repeated_hundreds_of_times_is_ordered_by_time_stably(packets) -> None:
    # duplicate ACK storms: one fingerprint at every row of a real capture set, with tied timestamps
    n = min(len(packets), 600)
    fp = np.full(n, 7, np.uint64)
    ts = packets["ts_ns"].to_numpy(np.int64)[:n] // 1_000_000  # ms: many ties
    pt = packets["point_id"].to_numpy(np.int64)[:n]
    ttl = packets["ttl"].to_numpy(np.int64)[:n]
    got = match(fp, ts, pt, ttl, window_ns=50, npoints=int(pt.max()) + 1)
    np.testing.assert_array_equal(got, _reference_match(fp, ts, pt, ttl, 50, int(pt.max()) + 1))
    assert got.max() > 0


def test_clock_sample_keeps_every_sighting_of_the_k_smallest_fingerprints_and_splits_like_the_whole(packets) -> None:
    from pcaptools.correlate.match import clock_sample

    fp = fingerprint(packets, packets["payload_hash"].to_numpy(np.uint64))
    distinct = np.unique(fp[fp != 0])
    k = distinct.size // 3
    mask = clock_sample(fp, k)
    assert set(np.unique(fp[mask])) == set(distinct[:k])  # every sighting of exactly the k smallest
    assert clock_sample(fp, distinct.size).sum() == (fp != 0).sum()  # k beyond the set: everything matchable
    # bottom k of the union = bottom k of the parts' bottom k: two halves sampled apart, then together
    half = fp.shape[0] // 2
    a, b = fp[:half], fp[half:]
    parts = np.concatenate([a[clock_sample(a, k)], b[clock_sample(b, k)]])
    np.testing.assert_array_equal(np.sort(parts[clock_sample(parts, k)]), np.sort(fp[mask]))
