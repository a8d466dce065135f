"""``pcaptools paths`` within a memory budget: the path table of a capture set larger than memory, identical to
:func:`pcaptools.k8s.paths.load_paths`' (the in-memory run).

When the captures fit the budget (the test :func:`pcaptools.correlate.stream.fits` makes for correlation)
this is :func:`load_paths`. Otherwise, in a temporary directory:

1. **Correlate** in windows of corrected time (:func:`pcaptools.k8s.discover.correlate_inputs`): hops into a Parquet
   file. Every input ``correlate`` takes streams: a manifest, ``--point`` specs, plain files and directories (their
   points, roles and inference evidence from a bounded summary of their packets, :func:`~pcaptools.k8s.discover.infer_captures`)
   and a dataset (its stored points and evidence); the result's ``captures`` is that CaptureSet, without packets.
2. **Label** (one pass over the hops file, a row group at a time, 9 of its columns): each journey's unordered
   5-tuples reduced to one row per (journey, tuple) with its earliest time and whether it holds a SYN / a SYN or
   SYN-ACK, which is all :func:`pcaptools.k8s.paths._connections` reads; that function labels the reduced table,
   so journey -> connection is the in-memory one. The same pass counts rows per (point, address) for the pod
   network's routing evidence.
3. **Spill** (a second pass): each hops row to the bucket of its connection, buckets being runs of consecutive
   connections holding at most ``bucket_rows`` rows (from the budget), one Parquet file each. Per bucket the
   existing ``_build`` runs with the precomputed connection ids; buckets in order give the paths in connection
   order. Client-side flows come from :func:`pcaptools.flow_stream.read_flows_bounded` of the same files.
4. The hops of each connection's representative journeys (what the terminal shows) are read back in a last pass.

Memory: the correlation's (see :mod:`pcaptools.correlate.stream`), then the labels: one row per (journey, 5-tuple)
while they are computed (a journey through NAT has two tuples), about 100 bytes per journey kept (measured: 98 MiB
for 982,411 journeys), then one bucket at a time, about :data:`BUILD_ROW_COST` bytes a hops row while its paths are
built, plus the flow tables (one row per flow) and the path table. Limits: one connection with more sightings than a bucket holds is built alone, whole; ``--json``
and ``why`` (whose diagnosis reads every packet) are not streamed (the CLI says so).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.k8s.paths import PathSet, _build, _connections, _empty, as_inventory, load_paths
from pcaptools.process import release_freed_memory

BUILD_ROW_COST = 1000
"""Bytes one hops row takes at the peak of building its bucket's paths (the bucket's table, its causal order, NAT table
and per-row arrays; measured 540 on gen_set.py's 79,223 sightings: 97 the table, 440 the build), with a margin."""

ROW_PEAK = 1500
"""Peak bytes per packet record of the in-memory ``paths`` run (correlation, flows, paths and their
inputs; 1.1-1.5 KiB measured per sighting on gen_set.py sets): what decides that a set is streamed."""

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
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS
    from pcaptools.correlate.budget import default_memory
    from pcaptools.k8s.discover import find_inventory

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    points = list(points)
    memory = default_memory() if memory is None else int(memory)
    forced = window_rows is not None or bucket_rows is not None
    if not forced and not streams(srcs, points, memory, allow_outside=allow_outside):
        return load_paths(srcs, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                          with_flows=with_flows, allow_outside=allow_outside)  # fmt: skip
    inv = as_inventory(inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside))
    window_ns = window_ns or DEFAULT_WINDOW_NS
    with tempfile.TemporaryDirectory(prefix="pcaptools-paths-") as tmp:
        hops_path = Path(hops_out) if hops_out is not None else Path(tmp) / "hops.parquet"
        corr, cs, files, stats = _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows, hops_path)
        release_freed_memory()
        flows = _flows(files, memory) if with_flows else None
        release_freed_memory()
        ps = _paths_of_file(hops_path, corr, inv, flows, memory, bucket_rows, Path(tmp))
    ps.captures = cs  # its points and inference evidence (no packets when streamed)
    ps.streamed = {"windows": stats.windows if stats else None, "carried_journeys": stats.carried_journeys if stats else None,
                   "buckets": (ps.streamed or {}).get("buckets", 0)}  # fmt: skip
    return ps


def _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows, out):
    """Streamed correlation into ``out``; (Correlation, the CaptureSet of inferred or stored points or None, the capture
    files in the order :func:`load_paths` decodes them, StreamStats or None)."""
    from pcaptools.k8s.discover import _correlate_inputs, input_files

    corr, cs, stats = _correlate_inputs(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside,
                                        window_ns=window_ns, reference=reference, memory=memory, out=out,
                                        window_rows=window_rows)  # fmt: skip
    files = [e["file"] for e in input_files(srcs, points, allow_outside=allow_outside)]
    return corr, cs, list(dict.fromkeys(files)), stats


