"""A set of captures taken at several points (node:interface), decoded into one packet table labelled by point.

Sources: a ``manifest.json`` (or a directory holding one), a Parquet dataset (:mod:`pcaptools.dataset`),
``NODE:IFACE=FILE`` specs, or packet tables already decoded. A ``tcpdump -i any`` capture (LINUX_SLL2)
is split into one point per ``ifindex``, named from the manifest's ``interfaces`` list (``if<N>`` when
unnamed).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.correlate.fingerprint import PREFIX_BYTES, prefix_hash
from pcaptools.correlate.manifest import read_manifest
from pcaptools.dataset import dataset_entries, is_dataset, split_member
from pcaptools.decode.table import concat
from pcaptools.errors import CorrelationError, InventoryError
from pcaptools.fmt import shared_file_notes

ROLES = ("pod-veth", "node-uplink", "overlay", "lb", "client", "any", "external", "bridge", "service-vip", "loopback", "other")
"""Values of a capture point's ``role`` in a manifest (the last four name a node's other devices: cni0,
kube-ipvs0, lo, ...; ``any`` is an unlabelled capture)."""

NEEDED = (
    "ts_ns", "file", "record", "iface", "wirelen", "direction", "ifindex", "tunnel", "vni",
    "outer_src", "outer_dst", "src", "dst", "proto", "sport", "dport", "ip_id", "ttl", "frag_offset",
    "more_frags", "tcp_flags", "tcp_seq", "tcp_ack", "payload_offset", "payload_len",
)  # fmt: skip
"""Packet-table columns the correlator reads (a subset of PACKET_COLUMNS)."""

KEPT = ("icmp_type", "icmp_code", "icmp_mtu", "icmp_q_src", "icmp_q_dst", "icmp_q_proto", "icmp_q_sport",
        "icmp_q_dport", "dont_frag", "ip_len")  # fmt: skip
"""Columns kept when the decoder provides them: ICMP errors and sizes, the evidence :mod:`pcaptools.k8s.diagnose` reads."""


@dataclass(frozen=True)
class CapturePoint:
    """One place packets were captured: a node's interface (or a free label such as ``nlb``)."""

    name: str  # "node:interface"
    node: str
    interface: str
    role: str = "any"
    file: str = ""
    pod: str = ""
    ifindex: int = -1  # set when split out of a -i any capture
    pcapng_interface: int = -1  # set when the file is a pcapng with several interfaces and this is one of them


@dataclass
class CaptureSet:
    """Decoded packets of every capture point in one table (column ``point``), plus the points' metadata. A set
    made from decoded tables (:meth:`from_frames`, :meth:`load`) keeps each point's table and stacks them on the
    first read of ``packets``; the one-window correlation reads them as they are (:meth:`tables`)."""

    points: list[CapturePoint]
    packets: pd.DataFrame  # NEEDED columns + point, node, interface (category), point_id (int32), payload_hash
    cni: str = ""
    notes: list[str] = field(default_factory=list)
    inference: pd.DataFrame | None = None  # capture points inferred from plain files: field values and evidence
    # point -> {"file": its file as decoded, "interfaces": the pcapng Interface Statistics Block counters of its
    # interface(s) (read_packets' attrs["interface_stats"]; all of the file's for a point split from -i any)}
    interface_stats: dict[str, dict] = field(default_factory=dict)
    # capture files found by walking an input directory that cannot be read at all, left out (each also a note):
    # {"path", "reason" (pcaptools.k8s.discover.SKIP_REASONS), "detail"}
    skipped_files: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables()[0])

    def tables(self) -> tuple[list[pd.DataFrame], list[np.ndarray]]:
        """Its packets as tables with each row's point id, in the stacked table's row order: each point's table
        as decoded while :attr:`packets` has not been read (the one-window correlation reads them as they are:
        stacking a large set costs a copy of it and seconds), else the stacked table."""
        pending = self.__dict__["_packets"]
        if isinstance(pending, _Unstacked):
            return pending.parts, [np.full(len(t), k, np.int64) for k, t in enumerate(pending.parts)]
        return [pending], [pending["point_id"].to_numpy(np.int64)]

    def packets_of(self, columns: Iterable[str]) -> pd.DataFrame:
        """:attr:`packets` of these of its columns only (those it has): stacked from the points' tables when
        :attr:`packets` has not been read, without stacking the others (a diagnosis reads ~15 of ~35 columns)."""
        pending = self.__dict__["_packets"]
        if isinstance(pending, _Unstacked):
            return pending.stack(list(columns))
        return pending.loc[:, [c for c in columns if c in pending.columns]]

    @property
    def nodes(self) -> list[str]:
        """Node names in first-seen order (the first is the default clock reference)."""
        return list(dict.fromkeys(p.node for p in self.points))

    @classmethod
    def load(
        cls, source: str | os.PathLike | None = None, *, points: Iterable[str] = (), decoder: Callable | None = None,
        allow_outside: bool = False,
    ) -> CaptureSet:
        """From a manifest path or directory (or a dataset ``pcaptools convert`` wrote), and/or
        ``NODE:IFACE=FILE`` specs (a bare FILE gets node=stem).

        Files a manifest names must lie inside its directory unless ``allow_outside``.
        """
        entries, cni = capture_entries(source, points=points, allow_outside=allow_outside)
        return cls.from_frames(decode_entries(entries, decoder), cni=cni)

    @classmethod
    def from_frames(cls, frames: list[tuple[dict, pd.DataFrame]], *, cni: str = "") -> CaptureSet:
        """From (manifest entry, decoded packet table) pairs; tables without a ``payload_hash`` column get
        one computed from their files (``read_packets(..., payload_hash=True)`` takes it while decoding)."""
        notes = frame_notes(frames)
        pts, parts, stats = point_tables(frames)
        counters = {p.name: st for p, st in zip(pts, stats, strict=True) if st is not None}
        keep = [c for c in parts[0].columns if c in NEEDED or c in KEPT or c == "payload_hash"] if parts else [*NEEDED, "payload_hash"]
        packets = _Unstacked(pts, [t[keep] for t in parts])  # the kept columns, as views (copy on write)
        return cls(points=pts, packets=packets, cni=cni, notes=notes, interface_stats=counters)


