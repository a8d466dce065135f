"""Turn a finished :class:`~pcaptools.decode.walk.Walk` into the packet table (schema.PACKET_COLUMNS).

Addresses become readable categories with one ``pd.factorize`` per column (the strings are built
for the unique values only); closed vocabularies use their full value list as categories so that
tables of several files concatenate without losing the category dtype.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from pcaptools.addr import from_u128, label
from pcaptools.decode import registry as R
from pcaptools.decode.walk import PARALLEL_MIN, Walk, usable_cores
from pcaptools.io.linktypes import linktype_name
from pcaptools.io.records import RecordBatch
from pcaptools.schema import DIRECTIONS, ERRORS, LAYERS, PACKET_COLUMNS, TUNNELS, validate


@nb.njit(cache=True, nogil=True)
def _unique_kernel(v, ok, hi):
    """The unique values of ``v`` over the ``ok`` rows in first-appearance order (pd.factorize(sort=False)),
    the open-addressing hash table that numbers them, and whether any ``ok`` row has a non-zero ``hi``."""
    n = v.shape[0]
    cap = 1024
    slot_val = np.zeros(cap, np.uint64)
    slot_code = np.full(cap, -1, np.int64)
    uniq = np.empty(256, np.uint64)
    nu = 0
    any_hi = False
    last = nb.uint64(0)
    have_last = False
    for i in range(n):
        if not ok[i]:
            continue
        if hi[i] != 0:
            any_hi = True
        x = v[i]
        if have_last and x == last:
            continue
        last = x
        have_last = True
        mask = cap - 1
        h = nb.int64((x * nb.uint64(0x9E3779B97F4A7C15)) >> nb.uint64(40)) & mask
        while slot_code[h] >= 0 and slot_val[h] != x:
            h = (h + 1) & mask
        if slot_code[h] >= 0:
            continue
        if nu == uniq.shape[0]:
            grown = np.empty(2 * nu, np.uint64)
            grown[:nu] = uniq[:nu]
            uniq = grown
        slot_val[h] = x
        slot_code[h] = nu
        uniq[nu] = x
        nu += 1
        if 2 * nu > cap:  # keep the table at most half full: rehash into twice the slots
            cap *= 2
            mask = cap - 1
            slot_val = np.zeros(cap, np.uint64)
            slot_code = np.full(cap, -1, np.int64)
            for c in range(nu):
                y = uniq[c]
                g = nb.int64((y * nb.uint64(0x9E3779B97F4A7C15)) >> nb.uint64(40)) & mask
                while slot_code[g] >= 0:
                    g = (g + 1) & mask
                slot_val[g] = y
                slot_code[g] = c
    return uniq[:nu].copy(), slot_val, slot_code, any_hi


@nb.njit(cache=True, nogil=True)
def _codes_kernel(v, ok, slot_val, slot_code, codes):
    """``codes[i]``: the number _unique_kernel's table gave ``v[i]``, -1 where not ``ok`` (``codes`` has the
    dtype pandas gives the category column, so it keeps the array as it is)."""
    mask = slot_val.shape[0] - 1
    last = nb.uint64(0)
    last_code = -1
    for i in range(v.shape[0]):
        if not ok[i]:
            codes[i] = -1
            continue
        x = v[i]
        if last_code < 0 or x != last:
            h = nb.int64((x * nb.uint64(0x9E3779B97F4A7C15)) >> nb.uint64(40)) & mask
            while slot_code[h] < 0 or slot_val[h] != x:
                h = (h + 1) & mask
            last = x
            last_code = slot_code[h]
        codes[i] = last_code


def code_dtype(k: int) -> type:
    """The codes dtype pandas gives a category column of ``k`` categories (int8 below 128, then int16...)."""
    return np.int8 if k < 128 else np.int16 if k < 32768 else np.int32 if k < 2**31 else np.int64


def _factorize_masked(v: np.ndarray, ok: np.ndarray, hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Codes (-1 where not ``ok``) and unique values of ``v`` over the ``ok`` rows only; any ``hi`` != 0 there.
    Two passes (find the values, then write codes of the narrowest dtype) write a byte or two a row, not 8."""
    uniq, slot_val, slot_code, any_hi = _unique_kernel(v, ok, v if hi is None else hi)
    codes = np.empty(v.shape[0], code_dtype(len(uniq)))
    _codes_kernel(v, ok, slot_val, slot_code, codes)
    return codes, uniq, bool(any_hi)


