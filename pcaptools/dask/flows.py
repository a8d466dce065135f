"""Flows and Community IDs on Dask: packets shuffled so that every flow is whole in one partition, then
:func:`pcaptools.flows.flows` per partition; the same flow table as the single-process one.

The shuffle key is what a flow's packets share: file, the two (address, port) ends in either order and
the protocol (ports as Community ID takes them: ICMP type and counterpart). A later IP fragment carries no
ports; flows() gives it those of its datagram's first fragment, so a first pass collects, per datagram that
has later fragments, its first fragment's ports (on the client: one row per fragmented datagram) and the
later fragments are routed with them. An ICMP error is counted on the flow its quoted packet belongs to,
which has another key: the error row is also sent, marked as a copy, to the partition of the quoted key.
Each partition drops copies whose original is there too, restores file/record order (ties in time then
break as in one process), builds flows and keeps those whose key it owns (a copy's own flow belongs to its
original's partition). Bytes shuffled per packet: the ~35 columns flows read (about 120 bytes), plus a copy
of each ICMP error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools import community_id as cid
from pcaptools.correlate.fingerprint import combine
from pcaptools.dask.cluster import require_dask
from pcaptools.dask.packets import empty_like
from pcaptools.flows import REQUIRED, concat_flows, flows

if TYPE_CHECKING:
    import dask.dataframe as dd

_COLUMNS = ("file", "record", *REQUIRED)


def _file_hash(col: pd.Series) -> np.ndarray:
    """uint64 hash of each row's file name (by value, so partitions with other categories agree)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    per = np.append(pd.util.hash_array(np.asarray(cat.categories, dtype=object)), np.uint64(0))
    codes = np.asarray(cat.codes, np.int64)
    return per[np.where(codes >= 0, codes, len(per) - 1)]


