"""Where each connection's packets stopped, per direction, and the likely cause, named from packets and the inventory.

:func:`diagnose` takes the connections of :func:`pcaptools.k8s.paths.paths_detail`. Per connection and
direction the *expected* capture points are the longest causal sequence any of its packets in that
direction was seen at, extended by the destination's own point when the packets never got there: the
veth of the pod the (translated) destination belongs to (manifest ``pod``, else a point where that
address is in every packet), or an unknown next point (``first_missed`` null) when a connection that
expects an answer (TCP SYN, UDP request) got none. A packet whose journey stops at ``P`` while the
next expected point ``Q`` was capturing is lost between ``P`` and ``Q``; one missing at ``Q`` but seen
at a later point is a capture loss. Losses are grouped per (direction, last seen, first missed).

Causes are named from evidence only, with a confidence and a one-line evidence string (:data:`CAUSES`):
ICMP errors quoting the connection (frag-needed / packet-too-big, port or admin unreachable), the
sizes of the lost and passed packets of the same pair, the service's EndpointSlice, whether the DNAT
target is a pod the inventory knows, replies reaching the client from the backend's own address, a
SYN-ACK answered by RST. Limits: a point that captured nothing for the connection's whole direction
is not expected; packets that never reach the first capture point are not seen at all; ICMP errors
are matched on their quoted 5-tuple, so an error quoting a tuple no capture saw is not attributed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.fmt import PROTO_NAMES, endpoint
from pcaptools.k8s.diagnose_journeys import (
    FORWARD,
    REVERSE,
    Acks,
    JourneyTable,
    sequence_ids,
    take_int,
    timeline,
)
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.iptables import rule_object
from pcaptools.k8s.paths import as_inventory, paths_detail
from pcaptools.labels import category_codes, codes_in, vocabulary
from pcaptools.lazy import MadeOnRead as _MadeOnRead

if TYPE_CHECKING:
    from pcaptools.k8s.tcp_bounded import TcpNumbers

SCHEMA_VERSION = 1
"""Version of the ``why --json`` contract (:data:`SCHEMA_PATH`)."""

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "why.schema.json"

CAUSES = ("policy-drop", "mtu-blackhole", "no-endpoints", "stale-endpoint", "asymmetric-return", "conntrack",
          "capture-loss", "unknown")  # fmt: skip
"""Values of a loss's ``cause``: a filter dropped it inside a node (reached the node, not the pod, no ICMP);
large packets vanish at a tunnel while small ones pass, or an ICMP frag-needed / packet-too-big was seen;
a service with no endpoints (empty EndpointSlice, ICMP unreachable / RST); DNAT to an address no pod
has; the reply took another path or was not un-NATed; conntrack rejected it (SYN-ACK answered by RST, or a
connection's first packets crossed a node and every later one stopped there: ctstate INVALID);
the capture missed it (seen again after the gap, acknowledged by its receiver, or the capture's own counters
report drops where nothing else fits); none of these fits."""

STATUSES = ("ok", "degraded", "failed")
"""Values of a connection's ``status``: no network loss; losses but every lost packet got through on a
retry; a packet (or the answer) never arrived."""

LOSS_COLUMNS = ("connection", "direction", "last_seen", "first_missed", "node", "packets", "cause", "confidence",
                "evidence")  # fmt: skip
TIMELINE_COLUMNS = ("connection", "direction", "packet", "attempt", "point", "ts_corrected_ns", "reached")

_ICMP_ERR = {1: (3, 11, 12), 58: (1, 2, 3, 4)}
_MTU_FLOOR = {4: 576 + 14, 6: 1280 + 14}  # frames up to the family's minimum MTU (IPv4 576, IPv6 1280 IP bytes; + Ethernet)
# cross every link of that family: their loss is no MTU problem


def _mtu_floor(addr) -> int:  # noqa: ANN001 - an address string (or None)
    """The largest frame every link carries for packets to ``addr`` (:data:`_MTU_FLOOR` of its family)."""
    return _MTU_FLOOR[6 if ":" in str(addr or "") else 4]


class Timeline:
    """A connection's retransmission timeline as columns (numpy arrays): per attempt its ``direction``, ``packet``,
    ``attempt`` number and whether it ``reached`` its end, ``cut`` where its sightings start (one more bound than
    attempts), per sighting its ``point`` and ``ts_ns``. :meth:`objects` is the ``why --json`` list of attempt objects;
    :func:`pcaptools.render.records.write_document` writes the same text from the columns a few thousand sightings at a
    time, so a connection of a million sightings is never a million objects."""

    __slots__ = ("direction", "packet", "attempt", "reached", "cut", "point", "ts_ns")

    def __init__(self, direction: np.ndarray, packet: np.ndarray, attempt: np.ndarray, reached: np.ndarray,
                 cut: np.ndarray, point: np.ndarray, ts_ns: np.ndarray) -> None:  # fmt: skip
        self.direction, self.packet, self.point, self.ts_ns = direction, packet, point, ts_ns
        self.attempt = np.asarray(attempt).astype(np.int64)
        self.reached = np.asarray(reached).astype(bool)
        self.cut = np.asarray(cut, np.int64)

    def __len__(self) -> int:
        return len(self.cut) - 1

    @property
    def timeline_columns(self) -> tuple:
        """The columns a writer renders (:func:`pcaptools.render.records.dumps` recognises a timeline by them)."""
        return (self.direction, self.packet, self.attempt, self.reached, self.cut, self.point, self.ts_ns)

    def objects(self, lo: int = 0, hi: int | None = None) -> list[dict]:
        """Attempts ``lo`` to ``hi`` (default: all) as ``{direction, packet, attempt, reached, sightings: [{point,
        ts_ns}]}`` objects, the ``timeline`` of :meth:`Diagnosis.connection_record`."""
        hi = len(self) if hi is None else hi
        cut = self.cut[lo:hi + 1].tolist()
        a0, a1 = cut[0], cut[-1]
        pts, ts = self.point[a0:a1].tolist(), self.ts_ns[a0:a1].tolist()
        d, k, n, ok = (x[lo:hi].tolist() for x in (self.direction, self.packet, self.attempt, self.reached))
        return [{"direction": d[i], "packet": k[i], "attempt": n[i], "reached": ok[i],
                 "sightings": [{"point": p, "ts_ns": x} for p, x in zip(pts[a - a0:b - a0], ts[a - a0:b - a0])]}  # noqa: B905
                for i, (a, b) in enumerate(zip(cut[:-1], cut[1:], strict=True))]  # fmt: skip


_NO_ATTEMPT = (np.zeros(0, object),) * 2 + (np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(1, np.int64),
                                            np.zeros(0, object), np.zeros(0, np.int64))  # fmt: skip


@dataclass
class Diagnosis:
    """Result of :func:`diagnose`: one row per connection (with ``status``), its losses, and its retransmission timeline.
    ``connections``, ``losses``, ``timeline``, ``paths`` and ``nat_rules`` may be given as functions making them (made
    on first read): a streamed run's are read back whole from its parts (:attr:`spilled`) when read."""

    connections: pd.DataFrame = _MadeOnRead()
    losses: pd.DataFrame = _MadeOnRead()
    timeline: pd.DataFrame = _MadeOnRead()  # (or a function making it, called on first read)
    paths: pd.DataFrame = _MadeOnRead()  # (or a function making it: a streamed run's, read back from its buckets)
    notes: list[str] = field(default_factory=list)
    nat_rules: pd.DataFrame | None = _MadeOnRead(None)  # pcaptools.k8s.iptables.explain, when iptables-save files were given
    spilled: object = field(default=None, repr=False, compare=False)
    """A streamed run's diagnosis on disk, a bucket of connections a part
    (:class:`pcaptools.k8s.paths_stream.DiagnosisParts`): what :meth:`parts`, :meth:`records` and
    :meth:`connection_record` read a part at a time, and the tables when read whole."""
    _rows: dict | None = field(default=None, init=False, repr=False, compare=False)
    _attempts: _Attempts | None = field(default=None, init=False, repr=False, compare=False)  # the Diagnoser's timeline
    _part: tuple | None = field(default=None, init=False, repr=False, compare=False)  # (k, part k): the last part read

    def __getstate__(self) -> dict:
        """Pickled with its tables made (a function making them is not picklable), the spilled parts left out (read
        whole)."""
        self.connections, self.losses, self.timeline, self.paths, self.nat_rules  # noqa: B018 - reading makes them
        return {**self.__dict__, "spilled": None, "_part": None}

    def parts(self) -> Iterator[Diagnosis]:
        """The diagnosis of consecutive connections in order, each a Diagnosis of its own (without ``paths`` and
        notes): a streamed run's parts read back one at a time, else itself."""
        if self.spilled is None:
            yield self
            return
        for k in range(len(self.spilled)):
            yield self.spilled.part(k)

    def close(self) -> None:
        """Remove a streamed run's spilled diagnosis (:attr:`spilled`: with the PathSet's spilled output, in one
        directory), once it has been printed or read whole."""
        if self.spilled is not None:
            self.spilled.close()

    def select(self, connections: np.ndarray) -> pd.DataFrame:
        """The connection rows of ``connections``, in that order (a spilled diagnosis read a part at a time): the
        connections a grouped listing shows."""
        want = np.asarray(connections, np.int64)
        if self.spilled is None:
            df = self.connections
        else:
            held = sorted({self.spilled.part_of(c) for c in want.tolist()} - {-1})  # only the parts holding them
            picked = [x.loc[np.isin(x["connection"].to_numpy(np.int64), want)] for x in (self.spilled.part(k).connections for k in held)]
            picked = [x for x in picked if len(x)]
            df = pd.concat(picked, ignore_index=True) if picked else self.spilled.part(-1).connections
        return df.iloc[pd.Index(df["connection"].to_numpy(np.int64)).get_indexer(want)]

    def _holding(self, c: int) -> Diagnosis:
        """The part of a spilled diagnosis that holds connection ``c`` (the last one read kept: connections are asked
        for in order, a part after the other)."""
        k = self.spilled.part_of(c)
        if self._part is None or self._part[0] != k:
            self._part = None  # the part before is dropped before the next is read
            self._part = (k, self.spilled.part(k))
        return self._part[1]

    def _rows_of(self, table: str, c: int) -> np.ndarray:
        """Positions of connection ``c``'s rows in ``table`` (indexed on first use: one pass, not a scan per connection);
        ``attempts``: of its timeline attempts (the Diagnoser's columns, when the Diagnosis is its)."""
        if self._rows is None:
            att = self._attempts
            self._rows = {name: df.groupby("connection", sort=False).indices if df is not None and len(df) else {}
                          for name, df in (("connections", self.connections), ("losses", self.losses),
                                           ("nat_rules", self.nat_rules))}  # fmt: skip
            self._rows["status_values"] = self.connections["status"].tolist()
            self._rows["loss_values"] = {k: self.losses[k].tolist() for k in LOSS_COLUMNS[1:]}
            if att is not None:
                self._rows["attempts"] = _positions(att.cols["connection"])
                return self._rows[table].get(c, np.zeros(0, np.int64))
            t = self.timeline
            self._rows["timeline"] = t.groupby("connection", sort=False).indices if len(t) else {}
            cols = {k: t[k].to_numpy() for k in TIMELINE_COLUMNS}
            self._rows["timeline_values"] = cols
            # rows of one (connection, direction, packet, attempt): one attempt, numbered in order of first row
            gid = np.zeros(len(t), np.int64)
            for k in ("connection", "direction", "packet", "attempt"):
                codes, uniq = pd.factorize(cols[k]) if len(t) else (np.zeros(0, np.int64), [])
                gid = pd.factorize(gid * (len(uniq) + 1) + codes.astype(np.int64) + 1)[0].astype(np.int64)
            self._rows["timeline_group"] = gid
        return self._rows[table].get(c, np.zeros(0, np.int64))

    def connection_record(self, c: int, *, columns: bool = False) -> dict:
        """The ``why --json`` fields of connection ``c`` (status, losses, timeline); ``columns``: the timeline as a
        :class:`Timeline` of arrays (what ``--json`` writes a chunk at a time), else its list of attempt objects."""
        if self.spilled is not None:
            return self._holding(c).connection_record(c, columns=columns)
        row = self._rows_of("connections", c)
        status = str(self._rows["status_values"][row[0]]) if len(row) else "ok"
        lv = self._rows["loss_values"]  # columns as lists: no pandas object per connection
        losses = [
            {"direction": lv["direction"][i], "last_seen": lv["last_seen"][i], "first_missed": _text(lv["first_missed"][i]),
             "node": _text(lv["node"][i]), "packets": int(lv["packets"][i]), "cause": lv["cause"][i],
             "confidence": round(float(lv["confidence"][i]), 2), "evidence": lv["evidence"][i]}
            for i in self._rows_of("losses", c).tolist()
        ]  # fmt: skip
        if self._attempts is not None:
            ai = self._rows_of("attempts", c)
            tl = self._attempts.timeline(ai) if len(ai) else Timeline(*_NO_ATTEMPT)
            return self._record(status, losses, tl, c, columns)
        idx = self._rows_of("timeline", c)
        if len(idx):  # attempts in order of first row, as groupby(sort=False) of (direction, packet, attempt)
            v = self._rows["timeline_values"]
            gid = self._rows["timeline_group"]
            idx = idx[np.argsort(gid[idx], kind="stable")]
            g = gid[idx]
            cut = np.r_[np.flatnonzero(np.r_[True, g[1:] != g[:-1]]), len(idx)]
            heads = idx[cut[:-1]]
            tl = Timeline(*(v[x][heads] for x in ("direction", "packet", "attempt", "reached")), cut,
                          v["point"][idx], v["ts_corrected_ns"][idx])  # fmt: skip
        else:
            tl = Timeline(*_NO_ATTEMPT)
        return self._record(status, losses, tl, c, columns)

    def _record(self, status: str, losses: list[dict], tl: Timeline, c: int, columns: bool) -> dict:
        """:meth:`connection_record` of its parts (``columns``: the timeline as is, else its objects)."""
        timeline = tl if columns else tl.objects()
        out = {"status": status, "losses": losses, "timeline": timeline}
        if self.nat_rules is not None:
            nr = self.nat_rules.iloc[self._rows_of("nat_rules", c)]
            out["nat"] = [{"op": x.op, "node": x.node, "before": x.before, "after": x.after, **rule_object(x)}
                          for x in nr.itertuples(index=False)]  # fmt: skip
        return out

    def to_dict(self) -> dict:
        """The ``why --json`` object: schema_version and one entry per connection (see why.schema.json)."""
        return {**self.head(), "connections": list(self.records())}

    def head(self) -> dict:
        """:meth:`to_dict` with an empty ``connections`` (:func:`pcaptools.render.records.write_document` fills it in)."""
        return {"schema_version": SCHEMA_VERSION, "command": "why", "connections": [], "notes": list(self.notes)}

    def records(self, *, columns: bool = False) -> Iterator[dict]:
        """The ``connections`` of :meth:`to_dict`, one at a time (``columns``: each timeline a :class:`Timeline`,
        for :func:`pcaptools.render.records.write_document`); a streamed run's read back a part at a time."""
        for part in self.parts():
            yield from part._records(columns)

    def _records(self, columns: bool) -> Iterator[dict]:
        """:meth:`records` of the connections this Diagnosis holds."""
        for r in self.connections.itertuples(index=False):
            yield {
                "connection": int(r.connection), "proto": PROTO_NAMES.get(int(r.proto), str(int(r.proto))),
                "client": {"addr": r.client_addr, "port": None if r.client_port < 0 else int(r.client_port),
                           "name": r.client},
                "server": {"addr": r.server_addr, "port": None if r.server_port < 0 else int(r.server_port),
                           "name": r.server},
                **self.connection_record(int(r.connection), columns=columns),
            }  # fmt: skip

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)