@dataclass
class _Unstacked:
    """Each point's decoded table, stacked into :attr:`CaptureSet.packets` only when something reads it."""

    points: list[CapturePoint]
    parts: list[pd.DataFrame]

    def stack(self, columns: list[str] | None = None) -> pd.DataFrame:
        """One table: every part's rows, categories unioned (first-seen order), with the point columns; of the
        ``columns`` it has only (None: all)."""
        pts, parts = self.points, self.parts
        want = None if columns is None else set(columns)
        own = None if want is None else [c for c in parts[0].columns if c in want]
        packets = concat(parts, own, text_categories=len(parts) > 1)
        point_id = np.repeat(np.arange(len(pts), dtype=np.int32), [len(sub) for sub in parts])
        if want is None or "point" in want:
            packets["point"] = pd.Categorical.from_codes(point_id, categories=pd.Index([p.name for p in pts]), validate=False)
        for col in ("node", "interface"):  # categories sorted, as astype("category") makes them
            if want is not None and col not in want:
                continue
            labels = [getattr(p, col) for p in pts]
            cats = sorted(set(labels))
            code = np.array([cats.index(x) for x in labels], np.int32)
            packets[col] = pd.Categorical.from_codes(code[point_id], categories=pd.Index(cats), validate=False)
        if want is None or "point_id" in want:
            packets["point_id"] = point_id
        return packets


def _read_packets_attr(cs: CaptureSet) -> pd.DataFrame:
    """``cs.packets``: the stacked table, made on the first read of a set that holds its points' tables."""
    pending = cs.__dict__["_packets"]
    if isinstance(pending, _Unstacked):
        pending = cs.__dict__["_packets"] = pending.stack()
    return pending


def _write_packets_attr(cs: CaptureSet, value) -> None:
    """``cs.packets = value`` (the dataclass's own __init__ too): a table, or the points' tables to stack later."""
    cs.__dict__["_packets"] = value


# the dataclass field ``packets`` read through a property: a set made by from_frames stacks its points' tables on
# the first read (``paths`` never reads it: the correlation takes the tables as they are, CaptureSet.tables)
CaptureSet.packets = property(_read_packets_attr, _write_packets_attr, doc="Every point's packets in one table "
                              "(NEEDED columns + point, node, interface (category), point_id (int32), payload_hash).")  # fmt: skip


def frame_notes(frames: list[tuple[dict, pd.DataFrame]]) -> list[str]:
    """The records the readers skipped, a note per file (several points may share one file: its skips said once)."""
    return shared_file_notes(df.attrs.get("skipped") for _, df in frames)


def decode_entries(entries: list[dict], decoder: Callable | None = None) -> list[tuple[dict, pd.DataFrame]]:
    """(manifest entry, its file's packet table) pairs, each file decoded once however many entries name it."""
    dec = _once(decoder or _default_decoder())
    return [(e, dec(e["file"])) for e in entries]


