"""Pay numba's one-time compile up front: run every compiled kernel once on a tiny capture set built in memory.

After ``pip install`` (or an upgrade) the first command compiles the record walkers, the decode walk
and the correlator's kernels (tens of seconds); numba caches the machine code beside the sources, so
later runs only load it. :func:`warmup` reads a 2-point set of tiny pcap and pcapng captures (VXLAN
and native TCP, the types every real input has) and correlates it, compiling what is not cached yet;
a third capture of 32,768 source addresses compiles the category codes wide captures use.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np


def _frames() -> list[bytes]:
    """A few Ethernet frames: native TCP with payload, and the same inside VXLAN (UDP 4789)."""

    def ip4(proto: int, src: bytes, dst: bytes, body: bytes, ident: int) -> bytes:
        return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, 0x4000, 64, proto, 0, src, dst) + body

    def eth(body: bytes) -> bytes:
        return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + body

    out = []
    for i in range(8):
        tcp = struct.pack("!HHIIBBHHH", 40000 + i % 2, 80, 1000 + 16 * i, 7, 0x50, 0x18, 64240, 0, 0) + bytes(range(i, i + 16))
        inner = eth(ip4(6, bytes([10, 244, 0, 10]), bytes([10, 244, 1, 10]), tcp, 100 + i))
        out.append(inner)
        vx = struct.pack("!BBHI", 0x08, 0, 0, 4096 << 8) + inner
        udp = struct.pack("!HHHH", 49152 + i, 4789, 8 + len(vx), 0) + vx
        out.append(eth(ip4(17, bytes([192, 168, 0, 11]), bytes([192, 168, 0, 12]), udp, 200 + i)))
    return out


SPREAD = 1 << 15
"""Source addresses of the warm-up's third capture (256 destinations): its columns take int16 and int32
category codes (:func:`pcaptools.decode.table.code_dtype`), as a capture of 128+ or 32,768+ addresses does."""


def _spread_frames(n: int) -> list[bytes]:
    """``n`` UDP frames, each from its own source MAC and IPv4 address (10.x.y.z), to 256 destinations."""
    out = []
    for i in range(n):
        src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
        udp = struct.pack("!HHHH", 40000, 53, 8, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, i & 0xFFFF, 0x4000, 64, 17, 0, src, bytes([10, 96, 1, i & 255])) + udp
        out.append(b"\x02\x00\x00\x00\x00\x02" + b"\x06" + i.to_bytes(5, "big") + b"\x08\x00" + ip)
    return out


def _pcap(frames: list[bytes], t0_us: int) -> bytes:
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = b"".join(struct.pack("<IIII", (t0_us + 10 * k) // 10**6, (t0_us + 10 * k) % 10**6, len(f), len(f)) + f
                    for k, f in enumerate(frames))  # fmt: skip
    return head + recs


def _pcapng(frames: list[bytes], t0_us: int) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 65535))
    for k, f in enumerate(frames):
        ts = t0_us + 10 * k
        out += block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + f)
    return out


def warmup() -> dict:
    """Compile (or load from numba's cache) the kernels of read, decode, flows, correlate, paths and merge; seconds taken."""
    from pcaptools.correlate.api import correlate
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.correlate.match import by_fingerprint
    from pcaptools.correlate.merge import merge
    from pcaptools.decode.compiling import announce_compiles
    from pcaptools.flows import flows
    from pcaptools.k8s.paths import paths_detail
    from pcaptools.packets import iter_packets, read_packets
    from pcaptools.process import temporary_directory

    announce_compiles()
    t0 = time.perf_counter()
    frames = _frames()
    with temporary_directory(prefix="pcaptools-warmup-") as tmp:
        a, b = Path(tmp) / "a.pcap", Path(tmp) / "b.pcapng"
        a.write_bytes(_pcap(frames, 1_700_000_000_000_000))
        b.write_bytes(_pcapng(frames, 1_700_000_000_000_050))
        pk = read_packets([a, b])
        c = Path(tmp) / "c.pcap"  # many addresses: the wider category-code variants of the factorize kernel
        c.write_bytes(_pcap(_spread_frames(SPREAD), 1_700_000_001_000_000))
        read_packets(c)
        sum(len(x) for x in iter_packets(b))
        flows(pk)
        corr = correlate(CaptureSet.load(points=[f"node-a:eth0={a}", f"node-b:eth0={b}"]))
        paths_detail(corr)  # the paths' per-journey kernels (k8s/journeys.py)
        merge(CaptureSet.load(points=[f"node-a:eth0={a}", f"node-b:eth0={b}"]), Path(tmp) / "m.pcapng", correlation=corr)
    # a set of 4,096 fingerprinted sightings or more is ordered by the bucket sort, which the small set never reaches
    by_fingerprint(np.arange(1, 1 << 13, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return {"seconds": time.perf_counter() - t0, "packets": len(pk), "journeys": int(corr.journeys)}