def _positions(keys: np.ndarray) -> dict[int, np.ndarray]:
    """Key -> positions of its entries, ascending (``groupby(sort=False).indices`` of an int array, by one stable sort)."""
    if not len(keys):
        return {}
    o = np.argsort(keys, kind="stable")
    k = keys[o]
    cut = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
    return {int(x): o[a:b] for x, a, b in zip(k[cut[:-1]].tolist(), cut[:-1].tolist(), cut[1:].tolist(), strict=True)}


def pcapng_drops(capture_set) -> dict[str, tuple[int, str]]:
    """Point ``NODE:IFACE`` -> (packets its capture reports dropped, the counters as text), from the pcapng Interface
    Statistics Block counters the capture set keeps per point (``CaptureSet.interface_stats``: interface + OS drops);
    points of classic pcap files or of interfaces without such a block are left out. A point split out of a ``-i any``
    capture gets its file's counts."""
    if capture_set is None:
        return {}
    return _pcapng_drops(capture_set.points, getattr(capture_set, "interface_stats", None) or {})


def _pcapng_drops(points: list, interface_stats: dict[str, dict]) -> dict[str, tuple[int, str]]:
    """:func:`pcapng_drops` of capture points and their Statistics Block counters (point name -> counters)."""
    out: dict[str, tuple[int, str]] = {}
    for p in points:
        st = interface_stats.get(p.name)
        mine = [i for i in (st or {}).get("interfaces") or [] if i.get("dropped") is not None]
        if not mine:
            continue
        n = sum(int(i["dropped"]) for i in mine)
        counters = "; ".join(", ".join(f"isb_{k} {i[k]}" for k in ("ifrecv", "ifdrop", "filteraccept", "osdrop",
                                                                   "usrdeliv") if i.get(k) is not None)
                             for i in mine)  # fmt: skip
        out[p.name] = (n, f"pcapng statistics of {Path(st['file']).name}: {counters}")
    return out


def _text(v) -> str | None:
    return v if isinstance(v, str) else None


_SEQ_COLUMNS = ("tcp_seq", "tcp_ack", "payload_len")
_WHOLE_COLUMNS = ("point_id", "proto", "src", "ts_ns", "icmp_type", "icmp_code", "icmp_mtu", "icmp_q_proto", "icmp_q_src",
                  "icmp_q_sport", "icmp_q_dst", "icmp_q_dport", *_SEQ_COLUMNS)  # fmt: skip
"""The packet columns :meth:`PacketEvidence.whole` reads (with :meth:`~PacketEvidence.batch` and :func:`_whole_seqs`)."""
_ICMP_COLUMNS = ["proto", "src", "sport", "dst", "dport", "point", "node", "icmp_type", "icmp_proto", "ts_ns", "icmp_code",
                 "sender", "icmp_mtu"]  # fmt: skip


def _ints(col: pd.Series) -> np.ndarray:
    """An int column's values: as stored when numpy holds them, else as int64."""
    return col.to_numpy() if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu" else col.to_numpy(np.int64)


def _icmp_errors(proto: np.ndarray, typ: np.ndarray) -> np.ndarray:
    """Per row: an ICMP / ICMPv6 error (:data:`_ICMP_ERR`), which quotes the packet it answers."""
    return ((proto == 1) & np.isin(typ, _ICMP_ERR[1])) | ((proto == 58) & np.isin(typ, _ICMP_ERR[58]))


