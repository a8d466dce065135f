"""Flows and Community IDs on Dask: packets shuffled so that every flow is whole in one partition, then
:func:`pcaptools.flows.flows` per partition; the same flow table as the single-process one.

A flow's packets share (file, unordered address pair, protocol): that is the shuffle key, so a flow cut by
partitions or split over chunks of a file comes together again, with its IP fragments (same addresses and
protocol). An ICMP error is counted on the flow its quoted packet belongs to, which has another key: the
error row is also sent, marked as a copy, to the partition of the quoted key. Each partition drops copies
whose original is there too, restores file/record order (ties in time then break as in one process),
builds flows and keeps those whose key it owns (a copy's own flow belongs to its original's partition).
Bytes shuffled per packet: the ~35 columns flows read (about 150 bytes), plus a copy of each ICMP error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pcaptools import community_id as cid
from pcaptools.correlate.fingerprint import combine
from pcaptools.dask.cluster import require_dask
from pcaptools.dask.packets import empty_like
from pcaptools.flows import REQUIRED, concat_flows, flows

_COLUMNS = ("file", "record", *REQUIRED)


def _file_hash(col: pd.Series) -> np.ndarray:
    """uint64 hash of each row's file name (by value, so partitions with other categories agree)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    per = np.append(pd.util.hash_array(np.asarray(cat.categories, dtype=object)), np.uint64(0))
    codes = np.asarray(cat.codes, np.int64)
    return per[np.where(codes >= 0, codes, len(per) - 1)]


def _pair_key(fh: np.ndarray, a: tuple, b: tuple, proto: np.ndarray) -> np.ndarray:
    """Shuffle key: hash of (file, the two addresses in either order, protocol)."""
    a_first = (a[0] < b[0]) | ((a[0] == b[0]) & (a[1] <= b[1]))
    lo_hi, lo_lo = np.where(a_first, a[0], b[0]), np.where(a_first, a[1], b[1])
    hi_hi, hi_lo = np.where(a_first, b[0], a[0]), np.where(a_first, b[1], a[1])
    return combine([fh, lo_hi, lo_lo, hi_hi, hi_lo, np.asarray(proto, np.int64)])


def _route(df: pd.DataFrame) -> pd.DataFrame:
    """Rows flows() can key (addresses of one family, a protocol), each with its ``_key``; ICMP errors also
    as a copy (``_dup``) keyed by the packet they quote."""
    s, d = cid.addresses(df["src"]), cid.addresses(df["dst"])
    proto = df["proto"].to_numpy(np.int64)
    ok = s[2] & d[2] & (proto >= 0) & (s[3] == d[3])
    fh = _file_hash(df["file"])
    key = _pair_key(fh, s, d, proto)
    qs, qd = cid.addresses(df["icmp_q_src"]), cid.addresses(df["icmp_q_dst"])
    qp = df["icmp_q_proto"].to_numpy(np.int64)
    qkey = _pair_key(fh, qs, qd, qp)
    copy = ok & np.isin(proto, (1, 58)) & qs[2] & qd[2] & (qp >= 0) & (qkey != key)
    cols = list(_COLUMNS)
    rows = df.loc[ok, cols].assign(_key=key[ok], _dup=False)
    copies = df.loc[copy, cols].assign(_key=qkey[copy], _dup=True)
    return pd.concat([rows, copies], ignore_index=True) if len(copies) else rows.reset_index(drop=True)


def _partition_flows(df: pd.DataFrame, options: dict) -> pd.DataFrame:
    """Flows of one shuffled partition: copies of rows present here dropped, file/record order, owned keys kept."""
    dup = df["_dup"].to_numpy(bool)
    fh = _file_hash(df["file"])
    rec = df["record"].to_numpy(np.int64)
    row = combine([fh, rec])
    keep = ~(dup & np.isin(row, row[~dup]))
    order = np.flatnonzero(keep)[np.lexsort((rec[keep], fh[keep]))]
    owned = np.unique(df["_key"].to_numpy(np.uint64)[~dup])
    pk = df.iloc[order].drop(columns=["_key", "_dup"]).reset_index(drop=True)
    fl = flows(pk, **options)
    k = _pair_key(_file_hash(fl["file"]), cid.addresses(fl["orig_h"]), cid.addresses(fl["resp_h"]),
                  fl["proto"].to_numpy(np.int64))  # fmt: skip
    return fl.loc[np.isin(k, owned)].reset_index(drop=True)


def flow_partitions(packets, *, idle_timeout_s: float | None = None, seed: int = 0, community_id: bool = True,
                    npartitions: int | None = None):  # fmt: skip
    """Flows of a Dask packet table (:func:`pcaptools.dask.read_packets`) as a Dask DataFrame, each flow in one
    partition, in no particular order (options as for :func:`pcaptools.flows.flows`)."""
    require_dask()
    from dask.dataframe.utils import clear_known_categories

    options = {"idle_timeout_s": idle_timeout_s, "seed": seed, "community_id": community_id}
    empty = empty_like(packets._meta)
    flows(empty, **options)  # a bad option fails here, on the client, in one line
    keyed = packets.map_partitions(_route, meta=_route(empty))
    shuffled = keyed.shuffle(on="_key", npartitions=npartitions or packets.npartitions)
    meta = clear_known_categories(_partition_flows(_route(empty), options), cols=["file", "orig_h", "resp_h", "tunnel",
                                  "outer_orig_h", "outer_resp_h"])  # fmt: skip
    return shuffled.map_partitions(_partition_flows, options, meta=meta)


def read_flows(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    idle_timeout_s: float | None = None,
    seed: int = 0,
    community_id: bool = True,
    chunk_records: int | None = None,
    packets=None,
) -> pd.DataFrame:
    """:func:`pcaptools.read_flows` on the cluster: the same table (files in the given order, each by first
    packet time and uid). ``packets``: the Dask packet table of ``paths`` if already built."""
    from pcaptools.dask.packets import DEFAULT_CHUNK_RECORDS, read_packets

    files = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if packets is None:
        packets = read_packets(files, chunk_records=chunk_records or DEFAULT_CHUNK_RECORDS)
    import dask

    parts = flow_partitions(packets, idle_timeout_s=idle_timeout_s, seed=seed, community_id=community_id).to_delayed()
    frames = [f for f in dask.compute(*parts) if len(f)] or [flows(empty_like(packets._meta))]
    fl = concat_flows(frames)
    rank = {f: i for i, f in enumerate(dict.fromkeys(files))}
    by = pd.DataFrame({"f": fl["file"].astype(str).map(rank).to_numpy(), "t": fl["first_ts_ns"].to_numpy(),
                       "u": fl["uid"].astype(str).to_numpy()})  # fmt: skip
    order = by.sort_values(["f", "t", "u"], kind="stable").index.to_numpy()
    return fl.take(order).reset_index(drop=True)
