"""Differential: every decoded field, packet by packet, against tshark on every capture in tests/data.

tshark's ``-E occurrence=a`` lists give every header of a kind in wire order; ``frame.protocols``
orders the IP headers, so our ``outer_*`` columns are matched with the first IP header, the main
columns with the IP header after ``tunnel_depth`` tunnels, and the ICMP quote with the next one.

Principled disagreements (checked, not compared):
* Rows we mark with ``error`` or ``truncated_at`` are not compared: tshark decodes what it can of a
  malformed or cut header (and sometimes guesses), we stop at it.
* tshark decodes further than we do (PPP inside PPTP's GRE, ERSPAN, Teredo, NSH, MPLS...): our
  main columns stay empty there, and tshark's deeper headers are ignored.
* IPv6 ``proto``: ours is the protocol after the extension headers; tshark's ``ipv6.nxt`` is the
  first next-header, so it is compared only when no extension header follows.
* GSO/BIG TCP super-packets (IPv4 total length 0, IPv6 payload length 0, UDP length 0): tshark does not decode
  past such a carrier header, so rows inside one are checked against tcpdump's expected output
  instead (tests/test_decode_gso.py); lengths are never compared with tshark's 0.
* WireGuard/ESP are opaque: the main columns hold the carrier, which tshark's first IP header is.
"""

from __future__ import annotations

import pandas as pd
import pytest

import pcaptools
from tests.decode_support import DATA, as_int, captures, get, layers, tshark_available, tshark_rows

CAPTURES = captures()
PKTTYPE = {0: "in", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "out"}


@pytest.fixture(scope="session")
def tshark_cache(tmp_path_factory) -> object:
    """tshark's output per capture, computed fresh each session (never reused across runs)."""
    if not tshark_available():
        pytest.skip("tshark is not installed; tests/test_decode_dpkt.py compares with dpkt instead")
    return tmp_path_factory.mktemp("decode_tshark")


def _ip_fields(t: dict, fam: str, k: int) -> dict:
    if fam == "4":
        return {"src": get(t, "ip.src", k), "dst": get(t, "ip.dst", k), "proto": as_int(get(t, "ip.proto", k)),
                "ttl": as_int(get(t, "ip.ttl", k)), "ip_id": as_int(get(t, "ip.id", k))}  # fmt: skip
    return {"src": get(t, "ipv6.src", k), "dst": get(t, "ipv6.dst", k), "proto": as_int(get(t, "ipv6.nxt", k)),
            "ttl": as_int(get(t, "ipv6.hlim", k))}  # fmt: skip


