"""``pcaptools paths`` and ``pcaptools why`` within a memory budget: the path table of a capture set larger than
memory, identical to :func:`pcaptools.k8s.paths.load_paths`' (the in-memory run), and its diagnosis, identical to
:func:`pcaptools.k8s.diagnose.diagnose`'s (:func:`diagnose_bounded`: ``why``, text and ``--json``, and ``paths --json``).

When the captures fit the budget (the test :func:`pcaptools.correlate.stream.fits` makes for correlation)
this is :func:`load_paths` (and ``diagnose``). Otherwise, in a temporary directory:

1. **Correlate** in windows of corrected time (:func:`pcaptools.k8s.discover.correlate_inputs`): hops into a Parquet
   file. Every input ``correlate`` takes streams: a manifest, ``--point`` specs, plain files and directories (their
   points, roles and inference evidence from a bounded summary of their packets, :func:`~pcaptools.k8s.discover.infer_captures`)
   and a dataset (its stored points and evidence); the result's ``captures`` is that CaptureSet, without packets.
   For a diagnosis, a :class:`~pcaptools.k8s.diagnose.PacketEvidence` sees every packet table the correlation reads
   and every journey it emits: per point its capture span and Statistics Block counters, the ICMP errors (one row
   each) and which journeys they are, per TCP journey its sequence, acknowledgement and payload length.
2. **Label** (one pass over the hops file, a row group at a time, 9 of its columns): each journey's unordered
   5-tuples reduced to one row per (journey, tuple) with its earliest time and whether it holds a SYN / a SYN or
   SYN-ACK, which is all :func:`pcaptools.k8s.paths._connections` reads; that function labels the reduced table,
   so journey -> connection is the in-memory one. The same pass counts rows per (point, address) for the pod
   network's routing evidence.
3. **Spill** (a second pass): each hops row to the bucket of its connection, buckets being runs of consecutive
   connections holding at most ``bucket_rows`` rows (from the budget), one Parquet file each. Per bucket the
   existing ``_build`` runs with the precomputed connection ids; buckets in order give the paths in connection
   order. Client-side flows come from :func:`pcaptools.flow_stream.read_flows_bounded` of the same files. For a
   diagnosis each bucket's hops in causal order (``_build``'s, :data:`DETAIL_COLUMNS`) are written back and tallied
   (:class:`~pcaptools.k8s.diagnose.HopTallies`: where each address lives, which point follows which).
4. The hops of each connection's representative journeys (what the terminal shows) are read back in a last pass.
5. **Diagnose** (for ``why`` / ``paths --json``): with every bucket tallied, each bucket's hops are read back and given,
   with its paths and NAT steps, to the one :class:`~pcaptools.k8s.diagnose.Diagnoser` the in-memory ``diagnose``
   uses for the whole set as one group: every connection lies whole in one bucket, and what a connection's verdict
   reads beyond it (homes, next points, capture spans and drops, ICMP errors, TCP numbers) is the whole set's.

Memory: the correlation's (see :mod:`pcaptools.correlate.stream`), then the labels: one row per (journey, 5-tuple)
while they are computed (a journey through NAT has two tuples), about 100 bytes per journey kept (measured: 98 MiB
for 982,411 journeys), then one bucket at a time, about :data:`BUILD_ROW_COST` bytes a hops row while its paths are
built (its diagnosis takes less: its journeys as columns, about 30 numbers a journey and 3 a sighting,
:class:`~pcaptools.k8s.diagnose_journeys.JourneyTable`), plus the flow tables
(one row per flow), the path table and the NAT table (one row per NAT step, about 65 bytes; the buckets' tables are
joined as category codes, :func:`_concat`). A diagnosis keeps besides, per TCP journey, 32 bytes (journey, sequence,
acknowledgement, payload length) and, while the correlation runs, 32 bytes per TCP row read but not yet emitted (the
windows' rows); per capture point its span, row count and counters; one row per ICMP error; the tallies (a row per
(point, address) and per (point, destination, next point) seen); and its output: per connection one row (about 700
bytes as a Python dict), per loss one (about 1.2 KiB with its evidence text), per retransmission-timeline sighting
seven list entries (measured on gen_set.py's 20,000 packets). Limits: one connection with more sightings than a bucket
holds is built (and diagnosed) alone, whole; the whole diagnosis is held to be printed (``--json`` is one object).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.k8s.paths import PathSet, _build, _connections, _empty, as_inventory, load_paths
from pcaptools.process import release_freed_memory

if TYPE_CHECKING:
    from pcaptools.k8s.diagnose import Diagnosis

BUILD_ROW_COST = 1000
"""Bytes one hops row takes at the peak of building its bucket's paths (the bucket's table, its causal order, NAT table
and per-row arrays; measured 540 on gen_set.py's 79,223 sightings: 97 the table, 440 the build), with a margin."""

