"""Test-only helpers for correlation: a small dpkt decoder into PACKET_COLUMNS and synthetic multi-point splits.

``dpkt_packets`` decodes Ethernet / Linux SLL / SLL2 / raw IP captures without tunnels, enough to
build packet tables from real captures while (or besides) the real decoder. ``split_path`` plays a
real capture through a 4-point two-node path with DNAT, SNAT, VXLAN, TTL decrements, per-hop delays,
a node clock offset, drops and retransmissions, and keeps the true journey of every sighting.
"""

from __future__ import annotations

import ipaddress
import socket

import dpkt
import numpy as np
import pandas as pd

from pcaptools.correlate.capture_set import payload_hashes
from pcaptools.io import read_records
from pcaptools.schema import PACKET_COLUMNS

DATA = __import__("pathlib").Path(__file__).parent / "data" / "peer"
SPLIT_SOURCES = (
    "tcpdump/tests/afs.pcap",
    "tcpdump/tests/mptcp-v0.pcap",
    "community-id-spec/pcaps/combined.pcap",
    "zeek/Traces/ipv6-http-atomic-frag.pcap",
    "zeek/Traces/http/get.pcap",
)
POINTS = ("node-1:veth1", "node-1:eth0", "node-2:eth0", "node-2:veth2")


def _ip_str(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _row_defaults() -> dict:
    d = {}
    for c in PACKET_COLUMNS:
        if c.dtype == "category":
            d[c.name] = None
        elif c.dtype == "bool":
            d[c.name] = False
        else:
            d[c.name] = -1
    return d


def _ip(frame: bytes, off: int, et: int, r: dict, depth: int = 0) -> None:
    """Fill IP/L4 fields of ``r`` from the IP header at ``off``; VXLAN (UDP 4789/8472) is stripped once."""
    ipb = frame[off:]
    if et == 0x0800:
        ip = dpkt.ip.IP(ipb)
        r.update(ip_version=4, src=_ip_str(ip.src), dst=_ip_str(ip.dst), proto=ip.p, ip_id=ip.id, ttl=ip.ttl,
                 ip_len=ip.len, frag_offset=ip.offset, more_frags=bool(ip.mf), dont_frag=bool(ip.df))  # fmt: skip
        l4off = off + ip.hl * 4
        l4len = ip.len - ip.hl * 4
        first_frag = ip.offset == 0
    elif et == 0x86DD:
        ip6 = dpkt.ip6.IP6(ipb)
        r.update(ip_version=6, src=_ip_str(ip6.src), dst=_ip_str(ip6.dst), proto=ip6.p, ttl=ip6.hlim,
                 ip_len=ip6.plen + 40, frag_offset=0, ip_id=-1, more_frags=False)  # fmt: skip
        hdr = 40 + sum(len(h) for h in ip6.extension_hdrs.values() if h is not None) if ip6.extension_hdrs else 40
        frag = ip6.extension_hdrs.get(44) if ip6.extension_hdrs else None
        if frag is not None:
            r.update(ip_id=frag.id, frag_offset=frag.frag_off * 8, more_frags=bool(frag.m_flag))
        l4off = off + hdr
        l4len = ip6.plen + 40 - hdr
        first_frag = r["frag_offset"] == 0
    else:
        return
    p = r["proto"]
    for k in ("sport", "dport", "tcp_seq", "tcp_ack", "tcp_flags", "tcp_win", "icmp_type", "icmp_code"):
        r[k] = -1
    if first_frag and p == 6 and len(frame) >= l4off + 20:
        t = dpkt.tcp.TCP(frame[l4off:l4off + 60])
        hl = t.off * 4
        r.update(sport=t.sport, dport=t.dport, tcp_seq=t.seq, tcp_ack=t.ack, tcp_flags=t.flags, tcp_win=t.win,
                 payload_offset=l4off + hl, payload_len=l4len - hl)  # fmt: skip
    elif first_frag and p in (17, 132) and len(frame) >= l4off + 8:
        sport, dport = int.from_bytes(frame[l4off:l4off + 2], "big"), int.from_bytes(frame[l4off + 2:l4off + 4], "big")
        hl = 8 if p == 17 else 12
        r.update(sport=sport, dport=dport, payload_offset=l4off + hl, payload_len=l4len - hl)
        if p == 17 and dport in (4789, 8472) and depth == 0 and len(frame) >= l4off + 8 + 8 + 14:
            r.update(tunnel="vxlan", vni=int.from_bytes(frame[l4off + 12:l4off + 15], "big"), tunnel_depth=1,
                     outer_src=r["src"], outer_dst=r["dst"], outer_proto=17, outer_sport=sport, outer_dport=dport,
                     outer_len=l4off + 16 + 14 - off)  # fmt: skip
            inner = l4off + 16
            _ip(frame, inner + 14, int.from_bytes(frame[inner + 12:inner + 14], "big"), r, depth + 1)
    elif first_frag and p in (1, 58) and len(frame) >= l4off + 4:
        r.update(icmp_type=frame[l4off], icmp_code=frame[l4off + 1], payload_offset=l4off + 8, payload_len=l4len - 8)
    else:
        r.update(payload_offset=l4off, payload_len=l4len)


def dpkt_packets(path: str) -> pd.DataFrame:
    """Packet table (all PACKET_COLUMNS) of a capture decoded with dpkt, one Python step per packet (tests only)."""
    rb = read_records(path)
    rows = []
    for i in range(len(rb)):
        frame = rb.packet(i)
        lt = int(rb.linktype[i])
        r = _row_defaults()
        r.update(file=str(path), record=int(rb.record[i]), ts_ns=int(rb.ts_ns[i]), iface=int(rb.iface[i]),
                 caplen=int(rb.caplen[i]), wirelen=int(rb.wirelen[i]), tunnel_depth=0, outer_len=0, ip_version=0)  # fmt: skip
        off, et = 0, -1
        try:
            if lt == 1:
                r["link"] = "EN10MB"
                et, off = int.from_bytes(frame[12:14], "big"), 14
                if et == 0x8100:
                    r["vlan"] = int.from_bytes(frame[14:16], "big") & 0xFFF
                    et, off = int.from_bytes(frame[16:18], "big"), 18
            elif lt == 113:
                r["link"] = "LINUX_SLL"
                r["direction"] = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "out"}.get(
                    int.from_bytes(frame[0:2], "big"), "unknown"
                )
                et, off = int.from_bytes(frame[14:16], "big"), 16
            elif lt == 276:
                r["link"] = "LINUX_SLL2"
                et = int.from_bytes(frame[0:2], "big")
                r["ifindex"] = int.from_bytes(frame[4:8], "big")
                r["direction"] = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "out"}.get(frame[10], "unknown")
                off = 20
            elif lt in (101, 12, 228, 229):
                r["link"] = "RAW"
                et, off = (0x86DD if frame[0] >> 4 == 6 else 0x0800), 0
            r["ethertype"] = et
            _ip(frame, off, et, r)
        except (dpkt.UnpackError, IndexError, ValueError):
            r["error"] = "dpkt"
        rows.append(r)
    df = pd.DataFrame(rows, columns=[c.name for c in PACKET_COLUMNS])
    for c in PACKET_COLUMNS:
        df[c.name] = df[c.name].astype("category") if c.dtype == "category" else df[c.name].astype(c.dtype)
    return df


