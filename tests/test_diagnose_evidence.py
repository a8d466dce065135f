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