ROW_PEAK = 1500
"""Peak bytes per packet record of the in-memory ``paths`` run (correlation, flows, paths and their
inputs; 1.1-1.5 KiB measured per sighting on gen_set.py sets): what decides that a set is streamed."""

MIN_BUCKET_ROWS = 1 << 15
"""Fewest hops rows a bucket is given however small the budget (about 32 MiB at :data:`BUILD_ROW_COST`): each bucket
is read back, labelled, built and diagnosed on its own, and at 4,096 rows that fixed cost was most of a streamed
``paths`` run (146 buckets of the 792k-sighting benchmark set under 300 MiB, issue #11)."""

SPILL_SHARE = 0.25
"""Share of the budget the spill may hold before writing its buckets (fewer, larger row groups)."""

SPILL_ROW_BYTES = 400
"""Bytes a held hops row takes in Arrow (its ~30 columns, dictionary-encoded labels)."""

MAX_BUCKETS = 256
"""At most this many bucket files are written at once (open files); a set of more than this many budgets' rows takes
larger buckets than the budget."""

_LABEL_COLUMNS = ["journey", "proto", "src", "dst", "sport", "dport", "ts_corrected_ns", "tcp_flags", "point"]


def streams(sources: Sequence[str | os.PathLike], points: Sequence[str], memory: int, *, allow_outside: bool = False) -> bool:
    """Whether :func:`load_paths_bounded` would stream these inputs (a manifest, ``--point`` specs, plain files and
    directories, a dataset): their captures do not fit ``memory`` in one in-memory run (:data:`ROW_PEAK` a record)."""
    from pcaptools.correlate.stream import fits
    from pcaptools.k8s.discover import input_files

    return not fits(input_files(list(sources), list(points), allow_outside=allow_outside), memory, row_bytes=ROW_PEAK)


def load_paths_bounded(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    links: Iterable[str] = (),
    inventory=None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
    memory: int | None = None,
    window_rows: int | None = None,
    bucket_rows: int | None = None,
    hops_out: str | os.PathLike | None = None,
) -> PathSet:
    """:func:`load_paths` within ``memory`` bytes (default a quarter of the memory available): the same paths, NAT
    table and texts. ``window_rows`` / ``bucket_rows`` force streaming with correlation windows / path buckets of
    about that many rows (tests). The result's ``correlation.hops`` holds only the representative journeys' hops,
    ``network`` the pod network (:meth:`Inventory.pod_network`) and ``captures`` the inferred or stored points with
    their evidence but no packets (None for a manifest / ``--point`` set) when streamed. ``hops_out``: when streamed,
    the whole hops table is kept in this Parquet file (for callers that read every hop in a later pass: compare, report)."""
    return _bounded(sources, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                    with_flows=with_flows, allow_outside=allow_outside, memory=memory, window_rows=window_rows,
                    bucket_rows=bucket_rows, diagnosis=None, hops_out=hops_out)[0]  # fmt: skip


