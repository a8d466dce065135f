"""Correlation on Dask: sightings shuffled on their fingerprint, clocks from a bounded sample estimated on the
client and broadcast, matching and hops per partition; the same Correlation as :func:`pcaptools.correlate.api.correlate`.

The steps of the single-process pipeline, split where the data allows it:

1. capture points come from a manifest and/or ``NODE:IFACE=FILE`` specs, exactly as
   :func:`pcaptools.k8s.discover.load_captures` reads them (inferring points needs every packet of a file:
   write a manifest once with ``pcaptools manifest``); each file's rows are labelled with their point on the
   workers, from one row per (pcapng interface, ifindex) of the file;
2. fingerprints per partition; the clock sample is the rows of the :data:`~pcaptools.correlate.match.CLOCK_SAMPLE`
   smallest distinct fingerprints (bottom-k per partition, then bottom-k of their union: the same sample as
   :func:`~pcaptools.correlate.match.clock_sample`), gathered on the client in capture-set row order, where
   :func:`~pcaptools.correlate.clock.estimate_offsets` runs as in one process; in the same pass each partition's
   rows per point and those left out of correlation by reason are counted (:class:`~pcaptools.correlate.api.RowAccounts`);
3. every sighting is corrected with the broadcast clock parameters and shuffled on its fingerprint, so all
   sightings of one packet, whatever point saw them, meet in one partition; there, in capture-set row order,
   :func:`~pcaptools.correlate.match.time_order`, :func:`~pcaptools.correlate.match.match` and the hops table;
4. on the client, journeys are renumbered by first corrected time (ties: fingerprint, then the partition's
   own order, which is the single-process order) and the latency and loss tables are built.

Shuffled per sighting: the fingerprint, both timestamps, point and the hops table's carried columns, about
77 bytes (``benchmarks/dask_bench.py`` measures it). The client holds the clock sample (at most 2^18
packets with all their sightings) and the final hops table. ``row_ts_corrected`` and ``row_journey`` (per
capture-set row) are not built on Dask: they are None.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.correlate.api import (
    DEFAULT_WINDOW_NS,
    Correlation,
    RowAccounts,
    clock_notes,
    matcher,
    packet_fingerprints,
)
from pcaptools.correlate.capture_set import KEPT, NEEDED, CaptureSet
from pcaptools.correlate.clock import correct, estimate_offsets
from pcaptools.correlate.fingerprint import combine
from pcaptools.correlate.latency import hop_latency, losses
from pcaptools.correlate.match import CLOCK_SAMPLE
from pcaptools.correlate.sample import clock_groups
from pcaptools.correlate.windows import CARRY, CATEGORIES, Categories, rows_from
from pcaptools.dask.cluster import refuse_datasets, require_dask
from pcaptools.dask.flows import _file_hash
from pcaptools.dask.packets import DEFAULT_CHUNK_RECORDS, empty_like, packet_meta, read_packets
from pcaptools.decode.table import concat
from pcaptools.errors import CorrelationError
from pcaptools.schema import HOPS_COLUMNS, validate

if TYPE_CHECKING:
    import dask.dataframe as dd

_POINT_COLS = ("point", "node", "interface")
_SAMPLE_COLS = ("ts_ns", "point_id", "record", "src", "dst", "sport", "dport", "proto", "_fp")
_MATCH_COLS = tuple(dict.fromkeys(("_fp", "_tc", "ts_ns", "point_id", *CARRY)))


@dataclass
class DaskCaptures:
    """A capture set on the cluster: its points (``captures.packets`` holds one row per file interface only),
    the decoded files and their rows labelled by point (Dask DataFrames, persisted)."""

    captures: CaptureSet
    files: list[str]
    file_packets: dd.DataFrame  # the decoded files (the columns correlation and flows read)
    packets: dd.DataFrame  # capture-set rows, NEEDED/KEPT columns + point, node, interface, point_id


def _point_labels(cs: CaptureSet) -> tuple[dict, dict]:
    """The capture set's point, node and interface dtypes, and each point's code in them (by point id)."""
    dtypes = {c: cs.packets[c].dtype for c in _POINT_COLS}
    codes = {c: np.array([dtypes[c].categories.get_loc(getattr(p, "name" if c == "point" else c)) for p in cs.points],
                         np.int64) for c in _POINT_COLS}  # fmt: skip
    return dtypes, codes


def _point_rows(df: pd.DataFrame, keys: np.ndarray, key_point: np.ndarray, dtypes: dict, point_codes: dict,
                keep: list[str]) -> pd.DataFrame:  # fmt: skip
    """On a worker: rows of one file chunk labelled with every capture point that holds their (file, iface, ifindex)."""
    h = combine([_file_hash(df["file"]), df["iface"].to_numpy(np.int64), df["ifindex"].to_numpy(np.int64)])
    parts = []
    for p in np.unique(key_point):
        rows = np.flatnonzero(np.isin(h, keys[key_point == p]))
        parts.append(df.iloc[rows][keep].assign(point_id=np.full(rows.shape[0], p, np.int32)))
    out = pd.concat(parts, ignore_index=True) if parts else df.iloc[:0][keep].assign(point_id=np.zeros(0, np.int32))
    pid = out["point_id"].to_numpy(np.int64)
    labels = {c: pd.Categorical.from_codes(point_codes[c][pid], dtype=dtypes[c], validate=False) for c in _POINT_COLS}
    return out.assign(**labels)[[*keep, *_POINT_COLS, "point_id"]]


def load_capture_packets(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    allow_outside: bool = False,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    flow_columns: bool = False,
) -> DaskCaptures:
    """A manifest and/or ``NODE:IFACE=FILE`` points, decoded on the cluster and labelled by capture point
    (points exactly as :func:`pcaptools.k8s.discover.load_captures` makes them); ``flow_columns`` keeps what flows read."""
    require_dask()
    import dask

    from pcaptools.dask.flows import _COLUMNS as FLOW_COLUMNS
    from pcaptools.k8s.discover import is_capture_set, load_captures

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    points = list(points)
    refuse_datasets(srcs)
    if not is_capture_set(srcs, points):
        raise CorrelationError(
            "on Dask the capture points must be named: pass one manifest.json (or a directory holding one) and/or "
            "--point NODE:IFACE=FILE; inferring them reads every packet, so write a manifest once with "
            "`pcaptools manifest DIR -o DIR/manifest.json`"
        )
    files: list[str] = []
    blank: list[pd.DataFrame] = []

    def listed(path: str) -> pd.DataFrame:  # first pass: the files the manifest and points name, checked
        files.append(path)
        return blank[0]

    blank.append(empty_like(packet_meta([], (), payload_hash=True)))
    load_captures(srcs, points=points, decoder=listed, allow_outside=allow_outside)
    files = list(dict.fromkeys(files))
    decoded = read_packets(files, chunk_records=chunk_records, payload_hash=True)
    cols = [c for c in decoded.columns if c in NEEDED or c in KEPT or c == "payload_hash"
            or (flow_columns and c in FLOW_COLUMNS)]  # fmt: skip
    decoded = decoded[cols].persist()
    firsts = decoded.map_partitions(lambda d: d.drop_duplicates(["iface", "ifindex"]), meta=decoded._meta)
    shapes = dask.compute(*firsts.to_delayed())
    by_file: dict[str, list[pd.DataFrame]] = {}
    for s in shapes:
        for f, g in s.groupby(s["file"].astype(str), sort=False):
            by_file.setdefault(f, []).append(g)
    one = {f: concat(v).drop_duplicates(["iface", "ifindex"]).reset_index(drop=True) for f, v in by_file.items()}
    cs = load_captures(srcs, points=points, decoder=lambda p: one.get(p, blank[0]), allow_outside=allow_outside)
    pk = cs.packets
    keys = combine([_file_hash(pk["file"]), pk["iface"].to_numpy(np.int64), pk["ifindex"].to_numpy(np.int64)])
    key_point = pk["point_id"].to_numpy(np.int64)
    dtypes, codes = _point_labels(cs)
    keep = [c for c in pk.columns if c not in (*_POINT_COLS, "point_id")]
    args = (keys, key_point, dtypes, codes, keep)
    meta = _point_rows(empty_like(decoded._meta), *args)
    labelled = decoded.map_partitions(_point_rows, *args, meta=meta)
    return DaskCaptures(captures=cs, files=files, file_packets=decoded, packets=labelled)


def _with_fingerprint(df: pd.DataFrame) -> pd.DataFrame:
    """Fingerprint per row (0: not matchable), as correlate() takes it."""
    return df.assign(_fp=packet_fingerprints(df))


def _accounts(df: pd.DataFrame, points: int) -> RowAccounts:
    """On a worker: a partition's rows per point and those left out of correlation by reason (:class:`RowAccounts`)."""
    acc = RowAccounts(points)
    acc.add(df, df["_fp"].to_numpy(np.uint64), df["point_id"].to_numpy(np.int64))
    return acc


