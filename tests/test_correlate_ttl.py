"""A packet's TTL never rises along its path: the matcher joins no sighting to a journey whose TTL is already lower."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcaptools.correlate.windows as windows
from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.match import _walk
from pcaptools.correlate.stream import correlate_files

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The seeded 4-point set (benchmarks/gen_set.py, 20,000 packets): UDP datagrams of equal length and IPv4 id with
    zero payloads share fingerprints, requests and replies among them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gen_set import generate
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path_factory.mktemp("set20k")
    generate(20000, out, seed=0)
    return out


def _same_point_repeats(hops: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Journeys seen twice at one point: (those where the TTL rose in between, those where it fell)."""
    j = hops["journey"].to_numpy(np.int64)
    p = hops["point"].cat.codes.to_numpy(np.int64)
    ttl = hops["ttl"].to_numpy(np.int64)
    o = np.lexsort((hops["hop"].to_numpy(), p, j))
    j, p, ttl = j[o], p[o], ttl[o]
    again = (j[1:] == j[:-1]) & (p[1:] == p[:-1])
    rose, fell = ttl[1:] > ttl[:-1], ttl[1:] < ttl[:-1]
    return np.unique(j[1:][again & rose]), np.unique(j[1:][again & fell])


def _ttl_rises(hops: pd.DataFrame) -> np.ndarray:
    """Journeys in which a sighting has a higher TTL than the one before it (rows without a TTL left out of the pair)."""
    j = hops["journey"].to_numpy(np.int64)
    ttl = hops["ttl"].to_numpy(np.int64)
    o = np.lexsort((hops["hop"].to_numpy(), j))
    j, ttl = j[o], ttl[o]
    up = (j[1:] == j[:-1]) & (ttl[1:] > ttl[:-1]) & (ttl[:-1] >= 0)
    return np.unique(j[1:][up])


HAIRPINS = {"calico-vxlan": 88, "vpc": 12}
"""Journeys of each sample seen twice at one point (routed back out of the interface they came in by)."""


def _ignore_ttl(monkeypatch) -> None:  # noqa: ANN001
    """The matcher as it was without the TTL rule: every row's TTL given as missing (which the rule leaves free)."""
    journeys = windows.journeys

    def without_ttl(fp, ts_ns, point, ttl, **kw):  # noqa: ANN001, ANN202
        return journeys(fp, ts_ns, point, np.full(len(ttl), -1, np.int16), **kw)

    monkeypatch.setattr(windows, "journeys", without_ttl)


def test_a_colliding_datagram_with_a_higher_ttl_is_not_joined_to_a_journey(generated, monkeypatch):
    hops = correlate(CaptureSet.load(generated)).hops
    assert _ttl_rises(hops).size == 0 and _same_point_repeats(hops)[0].size == 0
    _ignore_ttl(monkeypatch)  # the rule bites on this set: without it, colliding datagrams join journeys
    assert _ttl_rises(correlate(CaptureSet.load(generated)).hops).size > 10


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_hairpin_resightings_with_falling_ttl_stay_one_journey(sample, monkeypatch):
    cs = CaptureSet.load(SAMPLES / sample)
    hops = correlate(cs).hops
    rising, fell = _same_point_repeats(hops)
    assert rising.size == 0 and fell.size == HAIRPINS[sample]
    _ignore_ttl(monkeypatch)  # and every journey is the one matched without the rule
    pd.testing.assert_frame_equal(correlate(cs).hops, hops)


def test_streamed_in_small_windows_gives_the_in_memory_journeys_where_the_ttl_rule_bites(generated, tmp_path):
    one, _ = correlate_files(generated, memory=1 << 40, out=tmp_path / "one.parquet")
    win, stats = correlate_files(generated, window_rows=2000, out=tmp_path / "win.parquet")
    assert stats.windows > 5 and stats.carried_journeys > 0
    h1, h2 = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "win.parquet")
    canon = {c: str for c in h1.columns if isinstance(h1[c].dtype, pd.CategoricalDtype)}
    pd.testing.assert_frame_equal(h1.astype(canon), h2.astype(canon))
    assert _same_point_repeats(one.hops)[0].size == 0


