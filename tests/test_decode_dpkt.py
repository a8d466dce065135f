"""Differential against dpkt (runs with or without tshark): untunnelled Ethernet and LINUX_SLL rows of
every capture, for the fields dpkt decodes: IP src/dst, TTL, protocol, TCP/UDP ports, TCP seq/ack/
flags/window, ICMP type/code. Rows dpkt cannot parse, and rows we mark with error/truncated_at,
are not compared (dpkt raises on or silently mis-reads cut headers)."""

from __future__ import annotations

import gzip
import ipaddress

import dpkt
import pandas as pd
import pytest

import pcaptools
from tests.decode_support import DATA, captures

CAPTURES = [p for p in captures() if "community-id" in str(p) or "zeek" in str(p) or "own" in str(p) or "decode" in str(p)]


def _frames(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\n\r\r\n" else dpkt.pcap.Reader(f)
        lt = reader.datalink()
        return lt, [buf for _ts, buf in reader]


def _expected(lt: int, buf: bytes) -> dict | None:
    try:
        if lt == 1:
            ip = dpkt.ethernet.Ethernet(buf).data
        elif lt == 113:
            ip = dpkt.sll.SLL(buf).data
        else:
            return None
    except (dpkt.UnpackError, ValueError, IndexError):
        return None
    if isinstance(ip, dpkt.ip.IP):
        out = {"src": str(ipaddress.IPv4Address(ip.src)), "dst": str(ipaddress.IPv4Address(ip.dst)), "ttl": ip.ttl, "proto": ip.p}
        if ip.off & 0x1FFF or ip.p in (4, 41, 47, 50):
            return out
    elif isinstance(ip, dpkt.ip6.IP6):
        out = {"src": str(ipaddress.IPv6Address(ip.src)), "dst": str(ipaddress.IPv6Address(ip.dst)), "ttl": ip.hlim}
        if any(isinstance(h, dpkt.ip6.IP6FragmentHeader) for h in getattr(ip, "extension_hdrs", {}).values() if h):
            return out
        out["proto"] = ip.p
        if ip.p in (4, 41, 47, 50):
            return out
    else:
        return None
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        out.update(sport=l4.sport, dport=l4.dport, tcp_seq=l4.seq, tcp_ack=l4.ack, tcp_flags=l4.flags & 0xFF, tcp_win=l4.win)
    elif isinstance(l4, dpkt.udp.UDP):
        if l4.dport in (4789, 8472, 6081, 51820, 51821):
            return None
        out.update(sport=l4.sport, dport=l4.dport)
    elif isinstance(l4, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        out.update(icmp_type=l4.type, icmp_code=l4.code)
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=[str(p.relative_to(DATA)) for p in CAPTURES])
def test_fields_agree_with_dpkt(path) -> None:
    try:
        lt, frames = _frames(path)
    except (ValueError, dpkt.NeedData, dpkt.UnpackError) as exc:
        pytest.skip(f"dpkt cannot read {path.name}: {exc}")
    df = pcaptools.read_packets(path)
    if len(df) != len(frames):
        pytest.skip(f"dpkt read {len(frames)} records, we read {len(df)} (dpkt stops at damage)")
    bad = []
    compared = 0
    for i, buf in enumerate(frames):
        row = df.iloc[i]
        if pd.notna(row.error) or pd.notna(row.truncated_at) or row.tunnel_depth:
            continue
        exp = _expected(lt, buf)
        compared += exp is not None
        for k, v in (exp or {}).items():
            if row[k] != v:
                bad.append(f"{path.name} packet {i + 1} {k}: ours {row[k]!r} dpkt {v!r}")
    assert not bad, "\n".join(bad[:30])
    native_ip = (df.tunnel_depth == 0) & df.ip_version.isin([4, 6]) & df.error.isna() & df.truncated_at.isna()
    assert compared > 0 or not native_ip.any() or lt not in (1, 113)