def diagnose_bounded(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    links: Iterable[str] = (),
    inventory=None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
    memory: int | None = None,
    window_rows: int | None = None,
    bucket_rows: int | None = None,
    iptables: list | None = None,
    capture_drops: dict[str, int] | None = None,
) -> tuple[PathSet, Diagnosis]:
    """:func:`load_paths_bounded` and the :func:`~pcaptools.k8s.diagnose.diagnose` of the same set within ``memory``
    bytes: (the PathSet, the Diagnosis), both the in-memory run's (``iptables``, ``capture_drops`` as for
    ``diagnose``). Streamed, the packets' evidence is gathered while the correlation reads them and the diagnosis
    runs a bucket of connections at a time (module doc)."""
    return _bounded(sources, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                    with_flows=with_flows, allow_outside=allow_outside, memory=memory, window_rows=window_rows,
                    bucket_rows=bucket_rows, diagnosis={"iptables": iptables, "capture_drops": capture_drops}, hops_out=None)  # fmt: skip


def _bounded(sources, *, points, links, inventory, window_ns, reference, with_flows, allow_outside, memory, window_rows,
             bucket_rows, diagnosis: dict | None, hops_out=None) -> tuple[PathSet, Diagnosis | None]:  # fmt: skip
    """The paths (and with ``diagnosis``, the options of :func:`diagnose`, the Diagnosis) within ``memory``."""
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS
    from pcaptools.correlate.budget import default_memory
    from pcaptools.k8s.discover import find_inventory

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    points = list(points)
    memory = default_memory() if memory is None else int(memory)
    forced = window_rows is not None or bucket_rows is not None
    if not forced and not streams(srcs, points, memory, allow_outside=allow_outside):
        ps = load_paths(srcs, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                        with_flows=with_flows, allow_outside=allow_outside)  # fmt: skip
        if diagnosis is None:
            return ps, None
        # only `paths --json` and `why` diagnose: `paths` does not import the diagnosis (~30 ms of a fresh process)
        from pcaptools.k8s.diagnose import diagnose

        return ps, diagnose(ps.captures, ps.correlation, ps.inventory, detail=ps.detail(), **diagnosis)
    inv = as_inventory(inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside))
    window_ns = window_ns or DEFAULT_WINDOW_NS
    if diagnosis is not None:
        from pcaptools.k8s.diagnose import PacketEvidence
    ev = PacketEvidence() if diagnosis is not None else None
    with tempfile.TemporaryDirectory(prefix="pcaptools-paths-") as tmp:
        hops_path = Path(hops_out) if hops_out is not None else Path(tmp) / "hops.parquet"
        corr, cs, files, stats = _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows,
                                            hops_path, ev)  # fmt: skip
        release_freed_memory()
        flows = _flows(files, memory) if with_flows else None
        release_freed_memory()
        ps, d = _paths_of_file(hops_path, corr, inv, flows, memory, bucket_rows, Path(tmp),
                               None if ev is None else (ev.finish(), diagnosis))  # fmt: skip
    ps.captures = cs  # its points and inference evidence (no packets when streamed)
    ps.streamed = {"windows": stats.windows if stats else None, "carried_journeys": stats.carried_journeys if stats else None,
                   "buckets": (ps.streamed or {}).get("buckets", 0)}  # fmt: skip
    return ps, d


def _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows, out, observer=None):
    """Streamed correlation into ``out``; (Correlation, the CaptureSet of inferred or stored points or None, the capture
    files in the order :func:`load_paths` decodes them, StreamStats or None). ``observer`` sees the packets read
    (:class:`pcaptools.k8s.diagnose.PacketEvidence`)."""
    from pcaptools.k8s.discover import _correlate_inputs, input_files

    corr, cs, stats = _correlate_inputs(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside,
                                        window_ns=window_ns, reference=reference, memory=memory, out=out,
                                        window_rows=window_rows, observer=observer)  # fmt: skip
    files = [e["file"] for e in input_files(srcs, points, allow_outside=allow_outside)]
    return corr, cs, list(dict.fromkeys(files)), stats


