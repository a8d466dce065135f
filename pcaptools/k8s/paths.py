"""Connections through the cluster: who talked to whom, through which service, NATs, tunnels and capture points.

:func:`paths` groups the journeys of a hops table into connections: two journeys belong together
when some sighting of each carries the same unordered 5-tuple (NAT rewrites tuples, but every
rewritten tuple is seen next to the one before it). The connection's first packet (its SYN, else
its first journey) gives the client-side tuple; a journey is a reply when one of its tuples is the
reverse of one of the first packet's. Everything else is named from the inventory: the client, the
service behind the translated frontend, the backend pod and node, and the NAT steps
(:mod:`pcaptools.k8s.nat`). The table is built a column at a time over all connections (:func:`path_rows`):
each distinct address named once, the texts joined in Arrow from parts made once per distinct value; nothing
runs a Python step per connection or per packet.

A 5-tuple used again (a client port reused for a second connection) starts a new connection at a
TCP SYN that follows other packets of that tuple, or after :data:`IDLE_NS` of silence (:func:`_epochs`).
Limits: a new SYN right after an unanswered SYN of the same tuple joins it (a retry cannot be told apart
without sequence numbers); repeated pings with one id within the idle time join; a path is only as complete as the capture points; the order of sightings on two nodes
closer than their clock error relies on TTL and the sender/receiver rule of :func:`order_hops`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from pcaptools.correlate.fingerprint import combine
from pcaptools.fmt import fmt_ns
from pcaptools.k8s.inventory import ENTITY_KINDS, Inventory
from pcaptools.k8s.journeys import (
    components,
    grouped,
    journey_index,
    pick_least,
    run_directions,
    run_distinct,
    run_tuples,
    tuple_uses,
)
from pcaptools.k8s.nat import (
    _check,
    _lookup,
    causal_order,
    endpoint_changes,
    nat_table,
    order_hops,
    take_rows,
)
from pcaptools.labels import arrow_strings, category_codes, codes_in, strings, vocabulary
from pcaptools.lazy import MadeOnRead as _MadeOnRead
from pcaptools.schema import FLOW_STATES, PATH_COLUMNS, PATH_KINDS, PRESERVED, validate


def as_inventory(inventory: Inventory | str | os.PathLike | dict | list | None) -> Inventory | None:
    """An Inventory from an Inventory, a path, a parsed kubectl List or None."""
    if inventory is None or isinstance(inventory, Inventory):
        return inventory
    return Inventory.load(inventory)


IDLE_NS = 60_000_000_000
"""A 5-tuple idle this long starts a new connection (non-TCP; TCP splits on a new SYN)."""


def _epochs(key: np.ndarray, ji: np.ndarray, t: np.ndarray, syn: np.ndarray, hs: np.ndarray) -> np.ndarray:
    """Per (tuple ``key``, journey ``ji``) pair, with its earliest time ``t`` and whether it holds a TCP SYN (no ACK) /
    a SYN or SYN-ACK: which use of its unordered 5-tuple the journey belongs to. A SYN after other packets of the
    tuple (data, FIN, RST: not a retried SYN or SYN-ACK) starts a new use, as does any packet after the tuple was
    idle for :data:`IDLE_NS`; so a port reused for a second connection is not merged into the first.
    Uses are numbered 1, 2, ... across all tuples (a use's number names its tuple too)."""
    # each tuple's journeys in time order (ties in journey order: elements come in journey order when grouped), then
    # the cut in one compiled pass (a stable counting sort by tuple)
    by_time = np.argsort(t, kind="stable") if grouped(ji) else np.lexsort((ji, t))
    key = np.asarray(key, np.int64)
    return tuple_uses(by_time, key, np.asarray(t, np.int64), np.asarray(syn, bool), np.asarray(hs, bool),
                      int(key.max()) + 1 if len(key) else 0, IDLE_NS)  # fmt: skip


def _connections(h: pd.DataFrame, codes: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(journey ids, connection id per journey): components of journeys linked by a shared unordered 5-tuple
    (each use of it, :func:`_epochs`). ``codes``: (src, dst) as codes in one vocabulary, when the caller has them."""
    j = h["journey"].to_numpy(np.int64)
    uj, ji = journey_index(j)
    order = None if len(j) and grouped(j) else np.argsort(ji, kind="stable")  # grouped by journey, as order_hops leaves it
    s, d = _address_codes(h)[1:] if codes is None else codes
    # in the hops schema's dtypes (int16 / int32): no int64 copies of every row, one compiled signature
    cols = [ji, h["proto"].to_numpy(np.int16), s, h["sport"].to_numpy(np.int32), d, h["dport"].to_numpy(np.int32),
            h["ts_corrected_ns"].to_numpy(np.int64), h["tcp_flags"].to_numpy(np.int16)]  # fmt: skip
    if order is not None:
        cols = [c[order] for c in cols]
    # one element per (journey, unordered tuple): its earliest time, whether it has a SYN / a handshake packet
    pj, proto, lo, hi, pt, psyn, phs = run_tuples(*(np.ascontiguousarray(c) for c in cols))
    key = pd.factorize(_pair_key(proto, lo, hi, int(max(s.max(initial=0), d.max(initial=0)) + 2) * 65538))[0]
    key = _epochs(key, pj, pt, psyn, phs) - 1  # one key per use of a tuple
    # each journey's least journey linked to it, and per such root its component's earliest sighting
    lab, first_t = components(pj, key, pt, len(uj), int(key.max()) + 1)
    # renumber components by their earliest sighting (ties: the lower label first)
    roots = np.flatnonzero(np.bincount(lab, minlength=len(uj)))
    rank = np.empty(len(uj), np.int64)
    rank[roots[np.lexsort((roots, first_t[roots]))]] = np.arange(len(roots))
    return uj, rank[lab]


def _address_codes(h: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """(vocabulary of the src and dst addresses, src codes, dst codes in it): computed once per table, read by
    :func:`_connections`, the directions and :func:`~pcaptools.k8s.nat.nat_table` (each a pass over every row)."""
    vocab = vocabulary(h["src"], h["dst"])
    return vocab, codes_in(h["src"], vocab), codes_in(h["dst"], vocab)


def node_codes(h: pd.DataFrame) -> np.ndarray:
    """Each row's node as an integer ordered as the ``node`` column's categories (-1 missing; first appearance when
    the column holds strings): the order :func:`_journey_times` breaks a tie by."""
    if isinstance(h["node"].dtype, pd.CategoricalDtype):
        return h["node"].cat.codes.to_numpy(np.int64)
    return pd.factorize(h["node"])[0].astype(np.int64)


def journey_nodes(ji: np.ndarray, node: np.ndarray, nj: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct (journey, node) pairs of rows with journey index ``ji`` and node code ``node``: (journeys, nodes,
    each journey's first row when every one of the ``nj`` journeys is one run of rows, else None)."""
    starts = np.flatnonzero(np.r_[True, ji[1:] != ji[:-1]]) if grouped(ji) else None
    if starts is not None and len(starts) == nj:  # each journey one run of rows (as _build gives them)
        zero = np.zeros(len(ji), np.int64)
        first = run_distinct(ji, node, zero, zero, zero, zero.astype(bool), zero.astype(bool))[0]
        return ji[first], node[first], starts
    nn = int(node.max()) + 2 if len(node) else 1
    seen = pd.unique(ji * nn + node + 1)  # (journey, node) pairs
    return seen // nn, seen % nn - 1, None


def best_nodes(cc: np.ndarray, cnode: np.ndarray, k: np.ndarray, nconn: int) -> np.ndarray:
    """Per connection, of its (connection ``cc``, node ``cnode``, journeys ``k``) counts, the node that saw most of its
    journeys, the least node on a tie (-2, which no row has, for a connection without any)."""
    o = np.lexsort((cnode, -k, cc))  # most journeys first, the first node on a tie
    head = np.r_[True, cc[o][1:] != cc[o][:-1]] if len(o) else np.zeros(0, bool)
    best = np.full(nconn, -2, np.int64)
    best[cc[o][head]] = cnode[o][head]
    return best


def _journey_times(h: pd.DataFrame, ji: np.ndarray, conn: np.ndarray, nj: int, best: np.ndarray | None = None) -> np.ndarray:
    """Per journey, a time comparable within its connection: the raw timestamp at the node that saw most of the
    connection's journeys (one clock, so a reply never precedes its request through clock error); corrected time
    otherwise. ``best``: that node per connection as a :func:`node_codes` code, when counted over more than ``h``
    (a connection built in pieces, :mod:`pcaptools.k8s.paths_stream`)."""
    node = node_codes(h)
    sj, sn, starts = journey_nodes(ji, node, nj)
    if best is None:
        nn = int(node.max()) + 2 if len(node) else 1  # codes from -1 (a missing node is a node of its own)
        cnk = conn[sj] * nn + sn + 1
        span = (int(conn.max()) + 1) * nn
        if span <= 4 * len(cnk) + 1024:  # few (connection, node) codes: counted, not sorted
            counts = np.bincount(cnk, minlength=span)
            cn = np.flatnonzero(counts)
            k = counts[cn]
        else:
            cn, k = np.unique(cnk, return_counts=True)  # journeys per (connection, node)
        best = best_nodes(cn // nn, cn % nn - 1, k, int(conn.max()) + 1)
    at = node == best[conn[ji]]
    big = np.iinfo(np.int64).max
    if starts is not None:
        raw = np.minimum.reduceat(np.where(at, h["ts_ns"].to_numpy(np.int64), big), starts)
        tc = np.minimum.reduceat(h["ts_corrected_ns"].to_numpy(np.int64), starts)
    else:
        raw = np.full(nj, big, np.int64)
        np.minimum.at(raw, ji[at], h["ts_ns"].to_numpy(np.int64)[at])
        tc = np.full(nj, big, np.int64)
        np.minimum.at(tc, ji, h["ts_corrected_ns"].to_numpy(np.int64))
    return np.where(raw < big, raw, tc)


def _pick(conn: np.ndarray, eligible: np.ndarray, prio: np.ndarray, t: np.ndarray, nconn: int) -> np.ndarray:
    """Per connection, the index of the eligible journey with the lowest (prio, t), the first on a tie; -1 if none."""
    return pick_least(conn, eligible, prio.astype(np.int64), t.astype(np.int64), nconn)


def forward_journeys(conn: np.ndarray, syn: np.ndarray, nhops: np.ndarray, t: np.ndarray, nconn: int) -> np.ndarray:
    """Per connection, its first packet's journey (index): its SYN seen at most points, the earliest on a tie; with no
    SYN, its earliest journey (-1 for none). ``syn``, ``nhops``, ``t``: per journey, ``conn`` its connection."""
    has_syn = np.bincount(conn, syn, minlength=nconn)[conn] > 0
    return _pick(conn, syn | ~has_syn, np.where(has_syn, -nhops, 0), t, nconn)


def reply_journeys(conn: np.ndarray, reply: np.ndarray, synack: np.ndarray, nhops: np.ndarray, t: np.ndarray,
                   nconn: int) -> np.ndarray:  # fmt: skip
    """Per connection, its representative reply (index): its SYN-ACK seen at most points, else its earliest reply."""
    has_synack = np.bincount(conn, reply & synack, minlength=nconn)[conn] > 0
    return _pick(conn, reply & (synack | ~has_synack), np.where(has_synack, -nhops, 0), t, nconn)


def _rows_of(first_row: np.ndarray, end_row: np.ndarray, js: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of journeys ``js`` (indices into ``first_row``), concatenated, and each one's first/end position
    among them (0 for journeys not in ``js``)."""
    js = np.unique(js)
    n = end_row[js] - first_row[js]
    end = np.cumsum(n)
    start = end - n
    rows = np.repeat(first_row[js] - start, n) + np.arange(int(end[-1]) if len(end) else 0)
    f, e = np.zeros(len(first_row), np.int64), np.zeros(len(first_row), np.int64)
    f[js], e[js] = start, end
    return rows, f, e


def _strings(col: pd.Series, rows: np.ndarray) -> np.ndarray:
    """``str`` of the column's values at ``rows`` as an object array, '' where missing (each distinct value once)."""
    codes, names = _codes(col, rows)
    return names[codes]


def paths(
    correlation, inventory: Inventory | str | os.PathLike | dict | None = None, *, flows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per connection (PATH_COLUMNS) from a Correlation (or its hops table), named with the inventory.

    Example::

        cs = pcaptools.CaptureSet.load("sample_pcaps/calico-vxlan")
        p = pcaptools.path_table(pcaptools.correlate_captures(cs), "sample_pcaps/calico-vxlan/inventory.json")
        print(p[['kind', 'client', 'service', 'backend', 'nat']])
    """
    return _build(correlation, inventory, flows)[0]


def paths_and_nat(correlation, inventory=None, *, flows: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paths, NAT table with its ``connection`` filled) for the same inputs as :func:`paths`."""
    return _build(correlation, inventory, flows)


@dataclass
class PathSet:
    """Result of :func:`load_paths`: the path table, its NAT steps, the correlation, inventory and capture set used.
    ``paths``, ``nat`` and ``hops`` may be given as functions making them (made on first read)."""

    paths: pd.DataFrame = _MadeOnRead()
    nat: pd.DataFrame = _MadeOnRead()
    correlation: object
    inventory: Inventory | None
    captures: object = None  # the CaptureSet (with ``inference`` when points were inferred from plain files)
    hops: pd.DataFrame | None = _MadeOnRead(None)  # the hops in causal order with ``connection`` and ``direction`` (paths_detail's)
    network: dict | None = None  # Inventory.pod_network of all hops, when ``correlation.hops`` holds only some (streamed)
    streamed: dict | None = None  # how a bounded run was cut (paths_stream): windows, carried journeys, buckets
    shown_nat: pd.DataFrame | None = field(default=None, repr=False)
    """The NAT rows of the representative journeys only (what the terminal shows), when ``nat`` is made on first read."""
    dnat_connections: frozenset | None = _MadeOnRead(None)
    """The connections with a DNAT step (:func:`dnat_connections`), when known without ``nat`` (made on first read)."""
    spilled: object = field(default=None, repr=False)
    """A streamed run's output on disk, a bucket of connections a file (:class:`pcaptools.k8s.paths_stream.PathParts`):
    what :meth:`parts` reads, and ``paths``, ``nat`` and ``correlation.hops`` when read whole."""

    def __getstate__(self) -> dict:
        """Pickled with ``paths``, ``nat``, ``hops`` and ``dnat_connections`` made (a function making them is not
        picklable), the spilled files left out (read whole)."""
        self.paths, self.nat, self.hops, self.dnat_connections  # noqa: B018 - reading makes them
        if self.correlation is not None:
            self.correlation.hops  # noqa: B018
        return {**self.__dict__, "spilled": None}

    @property
    def n_connections(self) -> int:
        """Connections, counted without reading a spilled path table."""
        return self.spilled.connections if self.spilled is not None else len(self.paths)

    def parts(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
        """(path rows, NAT rows holding at least their representative journeys', hops of those journeys) of
        consecutive connections in order: a streamed run's buckets read back one at a time, else the whole tables."""
        if self.spilled is not None:
            yield from self.spilled.parts()
            return
        hops = self.correlation.hops if self.correlation is not None else None
        yield self.paths, (self.shown_nat if self.shown_nat is not None else self.nat), hops

    def close(self) -> None:
        """Remove a streamed run's spilled output (:attr:`spilled`), once it has been printed or read whole."""
        if self.spilled is not None:
            self.spilled.close()

    def route_groups(self) -> pd.DataFrame:
        """:func:`~pcaptools.k8s.groups.route_groups` of the path table (a spilled one read a bucket at a time)."""
        if self.spilled is not None:
            return self.spilled.route_groups()
        from pcaptools.k8s.groups import route_groups

        return route_groups(self.paths, self.shown_nat if self.shown_nat is not None else self.nat)

    def select(self, connections: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        """(path rows of ``connections`` in that order, NAT rows holding their journeys', hops holding their
        representative journeys'): what a grouped listing shows of the routes' first connections."""
        if self.spilled is not None:
            return self.spilled.select(connections)
        df, (_, nat, hops) = self.paths, next(self.parts())
        return df.iloc[pd.Index(df["connection"]).get_indexer(connections)], nat, hops

    @property
    def skipped_files(self) -> list[dict]:
        """Capture files found by walking an input directory that could not be read at all, left out (also notes)."""
        return list(getattr(self.captures, "skipped_files", None) or getattr(self.correlation, "skipped_files", None) or [])

    def detail(self) -> _Detail:
        """What :func:`paths_detail` would compute again from the correlation (for :func:`~pcaptools.k8s.diagnose.diagnose`):
        ``paths``, ``nat``, ``hops`` and ``dnat_connections``, each read from here when read (a diagnosis needs the NAT
        steps of every journey only for the connections with a DNAT step, which are known without them)."""
        return _Detail(self)


class _Detail:
    """:meth:`PathSet.detail`: its ``paths``, ``nat``, ``hops`` and ``dnat_connections``, read when read."""

    def __init__(self, ps: PathSet) -> None:
        self._ps = ps

    paths = property(lambda self: self._ps.paths)
    nat = property(lambda self: self._ps.nat)
    hops = property(lambda self: self._ps.hops)
    dnat_connections = property(lambda self: self._ps.dnat_connections)


def load_paths(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    links: Iterable[str] = (),
    inventory: Inventory | str | os.PathLike | dict | None = None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
) -> PathSet:
    """Captures (manifests, directories, plain files, ``--point`` specs) -> correlation -> paths with NAT,
    each connection joined with its client-side flow.

    ``inventory`` None uses the manifest's inventory or ``inventory.json`` beside the inputs, if any.
    Files a manifest names must lie inside its directory unless ``allow_outside``.
    """
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS, correlate
    from pcaptools.flows import REQUIRED as FLOW_INPUT
    from pcaptools.k8s.discover import find_inventory, load_captures
    from pcaptools.packets import read_packets

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    inv = as_inventory(inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside))
    frames: list[pd.DataFrame] = []  # the columns flows read, kept for the connections' flows, made once those are known

    def decode(path: str) -> pd.DataFrame:
        df = read_packets(path, payload_hash=True)
        if with_flows:
            frames.append(df.loc[:, [c for c in dict.fromkeys((*FLOW_INPUT, "file")) if c in df.columns]])
        return df

    cs = load_captures(srcs, points=points, inventory=inv, links=links, decoder=decode, allow_outside=allow_outside)
    corr = correlate(cs, window_ns=window_ns or DEFAULT_WINDOW_NS, reference=reference)
    side: dict = {"lazy_nat": True}
    p, nat = _build(corr, inv, (lambda wanted: _flows_of(frames, wanted)) if frames else None, side)
    return PathSet(paths=p, nat=side.get("nat_of", nat), correlation=corr, inventory=inv, captures=cs, hops=side["hops_of"],
                   shown_nat=nat, dnat_connections=side.get("dnat_of"))  # fmt: skip


def paths_detail(correlation, inventory=None) -> SimpleNamespace:
    """``paths``, ``nat`` and ``hops``: the hops in causal order with each sighting's ``connection`` and
    ``direction`` ('forward' client -> server, 'reverse' its replies, '' neither); what :mod:`pcaptools.k8s.diagnose` reads."""
    side: dict = {}
    p, nat = _build(correlation, inventory, None, side)
    return SimpleNamespace(paths=p, nat=nat, hops=side["hops_of"]())


_BUILD_COLUMNS = frozenset(("journey", "hop", "point", "node", "interface", "ts_ns", "ts_corrected_ns", "file", "src", "dst", "sport",
                            "dport", "proto", "tunnel", "vni", "outer_src", "outer_dst", "ttl", "tcp_flags"))  # fmt: skip
"""The hops columns :func:`_build` reads (with :func:`~pcaptools.k8s.nat.nat_table`'s): only these are reordered up front."""


def kept_hops(hops: pd.DataFrame) -> pd.DataFrame:
    """The rows a path is built from (a protocol and both addresses): a shallow copy when all are (PathSet.hops,
    made later from it, must not see the caller's table reordered or reassigned)."""
    keep = (hops["proto"].to_numpy() >= 0) & hops["src"].notna().to_numpy() & hops["dst"].notna().to_numpy()
    return hops.copy(deep=False) if keep.all() else hops.loc[keep].reset_index(drop=True)


class Journeys:
    """Kept hops (:func:`kept_hops`) of whole journeys in causal order, of the columns :func:`_build` reads, indexed by
    journey (:meth:`index`): what each step of a build reads, for the whole table in memory or for one piece of a
    bucket (:mod:`pcaptools.k8s.paths_stream` builds a connection larger than a bucket from pieces of whole journeys)."""

    def __init__(self, hk: pd.DataFrame, inv: Inventory | None) -> None:
        _check(hk)
        self.hk = hk
        self.order, hop = causal_order(hk, inv)
        built = hk.loc[:, [c for c in hk.columns if c in _BUILD_COLUMNS]]
        self.h = built.reset_index(drop=True) if self.order is None else take_rows(built, self.order)
        self.h["hop"] = hop
        self.codes = _address_codes(self.h)

    def ordered_hops(self) -> pd.DataFrame:
        """:func:`order_hops` of the kept hops: every column."""
        h, hk = self.h, self.hk
        rest = hk.loc[:, [c for c in hk.columns if c not in h.columns]]
        whole = pd.concat([h, rest.reset_index(drop=True) if self.order is None else take_rows(rest, self.order)], axis=1)
        whole = whole.loc[:, list(hk.columns)]
        whole.attrs = dict(hk.attrs)
        return whole

    def index(self, uj: np.ndarray) -> None:
        """Index the rows by the journeys ``uj`` (ascending; a journey may have no rows here): each row's journey
        index ``ji``, each journey's rows ``first_row:end_row``, whether it holds a SYN / SYN-ACK, its sightings."""
        h = self.h
        j = h["journey"].to_numpy(np.int64)  # h is sorted by journey, then causal order
        new = np.r_[True, j[1:] != j[:-1]]
        first_row = np.flatnonzero(new)
        if len(first_row) == len(uj) and np.array_equal(j[first_row], uj):  # every journey labelled has rows here
            self.ji = np.cumsum(new) - 1
            end_row = np.r_[first_row[1:], len(j)]
        else:
            self.ji = np.searchsorted(uj, j)
            first_row = np.searchsorted(j, uj, side="left")
            end_row = np.searchsorted(j, uj, side="right")
        self.first_row, self.end_row = first_row, end_row
        flags = h["tcp_flags"].to_numpy(np.int64)
        tcp = h["proto"].to_numpy() == 6
        self.syn = np.bincount(self.ji, tcp & ((flags & 0x12) == 0x02), minlength=len(uj)) > 0
        self.synack = np.bincount(self.ji, tcp & ((flags & 0x12) == 0x12), minlength=len(uj)) > 0
        self.nhops = end_row - first_row

    def directions(self, crow: np.ndarray, fa: np.ndarray, fb: np.ndarray, extra: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per journey, whether a row of it carries one of its connection's first packet's tuples / the reverse of one:
        rows ``fa[c]:fb[c]`` of this table, or with ``extra`` ((src, sport, dst, dport) codes of rows from elsewhere,
        in :attr:`codes`' vocabulary) of those rows appended after this table's. ``crow``: each row's connection."""
        s, d = self.codes[1:]
        sp, dp = self.h["sport"].to_numpy(np.int64), self.h["dport"].to_numpy(np.int64)
        if extra is not None:
            s, sp, d, dp = (np.concatenate([x, np.asarray(y, np.int64)]) for x, y in zip((s, sp, d, dp), extra, strict=True))
        return run_directions(self.ji, crow, s, sp, d, dp, fa, fb, len(self.first_row))


def _build(correlation, inventory, flows, side: dict | None = None,
           connections: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paths, NAT) of a hops table; ``connections``: (journey ids, connection id per journey) already labelled on a
    larger table (:mod:`pcaptools.k8s.paths_stream`), else :func:`_connections` of this one. ``side["hops_of"]``: a
    function making the hops in causal order with ``connection`` and ``direction`` (only a diagnosis reads them).
    The steps are :mod:`pcaptools.k8s.paths_stream`'s for a connection built in pieces, on one piece."""
    inv = as_inventory(inventory)
    hk = kept_hops(correlation if isinstance(correlation, pd.DataFrame) else correlation.hops)
    if not len(hk):
        h = order_hops(hk, inv)
        empty = _empty()
        if side is not None:
            side["hops_of"] = lambda: h.assign(connection=np.zeros(0, np.int64), direction=np.zeros(0, object))
        return empty, nat_table(h, inv, ordered=True)
    # order_hops' table, of the columns read here only (the rest, ~40% of a row, taken in that order when read)
    tab, (uj, conn), t = _ordered_and_labelled(hk, inv, connections)
    h, codes = tab.h, tab.codes
    nconn = int(conn.max()) + 1
    tab.index(uj)
    first_row, end_row, ji = tab.first_row, tab.end_row, tab.ji
    t = _journey_times(h, ji, conn, len(uj)) if t is None else t
    fwd_j = forward_journeys(conn, tab.syn, tab.nhops, t, nconn)
    if callable(flows) and len(h) >= PARALLEL_ROWS:  # the client-side flows read on a second thread from here on
        a = first_row[fwd_j]  # each connection's first packet, as path_rows reads its tuple
        wanted = _client_tuples(_strings(h["file"], a), h["proto"].to_numpy()[a], _strings(h["src"], a),
                                h["sport"].to_numpy()[a], _strings(h["dst"], a), h["dport"].to_numpy()[a])  # fmt: skip
        pool = ThreadPoolExecutor(1)
        flows = pool.submit(flows, wanted)
        pool.shutdown(wait=False)  # the thread ends with the flows; _with_flows waits for them
    # direction of every journey: does it carry one of the first packet's tuples, or its reverse?
    crow = conn[ji]
    has_fwd = fwd_j >= 0
    fa = np.where(has_fwd, first_row[np.maximum(fwd_j, 0)], 0)
    fb = np.where(has_fwd, end_row[np.maximum(fwd_j, 0)], 0)
    fwd, rev = tab.directions(crow, fa, fb)
    reply = rev & ~fwd
    if side is not None:  # made when read: the direction strings cost ~10-40 ms on 792k sightings
        side["hops_of"] = lambda: tab.ordered_hops().assign(connection=crow, direction=directions_of(fwd, reply, ji))
    rep_j = reply_journeys(conn, reply, tab.synack, tab.nhops, t, nconn)
    replies = pd.Series(reply, index=uj)
    if side is not None:
        side["dnat_of"] = lambda: dnat_connections(h, codes[2], replies, uj, conn)

    def nat_of(rows: np.ndarray | None = None) -> pd.DataFrame:  # of every journey, or of those whose rows are given
        nt = nat_table(h, inv, reply=replies, ordered=True, codes=codes) if rows is None else nat_table(take_rows(h, rows), inv, reply=replies, ordered=True)
        nt["connection"] = conn[np.searchsorted(uj, nt["journey"].to_numpy(np.int64))]
        return nt

    rep_js = np.concatenate([fwd_j[fwd_j >= 0], rep_j[rep_j >= 0]])
    if side is not None and side.get("lazy_nat"):  # a journey's NAT rows read its rows only: the shown ones now, all when read
        nat = nat_of(_rows_of(first_row, end_row, rep_js)[0])
        side["nat_of"] = nat_of
    else:
        nat = nat_of()
    return path_rows(tab, uj, fwd_j, rep_j, np.bincount(conn, minlength=nconn), nat, inv, flows), nat


PARALLEL_ROWS = 1 << 17
"""Kept hops rows from which :func:`_build` uses a second thread: it labels the connections while the journeys are put in
causal order, and reads the connections' client-side flows while their texts are built (each side mostly compiled
kernels and numpy passes, which release the GIL). 1M-packet set in process: 1.05 s wall with the other core free against
~1.45 s on one thread; with it busy, no gain and ~0.15 CPU s more (a second address coding, the threads' switching)."""


def _ordered_and_labelled(hk: pd.DataFrame, inv: Inventory | None, connections: tuple[np.ndarray, np.ndarray] | None,
                          ) -> tuple[Journeys, tuple[np.ndarray, np.ndarray], np.ndarray | None]:  # fmt: skip
    """(the :class:`Journeys` of the kept hops ``hk``, (journey ids, connection per journey), :func:`_journey_times` or
    None): ``connections`` when given, else :func:`_connections`. Both it and the journey times read a journey's rows
    the same in any order: for a table of :data:`PARALLEL_ROWS` or more they are taken from ``hk`` on a second thread
    while the journeys are put in causal order."""
    if connections is not None or len(hk) < PARALLEL_ROWS:
        tab = Journeys(hk, inv)
        return tab, (_connections(tab.h, tab.codes[1:]) if connections is None else connections), None

    def labelled() -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
        uj, conn = _connections(hk)
        if not isinstance(hk["node"].dtype, pd.CategoricalDtype):  # node codes by first appearance: in causal order
            return (uj, conn), None
        ji = journey_index(hk["journey"].to_numpy(np.int64))[1]  # (its journeys: uj)
        return (uj, conn), _journey_times(hk, ji, conn, len(uj))

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(labelled)
        tab = Journeys(hk, inv)
        return tab, *pending.result()


def dnat_connections(h: pd.DataFrame, d: np.ndarray, reply: pd.Series, uj: np.ndarray, conn: np.ndarray) -> frozenset[int]:
    """The connections (``conn`` of the journeys ``uj``) with a DNAT step in :func:`~pcaptools.k8s.nat.nat_table`'s
    table of the same hops (``h`` in causal order, ``d`` their destination codes, ``reply`` per journey): a change of
    destination address or port between consecutive sightings of a journey that is not a reply. Without the table:
    a diagnosis reads no other NAT row of most journeys."""
    j = h["journey"].to_numpy(np.int64)
    if len(j) < 2:
        return frozenset()
    ok = (h["proto"].to_numpy() >= 0) & h["src"].notna().to_numpy() & h["dst"].notna().to_numpy()
    jn = j[endpoint_changes(j, ok, d, h["dport"].to_numpy())]  # as nat_table finds its DNAT rows
    jn = jn[~_lookup(reply, jn)]
    return frozenset(np.unique(conn[np.searchsorted(uj, jn)]).tolist())


def directions_of(fwd: np.ndarray, reply: np.ndarray, ji: np.ndarray) -> pd.Categorical:
    """Each row's ``direction`` ('forward', 'reverse' or '') from its journey's (index ``ji``) direction flags."""
    return strings(["", "forward", "reverse"], np.where(fwd, 1, np.where(reply, 2, 0))[ji])


def path_rows(tab: Journeys, uj: np.ndarray, fwd_j: np.ndarray, rep_j: np.ndarray, journeys: np.ndarray,
              nat: pd.DataFrame, inv: Inventory | None, flows) -> pd.DataFrame:  # fmt: skip
    """The path table: a row per connection from its forward (``fwd_j``) and reply (``rep_j``) journeys (indices into
    ``uj``, whose rows ``tab`` holds, indexed by ``uj``), their NAT rows in ``nat`` and its ``journeys`` count. Built a
    column at a time over all connections: names once per distinct address, texts joined in Arrow from distinct parts."""
    rep_js = np.concatenate([fwd_j[fwd_j >= 0], rep_j[rep_j >= 0]])
    rows, first_row, end_row = _rows_of(tab.first_row, tab.end_row, rep_js)  # the rows a path reads, and nothing else
    s = _Sightings(tab.h, rows)
    fwd = _Runs(first_row[fwd_j], end_row[fwd_j])
    has_rep = rep_j >= 0
    rev = _Runs(np.where(has_rep, first_row[rep_j], 0), np.where(has_rep, end_row[rep_j], 0))
    ends = _ends(s, fwd, inv)
    fnat, rnat = _nat_rows(nat, uj, fwd_j, forward=True), _nat_rows(nat, uj, rep_j, forward=False)
    tc, a, last = s.num["ts_corrected_ns"], fwd.start, fwd.end - 1
    out = pd.DataFrame({
        "connection": np.arange(fwd.n, dtype=np.int64), **_endpoint_columns(s, fwd, ends, inv),
        **_service_columns(nat, fnat, ends, inv), **_text_columns(s, fwd, rev, nat, fnat, rnat, ends, inv),
        "first_ts_ns": tc[a].astype(np.int64), "latency_ns": np.where(fwd.end - a > 1, tc[last] - tc[a], -1).astype(np.int64),
        "forward_journey": uj[fwd_j].astype(np.int64), "reply_journey": np.where(has_rep, uj[rep_j], -1).astype(np.int64),
        "journeys": np.asarray(journeys, np.int64),
    })  # fmt: skip
    out = _with_flows(out, flows)
    out = _typed(out)
    return validate(out, PATH_COLUMNS, table="paths")


class _Sightings:
    """The representative journeys' rows (``rows`` of the hops ``h``): each text column as codes into its distinct
    strings ('' where missing), the numbers as arrays."""

    def __init__(self, h: pd.DataFrame, rows: np.ndarray) -> None:
        self.codes = {c: _codes(h[c], rows) for c in ("point", "node", "interface", "src", "dst", "tunnel", "outer_src", "outer_dst", "file")}
        self.num = {c: h[c].to_numpy()[rows] for c in ("sport", "dport", "vni", "ts_corrected_ns", "proto")}

    def text(self, col: str, at: np.ndarray) -> np.ndarray:
        """The strings of column ``col`` at positions ``at``, as an object array."""
        codes, names = self.codes[col]
        return names[codes[at]]

    def arrow(self, col: str, at: np.ndarray):  # noqa: ANN201 - an Arrow string array
        """The strings of column ``col`` at positions ``at``, as an Arrow array."""
        codes, names = self.codes[col]
        return _arrow(names).take(codes[at])

    def coded(self, col: str, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes, names) of column ``col`` at positions ``at``: a column for :func:`_each`."""
        codes, names = self.codes[col]
        return codes[at], names


def _codes(col: pd.Series, rows: np.ndarray | None = None, missing: str | None = "") -> tuple[np.ndarray, np.ndarray]:
    """(codes, names) of a category or string column (at ``rows``): ``names[codes]`` is ``str`` of each value, ``missing``
    where it is missing, as an object array; each distinct string made once."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, names = category_codes(col)
        codes = codes if rows is None else codes[rows]
    else:
        codes, uniq = pd.factorize(col if rows is None else col.iloc[rows])
        names = [str(u) for u in uniq]
    return np.where(codes >= 0, codes, len(names)), np.array([*names, missing], object)


class _Runs:
    """Runs of sightings ``start[c]:end[c]``, one per connection, flattened in connection order: each one's position
    ``pos``, connection ``group`` and place in its run ``k``."""

    def __init__(self, start: np.ndarray, end: np.ndarray) -> None:
        self.start, self.end = start, end
        n = end - start
        at = np.arange(int(n.sum()))
        self.group = np.repeat(np.arange(len(n)), n)
        self.k = at - (np.cumsum(n) - n)[self.group]
        self.pos = start[self.group] + self.k
        self.n = len(n)


def _distinct(cols: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(an element of each distinct tuple of the ``cols``' values, each element's distinct tuple); a column is an array
    or a (codes, names) pair, whose values are ``names[codes]``."""
    key = np.zeros(len(cols[0][0] if isinstance(cols[0], tuple) else cols[0]), np.int64)
    for c in cols:
        codes, uniq = pd.factorize(c[0] if isinstance(c, tuple) else c, use_na_sentinel=False)
        key = pd.factorize(key * max(len(uniq), 1) + codes)[0]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _each(fn, *cols: np.ndarray | tuple[np.ndarray, np.ndarray], text: bool = False):  # noqa: ANN001, ANN202
    """``fn`` of each element's values of ``cols`` (:func:`_distinct`'s columns), called once per distinct tuple of
    them: an object array, or with ``text`` an Arrow string array."""
    first, inverse = _distinct(cols)
    values = [(c[1][c[0][first]] if isinstance(c, tuple) else c[first]).tolist() for c in cols]
    made = [fn(*v) for v in zip(*values, strict=True)]
    if text:
        return _arrow(made).take(inverse)
    return np.fromiter(made, object, len(made))[inverse]


def _arrow(values) -> object:  # noqa: ANN001 - a list or array of strings
    """An Arrow string array of ``values``."""
    import pyarrow as pa

    return pa.array(values, pa.string())


def _concat(*parts):  # noqa: ANN002, ANN202 - Arrow string arrays and str
    """The element-wise concatenation of Arrow string arrays (a str: the same in every element)."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*parts, "")


def _joined(texts, group: np.ndarray, n: int, sep: str):  # noqa: ANN001, ANN202 - an Arrow string array
    """Per group 0..``n``-1, ``sep.join`` of its ``texts`` (an Arrow string array in group order, ``group`` ascending),
    '' for a group without any: an Arrow string array, joined in one call, not one per group."""
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(group, minlength=n), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), texts), sep)


def _or_none(values: np.ndarray) -> np.ndarray:
    """``values`` with None for ''."""
    return np.where(values == "", None, values)


def _ends(s: _Sightings, fwd: _Runs, inv: Inventory | None) -> dict[str, np.ndarray]:
    """The client (``ck``, ``cname``, ``cnode``) and backend (``bk``, ``bname``, ``bnode``, ``backend_addr``) of each
    connection: the first packet's source at its first sighting and destination at its last, named from the inventory
    (a node address as its hostNetwork pod; NodeLocal DNSCache's address as the listener of the node it reached)."""
    a, last = fwd.start, fwd.end - 1
    ck, cname, cnode = _named(inv, *s.coded("src", a))
    cname = np.where(ck == "node", cnode, cname)
    bk, bname, bnode = _named(inv, *s.coded("dst", last))
    proto = s.num["proto"][a]
    if inv is not None:  # a node address may be a hostNetwork pod: the server by its port, the client if the node's only one
        _host_network(bk, bname, lambda *v: inv.host_network_pod(*v), bnode, s.num["dport"][last], proto)
        _host_network(ck, cname, lambda *v: inv.host_network_pod(*v, only_one=True), cnode, s.num["sport"][a], proto)
    backend_addr = s.text("dst", last)
    m = np.flatnonzero(bk == "external") if inv is not None else np.zeros(0, np.int64)
    if len(m):  # an address every node binds locally (NodeLocal DNSCache 169.254.20.10): the listener of the node it reached
        seen = s.text("node", last[m])
        lp = _each(inv.node_local, s.coded("dst", last[m]), s.coded("node", last[m]))
        hit = lp != None  # noqa: E711 - elementwise
        bk[m[hit]], bname[m[hit]], bnode[m[hit]] = "pod", lp[hit], seen[hit]
    return {"ck": ck, "cname": cname, "cnode": cnode, "bk": bk, "bname": bname, "bnode": bnode, "backend_addr": backend_addr}


def _endpoint_columns(s: _Sightings, fwd: _Runs, ends: dict, inv: Inventory | None) -> dict[str, np.ndarray]:
    """The client, server and backend columns (names, kinds, nodes, addresses, ports), ``proto``, ``cross_node``,
    ``client_ip_preserved`` and ``_file`` (the first packet's capture file, to join its flow)."""
    a, last = fwd.start, fwd.end - 1
    ck, bk, cnode, bnode = ends["ck"], ends["bk"], ends["cnode"], ends["bnode"]
    return {
        "proto": s.num["proto"][a].astype(np.int64), "client": ends["cname"], "client_kind": ck, "client_node": _or_none(cnode),
        "client_addr": s.text("src", a), "client_port": s.num["sport"][a].astype(np.int64),
        "server_addr": s.text("dst", a), "server_port": s.num["dport"][a].astype(np.int64),
        "backend": np.where(bk != "node", ends["bname"], bnode), "backend_kind": bk, "backend_node": _or_none(bnode),
        "backend_addr": ends["backend_addr"], "backend_port": s.num["dport"][last].astype(np.int64),
        "cross_node": (cnode != "") & (bnode != "") & (cnode != bnode), "client_ip_preserved": _preserved(s, fwd, ends, inv),
        "_file": s.text("file", a),
    }  # fmt: skip


def _preserved(s: _Sightings, fwd: _Runs, ends: dict, inv: Inventory | None) -> np.ndarray:
    """Whether the client IP was preserved ('yes'/'no'), judged where the first packet was last seen if that is the
    backend's place ('unknown' otherwise)."""
    a, last = fwd.start, fwd.end - 1
    node = s.text("node", last)
    bk, bnode = ends["bk"], ends["bnode"]
    known = np.zeros(len(node), bool) if inv is None else np.isin(node, list(inv.nodes))
    at_backend = ((bk == "pod") & (node == bnode)) | (((bk == "external") | (bk == "node")) & (~known | (node == bnode)))
    src = s.codes["src"][0]
    return np.where(at_backend, np.where(src[last] == src[a], "yes", "no"), "unknown")


def _named(inv: Inventory | None, codes: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind, name, node) object arrays of the addresses ``names[codes]``, each distinct address named once."""
    k, n, node = (np.empty(len(names), object) for _ in range(3))
    for i in np.unique(codes).tolist():
        k[i], n[i], node[i] = _name(inv, names[i])
    return k[codes], n[codes], node[codes]


def _host_network(kind: np.ndarray, name: np.ndarray, pod_of, node: np.ndarray, port: np.ndarray, proto: np.ndarray) -> None:  # noqa: ANN001
    """Rename in place the node addresses (``kind`` 'node') that ``pod_of(node, port, proto)`` names a hostNetwork pod."""
    m = np.flatnonzero(kind == "node")
    if len(m):
        hp = _each(pod_of, node[m], port[m], proto[m])
        hit = hp != None  # noqa: E711 - elementwise
        kind[m[hit]], name[m[hit]] = "pod", hp[hit]


def _name(inv: Inventory | None, addr: str) -> tuple[str, str, str]:
    if inv is None:
        return ("external", addr, "")
    k, n, node = inv.entity(addr)
    return (k, addr if k == "external" else n, node)


def _nat_rows(nat: pd.DataFrame, uj: np.ndarray, js: np.ndarray, *, forward: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``nat``, connection of each) of each connection's journey ``js[c]`` (-1: none), ordered by connection then
    step; with ``forward``, its translations that are not replies only."""
    j = nat["journey"].to_numpy(np.int64)
    owner = np.full(len(uj) + 1, -1, np.int64)
    owner[js[js >= 0]] = np.flatnonzero(js >= 0)
    ji = np.searchsorted(uj, j)
    c = np.where(uj[np.minimum(ji, len(uj) - 1)] == j, owner[ji], -1)
    keep = (c >= 0) & ~nat["reply"].to_numpy(bool) if forward else c >= 0
    idx = np.flatnonzero(keep)
    o = np.lexsort((nat["step"].to_numpy()[idx], c[idx]))
    return idx[o], c[idx][o]


_VIA = ("loadbalancer", "nodeport", "clusterip")


def _service_columns(nat: pd.DataFrame, fnat: tuple[np.ndarray, np.ndarray], ends: dict, inv: Inventory | None) -> dict[str, np.ndarray]:
    """``kind``, ``service``, ``service_type`` and ``traffic_policy`` of each connection from its forward NAT rows
    ``fnat``: a load balancer's (its traffic policy), else a node port's or cluster IP's, the first service named; without
    any, from its ends (pod-direct, egress, external)."""
    idx, c = fnat
    n = len(ends["ck"])
    kinds = _codes(nat["nat_kind"], idx, "None")
    kinds = kinds[1][kinds[0]]
    svc = _codes(nat["service"], idx, None)
    svc = svc[1][svc[0]]
    named = np.isin(kinds, _VIA) & (svc != None)  # noqa: E711 - elementwise
    first_svc, lb_svc = np.full(n, None, object), np.full(n, None, object)
    for to, m in ((first_svc, named), (lb_svc, kinds == "loadbalancer")):
        cc, at = np.unique(c[m], return_index=True)  # rows come by connection, then step: the first of each
        to[cc] = svc[m][at]
    has = [np.bincount(c[kinds == v], minlength=n) > 0 for v in _VIA]
    via = _each(lambda *v: _via(inv, *v), first_svc, lb_svc, *has)
    cols = {name: np.array([v[i] for v in via], object) for i, name in enumerate(("kind", "service", "service_type", "traffic_policy"))}
    ck, bk = ends["ck"], ends["bk"]
    by_ends = np.where(bk == "pod", "pod-direct", np.where((ck == "pod") & (bk == "external"), "egress", "external"))
    cols["kind"] = np.where(cols["kind"] != None, cols["kind"], by_ends)  # noqa: E711 - elementwise
    return cols


def _via(inv: Inventory | None, svc: str | None, lb_svc: str | None, lb: bool, nodeport: bool, clusterip: bool) -> tuple:
    """(kind or None, service, its type, its traffic policy) of a connection whose forward NAT steps name ``svc`` first
    and ``lb_svc`` first as a load balancer, with a load balancer / node port / cluster IP step."""
    service = inv.services.get(svc) if (inv is not None and svc) else None
    kind = "nodeport" if nodeport else "clusterip" if clusterip else None
    if lb:
        pol = inv.services[lb_svc].external_traffic_policy if inv is not None and lb_svc in inv.services else "Cluster"
        kind = "loadbalancer-local" if pol == "Local" else "loadbalancer-cluster"
        service = inv.services.get(lb_svc) if inv is not None else None
    if service:
        return kind, service.name, service.type, service.external_traffic_policy or None
    return kind, svc or None, None, None


def _text_columns(s: _Sightings, fwd: _Runs, rev: _Runs, nat: pd.DataFrame, fnat: tuple, rnat: tuple, ends: dict,
                  inv: Inventory | None) -> dict:  # fmt: skip
    """The text columns of each connection (:func:`_texts`, ``encap``) and ``encapsulated``."""
    encap, encapsulated = _encapsulation(s, fwd, inv)
    texts = {k: arrow_strings(v) for k, v in {**_texts(s, fwd, rev, nat, fnat, rnat, ends), "encap": encap}.items()}
    return {**texts, "encapsulated": encapsulated}


def _texts(s: _Sightings, fwd: _Runs, rev: _Runs, nat: pd.DataFrame, fnat: tuple, rnat: tuple, ends: dict) -> dict:
    """The text columns of each connection as Arrow arrays: its first packet's and first reply's points, hop
    latencies, NAT steps (forward, reply) and route (client, each sighting with the NAT steps that led to it, backend)."""
    import pyarrow as pa

    n = fwd.n
    point = s.arrow("point", fwd.pos)
    tc = s.num["ts_corrected_ns"]
    hop = np.flatnonzero(fwd.k > 0)
    latency = _concat(point.take(hop - 1), " → ", point.take(hop), " ", _each(fmt_ns, tc[fwd.pos[hop]] - tc[fwd.pos[hop] - 1], text=True))
    ftext = _nat_texts(nat, fnat[0])
    at, step = _nat_places(s, fwd, nat, fnat)  # each forward NAT step (index into fnat) before the sighting it led to
    o = np.lexsort((step, fwd.k[at], fwd.group[at]))
    at, step = at[o], step[o]
    steps = ftext.take(step)
    label = lambda name, node: name + (f" ({node})" if node and node != name else "")  # noqa: E731
    parts = [_each(label, ends["cname"], ends["cnode"], text=True), _sighting_texts(s, fwd.pos), _concat("⟨", steps, "⟩"),
             _each(label, ends["bname"], ends["bnode"], text=True)]  # fmt: skip
    # the route's parts in order: per connection the client (slot -1), before its k-th sighting (slot 2k + 1) the NAT
    # steps that led to it (slot 2k, in step order), the backend last
    group = np.concatenate([np.arange(n), fwd.group, fwd.group[at], np.arange(n)])
    slot = np.concatenate([np.full(n, -1), 2 * fwd.k + 1, 2 * fwd.k[at], 2 * (fwd.end - fwd.start)])
    o = np.lexsort((np.concatenate([np.zeros(n + len(fwd.pos), np.int64), step, np.zeros(n, np.int64)]), slot, group))
    return {
        "forward_points": _joined(point, fwd.group, n, " → "),
        "reverse_points": _joined(s.arrow("point", rev.pos), rev.group, n, " → "),
        "hop_latency": _joined(latency, fwd.group[hop], n, "; "),
        "nat": _joined(steps, fwd.group[at], n, "; "),
        "nat_reply": _joined(_nat_texts(nat, rnat[0]), rnat[1], n, "; "),
        "route": _joined(pa.concat_arrays(parts).take(o), group[o], n, " → "),
    }


def _nat_places(s: _Sightings, fwd: _Runs, nat: pd.DataFrame, fnat: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (sighting of a first packet as an index into ``fwd``'s rows, forward NAT step as an index into ``fnat``)
    where the step's 'after' sighting (point, corrected time) is that sighting of its connection."""
    idx, c = fnat
    codes, names = s.codes["point"]
    tp, tp_names = _codes(nat["to_point"], idx, "None")
    tp = np.append(pd.Index(names[:-1]).get_indexer(tp_names[:-1]), -1)[tp]  # in the sightings' codes (-1: none has it)
    tc = s.num["ts_corrected_ns"]
    left = pd.DataFrame({"c": fwd.group, "p": codes[fwd.pos], "t": tc[fwd.pos], "at": np.arange(len(fwd.pos))})
    right = pd.DataFrame({"c": c, "p": tp, "t": nat["ts_corrected_ns"].to_numpy(np.int64)[idx], "step": np.arange(len(idx))})
    m = left.merge(right, on=["c", "p", "t"])
    return m["at"].to_numpy(np.int64), m["step"].to_numpy(np.int64)


def _sighting_texts(s: _Sightings, pos: np.ndarray):  # noqa: ANN202 - an Arrow string array
    """'[interface@node vxlan vni 4096 outer_src→outer_dst]' of each sighting ``pos`` (its tunnel when it has one)."""

    def text(interface: str, node: str, tunnel: str, vni: int, src: str, dst: str) -> str:
        enc = f" {tunnel}{f' vni {vni}' if vni >= 0 else ''} {src}→{dst}" if tunnel else ""
        return f"[{interface}@{node}{enc}]"

    return _each(text, *(s.coded(c, pos) for c in ("interface", "node", "tunnel")), s.num["vni"][pos],
                 *(s.coded(c, pos) for c in ("outer_src", "outer_dst")), text=True)  # fmt: skip


def _nat_texts(nat: pd.DataFrame, idx: np.ndarray):  # noqa: ANN202 - an Arrow string array
    """The NAT rows ``idx`` as text: 'DNAT 10.96.0.10:80→10.244.1.5:8080 @node-1 (clusterip default/web)'."""

    def col(name: str, missing: str | None = "None") -> tuple[np.ndarray, np.ndarray]:
        return _codes(nat[name], idx, missing)

    what = _each(lambda k, svc: f"{k} {svc}" if isinstance(svc, str) else k, col("nat_kind"), col("service", None), text=True)
    where = _each(lambda node: f" @{node}" if isinstance(node, str) else "", col("node", None), text=True)
    before, after = (_endpoint_texts(*col(f"addr_{x}"), nat[f"port_{x}"].to_numpy()[idx]) for x in ("before", "after"))
    op = col("op")
    return _concat(_arrow(op[1]).take(op[0]), " ", before, "→", after, where, " (", what, ")")


def _endpoint_texts(codes: np.ndarray, names: np.ndarray, port: np.ndarray):  # noqa: ANN202 - an Arrow string array
    """:func:`~pcaptools.fmt.endpoint` of each (address ``names[codes]``, port): the address with its port, if any."""
    import pyarrow as pa
    import pyarrow.compute as pc

    addr = _arrow(names).take(codes)
    prefix = _arrow([f"[{a}]:" if ":" in a else f"{a}:" for a in names]).take(codes)
    return pc.if_else(pa.array(port < 0), addr, _concat(prefix, pc.cast(pa.array(port), pa.string())))


def _encapsulation(s: _Sightings, fwd: _Runs, inv: Inventory | None) -> tuple:
    """(encap text as an Arrow array, whether encapsulated) per connection: the first packet's distinct tunnels in order
    ('vxlan vni 4096 192.168.0.11→192.168.0.12 (node-1→node-2)'), else 'native' across two known nodes, else ''."""
    import pyarrow as pa

    tun, names = s.codes["tunnel"]
    rows = np.flatnonzero((names != "")[tun[fwd.pos]])
    at, g = fwd.pos[rows], fwd.group[rows]
    key = _distinct((*(s.coded(c, at) for c in ("tunnel", "outer_src", "outer_dst")), s.num["vni"][at]))[1]
    first = np.sort(np.unique(g * (int(key.max(initial=0)) + 1) + key, return_index=True)[1])  # each tunnel's first sighting
    at = at[first]
    node_ip = inv.node_addresses() if inv is not None else {}

    def text(t: str, src: str, dst: str, vni: int) -> str:
        ns, nd = node_ip.get(src, ""), node_ip.get(dst, "")
        between = f" ({ns or '?'}→{nd or '?'})" if (ns or nd) else ""
        return f"{t}{f' vni {vni}' if vni >= 0 else ''} {src}→{dst}{between}"

    encs = _each(text, *(s.coded(c, at) for c in ("tunnel", "outer_src", "outer_dst")), s.num["vni"][at], text=True)
    n_enc = np.bincount(g[first], minlength=fwd.n)
    node, node_names = s.codes["node"]
    k8s = np.ones(len(node_names), bool) if inv is None else np.isin(node_names, list(inv.nodes))
    seen = np.flatnonzero(k8s[node[fwd.pos]])
    pairs = np.unique(fwd.group[seen] * len(node_names) + node[fwd.pos[seen]])
    native = np.flatnonzero((n_enc == 0) & (np.bincount(pairs // len(node_names), minlength=fwd.n) >= 2))
    group = np.concatenate([g[first], native])
    o = np.argsort(group, kind="stable")
    texts = pa.concat_arrays([encs, _arrow(np.full(len(native), "native", object))]).take(o)
    return _joined(texts, group[o], fwd.n, "; "), n_enc > 0


_PORTED = (6, 17)
"""Protocols whose flows are told apart by ports (:func:`_flows_of` reads only the wanted ports' packets of them)."""


def _tuple_key(proto: np.ndarray, a: np.ndarray, ap: np.ndarray, b: np.ndarray, bp: np.ndarray, n: int) -> np.ndarray:
    """One integer per (protocol, unordered pair of (address code below ``n``, port)): equal for both directions of a
    5-tuple; exact when it fits 63 bits (fewer than ~2,800 addresses), else a 64-bit hash (:func:`combine`)."""
    e1 = np.asarray(a, np.int64) * 65538 + np.asarray(ap, np.int64) + 1
    e2 = np.asarray(b, np.int64) * 65538 + np.asarray(bp, np.int64) + 1
    return _pair_key(proto, np.minimum(e1, e2), np.maximum(e1, e2), (n + 1) * 65538)


def _pair_key(proto: np.ndarray, lo: np.ndarray, hi: np.ndarray, span: int) -> np.ndarray:
    """One integer per (protocol 0..255, ``lo``, ``hi``), endpoints ``code * 65538 + port + 1`` of address codes from -1
    and ports from -1 (so -65537 <= endpoint < ``span`` - 65538): exact when it fits 63 bits, else a 64-bit hash."""
    if 256 * span * span >= 1 << 63:
        return combine([np.asarray(proto, np.int64), lo, hi])
    return (np.asarray(proto, np.int64) * span + lo + 65538) * span + hi + 65538


def _member(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``np.isin(values, allowed)``: comparisons for a few ``allowed`` values, else a hash lookup (isin sorts them all)."""
    u = np.unique(allowed)
    if not len(u):
        return np.zeros(len(values), bool)
    if len(u) <= 4:  # one or two address pairs: comparisons, no lookup
        out = values == u[0]
        for x in u[1:]:
            out |= values == x
        return out
    return pd.Index(u).get_indexer(values) >= 0


def _address_pair_key(proto: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """One exact integer per (protocol, unordered pair of address codes below ``n``): fits 63 bits below ~190 million codes."""
    return (proto.astype(np.int64) * (n + 1) + np.minimum(a, b)) * (n + 1) + np.maximum(a, b)


def _flows_of(frames: list[pd.DataFrame], wanted: pd.DataFrame) -> pd.DataFrame | None:
    """Flows of the decoded packet tables ``frames`` for the connections in ``wanted`` (file, proto, orig_h, orig_p,
    resp_h, resp_p): only the packets of those (file, protocol, address pair), and for TCP and UDP only those of the
    wanted ports and IP fragments, go through :func:`pcaptools.flows.flows`, which makes the same flows of them as of
    the whole file for those connections (a flow's key holds its file, protocol, both addresses and ports, and a later
    IP fragment takes its ports from a first fragment between the same addresses); of their columns, only the key and
    those :func:`_with_flows` joins (:data:`_FLOW_JOINED`: ~30% of the flows' cost is in the others)."""
    from pcaptools.flows import concat_flows
    from pcaptools.flows import flows as flow_table

    parts = []
    for df in frames:
        files = category_codes(df["file"])[1] if "file" in df.columns else []
        w = wanted.loc[wanted["file"].isin(files)]
        if not len(w):
            continue
        names = pd.Index(sorted(set(w["orig_h"]) | set(w["resp_h"])), dtype=object)
        want = _address_pair_key(w["proto"].to_numpy(), names.get_indexer(w["orig_h"]), names.get_indexer(w["resp_h"]), len(names))
        s, d = codes_in(df["src"], names), codes_in(df["dst"], names)
        proto = df["proto"].to_numpy(np.int64)
        sel = (s >= 0) & (d >= 0) & _member(_address_pair_key(proto, s, d, len(names)), want)
        ported = w["proto"].isin(_PORTED).to_numpy()
        if ported.any() and "orig_p" in w.columns:  # TCP/UDP rows of those pairs: the wanted tuples' and fragments only
            wp = w.loc[ported]
            tuples = _tuple_key(wp["proto"].to_numpy(), names.get_indexer(wp["orig_h"]), wp["orig_p"].to_numpy(),
                                names.get_indexer(wp["resp_h"]), wp["resp_p"].to_numpy(), len(names))  # fmt: skip
            frag = (df["frag_offset"].to_numpy() > 0) | df["more_frags"].to_numpy(bool)
            rows = np.flatnonzero(sel & _member(proto, np.asarray(_PORTED)) & ~frag)  # not np.isin: ~5 ms a 200k rows
            k = _tuple_key(proto[rows], s[rows], df["sport"].to_numpy()[rows], d[rows], df["dport"].to_numpy()[rows], len(names))
            sel[rows[~_member(k, tuples)]] = False
        if sel.any():
            parts.append(flow_table(df.reset_index(drop=True) if sel.all() else take_rows(df, np.flatnonzero(sel)), columns=_FLOW_JOINED))
    return concat_flows(parts) if parts else None


_FLOW_JOINED = ("state", "orig_bytes", "resp_bytes", "handshake_ns", "retransmissions")
"""The client-side flow's columns :func:`_with_flows` joins to a path (:func:`_flows_of` computes only these and the key)."""


def _client_tuples(file, proto, orig_h, orig_p, resp_h, resp_p) -> pd.DataFrame:  # noqa: ANN001 - arrays or Series
    """The connections' client-side flow keys, as a function given as ``flows`` is handed them (:func:`_with_flows`)."""
    return pd.DataFrame({"file": pd.Series(file).astype(str), "proto": np.asarray(proto, np.int64),
                         "orig_h": pd.Series(orig_h).astype(str), "orig_p": np.asarray(orig_p, np.int64),
                         "resp_h": pd.Series(resp_h).astype(str), "resp_p": np.asarray(resp_p, np.int64)})  # fmt: skip


def _with_flows(out: pd.DataFrame, flows) -> pd.DataFrame:
    """Join each connection's client-side flow (first capture point's file, client tuple): state, bytes, handshake, retransmissions.
    ``flows``: a flow table, a function making one from the connections' (file, proto, orig_h, orig_p, resp_h, resp_p),
    or the Future of one already making it (:func:`_build`)."""
    if isinstance(flows, Future):
        flows = flows.result()
    elif callable(flows) and len(out):
        flows = flows(_client_tuples(out["_file"], out["proto"], out["client_addr"], out["client_port"], out["server_addr"],
                                     out["server_port"]))  # fmt: skip
    out = out.assign(flow_state=None, orig_bytes=-1, resp_bytes=-1, handshake_ns=-1, retransmissions=-1)
    if flows is None or callable(flows) or not len(flows) or not len(out):
        return out.drop(columns="_file")
    key = ["file", "proto", "orig_h", "orig_p", "resp_h", "resp_p"]
    f = flows.loc[:, key + [*_FLOW_JOINED, "first_ts_ns"]].copy()
    for k in ("file", "orig_h", "resp_h"):
        f[k] = f[k].astype(str)
    # the first flow of a key by time; of two at the same time (gen_set.py's 32k-connection set has 3 such keys, at
    # server-side points), the first in the flow table's order, as the streamed run's lookup keeps it (flows_bounded)
    f = f.sort_values("first_ts_ns", kind="stable").drop_duplicates(key, keep="first")
    left = pd.DataFrame({"file": out["_file"].astype(str), "proto": out["proto"].astype(f["proto"].dtype),
                         "orig_h": out["client_addr"].astype(str), "orig_p": out["client_port"].astype(f["orig_p"].dtype),
                         "resp_h": out["server_addr"].astype(str), "resp_p": out["server_port"].astype(f["resp_p"].dtype)})  # fmt: skip
    m = left.merge(f, on=key, how="left")
    out["flow_state"] = m["state"].astype(object).where(m["state"].notna(), None).to_numpy()
    for c in ("orig_bytes", "resp_bytes", "handshake_ns", "retransmissions"):
        out[c] = m[c].fillna(-1).astype(np.int64).to_numpy()
    return out.drop(columns="_file")


def _typed(out: pd.DataFrame) -> pd.DataFrame:
    """``out``'s PATH_COLUMNS in their order and dtypes, as a new table made at once (assigning the ~40 columns one
    at a time into ``out`` cost ~10 ms of pandas bookkeeping)."""
    vocab = {"kind": PATH_KINDS, "client_kind": ENTITY_KINDS, "backend_kind": ENTITY_KINDS, "client_ip_preserved": PRESERVED,
             "flow_state": FLOW_STATES}  # fmt: skip
    cols = {}
    for col in PATH_COLUMNS:
        v = out[col.name]
        if col.dtype == "category":
            v = pd.Categorical(v, categories=list(vocab[col.name])) if col.name in vocab else v.astype("category").array
        elif col.dtype == "str":
            v = v.astype("str").array
        elif v.dtype != col.dtype:  # astype costs ~0.3 ms a column even as a no-op
            v = v.astype(col.dtype).to_numpy()
        else:
            v = v.array if isinstance(v.dtype, pd.api.extensions.ExtensionDtype) else v.to_numpy()
        cols[col.name] = v
    return pd.DataFrame(cols, index=out.index, copy=False)


def _empty() -> pd.DataFrame:
    return _typed(pd.DataFrame({c.name: pd.Series([], dtype=object if c.dtype in ("category", "str") else c.dtype) for c in PATH_COLUMNS}))