def compare_row(r, t: dict) -> list[str]:
    """Field mismatches between our row ``r`` and tshark's frame ``t`` (empty when they agree)."""
    bad: list[str] = []

    def check(name: str, ours, theirs) -> None:
        if theirs is not None and ours != theirs:
            bad.append(f"{name}: ours {ours!r} tshark {theirs!r}")

    lay = layers(t)
    if isinstance(r.direction, str) and t["sll.pkttype"]:
        check("direction", r.direction, PKTTYPE.get(int(t["sll.pkttype"][0]), "unknown"))
    toks = lay.tokens
    first_ip = next((i for i, x in enumerate(toks) if x in ("ip", "ipv6")), len(toks))
    link = toks[:first_ip]
    if "ieee8021ad" in link:
        check("vlan", r.vlan, as_int(get(t, "ieee8021ad.id", 0)))
    elif "vlan" in link:
        check("vlan", r.vlan, as_int(get(t, "vlan.id", 0)))
    elif r.link == "EN10MB" and r.vlan != -1:
        bad.append(f"vlan: ours {r.vlan} tshark none")
    d = int(r.tunnel_depth)
    opaque = r.tunnel in ("wireguard", "esp")
    if d and isinstance(r.outer_src, str) and lay.ips:
        fam, k, _ = lay.ips[0]
        o = _ip_fields(t, fam, k)
        check("outer_src", r.outer_src, o["src"])
        check("outer_dst", r.outer_dst, o["dst"])
        if fam == "4" or not lay.v6_ext_after.get(0):
            check("outer_proto", r.outer_proto, o["proto"])
        if r.outer_sport >= 0 and lay.l4.get(0, ("",))[0] == "udp":
            check("outer_sport", r.outer_sport, as_int(get(t, "udp.srcport", lay.l4[0][1])))
            check("outer_dport", r.outer_dport, as_int(get(t, "udp.dstport", lay.l4[0][1])))
    if r.tunnel == "vxlan":
        check("vni", r.vni, as_int(get(t, "vxlan.vni", 0)))
    elif r.tunnel == "geneve":
        check("vni", r.vni, as_int(get(t, "geneve.vni", 0)))
    elif r.tunnel == "gre" and r.vni >= 0:
        check("vni", r.vni, as_int(get(t, "gre.key", 0)))
    m = d - 1 if opaque else d
    if r.ip_version not in (4, 6):
        return bad
    if m >= len(lay.ips):
        if "0" in t["ip.len"] + t["ipv6.plen"] + t["udp.length"]:  # tshark stops at a GSO/BIG TCP carrier (length 0)
            return bad
        return bad + [f"ip layer {m}: ours {r.src}->{r.dst}, tshark has only {len(lay.ips)} IP headers"]
    fam, k, _ = lay.ips[m]
    check("ip_version", int(r.ip_version), int(fam))
    ip = _ip_fields(t, fam, k)
    check("src", r.src, ip["src"])
    check("dst", r.dst, ip["dst"])
    check("ttl", r.ttl, ip["ttl"])
    if fam == "4":
        check("proto", r.proto, ip["proto"])
        check("ip_id", r.ip_id, ip["ip_id"])
        check("frag_offset", r.frag_offset, None if get(t, "ip.frag_offset", k) is None else 8 * int(get(t, "ip.frag_offset", k)))
        check("more_frags", bool(r.more_frags), None if get(t, "ip.flags.mf", k) is None else get(t, "ip.flags.mf", k) in ("1", "True"))
    else:
        if not lay.v6_ext_after.get(m):
            check("proto", r.proto, ip["proto"])
        if r.ip_id >= 0:  # fragment header present
            check("frag_offset", r.frag_offset, 8 * int(get(t, "ipv6.fraghdr.offset", 0) or 0))
            check("ip_id", r.ip_id, as_int(get(t, "ipv6.fraghdr.ident", 0)))
    l4 = lay.l4.get(m)
    if r.frag_offset > 0:
        if r.sport != -1:
            bad.append(f"sport: non-first fragment has port {r.sport}")
        return bad
    if l4 is None:
        if r.sport != -1 and r.proto in (6, 17, 132):
            bad.append(f"sport: ours {r.sport}, tshark decoded no L4 header")
        return bad
    name, j = l4
    if name in ("tcp", "udp", "sctp"):
        check("sport", r.sport, as_int(get(t, f"{name}.srcport", j)))
        check("dport", r.dport, as_int(get(t, f"{name}.dstport", j)))
    if name == "tcp":
        fl = get(t, "tcp.flags", j)
        check("tcp_flags", r.tcp_flags, None if fl is None else as_int(fl) & 0xFF)
        check("tcp_seq", r.tcp_seq, as_int(get(t, "tcp.seq_raw", j)))
        check("tcp_ack", r.tcp_ack, as_int(get(t, "tcp.ack_raw", j)))
        check("tcp_win", r.tcp_win, as_int(get(t, "tcp.window_size_value", j)))
        if len(t["tcp.srcport"]) == 1:
            check("tcp_mss", r.tcp_mss, as_int(get(t, "tcp.options.mss_val", 0)) if t["tcp.options.mss_val"] else -1)
    if name in ("icmp", "icmpv6"):
        check("icmp_type", r.icmp_type, as_int(get(t, f"{name}.type", j)))
        check("icmp_code", r.icmp_code, as_int(get(t, f"{name}.code", j)))
        if isinstance(r.icmp_q_src, str) and m + 1 < len(lay.ips):
            qf, qk, _ = lay.ips[m + 1]
            q = _ip_fields(t, qf, qk)
            check("icmp_q_src", r.icmp_q_src, q["src"])
            check("icmp_q_dst", r.icmp_q_dst, q["dst"])
    return bad


@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(DATA)) for p in CAPTURES])
def test_fields_agree_with_tshark_packet_by_packet(path, tshark_cache) -> None:
    df = pcaptools.read_packets(path)
    ts = tshark_rows(path, tshark_cache)
    problems = []
    compared = 0
    for r in df.itertuples(index=False):
        t = ts.get(int(r.record) + 1)
        if t is None:
            continue
        if isinstance(r.error, str) or isinstance(r.truncated_at, str):
            continue
        compared += 1
        for b in compare_row(r, t):
            problems.append(f"{path.name} packet {int(r.record) + 1}: {b}")
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} mismatches)"
    assert compared > 0 or len(df) == 0 or df["error"].notna().all() or df["truncated_at"].notna().any()


def test_every_capture_row_count_equals_record_count(tshark_cache) -> None:
    for path in CAPTURES:
        df = pcaptools.read_packets(path)
        assert isinstance(df, pd.DataFrame)
        if path.suffix != ".gz":
            assert len(df) == len(tshark_rows(path, tshark_cache)) or df.attrs["skipped"][str(path)], path
