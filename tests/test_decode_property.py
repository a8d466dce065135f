"""Property tests: scapy-built stacks (VLAN, IPv4/IPv6, TCP/UDP/ICMP, tunnels, truncation) decode
to the fields scapy put in; arbitrary bytes under any link type never raise and keep one row each."""

from __future__ import annotations

import ipaddress
import struct
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

import pcaptools
from pcaptools.decode import decode_batch
from tests.decode_support import batch_of

v4 = st.integers(1, 2**32 - 2).map(lambda x: str(__import__("ipaddress").IPv4Address(x)))
v6 = st.integers(1, 2**128 - 2).map(lambda x: str(__import__("ipaddress").IPv6Address(x)))
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"  # explicit: scapy would ARP for a missing dst
port = st.integers(1, 65535).filter(lambda p: p not in (4789, 8472, 6081, 51820, 51821))


@st.composite
def inner(draw):
    """(scapy IP packet, expected main fields)."""
    six = draw(st.booleans())
    src, dst = (draw(v6), draw(v6)) if six else (draw(v4), draw(v4))
    ttl = draw(st.integers(0, 255))
    ip = IPv6(src=src, dst=dst, hlim=ttl) if six else IP(src=src, dst=dst, ttl=ttl, id=draw(st.integers(0, 65535)))
    exp = {"src": str(__import__("ipaddress").ip_address(src)), "dst": str(__import__("ipaddress").ip_address(dst)),
           "ttl": ttl, "ip_version": 6 if six else 4}  # fmt: skip
    if not six:
        exp["ip_id"] = ip.id
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if kind == "tcp":
        sp, dp, seq, ack = draw(port), draw(port), draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
        flags, win = draw(st.integers(0, 255)), draw(st.integers(0, 65535))
        mss = draw(st.none() | st.integers(0, 65535))
        l4 = TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags, window=win, options=[("MSS", mss)] if mss is not None else [])
        exp.update(proto=6, sport=sp, dport=dp, tcp_seq=seq, tcp_ack=ack, tcp_flags=flags, tcp_win=win,
                   tcp_mss=-1 if mss is None else mss)  # fmt: skip
    elif kind == "udp":
        sp, dp = draw(port), draw(port)
        l4 = UDP(sport=sp, dport=dp)
        exp.update(proto=17, sport=sp, dport=dp)
    else:
        l4 = ICMPv6EchoRequest() if six else ICMP(type=8, code=0)
        exp.update(proto=58 if six else 1, icmp_type=128 if six else 8, icmp_code=0, sport=-1)
    payload = Raw(draw(st.binary(max_size=40)))
    return ip / l4 / payload, exp


@st.composite
def frame(draw):
    """(frame bytes, expected fields) with an optional VLAN tag and an optional tunnel."""
    pkt, exp = draw(inner())
    vlan = draw(st.none() | st.integers(0, 4095))
    tunnel = draw(st.sampled_from([None, "vxlan4789", "vxlan8472", "geneve", "gre", "ipip"]))
    eth = Ether(src=MAC1, dst=MAC2)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
        exp["vlan"] = vlan
    if tunnel is None:
        return bytes(eth / pkt), exp
    osrc, odst, vni = draw(v4), draw(v4), draw(st.integers(0, 2**24 - 1))
    outer = IP(src=osrc, dst=odst)
    if tunnel.startswith("vxlan"):
        dp = int(tunnel[5:])
        f = eth / outer / UDP(sport=draw(port), dport=dp) / VXLAN(vni=vni) / Ether(src=MAC1, dst=MAC2) / pkt
        exp.update(tunnel="vxlan", vni=vni, outer_dport=dp, tunnel_rule=f"udp.dport=={dp}")
    elif tunnel == "geneve":
        f = eth / outer / UDP(sport=draw(port), dport=6081) / GENEVE(vni=vni, proto=0x6558) / Ether(src=MAC1, dst=MAC2) / pkt
        exp.update(tunnel="geneve", vni=vni, outer_dport=6081)
    elif tunnel == "gre":
        f = eth / outer / GRE(key_present=1, key=vni, proto=0x6558) / Ether(src=MAC1, dst=MAC2) / pkt
        exp.update(tunnel="gre", vni=vni, outer_proto=47)
    else:
        f = eth / outer / pkt
        exp.update(tunnel="ipip" if exp["ip_version"] == 4 else "ip6ip", outer_proto=4 if exp["ip_version"] == 4 else 41)
    exp.update(outer_src=osrc, outer_dst=odst, tunnel_depth=1)
    return bytes(f), exp


def _pcap(frames: list[bytes], wire: list[int]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i, (f, w) in enumerate(zip(frames, wire, strict=True)):
        out += struct.pack("<IIII", 1_700_000_000, i, len(f), w) + f
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame(), min_size=1, max_size=6))
def test_scapy_stacks_decode_to_the_fields_scapy_put_in(frames) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "x.pcap"
        p.write_bytes(_pcap([f for f, _ in frames], [len(f) for f, _ in frames]))
        df = pcaptools.read_packets(p)
    assert len(df) == len(frames)
    for i, (_f, exp) in enumerate(frames):
        row = df.iloc[i]
        assert pd.isna(row.error) and pd.isna(row.truncated_at), (i, row.error, row.truncated_at)
        for k, v in exp.items():
            if k in ("src", "dst"):  # the same address whatever its text form (::ffff:0:0 = ::ffff:0.0.0.0)
                assert ipaddress.ip_address(row[k]) == ipaddress.ip_address(v), (i, k, row[k], v)
            else:
                assert row[k] == v, (i, k, row[k], v)


@settings(max_examples=150, deadline=None)
@given(frame(), st.data())
def test_a_cut_frame_decodes_a_consistent_prefix(fr, data) -> None:
    raw, _exp = fr
    cut = data.draw(st.integers(0, len(raw)))
    whole = decode_batch(batch_of([raw])).iloc[0]
    part = decode_batch(batch_of([raw[:cut]], wirelen=[len(raw)])).iloc[0]
    for k in ("src", "dst", "outer_src", "proto", "sport", "dport", "ttl", "vni", "tcp_seq", "vlan"):
        if not (pd.isna(part[k]) or part[k] == -1) and part.tunnel_depth == whole.tunnel_depth:
            assert part[k] == whole[k], k
    if cut < len(raw) and whole.payload_offset > cut:
        assert pd.notna(part.truncated_at)


LINKTYPES = st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 147, 65535])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), LINKTYPES, st.data())
def test_arbitrary_bytes_never_raise(frames, linktype, data) -> None:
    wire = [len(f) + data.draw(st.integers(0, 70000)) for f in frames]
    df = decode_batch(batch_of(frames, linktype=linktype, wirelen=wire), vxlan_ports=(4789, 8472, 53))
    assert len(df) == len(frames)


@settings(max_examples=200, deadline=None)
@given(frame(), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6))
def test_corrupted_real_stacks_never_raise(fr, flips) -> None:
    raw = bytearray(fr[0])
    for pos, val in flips:
        if pos < len(raw):
            raw[pos] = val
    df = decode_batch(batch_of([bytes(raw)], wirelen=[len(raw)]))
    assert len(df) == 1
