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
_SLL = {113: (14, 16), 276: (0, 20)}  # LINUX_SLL, LINUX_SLL2: (protocol offset, header length)


@dataclass(frozen=True)
class Clock:
    """A node clock against true time: ``offset_ns`` at ``t0`` plus ``ppm`` rate error."""

    offset_ns: int = 0
    ppm: float = 0.0

    def local(self, true_ns: np.ndarray, t0: int) -> np.ndarray:
        """What this clock reads at true times ``true_ns``."""
        return true_ns + self.offset_ns + np.round((true_ns - t0) * (self.ppm * 1e-6)).astype(np.int64)

    def rate_against(self, ref: Clock) -> float:
        """Rate (ppm) against ``ref`` per second of this clock's own, what ``skew_ppm`` reports with ``ref`` the reference."""
        return (self.ppm - ref.ppm) / (1 + self.ppm * 1e-6)

    def offset_against(self, ref: Clock, local_ns: int, t0: int) -> float:
        """This clock's reading less ``ref``'s at the instant this clock reads ``local_ns`` (the offset at ``at_ns``)."""
        rel = local_ns - t0  # small integers: 1.8e18 ns as a float is only good to 256 ns
        true_rel = (rel - self.offset_ns) / (1 + self.ppm * 1e-6)
        return rel - (true_rel + ref.offset_ns + ref.ppm * 1e-6 * true_rel)

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


def flip_ip_ids(rec: bytes, order: str, mask: int, linktype: int = 1) -> bytes:
    """XOR the IPv4 identification of an Ethernet, SLL or SLL2 frame (and of the inner frame of VXLAN) with ``mask``."""
    b = bytearray(rec)
    base = 8  # incl_len, orig_len

    def ip_at(eth: int, cooked: bool = False, inner: bool = False) -> None:
        et = 0x0800 if cooked else int.from_bytes(b[eth + 12 : eth + 14], "big")
        ip = eth + 14
        if et == 0x8100:
            et, ip = int.from_bytes(b[eth + 16 : eth + 18], "big"), eth + 18
        if et != 0x0800 or len(b) < ip + 20:
            return
        b[ip + 4 : ip + 6] = (int.from_bytes(b[ip + 4 : ip + 6], "big") ^ mask).to_bytes(2, "big")
        ihl = (b[ip] & 0x0F) * 4
        if b[ip + 9] == 17 and len(b) >= ip + ihl + 8 + 8 + 14:
            dport = int.from_bytes(b[ip + ihl + 2 : ip + ihl + 4], "big")
            if dport in VXLAN_PORTS and not inner:
                ip_at(ip + ihl + 16, inner=True)

    if linktype == 1:
        ip_at(base)
    elif linktype in _SLL:  # cooked header: protocol at a fixed place, the IP header after it
        proto_at, ip = _SLL[linktype]
        if int.from_bytes(b[base + proto_at : base + proto_at + 2], "big") == 0x0800:
            ip_at(base + ip - 14, cooked=True)
    return bytes(b)


def bursts(ts_ns: np.ndarray, gap_ns: int = 50_000_000) -> np.ndarray:
    """Start times of the bursts of a sorted time series, split wherever it is quiet for more than ``gap_ns``."""
    t = np.sort(ts_ns)
    return t[np.r_[0, np.flatnonzero(np.diff(t) > gap_ns) + 1]]


def retime_sample(
    sample: str | Path, out: Path, *, clocks: dict[str, Clock], spacing_ns: int | tuple[int, int] | None = None,
    copies: int = 1, keep: list[int] | None = None, seed: int = 0, files: list[str] | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """Write ``sample`` re-spaced and with per-node clocks into ``out``; returns (true ns per record by file, t0).

    ``spacing_ns`` None keeps the original timing; an int starts burst k of copy c at ``t0 + (c * bursts + k) *
    spacing_ns``; a range ``(lo, hi)`` draws each gap uniformly from it (``seed``), for sparse captures.
    ``keep`` lists the bursts written (by number, in time order), e.g. one connection; ``files`` the
    captures written (the manifest keeps only those). Nodes missing from ``clocks`` keep a perfect clock.
    """
    src = Path(sample) if Path(sample).is_dir() else SAMPLES / sample  # a sample's name or a lab run's directory
    man = json.loads((src / "manifest.json").read_text())
    if files is not None:
        man["captures"] = [c for c in man["captures"] if c["file"] in files]
    data = {c["file"]: read_pcap(src / c["file"]) for c in man["captures"]}
    starts = bursts(np.concatenate([f[3] for f in data.values()]))
    kept = np.arange(starts.shape[0]) if keep is None else np.asarray(keep, np.int64)
    slot = np.full(starts.shape[0], -1, np.int64)  # burst -> its place among the kept ones
    slot[kept] = np.arange(kept.shape[0])
    t0 = int(starts[0])
    n = kept.shape[0] * copies
    if isinstance(spacing_ns, tuple):
        gaps = np.random.default_rng(seed).integers(spacing_ns[0], spacing_ns[1], n)
        place = t0 + np.r_[0, np.cumsum(gaps[:-1])]  # start of the i-th burst written
    elif spacing_ns is not None:
        place = t0 + np.arange(n) * spacing_ns
    truth: dict[str, np.ndarray] = {}
    for c in man["captures"]:
        header, order, unit, ts, recs = data[c["file"]]
        linktype = struct.unpack(order + "I", header[20:24])[0]
        k = slot[np.searchsorted(starts, ts, side="right") - 1]
        sel = np.flatnonzero(k >= 0)
        all_true, all_recs = [], []
        for cp in range(copies):
            if spacing_ns is None:
                true = ts[sel].copy()
            else:
                b = np.searchsorted(starts, ts[sel], side="right") - 1
                true = ts[sel] - starts[b] + place[cp * kept.shape[0] + k[sel]]
            all_true.append(true)
            all_recs.extend(recs[i] if cp == 0 else flip_ip_ids(recs[i], order, 0x5A5A * cp & 0xFFFF, linktype) for i in sel)
        true = np.concatenate(all_true)
        o = np.argsort(true, kind="stable")  # random gaps may reorder copies: a file is written in time order
        true = true[o]
        all_recs = [all_recs[i] for i in o]
        clock = clocks.get(c["node"], Clock())
        dst = out / c["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_pcap(dst, header, order, unit, clock.local(true, t0), all_recs)
        truth[str(dst)] = true
        for extra in ("links",):  # an -i any capture's interface list
            if c.get(extra):
                (out / c[extra]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / c[extra], out / c[extra])
    (out / "manifest.json").write_text(json.dumps(man))
    if (src / "inventory.json").exists():
        shutil.copy(src / "inventory.json", out / "inventory.json")
    return truth, t0
