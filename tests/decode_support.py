"""Test helpers for the decoder: the capture list, cached tshark field dumps, and a packet walk of
tshark's output into ordered IP/L4 layers so our inner/outer columns can be matched to them."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).parent / "data"


def captures() -> list[Path]:
    """Every capture under tests/data (pcap, pcapng, gzip)."""
    out = []
    for pattern in ("*.pcap", "*.pcapng", "*.pcap.gz"):
        out += DATA.rglob(pattern)
    return sorted(set(out))


FIELDS = (
    "frame.number", "frame.protocols",
    "ip.src", "ip.dst", "ip.len", "ipv6.plen", "udp.length", "ip.proto", "ip.ttl", "ip.id", "ip.frag_offset", "ip.flags.mf",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value",
    "tcp.options.mss_val", "udp.srcport", "udp.dstport", "sctp.srcport", "sctp.dstport",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
    "vxlan.vni", "geneve.vni", "gre.key", "vlan.id", "ieee8021ad.id", "sll.pkttype",
)  # fmt: skip
TSHARK_ARGS = (
    "-d", "udp.port==8472,vxlan",
    "-o", "tcp.relative_sequence_numbers:FALSE", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
    "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=|",
)  # fmt: skip


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def tshark_rows(path: Path, cache_dir: Path) -> dict[int, dict[str, list[str]]]:
    """frame number -> field -> list of occurrences; cached on disk by file content and arguments."""
    h = hashlib.sha256(path.read_bytes() + repr((FIELDS, TSHARK_ARGS)).encode()).hexdigest()[:24]
    cached = cache_dir / f"{h}.json"
    if cached.exists():
        return {int(k): v for k, v in json.loads(cached.read_text()).items()}
    cmd = ["tshark", "-r", str(path), *TSHARK_ARGS]
    for f in FIELDS:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True)
    rows: dict[int, dict[str, list[str]]] = {}
    for line in res.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != len(FIELDS) or not parts[0]:
            continue
        rows[int(parts[0])] = {f: (v.split(",") if v else []) for f, v in zip(FIELDS, parts, strict=True)}
    cached.write_text(json.dumps(rows))
    return rows


@dataclass
class Layers:
    """tshark's headers of one frame in wire order: IP headers, and the L4 header after each."""

    tokens: list[str]
    ips: list[tuple[str, int, int]] = field(default_factory=list)  # (family "4"/"6", occurrence, token index)
    l4: dict[int, tuple[str, int]] = field(default_factory=dict)  # ip index -> (protocol token, occurrence)
    v6_ext_after: dict[int, bool] = field(default_factory=dict)  # ip index -> an ipv6.* ext header follows


def layers(row: dict[str, list[str]]) -> Layers:
    toks = row["frame.protocols"][0].split(":") if row["frame.protocols"] else []
    lay = Layers(toks)
    seen: dict[str, int] = {}
    for i, t in enumerate(toks):
        if t in ("ip", "ipv6"):
            lay.ips.append(("4" if t == "ip" else "6", seen.get(t, 0), i))
            seen[t] = seen.get(t, 0) + 1
            lay.v6_ext_after[len(lay.ips) - 1] = t == "ipv6" and i + 1 < len(toks) and toks[i + 1].startswith("ipv6.")
        elif t in ("tcp", "udp", "sctp", "icmp", "icmpv6"):
            if lay.ips and len(lay.ips) - 1 not in lay.l4:
                lay.l4[len(lay.ips) - 1] = (t, seen.get(t, 0))
            seen[t] = seen.get(t, 0) + 1
    return lay


def get(row: dict[str, list[str]], name: str, k: int) -> str | None:
    vals = row.get(name, [])
    return vals[k] if k < len(vals) else None


def as_int(v: str | None) -> int | None:
    if v is None or v == "":
        return None
    return int(v, 16) if v.startswith("0x") else int(v)


def batch_of(frames: list[bytes], linktype: int = 1, wirelen: list[int] | None = None, flags=None):
    """A RecordBatch over in-memory frames (for property tests that skip the file round trip)."""
    import numpy as np

    from pcaptools.io.records import RecordBatch

    data = np.frombuffer(b"".join(frames) + b"\0" * 8, np.uint8)[: sum(len(f) for f in frames)]
    lens = np.array([len(f) for f in frames], np.uint32)
    off = np.concatenate([[0], np.cumsum(lens.astype(np.int64))[:-1]]).astype(np.int64) if frames else np.zeros(0, np.int64)
    n = len(frames)
    return RecordBatch(
        path="<memory>", format="pcap", data=data, offset=off, caplen=lens,
        wirelen=np.array(wirelen, np.uint32) if wirelen is not None else lens.copy(),
        ts_ns=np.arange(n, dtype=np.int64), iface=np.zeros(n, np.uint32),
        linktype=np.full(n, linktype, np.uint16), record=np.arange(n, dtype=np.int64),
        flags=None if flags is None else np.asarray(flags, np.uint32), records_total=n,
    )  # fmt: skip