def point_tables(frames: list[tuple[dict, pd.DataFrame]]) -> tuple[list[CapturePoint], list[pd.DataFrame], list[dict | None]]:
    """(manifest entry, packet table) pairs -> the points, each point's rows (the capture set's row order, not
    stacked: :meth:`CaptureSet.from_frames` stacks them, the one-window correlation reads them as they are) and
    each point's Statistics Block counters. Tables without ``payload_hash`` get it from their files."""
    split: list[tuple[CapturePoint, pd.DataFrame]] = []
    stats: list[dict | None] = []
    for entry, df in frames:
        missing = [c for c in NEEDED if c not in df.columns]
        if missing:
            raise CorrelationError(
                f"{entry.get('file', '?')}: packet table lacks columns {missing}; decode it with pcaptools.read_packets"
            )
        if "payload_hash" not in df.columns:
            df = df.assign(payload_hash=payload_hashes(df))
        pieces = split_entry(entry, df)
        split.extend(pieces)
        stats.extend([_point_stats(entry, df.attrs.get("interface_stats") or {}, pt) for pt, _ in pieces])
    return name_points([pt for pt, _ in split]), [sub for _, sub in split], stats


def _point_stats(entry: dict, by_file: dict, point: CapturePoint) -> dict | None:
    """The Statistics Block counters of ``point``'s interface(s) from its table's ``attrs["interface_stats"]``
    (keyed by the file as decoded: a dataset member ``DIR::FILE`` by ``FILE``), None when its file has none."""
    file = str(entry.get("file", ""))
    member = split_member(file)
    key = file if file in by_file else member[1] if member is not None and member[1] in by_file else None
    if key is None and len(by_file) == 1:
        key = next(iter(by_file))
    ifs = [i for i in by_file.get(key) or [] if i is not None
           and (point.pcapng_interface < 0 or i.get("interface") == point.pcapng_interface)]  # fmt: skip
    return {"file": key, "interfaces": ifs} if ifs else None


def capture_entries(source: str | os.PathLike | None = None, *, points: Iterable[str] = (),
                    allow_outside: bool = False) -> tuple[list[dict], str]:  # fmt: skip
    """Manifest entries (files resolved and checked to exist) of a manifest and/or ``NODE:IFACE=FILE`` specs, and the CNI label."""
    entries: list[dict] = []
    cni = ""
    if source is not None and is_dataset(source):  # a Parquet dataset: its points, packets read back from it
        stored, meta = dataset_entries(source)
        cni = meta.get("cni") or ""
        entries.extend(stored)
    elif source is not None:
        doc = read_manifest(_manifest_path(source), allow_outside=allow_outside)
        cni = doc.get("cni") or ""
        entries.extend(doc["captures"])
    for spec in points:
        e = parse_point_spec(spec)
        if not os.path.exists(e["file"]) and split_member(e["file"]) is None:  # said as the option it came from
            raise CorrelationError(f"--point {spec}: {e['file']} does not exist; expected NODE:IFACE=FILE naming a capture "
                                   "file (e.g. node-1:eth0=node1-eth0.pcap)", path=e["file"])  # fmt: skip
        entries.append(e)
    if not entries:
        raise CorrelationError("no captures given; pass a manifest.json, a directory holding one, or --point NODE:IFACE=FILE")
    for e in entries:
        if not os.path.exists(e["file"]) and split_member(e["file"]) is None:
            raise CorrelationError(
                f"{e['file']}: capture listed for node {e.get('node', '?')!r} does not exist; check the manifest's 'file' (relative to the manifest)",
                path=e["file"],
            )
    return entries, cni


def name_points(points: list[CapturePoint]) -> list[CapturePoint]:
    """Final point names: a node captured both per interface and with -i any keeps the any capture's
    points distinct as NODE:IFACE@any; names must then be unique."""
    explicit = {pt.name for pt in points if pt.ifindex < 0}
    pts = [replace(p, name=f"{p.name}@any") if p.ifindex >= 0 and p.name in explicit else p for p in points]
    names = [p.name for p in pts]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise CorrelationError(
            f"capture point names must be unique, found {sorted(dup)} more than once; give each capture its own NODE:IFACE label"
        )
    return pts


def parse_point_spec(spec: str) -> dict:
    """``node-1:eth0=a.pcap`` -> manifest entry; a bare ``a.pcap`` gets node ``a`` and no interface."""
    if "=" in spec:
        label, file = spec.split("=", 1)
        node, _, iface = label.partition(":")
        if not node or not file:
            raise CorrelationError(f"--point {spec!r}: expected NODE:IFACE=FILE (e.g. node-1:eth0=node1-eth0.pcap)")
        return {"file": file, "node": node, "interface": iface, "role": "any"}
    return {"file": spec, "node": Path(spec).name.split(".")[0], "interface": "", "role": "any"}