class PacketEvidence:
    """What a diagnosis reads from packet tables rather than from the hops, gathered a packet table at a time: the
    streamed correlation (:func:`pcaptools.correlate.stream.correlate_stream`) hands it each batch it reads
    (:meth:`batch`) and the journey of each row it emits (:meth:`emitted`); an in-memory run its whole table
    (:meth:`whole`). Kept: per capture point its span of corrected time and its capture's own drop counters; every
    ICMP error as one row (what it quotes, where, from whom; errors are rare) and the journeys that are ICMP errors;
    per TCP journey its first sighting's sequence number, acknowledgement and payload length: held (32 bytes a
    journey, :attr:`_sj`, :attr:`_sv`) in an in-memory run, whose packet table is held anyway; in a streamed run
    (:meth:`spill_to`) appended to a spill file as the journeys are emitted and read back a bucket of connections at a
    time (:meth:`for_bucket`, :mod:`pcaptools.k8s.tcp_bounded`), so none is held for the run: the bucket being
    diagnosed holds its own journeys' (at most 6,777 of the 80,125 TCP journeys of gen_set.py's 29,288-connection
    set under ``--memory 300MiB``, 217 KB; 2.6 MB were held for the run before, 4.6 MB on its 200k set). TCP rows read but not yet in an emitted
    journey wait in a buffer (32 bytes a row: the rows of the windows not yet emitted). Rows are keyed by the
    correlator's input key, which orders them as the in-memory packet table does."""

    def __init__(self) -> None:
        self.point_list: list | None = None  # the capture points (None: no capture set given)
        self.lo = self.hi = self.rows = np.zeros(0, np.int64)
        self.spanned = False  # corrected times of packet rows were given (else spans come from the hops)
        self.has_icmp: bool | None = None  # the packet tables have ICMP columns (None: no table seen)
        self.interface_stats: dict[str, dict] = {}  # point -> Statistics Block counters (CaptureSet.interface_stats)
        self.reader_notes: list[str] = []  # the records the readers skipped, per file (CaptureSet.notes' wording)
        self._file_stats: dict[str, dict] = {}  # file -> its last batch's attrs["interface_stats"]
        self._icmp: list[pd.DataFrame] = []
        self._icmp_wait = np.zeros(0, np.int64)  # keys of ICMP error rows whose journey is not known yet
        self._icmp_j: list[np.ndarray] = []
        self._pending: list[np.ndarray] = []  # (key, seq, ack, payload length) rows of TCP packets since the last emit
        self._wait = np.zeros((0, 4), np.int64)  # the earlier ones not yet emitted, by key (the emitted marked dead)
        self._live = np.zeros(0, bool)
        self._dead = 0
        self._seq: list[np.ndarray] = []  # (journey, seq, ack, payload length) of emitted TCP journeys
        self.icmp = pd.DataFrame(columns=_ICMP_COLUMNS)
        self.icmp_journeys: set[int] = set()
        self._sj = np.zeros(0, np.int64)  # journeys ascending (a streamed run: the bucket's being diagnosed)
        self._sv = np.zeros((0, 3), np.int64)  # their (seq, ack, payload length)
        self.spill: TcpNumbers | None = None  # a streamed run's TCP numbers on disk (spill_to)

    @classmethod
    def of(cls, capture_set, correlation) -> PacketEvidence:
        """The evidence of an in-memory capture set and its correlation (nothing but the hops when ``capture_set`` is None)."""
        ev = cls()
        if capture_set is not None:
            ev.whole(capture_set, correlation)
        return ev.finish()

    def spill_to(self, tmp: str | os.PathLike, memory: int) -> TcpNumbers:
        """Spill the TCP numbers of the journeys emitted from now on under ``tmp`` (a streamed run), sent to their
        buckets by the hops spill pass and :meth:`~pcaptools.k8s.tcp_bounded.TcpNumbers.assign`, read back a bucket at
        a time (:meth:`for_bucket`), instead of holding them for the run. ``memory``: the run's budget."""
        from pcaptools.k8s.tcp_bounded import TcpNumbers

        self.spill = TcpNumbers(tmp, memory)
        return self.spill

    def for_bucket(self, b: int | None) -> None:
        """A streamed run: hold the TCP numbers of bucket ``b``'s journeys (what :meth:`seqs` and the diagnosis read
        now), dropping the last bucket's; None: hold none. Nothing to do when they were not spilled."""
        if self.spill is None:
            return
        if b is None:
            self._sj, self._sv = np.zeros(0, np.int64), np.zeros((0, 3), np.int64)
        else:
            self._sj, self._sv = self.spill.of_bucket(b)

    def points(self, points: list) -> None:
        """The capture points (CapturePoint) whose ids the batches give."""
        self.point_list = list(points)
        n = len(self.point_list)
        self.lo = np.full(n, np.iinfo(np.int64).max, np.int64)
        self.hi = np.full(n, np.iinfo(np.int64).min, np.int64)
        self.rows = np.zeros(n, np.int64)
        self._names = np.array([p.name for p in self.point_list] + [""], object)
        self._nodes = np.array([p.node for p in self.point_list] + [""], object)

    def whole(self, capture_set, correlation) -> None:
        """An in-memory capture set (its ``packets`` table, rows keyed by position) and its correlation."""
        self.points(capture_set.points)
        self.interface_stats = dict(getattr(capture_set, "interface_stats", None) or {})
        self.reader_notes = list(getattr(capture_set, "notes", None) or [])
        of = getattr(capture_set, "packets_of", None)  # a CaptureSet stacks only the columns read here
        pk = capture_set.packets if of is None else of(_WHOLE_COLUMNS)
        self.has_icmp = "icmp_type" in pk.columns
        if not len(pk) or "point_id" not in pk.columns:
            return
        tc = getattr(correlation, "row_ts_corrected", None)
        rj = getattr(correlation, "row_journey", None)
        key = np.arange(len(pk), dtype=np.int64)
        self.batch(None, pk, pk["point_id"].to_numpy(np.int64), key, None if tc is None else np.asarray(tc, np.int64),
                   tcp=rj is None)  # fmt: skip
        if rj is not None:
            rj = np.asarray(rj, np.int64)
            self.emitted(key[rj >= 0], rj[rj >= 0])  # (ICMP errors' journeys; no TCP rows wait)
            self._keep(_whole_seqs(pk, rj))  # (a streamed run's one-window correlation: spilled all the same)
        else:
            self._drop_waiting()

    def _drop_waiting(self) -> None:
        self._pending, self._wait, self._live, self._dead = [], np.zeros((0, 4), np.int64), np.zeros(0, bool), 0

    def batch(self, file: str | None, pk: pd.DataFrame, pid: np.ndarray, key: np.ndarray, tc: np.ndarray | None,
              *, tcp: bool = True) -> None:  # fmt: skip
        """One packet table (of ``file``; None: several, their counters given to :meth:`whole`): each row's point
        id, input key and corrected time (None: not known, the spans then come from the hops). ``tcp`` False: its TCP
        rows are not buffered (:meth:`whole` takes them from the table, each row's journey known)."""
        if self.has_icmp is None:
            self.has_icmp = "icmp_type" in pk.columns
        if file is not None and pk.attrs.get("interface_stats"):  # a capture's batches carry its counters so far, a
            self._file_stats[str(file)] = pk.attrs["interface_stats"]  # dataset member's first batch its final ones
        if not len(pk):
            return
        pid = np.asarray(pid, np.int64)
        key = np.asarray(key, np.int64)
        if tc is not None:
            self.spanned = True
            np.minimum.at(self.lo, pid, tc)
            np.maximum.at(self.hi, pid, tc)
            self.rows += np.bincount(pid, minlength=len(self.rows))
        if "icmp_type" in pk.columns:
            proto, typ = _ints(pk["proto"]), _ints(pk["icmp_type"])  # (as stored: every row compared, few taken)
            err = _icmp_errors(proto, typ)
            if err.any():
                proto, typ = proto.astype(np.int64), typ.astype(np.int64)
                e = pk.loc[err]
                self._icmp.append(pd.DataFrame({
                    "key": key[err], "proto": e["icmp_q_proto"].to_numpy(np.int64), "src": e["icmp_q_src"].astype(str).to_numpy(),
                    "sport": e["icmp_q_sport"].to_numpy(np.int64), "dst": e["icmp_q_dst"].astype(str).to_numpy(),
                    "dport": e["icmp_q_dport"].to_numpy(np.int64), "point": self._names[pid[err]],
                    "node": self._nodes[pid[err]], "icmp_type": typ[err], "icmp_proto": proto[err],
                    "ts_ns": e["ts_ns"].to_numpy(np.int64), "icmp_code": e["icmp_code"].to_numpy(np.int64),
                    "sender": e["src"].astype(str).to_numpy(),
                    "icmp_mtu": e["icmp_mtu"].to_numpy(np.int64) if "icmp_mtu" in e else -1}))  # fmt: skip
                self._icmp_wait = np.sort(np.concatenate([self._icmp_wait, key[err]]))
        if tcp and all(c in pk.columns for c in _SEQ_COLUMNS):
            seq = pk["tcp_seq"].to_numpy(np.int64)
            ok = (seq >= 0) & (pk["ts_ns"].to_numpy(np.int64) >= 0)  # a row without a time is never matched
            if ok.any():
                self._pending.append(np.stack([key[ok], seq[ok], pk["tcp_ack"].to_numpy(np.int64)[ok],
                                               pk["payload_len"].to_numpy(np.int64)[ok]], 1))  # fmt: skip

    def emitted(self, key: np.ndarray, journey: np.ndarray) -> None:
        """Rows (input keys) the correlation put in complete journeys; every row of a journey comes in one call."""
        key = np.asarray(key, np.int64)
        journey = np.asarray(journey, np.int64)
        if not len(key):
            return
        if len(self._icmp_wait):
            o = np.argsort(key, kind="stable")
            at = np.clip(np.searchsorted(key[o], self._icmp_wait), 0, len(key) - 1)
            hit = key[o][at] == self._icmp_wait
            self._icmp_j.append(journey[o][at[hit]])
            self._icmp_wait = self._icmp_wait[~hit]
        if self._pending:
            self._sort_waiting()
        w = self._wait
        if len(w) == self._dead:
            return
        at = np.clip(np.searchsorted(w[:, 0], key), 0, len(w) - 1)
        hit = (w[at, 0] == key) & self._live[at]
        at = at[hit]
        self._keep(_first_rows(w[at], journey[hit]))
        self._live[at] = False  # marked, not removed: a partitioned window emits many times between two batches
        self._dead += len(at)
        if 2 * self._dead > len(w):
            self._wait, self._live, self._dead = w[self._live], np.ones(len(w) - self._dead, bool), 0

    def _sort_waiting(self) -> None:
        """The TCP rows of the batches since the last emit joined to those still waiting, by key (once per batch, not
        per emit: sorting and copying every waiting row at each of a window's partitions cost seconds and ~3 copies)."""
        new = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        old = self._wait[self._live] if self._dead else self._wait
        self._wait = np.zeros((0, 4), np.int64)
        buf = np.concatenate([old, new]) if len(old) else new
        del old, new
        self._wait = buf[np.argsort(buf[:, 0], kind="stable")]
        self._live, self._dead = np.ones(len(self._wait), bool), 0

    def _keep(self, seqs: np.ndarray) -> None:
        """(journey, seq, ack, payload length) rows of emitted TCP journeys: spilled in a streamed run (read back a
        bucket at a time, :meth:`for_bucket`), else held until :meth:`finish` indexes them."""
        if self.spill is not None:
            self.spill.add(seqs)
        else:
            self._seq.append(seqs)

    def finish(self) -> PacketEvidence:
        """Done: tables in packet-table order, per-journey values indexed, per-point counters from the files' own."""
        if self._icmp:
            icmp = pd.concat(self._icmp, ignore_index=True)
            self.icmp = icmp.iloc[np.argsort(icmp["key"].to_numpy(), kind="stable")].drop(columns="key").reset_index(drop=True)
        self._icmp = []
        self.icmp_journeys = {int(x) for x in np.concatenate(self._icmp_j)} if self._icmp_j else set()
        seq = np.concatenate(self._seq) if self._seq else np.zeros((0, 4), np.int64)
        o = np.argsort(seq[:, 0], kind="stable")
        self._sj, self._sv = seq[o, 0], seq[o, 1:]
        self._seq = []
        self._drop_waiting()
        if self._file_stats and self.point_list is not None:
            from pcaptools.correlate.capture_set import _point_stats

            for p in self.point_list:
                st = _point_stats({"file": p.file}, self._file_stats.get(p.file) or {}, p)
                if st is not None:
                    self.interface_stats.setdefault(p.name, st)
        return self

    def seqs(self, journeys: np.ndarray) -> dict[int, tuple[int, int, int]]:
        """TCP (sequence number, acknowledgement, payload length) of each of ``journeys`` that is TCP (from its first
        sighting): to group retransmissions and to tell a segment its receiver acknowledged."""
        journeys = _unique(np.asarray(journeys, np.int64))
        if not len(self._sj) or not len(journeys):
            return {}
        at = np.clip(np.searchsorted(self._sj, journeys), 0, len(self._sj) - 1)
        hit = self._sj[at] == journeys
        return {int(j): (int(a), int(b), int(n)) for j, (a, b, n) in zip(journeys[hit].tolist(), self._sv[at[hit]].tolist(), strict=True)}

    def spans(self, hops: pd.DataFrame) -> dict[str, tuple[int, int]]:
        """Corrected first/last timestamp of every capture point (when it was capturing): its own, widened to its
        node's; from the packet rows, else (no corrected times given) from ``hops``."""
        if self.spanned:
            names = [p.name for p in self.point_list]
            lo, hi, seen = self.lo, self.hi, self.rows > 0
        else:
            pc, names = category_codes(hops["point"])
            ts = hops["ts_corrected_ns"].to_numpy(np.int64)
            lo = np.full(len(names), np.iinfo(np.int64).max, np.int64)
            hi = np.full(len(names), np.iinfo(np.int64).min, np.int64)
            np.minimum.at(lo, pc[pc >= 0], ts[pc >= 0])
            np.maximum.at(hi, pc[pc >= 0], ts[pc >= 0])
            seen = np.bincount(pc[pc >= 0], minlength=len(names)) > 0
        out = {names[k]: (int(lo[k]), int(hi[k])) for k in sorted(np.flatnonzero(seen).tolist(), key=lambda k: names[k])}
        # the captures of one node start and stop together: a point that saw little (or nothing) spans its node's time
        names = [pt.name for pt in self.point_list] if self.point_list is not None else list(out)
        node_span: dict[str, tuple[int, int]] = {}
        for name, (a, b) in out.items():
            n = _node_of(name)
            x = node_span.get(n, (a, b))
            node_span[n] = (min(x[0], a), max(x[1], b))
        for name in names:
            a, b = node_span.get(_node_of(name), out.get(name, (0, -1)))
            own = out.get(name, (a, b))
            out[name] = (min(a, own[0]), max(b, own[1]))
        return out


