"""Packets -> bidirectional flows (Zeek conn.log-like) with Community ID, vectorised over the packet table.

Definitions (the exact rules the columns in ``schema.FLOW_COLUMNS`` follow):

* **Key**: capture file + the inner (decapsulated) 5-tuple ordered like Community ID: addresses and
  ports of both ends sorted so that both directions share one key; ICMP/ICMPv6 use type and
  counterpart type as ports (echo request and reply are one flow), types without a counterpart are
  one-way (type, code) and keep their direction; other protocols have no ports. Non-first IP
  fragments take the ports of the first fragment with the same (src, dst, proto, ip_id), when seen.
* **Split**: a new flow starts after an idle gap longer than the timeout (default Zeek's: TCP 300 s,
  UDP/ICMP/other 60 s) and, for TCP, at a SYN without ACK when a FIN or RST was seen since the last
  SYN (port reuse after a close).
* **Originator**: sender of the flow's first SYN without ACK, else of its first packet.
* **history**: letters in order of first occurrence, each at most once per side, upper case for the
  originator: ``S`` SYN without ACK, ``H`` SYN+ACK, ``A`` pure ACK (no SYN/FIN/RST, no payload),
  ``D`` payload > 0 (UDP: every packet), ``F`` FIN, ``R`` RST. ICMP and other protocols: empty.
* **ICMP errors** (packets quoting another packet) stay flows of their own (as in Zeek and
  pycommunityid) and are also counted on the flow whose key the quoted 5-tuple has, either
  direction: the latest such flow started before the error, else the first one after it. A quoted
  ICMP packet carries no type in the table, so errors quoting ICMP match only port-less keys.
* **Retransmission**: a TCP segment with payload, SYN or FIN whose (seq, payload length, SYN/FIN)
  was already seen in the same direction. **Out of order**: a data segment starting below the highest
  sequence end seen before in its direction (sequence numbers unwrapped), not a retransmission.
* Payload bytes sum ``payload_len`` of every packet (retransmissions included; Zeek's ``orig_bytes``
  counts sequence space instead, equal when nothing was retransmitted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection

import numpy as np
import pandas as pd

from pcaptools import community_id as cid
from pcaptools._callable import make_callable
from pcaptools.errors import DecodeError
from pcaptools.fmt import add_skipped
from pcaptools.schema import FLOW_COLUMNS, FLOW_STATES, validate

FIN, SYN, RST, ACK = 1, 2, 4, 16

IDLE_TIMEOUT_S = {6: 300.0, 17: 60.0, 1: 60.0, 58: 60.0}
"""Default inactivity timeouts per IP protocol (Zeek's tcp/udp/icmp_inactivity_timeout)."""
OTHER_TIMEOUT_S = 60.0
"""Default inactivity timeout of any other protocol (Zeek's unknown_ip_inactivity_timeout)."""

LINK_HEADER = {"EN10MB": 14, "LINUX_SLL": 16, "LINUX_SLL2": 20, "NULL": 4, "LOOP": 4}
"""Bytes of the capture's own link header per link type (RAW/IPV4/IPV6: 0), for encap overhead."""

HISTORY_LETTERS = "SHADFR"

REQUIRED = (
    "ts_ns", "src", "dst", "proto", "sport", "dport", "ip_len", "payload_len", "wirelen", "link",
    "vlan", "tunnel", "vni", "tunnel_depth", "outer_src", "outer_dst", "frag_offset", "more_frags",
    "ip_id", "tcp_flags", "tcp_seq", "tcp_win", "tcp_mss", "tcp_wscale", "icmp_type", "icmp_code",
    "icmp_mtu", "icmp_q_src", "icmp_q_dst", "icmp_q_proto", "icmp_q_sport", "icmp_q_dport",
)  # fmt: skip


def _i64(s: pd.Series) -> np.ndarray:
    return np.asarray(s.to_numpy(na_value=-1) if s.dtype == object else s, dtype=np.int64)


def _cat(s: pd.Series) -> pd.Categorical:
    return s.array if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s)


def _take_cat(cat: pd.Categorical, idx: np.ndarray) -> pd.Categorical:
    """Rows ``idx`` of a categorical (``-1`` -> missing), unused categories dropped."""
    codes = np.asarray(cat.codes, np.int64)
    out = np.where(idx >= 0, codes[np.maximum(idx, 0)], -1)
    return pd.Categorical.from_codes(out, categories=cat.categories).remove_unused_categories()


def _first(mask: np.ndarray, fid: np.ndarray, nf: int, *, last: bool = False) -> np.ndarray:
    """Position of the first (or last) True row of each flow, -1 if none; flows are contiguous."""
    idx = np.flatnonzero(mask)
    out = np.full(nf, -1, np.int64)
    if idx.size:
        f = fid[idx]
        if last:
            sel = np.r_[f[1:] != f[:-1], True]
        else:
            sel = np.r_[True, f[1:] != f[:-1]]
        out[f[sel]] = idx[sel]
    return out