def payload_hashes(df: pd.DataFrame) -> np.ndarray:
    """Hash of the first PREFIX_BYTES L4 payload bytes per row, gathered from each file's raw records."""
    from pcaptools.io import read_records

    out = np.zeros(len(df), np.uint64)
    files = df["file"].astype(str).to_numpy()
    rec = df["record"].to_numpy(np.int64)
    poff = df["payload_offset"].to_numpy(np.int64)
    plen = df["payload_len"].to_numpy(np.int64)
    for path in pd.unique(files):
        rows = np.flatnonzero(files == path)
        if not os.path.exists(path):
            raise CorrelationError(f"{path}: needed to hash payload prefixes but it does not exist", path=path)
        rb = read_records(path)
        pos = np.searchsorted(rb.record, rec[rows])
        pos = np.clip(pos, 0, max(len(rb) - 1, 0))
        ok = (len(rb) > 0) & (rb.record[pos] == rec[rows]) & (poff[rows] >= 0) if len(rb) else np.zeros(len(rows), bool)
        caplen = rb.caplen[pos].astype(np.int64) if len(rb) else np.zeros(len(rows), np.int64)
        n = np.minimum(np.minimum(caplen - poff[rows], plen[rows]), PREFIX_BYTES)
        n = np.where(ok, np.maximum(n, 0), 0)
        start = np.where(ok, (rb.offset[pos] if len(rb) else 0) + poff[rows], 0)
        out[rows] = prefix_hash(rb.data, start, n)
    return out


def _default_decoder() -> Callable:
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - only while the decoder is missing
        raise CorrelationError("pcaptools.read_packets (the decoder) is not available in this installation") from exc
    return functools.partial(read_packets, payload_hash=True)  # hashed in the decode walk: no second read


def _once(dec: Callable) -> Callable:
    """``dec`` decoding each file once, however many capture points name it."""
    done: dict[str, pd.DataFrame] = {}

    def once(path: str) -> pd.DataFrame:
        if path not in done:
            done[path] = dec(path)
        return done[path]

    return once


def _manifest_path(source: str | os.PathLike) -> Path:
    p = Path(source)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.exists():
        raise InventoryError(
            f"{p}: no manifest.json there; expected a capture set: a manifest.json or a directory holding one "
            "(format: sample_pcaps/README.md); plain captures are read by load_captures / `pcaptools paths DIR`",
            path=str(p),
        )
    return p


def split_entry(entry: dict, df: pd.DataFrame) -> list[tuple[CapturePoint, pd.DataFrame]]:
    """One capture file -> its points: per ifindex for -i any (SLL2) captures, else the whole file."""
    file = str(entry.get("file", ""))
    node = str(entry.get("node") or Path(file).name.split(".")[0])
    iface = str(entry.get("interface") or "")
    role = str(entry.get("role") or "any")
    pod = str(entry.get("pod") or "")
    idb = int(entry["pcapng_interface"]) if entry.get("pcapng_interface") is not None else -1
    if idb >= 0:  # one interface (IDB) of a pcapng holding several
        df = df[df["iface"].to_numpy(np.int64) == idb]
    ifx = df["ifindex"].to_numpy(np.int64)
    # an SLL2 capture is split per ifindex when it is an '-i any' capture (unnamed, "any" or with an
    # ifindex table); one named interface captured with -y LINUX_SLL2 stays one point
    splits = iface in ("", "any") or bool(entry.get("interfaces"))
    if len(df) and splits and (ifx >= 0).any():
        named = {int(i["ifindex"]): i for i in entry.get("interfaces") or [] if isinstance(i, dict) and "ifindex" in i}
        out = []
        for k in np.unique(ifx):
            info = named.get(int(k), {})
            name = str(info.get("interface") or f"if{int(k)}")
            pt = CapturePoint(
                name=f"{node}:{name}", node=node, interface=name, role=str(info.get("role") or role),
                file=file, pod=str(info.get("pod") or pod), ifindex=int(k), pcapng_interface=idb,
            )  # fmt: skip
            out.append((pt, df[ifx == k]))
        return out
    name = f"{node}:{iface}" if iface else node
    return [(CapturePoint(name=name, node=node, interface=iface, role=role, file=file, pod=pod, pcapng_interface=idb), df)]