def _whole_seqs(pk: pd.DataFrame, rj: np.ndarray) -> np.ndarray:
    """(journey, seq, ack, payload length) of each journey from its first TCP row of a whole packet table (``rj``: each
    row's journey, -1 none): what :meth:`PacketEvidence.batch` then :meth:`~PacketEvidence.emitted` find by key, taken
    in place (the rows are their own keys, in order: no buffer to stack, sort and search)."""
    if not all(c in pk.columns for c in _SEQ_COLUMNS):
        return np.zeros((0, 4), np.int64)
    seq = pk["tcp_seq"].to_numpy(np.int64)
    m = np.flatnonzero((seq >= 0) & (pk["ts_ns"].to_numpy(np.int64) >= 0) & (rj >= 0))
    rows = np.empty((len(m), 4), np.int64)
    rows[:, 0], rows[:, 1] = m, seq[m]
    rows[:, 2], rows[:, 3] = take_int(pk["tcp_ack"], m), take_int(pk["payload_len"], m)
    return _first_rows(rows, rj[m])


def _first_rows(rows: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(journey, seq, ack, payload length) of each journey of ``j`` from its first row in packet-table order (``rows``:
    (key, seq, ack, payload length), one per entry of ``j``), journeys ascending. Rows given in key order (an
    in-memory run, a window's batch) with journeys spanning a few times their count take one pass, not a sort."""
    n = len(j)
    if not n:
        return np.zeros((0, 4), np.int64)
    lo = int(j.min())
    span = int(j.max()) - lo + 1
    if span <= 4 * n + 1024 and bool((rows[1:, 0] > rows[:-1, 0]).all()):
        first = np.full(span, n, np.int64)
        np.minimum.at(first, j - lo, np.arange(n, dtype=np.int64))  # rows in key order: the first is the least position
        js = np.flatnonzero(first < n)
        return np.column_stack([js + lo, rows[first[js], 1:]])
    o = np.lexsort((rows[:, 0], j))  # per journey its first row in packet-table order
    rows, j = rows[o], j[o]
    first = np.r_[True, j[1:] != j[:-1]]
    return np.column_stack([j[first], rows[first, 1:]])


def _tuples(hops: pd.DataFrame) -> pd.DataFrame:
    """The distinct (5-tuple, connection) of ``hops``, in order of first row: what :func:`_icmp_events` matches."""
    return pd.DataFrame({"proto": hops["proto"].to_numpy(np.int64), "src": hops["src"].astype(str).to_numpy(),
                         "sport": hops["sport"].to_numpy(np.int64), "dst": hops["dst"].astype(str).to_numpy(),
                         "dport": hops["dport"].to_numpy(np.int64),
                         "connection": hops["connection"].to_numpy(np.int64)}).drop_duplicates()  # fmt: skip


def _icmp_events(icmp: pd.DataFrame, hops: pd.DataFrame | list[pd.DataFrame]) -> pd.DataFrame:
    """ICMP errors (:attr:`PacketEvidence.icmp`) matched to the connection of ``hops`` whose packet they quote
    (``hops``: a table, or the :func:`_tuples` of its pieces in order)."""
    cols = ["connection", "point", "node", "icmp_proto", "icmp_type", "icmp_code", "icmp_mtu", "sender", "ts_ns"]
    if isinstance(hops, pd.DataFrame):
        hops = [_tuples(hops)] if len(icmp) and len(hops) else []
    hops = [x for x in hops if len(x)]
    if not len(icmp) or not hops:
        return pd.DataFrame(columns=cols)
    tup = hops[0] if len(hops) == 1 else pd.concat(hops, ignore_index=True).drop_duplicates()
    m = icmp.merge(tup, on=["proto", "src", "sport", "dst", "dport"], how="inner")
    return m.loc[:, cols].drop_duplicates().reset_index(drop=True)


@dataclass
class HopTallies:
    """What the diagnosis counts over every connection's hops, summed over groups of whole connections (so a set
    diagnosed a group at a time counts as one table does): per (point, address) pair its sightings and first
    appearance (as a source before as a destination, then by journey and causal position), sightings per point, and
    per (point, destination, next point, tunnelled there) step its count and largest frame. A few rows per pair."""

    pairs: pd.DataFrame  # p, a, n, first
    point_rows: pd.Series  # point -> sightings
    steps: pd.DataFrame  # p, d, q, t, w, n

    @classmethod
    def of(cls, h: pd.DataFrame) -> HopTallies:
        """The tallies of hops in causal order (grouped by journey, as :func:`pcaptools.k8s.paths.paths_detail` gives)."""
        pairs = pd.DataFrame({"p": np.zeros(0, object), "a": np.zeros(0, object), "n": np.zeros(0, np.int64),
                              "first": np.zeros(0, np.int64)})  # fmt: skip
        point_rows = pd.Series(dtype=np.int64)
        if len(h):
            vocab = vocabulary(h["src"], h["dst"])
            pc, pnames = category_codes(h["point"])
            j = h["journey"].to_numpy(np.int64)
            start = np.r_[True, j[1:] != j[:-1]]
            pos = np.arange(len(j)) - np.maximum.accumulate(np.where(start, np.arange(len(j)), 0))
            rank = (j << 16) | pos  # the row's place in a table grouped by journey
            addr = np.concatenate([codes_in(h["src"], vocab), codes_in(h["dst"], vocab)])
            pt = np.concatenate([pc, pc])
            rk = np.concatenate([rank, rank | (1 << 60)])  # every source before every destination, as one walk of both
            ok = (addr >= 0) & (pt >= 0)
            pair, first = _factorize_small(pt[ok] * (len(vocab) + 1) + addr[ok])
            fr = np.full(len(first), np.iinfo(np.int64).max, np.int64)
            np.minimum.at(fr, pair, rk[ok])
            pairs = pd.DataFrame({"p": np.array(pnames, object)[first // (len(vocab) + 1)],
                                  "a": np.array(list(vocab), object)[first % (len(vocab) + 1)],
                                  "n": np.bincount(pair, minlength=len(first)), "first": fr})  # fmt: skip
            rows = np.bincount(pc[pc >= 0], minlength=len(pnames))
            point_rows = pd.Series(rows, index=pd.Index(list(pnames), dtype=object))
        return cls(pairs, point_rows, _steps(h))

    @classmethod
    def merged(cls, parts: list[HopTallies]) -> HopTallies:
        """The tallies of the union of disjoint groups of connections."""
        pairs = [t.pairs for t in parts if len(t.pairs)]
        rows = [t.point_rows for t in parts if len(t.point_rows)]
        steps = [t.steps for t in parts if len(t.steps)]
        if not pairs:
            return cls.of(pd.DataFrame()) if not parts else parts[0]
        pr = pd.concat(pairs, ignore_index=True).groupby(["p", "a"], sort=False).agg(n=("n", "sum"), first=("first", "min")).reset_index()
        st = (pd.concat(steps, ignore_index=True).groupby(["p", "d", "q", "t"], sort=False, dropna=False)
              .agg(w=("w", "max"), n=("n", "sum")).reset_index()) if steps else parts[0].steps  # fmt: skip
        return cls(pr, pd.concat(rows).groupby(level=0).sum(), st)


def _homes(points: list | None, tallies: HopTallies, inv: Inventory | None) -> dict[str, str]:
    """Address -> the capture point where it lives: its pod's veth (manifest ``pod``), else a point where it is in every packet."""
    out: dict[str, str] = {}
    top = tallies.pairs
    if len(top):
        # by count, ties in order of first appearance
        top = top.iloc[np.argsort(top["first"].to_numpy(), kind="stable")]
        top = top.iloc[np.argsort(-top["n"].to_numpy(), kind="stable")].reset_index(drop=True)
        rows = tallies.point_rows.reindex(top["p"]).to_numpy()
        top = top[(top["n"].to_numpy() >= rows) & (top["n"] >= 3)]
        top = top[~top["p"].duplicated(keep=False)]  # two addresses in every packet (one peer only): cannot tell
        nodes = inv.node_addresses() if inv is not None else {}
        for p, a in zip(top["p"], top["a"], strict=True):
            if a not in nodes:  # a node address lives on its node, not behind one interface
                out.setdefault(a, p)
    if inv is not None and points is not None:
        by_pod = {p.pod: p.name for p in points if p.pod}
        for pod in inv.pods.values():
            if pod.name in by_pod and not pod.host_network:
                for ip in pod.ips:
                    out[ip] = by_pod[pod.name]
    return out


def _unique_inverse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, return_inverse=True)`` of ints: by counting when their range is small (connection ids)."""
    if not len(a) or int(a.min()) < 0 or int(a.max()) > 4 * len(a) + (1 << 20):
        u, inv = np.unique(a, return_inverse=True)
        return u, inv.reshape(-1)
    u = np.flatnonzero(np.bincount(a))
    code = np.zeros(int(a.max()) + 1, np.int64)
    code[u] = np.arange(len(u), dtype=np.int64)
    return u.astype(a.dtype), code[a]


def _stable_order(a: np.ndarray) -> np.ndarray:
    """``np.argsort(a, kind="stable")`` of non-negative ints, as 16-bit ones when they fit (numpy radix-sorts those)."""
    if len(a) and int(a.max()) < 1 << 16:
        return np.argsort(a.astype(np.uint16), kind="stable")
    return np.argsort(a, kind="stable")


def _factorize_small(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of int keys (codes in order of first appearance, the keys): by a table of their range when it
    is small (a few points times their addresses), not by hashing every key."""
    n = len(key)
    if not n or int(key.min()) < 0 or int(key.max()) > 2 * n + (1 << 20):
        return pd.factorize(key)
    first = np.full(int(key.max()) + 1, n, np.int64)
    np.minimum.at(first, key, np.arange(n, dtype=np.int64))
    present = np.flatnonzero(first < n)
    uniq = present[np.argsort(first[present], kind="stable")]
    code = np.zeros(len(first), np.int64)
    code[uniq] = np.arange(len(uniq), dtype=np.int64)
    return code[key], uniq


def _steps(h: pd.DataFrame) -> pd.DataFrame:
    """Every journey's consecutive pairs of points counted by (point, destination address, next point, tunnelled
    there), with the largest frame of each: one row per distinct key, counted on codes before pandas."""
    if len(h) < 2:
        return pd.DataFrame({"p": np.zeros(0, object), "d": np.zeros(0, object), "q": np.zeros(0, object),
                             "t": np.zeros(0, bool), "w": np.zeros(0, np.int64), "n": np.zeros(0, np.int64)})  # fmt: skip
    j = h["journey"].to_numpy(np.int64)
    nxt = np.flatnonzero(j[1:] == j[:-1])
    pc, pnames = category_codes(h["point"])
    dc, dnames = category_codes(h["dst"])
    nxt = nxt[pc[nxt] != pc[nxt + 1]]  # a step to another point
    p, q, d = pc[nxt], pc[nxt + 1], dc[nxt]
    t = h["tunnel"].notna().to_numpy()[nxt]
    w = take_int(h["wirelen"], nxt)
    np_, nd = len(pnames) + 1, len(dnames) + 1
    g, first = _factorize_small((((p + 1) * nd + d + 1) * np_ + q + 1) * 2 + t)
    n = np.bincount(g, minlength=len(first))
    wmax = np.full(len(first), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(wmax, g, w)
    t_u, rest = (first % 2).astype(bool), first // 2
    q_u, rest = rest % np_ - 1, rest // np_
    d_u, p_u = rest % nd - 1, rest // nd - 1
    pn, dn = np.array([*pnames, np.nan], object), np.array([*dnames, np.nan], object)
    return pd.DataFrame({"p": pn[p_u], "d": dn[d_u], "q": pn[q_u], "t": t_u, "w": wmax, "n": n})


def _transitions(df: pd.DataFrame) -> tuple[dict[tuple, str], dict[tuple[str, str], int]]:
    """From the counted steps (:func:`_steps`): the most common next point after (point, destination address) and after
    (point, destination, tunnelled there), the most common point before a point for a destination (key ``("from",
    point, destination)``), and the largest frame seen at a point whose packet made it to the next one, per (point,
    next point)."""
    if not len(df):
        return {}, {}
    step: dict[tuple, str] = {}
    for key in (["p", "d"], ["p", "d", "t"]):
        top = df.groupby([*key, "q"])["n"].sum().reset_index(name="n").sort_values("n", ascending=False)
        top = top.drop_duplicates(key)
        step.update({tuple(r[:-1]): r[-1] for r in top.loc[:, [*key, "q"]].itertuples(index=False, name=None)})
    top = df.groupby(["q", "d", "p"])["n"].sum().reset_index(name="n").sort_values("n", ascending=False)
    step.update({("from", q, d): p for q, d, p in top.drop_duplicates(["q", "d"]).loc[:, ["q", "d", "p"]]
                 .itertuples(index=False, name=None)})  # fmt: skip
    mx = df.groupby(["p", "q"])["w"].max()
    return step, {(str(p), str(q)): int(w) for (p, q), w in mx.items()}


def diagnose(capture_set=None, correlation=None, inventory: Inventory | str | dict | None = None,
             iptables: list | None = None, capture_drops: dict[str, int] | None = None, *, detail=None) -> Diagnosis:
    """Per connection: status, where its packets were last seen and first missed per direction, the likely cause.

    ``capture_drops`` (point -> packets the capture itself reports dropped, e.g. the manifest's tcpdump counts)
    and the pcapng Interface Statistics Blocks of the capture files (:func:`pcapng_drops`) are capture-loss
    evidence: they strengthen a gap seen at a later point, and name a loss nothing else explains. ``detail``: :meth:`PathSet.detail() <pcaptools.k8s.paths.PathSet.detail>` of the
    same correlation and inventory, so the paths are not built twice. The whole set is one group of connections
    for :class:`Diagnoser` (:mod:`pcaptools.k8s.paths_stream` gives it a bucket at a time). Example::

        cs = pcaptools.CaptureSet.load("captures/")
        d = diagnose(cs, pcaptools.correlate(cs), "captures/inventory.json")
        print(d.losses[["connection", "last_seen", "first_missed", "cause", "evidence"]])
    """
    from pcaptools.correlate.api import correlate

    inv = as_inventory(inventory)
    corr = correlation if correlation is not None else correlate(capture_set)
    det = detail if detail is not None else paths_detail(corr, inv)
    dg = Diagnoser(inv, PacketEvidence.of(capture_set, corr), HopTallies.of(det.hops), capture_drops, hops=det.hops)
    dnat = getattr(det, "dnat_connections", None)  # known without the NAT steps of every journey (PathSet.detail)
    dg.add(det.hops, det.paths, det.nat if dnat is None else None, dnat_connections=dnat)
    return dg.result(det.paths, det.nat if iptables else None, iptables)


class Diagnoser:
    """The diagnosis of a capture set a group of whole connections at a time: what the groups share (the packets'
    evidence, the tallies of every connection's hops, the inventory and the captures' drop counts) is given first,
    then each group's hops (:func:`pcaptools.k8s.paths.paths_detail`'s, in causal order), paths and NAT steps, in
    connection order. Keeps the output of the groups added until it is taken (:meth:`take`, :meth:`result`): per
    connection a row of columns, per loss a row, per timeline sighting a few array entries; a streamed run takes it
    after each bucket (:class:`pcaptools.k8s.paths_stream.DiagnosisParts`)."""

    def __init__(self, inventory: Inventory | None, evidence: PacketEvidence, tallies: HopTallies,
                 capture_drops: dict[str, int] | None = None, *, hops: pd.DataFrame | None = None) -> None:  # fmt: skip
        """``hops``: the whole set's, for the capture spans when ``evidence`` holds no packet times."""
        self.inv = inventory
        self.ev = evidence
        pts = evidence.point_list
        self.homes = _homes(pts, tallies, inventory)
        self.spans = evidence.spans(hops if hops is not None else pd.DataFrame({"point": pd.Categorical([]), "ts_corrected_ns": np.zeros(0, np.int64)}))
        self.roles = {pt.name: pt.role for pt in pts} if pts is not None else {}
        self.next_point, self.pair_max = _transitions(tallies.steps)
        self.drops = _drops(pts or [], evidence.interface_stats, capture_drops)
        self.frontend_of: dict[tuple[str, int, int], str] = {}
        if inventory is not None:
            fr = inventory.frontends()
            for a, p, q, svc in zip(fr["addr"], fr["port"], fr["proto"], fr["service"], strict=True):
                self.frontend_of.setdefault((str(a), int(p), int(q)), str(svc))
        self.conn_parts: list[dict[str, np.ndarray]] = []  # per group added: its connection table's columns
        self.loss_rows: list[dict] = []
        self.tl_parts: list[dict[str, np.ndarray]] = []  # per group added: its timeline's attempts and sightings
        self._labels: dict[str, int] = {}  # packet label -> id (_packet_ids)

    def add(self, h: pd.DataFrame | Iterable[pd.DataFrame], p: pd.DataFrame, nat: pd.DataFrame | None, *,
            dnat_connections: frozenset[int] | None = None) -> None:  # fmt: skip
        """Diagnose the connections of ``p``, whose every hop is in ``h`` and NAT step in ``nat``: what each journey
        missed, worked out column-wise over every connection at once (:mod:`pcaptools.k8s.diagnose_journeys`);
        Python objects only for the connections (and their losses) that are printed. ``h`` may be pieces of whole
        journeys in causal order (a streamed bucket's): each is reduced to its journeys' columns as it comes
        (:class:`JourneyTable`) and its 5-tuples (for ICMP errors), so a connection is never held whole as hops.
        ``dnat_connections``: those of them with a DNAT step, when known without ``nat`` (all the diagnosis reads of
        it; ``nat`` may then be None)."""
        inv = self.inv
        tuples: list[pd.DataFrame] = []

        def seen(pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:  # each piece's 5-tuples, if any ICMP error
            for x in pieces:
                if len(self.ev.icmp) and len(x):
                    tuples.append(_tuples(x))
                yield x

        t = JourneyTable(seen([h] if isinstance(h, pd.DataFrame) else h), self.ev)
        ctx = _Context(inv, self.homes, self.spans, self.roles, _icmp_events(self.ev.icmp, tuples),
                       _NO_NAT if nat is None else nat, self.next_point, self.pair_max, self.drops,
                       frontend_of=self.frontend_of,
                       dnat_connections=None if dnat_connections is None else frozenset(dnat_connections))  # fmt: skip
        rows = list(p.itertuples(index=False))
        pc = np.array([int(r.connection) for r in rows], np.int64)
        uc, jc = _unique_inverse(t.conn)
        icmp_j = self.ev.icmp_journeys
        is_icmp = np.isin(t.jid, np.fromiter(icmp_j, np.int64, len(icmp_j))) if icmp_j else np.zeros(t.n, bool)
        n_j = np.bincount(jc, minlength=len(uc))
        all_icmp = np.bincount(jc, weights=is_icmp, minlength=len(uc)) == n_j  # an ICMP error: evidence for the
        at = np.clip(np.searchsorted(uc, pc), 0, max(len(uc) - 1, 0))  # connection it quotes, not a connection of its own
        keep = (uc[at] == pc) & ~all_icmp[at] if len(uc) else np.zeros(len(pc), bool)
        rows = [r for r, k in zip(rows, keep.tolist(), strict=True) if k]
        ci_of = np.full(len(uc), -1, np.int64)  # connection (index in uc) -> its place among the diagnosed
        ci_of[at[keep]] = np.arange(len(rows))
        g = np.where((ci_of[jc] >= 0) & (t.dir >= 0), ci_of[jc] * 2 + t.dir, -1) if t.n else np.zeros(0, np.int64)
        order = np.flatnonzero(g >= 0)
        order = order[_stable_order(g[order])]  # each connection's directions, journeys in time order
        go = g[order]
        ng = 2 * len(rows)
        gs = np.searchsorted(go, np.arange(ng + 1))  # journeys of group x: order[gs[x]:gs[x + 1]]
        syn = (t.dir == FORWARD) & (t.flags >= 0) & (t.flags & 0x12 == 0x02)  # a SYN: the connection expects an answer
        has_syn = np.bincount(go // 2, weights=syn[order], minlength=len(rows)) > 0
        lost = np.zeros(t.n, bool)
        groups = _missed(ctx, t, rows, order, go, gs, has_syn, lost)
        suspect = _answer_suspects(ctx, t, rows, order, gs)
        status = np.full(len(rows), "ok", object)
        lossy = suspect.copy()  # a connection with a loss group in either direction, or evidence of one
        lossy[np.array([x // 2 for x, v in groups.items() if v], np.int64)] = True
        for ci in np.flatnonzero(lossy).tolist():
            fwd, rev = order[gs[2 * ci]:gs[2 * ci + 1]], order[gs[2 * ci + 1]:gs[2 * ci + 2]]
            losses, status[ci] = _connection(ctx, t, rows[ci], fwd, rev, groups.get(2 * ci, {}), groups.get(2 * ci + 1, {}), lost)
            self.loss_rows.extend(losses)
        self.conn_parts.append(_connection_columns(inv, p.iloc[np.flatnonzero(keep)], rows, status))
        tl = timeline(t, order, go, lost)
        if len(tl["journey"]):
            jr = tl.pop("journey")
            self.tl_parts.append({"connection": t.conn[jr], "direction": _DIRECTIONS[t.dir[jr]], "dir": t.dir[jr],
                                  "packet_id": self._packet_ids(tl["packet"]), **tl})  # fmt: skip

    def _packet_ids(self, labels: np.ndarray) -> np.ndarray:
        """An int per packet label, equal for equal labels over every group added (labels named once each)."""
        codes, uniq = pd.factorize(labels)
        ids = self._labels
        lut = np.array([ids.setdefault(x, len(ids)) for x in uniq.tolist()] + [-1], np.int64)
        return lut[codes]

    @property
    def held_rows(self) -> int:
        """Rows of output held, not yet taken (:meth:`take`): connections, losses and timeline attempts."""
        return (sum(len(x["connection"]) for x in self.conn_parts) + len(self.loss_rows)
                + sum(len(x["connection"]) for x in self.tl_parts))  # fmt: skip

    def take(self) -> dict[str, dict[str, np.ndarray]]:
        """The output of the groups added since the last take, as columns, dropped from here: ``connections``
        (:data:`CONNECTION_COLUMNS`), ``losses`` (:data:`LOSS_COLUMNS`) and the timeline's ``attempts``
        (:class:`_Attempts`). A streamed run takes each bucket's once it is diagnosed (:meth:`add`), so what is held
        is one bucket's, not the set's (issue #11: about 240 bytes a connection were held to the end)."""
        out = output_columns(self.conn_parts, self.loss_rows, self.tl_parts)
        self.conn_parts, self.loss_rows, self.tl_parts = [], [], []
        self._labels = {}  # packet ids need only be equal within a connection (_attempt_heads' key has it)
        return out

    def notes(self) -> list[str]:
        """The diagnosis' notes: the records the readers skipped, per file, and evidence it could not use."""
        notes = list(self.ev.reader_notes)  # records the readers skipped, per file
        if self.ev.has_icmp is False:
            notes.append("the decoder gave no ICMP columns: ICMP errors are not used as evidence")
        return notes

    def result(self, paths: pd.DataFrame, nat: pd.DataFrame, iptables: list | None = None) -> Diagnosis:
        """The Diagnosis of every group added (``paths``/``nat``: the whole set's; ``iptables``: Rulesets naming the
        kube-proxy chains behind each translation)."""
        nat_rules = None
        if iptables:  # iptables-save Rulesets (pcaptools.k8s.iptables): name the chains behind each translation
            from pcaptools.k8s.iptables import explain

            nat_rules = explain(nat, iptables)
        return diagnosis_of(self.take(), paths=paths, notes=self.notes(), nat_rules=nat_rules)


CONNECTION_COLUMNS = ("connection", "proto", "client_addr", "client_port", "client", "server_addr", "server_port",
                      "server", "status")  # fmt: skip
_CONNECTION_DTYPES = dict(zip(CONNECTION_COLUMNS, (np.int64, np.int64, object, np.int64, object, object, np.int64, object,
                                                   object), strict=True))  # fmt: skip
_LOSS_DTYPES = dict(zip(LOSS_COLUMNS, (np.int64, object, object, object, object, np.int64, object, np.float64, object), strict=True))
"""The connection and loss tables' columns as arrays (text as objects: None stays None, as in the rows they were)."""


def output_columns(conn_parts: list[dict[str, np.ndarray]] = (), loss_rows: list[dict] = (),
                   tl_parts: list[dict[str, np.ndarray]] = ()) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """A diagnosis' output as columns (:meth:`Diagnoser.take`): its groups' connection columns, loss rows and timeline
    attempts, each one set of columns (none given: the columns of no connection)."""
    return {"connections": _concat_columns(list(conn_parts), _CONNECTION_DTYPES),
            "losses": {k: np.array([r[k] for r in loss_rows], dtype) for k, dtype in _LOSS_DTYPES.items()},
            "attempts": _attempt_columns(list(tl_parts))}  # fmt: skip


def _connection_columns(inv: Inventory | None, p: pd.DataFrame, rows: list, status: np.ndarray) -> dict[str, np.ndarray]:
    """The connection table's columns (:data:`CONNECTION_COLUMNS`) of diagnosed path rows ``p`` (``rows``: the same
    as tuples) and their ``status``: numbers as int64, text as ``str`` of each value."""

    def text(col: str) -> np.ndarray:
        return np.array([str(x) for x in p[col].tolist()], object)

    ints = {k: p[k].to_numpy(np.int64) for k in ("connection", "proto", "client_port", "server_port")}
    return {**ints, "client_addr": text("client_addr"), "client": text("client"), "server_addr": text("server_addr"),
            "server": np.array([_server_name(inv, r) for r in rows], object), "status": status}  # fmt: skip


def _concat_columns(parts: list[dict[str, np.ndarray]], dtypes: dict[str, type]) -> dict[str, np.ndarray]:
    """Tables given as columns (dicts of arrays), one after the other (empty arrays of ``dtypes`` when none)."""
    if not parts:
        return {k: np.zeros(0, dtype) for k, dtype in dtypes.items()}
    return {k: np.concatenate([x[k] for x in parts]) if len(parts) > 1 else parts[0][k] for k in dtypes}


def table_of(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> pd.DataFrame:
    """A table of columns given as arrays, typed as a table of the same rows given as dicts is (text columns of
    ``str`` or None inferred alike); no rows: every column of object dtype, as such a table of no rows."""
    if not len(columns[names[0]]):
        return pd.DataFrame([], columns=list(names))
    return pd.DataFrame({k: columns[k] for k in names}, columns=list(names))


def diagnosis_of(columns: dict[str, dict[str, np.ndarray]], *, paths, notes: list[str],
                 nat_rules: pd.DataFrame | None) -> Diagnosis:  # fmt: skip
    """A Diagnosis of a Diagnoser's output (:meth:`Diagnoser.take`), its timeline table made when read: ``--json``
    writes each connection's attempts from their columns."""
    att = _Attempts(columns["attempts"])
    d = Diagnosis(connections=table_of(columns["connections"], CONNECTION_COLUMNS),
                  losses=table_of(columns["losses"], LOSS_COLUMNS), timeline=att.table, paths=paths, notes=notes,
                  nat_rules=nat_rules)  # fmt: skip
    d._attempts = att
    return d


class _Attempts:
    """A diagnosis's timeline as columns: per attempt its ``connection``, ``direction`` (and code ``dir``), ``packet``
    (and ``packet_id``), ``attempt`` number, ``reached``, where its sightings start and how many (``sightings``); per
    sighting its ``point`` and ``ts_corrected_ns``. The timeline table has a row per sighting (:meth:`table`)."""

    _PER_ATTEMPT = ("connection", "direction", "dir", "packet", "packet_id", "attempt", "reached", "sightings")

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        self.cols = cols
        self.start = (np.cumsum(cols["sightings"]) - cols["sightings"]).astype(np.int64)  # each attempt's first sighting
        self.head = _attempt_heads(cols["connection"], cols["dir"], cols["packet_id"], cols["attempt"])

    def table(self) -> pd.DataFrame:
        """The timeline table: a row per sighting (TIMELINE_COLUMNS), its attempt's values repeated."""
        c = self.cols
        if not len(c["point"]):
            return pd.DataFrame([], columns=list(TIMELINE_COLUMNS))
        n = c["sightings"]
        rows = {k: c[k] if k in ("point", "ts_corrected_ns") else np.repeat(c[k], n) for k in TIMELINE_COLUMNS}
        return pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))

    def timeline(self, ai: np.ndarray) -> Timeline:
        """The :class:`Timeline` of attempts ``ai`` (one connection's, ascending): attempts of one (direction, packet,
        attempt number) are one, their sightings together, in order of their first (as the table's rows group)."""
        c = self.cols
        h = self.head[ai]
        start, n = self.start[ai], c["sightings"][ai]
        rows = np.repeat(start - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(int(n.sum()))
        if bool((h == ai).all()):  # no two attempts share a key (the rule)
            heads, cut = ai, np.r_[0, np.cumsum(n)]
        else:
            g = np.repeat(h, n)
            o = np.argsort(g, kind="stable")
            rows, g = rows[o], g[o]
            cut = np.r_[np.flatnonzero(np.r_[True, g[1:] != g[:-1]]), len(g)]
            heads = g[cut[:-1]]
        return Timeline(c["direction"][heads], c["packet"][heads], c["attempt"][heads], c["reached"][heads], cut,
                        c["point"][rows], c["ts_corrected_ns"][rows])  # fmt: skip


_ATTEMPT_DTYPES = {"connection": np.int64, "direction": object, "dir": np.int64, "packet": object, "packet_id": np.int64,
                   "attempt": np.int64, "reached": bool, "sightings": np.int64, "point": object, "ts_corrected_ns": np.int64}
"""The columns of :class:`_Attempts` (per attempt, then per sighting: ``point`` and ``ts_corrected_ns``)."""


def _attempt_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The attempts of the groups' timelines (:func:`~pcaptools.k8s.diagnose_journeys.timeline` of each, with its
    connection, direction and packet ids) as one set of columns, in order."""
    return _concat_columns(parts, _ATTEMPT_DTYPES)


def _attempt_heads(conn: np.ndarray, dcode: np.ndarray, pid: np.ndarray, att: np.ndarray) -> np.ndarray:
    """Per attempt, the first attempt with its (connection, direction, packet, attempt number): its own index unless an
    earlier attempt has the same key (then both are one attempt of the timeline)."""
    n = len(conn)
    if not n:
        return np.zeros(0, np.int64)
    o = np.lexsort((np.arange(n), att, pid, dcode, conn))  # equal keys together, each key's attempts in order
    new = np.ones(n, bool)
    new[1:] = False
    for k in (conn, dcode, pid, att):
        ks = k[o]
        new[1:] |= ks[1:] != ks[:-1]
    head = np.empty(n, np.int64)
    head[o] = o[np.maximum.accumulate(np.where(new, np.arange(n), 0))]
    return head


def _drops(points: list, interface_stats: dict[str, dict], manifest: dict[str, int] | None) -> dict[str, tuple[int, str]]:
    """Point -> (packets dropped, what says so): the capture files' own statistics, else the manifest's counts."""
    out = {pt: (n, "tcpdump's count in the manifest") for pt, n in (manifest or {}).items() if n > 0}
    for pt, (n, how) in _pcapng_drops(points, interface_stats).items():
        if n > 0 or pt not in out:
            out[pt] = (n, how)
    return out


def _server_name(inv: Inventory | None, r) -> str:
    if isinstance(r.service, str):
        return r.service
    if inv is None:
        return str(r.server_addr)
    k, n, node = inv.entity(str(r.server_addr))
    return node if k == "node" else n


_NO_NAT = pd.DataFrame({"op": pd.Series([], dtype=object), "connection": np.zeros(0, np.int64)})


@dataclass
class _Context:
    inv: Inventory | None
    homes: dict[str, str]
    spans: dict[str, tuple[int, int]]
    roles: dict[str, str]
    icmp: pd.DataFrame
    nat: pd.DataFrame
    next_point: dict[tuple, str]
    pair_max: dict[tuple[str, str], int]
    drops: dict[str, tuple[int, str]]  # point -> (packets its capture reports dropped, the source of that count)
    dnat_connections: frozenset[int] | None = None  # connections with a DNAT step (None: from ``nat``)
    occ: dict[tuple[str, ...], tuple[list, set]] = field(default_factory=dict)  # points -> (_occ labels, their set)
    frontend_of: dict[tuple[str, int, int], str] = field(default_factory=dict)  # (addr, port, proto) -> first service
    crossed: dict[tuple, list] = field(default_factory=dict)  # (connection, direction, last, q) -> passed journeys there

    def __post_init__(self) -> None:
        if self.dnat_connections is None:
            nat = self.nat
            self.dnat_connections = frozenset(nat.loc[(nat["op"] == "DNAT").to_numpy(), "connection"].tolist()) if len(nat) else frozenset()


@dataclass(slots=True)
class _Journey:
    """One journey as an object (the diagnosis keeps its journeys as columns, :class:`JourneyTable`): for building a
    few by hand, e.g. to check :class:`_Acks` against the definition."""

    jid: int
    points: list[str]
    nodes: list[str]
    ts: list[int]
    dst: str
    dport: int
    src: str
    flags: int
    size: int
    fp: int
    last_size: int
    tunnelled: bool
    seq: int
    ack: int = -1
    plen: int = -1


def _seglen(j: _Journey) -> int:
    """Sequence space a TCP segment takes: its payload, plus one for SYN and for FIN."""
    return max(j.plen, 0) + (1 if j.flags >= 0 and j.flags & 0x02 else 0) + (1 if j.flags >= 0 and j.flags & 0x01 else 0)


class _Acks:
    """:class:`~pcaptools.k8s.diagnose_journeys.Acks` of journeys given as objects (:class:`_Journey`; ``js`` and
    ``other`` in time order, journey ids unique): ``acked(j, lost)`` with ``lost`` a set of journey ids."""

    def __init__(self, js: list[_Journey], other: list[_Journey]) -> None:
        every = [*js, *other]
        cols = SimpleNamespace(**{k: np.array([getattr(j, k) for j in every], np.int64) for k in ("jid", "flags", "seq", "ack")},
                               ts0=np.array([j.ts[0] for j in every], np.int64),
                               tsl=np.array([j.ts[-1] for j in every], np.int64),
                               seglen=np.array([_seglen(j) for j in every], np.int64))  # fmt: skip
        self._at = {j.jid: i for i, j in enumerate(every)}
        self._jid = cols.jid
        self._acks = Acks(cols, np.arange(len(js)), np.arange(len(js), len(every)))

    def acked(self, j: _Journey, lost: set[int]) -> bool:
        return self._acks.acked(self._at[j.jid], np.isin(self._jid, np.fromiter(lost, np.int64, len(lost))))

    def acked_all(self, js: list[_Journey], lost: set[int], steps: int = 8) -> list[bool]:
        """:meth:`acked` of each of ``js``, answered as arrays (``steps``: ACKs looked at a time before one by one)."""
        lm = np.isin(self._jid, np.fromiter(lost, np.int64, len(lost)))
        return self._acks.acked_all(np.array([self._at[j.jid] for j in js], np.int64), lm, steps).tolist()


def _unique(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)``; a sorted array (a hops table's journeys in causal order) without hashing or sorting it again."""
    if len(a) and bool((a[1:] >= a[:-1]).all()):
        return a[np.r_[True, a[1:] != a[:-1]]]
    return np.unique(a)


_DIRECTIONS = np.array(["forward", "reverse"], dtype=object)


def _occ(points: list[str]) -> list[str | None]:
    """Points labelled ``point#k`` by their occurrence in the list."""
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for p in points:
        out.append(f"{p}#{seen.get(p, 0)}")
        seen[p] = seen.get(p, 0) + 1
    return out


def _raw(label: str | None) -> str | None:
    return None if label is None else label.rpartition("#")[0]


def _node_of(point: str | None) -> str | None:
    return None if point is None else point.rsplit(":", 1)[0] if ":" in point else point


def _show(point: str | None) -> str:
    if point is None:
        return "any further point"
    node, _, iface = point.rpartition(":")
    return f"{iface}@{node}" if node else point


def _expected(ctx: _Context, t: JourneyTable, ref: int, direction: str, answered: bool, expects_answer: bool) -> list[str | None]:
    """The capture points a direction's packets are expected at, labelled by occurrence (:func:`_occ`): those of its
    reference journey ``ref`` (the most points; of those the earliest), extended by where packets to its destination
    went next in other journeys, up to the destination's own point (or an unknown next point, None, when a packet
    expecting an answer got none: ``answered`` is whether the other direction has journeys)."""
    ref_points, ref_dst = t.points(ref), t.dst(ref)
    # a point can be crossed twice (in natively, out encapsulated): sightings are labelled by occurrence
    expected: list[str | None] = _occ(ref_points)
    raw = list(ref_points)
    home = ctx.homes.get(ref_dst)
    no_answer = home is None and direction == "forward" and not answered and expects_answer
    if (home is not None and home not in raw) or no_answer:
        cur = raw[-1]
        for step in range(16):  # where packets to this destination went next from here, in other journeys
            # (the first step from where the packet was last seen also matches its encapsulation there)
            nxt = ctx.next_point.get((cur, ref_dst, bool(t.tun[ref])) if step == 0 else (cur, ref_dst))
            if nxt is None or nxt in raw:
                break
            raw.append(nxt)
            expected.append(f"{nxt}#0")
            cur = nxt
            if nxt == home:
                break
        if home is not None and home not in raw:
            # stopped on another node: the packets to this destination enter its node at this point
            prev = ctx.next_point.get(("from", home, ref_dst))
            if prev is not None and prev not in raw and _node_of(prev) == _node_of(home) != _node_of(raw[-1]):
                expected.append(f"{prev}#0")
            expected.append(f"{home}#0")
        elif home is None:
            expected.append(None)
    return expected


def _missed(ctx: _Context, t: JourneyTable, rows: list, order: np.ndarray, go: np.ndarray, gs: np.ndarray,
            has_syn: np.ndarray, lost: np.ndarray) -> dict[int, dict[tuple, np.ndarray]]:  # fmt: skip
    """Per group ``x`` (connection ``rows[x // 2]``'s forward (even) or reverse (odd) journeys, ``order[gs[x]:gs[x + 1]]``,
    in time order) that has any: its journeys grouped by (kind, last seen, first missed) in order of first journey,
    kind ``loss`` (the journey stopped at ``last`` while ``first missed`` was capturing) or ``gap`` (missing at a
    point but seen after it); each lost journey marked in ``lost``. The expected points are worked out once per
    group, what a sequence of points misses once per group and sequence, and every journey's verdict as arrays."""
    if not len(order):
        return {}
    pos = np.arange(len(order))
    by_ref = np.lexsort((pos, -t.npts[order], go))
    gid, gfirst = np.unique(go[by_ref], return_index=True)
    ref_of = dict(zip(gid.tolist(), order[by_ref[gfirst]].tolist(), strict=True))
    seqid = sequence_ids(t, order)
    combo, _ = pd.factorize(go * (int(seqid.max()) + 1) + seqid)  # (group, sequence of points), in order of appearance
    nc = int(combo.max()) + 1
    cfirst = np.unique(combo, return_index=True)[1]
    term_k = np.full(nc, -1, np.int64)  # the expected point (position) where a journey of the sequence stops, if any
    term_key = np.full(nc, -1, np.int64)
    term_any = np.zeros(nc, bool)  # stopping there needs no capture span check (no known next point)
    term_lo = np.zeros(nc, np.int64)
    term_hi = np.full(nc, -1, np.int64)
    gaps: list[tuple[int, list[tuple[int, int]]]] = []
    keys: dict[tuple, int] = {}
    info: list[tuple] = []
    expected_of: dict[int, list] = {}
    occ = ctx.occ

    def key_id(x: int, kind: str, last: str | None, q: str | None) -> int:
        k = (x, kind, last, q)
        got = keys.get(k)
        if got is None:
            got = keys[k] = len(info)
            info.append(k)
        return got

    for cb, f in enumerate(cfirst.tolist()):
        x = int(go[f])
        expected = expected_of.get(x)
        if expected is None:
            r = rows[x // 2]
            expects = int(r.proto) == 17 or (int(r.proto) == 6 and bool(has_syn[x // 2]))
            expected = expected_of[x] = _expected(ctx, t, ref_of[x], "forward" if x % 2 == 0 else "reverse",
                                                  gs[(x ^ 1) + 1] > gs[x ^ 1], expects)  # fmt: skip
        points = tuple(t.points(int(order[f])))
        hit = occ.get(points)
        if hit is None:
            labels = _occ(list(points))
            hit = occ[points] = (labels, set(labels))
        labels, seen = hit
        if labels[0] not in expected:
            continue
        gl = []
        for k in range(expected.index(labels[0]) + 1, len(expected)):
            q = expected[k]
            if q in seen:
                continue
            if any(y in seen for y in expected[k + 1:]):  # the capture missed it here; it may still be lost further on
                gl.append((k, key_id(x, "gap", _raw(expected[k - 1]), _raw(q))))
                continue
            term_k[cb], term_key[cb] = k, key_id(x, "loss", _raw(expected[k - 1]), _raw(q))
            if q is None:
                term_any[cb] = True
            else:
                term_lo[cb], term_hi[cb] = ctx.spans.get(_raw(q), (0, -1))
            break
        if gl:
            gaps.append((cb, gl))
    tsl = t.tsl[order]
    stops = (term_k[combo] >= 0) & (term_any[combo] | ((term_lo[combo] <= tsl) & (tsl <= term_hi[combo])))
    lp = np.flatnonzero(stops)  # the next point was capturing then (else nothing is said)
    ev_pos, ev_k, ev_key = [lp], [term_k[combo[lp]]], [term_key[combo[lp]]]
    if gaps:
        by_combo = np.argsort(combo, kind="stable")
        cs = np.searchsorted(combo[by_combo], np.arange(nc + 1))
        for cb, gl in gaps:
            mine = by_combo[cs[cb]:cs[cb + 1]]
            for k, kid in gl:
                ev_pos.append(mine)
                ev_k.append(np.full(len(mine), k, np.int64))
                ev_key.append(np.full(len(mine), kid, np.int64))
    ep, ek, ekey = np.concatenate(ev_pos), np.concatenate(ev_k), np.concatenate(ev_key)
    lost[order[lp]] = True
    if not len(ep):
        return {}
    s = np.lexsort((ek, ep))  # a journey's gaps and loss in the order of the expected points, journeys in time order
    ep, ekey = ep[s], ekey[s]
    eg = go[ep]
    out: dict[int, dict[tuple, np.ndarray]] = {}
    cut = np.flatnonzero(np.r_[True, eg[1:] != eg[:-1], True])
    for a, b in zip(cut[:-1].tolist(), cut[1:].tolist(), strict=True):
        kk, pp = ekey[a:b], ep[a:b]
        u, fi = np.unique(kk, return_index=True)
        out[int(eg[a])] = {info[kid][1:]: order[pp[kk == kid]] for kid in u[np.argsort(fi)].tolist()}
    return out


def _answer_suspects(ctx: _Context, t: JourneyTable, rows: list, order: np.ndarray, gs: np.ndarray) -> np.ndarray:
    """Per connection of ``rows``: whether :func:`_answer_losses` may find something (answers in both directions, and
    a reply from another address reaching the client, or a SYN-ACK reaching it and an RST leaving it)."""
    n = len(rows)
    out = np.zeros(n, bool)
    if not n or not len(order):
        return out
    code = {str(x): i for i, x in enumerate(t.point_names[:-1].tolist())}
    homes = [ctx.homes.get(str(r.client_addr)) for r in rows]
    ch = np.array([code.get(x, -2) if x is not None else -2 for x in homes], np.int64)
    both = (gs[1:-1:2] > gs[0:-2:2]) & (gs[2::2] > gs[1:-1:2])
    first_fwd = order[np.minimum(gs[0:-2:2], len(order) - 1)]
    home = np.where(ch >= -1, ch, -2)
    home = np.where([x is not None for x in homes], ch, t.first_pt[first_fwd])  # client_home, else where it was first seen
    ci = np.repeat(np.arange(n), 2)
    jci = np.repeat(ci, np.diff(gs))
    rev = t.dir[order] == REVERSE
    f = t.flags[order]
    (sc, sfirst), (dc, dfirst) = t.addr_codes("src"), t.addr_codes("dst")  # addresses compared by code, not string
    server = np.array([sfirst.get(str(r.server_addr), -3) for r in rows], np.int64)
    client = np.array([dfirst.get(str(r.client_addr), -3) for r in rows], np.int64)
    bad = rev & (t.last_pt[order] == ch[jci]) & (sc[t.src_c[order]] != server[jci]) & (dc[t.dst_c[order]] == client[jci])
    synack = rev & (f >= 0) & (f & 0x12 == 0x12) & (t.last_pt[order] == home[jci])
    rst = ~rev & (f >= 0) & (f & 0x04 != 0) & (t.first_pt[order] == home[jci])
    tcp = np.array([int(r.proto) == 6 for r in rows], bool)

    def anyof(m: np.ndarray) -> np.ndarray:
        return np.bincount(jci, weights=m, minlength=n) > 0

    return both & (anyof(bad) | (tcp & anyof(synack) & anyof(rst)))


def _connection(ctx: _Context, t: JourneyTable, r, fwd: np.ndarray, rev: np.ndarray, gf: dict, gr: dict,
                lost: np.ndarray) -> tuple[list[dict], str]:  # fmt: skip
    """Losses and status of one connection from its forward and reverse journeys (time order) and their groups
    (:func:`_missed`); a lost segment its receiver acknowledged is unmarked in ``lost``."""
    c = int(r.connection)
    losses = []
    failed = degraded = False
    for direction, js, other, groups in (("forward", fwd, rev, gf), ("reverse", rev, fwd, gr)):
        if not len(js):
            continue
        groups = dict(groups)
        if int(r.proto) == 6 and lost[js].any():  # a segment its receiver acknowledged arrived: the capture missed it
            keys = [k for k in groups if k[0] == "loss"]
            got = Acks(t, js, other).acked_all(np.concatenate([groups[k] for k in keys]), lost) if keys else np.zeros(0, bool)
            acked = np.concatenate([groups[k] for k in keys])[got] if got.any() else np.zeros(0, np.int64)
            cut = np.cumsum([0, *(len(groups[k]) for k in keys)]).tolist()
            for key, a, b in zip(keys, cut[:-1], cut[1:], strict=True) if len(acked) else ():  # none acknowledged: the groups stand
                mine = got[a:b]
                if mine.any():
                    groups[("acked", *key[1:])] = groups[key][mine]
                    groups[key] = groups[key][~mine]
                    if not len(groups[key]):
                        del groups[key]
            lost[acked] = False
        passed = js[~lost[js]]
        for (kind, last, q), lg in groups.items():
            cause, conf, why = _cause(ctx, t, r, direction, kind, last, q, lg, passed, other)
            n_att = len(lg)
            what = t.what(lg)
            node = _node_of(last) if q is None or _node_of(last) == _node_of(q) else None
            where = (f"lost inside {node} after {_show(last)}" if q is None else
                     f"dropped inside {node} between {_show(last)} and {_show(q)}" if node else
                     f"lost between {_show(last)} and {_show(q)}")  # fmt: skip
            if kind == "gap":
                where = f"missing at {_show(q)} but seen after it"
            elif kind == "acked":
                where = f"missing from {_show(q)} on, yet its receiver acknowledged it"
            dst = t.dst(int(lg[0]))
            dst = f" (to {endpoint(dst, int(t.dport[lg[0]]))})" if dst else ""
            evidence = f"{what}{dst} seen on {_show(last)} {n_att} time(s), never on {_show(q)} → {where}; {why}"
            losses.append({"connection": c, "direction": direction, "last_seen": last, "first_missed": q, "node": node,
                           "packets": n_att, "cause": cause, "confidence": conf, "evidence": evidence})  # fmt: skip
            if kind == "loss":
                if js[-1] in lg or q is None:
                    failed = True
                else:
                    degraded = True
    extra = _answer_losses(ctx, t, r, c, fwd, rev)
    if extra:
        losses.extend(extra)
        failed = True
    status = "failed" if failed else "degraded" if degraded else "ok"
    return losses, status


def _answer_losses(ctx: _Context, t: JourneyTable, r, c: int, fwd: np.ndarray, rev: np.ndarray) -> list[dict]:
    """Evidence that is not a missing sighting: a reply from the backend's own address at the client (not un-NATed),
    or a SYN-ACK that reached the client and was answered by RST (conntrack / INVALID)."""
    if not len(rev) or not len(fwd):
        return []
    out = []
    client_home = ctx.homes.get(str(r.client_addr))
    bad = rev[(t.last_pt[rev] == t.point_code(client_home)) & ~t.is_addr("src", rev, str(r.server_addr))
              & t.is_addr("dst", rev, str(r.client_addr))] if client_home is not None else rev[:0]  # fmt: skip
    if len(bad) and str(r.server_addr) != str(r.backend_addr):
        b0 = int(bad[0])
        at = t.point_names[t.last_pt[b0]]
        out.append({"connection": c, "direction": "reverse", "last_seen": at, "first_missed": None,
                    "node": _node_of(at), "packets": len(bad), "cause": "asymmetric-return",
                    "confidence": 0.8,
                    "evidence": f"{t.what(bad)} reached {_show(at)} from {t.src(b0)}, not from "
                                f"{r.server_addr} the client sent to: the reply was not un-NATed (it took another path)"})  # fmt: skip
        return out
    if int(r.proto) != 6:
        return out
    home = client_home or t.points(int(fwd[0]))[0]
    f, b = t.flags[rev], t.flags[fwd]
    synack = rev[(f >= 0) & (f & 0x12 == 0x12) & (t.last_pt[rev] == t.point_code(home))]
    rst = fwd[(b >= 0) & (b & 0x04 != 0) & (t.first_pt[fwd] == t.point_code(home))]
    if len(synack) and len(rst) and t.ts0[rst[0]] > t.tsl[synack[0]]:
        ts = t.ts0[fwd]
        acked_ = bool(((b == 0x10) & (t.tsl[synack[0]] < ts) & (ts < t.ts0[rst[0]])).any())
        if not acked_:
            out.append({"connection": c, "direction": "reverse", "last_seen": home, "first_missed": None,
                        "node": _node_of(home), "packets": len(synack), "cause": "conntrack", "confidence": 0.6,
                        "evidence": f"{len(synack)} SYN-ACK(s) from {t.src(int(synack[0]))} reached {_show(home)} and the client "
                                    "answered RST: its stack or conntrack took the answer as invalid"})  # fmt: skip
    return out


def _cause(ctx: _Context, t: JourneyTable, r, direction: str, kind: str, last: str, q: str | None, lost: np.ndarray,
           passed: np.ndarray, other: np.ndarray) -> tuple[str, float, str]:  # fmt: skip
    """(cause, confidence, evidence) of one loss group (``lost``, ``passed``, ``other``: journeys of ``t``)."""
    c = int(r.connection)
    if kind in ("gap", "acked"):
        went = ("the packet went on" if kind == "gap" else
                "an acknowledgement beyond its last byte came back, with no copy of it seen passing: it arrived")  # fmt: skip
        n, how = ctx.drops.get(q or "", (0, ""))
        if n > 0:
            return "capture-loss", 0.95, f"{went}; the capture at {_show(q)} reports {n} packet(s) dropped ({how})"
        return "capture-loss", 0.9 if kind == "gap" else 0.85, f"{went}: the capture at {_show(q)} missed it"
    ic = ctx.icmp.loc[ctx.icmp["connection"] == c] if len(ctx.icmp) else ctx.icmp
    frag = ic.loc[((ic["icmp_proto"] == 1) & (ic["icmp_type"] == 3) & (ic["icmp_code"] == 4)) |
                  ((ic["icmp_proto"] == 58) & (ic["icmp_type"] == 2))] if len(ic) else ic  # fmt: skip
    if len(frag):
        f = frag.iloc[0]
        return "mtu-blackhole", 0.95, (f"ICMP frag-needed / packet-too-big (next-hop MTU {int(f.icmp_mtu)}) from "
                                       f"{f.sender} seen on {_show(str(f.point))}")
    unreach = ic.loc[((ic["icmp_proto"] == 1) & (ic["icmp_type"] == 3)) | ((ic["icmp_proto"] == 58) & (ic["icmp_type"] == 1))] if len(ic) else ic
    inv = ctx.inv
    svc_name, n_ep = None, -1
    if inv is not None and direction == "forward":
        svc_name = ctx.frontend_of.get((str(r.server_addr), int(r.server_port), int(r.proto)))
        if svc_name is not None:
            n_ep = sum(1 for e in inv.endpoints if e.service == svc_name)
    dnat = c in ctx.dnat_connections
    if svc_name is not None and n_ep == 0 and not dnat:
        codes = set(unreach["icmp_code"].astype(int)) if len(unreach) else set()
        if 1 in codes and 3 not in codes:  # routed on (DNATed) and nobody answered for the address
            return "stale-endpoint", 0.6, (f"service {svc_name} has an empty EndpointSlice, yet ICMP host unreachable came "
                                           f"from {unreach.iloc[0].sender}: a DNAT to an address nobody has")  # fmt: skip
        how = (f"ICMP unreachable (code {int(unreach.iloc[0].icmp_code)}) from {unreach.iloc[0].sender}" if len(unreach)
               else "no DNAT and no answer seen")  # fmt: skip
        return "no-endpoints", 0.9 if codes else 0.75, f"service {svc_name} has an empty EndpointSlice; {how}"
    l0 = int(lost[0])
    target = t.dst(l0)
    if inv is not None and direction == "forward" and dnat:
        k, _n, node = inv.entity(target)
        known_ep = any(e.ip == target for e in inv.endpoints)
        if k != "pod" and not known_ep and target not in inv.node_addresses():
            at = f" (inside {node}'s pod CIDR)" if node else ""
            return "stale-endpoint", 0.8, f"DNAT to {target}{at}, an address no pod and no EndpointSlice has"
    sz = t.last_size[lost]
    small, large = int(sz.min()), int(sz.max())  # sizes of the lost packets
    key = (c, direction, last, q)  # the loss groups of a direction share ``passed``: filter it once per hop
    crossed = ctx.crossed.get(key)
    if crossed is None:
        m = t.has_point(passed, t.point_code(last))
        if q is not None:
            m &= t.has_point(passed, t.point_code(q))
        crossed = ctx.crossed[key] = passed[m]
    ok_max = int(t.last_size[crossed].max()) if len(crossed) else None  # the largest packet that made this hop
    if ok_max is None and q is not None and (last, q) in ctx.pair_max:
        ok_max = ctx.pair_max[(last, q)]  # of other connections' packets
    tunnel_edge = (any(ctx.roles.get(x, "") == "overlay" for x in (last, q) if x) or bool(t.tun[lost].any())
                   or _interface(last).startswith(("vxlan", "tunl", "genev", "flannel")))  # fmt: skip
    if ok_max is not None and small > max(ok_max, _mtu_floor(target)):
        conf = 0.8 if tunnel_edge else 0.6
        tun = " tunnelled" if tunnel_edge else ""
        return "mtu-blackhole", conf, (f"{len(lost)}{tun} packet(s) of {_span(small, large)} bytes vanished where "
                                       f"packets of at most {ok_max} bytes pass; no ICMP frag-needed seen")  # fmt: skip
    if len(unreach):
        u = unreach.iloc[0]
        if int(u.icmp_code) in (9, 10, 13):
            return "policy-drop", 0.9, f"ICMP administratively prohibited (code {int(u.icmp_code)}) from {u.sender}"
    if direction == "reverse" and len(other):
        fwd_nodes = t.node_names_of(other)
        off = [n for n in dict.fromkeys(t.nodes(l0)) if n not in fwd_nodes]
        if off:
            return "asymmetric-return", 0.8, (f"the reply crossed {', '.join(off)}, which the request never did, and "
                                              f"stopped at {_show(last)}: it took another path back (a strict rp_filter "
                                              "drops a packet arriving where its source is not routed, a stateful "
                                              "filter one whose request it never saw)")  # fmt: skip
    early = crossed if q is not None else crossed[:0]
    if (len(early) and q is not None and _node_of(last) == _node_of(q)
            and t.ts0[early].max() < t.ts0[lost].min()):  # fmt: skip
        return "conntrack", 0.6, (f"{t.what(early)} of this connection crossed {_show(last)} → {_show(q)}, then every later "
                                  f"packet ({t.what(lost)}, as small as {small} bytes) stopped there, no ICMP "
                                  f"error: {_node_of(last)}'s connection tracking stopped matching the connection "
                                  "(ctstate INVALID, dropped)")  # fmt: skip
    if q is not None and _node_of(last) == _node_of(q) and ctx.roles.get(q, "") in ("pod-veth", "") and q == ctx.homes.get(target):
        return "policy-drop", 0.75, (f"reached {_node_of(last)} but not the pod's veth, packets as small as {small} bytes "
                                     f"lost too, no ICMP error: a filter (NetworkPolicy) dropped them")  # fmt: skip
    n, how = ctx.drops.get(q or "", (0, ""))
    if n >= len(lost):  # nothing else fits, and the next point's capture says it lost packets
        return "capture-loss", 0.5, (f"no evidence of a network drop, and the capture at {_show(q)} reports {n} "
                                     f"packet(s) dropped ({how}): it may have missed them")  # fmt: skip
    return "unknown", 0.3, "no evidence points to one cause"


def _span(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _interface(point: str | None) -> str:
    return "" if point is None else point.rpartition(":")[2]