def _prev_max(values: np.ndarray) -> np.ndarray:
    """Running maximum of the rows strictly before each row (-1 for the first)."""
    acc = np.maximum.accumulate(values) if values.size else values
    return np.r_[np.int64(-1), acc[:-1]] if values.size else values


def _factorize_pairs(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Dense int64 ids of (hi, lo) uint64 pairs."""
    ch, _ = pd.factorize(hi)
    cl, ul = pd.factorize(lo)
    codes, _ = pd.factorize(ch.astype(np.int64) * (len(ul) + 1) + cl)
    return codes.astype(np.int64)


def _canon(s: tuple, d: tuple, proto: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> dict[str, np.ndarray]:
    """Community ID ordering of each row's tuple: ``swap`` (reverse it), spec ports and port presence."""
    pa, pb, has_ports, one_way = cid.flow_ports(proto, p1, p2)
    swap = cid.order(s[0], s[1], d[0], d[1], pa, pb, one_way)
    return {"swap": swap, "pa": pa, "pb": pb, "has_ports": has_ports, "one_way": one_way}


def _keys(
    file_id: np.ndarray, s: tuple, d: tuple, proto: np.ndarray, p1: np.ndarray, p2: np.ndarray
) -> dict[str, np.ndarray]:
    """Canonical flow key of each row plus the per-row direction and spec ports."""
    s_hi, s_lo, _, s_v6 = s
    d_hi, d_lo, _, _ = d
    c = _canon(s, d, proto, p1, p2)
    swap, pa, pb, one_way = c["swap"], c["pa"], c["pb"], c["one_way"]
    n = len(proto)
    # address ids: any exact numbering will do (the key is numbered by first appearance below, whatever the ids)
    all_hi = np.concatenate([s_hi, d_hi])
    if all_hi.size and (all_hi == all_hi[0]).all():  # one high half (IPv4 only): the low half alone tells addresses apart
        ids = pd.factorize(np.concatenate([s_lo, d_lo]))[0].astype(np.int64)
    else:
        ids = _factorize_pairs(all_hi, np.concatenate([s_lo, d_lo]))
    sid, did = ids[:n], ids[n:]
    aid, bid = np.where(swap, did, sid), np.where(swap, sid, did)
    qa, qb = np.where(swap, pb, pa), np.where(swap, pa, pb)
    n_addr = int(ids.max()) + 1 if ids.size else 1
    n_file = int(file_id.max()) + 1 if n else 1
    if file_id.min(initial=0) >= 0 and n_file * n_addr * n_addr * 512 < 1 << 31:  # the whole key in 63 bits: one pass
        key = ((((file_id * n_addr + aid) * n_addr + bid) * 512 + proto + 256 * one_way) << 32) + qa * 65536 + qb
        key, _ = pd.factorize(key)
        return {"key": key.astype(np.int64), "fwd": ~swap, "pa": pa, "pb": pb, "has_ports": c["has_ports"]}
    k, _ = pd.factorize((file_id * n_addr + aid) * n_addr + bid)
    k, _ = pd.factorize(k.astype(np.int64) * 512 + proto + 256 * one_way)
    key = k.astype(np.int64) * (1 << 32) + qa * 65536 + qb
    key, _ = pd.factorize(key)
    return {"key": key.astype(np.int64), "fwd": ~swap, "pa": pa, "pb": pb, "has_ports": c["has_ports"]}


def flows(
    packets: pd.DataFrame,
    *,
    idle_timeout_s: float | None = None,
    seed: int = 0,
    community_id: bool = True,
    columns: Collection[str] | None = None,
) -> pd.DataFrame:
    """Bidirectional flows of a packet table (``read_packets`` output), one row per flow (FLOW_COLUMNS).

    ``idle_timeout_s`` None uses Zeek's per-protocol defaults (TCP 300 s, others 60 s); a number
    applies to every protocol. ``seed`` is the Community ID seed. ``columns``: only these of FLOW_COLUMNS and the
    flow's key (:data:`KEY_COLUMNS`), the same values and rows as in the whole table, the others not computed.
    """
    check_packets(packets, idle_timeout_s)
    return flow_rows(packets, packets, idle_timeout_s=idle_timeout_s, seed=seed, community_id=community_id, columns=columns)


def check_packets(packets: pd.DataFrame, idle_timeout_s: float | None) -> None:
    """Raise DecodeError unless ``packets`` has the columns flows need and the timeout is positive."""
    missing = [c for c in REQUIRED if c not in packets.columns]
    if missing:
        raise DecodeError(
            f"flows() needs the packet table of read_packets(); missing columns {missing}; "
            "pass pcaptools.read_packets(path) output"
        )
    if idle_timeout_s is not None and not idle_timeout_s > 0:
        raise DecodeError(f"idle_timeout_s must be a positive number of seconds, got {idle_timeout_s}")


def flow_rows(
    packets: pd.DataFrame,
    errors: pd.DataFrame,
    *,
    idle_timeout_s: float | None,
    seed: int,
    community_id: bool,
    fill_fragments: bool = True,
    columns: Collection[str] | None = None,
) -> pd.DataFrame:
    """Flows of ``packets`` with ICMP errors taken from the rows of ``errors`` (a packet table, row order kept).

    ``flows`` passes the same table twice; the bounded-memory path (:mod:`pcaptools.flow_stream`)
    passes one key partition and the errors quoting its keys, with fragment ports already filled
    (``fill_fragments=False``), so the flows of a partition are those of the whole table. ``columns``: as for
    :func:`flows` (None: every column).
    """
    need = {c.name for c in FLOW_COLUMNS} if columns is None else {*KEY_COLUMNS, *columns}
    files = _cat(packets["file"]) if "file" in packets.columns else pd.Categorical(np.zeros(len(packets)))
    src_all = cid.addresses(packets["src"])
    dst_all = cid.addresses(packets["dst"])
    proto_all = _i64(packets["proto"])
    ok = src_all[2] & dst_all[2] & (proto_all >= 0) & (src_all[3] == dst_all[3])
    rows = np.flatnonzero(ok)

    def col(name: str) -> np.ndarray:
        return _i64(packets[name])[rows]

    file_id = np.asarray(files.codes, np.int64)[rows]
    s = tuple(a[rows] for a in src_all)
    d = tuple(a[rows] for a in dst_all)
    proto = proto_all[rows]
    icmp = (proto == 1) | (proto == 58)
    p1 = np.where(icmp, col("icmp_type"), col("sport"))
    p2 = np.where(icmp, col("icmp_code"), col("dport"))
    if fill_fragments:
        p1, p2 = _fill_fragment_ports(file_id, s, d, proto, col("ip_id"), col("frag_offset"),
                                      np.asarray(packets["more_frags"], bool)[rows], p1, p2)  # fmt: skip

    # ICMP errors: the quoted tuple gets a key in the same key space as the packets (after theirs: the packets' keys
    # are numbered alike with or without them, so without the ICMP error columns the errors are not read at all)
    n = rows.size
    if need.isdisjoint(_ICMP_COLUMNS):
        kk = _keys(file_id, s, d, proto, p1, p2)
        erows = np.zeros(0, np.int64)
    else:
        erows, q_src, q_dst, q_proto_all = error_rows(errors, ok if errors is packets else None)
        e_files = errors["file"] if "file" in errors.columns else pd.Series(np.zeros(len(errors)))
        e_file_id = np.asarray(pd.Categorical(e_files, categories=files.categories).codes, np.int64)[erows]
        kk = _keys(
            np.r_[file_id, e_file_id],
            tuple(np.r_[a, q[erows]] for a, q in zip(s, q_src, strict=True)),
            tuple(np.r_[a, q[erows]] for a, q in zip(d, q_dst, strict=True)),
            np.r_[proto, q_proto_all[erows]],
            np.r_[p1, _i64(errors["icmp_q_sport"])[erows]],
            np.r_[p2, _i64(errors["icmp_q_dport"])[erows]],
        )
    key_all = kk["key"]
    key, err_key = key_all[:n], key_all[n:]

    ts = col("ts_ns")
    # np.lexsort((ts, key)) as two stable sorts: by time (packets come nearly in time order), then by key, a radix
    # sort when the keys (numbered from 0) fit 16 bits
    order = np.argsort(ts, kind="stable")
    k = key[order]
    order = order[np.argsort(k.astype(np.uint16) if n and k.max() < 1 << 16 else k, kind="stable")]
    rows, key, ts, proto, file_id = rows[order], key[order], ts[order], proto[order], file_id[order]

    def scol(name: str) -> np.ndarray:
        return _i64(packets[name])[rows]

    fwd = kk["fwd"][:n][order]
    pa, pb = kk["pa"][:n][order], kk["pb"][:n][order]
    has_ports = kk["has_ports"][:n][order]
    flags = np.maximum(scol("tcp_flags"), 0)
    tcp = proto == 6
    flags = np.where(tcp, flags, 0)
    pos = np.arange(n, dtype=np.int64)

    # --- split into flows ----------------------------------------------------------------------
    if idle_timeout_s is None:
        to_s = np.full(n, OTHER_TIMEOUT_S)
        for p, t in IDLE_TIMEOUT_S.items():
            to_s[proto == p] = t
    else:
        to_s = np.full(n, float(idle_timeout_s))
    new_key = np.r_[True, key[1:] != key[:-1]] if n else np.zeros(0, bool)
    gap = np.r_[0, np.diff(ts)] if n else np.zeros(0, np.int64)
    tboundary = new_key | (gap > (to_s * 1e9).astype(np.int64))
    syn = tcp & (flags & SYN > 0) & (flags & ACK == 0)
    close = tcp & (flags & (FIN | RST) > 0)
    seg_start = np.maximum.accumulate(np.where(tboundary, pos, 0)) if n else pos
    last_close = _prev_max(np.where(close, pos, -1))
    last_syn = _prev_max(np.where(syn, pos, -1))
    boundary = tboundary | (syn & (last_close >= seg_start) & (last_close > last_syn))
    fid = np.cumsum(boundary) - 1
    nf = int(fid[-1]) + 1 if n else 0
    starts = np.flatnonzero(boundary)
    ends = np.r_[starts[1:] - 1, n - 1] if nf else starts

    # --- orientation ---------------------------------------------------------------------------
    first_syn = _first(syn, fid, nf)
    orig_is_fwd = np.where(first_syn >= 0, fwd[np.maximum(first_syn, 0)], fwd[starts] if nf else fwd[:0])
    is_o = fwd == orig_is_fwd[fid]
    is_r = ~is_o

    def sum_by(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x.astype(np.int64), starts) if nf else np.zeros(0, np.int64)

    ip_len = np.maximum(scol("ip_len"), 0)
    plen = np.maximum(scol("payload_len"), 0)
    wire = np.maximum(scol("wirelen"), 0)
    depth = scol("tunnel_depth")
    tunnelled = depth > 0

    first_o = _first(is_o, fid, nf)
    prow = rows[first_o] if nf else first_o
    out: dict[str, object] = {}
    out["file"] = _take_cat(files, prow)
    src_c, dst_c = _cat(packets["src"]), _cat(packets["dst"])
    out["orig_h"] = _take_cat(src_c, prow)
    out["resp_h"] = _take_cat(dst_c, prow)
    hp = has_ports[first_o] if nf else has_ports[:0]
    out["orig_p"] = np.where(hp, pa[first_o] if nf else pa[:0], -1)
    out["resp_p"] = np.where(hp, pb[first_o] if nf else pb[:0], -1)
    out["proto"] = proto[starts]
    out["first_ts_ns"] = ts[starts]
    out["last_ts_ns"] = ts[ends]
    out["duration_ns"] = ts[ends] - ts[starts]
    out["orig_pkts"] = sum_by(is_o)
    out["resp_pkts"] = sum_by(is_r)
    for side, m in (("orig", is_o), ("resp", is_r)):
        for name, x in (("bytes", ip_len), ("payload_bytes", plen), ("wire_bytes", wire)):
            if f"{side}_{name}" in need:
                out[f"{side}_{name}"] = sum_by(x * m)
    if need.isdisjoint(_TUNNEL_COLUMNS):
        return _finish(out, need, errors, order, s, d, first_o, fid, nf, starts, ts, tcp, flags, is_o, plen, syn, scol, proto,
                       erows, err_key, key, seed, community_id)  # fmt: skip

    link = _cat(packets["link"])
    link_len = np.array([LINK_HEADER.get(str(c), 0) for c in link.categories] + [0], np.int64)
    lcodes = np.asarray(link.codes, np.int64)[rows]
    hdr = link_len[np.where(lcodes >= 0, lcodes, len(link_len) - 1)] + 4 * (scol("vlan") >= 0)
    out["encap_overhead_bytes"] = sum_by(np.where(tunnelled, np.maximum(wire - ip_len - hdr, 0), 0))

    ft = _first(tunnelled, fid, nf)
    trow = np.where(ft >= 0, rows[np.maximum(ft, 0)], -1) if nf else ft
    out["tunnel"] = _take_cat(_cat(packets["tunnel"]), trow)
    vni = _i64(packets["vni"])
    out["vni"] = np.where(trow >= 0, vni[np.maximum(trow, 0)], -1)
    t_is_o = np.where(ft >= 0, is_o[np.maximum(ft, 0)], True) if nf else ft.astype(bool)
    o_src, o_dst = _cat(packets["outer_src"]), _cat(packets["outer_dst"])
    a = _take_cat(o_src, np.where(t_is_o, trow, -1)).astype(object)
    b = _take_cat(o_dst, np.where(t_is_o, -1, trow)).astype(object)
    out["outer_orig_h"] = pd.Categorical(np.where(pd.isna(a), b, a))
    a = _take_cat(o_dst, np.where(t_is_o, trow, -1)).astype(object)
    b = _take_cat(o_src, np.where(t_is_o, -1, trow)).astype(object)
    out["outer_resp_h"] = pd.Categorical(np.where(pd.isna(a), b, a))
    out["seen_tunneled"] = sum_by(tunnelled) > 0
    out["seen_native"] = sum_by(~tunnelled) > 0
    return _finish(out, need, errors, order, s, d, first_o, fid, nf, starts, ts, tcp, flags, is_o, plen, syn, scol, proto,
                   erows, err_key, key, seed, community_id)  # fmt: skip


KEY_COLUMNS = ("file", "uid", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "first_ts_ns")
"""Columns of a flow table that :func:`flows` given ``columns`` always has: its key, its first packet's time, its uid."""

_TUNNEL_COLUMNS = frozenset(("encap_overhead_bytes", "tunnel", "vni", "outer_orig_h", "outer_resp_h", "seen_tunneled", "seen_native"))
_TCP_OPTIONS = frozenset(("mss_orig", "mss_resp", "wscale_orig", "wscale_resp"))
_ICMP_COLUMNS = frozenset(("icmp_errors", "icmp_error_type", "icmp_error_code", "icmp_mtu"))


def _finish(out, need, errors, order, s, d, first_o, fid, nf, starts, ts, tcp, flags, is_o, plen, syn, scol, proto, erows, err_key,
            key, seed, community_id) -> pd.DataFrame:  # noqa: ANN001  # fmt: skip
    """:func:`flow_rows` past the per-flow sums: TCP statistics, history, state, ICMP errors, Community ID and uid, of
    the columns in ``need``; the table sorted by (first packet, uid) and typed."""
    if not need.isdisjoint({"syn_synack_ns", "synack_ack_ns", "handshake_ns", "retransmissions", "out_of_order",
                            "zero_windows", "resets", "state", *_TCP_OPTIONS}):  # fmt: skip
        out.update(_tcp_stats(fid, nf, starts, ts, tcp, flags, is_o, plen, syn, scol, need))
    if "history" in need:
        out["history"] = _history(fid, nf, proto, flags, plen, is_o)
    if "state" in need:
        out["state"] = _state(fid, nf, tcp[starts] if nf else tcp[:0], flags, plen, is_o, syn, out)
    for k in ("_synack", "_rst", "_fin_o", "_fin_r", "_orig_after_synack"):
        out.pop(k, None)
    if not need.isdisjoint(_ICMP_COLUMNS):
        out.update(_icmp_errors(errors, erows, err_key, key, starts, ts, fid, nf))
    out = {k: v for k, v in out.items() if k in need}

    res = pd.DataFrame(out)
    # hash inputs from the originator's first packet: addresses as (hi, lo), no re-parsing of text
    fo = order[np.maximum(first_o, 0)]  # the rows before sorting: a flow's few, not every row reordered
    sh, sl, dh, dl = (x[fo] for x in (s[0], s[1], d[0], d[1]))
    v6 = s[3][fo]
    po, pr = res["orig_p"].to_numpy(np.int64), res["resp_p"].to_numpy(np.int64)
    if "community_id" in need:
        ids = np.full(nf, None, object)
        if community_id and nf:
            ids = cid.community_id_u128(sh, sl, dh, dl, v6, out["proto"], po, pr, np.ones(nf, bool), seed=seed)
        res["community_id"] = pd.array(ids, dtype="str")
    res["uid"] = pd.array(_uids(res, sh, sl, dh, dl, v6), dtype="str")
    res = res.sort_values(["first_ts_ns", "uid"], kind="stable", ignore_index=True)
    kept = tuple(c for c in FLOW_COLUMNS if c.name in need)
    # only the columns not of their dtype yet: pandas' astype costs about half a millisecond a column, even a no-op one
    dtypes = {c.name: c.dtype for c in kept if c.dtype != "category" and res[c.name].dtype != c.dtype}
    res = res.astype(dtypes)
    if "state" in need:
        res["state"] = pd.Categorical(res["state"], categories=list(FLOW_STATES))
    res = res[[c.name for c in kept]]
    return validate(res, kept, table="flow")


def error_rows(
    packets: pd.DataFrame, ok: np.ndarray | None = None, parse: Callable = cid.addresses
) -> tuple[np.ndarray, tuple, tuple, np.ndarray]:
    """Rows of ICMP errors quoting an IP packet, and the parsed quoted addresses and protocol of every row.

    ``ok`` (rows with a flow key, when the caller has it) saves parsing the addresses again; ``parse``
    is how an address column is parsed (the windowed path caches addresses across windows)."""
    proto = _i64(packets["proto"])
    if ok is None:
        src, dst = parse(packets["src"]), parse(packets["dst"])
        ok = src[2] & dst[2] & (proto >= 0) & (src[3] == dst[3])
    q_src, q_dst = parse(packets["icmp_q_src"]), parse(packets["icmp_q_dst"])
    q_proto = _i64(packets["icmp_q_proto"])
    is_err = ok & ((proto == 1) | (proto == 58)) & q_src[2] & q_dst[2] & (q_proto >= 0)  # not np.isin: ~5 ms a 200k rows
    return np.flatnonzero(is_err), q_src, q_dst, q_proto


def _fill_fragment_ports(
    file_id: np.ndarray, s: tuple, d: tuple, proto: np.ndarray, ip_id: np.ndarray,
    frag_offset: np.ndarray, more: np.ndarray, p1: np.ndarray, p2: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Non-first fragments take (p1, p2) of the first fragment of the same datagram, when captured."""
    later = frag_offset > 0
    if not later.any():
        return p1, p2
    first = (frag_offset == 0) & more
    cols = {"f": file_id, "sh": s[0], "sl": s[1], "dh": d[0], "dl": d[1], "p": proto, "id": ip_id}
    keys = pd.DataFrame(cols)
    heads = keys[first].assign(p1=p1[first], p2=p2[first]).drop_duplicates(list(cols), keep="first")
    tails = keys[later].reset_index()
    m = tails.merge(heads, on=list(cols), how="left")
    got = m["p1"].notna().to_numpy()
    p1, p2 = p1.copy(), p2.copy()
    idx = m["index"].to_numpy()[got]
    p1[idx] = m["p1"].to_numpy()[got].astype(np.int64)
    p2[idx] = m["p2"].to_numpy()[got].astype(np.int64)
    return p1, p2


def _tcp_stats(fid, nf, starts, ts, tcp, flags, is_o, plen, syn, col, need=None) -> dict:  # noqa: ANN001
    """Handshake timing, options, retransmissions, out-of-order, zero windows and resets per flow (options and
    out-of-order only if in ``need``, a set of column names, when given)."""
    res: dict[str, np.ndarray] = {}
    synack = tcp & (flags & SYN > 0) & (flags & ACK > 0)
    ack = tcp & (flags & ACK > 0) & (flags & SYN == 0)
    fs = _first(syn & is_o, fid, nf)
    fsa = _first(synack & ~is_o, fid, nf)
    sa_ts = np.where(fsa >= 0, ts[np.maximum(fsa, 0)], np.iinfo(np.int64).max) if nf else fsa
    fa = _first(ack & is_o & (ts >= sa_ts[fid]) if nf else ack, fid, nf)

    def dt(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ok = (x >= 0) & (y >= 0)
        v = ts[np.maximum(y, 0)] - ts[np.maximum(x, 0)] if nf else x
        return np.where(ok & (v >= 0), v, -1)

    res["syn_synack_ns"] = dt(fs, fsa)
    res["synack_ack_ns"] = dt(fsa, fa)
    res["handshake_ns"] = np.where((res["syn_synack_ns"] >= 0) & (res["synack_ack_ns"] >= 0),
                                   res["syn_synack_ns"] + res["synack_ack_ns"], -1)  # fmt: skip
    for name, c in (("mss", "tcp_mss"), ("wscale", "tcp_wscale")) if need is None or not need.isdisjoint(_TCP_OPTIONS) else ():
        v = col(c)
        for side, m in (("orig", is_o), ("resp", ~is_o)):
            f = _first(tcp & m & (v >= 0), fid, nf)
            res[f"{name}_{side}"] = np.where(f >= 0, v[np.maximum(f, 0)], -1) if nf else f

    seq = col("tcp_seq")
    fin = tcp & (flags & FIN > 0)
    rst = tcp & (flags & RST > 0)
    seg = tcp & (seq >= 0) & ((plen > 0) | (flags & (SYN | FIN) > 0))
    retrans = np.zeros(len(fid), bool)
    if seg.any():
        retrans[seg] = _seen_before(fid[seg], is_o[seg], seq[seg], plen[seg], flags[seg] & 3)
    # out of order: unwrap sequence numbers per (flow, direction), compare with the running max end
    ooo = np.zeros(len(fid), bool)
    t = np.flatnonzero(tcp & (seq >= 0)) if need is None or "out_of_order" in need else np.zeros(0, np.int64)
    if t.size:
        g = fid[t] * 2 + is_o[t]
        o2 = np.argsort(g, kind="stable")
        t, g = t[o2], g[o2]
        sq = seq[t]
        gstart = np.r_[True, g[1:] != g[:-1]]
        step = np.r_[0, np.diff(sq)]
        step = ((step + (1 << 31)) % (1 << 32)) - (1 << 31)
        step[gstart] = 0
        cs = np.cumsum(step)
        base = np.maximum.accumulate(np.where(gstart, np.arange(t.size), 0))
        rel = cs - cs[base]
        end = rel + plen[t] + ((flags[t] & (SYN | FIN)) > 0)
        grank = np.cumsum(gstart) - 1
        big = np.int64(1) << 44
        prev = _prev_max(end + grank * big)
        prev = np.where(gstart, np.iinfo(np.int64).min, prev - grank * big)
        ooo[t] = (plen[t] > 0) & (rel < prev) & ~retrans[t]
    win = col("tcp_win")

    def cnt(m: np.ndarray) -> np.ndarray:
        return np.add.reduceat(m.astype(np.int64), starts) if nf else np.zeros(0, np.int64)

    res["retransmissions"] = cnt(retrans)
    res["out_of_order"] = cnt(ooo)
    res["zero_windows"] = cnt(tcp & (win == 0) & ~rst)
    res["resets"] = cnt(rst)
    res["_fin_o"] = cnt(fin & is_o) > 0
    res["_fin_r"] = cnt(fin & ~is_o) > 0
    res["_rst"] = cnt(rst) > 0
    res["_synack"] = fsa >= 0
    res["_orig_after_synack"] = (_first(is_o & (ts > sa_ts[fid]), fid, nf) >= 0) if nf else fsa >= 0
    return res


def _seen_before(f: np.ndarray, o: np.ndarray, seq: np.ndarray, plen: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether each row's (flow, direction, sequence, payload length, SYN/FIN bits) came in an earlier row
    (``DataFrame.duplicated``); packed exactly into one or two integers when they fit (sequence 32 bits, length
    17, flow 11), which hashes one column instead of five (~10x faster)."""
    if len(seq) and seq.min() >= 0 and seq.max() < 1 << 32 and plen.min() >= 0 and plen.max() < 1 << 17 and x.min() >= 0 and x.max() < 4:
        k = (((o.astype(np.int64) << 32 | seq.astype(np.int64)) << 17 | plen.astype(np.int64)) << 2) | x.astype(np.int64)  # 52 bits
        if f.min() >= 0 and f.max() < 1 << 11:
            return pd.Series((f.astype(np.int64) << 52) | k).duplicated().to_numpy()
        return pd.DataFrame({"f": f, "k": k}).duplicated().to_numpy()
    return pd.DataFrame({"f": f, "o": o, "s": seq, "l": plen, "x": x}).duplicated().to_numpy()


def _history(fid, nf, proto, flags, plen, is_o) -> np.ndarray:  # noqa: ANN001
    """The history string of each flow, built once per distinct letter sequence."""
    tcp = proto == 6
    udp = proto == 17
    kinds = (
        tcp & (flags & SYN > 0) & (flags & ACK == 0),
        tcp & (flags & SYN > 0) & (flags & ACK > 0),
        tcp & (flags & ACK > 0) & (flags & (SYN | FIN | RST) == 0) & (plen == 0),
        (tcp & (plen > 0)) | udp,
        tcp & (flags & FIN > 0),
        tcp & (flags & RST > 0),
    )
    big = np.iinfo(np.int64).max
    firsts = np.full((nf, 12), big, np.int64)
    for i, k in enumerate(kinds):
        for side, m in ((0, is_o), (1, ~is_o)):
            f = _first(k & m, fid, nf)
            firsts[:, i + 6 * side] = np.where(f >= 0, f, big)
    letters = HISTORY_LETTERS + HISTORY_LETTERS.lower()
    srt = np.argsort(firsts, axis=1, kind="stable")
    present = np.take_along_axis(firsts, srt, axis=1) < big
    code = np.zeros(nf, np.int64)
    for j in range(12):
        code = code * 13 + np.where(present[:, j], srt[:, j] + 1, 0)
    uniq, inv = np.unique(code, return_inverse=True)
    texts = []
    for c in uniq:
        digits = []
        c = int(c)
        while c:
            c, r = divmod(c, 13)
            if r:
                digits.append(letters[r - 1])
        texts.append("".join(reversed(digits)))
    return np.array(texts, dtype=object)[inv.ravel()] if nf else np.zeros(0, object)


def _state(fid, nf, tcp_flow, flags, plen, is_o, syn, out) -> np.ndarray:  # noqa: ANN001
    """FLOW_STATES value of each flow (see the module docstring for the rules)."""
    syn_o = _first(syn & is_o, fid, nf) >= 0
    synack = out.pop("_synack")
    rst = out.pop("_rst")
    fin_o, fin_r = out.pop("_fin_o"), out.pop("_fin_r")
    after = out.pop("_orig_after_synack")
    data = (np.add.reduceat(plen, np.flatnonzero(np.r_[True, fid[1:] != fid[:-1]])) > 0) if nf else syn_o
    tcp_state = np.select(
        [rst & syn_o & ~synack & ~data, rst, fin_o & fin_r, fin_o | fin_r, syn_o & ~synack,
         syn_o & synack & ~after, syn_o | synack],
        ["rejected", "reset", "closed", "half-closed", "attempt", "half-open", "established"],
        default="midstream",
    )  # fmt: skip
    other = np.where(out["resp_pkts"] > 0, "bidirectional", "oneway")
    return np.where(tcp_flow, tcp_state, other)


def _icmp_errors(packets, erows, err_key, key, starts, ts, fid, nf) -> dict:  # noqa: ANN001
    """Count ICMP errors on the flow whose key the quoted packet has; keep the last type/code/MTU."""
    res = {
        "icmp_errors": np.zeros(nf, np.int64),
        "icmp_error_type": np.full(nf, -1, np.int64),
        "icmp_error_code": np.full(nf, -1, np.int64),
        "icmp_mtu": np.full(nf, -1, np.int64),
    }
    if erows.size == 0 or nf == 0:
        return res
    e_ts = _i64(packets["ts_ns"])[erows]
    fkey = key[starts]
    fts = ts[starts]
    ne = erows.size
    k = np.r_[fkey, err_key]
    t = np.r_[fts, e_ts]
    typ = np.r_[np.zeros(nf, np.int64), np.ones(ne, np.int64)]
    o = np.lexsort((typ, t, k))
    ks, typs = k[o], typ[o]
    p = np.arange(o.size)
    is_flow = typs == 0
    prev_flow = np.maximum.accumulate(np.where(is_flow, p, -1))
    nxt = np.where(is_flow, p, o.size)
    next_flow = np.minimum.accumulate(nxt[::-1])[::-1]
    pf = np.where(prev_flow >= 0, prev_flow, 0)
    nfp = np.where(next_flow < o.size, next_flow, 0)
    use_prev = (prev_flow >= 0) & (ks[pf] == ks)
    use_next = ~use_prev & (next_flow < o.size) & (ks[nfp] == ks)
    target = np.where(use_prev, o[pf], np.where(use_next, o[nfp], -1))
    e_target = np.full(ne, -1, np.int64)
    emask = typs == 1
    e_target[o[emask] - nf] = target[emask]
    hit = e_target >= 0
    if not hit.any():
        return res
    res["icmp_errors"] = np.bincount(e_target[hit], minlength=nf).astype(np.int64)
    et, etype = e_target[hit], _i64(packets["icmp_type"])[erows][hit]
    ecode, emtu = _i64(packets["icmp_code"])[erows][hit], _i64(packets["icmp_mtu"])[erows][hit]
    eo = np.lexsort((e_ts[hit], et))
    last = np.r_[et[eo][1:] != et[eo][:-1], True]
    res["icmp_error_type"][et[eo][last]] = etype[eo][last]
    res["icmp_error_code"][et[eo][last]] = ecode[eo][last]
    with_mtu = eo[emtu[eo] >= 0]
    if with_mtu.size:
        last = np.r_[et[with_mtu][1:] != et[with_mtu][:-1], True]
        res["icmp_mtu"][et[with_mtu][last]] = emtu[with_mtu][last]
    return res


def _uids(res: pd.DataFrame, sh, sl, dh, dl, v6) -> np.ndarray:  # noqa: ANN001
    """Stable flow ids: 'C' + 16 base32 chars of BLAKE2b over file name, oriented tuple and first timestamp."""
    import base64

    proto = res["proto"].to_numpy(np.int64)
    pa = res["orig_p"].to_numpy(np.int64)
    pb = res["resp_p"].to_numpy(np.int64)
    m, length = cid.hash_inputs(sh, sl, dh, dl, v6, proto, np.maximum(pa, 0), np.maximum(pb, 0), pa >= 0)
    ts = res["first_ts_ns"].to_numpy(np.int64)
    files = res["file"].astype(object).to_numpy()
    out = np.empty(len(res), dtype=object)
    for i in range(len(res)):
        h = hashlib.blake2b(m[i, : length[i]].tobytes(), digest_size=10)
        h.update(str(files[i]).encode())
        h.update(int(ts[i]).to_bytes(8, "big", signed=True))
        out[i] = "C" + base64.b32encode(h.digest()).decode("ascii").lower()
    return out


def read_flows(
    paths: str | list[str],
    *,
    idle_timeout_s: float | None = None,
    seed: int = 0,
    community_id: bool = True,
    memory: int | str | None = None,
) -> pd.DataFrame:
    """Flows of one or more capture files, each decoded with ``read_packets``; flows are per file. A dataset
    directory (``pcaptools convert``) stands for its capture files, read from Parquet.

    ``memory`` (bytes, or a size such as ``"2GiB"``) bounds the memory used: each file is then read
    in windows and its flows computed by :func:`pcaptools.flow_stream.iter_flows`, with the same result.
    ``attrs["skipped"]`` holds the records the reader skipped, by file and reason (files without any left out).
    """
    from pcaptools.dataset import expand_inputs

    paths = expand_inputs([paths] if isinstance(paths, str) else list(paths))
    if not paths:
        raise DecodeError("no capture files given; pass one or more pcap/pcapng paths")
    opts = {"idle_timeout_s": idle_timeout_s, "seed": seed, "community_id": community_id}
    skipped: dict[str, dict[str, int]] = {}  # the readers' skipped records, kept in the result's attrs["skipped"]
    if memory is not None:
        from pcaptools.flow_stream import read_flows_bounded
        from pcaptools.units import MIN_MEMORY, parse_bytes

        try:
            cap = parse_bytes(str(memory), minimum=MIN_MEMORY)
        except ValueError as e:
            raise DecodeError(f"memory: {e}") from None
        res = concat_flows([read_flows_bounded(p, memory=cap, skipped=skipped, **opts) for p in paths])
    else:
        from pcaptools.packets import read_packets

        parts = []
        for p in paths:
            pk = read_packets(p)
            add_skipped(skipped, pk.attrs)  # summed, as the bounded run sums its windows (a file given twice: twice)
            parts.append(flows(pk, **opts))
            del pk
        res = concat_flows(parts)
    res.attrs["skipped"] = {k: v for k, v in skipped.items() if sum(v.values())}
    return res


def concat_flows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Flow tables of several files as one (categories unified, state kept as its closed vocabulary); tables of some
    columns only (:func:`flows`' ``columns``) keep those."""
    if len(parts) == 1:
        return parts[0]
    res = pd.concat(parts, ignore_index=True)
    kept = tuple(c for c in FLOW_COLUMNS if c.name in res.columns)
    for c in kept:
        if c.dtype == "category":
            res[c.name] = res[c.name].astype("category")
    if "state" in res.columns:
        res["state"] = pd.Categorical(res["state"], categories=list(FLOW_STATES))
    return validate(res, kept, table="flow")


make_callable(__name__, "flows")  # pcaptools.flows(...) calls flows(); see pcaptools._callable