def _flows(files: list[str], memory: int) -> pd.DataFrame | None:
    """The client-side flow tables of ``files`` as load_paths concatenates them, each computed within ``memory``."""
    from pcaptools.flow_stream import read_flows_bounded
    from pcaptools.flows import concat_flows

    parts = [read_flows_bounded(f, memory=memory) for f in files]
    return concat_flows(parts) if parts else None


def _paths_of_file(hops_path: Path, corr, inv, flows, memory: int, bucket_rows: int | None, tmp: Path) -> PathSet:
    """Label, spill and build (module doc) from a hops Parquet file."""
    import pyarrow.parquet as pq

    if not hops_path.exists():  # nothing matched: no hops written
        return PathSet(paths=_empty(), nat=_build(_empty_hops(), inv, None)[1], correlation=corr, inventory=inv,
                       network=inv.pod_network(_empty_hops()) if inv is not None else None)  # fmt: skip
    pf = pq.ParquetFile(hops_path)
    uj, conn, rows_j, pairs, point_rows = _label(pf)
    release_freed_memory()
    if bucket_rows is None:
        from pcaptools.correlate.stream import _rss

        bucket_rows = max(int((memory * 0.9 - _rss()) // BUILD_ROW_COST), 1 << 12, -(-int(rows_j.sum()) // MAX_BUCKETS))
    rows_c = np.bincount(conn, weights=rows_j, minlength=int(conn.max()) + 1 if len(conn) else 0).astype(np.int64)
    bucket_c = np.unique((np.cumsum(rows_c) - rows_c) // max(int(bucket_rows), 1), return_inverse=True)[1].reshape(-1)
    nb = int(bucket_c.max()) + 1 if len(bucket_c) else 0
    single = set()
    if inv is not None:
        from pcaptools.k8s.inventory import single_address_points

        single = single_address_points(pairs, point_rows)
    routing = _spill(pf, uj, bucket_c[conn], nb, tmp, inv, single, hold_rows=max(int(bucket_rows), int(memory * SPILL_SHARE // SPILL_ROW_BYTES)))
    path_parts, nat_parts = [], []
    first_c = np.searchsorted(bucket_c, np.arange(nb))  # first connection of each bucket (connections run in order)
    for b in range(nb):
        h = pd.read_parquet(tmp / f"bucket-{b}.parquet")
        mine = bucket_c[conn] == b
        bj, bc = uj[mine], conn[mine] - first_c[b]
        p, nat = _build(h, inv, flows, None, (bj, bc))
        del h
        release_freed_memory(collect=False)  # a bucket's tables hold no reference cycles; a full collection per bucket costs ~0.1 s
        p["connection"] += first_c[b]
        nat["connection"] += first_c[b]
        path_parts.append(p)
        nat_parts.append(nat)
    paths = _concat_paths(path_parts)
    nat = _concat(nat_parts).sort_values(["journey", "step"], kind="stable", ignore_index=True) if nat_parts else _build(_empty_hops(), inv, None)[1]
    wanted = np.concatenate([paths["forward_journey"].to_numpy(np.int64), paths["reply_journey"].to_numpy(np.int64)])
    corr.hops = _journeys_of(pf, wanted)
    network = None
    if inv is not None:
        from pcaptools.k8s.inventory import routing_verdict

        network = inv.pod_network(None)
        network["routing"], ev = routing_verdict(routing)
        network["evidence"].append(ev)
    return PathSet(paths=paths, nat=nat, correlation=corr, inventory=inv, network=network, streamed={"buckets": nb})


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
    (a closed vocabulary), else takes the sorted values, as ``astype("category")`` of the whole column would."""
    out = pd.concat([p.astype({c: object for c in p.columns if isinstance(p[c].dtype, pd.CategoricalDtype)}) for p in parts],
                    ignore_index=True)  # fmt: skip
    for c in parts[0].columns:
        cats = [p[c].cat.categories for p in parts if isinstance(p[c].dtype, pd.CategoricalDtype)]
        if len(cats) == len(parts):
            same = all(x.equals(cats[0]) for x in cats)
            out[c] = pd.Categorical(out[c], categories=cats[0]) if same else out[c].astype("category")
    return out


def _concat_paths(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Path tables of consecutive buckets as one, typed as one table of them all would be."""
    from pcaptools.k8s.paths import _typed
    from pcaptools.schema import PATH_COLUMNS, validate

    if not parts:
        return _empty()
    return validate(_typed(_concat(parts)), PATH_COLUMNS, table="paths")
