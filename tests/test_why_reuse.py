"""Captures crafted with scapy: a client port reused for a second connection is a second connection; a SYN-ACK
answered by RST is a conntrack failure."""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, Ether, Raw, wrpcap

import pcaptools
from pcaptools.k8s.diagnose import diagnose
from pcaptools.k8s.paths import paths

C, S, SPORT = "10.244.1.5", "10.244.2.7", 41234


def _conn(t0: float, isn: int, retry_syn: bool, payload: bytes) -> list:
    """One TCP connection client -> server: SYN (optionally retried), handshake, request, answer, FIN both ways."""
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    c2s = lambda **kw: e / IP(src=C, dst=S, id=kw.pop("id")) / TCP(sport=SPORT, dport=80, **kw)  # noqa: E731
    s2c = lambda **kw: e / IP(src=S, dst=C, id=kw.pop("id")) / TCP(sport=80, dport=SPORT, **kw)  # noqa: E731
    pk = [(0.0, c2s(id=1, flags="S", seq=isn))]
    if retry_syn:
        pk.append((1.0, c2s(id=2, flags="S", seq=isn)))
    b = pk[-1][0]
    pk += [(b + 0.001, s2c(id=10, flags="SA", seq=9000, ack=isn + 1)),
           (b + 0.002, c2s(id=3, flags="A", seq=isn + 1, ack=9001)),
           (b + 0.003, c2s(id=4, flags="PA", seq=isn + 1, ack=9001) / Raw(payload)),
           (b + 0.004, s2c(id=11, flags="FA", seq=9001, ack=isn + 1 + len(payload))),
           (b + 0.005, c2s(id=5, flags="FA", seq=isn + 1 + len(payload), ack=9002)),
           (b + 0.006, s2c(id=12, flags="A", seq=9002, ack=isn + 2 + len(payload)))]  # fmt: skip
    out = []
    for dt, p in pk:
        p.time = t0 + dt
        out.append(p)
    return out


@pytest.fixture
def reused(tmp_path):
    first = _conn(1_700_000_000.0, 1000, True, b"GET /a HTTP/1.0\r\n\r\n")
    second = _conn(1_700_000_000.5 + 2.0, 500_000, False, b"GET /bb HTTP/1.0\r\n\r\n")
    f = tmp_path / "eth0.pcap"
    wrpcap(str(f), first + second)
    return f, len(first), len(second)


def test_a_reused_client_port_starts_a_second_connection_and_a_retried_syn_does_not(reused):
    f, n1, n2 = reused
    corr = pcaptools.correlate(pcaptools.CaptureSet.load(points=[f"node-1:eth0={f}"]))
    p = paths(corr)
    same = p[(p["client_addr"].astype(str) == C) & (p["client_port"] == SPORT)]
    assert len(same) == 2
    assert list(same["journeys"]) == [n1, n2]
    assert same["first_ts_ns"].iloc[0] < same["first_ts_ns"].iloc[1]
    assert set(same["server_addr"].astype(str)) == {S}


def test_a_syn_ack_answered_by_rst_is_a_conntrack_failure_at_the_client(tmp_path):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pk = [e / IP(src=C, dst=S, id=1) / TCP(sport=SPORT, dport=80, flags="S", seq=100),
          e / IP(src=S, dst=C, id=2) / TCP(sport=80, dport=SPORT, flags="SA", seq=7000, ack=101),
          e / IP(src=C, dst=S, id=3) / TCP(sport=SPORT, dport=80, flags="R", seq=101)]  # fmt: skip
    for k, p in enumerate(pk):
        p.time = 1_700_000_000.0 + k * 0.001
    f = tmp_path / "veth.pcap"
    wrpcap(str(f), pk)
    cs = pcaptools.CaptureSet.load(points=[f"node-1:veth1={f}"])
    d = diagnose(cs, pcaptools.correlate(cs))
    assert list(d.connections["status"]) == ["failed"]
    (loss,) = d.connection_record(int(d.connections["connection"].iloc[0]))["losses"]
    assert (loss["cause"], loss["direction"], loss["last_seen"], loss["node"]) == ("conntrack", "reverse", "node-1:veth1", "node-1")
    assert loss["packets"] == 1 and loss["first_missed"] is None
