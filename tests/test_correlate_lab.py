"""Correlation against the lab's ground truth: every connection's SYN (and SYN-ACK) at every point on its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from correlate_support import dpkt_packets

from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet

SAMPLES = sorted(Path(__file__).parent.parent.glob("sample_pcaps/*/truth.json"))


def _decoder():
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]

        return read_packets
    except ImportError:
        return dpkt_packets


@pytest.fixture(scope="module", params=[p.parent.name for p in SAMPLES] or [None])
def sample(request):
    if request.param is None:
        pytest.skip("no lab samples under sample_pcaps/")
    d = Path(__file__).parent.parent / "sample_pcaps" / request.param
    cs = CaptureSet.load(d, decoder=_decoder())
    return json.loads((d / "truth.json").read_text()), correlate(cs)


def _journey_of(hops, hop0: dict, flags: int):
    t = hop0["tuple"]
    m = (
        (hops["point"].astype(str) == f"{hop0['node']}:{hop0['interface']}")
        & (hops["src"].astype(str) == t["src"]) & (hops["dst"].astype(str) == t["dst"])
        & (hops["sport"] == t["sport"]) & (hops["dport"] == t["dport"])
        & ((hops["tcp_flags"] & 0x17) == flags)
    )  # fmt: skip
    return hops.loc[m, "journey"].unique()


def _check_path(hops, path: list[dict], flags: int, what: str) -> None:
    journeys = _journey_of(hops, path[0], flags)
    assert len(journeys) >= 1, f"{what}: not seen at {path[0]['node']}:{path[0]['interface']}"
    for j in journeys:  # every SYN (retransmissions included) went the whole way
        rows = hops[hops["journey"] == j]
        seen = {(str(r.point), str(r.src), int(r.sport), str(r.dst), int(r.dport)) for r in rows.itertuples()}
        for h in path:
            t = h["tuple"]
            key = (f"{h['node']}:{h['interface']}", t["src"], t["sport"], t["dst"], t["dport"])
            assert key in seen, f"{what}: journey {j} lacks {key}; has {sorted(seen)}"


def test_every_syn_is_found_at_every_point_of_its_path(sample):
    truth, corr = sample
    tcp = [c for c in truth["connections"] if c["proto"] == "tcp" and c.get("ok")]
    assert tcp
    for c in tcp:
        _check_path(corr.hops, c["path"]["forward"], 0x02, f"connection {c['id']} ({c['kind']}) SYN")


def test_every_syn_ack_is_found_at_every_point_of_its_reverse_path(sample):
    truth, corr = sample
    for c in truth["connections"]:
        if c["proto"] == "tcp" and c.get("ok") and c["path"].get("reverse"):
            _check_path(corr.hops, c["path"]["reverse"], 0x12, f"connection {c['id']} ({c['kind']}) SYN-ACK")


def test_lab_clocks_are_one_clock(sample):
    # the lab runs every "node" on one host kernel: all offsets must come out near zero
    _, corr = sample
    assert (corr.offsets["offset_ns"].abs() < 100_000).all()


def test_lab_points_share_one_clock_so_offsets_stay_within_their_bounds_and_no_skew_is_applied(sample):
    """All lab namespaces read the same kernel clock: the true offset of every node is 0."""
    _, corr = sample
    off = corr.offsets.set_index("node")
    assert (off["skew_ppm"] == 0).all(), off
    assert (off["offset_ns"].abs() <= off["uncertainty_ns"] + 1).all(), off
    assert (off["uncertainty_ns"] < 50_000).all(), off