def _ip_category(hi: np.ndarray, lo: np.ndarray, ok: np.ndarray, v6: np.ndarray | None = None) -> pd.Categorical:
    """Address category column; IPv4-only columns (the usual case) need one factorize of ``lo``.

    IPv4 is held as ``::ffff:a.b.c.d``; ``v6`` marks rows whose address came from an IPv6 header,
    so a real IPv4-mapped IPv6 address there is labelled ``::ffff:…``, not as IPv4.
    """
    if v6 is not None and v6.any():  # (IPv4-only batches skip the five passes below)
        amb = ok & v6 & (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
        if amb.any():
            base = _ip_category(hi, lo, ok & ~amb)
            codes_a, uniq_a = pd.factorize(lo[amb])
            labels = [*base.categories, *(label(int(x), v6=True) for x in uniq_a)]
            codes = np.asarray(base.codes, dtype=np.int64).copy()
            codes[amb] = len(base.categories) + codes_a
            return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object), validate=False)
    codes, uniq, any_hi = _factorize_masked(lo, ok, hi)
    if len(uniq) and not any_hi:
        labels = [label(x) for x in uniq.tolist()]
        return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object), validate=False)
    if not len(uniq):  # no address in the column: every code is already -1
        return pd.Categorical.from_codes(codes, categories=pd.Index([], dtype=object), validate=False)
    return from_u128(hi, lo, ok)


def _mac_category(v: np.ndarray, ok: np.ndarray) -> pd.Categorical:
    codes, uniq, _ = _factorize_masked(v, ok)
    labels = [":".join(f"{(int(x) >> s) & 0xFF:02x}" for s in range(40, -8, -8)) for x in uniq.tolist()]
    return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object), validate=False)


def _vocab(codes: np.ndarray, values: tuple[str, ...]) -> pd.Categorical:
    """Category column of a closed vocabulary from 1-based signed codes (0 = missing)."""
    return pd.Categorical.from_codes(codes - codes.dtype.type(1), dtype=category_dtype(values), validate=False)


def _rules(codes: np.ndarray, rules: tuple[str, ...]) -> pd.Categorical:
    """The ``tunnel_rule`` column from the registry's rule numbers (-1: no tunnel)."""
    return pd.Categorical.from_codes(codes, dtype=category_dtype(rules), validate=False)


def _link_names(linktype: np.ndarray) -> pd.Categorical:
    """Link type names as categories (ascending link type number); one pass when all rows share one."""
    if len(linktype) and linktype.min() == linktype.max():  # one link type (every classic pcap)
        names = [linktype_name(int(linktype[0]))]
        return pd.Categorical.from_codes(np.zeros(len(linktype), np.int8), dtype=category_dtype(tuple(names)),
                                         validate=False)  # fmt: skip
    lt = linktype.astype(np.int64)
    present = np.flatnonzero(np.bincount(lt, minlength=1)) if len(lt) else np.zeros(0, np.int64)
    lut = np.full(int(lt.max()) + 1 if len(lt) else 1, -1, code_dtype(len(present)))
    lut[present] = np.arange(len(present))
    names = [linktype_name(int(x)) for x in present.tolist()]
    return pd.Categorical.from_codes(lut[lt], categories=pd.Index(names, dtype=object), validate=False)


def _int32(a: np.ndarray) -> np.ndarray:
    """``a.astype(np.int32)`` without a copy for 4-byte integers (uint32 -> int32 casts keep the bits)."""
    return a.view(np.int32) if a.dtype.kind in "iu" and a.dtype.itemsize == 4 else a.astype(np.int32)


def build(batch: RecordBatch, w: Walk, file_name: str) -> pd.DataFrame:
    """The packet table of one decoded batch, validated against PACKET_COLUMNS."""
    return build_many(w, [file_name])


def _stacked_category(parts: list[pd.Categorical], bounds: list[int]) -> pd.Categorical:
    """Per-batch category columns as one: the categories ``union_categoricals(..., ignore_order=True)`` gives (first
    seen), each batch's codes remapped through a small lookup into one array of the narrowest code dtype."""
    if len(parts) == 1:
        return parts[0]
    empty = np.zeros(0, np.int8)
    union = union_categoricals([pd.Categorical.from_codes(empty, categories=p.categories) for p in parts],
                               ignore_order=True)  # fmt: skip
    codes = np.empty(bounds[-1], code_dtype(len(union.categories)))
    for i, p in enumerate(parts):
        lut = np.append(union.categories.get_indexer(p.categories), -1).astype(codes.dtype)
        np.take(lut, np.asarray(p.codes), out=codes[bounds[i] : bounds[i + 1]])  # code -1 picks the trailing -1
    return pd.Categorical.from_codes(codes, dtype=union.dtype, validate=False)