def _flow_key(fh: np.ndarray, a: tuple, pa: np.ndarray, b: tuple, pb: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Shuffle key: hash of (file, the two (address, port) ends in either order, protocol); ports as
    Community ID takes them (ICMP: type and counterpart or code; -1 for protocols without ports)."""
    e1 = combine([a[0], a[1], pa])
    e2 = combine([b[0], b[1], pb])
    return combine([fh, np.minimum(e1, e2), np.maximum(e1, e2), np.asarray(proto, np.int64)])


def _ends(proto: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ports a flow row shows (``orig_p``, ``resp_p``) for packets with these protocol and raw ports."""
    pa, pb, has_ports, _ = cid.flow_ports(proto, p1, p2)
    return np.where(has_ports, pa, -1), np.where(has_ports, pb, -1)


def _routable(df: pd.DataFrame) -> pd.DataFrame:
    """Rows flows() can key (addresses of one family, a protocol) with their raw ports ``_p1``/``_p2`` as flows()
    reads them, and ``_dg``, the datagram a fragment belongs to (file, source, destination, protocol, IPv4 id)."""
    s, d = cid.addresses(df["src"]), cid.addresses(df["dst"])
    proto = df["proto"].to_numpy(np.int64)
    ok = s[2] & d[2] & (proto >= 0) & (s[3] == d[3])
    icmp = np.isin(proto, (1, 58))
    p1 = np.where(icmp, df["icmp_type"].to_numpy(np.int64), df["sport"].to_numpy(np.int64))
    p2 = np.where(icmp, df["icmp_code"].to_numpy(np.int64), df["dport"].to_numpy(np.int64))
    dg = combine([_file_hash(df["file"]), s[0], s[1], d[0], d[1], proto, df["ip_id"].to_numpy(np.int64)])
    return df.loc[ok, list(_COLUMNS)].assign(_p1=p1[ok], _p2=p2[ok], _dg=dg[ok]).reset_index(drop=True)


def _fragments(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """First fragments (datagram, record, ports) and the datagrams of later fragments, of one partition."""
    off = df["frag_offset"].to_numpy(np.int64)
    head = (off == 0) & df["more_frags"].to_numpy(bool)
    heads = pd.DataFrame({"dg": df["_dg"].to_numpy()[head], "record": df["record"].to_numpy()[head],
                          "p1": df["_p1"].to_numpy()[head], "p2": df["_p2"].to_numpy()[head]})  # fmt: skip
    return heads, np.unique(df["_dg"].to_numpy()[off > 0])


def fragment_ports(parts: list[tuple[pd.DataFrame, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per datagram with later fragments (sorted), the ports of its first fragment in file order: what flows()
    gives a later fragment, which carries no ports of its own, so that it is routed with the rest of its flow."""
    later = np.unique(np.concatenate([np.zeros(0, np.uint64), *(p[1] for p in parts)]))
    heads = pd.concat([p[0] for p in parts], ignore_index=True)
    heads = heads[np.isin(heads["dg"].to_numpy(), later)].sort_values(["dg", "record"], kind="stable")
    heads = heads.drop_duplicates("dg", keep="first")
    return heads["dg"].to_numpy(np.uint64), heads["p1"].to_numpy(np.int64), heads["p2"].to_numpy(np.int64)


def _route(df: pd.DataFrame, heads: tuple[np.ndarray, np.ndarray, np.ndarray]) -> pd.DataFrame:
    """Each row with its flow's ``_key`` (later fragments take their first fragment's ports); ICMP errors also
    as a copy (``_dup``) keyed by the packet they quote."""
    s, d = cid.addresses(df["src"]), cid.addresses(df["dst"])
    proto = df["proto"].to_numpy(np.int64)
    p1, p2 = df["_p1"].to_numpy(np.int64), df["_p2"].to_numpy(np.int64)
    hdg, hp1, hp2 = heads
    later = np.flatnonzero(df["frag_offset"].to_numpy(np.int64) > 0)
    if later.size and hdg.size:
        at = np.minimum(np.searchsorted(hdg, df["_dg"].to_numpy(np.uint64)[later]), hdg.size - 1)
        found = hdg[at] == df["_dg"].to_numpy(np.uint64)[later]
        p1, p2 = p1.copy(), p2.copy()
        p1[later[found]], p2[later[found]] = hp1[at[found]], hp2[at[found]]
    fh = _file_hash(df["file"])
    pa, pb = _ends(proto, p1, p2)
    key = _flow_key(fh, s, pa, d, pb, proto)
    qs, qd = cid.addresses(df["icmp_q_src"]), cid.addresses(df["icmp_q_dst"])
    qp = df["icmp_q_proto"].to_numpy(np.int64)
    qa, qb = _ends(qp, df["icmp_q_sport"].to_numpy(np.int64), df["icmp_q_dport"].to_numpy(np.int64))
    qkey = _flow_key(fh, qs, qa, qd, qb, qp)
    copy = np.isin(proto, (1, 58)) & qs[2] & qd[2] & (qp >= 0) & (qkey != key)
    cols = list(_COLUMNS)
    rows = df[cols].assign(_key=key, _dup=False)
    copies = df.loc[copy, cols].assign(_key=qkey[copy], _dup=True)
    return pd.concat([rows, copies], ignore_index=True) if len(copies) else rows


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
    k = _flow_key(_file_hash(fl["file"]), cid.addresses(fl["orig_h"]), fl["orig_p"].to_numpy(np.int64),
                  cid.addresses(fl["resp_h"]), fl["resp_p"].to_numpy(np.int64), fl["proto"].to_numpy(np.int64))  # fmt: skip
    return fl.loc[np.isin(k, owned)].reset_index(drop=True)


def flow_partitions(packets: dd.DataFrame, *, idle_timeout_s: float | None = None, seed: int = 0,
                    community_id: bool = True, npartitions: int | None = None) -> dd.DataFrame:  # fmt: skip
    """Flows of a Dask packet table (:func:`pcaptools.dask.read_packets`) as a Dask DataFrame, each flow in one
    partition, in no particular order (options as for :func:`pcaptools.flows.flows`)."""
    require_dask()
    from dask.dataframe.utils import clear_known_categories

    options = {"idle_timeout_s": idle_timeout_s, "seed": seed, "community_id": community_id}
    import dask

    empty = empty_like(packets._meta)
    flows(empty, **options)  # a bad option fails here, on the client, in one line
    rows = packets.map_partitions(_routable, meta=_routable(empty)).persist()
    heads = fragment_ports(dask.compute(*[dask.delayed(_fragments)(p) for p in rows.to_delayed()]))
    routed = _route(_routable(empty), heads)
    keyed = rows.map_partitions(_route, heads, meta=routed)
    shuffled = keyed.shuffle(on="_key", npartitions=npartitions or packets.npartitions)
    meta = clear_known_categories(_partition_flows(routed, options), cols=["file", "orig_h", "resp_h", "tunnel",
                                  "outer_orig_h", "outer_resp_h"])  # fmt: skip
    return shuffled.map_partitions(_partition_flows, options, meta=meta)


def read_flows(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    idle_timeout_s: float | None = None,
    seed: int = 0,
    community_id: bool = True,
    chunk_records: int | None = None,
    packets: dd.DataFrame | None = None,
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
