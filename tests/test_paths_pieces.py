"""A connection larger than a bucket built (and its hops handed to the diagnosis) in pieces of whole journeys
(pcaptools.k8s.paths_stream.build_in_pieces): the same path table, NAT steps, terminal text, ``why`` and
``paths --json`` as the in-memory run, however many pieces the connection is cut into."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.all import wrpcap

from pcaptools.k8s.diagnose import diagnose
from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths import load_paths
from pcaptools.k8s.paths_stream import diagnose_bounded, load_paths_bounded
from tests.test_paths_stream import _assert_same as _assert_same_paths
from tests.test_why_reuse import _conn
from tests.test_why_stream import _assert_same as _assert_same_why
from tests.test_why_stream import _in_memory, _outputs, _streamed

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"


def _largest(ps) -> int:
    """Sightings of the set's largest connection (its journeys' hops rows)."""
    h = ps.hops
    return int(h.loc[h["connection"] >= 0].groupby("connection").size().max())


def test_the_generated_streams_connections_cut_into_pieces_give_the_in_memory_paths_why_and_paths_json(generated):
    ps = load_paths(generated)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=manifest_drops([generated]), detail=ps.detail())
    bucket = 200
    assert _largest(ps) > 4 * bucket and len(ps.paths) > 150
    bps, bd = diagnose_bounded(generated, capture_drops=manifest_drops([generated]), window_rows=2000, bucket_rows=bucket)
    assert bps.streamed["pieces"] >= 4 + bps.streamed["buckets"]  # the largest in 4 pieces or more
    _assert_same_paths(ps, bps)
    _assert_same_why(_outputs(ps, d), _outputs(bps, bd))


def test_lab_sample_connections_through_nat_cut_into_pieces_give_the_in_memory_paths_and_why():
    whole = load_paths(SAMPLES / "calico-vxlan")
    assert (whole.nat["op"].astype(str) == "DNAT").any() and (whole.nat["reply"]).any()  # DNAT and its un-DNAT
    bounded = load_paths_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=20)
    assert bounded.streamed["pieces"] > bounded.streamed["buckets"]
    _assert_same_paths(whole, bounded)
    why, cut = _streamed(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=20)
    assert cut["pieces"] == bounded.streamed["pieces"]
    _assert_same_why(_in_memory(SAMPLES / "calico-vxlan"), why)


@pytest.fixture
def reused_three_times(tmp_path) -> tuple[Path, list[int]]:
    """One client port used for three connections (a retried SYN in the first, the third after the idle time): the
    capture and each connection's packets."""
    f = tmp_path / "eth0.pcap"
    conns = [_conn(1_700_000_000.0, 1000, True, b"GET /a HTTP/1.0\r\n\r\n"),
             _conn(1_700_000_002.5, 500_000, False, b"GET /bb HTTP/1.0\r\n\r\n"),
             _conn(1_700_000_100.0, 900_000, False, b"GET /ccc HTTP/1.0\r\n\r\n")]  # fmt: skip
    wrpcap(str(f), [p for c in conns for p in c])
    return f, [len(c) for c in conns]


def test_a_reused_port_built_a_journey_a_piece_gives_the_in_memory_connections(reused_three_times):
    f, sizes = reused_three_times
    whole = load_paths(f)
    assert list(whole.paths["journeys"]) == sizes  # one point: a journey per packet
    bounded = load_paths_bounded(f, window_rows=5, bucket_rows=1)
    assert bounded.streamed["pieces"] == sum(sizes)  # every journey a piece of its own
    _assert_same_paths(whole, bounded)
    why, _ = _streamed(f, window_rows=5, bucket_rows=1)
    _assert_same_why(_in_memory(f), why)


def _journey_pieces(h, every: int, *, own_categories: bool) -> list:
    """``h`` (hops grouped by journey) cut after every ``every``-th journey, as a streamed bucket's detail files cut
    it; ``own_categories``: each piece keeps only the categories it uses (as each file read back has its own)."""
    import numpy as np

    j = h["journey"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])[::every].tolist() + [len(h)]
    pieces = [h.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if own_categories:
        for p in pieces:
            for c in p.columns:
                if p[c].dtype == "category":
                    p[c] = p[c].cat.remove_unused_categories()
    return pieces


def _diagnosed_in_pieces(ps, pieces, drops):
    """The Diagnosis of a loaded set whose hops the Diagnoser is given as ``pieces`` (an iterator, read once)."""
    from pcaptools.k8s.diagnose import Diagnoser, HopTallies, PacketEvidence

    det = ps.detail()
    dg = Diagnoser(ps.inventory, PacketEvidence.of(ps.captures, ps.correlation), HopTallies.of(det.hops), drops,
                   hops=det.hops)  # fmt: skip
    dg.add(iter(pieces), det.paths, det.nat)
    return dg.result(det.paths, det.nat)


def test_a_diagnosis_given_a_connections_journeys_cut_across_pieces_equals_the_whole_tables(generated):
    from pcaptools.k8s.diagnose_journeys import JourneyTable

    ps = load_paths(generated)
    drops = manifest_drops([generated])
    h = ps.detail().hops
    d = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=drops, detail=ps.detail())
    assert len(d.losses) and len(d.timeline)  # losses and retransmissions to get right
    whole = _outputs(ps, d)
    big = h["connection"].value_counts().index[0]
    for every, own_categories in ((5, True), (60, False)):
        pieces = _journey_pieces(h, every, own_categories=own_categories)
        assert sum(bool((p["connection"] == big).any()) for p in pieces) >= 10  # the largest connection in many pieces
        _assert_same_why(whole, _outputs(ps, _diagnosed_in_pieces(ps, pieces, drops)))
    # the journeys' columns themselves: the same values (codes may differ, names may not)
    t, cut = JourneyTable(h, _evidence(ps)), JourneyTable(iter(pieces), _evidence(ps))
    for k in ("s", "e", "jid", "conn", "dir", "ts0", "tsl", "flags", "size", "last_size", "dport", "fp", "tun", "seq",
              "seglen", "ts"):  # fmt: skip
        assert (getattr(t, k) == getattr(cut, k)).all(), k
    for names, codes in (("point_names", "pt"), ("node_names", "nd"), ("src_names", "src_c"), ("dst_names", "dst_c")):
        assert (getattr(t, names)[getattr(t, codes)].astype(str) == getattr(cut, names)[getattr(cut, codes)].astype(str)).all()


def _evidence(ps):
    from pcaptools.k8s.diagnose import PacketEvidence

    return PacketEvidence.of(ps.captures, ps.correlation)


def test_icmp_errors_match_connections_whose_hops_come_a_journey_a_piece(tmp_path):
    from tests.test_why_stream import _crafted

    specs = _crafted(tmp_path)
    ps = load_paths([], points=specs)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, detail=ps.detail())
    icmp = [x for x in d.losses.itertuples() if "ICMP" in x.evidence]
    assert len(icmp) == 2  # the frag-needed and the administratively prohibited, each matched by its quoted 5-tuple
    cut = _diagnosed_in_pieces(ps, _journey_pieces(ps.detail().hops, 1, own_categories=True), None)
    _assert_same_why(_outputs(ps, d), _outputs(ps, cut))