def build_many(w: Walk, file_names: list[str]) -> pd.DataFrame:
    """The packet table of a walk over one or more batches (``file_names``: one per batch), validated against
    PACKET_COLUMNS; equal to stacking the tables of each batch with :func:`concat`, without copying the columns."""
    batches = w.batches
    bounds = w.bounds.tolist()
    n = bounds[-1]
    c = w.c
    sll = (w.first_kind == R.SLL) | (w.first_kind == R.SLL2)
    v6 = c["ip_version"] == 6
    per_batch = {  # the address and MAC categories: one hash pass each per batch, run side by side (nogil kernel)
        "eth_src": (_mac_category, c["eth_src"], c["eth_ok"]),
        "eth_dst": (_mac_category, c["eth_dst"], c["eth_ok"] & ~sll),
        "outer_src": (_ip_category, c["outer_src_hi"], c["outer_src_lo"], c["outer_ok"]),
        "outer_dst": (_ip_category, c["outer_dst_hi"], c["outer_dst_lo"], c["outer_ok"]),
        "src": (_ip_category, c["src_hi"], c["src_lo"], c["ip_ok"], v6),
        "dst": (_ip_category, c["dst_hi"], c["dst_lo"], c["ip_ok"], v6),
        "icmp_q_src": (_ip_category, c["q_src_hi"], c["q_src_lo"], c["q_ok"]),
        "icmp_q_dst": (_ip_category, c["q_dst_hi"], c["q_dst_lo"], c["q_ok"]),
        "direction": (_vocab, c["direction"], DIRECTIONS),  # closed vocabularies: one numpy pass each
        "tunnel": (_vocab, c["tunnel"], TUNNELS),
        "truncated_at": (_vocab, w.trunc, LAYERS),
        "error": (_vocab, w.err, ERRORS),
        "tunnel_rule": (_rules, c["tunnel_rule"], tuple(w.tables.rules)),
    }

    def column(fn, *args) -> pd.Categorical:
        """One category column: built per batch (on its rows), then stacked."""
        parts = [fn(*(x[bounds[i] : bounds[i + 1]] if isinstance(x, np.ndarray) else x for x in args))
                 for i in range(len(batches))]  # fmt: skip
        return _stacked_category(parts, bounds)

    files = [pd.Categorical.from_codes(np.zeros(len(b), np.int8), dtype=category_dtype((f,)), validate=False)
             for b, f in zip(batches, file_names, strict=True)]  # fmt: skip
    jobs = {name: (column, *job) for name, job in per_batch.items()}
    jobs.update({  # several batches: their record columns stacked beside the category work
        "record": (w._stacked, "record", np.int64),
        "ts_ns": (w._stacked, "ts_ns", np.int64),
        "iface": (w._stacked, "iface", np.uint32),
        "link": (lambda: _stacked_category([_link_names(b.linktype) for b in batches], bounds),),
        "file": (_stacked_category, files, bounds),
    })  # fmt: skip
    k = usable_cores() if n >= PARALLEL_MIN else 1
    if k > 1:  # the hash kernels, numpy's takes and copies run without the GIL
        with ThreadPoolExecutor(k) as pool:
            futures = {key: pool.submit(fn, *a) for key, (fn, *a) in jobs.items()}
            cat = {key: f.result() for key, f in futures.items()}
    else:
        cat = {key: fn(*a) for key, (fn, *a) in jobs.items()}
    cols: dict[str, object] = {
        "file": cat["file"],
        "record": cat["record"],
        "ts_ns": cat["ts_ns"],
        "iface": _int32(cat["iface"]),
        "caplen": _int32(w.caplen),
        "wirelen": _int32(w.wirelen),
        "link": cat["link"],
        "direction": cat["direction"],
        "ifindex": c["ifindex"],
        "eth_src": cat["eth_src"],
        "eth_dst": cat["eth_dst"],
        "vlan": c["vlan"],
        "ethertype": c["ethertype"],
        "tunnel": cat["tunnel"],
        "vni": c["vni"],
        "tunnel_depth": w.depth,
        "outer_src": cat["outer_src"],
        "outer_dst": cat["outer_dst"],
        "outer_proto": c["outer_proto"],
        "outer_sport": c["outer_sport"],
        "outer_dport": c["outer_dport"],
        "outer_len": w.outer_len(),
        "ip_version": c["ip_version"],
        "src": cat["src"],
        "dst": cat["dst"],
    }
    for name in ("proto", "sport", "dport", "ip_id", "ttl", "ip_len", "frag_offset", "more_frags", "dont_frag",
                 "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win", "tcp_mss", "tcp_wscale", "tcp_sack_ok", "tcp_tsval",
                 "tcp_tsecr", "icmp_type", "icmp_code", "icmp_mtu"):  # fmt: skip
        cols[name] = c[name]
    cols["icmp_q_src"] = cat["icmp_q_src"]
    cols["icmp_q_dst"] = cat["icmp_q_dst"]
    for name in ("icmp_q_proto", "icmp_q_sport", "icmp_q_dport", "payload_offset", "payload_len"):
        cols[name] = c[name]
    cols["truncated_at"] = cat["truncated_at"]
    cols["error"] = cat["error"]
    cols["tunnel_rule"] = cat["tunnel_rule"]
    if w.payload_hash:  # asked for: the payload-prefix hash the walk took (see decode/prefix.py)
        cols["payload_hash"] = w.phash
    names, index = _column_labels(w.payload_hash)
    df = pd.DataFrame({name: cols[name] for name in names}, columns=index, copy=False)
    return validate(df, PACKET_COLUMNS, table="packet")