def _ip_like(addr: str, v4: str, v6: str) -> str:
    return v4 if ipaddress.ip_address(addr).version == 4 else v6


def source_packets() -> pd.DataFrame:
    """IP packets of several real captures, each rebased to start at the same instant (1.7e18 ns)."""
    parts = []
    for rel in SPLIT_SOURCES:
        df = dpkt_packets(str(DATA / rel))
        df = df[(df["proto"] >= 0) & (df["ts_ns"] >= 0)].copy()
        df["ts_ns"] = df["ts_ns"] - df["ts_ns"].min() + 1_700_000_000_000_000_000
        parts.append(df)
    out = pd.concat([p.astype({c.name: object for c in PACKET_COLUMNS if c.dtype == "category"}) for p in parts], ignore_index=True)
    for c in PACKET_COLUMNS:
        if c.dtype == "category":
            out[c.name] = out[c.name].astype("category")
    return out


def split_path(src: pd.DataFrame, *, offset_ns: int = 3_700_000, drop: float = 0.01, retrans: float = 0.01,
               seed: int = 7, skew_ppm: float = 0.0) -> tuple[list[tuple[dict, pd.DataFrame]], pd.DataFrame]:  # fmt: skip
    """Play packets through node-1:veth1 -> node-1:eth0 -> node-2:eth0 -> node-2:veth2 (clients on node-1).

    Returns (frames for CaptureSet.from_frames, truth) where every frame row has a ``true_journey``
    column; node-2's clock runs ``offset_ns`` ahead. Forward packets are DNATed from a service VIP
    at node-1, SNATed to node-1's address and carried in VXLAN between the eth0 points.
    """
    rng = np.random.default_rng(seed)
    src = src.reset_index(drop=True)
    a = src["src"].astype(str).to_numpy()
    b = src["dst"].astype(str).to_numpy()
    pair = np.where(a < b, a + "|" + b, b + "|" + a)
    first_src = pd.Series(a).groupby(pair).transform("first").to_numpy()
    fwd = a == first_src
    n = len(src)
    base = src.assign(true_journey=np.arange(n), copy_of=-1, fwd=fwd, payload_hash=payload_hashes(src))
    k = int(n * retrans)
    rt = base.iloc[rng.choice(n, size=k, replace=False)].copy()
    rt["ts_ns"] = rt["ts_ns"] + 200_000_000
    rt["copy_of"] = rt["true_journey"]
    rt["true_journey"] = np.arange(n, n + k)
    base = pd.concat([base, rt], ignore_index=True)
    base["record"] = base["true_journey"].astype(np.int64)  # payload already hashed: record now names the truth
    hop_delay = (20_000, 100_000, 20_000)
    frames = []
    m = len(base)
    t_hop = np.zeros((4, m), np.int64)
    t_hop[0] = base["ts_ns"].to_numpy()
    for h in range(3):
        t_hop[h + 1] = t_hop[h] + hop_delay[h] + rng.integers(0, hop_delay[h] // 2, m)
    fw = base["fwd"].to_numpy()
    for pos, name in enumerate(POINTS):
        # forward packets visit POINTS in order, reverse ones backwards
        hop = np.where(fw, pos, 3 - pos)
        df = base.copy()
        t_true = t_hop[hop, np.arange(m)]
        if name.startswith("node-2"):  # node-2's clock: offset plus a rate error from the first packet on
            t_true = t_true + offset_ns + np.round((t_true - t_hop[0].min()) * skew_ppm * 1e-6).astype(np.int64)
        df["ts_ns"] = t_true
        ttl = df["ttl"].to_numpy().astype(np.int64) - np.where(hop >= 1, 1, 0) - np.where(hop >= 3, 1, 0)
        df["ttl"] = ttl.astype(np.int16)
        dst = df["dst"].astype(str).to_numpy().astype(object)
        srcs = df["src"].astype(str).to_numpy().astype(object)
        sport = df["sport"].to_numpy().copy()
        dport = df["dport"].to_numpy().copy()
        client_side = name == "node-1:veth1"
        vip = np.array([_ip_like(x, "10.96.0.10", "fd00:96::a") for x in dst], object)
        vip_r = np.array([_ip_like(x, "10.96.0.10", "fd00:96::a") for x in srcs], object)
        snat_ip = np.array([_ip_like(x, "192.168.0.1", "fd00:c0::1") for x in srcs], object)
        snat_ip_r = np.array([_ip_like(x, "192.168.0.1", "fd00:c0::1") for x in dst], object)
        ported = sport >= 0
        if client_side:  # DNAT happens after this point
            dst = np.where(fw, vip, dst)
            srcs = np.where(fw, srcs, vip_r)
        else:  # SNAT happened at node-1 for forward, reversed for replies
            srcs = np.where(fw, snat_ip, srcs)
            dst = np.where(fw, dst, snat_ip_r)
            sport = np.where(fw & ported, (sport + 10000) % 65536, sport)
            dport = np.where(~fw & (dport >= 0), (dport + 10000) % 65536, dport)
        df["src"] = pd.Categorical(srcs)
        df["dst"] = pd.Categorical(dst)
        df["sport"] = sport.astype(np.int32)
        df["dport"] = dport.astype(np.int32)
        if name.endswith("eth0"):
            fw_node1 = fw
            df["tunnel"] = pd.Categorical(["vxlan"] * m)
            df["vni"] = np.int64(1)
            df["outer_src"] = pd.Categorical(np.where(fw_node1, "172.18.0.2", "172.18.0.3"))
            df["outer_dst"] = pd.Categorical(np.where(fw_node1, "172.18.0.3", "172.18.0.2"))
            df["wirelen"] = (df["wirelen"] + 50).astype(np.int32)
        keep = rng.random(m) >= drop
        df = df[keep]
        node, iface = name.split(":")
        frames.append(({"node": node, "interface": iface, "role": "node-uplink" if iface == "eth0" else "pod-veth", "file": ""}, df))
    truth = base.loc[:, ["true_journey", "copy_of", "fwd"]]
    return frames, truth


def pair_scores(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Pairwise precision and recall of a clustering ``pred`` against ``true`` (same-journey sighting pairs)."""
    def pairs(counts: np.ndarray) -> int:
        return int((counts * (counts - 1) // 2).sum())

    both = pd.DataFrame({"p": pred, "t": true}).value_counts().to_numpy()
    tp = pairs(both)
    pp = pairs(pd.Series(pred).value_counts().to_numpy())
    tt = pairs(pd.Series(true).value_counts().to_numpy())
    return (tp / pp if pp else 1.0), (tp / tt if tt else 1.0)