def test_dask_gives_the_in_memory_journeys_where_the_ttl_rule_bites(generated):
    pytest.importorskip("distributed", reason="needs the dask extra: pip install -e '.[test]'")
    from pcaptools.dask.cluster import connect
    from pcaptools.dask.correlation import correlate_captures
    from pcaptools.k8s.discover import load_captures

    want = correlate(load_captures(generated)).hops
    with connect(workers=2, processes=False) as client, client.as_current():
        got = correlate_captures(generated, chunk_records=6000).hops
    canon = {c: str for c in want.columns if isinstance(want[c].dtype, pd.CategoricalDtype)}
    pd.testing.assert_frame_equal(got.astype(canon).reset_index(drop=True), want.astype(canon).reset_index(drop=True))
    assert _same_point_repeats(got)[0].size == 0


def _walked(slot, ttl, window=10**9):
    n = len(slot)
    return _walk(np.ones(n, np.uint64), np.arange(n, dtype=np.int64), np.array(slot, np.int64), np.array(ttl, np.int64),
                 window, max(slot) + 2).tolist()  # fmt: skip


def test_walk_opens_a_journey_for_a_sighting_whose_ttl_is_above_the_journeys_latest():
    # A (slot 0) at 64, B (slot 2) at 63; then C at 64 (slot 4) cannot follow 63, and C at 62 (slot 6) can
    assert _walked([0, 2, 4, 6], [64, 63, 64, 62]) == [0, 0, 1, 0]


def _reference_walk(slot, ttl, ts, window):
    """The rule read plainly: each sighting joins the oldest journey started within ``window`` that lacks its slot, whose
    latest TTL is not below its own."""
    journeys = []  # [start, slots, latest ttl]
    out = []
    for s, h, t in zip(slot, ttl, ts, strict=True):
        free = [k for k, (start, held, last) in enumerate(journeys) if t - start <= window and s not in held
                and (h < 0 or last is None or h <= last)]  # fmt: skip
        k = free[0] if free else len(journeys)
        if not free:
            journeys.append([t, set(), None])
        journeys[k][1].add(s)
        if h >= 0:
            journeys[k][2] = h
        out.append(k)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_walk_joins_the_oldest_journey_the_ttl_rule_allows_on_random_sightings(seed):
    rng = np.random.default_rng(seed)
    n = 300
    slot = rng.integers(0, 12, n)
    ttl = np.where(slot // 2 % 3 == 2, -1, 64 - slot // 4)  # one TTL per slot (its look), some slots without one
    ts = np.sort(rng.integers(0, 2_000, n))
    got = _walk(np.ones(n, np.uint64), ts.astype(np.int64), slot.astype(np.int64), ttl.astype(np.int64), 500, 12)
    assert got.tolist() == _reference_walk(slot.tolist(), ttl.tolist(), ts.tolist(), 500)


def test_walk_joins_a_packet_seen_plain_and_encapsulated_at_one_point_with_one_ttl():
    # slots 0 and 1: one point and TTL 64, untunnelled and tunnelled (an -i any capture without interface numbers
    # sees a packet on the overlay device and encapsulated on the uplink); slot 3: that point at TTL 63, tunnelled
    assert _walked([0, 1, 3], [64, 64, 63]) == [0, 0, 0]


def test_walk_leaves_sightings_without_a_ttl_free_and_lets_them_constrain_nothing():
    # a row without TTL (-1) joins journey 0 after its TTL 50 and leaves it at 50; a journey of such rows takes any TTL
    assert _walked([0, 2, 4, 6], [50, -1, 64, 40]) == [0, 0, 1, 0]
    assert _walked([0, 2], [-1, 64]) == [0, 0]
