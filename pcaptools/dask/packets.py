"""Capture files -> a Dask DataFrame of packets: one partition per record range of a file, decoded on the workers.

Planning walks each file's record headers once on a worker (:func:`plan_chunks`: the reader's accounting,
``decoded + skipped == records``, comes back with it); each partition then decodes records ``[lo, hi)``
of one file with the single-process decoder, so its rows equal the matching rows of
:func:`pcaptools.read_packets`. A compressed file cannot be entered in the middle: it is one partition.

Category columns (meta from :data:`pcaptools.schema.PACKET_COLUMNS`): ``file`` has known categories (the
paths, in the order given), as have the closed vocabularies ``direction``, ``tunnel``, ``truncated_at``,
``error`` and ``tunnel_rule``; ``link`` and the address columns have unknown categories (each partition
holds the values it saw), so ``ddf.src.cat.categories`` needs ``ddf.categorize()`` first.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from pcaptools.dask.cluster import refuse_datasets, require_dask
from pcaptools.decode import registry
from pcaptools.decode.table import concat
from pcaptools.errors import DecodeError
from pcaptools.schema import DIRECTIONS, ERRORS, LAYERS, PACKET_COLUMNS, TUNNELS

if TYPE_CHECKING:
    import dask.dataframe as dd

DEFAULT_CHUNK_RECORDS = 1 << 20
"""Records per partition: about 1 M packets (100-400 MB decoded), what one worker decodes in about a second."""

_VOCAB = {"direction": DIRECTIONS, "tunnel": TUNNELS, "truncated_at": LAYERS, "error": ERRORS}


@dataclass(frozen=True)
class Chunk:
    """Records ``[lo, hi)`` (positions among the file's readable records) of one capture file: one partition."""

    path: str
    lo: int
    hi: int


@dataclass
class Plan:
    """The partitions of a set of capture files and the reader's accounting per file (as ``df.attrs`` of read_packets)."""

    files: list[str]
    chunks: list[Chunk]
    records: dict[str, int] = field(default_factory=dict)  # readable records per file
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> reason -> count
    notes: list[str] = field(default_factory=list)
    stopped_at: dict[str, dict | None] = field(default_factory=dict)
    interface_stats: dict[str, list] = field(default_factory=dict)  # file -> per interface its ISB counters or None


@functools.lru_cache(maxsize=2)
def _records(path: str, mtime_ns: int, size: int, on_error: str):
    """The file's RecordBatch (memory-mapped), kept for the next chunks of the same file on this worker."""
    from pcaptools.io import read_records

    return read_records(path, on_error=on_error)


def _file_records(path: str, on_error: str):
    st = os.stat(path)
    return _records(path, st.st_mtime_ns, st.st_size, on_error)


def _survey(path: str, on_error: str) -> dict:
    """On a worker: record count, compression and accounting of one file (one walk of its record headers)."""
    from pcaptools.decode.api import interface_stats
    from pcaptools.io.sniff import open_capture

    rb = _file_records(path, on_error)
    return {"path": path, "records": len(rb), "compressed": open_capture(path).compression is not None,
            "skipped": dict(rb.skipped), "notes": list(rb.notes), "stopped_at": rb.stopped_at,
            "interface_stats": interface_stats(rb.interfaces)}  # fmt: skip


def plan_chunks(paths: Iterable[str | os.PathLike], *, chunk_records: int = DEFAULT_CHUNK_RECORDS,
                on_error: Literal["skip", "raise"] = "skip") -> Plan:  # fmt: skip
    """Split capture files into record ranges of at most ``chunk_records`` (compressed files whole), surveyed on the workers."""
    require_dask()
    import dask

    files = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not files:
        raise DecodeError("read_packets: expected at least one capture file, found none")
    refuse_datasets(files)
    if chunk_records < 1:
        raise DecodeError(f"chunk_records: expected 1 or more records per partition, found {chunk_records}")
    for f in files:
        if not os.path.exists(f):
            raise DecodeError(f"{f}: no such capture file", path=f)
    unique = list(dict.fromkeys(files))
    surveys = dask.compute(*[dask.delayed(_survey, pure=False)(f, on_error) for f in unique])
    plan = Plan(files=unique, chunks=[])
    for s in surveys:
        path = s["path"]
        plan.records[path] = s["records"]
        plan.skipped[path] = s["skipped"]
        plan.notes += s["notes"]
        plan.stopped_at[path] = s["stopped_at"]
        plan.interface_stats[path] = s["interface_stats"]
    compressed = {s["path"]: s["compressed"] for s in surveys}
    for path in files:  # a file named twice is decoded twice, as read_packets does
        n = plan.records[path]
        step = max(n, 1) if compressed[path] else chunk_records
        plan.chunks += [Chunk(path, lo, min(lo + step, n)) for lo in range(0, max(n, 1), step)]
    return plan


def packet_meta(files: list[str], rules: tuple[str, ...], *, payload_hash: bool) -> pd.DataFrame:
    """Empty packet table with the schema's dtypes: the Dask meta (unknown categories where values are open)."""
    from dask.dataframe.utils import UNKNOWN_CATEGORIES

    known = {**_VOCAB, "file": tuple(files), "tunnel_rule": tuple(rules)}
    cols = {}
    for c in PACKET_COLUMNS:
        if c.dtype == "category":
            cats = known.get(c.name, (UNKNOWN_CATEGORIES,))
            cols[c.name] = pd.Categorical([], categories=pd.Index(list(cats), dtype=object))
        else:
            cols[c.name] = np.zeros(0, c.dtype)
    if payload_hash:
        cols["payload_hash"] = np.zeros(0, np.uint64)
    return pd.DataFrame(cols)


def empty_like(meta: pd.DataFrame) -> pd.DataFrame:
    """``meta`` with the placeholder of unknown categories removed: a real empty table to run library code on."""
    from dask.dataframe.utils import UNKNOWN_CATEGORIES

    out = meta.iloc[:0].copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype) and UNKNOWN_CATEGORIES in out[c].cat.categories:
            out[c] = pd.Categorical([], categories=pd.Index([], dtype=object))
    return out