@functools.lru_cache(maxsize=2)
def _column_labels(payload_hash: bool) -> tuple[tuple[str, ...], pd.Index]:
    """The packet table's column names and their Index, built once (an Index of text costs per batch)."""
    names = tuple(col.name for col in PACKET_COLUMNS) + (("payload_hash",) if payload_hash else ())
    return names, pd.Index(names)


@functools.lru_cache(maxsize=256)
def category_dtype(values: tuple[str, ...]) -> pd.CategoricalDtype:
    """The category dtype of a closed vocabulary (or a file name), built and checked once, not per batch."""
    return pd.CategoricalDtype(pd.Index(values, dtype=object))


def as_text(indexes: list[pd.Index]) -> list[pd.Index]:
    """Tables' categories of one column as text (tables from other decoders), as :func:`concat` stacks them."""
    return [pd.Index(list(c.astype(str)), dtype=object) for c in indexes]


def category_union(indexes: list[pd.Index]) -> pd.Categorical:
    """An empty Categorical over the union of tables' categories of one column, in first-seen order."""
    empty = np.zeros(0, np.int8)
    return union_categoricals([pd.Categorical.from_codes(empty, categories=c) for c in indexes], ignore_order=True)


def concat(frames: list[pd.DataFrame], columns: list[str] | None = None, *, text_categories: bool = False) -> pd.DataFrame:
    """Stack tables row-wise, one copy per column. Category columns keep their dtype with the categories
    ``union_categoricals(..., ignore_order=True)`` gives (first-seen order), found from the categories alone;
    each frame's codes are remapped through a small lookup, no work per row beyond one take.
    ``text_categories`` first turns every frame's categories into text (tables from other decoders)."""
    names = list(frames[0].columns) if columns is None else columns
    out: dict[str, object] = {}
    for name in names:
        first = frames[0][name]
        if isinstance(first.dtype, pd.CategoricalDtype):
            cats = [f[name].cat.categories for f in frames]
            if text_categories:
                cats = as_text(cats)
            codes = [f[name].cat.codes.to_numpy() for f in frames]
            union = category_union(cats)
            u = union.categories
            parts = []
            for c, k in zip(cats, codes, strict=True):
                lut = np.append(u.get_indexer(c), -1).astype(np.int64)
                parts.append(lut[k])  # code -1 (missing) picks the trailing -1
            out[name] = pd.Categorical.from_codes(np.concatenate(parts), dtype=union.dtype, validate=False)
        elif isinstance(first.dtype, np.dtype):
            out[name] = np.concatenate([f[name].to_numpy() for f in frames])
        else:  # another extension dtype: let pandas stack it
            out[name] = pd.concat([f[name] for f in frames], ignore_index=True)
    return pd.DataFrame(out, copy=False)
