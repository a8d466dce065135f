"""The ICMP type is part of the fingerprint: an echo reply, which carries its request's id, sequence and payload, never
joins its request's journey (NAT leaves the type alone, so a packet keeps it at every point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcaptools
from pcaptools.correlate.api import correlate
from pcaptools.correlate.fingerprint import fingerprint
from pcaptools.k8s.discover import load_captures

PEER = Path(__file__).resolve().parent / "data" / "peer"
ICMP_CAPTURES = [  # real captures with ICMP echo (IPv4 and IPv6, native and tunnelled) and ICMP errors
    "community-id-spec/pcaps/icmp6.pcap",
    "community-id-spec/pcaps/icmp.pcap",
    "community-id-spec/pcaps/combined.pcap",
    "zeek/Traces/communityid/icmp6.pcap",
    "zeek/Traces/communityid/icmp.pcap",
    "zeek/Traces/tunnels/ping6-in-ipv4.pcap",
    "zeek/Traces/tunnels/gre-within-gre.pcap",
    "tcpdump/tests/vxlan.pcap",
    "tcpdump/tests/geneve.pcap",
]


def _types_per_journey(path: Path) -> pd.Series:
    """Distinct ICMP types of each journey of a capture's correlation (rows joined to the packet table by record)."""
    hops = correlate(load_captures(path)).hops
    pk = pcaptools.read_packets(path)
    icmp = hops.assign(icmp_type=pk["icmp_type"].to_numpy()[hops["record"].to_numpy(np.int64)])
    icmp = icmp[icmp["icmp_type"] >= 0]
    return icmp.groupby("journey")["icmp_type"].nunique()


@pytest.mark.parametrize("name", ICMP_CAPTURES)
def test_every_journey_holds_one_icmp_type(name):
    types = _types_per_journey(PEER / name)
    assert len(types) > 0 and (types == 1).all()


def test_icmpv6_echo_request_and_reply_differ_only_by_type_and_are_separate_journeys():
    path = PEER / "community-id-spec/pcaps/icmp6.pcap"
    pk = pcaptools.read_packets(path, payload_hash=True)
    echo = pk[pk["icmp_type"].isin([128, 129])]
    fp = fingerprint(echo, echo["payload_hash"].to_numpy(np.uint64))
    # every reply has its request's payload (and IPv6 no IP id): without the type they would share one fingerprint
    same = echo.assign(fp=fp).groupby(["payload_len", "payload_hash"], observed=True)
    pairs = same["icmp_type"].nunique()
    assert (pairs == 2).sum() == 3  # the capture's three pings, each answered
    assert (same["fp"].nunique()[pairs == 2] == 2).all()
    res = correlate(load_captures(path))
    assert res.hops.groupby("journey").size().max() == 1  # one point: nothing seen twice, nothing joined


def test_non_icmp_fingerprints_do_not_depend_on_the_icmp_type_column():
    pk = pcaptools.read_packets(PEER / "community-id-spec/pcaps/combined.pcap", payload_hash=True)
    ph = pk["payload_hash"].to_numpy(np.uint64)
    other = pk["icmp_type"].to_numpy() < 0
    without = fingerprint(pk.drop(columns=["icmp_type"]), ph)
    assert other.sum() > 10 and (fingerprint(pk, ph)[other] == without[other]).all()
    assert (fingerprint(pk, ph)[~other] != without[~other]).any()
