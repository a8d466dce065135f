"""Benchmark sections for the decoder (used by benchmarks/run.py): pcaptools read+decode, and the same
columns (inner VXLAN headers included) from a dpkt loop, scapy and tshark on a prefix of the capture.

Each function takes the capture path and returns the records it decoded, so records/s compare.
"""

from __future__ import annotations

import itertools
import subprocess

DPKT_PREFIX = 100_000  # the per-packet Python loops run on a prefix; their rate is per packet anyway
SCAPY_PREFIX = 5_000
TSHARK_PREFIX = 10_000
VXLAN_PORTS = (4789, 8472)


def read_decode(path: str) -> int:
    """pcaptools.read_packets: read, decode every layer, build the DataFrame."""
    import importlib

    return len(importlib.import_module("pcaptools.packets").read_packets(path))


def read_decode_hash(path: str) -> int:
    """read_packets(payload_hash=True): as read_decode, plus the payload-prefix hash the correlator uses."""
    import importlib

    return len(importlib.import_module("pcaptools.packets").read_packets(path, payload_hash=True))


def iter_decode(path: str) -> int:
    """iter_packets: the same decoding streamed in bounded-memory batches (one table per window)."""
    import importlib

    return sum(len(t) for t in importlib.import_module("pcaptools.packets").iter_packets(path))


def dpkt_decode(path: str) -> int:
    """A dpkt loop filling the main columns, stripping VXLAN (4789/8472) to the inner headers."""
    import socket

    import dpkt
    import pandas as pd

    cols: dict[str, list] = {k: [] for k in ("ts", "src", "dst", "proto", "sport", "dport", "ttl", "ip_id", "tcp_flags",
                                             "tcp_seq", "tcp_ack", "tcp_win", "vni", "outer_src", "outer_dst")}  # fmt: skip
    with open(path, "rb") as f:
        for ts, buf in itertools.islice(dpkt.pcap.Reader(f), DPKT_PREFIX):
            vni = -1
            osrc = odst = None
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport in VXLAN_PORTS:
                vx = ip.data.data
                vni = int.from_bytes(vx[4:7], "big")
                osrc, odst = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
                ip = dpkt.ethernet.Ethernet(vx[8:]).data
            l4 = ip.data
            tcp = isinstance(l4, dpkt.tcp.TCP)
            ports = isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP))
            for k, v in (("ts", ts), ("src", socket.inet_ntoa(ip.src)), ("dst", socket.inet_ntoa(ip.dst)), ("proto", ip.p),
                         ("sport", l4.sport if ports else -1), ("dport", l4.dport if ports else -1), ("ttl", ip.ttl),
                         ("ip_id", ip.id), ("tcp_flags", l4.flags if tcp else -1), ("tcp_seq", l4.seq if tcp else -1),
                         ("tcp_ack", l4.ack if tcp else -1), ("tcp_win", l4.win if tcp else -1), ("vni", vni),
                         ("outer_src", osrc), ("outer_dst", odst)):  # fmt: skip
                cols[k].append(v)
    df = pd.DataFrame(cols)
    for k in ("src", "dst", "outer_src", "outer_dst"):
        df[k] = df[k].astype("category")
    return len(df)


def scapy_decode(path: str) -> int:
    """scapy's PcapReader with VXLAN bound to 8472 for this call, the same fields, on a prefix."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import bind_layers, split_layers
    from scapy.utils import PcapReader

    bind_layers(UDP, VXLAN, dport=8472)
    n = 0
    try:
        rows = []
        for pkt in itertools.islice(PcapReader(path), SCAPY_PREFIX):
            ip = pkt[IP]
            vni = -1
            if VXLAN in pkt:
                vni = pkt[VXLAN].vni
                ip = pkt[VXLAN][IP]
            l4 = ip.payload
            rows.append((ip.src, ip.dst, ip.proto, ip.ttl, ip.id, getattr(l4, "sport", -1), getattr(l4, "dport", -1),
                         int(l4.flags) if isinstance(l4, TCP) else -1, vni))  # fmt: skip
            n += 1
    finally:
        split_layers(UDP, VXLAN, dport=8472)
    return n


def tshark_fields(path: str) -> int:
    """tshark -T fields (inner and outer headers as occurrence lists) on a prefix."""
    fields = ("ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value", "vxlan.vni")  # fmt: skip
    cmd = ["tshark", "-r", path, "-c", str(TSHARK_PREFIX), "-d", "udp.port==8472,vxlan", "-n", "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,"]  # fmt: skip
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return out.count(b"\n")