def _decode_chunk(chunk: Chunk, files: list[str], options: tuple, on_error: str, payload_hash: bool) -> pd.DataFrame:
    """On a worker: decode one record range with the single-process decoder; ``file`` gets the set's categories."""
    from pcaptools.decode.api import decode_options, decode_with

    tables, depth = decode_options(*options)
    rb = _file_records(chunk.path, on_error)
    cut = slice(chunk.lo, chunk.hi)
    part = replace(rb, offset=rb.offset[cut], caplen=rb.caplen[cut], wirelen=rb.wirelen[cut], ts_ns=rb.ts_ns[cut],
                   iface=rb.iface[cut], linktype=rb.linktype[cut], record=rb.record[cut],
                   flags=None if rb.flags is None else rb.flags[cut], skipped={}, notes=[], stopped_at=None,
                   records_total=chunk.hi - chunk.lo)  # fmt: skip
    df = decode_with(part, tables, depth, file_name=chunk.path, payload_hash=payload_hash)
    df["file"] = pd.Categorical.from_codes(np.full(len(df), files.index(chunk.path), np.int64),
                                           categories=pd.Index(files, dtype=object))  # fmt: skip
    df.attrs = {}
    return df


def read_packets(
    paths: str | os.PathLike | Iterable[str | os.PathLike] | Plan,
    *,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
    vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
    geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS,
    wireguard_ports: Iterable[int] = registry.DEFAULT_WIREGUARD_PORTS,
    max_tunnel_depth: int = 4,
    on_error: Literal["skip", "raise"] = "skip",
    payload_hash: bool = False,
) -> dd.DataFrame:
    """The packet table of capture files as a ``dask.dataframe.DataFrame``, one partition per record range.

    Options as for :func:`pcaptools.read_packets`; pass a :class:`Plan` (:func:`plan_chunks`) to keep its
    accounting (skipped records, notes), which a Dask DataFrame cannot carry."""
    require_dask()
    import dask.dataframe as dd

    from pcaptools.decode.api import decode_options

    options = (tuple(vxlan_ports), tuple(geneve_ports), tuple(wireguard_ports), int(max_tunnel_depth))
    tables, _ = decode_options(*options)  # bad options fail here, on the client, in one line
    plan = paths if isinstance(paths, Plan) else plan_chunks(paths, chunk_records=chunk_records, on_error=on_error)
    meta = packet_meta(plan.files, tuple(tables.rules), payload_hash=payload_hash)
    return dd.from_map(_decode_chunk, plan.chunks, args=(plan.files, options, on_error, payload_hash), meta=meta,
                       label="decode", enforce_metadata=False)  # fmt: skip


def collect_packets(paths: str | os.PathLike | Iterable[str | os.PathLike], *, chunk_records: int = DEFAULT_CHUNK_RECORDS,
                    on_error: Literal["skip", "raise"] = "skip", **options) -> pd.DataFrame:  # fmt: skip
    """:func:`pcaptools.read_packets` decoded on the cluster and gathered on the client: the same rows, with the
    reader's accounting in ``attrs`` (``skipped``, ``notes``, ``stopped_at``, ``interface_stats``); options as for :func:`read_packets`."""
    import dask

    plan = plan_chunks(paths, chunk_records=chunk_records, on_error=on_error)
    parts = dask.compute(*read_packets(plan, on_error=on_error, **options).to_delayed())
    out = concat(list(parts))
    out.attrs = {"skipped": plan.skipped, "notes": plan.notes, "stopped_at": plan.stopped_at,
                 "interface_stats": plan.interface_stats}  # fmt: skip
    return out
