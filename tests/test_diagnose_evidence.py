"""PacketEvidence: the TCP numbers a diagnosis reads per journey do not depend on the order rows are emitted in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcaptools.k8s.diagnose import PacketEvidence
from pcaptools.k8s.paths import load_paths

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "calico-vxlan"


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample_pcaps/calico-vxlan is not checked out")
def test_tcp_numbers_per_journey_are_the_same_when_rows_are_emitted_out_of_order():
    ps = load_paths(SAMPLE)
    cs, corr = ps.captures, ps.correlation
    whole = PacketEvidence.of(cs, corr)  # rows in packet-table order: the one-pass path
    assert len(whole._sj) > 0

    pk = cs.packets
    key = np.arange(len(pk), dtype=np.int64)
    rj = np.asarray(corr.row_journey, np.int64)
    ev = PacketEvidence()
    ev.points(cs.points)
    ev.batch(None, pk, pk["point_id"].to_numpy(np.int64), key, None)
    m = np.flatnonzero(rj >= 0)
    shuffled = np.random.default_rng(0).permutation(m)  # the sorting path: a journey's first row found by key
    ev.emitted(key[shuffled], rj[shuffled])
    ev.finish()
    np.testing.assert_array_equal(ev._sj, whole._sj)
    np.testing.assert_array_equal(ev._sv, whole._sv)


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample_pcaps/calico-vxlan is not checked out")
def test_tcp_numbers_are_the_same_when_journeys_are_emitted_in_many_calls_between_batches():
    """A partitioned window emits its journeys a partition at a time, and batches arrive between windows: the rows
    left waiting (marked, compacted now and then) give the numbers of one whole emit."""
    ps = load_paths(SAMPLE)
    cs, corr = ps.captures, ps.correlation
    whole = PacketEvidence.of(cs, corr)
    pk = cs.packets
    key = np.arange(len(pk), dtype=np.int64)
    rj = np.asarray(corr.row_journey, np.int64)
    pid = pk["point_id"].to_numpy(np.int64)
    ev = PacketEvidence()
    ev.points(cs.points)
    rng = np.random.default_rng(1)
    half = len(pk) // 2
    ev.batch(None, pk.iloc[:half], pid[:half], key[:half], None)
    journeys = np.unique(rj[rj >= 0])
    parts = rng.integers(0, 7, len(journeys))  # seven "partitions" of the journeys
    done = np.zeros(0, np.int64)
    for p in range(7):  # journeys whose rows all came in the first batch, a partition at a time
        js = journeys[(parts == p) & np.isin(journeys, rj[half:], invert=True)]
        rows = np.flatnonzero(np.isin(rj, js))
        ev.emitted(key[rows], rj[rows])
        done = np.concatenate([done, js])
    assert ev._dead > 0 or len(ev._wait) < half  # rows were marked or compacted away
    ev.batch(None, pk.iloc[half:], pid[half:], key[half:], None)
    for p in range(7):
        rows = np.flatnonzero(np.isin(rj, journeys[parts == p]) & np.isin(rj, done, invert=True))
        ev.emitted(key[rows], rj[rows])
    ev.finish()
    np.testing.assert_array_equal(ev._sj, whole._sj)
    np.testing.assert_array_equal(ev._sv, whole._sv)