def _bottom(df: pd.DataFrame, k: int) -> np.ndarray:
    """The ``k`` smallest distinct non-zero fingerprints of a partition."""
    fp = df["_fp"].to_numpy(np.uint64)
    return np.unique(fp[fp != 0])[:k]


def sample_limit(bottoms: Iterable[np.ndarray], k: int = CLOCK_SAMPLE) -> int | None:
    """The smallest fingerprint left out of the clock sample, from each partition's ``k`` smallest distinct
    non-zero ones (None: every fingerprint is in); the sample :func:`~pcaptools.correlate.match.clock_sample` takes."""
    distinct = np.unique(np.concatenate([np.zeros(0, np.uint64), *bottoms]))
    return int(distinct[k]) if distinct.shape[0] > k else None


def _sampled(df: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    """Rows of the clock sample: fingerprint non-zero and below ``limit`` (None: every matchable row)."""
    fp = df["_fp"].to_numpy(np.uint64)
    keep = (fp != 0) if limit is None else (fp != 0) & (fp < np.uint64(limit))
    return df.loc[keep, list(_SAMPLE_COLS)]


def _corrected(df: pd.DataFrame, params: dict, point_node: np.ndarray) -> pd.DataFrame:
    """Matchable rows with their corrected time ``_tc`` and only the columns matching and hops read."""
    m = df.loc[df["_fp"].to_numpy(np.uint64) != 0]
    node = point_node[m["point_id"].to_numpy(np.int64)]
    return m.assign(_tc=correct(m["ts_ns"].to_numpy(np.int64), node, params))[list(_MATCH_COLS)]


def _matched(df: pd.DataFrame, window_ns: int, points: list) -> pd.DataFrame:
    """On a worker: hops of the fingerprints of one shuffled partition (the windowed matcher's one-window case),
    journeys numbered within it."""
    pid = df["point_id"].to_numpy(np.int64)
    order = np.lexsort((df["record"].to_numpy(np.int64), pid))  # capture-set row order: ties break as in one process
    pk = df.iloc[order].reset_index(drop=True)
    pid = pid[order]
    cats = Categories({c: pk[c].cat.categories for c in CATEGORIES})
    m = matcher(points, window_ns, cats)
    rows = rows_from(pk, pk["_fp"].to_numpy(np.uint64), pk["_tc"].to_numpy(np.int64), np.arange(len(pk), dtype=np.int64), pid, cats)
    return m.step(rows, None).hops


def _renumber(h: pd.DataFrame) -> pd.DataFrame:
    """Journeys of all partitions numbered by first corrected time, then fingerprint, then partition order."""
    first = np.flatnonzero(h["hop"].to_numpy() == 0)
    size = h["hops"].to_numpy(np.int64)[first]
    first_t = h["ts_corrected_ns"].to_numpy(np.int64)[first]
    by_rank = np.lexsort((h["journey"].to_numpy()[first], h["fingerprint"].to_numpy()[first], first_t))
    size_r = size[by_rank]
    start = np.cumsum(size_r) - size_r
    perm = np.repeat(first[by_rank] - start, size_r) + np.arange(len(h))
    out = h.take(perm).reset_index(drop=True)
    out["journey"] = np.repeat(np.arange(first.shape[0], dtype=np.int64), size_r)
    return validate(out, HOPS_COLUMNS, table="hops")


def correlate_packets(cap: DaskCaptures, *, window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None,
                      npartitions: int | None = None) -> Correlation:  # fmt: skip
    """The Correlation of a capture set on the cluster (see the module docstring); equal to ``correlate(cs)``."""
    import dask

    if window_ns <= 0:
        raise CorrelationError(f"window_ns must be positive, got {window_ns}")
    cs = cap.captures
    nodes = cs.nodes
    if reference is not None and reference not in nodes:
        raise CorrelationError(f"reference node {reference!r} is not in the capture set; nodes are {nodes}")
    notes = list(cs.notes)
    point_node = np.array([nodes.index(p.node) for p in cs.points], np.int64)
    meta = _with_fingerprint(empty_like(cap.packets._meta))
    fpd = cap.packets.map_partitions(_with_fingerprint, meta=meta).persist()
    pieces = fpd.to_delayed()
    bottoms = [dask.delayed(_bottom)(p, CLOCK_SAMPLE) for p in pieces]
    counted = [dask.delayed(_accounts)(p, len(cs.points)) for p in pieces]
    got = dask.compute(*bottoms, *counted)  # one pass over the persisted partitions for both
    limit = sample_limit(got[: len(pieces)])
    accounts = RowAccounts(len(cs.points))
    for acc in got[len(pieces) :]:
        accounts.merge(acc)
    sample = fpd.map_partitions(_sampled, limit, meta=_sampled(meta, None)).compute()
    sample = sample.iloc[np.lexsort((sample["record"].to_numpy(np.int64), sample["point_id"].to_numpy(np.int64)))]
    sample = sample.reset_index(drop=True)
    group = clock_groups(sample["_fp"].to_numpy(np.uint64), sample["point_id"].to_numpy(np.int64), sample["ts_ns"].to_numpy(np.int64),
                         point_node)  # fmt: skip
    offsets, params = estimate_offsets(sample, group, nodes, point_node, reference=reference)
    notes += clock_notes(offsets, params)
    corrected = fpd.map_partitions(_corrected, params, point_node, meta=_corrected(meta, params, point_node))
    shuffled = corrected.shuffle(on="_fp", npartitions=npartitions or fpd.npartitions)
    hmeta = _matched(_corrected(meta, params, point_node), int(window_ns), cs.points)
    parts = shuffled.map_partitions(_matched, int(window_ns), cs.points, meta=hmeta).to_delayed()
    frames = [f for f in dask.compute(*parts) if len(f)] or [hmeta]
    hops = _renumber(concat(frames))
    return correlation_result(hops, offsets, notes, window_ns, accounts=accounts.fields([p.name for p in cs.points]))


def correlation_result(hops: pd.DataFrame, offsets: pd.DataFrame, notes: list[str], window_ns: int, *,
                       accounts: dict[str, dict] | None = None) -> Correlation:  # fmt: skip
    """The Correlation of a finished hops table: counts per point, journeys, ambiguity, latency and losses;
    ``accounts``: each point's rows and rows not correlated (:meth:`RowAccounts.fields`), if counted."""
    cats = list(hops["point"].cat.categories)
    multi = hops["hops"].to_numpy() > 1
    codes = hops["point"].cat.codes.to_numpy()
    m = np.bincount(codes[multi], minlength=len(cats))
    u = np.bincount(codes[~multi], minlength=len(cats))
    matched = {name: int(m[k]) for k, name in enumerate(cats)}
    unmatched = {name: int(u[k]) for k, name in enumerate(cats)}
    nj = int(hops["journey"].max()) + 1 if len(hops) else 0
    multi_j = int((hops["hop"].to_numpy() == 1).sum())  # journeys with a second sighting
    if nj and not multi_j:
        notes.append("no packet was seen at more than one capture point; check that the captures overlap in time and path")
    return Correlation(
        hops=hops, offsets=offsets, hop_latency=hop_latency(hops), losses=losses(hops), matched=matched,
        unmatched=unmatched, journeys=nj, ambiguous=int(hops.loc[hops["ambiguous"], "journey"].nunique()),
        window_ns=int(window_ns), notes=notes, multi_point_journeys=multi_j, **(accounts or {}),
    )  # fmt: skip


def correlate_captures(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    window_ns: int = DEFAULT_WINDOW_NS,
    reference: str | None = None,
    allow_outside: bool = False,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
) -> Correlation:
    """``correlate(load_captures(sources, points=points))`` on the cluster: a manifest and/or ``NODE:IFACE=FILE``
    points in, the same Correlation out (its ``row_*`` arrays None)."""
    cap = load_capture_packets(sources, points=points, allow_outside=allow_outside, chunk_records=chunk_records)
    return correlate_packets(cap, window_ns=window_ns, reference=reference)
