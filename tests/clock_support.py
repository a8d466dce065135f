"""Test-only helpers for clock truth: retime real lab captures per node (offset + linear drift) and keep the truth.

The lab samples (``sample_pcaps/*``) run every node in one kernel, so their timestamps are one clock:
the original time of every record is its true time. ``retime_sample`` writes a copy of a sample in
which (1) traffic is re-spaced in time: the quiet gaps between connections are cut and every burst
(all its packets at all points, so one packet's sightings keep their exact spacing) is moved to a
chosen start, optionally repeating the whole run with the IPv4 identification of each copy flipped
so the copies are distinct packets; and (2) each node's files get that node's clock:
``local = true + offset + ppm * 1e-6 * (true - t0)``. It returns the true time of every record of
every written file. ``read_pcap``/``write_pcap`` are a small classic-pcap reader/writer (both byte
orders, micro- and nanosecond magic) written for this, independent of the package's reader.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).parent.parent / "sample_pcaps"
_MAGIC = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}  # ns per timestamp fraction unit
VXLAN_PORTS = (4789, 8472)


@dataclass(frozen=True)
class Clock:
    """A node clock against true time: ``offset_ns`` at ``t0`` plus ``ppm`` rate error."""

    offset_ns: int = 0
    ppm: float = 0.0

    def local(self, true_ns: np.ndarray, t0: int) -> np.ndarray:
        """What this clock reads at true times ``true_ns``."""
        return true_ns + self.offset_ns + np.round((true_ns - t0) * (self.ppm * 1e-6)).astype(np.int64)

    def offset_at(self, local_ns: int, t0: int) -> float:
        """True offset (clock minus true time) when this clock reads ``local_ns``."""
        rel = local_ns - t0  # small integers: 1.8e18 ns as a float is only good to 256 ns
        return rel - (rel - self.offset_ns) / (1 + self.ppm * 1e-6)


def read_pcap(path: Path) -> tuple[bytes, str, int, np.ndarray, list[bytes]]:
    """(global header, byte order, ns per fraction unit, ts_ns per record, record bytes after the 16-byte header)."""
    data = Path(path).read_bytes()
    for order in "<>":
        (magic,) = struct.unpack(order + "I", data[:4])
        if magic in _MAGIC:
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    unit = _MAGIC[magic]
    ts, recs = [], []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(order + "IIII", data[off : off + 16])
        ts.append(sec * 1_000_000_000 + frac * unit)
        recs.append(data[off + 8 : off + 16 + incl])  # incl_len, orig_len and the frame
        off += 16 + incl
    return data[:24], order, unit, np.array(ts, np.int64), recs


def write_pcap(path: Path, header: bytes, order: str, unit: int, ts_ns: np.ndarray, recs: list[bytes]) -> np.ndarray:
    """Write records with new timestamps (truncated to the file's resolution, as a capture would); returns them."""
    ts_ns = np.asarray(ts_ns, np.int64)
    out = [header]
    for t, r in zip(ts_ns.tolist(), recs, strict=True):
        out.append(struct.pack(order + "II", t // 1_000_000_000, (t % 1_000_000_000) // unit) + r)
    Path(path).write_bytes(b"".join(out))
    return ts_ns // unit * unit


def flip_ip_ids(rec: bytes, order: str, mask: int) -> bytes:
    """XOR the IPv4 identification of an Ethernet frame (and of the inner frame of VXLAN) with ``mask``."""
    b = bytearray(rec)
    base = 8  # incl_len, orig_len

    def ip_at(eth: int) -> None:
        et = int.from_bytes(b[eth + 12 : eth + 14], "big")
        ip = eth + 14
        if et == 0x8100:
            et, ip = int.from_bytes(b[eth + 16 : eth + 18], "big"), eth + 18
        if et != 0x0800 or len(b) < ip + 20:
            return
        b[ip + 4 : ip + 6] = (int.from_bytes(b[ip + 4 : ip + 6], "big") ^ mask).to_bytes(2, "big")
        ihl = (b[ip] & 0x0F) * 4
        if b[ip + 9] == 17 and len(b) >= ip + ihl + 8 + 8 + 14:
            dport = int.from_bytes(b[ip + ihl + 2 : ip + ihl + 4], "big")
            if dport in VXLAN_PORTS and eth == base:
                ip_at(ip + ihl + 16)

    ip_at(base)
    return bytes(b)


def bursts(ts_ns: np.ndarray, gap_ns: int = 50_000_000) -> np.ndarray:
    """Start times of the bursts of a sorted time series, split wherever it is quiet for more than ``gap_ns``."""
    t = np.sort(ts_ns)
    return t[np.r_[0, np.flatnonzero(np.diff(t) > gap_ns) + 1]]


def retime_sample(
    sample: str | Path, out: Path, *, clocks: dict[str, Clock], spacing_ns: int | None = None, copies: int = 1
) -> tuple[dict[str, np.ndarray], int]:
    """Write ``sample`` re-spaced and with per-node clocks into ``out``; returns (true ns per record by file, t0).

    ``spacing_ns`` None keeps the original timing; else burst k of copy c starts at ``t0 + (c * bursts + k) *
    spacing_ns``. Nodes missing from ``clocks`` keep a perfect clock.
    """
    src = Path(sample) if Path(sample).is_dir() else SAMPLES / sample  # a sample's name or a lab run's directory
    man = json.loads((src / "manifest.json").read_text())
    files = {c["file"]: read_pcap(src / c["file"]) for c in man["captures"]}
    starts = bursts(np.concatenate([f[3] for f in files.values()]))
    t0 = int(starts[0])
    truth: dict[str, np.ndarray] = {}
    for c in man["captures"]:
        header, order, unit, ts, recs = files[c["file"]]
        k = np.searchsorted(starts, ts, side="right") - 1
        all_true, all_recs = [], []
        for cp in range(copies):
            if spacing_ns is None:
                true = ts.copy()
            else:
                true = ts - starts[k] + t0 + (cp * starts.shape[0] + k) * spacing_ns
            all_true.append(true)
            all_recs.extend(recs if cp == 0 else [flip_ip_ids(r, order, 0x5A5A * cp & 0xFFFF) for r in recs])
        true = np.concatenate(all_true)
        clock = clocks.get(c["node"], Clock())
        dst = out / c["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_pcap(dst, header, order, unit, clock.local(true, t0), all_recs)
        truth[str(dst)] = true
    shutil.copy(src / "manifest.json", out / "manifest.json")
    if (src / "inventory.json").exists():
        shutil.copy(src / "inventory.json", out / "inventory.json")
    return truth, t0