def _flows(files: list[str], memory: int) -> pd.DataFrame | None:
    """The client-side flow tables of ``files`` as load_paths concatenates them, each computed within ``memory``."""
    from pcaptools.flow_stream import read_flows_bounded
    from pcaptools.flows import concat_flows

    parts = [read_flows_bounded(f, memory=memory) for f in files]
    return concat_flows(parts) if parts else None


def _paths_of_file(hops_path: Path, corr, inv, flows, memory: int, bucket_rows: int | None, tmp: Path,
                   diagnosis: tuple | None = None) -> tuple[PathSet, Diagnosis | None]:  # fmt: skip
    """Label, spill and build (module doc) from a hops Parquet file; with ``diagnosis`` (the finished PacketEvidence
    and :func:`diagnose`'s options), diagnose the buckets too."""
    import pyarrow.parquet as pq

    from pcaptools.k8s.diagnose import Diagnoser, HopTallies

    if not hops_path.exists():  # defensive: the correlation writes the file even when nothing matched (0 rows)
        ps = PathSet(paths=_empty(), nat=_build(_empty_hops(), inv, None)[1], correlation=corr, inventory=inv,
                     network=inv.pod_network(_empty_hops()) if inv is not None else None)  # fmt: skip
        if diagnosis is None:
            return ps, None
        ev, opts = diagnosis
        dg = Diagnoser(inv, ev, HopTallies.of(_empty_hops()), opts["capture_drops"])
        return ps, dg.result(ps.paths, ps.nat, opts["iptables"])
    pf = pq.ParquetFile(hops_path)
    uj, conn, rows_j, pairs, point_rows = _label(pf)
    release_freed_memory()
    if bucket_rows is None:
        from pcaptools.correlate.stream import _rss

        bucket_rows = max(int((memory * 0.9 - _rss()) // BUILD_ROW_COST), MIN_BUCKET_ROWS, -(-int(rows_j.sum()) // MAX_BUCKETS))
    rows_c = np.bincount(conn, weights=rows_j, minlength=int(conn.max()) + 1 if len(conn) else 0).astype(np.int64)
    bucket_c = np.unique((np.cumsum(rows_c) - rows_c) // max(int(bucket_rows), 1), return_inverse=True)[1].reshape(-1)
    nb = int(bucket_c.max()) + 1 if len(bucket_c) else 0
    single = set()
    if inv is not None:
        from pcaptools.k8s.inventory import single_address_points

        single = single_address_points(pairs, point_rows)
    routing = _spill(pf, uj, bucket_c[conn], nb, tmp, inv, single, hold_rows=max(int(bucket_rows), int(memory * SPILL_SHARE // SPILL_ROW_BYTES)))
    path_parts, nat_parts, tallies = [], [], []
    first_c = np.searchsorted(bucket_c, np.arange(nb))  # first connection of each bucket (connections run in order)
    for b in range(nb):
        h = pd.read_parquet(tmp / f"bucket-{b}.parquet")
        mine = bucket_c[conn] == b
        bj, bc = uj[mine], conn[mine] - first_c[b]
        side: dict | None = {} if diagnosis is not None else None
        p, nat = _build(h, inv, flows, side, (bj, bc))
        del h
        if side is not None:  # the bucket's hops in causal order, for its diagnosis once every bucket is counted
            dh = side.pop("hops_of")()
            dh["connection"] += first_c[b]
            tallies.append(HopTallies.of(dh))
            dh.loc[:, list(DETAIL_COLUMNS)].to_parquet(tmp / f"detail-{b}.parquet")
            del dh
        release_freed_memory(collect=False)  # a bucket's tables hold no reference cycles; a full collection per bucket costs ~0.1 s
        p["connection"] += first_c[b]
        nat["connection"] += first_c[b]
        path_parts.append(p)
        nat_parts.append(nat)
    paths = _concat_paths(path_parts)
    nat = _concat(nat_parts).sort_values(["journey", "step"], kind="stable", ignore_index=True) if nat_parts else _build(_empty_hops(), inv, None)[1]
    del path_parts, nat_parts
    release_freed_memory(collect=False)  # the buckets' tables, before the diagnosis builds its own
    d = _diagnose_buckets(paths, nat, first_c, tallies, inv, tmp, *diagnosis) if diagnosis is not None else None
    wanted = np.concatenate([paths["forward_journey"].to_numpy(np.int64), paths["reply_journey"].to_numpy(np.int64)])
    corr.hops = _journeys_of(pf, wanted)
    network = None
    if inv is not None:
        from pcaptools.k8s.inventory import routing_verdict

        network = inv.pod_network(None)
        network["routing"], ev = routing_verdict(routing)
        network["evidence"].append(ev)
    return PathSet(paths=paths, nat=nat, correlation=corr, inventory=inv, network=network, streamed={"buckets": nb}), d


DETAIL_COLUMNS = ("journey", "connection", "direction", "point", "node", "ts_corrected_ns", "src", "dst", "sport", "dport",
                  "proto", "tunnel", "wirelen", "tcp_flags", "fingerprint")  # fmt: skip
"""Columns of a bucket's hops in causal order that its diagnosis reads (:class:`pcaptools.k8s.diagnose.Diagnoser`)."""


def _diagnose_buckets(paths: pd.DataFrame, nat: pd.DataFrame, first_c: np.ndarray, tallies: list, inv, tmp: Path,
                      ev, opts: dict) -> Diagnosis:  # fmt: skip
    """Pass 4: each bucket's hops (written by the build) diagnosed in connection order, with what every bucket's
    hops add up to (:class:`~pcaptools.k8s.diagnose.HopTallies`) and the packets' evidence."""
    from pcaptools.k8s.diagnose import Diagnoser, HopTallies

    dg = Diagnoser(inv, ev, HopTallies.merged(tallies), opts["capture_drops"])
    pc = paths["connection"].to_numpy(np.int64)
    nc = nat["connection"].to_numpy(np.int64)
    by_c = np.argsort(nc, kind="stable")
    ends = np.r_[first_c[1:], np.iinfo(np.int64).max] if len(first_c) else first_c
    for b, (lo, hi) in enumerate(zip(first_c.tolist(), ends.tolist(), strict=True)):
        dh = pd.read_parquet(tmp / f"detail-{b}.parquet")
        rows = by_c[np.searchsorted(nc[by_c], lo):np.searchsorted(nc[by_c], hi)]
        dg.add(dh, paths.iloc[np.searchsorted(pc, lo):np.searchsorted(pc, hi)], nat.iloc[np.sort(rows)])
        del dh
        release_freed_memory(collect=False)
    return dg.result(paths, nat, opts["iptables"])


def _empty_hops() -> pd.DataFrame:
    from pcaptools.schema import HOPS_COLUMNS, empty

    return empty(HOPS_COLUMNS)


def _label(pf) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Series, pd.Series]:
    """Pass 1: (journey ids, connection id per journey, hops rows per journey) as :func:`_connections` gives them on
    the whole table, and the (point, address) / point row counts of the routing evidence."""
    from pcaptools.k8s.inventory import point_addresses

    addr: dict[str, int] = {}
    parts, pair_parts, point_parts = [], [], []
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=_LABEL_COLUMNS).to_pandas()
        pairs, rows = point_addresses(t)
        pair_parts.append(pairs)
        point_parts.append(rows)
        keep = (t["proto"].to_numpy() >= 0) & t["src"].notna().to_numpy() & t["dst"].notna().to_numpy()  # as _build
        t = t.loc[keep]
        e = [_addr_ids(t[c], addr) * 65538 + t[p].to_numpy(np.int64) + 1 for c, p in (("src", "sport"), ("dst", "dport"))]
        flags = t["tcp_flags"].to_numpy(np.int64)
        tcp = (t["proto"].to_numpy() == 6) & (flags >= 0)
        parts.append(pd.DataFrame({
            "j": t["journey"].to_numpy(np.int64), "proto": t["proto"].to_numpy(np.int64),
            "lo": np.minimum(*e), "hi": np.maximum(*e), "t": t["ts_corrected_ns"].to_numpy(np.int64),
            "syn": tcp & ((flags & 0x12) == 0x02), "hs": tcp & ((flags & 0x02) != 0), "n": np.ones(len(t), np.int64),
        }).groupby(["j", "proto", "lo", "hi"], sort=False).agg(t=("t", "min"), syn=("syn", "any"), hs=("hs", "any"), n=("n", "sum")))  # fmt: skip
    pairs = pd.concat(pair_parts).groupby(level=[0, 1]).sum() if pair_parts else pd.Series(dtype=np.int64)
    point_rows = pd.concat(point_parts).groupby(level=0).sum() if point_parts else pd.Series(dtype=np.int64)
    kj = pd.concat(parts).groupby(level=[0, 1, 2, 3], sort=False).agg({"t": "min", "syn": "any", "hs": "any", "n": "sum"}).reset_index() if parts else ()
    del parts
    if not len(kj):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), pairs, point_rows
    names = pd.Index(list(addr))
    lo, hi = kj["lo"].to_numpy(np.int64), kj["hi"].to_numpy(np.int64)
    # one row per (journey, tuple) with what _connections reads: its tuple, earliest time, and flags standing for
    # "has a SYN" (0x02) / "has a SYN or SYN-ACK" (0x12) / neither (0x10)
    reduced = pd.DataFrame({
        "journey": kj["j"].to_numpy(np.int64), "proto": kj["proto"].to_numpy(np.int64),
        "src": pd.Categorical.from_codes(lo // 65538, categories=names), "sport": lo % 65538 - 1,
        "dst": pd.Categorical.from_codes(hi // 65538, categories=names), "dport": hi % 65538 - 1,
        "ts_corrected_ns": kj["t"].to_numpy(np.int64),
        "tcp_flags": np.where(kj["syn"].to_numpy(), 0x02, np.where(kj["hs"].to_numpy(), 0x12, 0x10)),
    })  # fmt: skip
    uj, conn = _connections(reduced)
    rows_j = pd.Series(kj["n"].to_numpy(np.int64)).groupby(kj["j"].to_numpy(np.int64)).sum().reindex(uj).to_numpy(np.int64)
    return uj, conn, rows_j, pairs, point_rows


def _addr_ids(col: pd.Series, addr: dict[str, int]) -> np.ndarray:
    """Ids of a categorical address column's values in ``addr`` (grown as new addresses come)."""
    cats = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else None
    if cats is None:
        col = col.astype("category")
        cats = col.cat.categories
    lut = np.array([addr.setdefault(str(c), len(addr)) for c in cats] + [-1], np.int64)
    return lut[col.cat.codes.to_numpy(np.int64)]


def _spill(pf, uj: np.ndarray, bucket_j: np.ndarray, nb: int, tmp: Path, inv, single: set[str], *,
           hold_rows: int) -> pd.DataFrame:  # fmt: skip
    """Pass 2: each labelled hops row appended to its bucket's Parquet file (rows in file order), up to ``hold_rows``
    rows held and then written one row group per bucket (a row group per window and bucket made thousands of tiny
    writes and reads); returns the per-journey routing flags of every hops row (:meth:`Inventory.routing_flags`),
    empty without an inventory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[int, pq.ParquetWriter] = {}
    held: dict[int, list] = {}
    n_held = 0

    def flush() -> None:
        for k, subs in held.items():
            w = writers.get(k)
            if w is None:
                w = writers[k] = pq.ParquetWriter(tmp / f"bucket-{k}.parquet", pf.schema_arrow)
            w.write_table(pa.concat_tables(subs))
        held.clear()

    flags = []
    try:
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g)
            if inv is not None:
                flags.append(inv.routing_flags(t.select(["journey", "src", "dst", "tunnel", "point"]).to_pandas(), single))
            j = t.column("journey").to_numpy()
            at = np.clip(np.searchsorted(uj, j), 0, max(len(uj) - 1, 0))
            known = (uj[at] == j) if len(uj) else np.zeros(len(j), bool)
            b = np.where(known, bucket_j[at] if len(uj) else -1, -1)
            order = np.argsort(b, kind="stable")
            bs = b[order]
            cut = np.flatnonzero(np.r_[True, bs[1:] != bs[:-1]]) if len(bs) else np.zeros(0, np.int64)
            for k, start in enumerate(cut.tolist()):
                if bs[start] < 0:
                    continue
                end = cut[k + 1] if k + 1 < len(cut) else len(bs)
                held.setdefault(int(bs[start]), []).append(t.take(pa.array(order[start:end])))
                n_held += int(end - start)
            if n_held >= hold_rows:
                flush()
                n_held = 0
        flush()
    finally:
        for w in writers.values():
            w.close()
    for b in range(nb):  # a bucket is never empty (its connections have rows), but be safe
        if b not in writers:
            pq.write_table(pf.schema_arrow.empty_table(), tmp / f"bucket-{b}.parquet")
    if not flags:
        return pd.DataFrame({"tun": np.zeros(0, bool), "bare": np.zeros(0, bool)})
    return pd.concat(flags).groupby(level=0).any()


def _journeys_of(pf, journeys: np.ndarray) -> pd.DataFrame:
    """Pass 3: the hops rows of ``journeys``, in the file's order (the correlation's)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    want = pa.array(np.unique(journeys[journeys >= 0]), pa.int64())
    parts = []
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g)
        parts.append(t.filter(pc.is_in(t.column("journey"), value_set=want)))
    return pa.concat_tables(parts).to_pandas() if parts else _empty_hops()


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables of consecutive buckets as one: a category column keeps its categories where every part has the same
    (a closed vocabulary), else takes the sorted values, as ``astype("category")`` of the whole column would. The
    parts' category columns are recoded to their union in place (the parts are the caller's, dropped after): codes
    are concatenated, never a Python object per cell (+147 MiB for the NAT table of 400k journeys as objects)."""
    union: dict[str, pd.Index] = {}
    mixed: list[str] = []
    for c in parts[0].columns:
        cats = [p[c].cat.categories for p in parts if isinstance(p[c].dtype, pd.CategoricalDtype)]
        if len(cats) == len(parts):
            if not all(x.equals(cats[0]) for x in cats):
                union[c] = cats[0].append(cats[1:]).unique() if len(cats) > 1 else cats[0]
        elif cats:
            mixed.append(c)  # categorical in some parts only: values as objects, as before
    for p in parts:
        for c, u in union.items():
            p[c] = p[c].cat.set_categories(u)
        for c in mixed:
            p[c] = p[c].astype(object)
    out = pd.concat(parts, ignore_index=True)
    for c in union:
        used = out[c].cat.remove_unused_categories()
        out[c] = used.cat.reorder_categories(used.cat.categories.sort_values())
    return out


def _concat_paths(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Path tables of consecutive buckets as one, typed as one table of them all would be."""
    from pcaptools.k8s.paths import _typed
    from pcaptools.schema import PATH_COLUMNS, validate

    if not parts:
        return _empty()
    return validate(_typed(_concat(parts)), PATH_COLUMNS, table="paths")
