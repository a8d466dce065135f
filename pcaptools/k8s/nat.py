"""NAT steps from a hops table: where along each packet's journey its tuple was rewritten, by whom, and why.

:func:`order_hops` puts each journey's sightings in causal order. Corrected timestamps alone can
misorder two nodes' sightings that are closer than the clock error, so the order is (a) TTL / hop
limit, which routing only lowers, then (b) the capture node's role for that packet: a node owning
the (outer) source sends before an unrelated node (a load balancer or router in between), which
comes before the node owning the (outer) destination; then (c) corrected time. Owners come from the
inventory (pod -> its node, node addresses, pod-CIDR addresses); without one only (a) and (c) apply.

:func:`nat_table` compares consecutive sightings: a changed (dst, dport) is a DNAT, a changed
(src, sport) a SNAT; on a reply they undo a forward translation (un-SNAT, un-DNAT). Each one is
classified with the inventory's service frontends (:data:`NAT_KINDS`) and attributed to a node:
the node of both sightings when they share one; else the node owning the translated address when it
is one of the two; else not the host where the packet starts or ends; else the node of the later
sighting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.correlate.fingerprint import combine
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.journeys import grouped, run_causal_order
from pcaptools.labels import categorical, category_codes, codes_in, vocabulary
from pcaptools.schema import NAT_COLUMNS, NAT_KINDS, NAT_OPS, validate

_NEED = ("journey", "hop", "point", "node", "ts_corrected_ns", "src", "dst", "sport", "dport", "proto", "ttl",
         "tunnel", "outer_src", "outer_dst")  # fmt: skip


def _check(hops: pd.DataFrame) -> None:
    missing = [c for c in _NEED if c not in hops.columns]
    if missing:
        raise TypeError(f"hops table lacks columns {missing}; pass pcaptools.correlate(...).hops")


def _owner_codes(col: pd.Series, inventory: Inventory, vocab: pd.Index) -> np.ndarray:
    """Per row, the code in ``vocab`` of the node owning the address (-1 unknown): one inventory lookup per category."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    own = vocab.get_indexer(pd.Index([inventory.entity(str(a))[2] for a in cat.categories], dtype=object))
    return np.append(own, -1).astype(np.int64)[np.asarray(cat.codes)]  # code -1 (missing) takes the trailing -1


def _node_codes(hops: pd.DataFrame, inventory: Inventory | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Capture node code per row, and the owning node's code of src/dst/outer_src/outer_dst (-1 unknown)."""
    names = category_codes(hops["node"])[1] if isinstance(hops["node"].dtype, pd.CategoricalDtype) else sorted(set(hops["node"].astype(str)))
    if inventory is not None:
        names = list(dict.fromkeys(names + list(inventory.nodes)))
    vocab = pd.Index(names, dtype=object)
    point_node = codes_in(hops["node"], vocab)
    owners = {}
    for c in ("src", "dst", "outer_src", "outer_dst"):
        if inventory is None:
            owners[c] = np.full(len(hops), -1, np.int64)
        else:
            owners[c] = _owner_codes(hops[c], inventory, vocab)
    return point_node, owners


def order_hops(hops: pd.DataFrame, inventory: Inventory | None = None) -> pd.DataFrame:
    """The hops table with each journey's sightings in causal order (TTL, sender/receiver role, corrected time); ``hop`` renumbered."""
    _check(hops)
    if not len(hops):
        return hops.copy()
    order, hop = causal_order(hops, inventory)
    out = hops.reset_index(drop=True) if order is None else take_rows(hops, order)  # often causal already: no copy
    out["hop"] = hop
    return out


def causal_order(hops: pd.DataFrame, inventory: Inventory | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """(the row order :func:`order_hops` gives, None when the rows are in it already; each row's ``hop`` in that
    order): for callers that take only some columns in that order (:func:`pcaptools.k8s.paths._build`)."""
    point_node, own = _node_codes(hops, inventory)
    j = hops["journey"].to_numpy(np.int64)
    ttl = hops["ttl"].to_numpy(np.int64)
    ts = hops["ts_corrected_ns"].to_numpy(np.int64)
    if grouped(j):  # the correlation's order: each journey's few rows compared and sorted in one compiled pass
        c = np.ascontiguousarray
        order, hop, moved = run_causal_order(c(j), c(ttl), c(point_node), c(own["src"]), c(own["outer_src"]), c(own["dst"]),
                                             c(own["outer_dst"]), c(ts))  # fmt: skip
        return (order if moved else None), hop
    known = point_node >= 0
    sends = known & ((point_node == own["src"]) | (point_node == own["outer_src"]))
    recvs = known & ((point_node == own["dst"]) | (point_node == own["outer_dst"]))
    role = np.where(sends, 0, np.where(recvs, 2, 1)).astype(np.int64)
    # one role per (journey, ttl, node): a node's own sightings keep their (exact, same-clock) time order
    grp = pd.factorize(combine([j, ttl, point_node]))[0]
    gmin = np.full(int(grp.max()) + 1, 2, np.int64)
    np.minimum.at(gmin, grp, role)
    order = np.lexsort((ts, gmin[grp], -ttl, j))
    jj = j[order]
    start = np.ones(len(jj), bool)
    start[1:] = jj[1:] != jj[:-1]
    first = np.flatnonzero(start)
    hop = (np.arange(len(jj)) - np.repeat(first, np.diff(np.append(first, len(jj))))).astype(np.int16)
    return order, hop


def take_rows(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``df.iloc[rows].reset_index(drop=True)``, taking numpy and category columns by array (pandas' take is 2x slower)."""
    moved = np.flatnonzero(rows != np.arange(len(rows))) if len(rows) == len(df) else None
    if moved is not None and len(moved) < len(rows) // 4:  # a permutation moving few rows: copy, then move those

        def pick(a: np.ndarray) -> np.ndarray:
            got = a[rows[moved]]
            if np.array_equal(got, a[moved]):  # only equal values move (a journey's id within it): the column as it is
                return a
            out = a.copy()
            out[moved] = got
            return out
    else:

        def pick(a: np.ndarray) -> np.ndarray:
            return a[rows]

    cols = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cols[c] = pd.Categorical.from_codes(pick(np.asarray(s.array.codes)), dtype=s.dtype, validate=False)
        elif isinstance(s.dtype, np.dtype):
            cols[c] = pick(s.to_numpy())
        else:
            cols[c] = s.iloc[rows].reset_index(drop=True)
    out = pd.DataFrame(cols, copy=False)
    out.attrs = dict(df.attrs)
    return out


def _frontends(addr: np.ndarray, port: np.ndarray, proto: np.ndarray, fe: pd.DataFrame, vocab: pd.Index) -> np.ndarray:
    """Per (address code in ``vocab``, port, proto), the row of ``fe`` (its first for that frontend) it is, else -1."""
    n = len(port)
    if fe.empty or n == 0:
        return np.full(n, -1, np.int64)

    def key(a: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:  # exact: ports are -1..65535, protocols 0..255
        return (a.astype(np.int64) * 65537 + p.astype(np.int64) + 1) * 256 + q.astype(np.int64)

    fa = vocab.get_indexer(pd.Index(fe["addr"].astype(str).to_numpy(object), dtype=object))
    fk = np.where(fa >= 0, key(fa, fe["port"].to_numpy(), fe["proto"].to_numpy()), -1)
    uk, first = np.unique(fk, return_index=True)  # a frontend listed twice: its first row, as a left merge keeps
    pos = pd.Index(uk).get_indexer(key(addr, port, proto))
    return np.where(pos >= 0, first[np.maximum(pos, 0)], -1)


def _lookup(flags: pd.Series, keys: np.ndarray) -> np.ndarray:
    """``flags.reindex(keys).fillna(False)`` as a bool array; by binary search when the index is sorted and unique."""
    idx = flags.index
    if not (flags.dtype == bool and idx.dtype.kind in "iu" and idx.is_monotonic_increasing and idx.is_unique):
        return flags.reindex(keys).fillna(False).to_numpy(bool)
    iv = idx.to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(iv, keys), max(len(iv) - 1, 0))
    if not len(iv):
        return np.zeros(len(keys), bool)
    return (iv[pos] == keys) & flags.to_numpy(bool)[pos]


def _group_rank(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row within its group of equal ``keys``, in row order; row index of its group's first row)."""
    o = np.arange(len(keys)) if grouped(keys) else np.argsort(keys, kind="stable")  # NAT rows come in journey order
    k = keys[o]
    start = np.ones(len(k), bool)
    start[1:] = k[1:] != k[:-1]
    head = np.maximum.accumulate(np.where(start, np.arange(len(k)), 0))
    rank = np.empty(len(k), np.int64)
    rank[o] = np.arange(len(k)) - head
    first = np.empty(len(k), np.int64)
    first[o] = o[head]
    return rank, first


def endpoint_changes(j: np.ndarray, ok: np.ndarray, addr: np.ndarray, port: np.ndarray) -> np.ndarray:
    """Per sighting (hops in causal order, ``j`` their journeys, ``ok`` those with both addresses): whether the
    journey's previous sighting had another ``addr`` / ``port`` (codes of one endpoint): the sighting after a NAT step."""
    out = np.zeros(len(j), bool)
    if len(j) > 1:
        out[1:] = (j[1:] == j[:-1]) & ok[1:] & ok[:-1] & ((addr[1:] != addr[:-1]) | (port[1:] != port[:-1]))
    return out


def nat_table(
    hops: pd.DataFrame, inventory: Inventory | None = None, *, reply: pd.Series | None = None, ordered: bool = False,
    codes: tuple[pd.Index, np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """One row per address/port translation between consecutive sightings of a journey (NAT_COLUMNS).

    ``reply`` (bool per journey id) marks journeys travelling server -> client; without it a journey is
    a reply when one of its changes restores a service frontend or un-masquerades a node address.
    ``ordered=True`` skips :func:`order_hops` when the table is already in causal order.
    Addresses, nodes and services are integer codes throughout; the inventory is asked once per distinct address.
    ``codes``: (vocabulary of src and dst, src codes, dst codes) of the ordered table, when the caller has them.
    """
    _check(hops)
    h = hops if ordered else order_hops(hops, inventory)
    j = h["journey"].to_numpy(np.int64)
    ok = (h["proto"].to_numpy() >= 0) & h["src"].notna().to_numpy() & h["dst"].notna().to_numpy()
    if codes is not None and ordered:  # the caller's codes are of this table's rows
        vocab, s, d = codes
    else:
        vocab = vocabulary(h["src"], h["dst"])
        s, d = codes_in(h["src"], vocab), codes_in(h["dst"], vocab)
    sp = h["sport"].to_numpy(np.int64)
    dp = h["dport"].to_numpy(np.int64)
    rows_d = np.flatnonzero(endpoint_changes(j, ok, d, dp))
    rows_s = np.flatnonzero(endpoint_changes(j, ok, s, sp))
    # one NAT row per change, the dst change first (PREROUTING before POSTROUTING, both directions)
    after = np.concatenate([rows_d, rows_s])
    is_dst = np.concatenate([np.ones(len(rows_d), bool), np.zeros(len(rows_s), bool)])
    o = np.lexsort((~is_dst, after))
    after, is_dst = after[o], is_dst[o]
    before = after - 1  # a change is seen at a row against the row before it
    proto = h["proto"].to_numpy(np.int16)[after]
    used = h.loc[:, ["point", "ts_corrected_ns", "src", "sport", "dst", "dport"]]  # the columns a NAT row takes from its sightings
    hb, ha = take_rows(used, before), take_rows(used, after)
    # the translated endpoint, before and after, as codes in ``vocab``
    addr_b = np.where(is_dst, d[before], s[before])
    addr_a = np.where(is_dst, d[after], s[after])
    port_b = np.where(is_dst, hb["dport"], hb["sport"]).astype(np.int32)
    port_a = np.where(is_dst, ha["dport"], ha["sport"]).astype(np.int32)
    fe = inventory.frontends() if inventory is not None else pd.DataFrame(columns=["addr", "port", "proto", "via", "service"])
    fe_b = _frontends(addr_b, port_b, proto, fe, vocab)
    fe_a = _frontends(addr_a, port_a, proto, fe, vocab)
    ents = [inventory.entity(a) for a in vocab] if inventory is not None else [("", "", "")] * len(vocab)
    is_node = np.array([e[0] == "node" for e in ents], bool)
    is_ext = np.array([e[0] == "external" for e in ents], bool)
    jn = j[after]
    if reply is not None:
        rep = _lookup(pd.Series(reply), jn)
    else:
        undo = (~is_dst & (fe_a >= 0)) | (is_dst & (fe_b < 0) & is_node[addr_b])
        rep = pd.Series(undo).groupby(jn).transform("any").to_numpy(bool)
    op = np.where(is_dst, np.where(rep, 3, 0), np.where(rep, 2, 1))  # codes of NAT_OPS
    snat = (op == 1) | (op == 3)
    # classify: service frontends name DNATs (before) and un-DNATs (after); node addresses name masquerades
    fe_row = np.where(op == 0, fe_b, np.where(op == 2, fe_a, -1))
    via = np.array([NAT_KINDS.index(v) for v in fe["via"]] + [-1], np.int64)[fe_row]
    # SNAT: the address after is the node's; un-SNAT: the one before. The far end (the server, or the server
    # answering) decides egress
    masq = snat & np.where(op == 1, is_node[addr_a], is_node[addr_b])
    peer_ext = is_ext[np.where(is_dst, s[after], d[after])]
    kind = np.where(via >= 0, via, np.where(masq, np.where(peer_ext, 3, 4), 5))
    # a masquerade belongs to the service its connection's DNAT named: the journey's first named service
    svc_names = pd.Index(sorted(set(fe["service"]))) if len(fe) else pd.Index([], dtype=object)
    svc = np.append(svc_names.get_indexer(fe["service"]) if len(fe) else np.zeros(0, np.int64), -1)[fe_row]
    if len(svc):
        named = np.flatnonzero(svc >= 0)
        first_named = np.full(len(svc), -1, np.int64)
        _, grp_first = _group_rank(jn)
        hit = np.full(len(svc), len(svc), np.int64)
        np.minimum.at(hit, grp_first[named], named)
        first_named = hit[grp_first]
        svc = np.where(first_named < len(svc), svc[np.minimum(first_named, len(svc) - 1)], -1)
    svc = np.where((kind == 5) | (kind == 3), -1, svc)
    node_names, node = _attribute(h, before, after, is_dst, inventory, s, d, ents, vocab)
    step, _ = _group_rank(jn)
    vocab_s = np.array(list(vocab), object)
    out = pd.DataFrame(
        {
            "journey": jn,
            "connection": np.full(len(after), -1, np.int64),
            "step": step.astype(np.int16),
            "op": pd.Categorical.from_codes(op, categories=list(NAT_OPS)),
            "nat_kind": pd.Categorical.from_codes(kind, categories=list(NAT_KINDS)),
            "service": categorical(np.array(list(svc_names), object), svc),
            "node": categorical(node_names, node),
            "reply": rep,
            "from_point": hb["point"].astype("category"),
            "to_point": ha["point"].astype("category"),
            "ts_corrected_ns": ha["ts_corrected_ns"].to_numpy(np.int64),
            "proto": proto,
            "addr_before": categorical(vocab_s, addr_b),
            "port_before": port_b,
            "addr_after": categorical(vocab_s, addr_a),
            "port_after": port_a,
            "src_before": hb["src"].astype("category"),
            "sport_before": hb["sport"].to_numpy(np.int32),
            "dst_before": hb["dst"].astype("category"),
            "dport_before": hb["dport"].to_numpy(np.int32),
            "src_after": ha["src"].astype("category"),
            "sport_after": ha["sport"].to_numpy(np.int32),
            "dst_after": ha["dst"].astype("category"),
            "dport_after": ha["dport"].to_numpy(np.int32),
        }
    )
    return validate(out, NAT_COLUMNS, table="nat")


def _attribute(h: pd.DataFrame, before: np.ndarray, after: np.ndarray, is_dst: np.ndarray, inventory: Inventory | None,
               s: np.ndarray, d: np.ndarray, ents: list[tuple[str, str, str]], vocab: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """(node names, code of the node that applied each translation, -1 if none): see the module doc for the rules.
    ``s``/``d``: address codes in ``vocab``, ``ents``: the inventory's entity of each ``vocab`` address."""
    cat = h["node"].array if isinstance(h["node"].dtype, pd.CategoricalDtype) else pd.Categorical(h["node"])
    codes = np.asarray(cat.codes)
    names = [str(c) for c in cat.categories]
    if inventory is not None:
        names = list(dict.fromkeys(names + list(inventory.nodes)))
    names_s = np.array(names, object)
    unnamed = np.append(names_s == "", True)  # a node named '' is no node, nor a missing one (code -1, the last)

    def node_at(rows: np.ndarray) -> np.ndarray:  # capture node code of those rows, -1 for none
        c = codes[rows].astype(np.int64)
        return np.where(unnamed[c], -1, c)

    nb, na = node_at(before), node_at(after)
    if not len(after):
        return names_s, na
    j = h["journey"].to_numpy(np.int64)
    if grouped(j):  # each journey one run of rows: its first and last row from the run starts
        starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
        ends = np.r_[starts[1:], len(j)] - 1
        first_b = starts[np.searchsorted(starts, before, side="right") - 1]
        last_a = ends[np.searchsorted(starts, after, side="right") - 1]
    else:
        ji = pd.factorize(j)[0]
        first_row = np.full(ji.max() + 1, len(h), np.int64)
        last_row = np.full(ji.max() + 1, -1, np.int64)
        np.minimum.at(first_row, ji, np.arange(len(h)))
        np.maximum.at(last_row, ji, np.arange(len(h)))
        first_b, last_a = first_row[ji][before], last_row[ji][after]

    def same(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # string equality: a missing node equals nothing
        return (x == y) & (x >= 0)

    starts = same(nb, node_at(first_b))
    ends = same(na, node_at(last_a))
    out = na
    if inventory is not None:
        # DNAT / un-SNAT: owner of the destination before; SNAT / un-DNAT: owner of the source after
        own_v = pd.Index(names, dtype=object).get_indexer(pd.Index([e[2] or None for e in ents], dtype=object))
        owner = np.append(own_v, -1)[np.where(is_dst, d[before], s[after])]
    else:
        owner = np.full(len(after), -1, np.int64)
    out = np.where(ends & ~starts, nb, out)
    out = np.where(starts, na, out)
    out = np.where((owner >= 0) & (same(owner, nb) | same(owner, na)), owner, out)
    out = np.where(same(nb, na), nb, out)
    return names_s, out
