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
from pcaptools.labels import as_strings
from pcaptools.schema import NAT_COLUMNS, NAT_KINDS, NAT_OPS, validate

_NEED = ("journey", "hop", "point", "node", "ts_corrected_ns", "src", "dst", "sport", "dport", "proto", "ttl",
         "tunnel", "outer_src", "outer_dst")  # fmt: skip


def _check(hops: pd.DataFrame) -> None:
    missing = [c for c in _NEED if c not in hops.columns]
    if missing:
        raise TypeError(f"hops table lacks columns {missing}; pass pcaptools.correlate(...).hops")


def _codes(col: pd.Series, vocab: pd.Index) -> np.ndarray:
    """Codes of a category/string column in a shared vocabulary (-1 where missing or unknown)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    m = vocab.get_indexer(pd.Index([str(c) for c in cat.categories]))
    c = np.asarray(cat.codes, np.int64)
    return np.where(c >= 0, np.append(m, -1)[c], -1)


def _node_codes(hops: pd.DataFrame, inventory: Inventory | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Capture node code per row, and the owning node's code of src/dst/outer_src/outer_dst (-1 unknown)."""
    names = [str(c) for c in hops["node"].cat.categories] if isinstance(hops["node"].dtype, pd.CategoricalDtype) else sorted(set(hops["node"].astype(str)))
    if inventory is not None:
        names = list(dict.fromkeys(names + list(inventory.nodes)))
    vocab = pd.Index(names)
    point_node = _codes(hops["node"], vocab)
    owners = {}
    for c in ("src", "dst", "outer_src", "outer_dst"):
        if inventory is None:
            owners[c] = np.full(len(hops), -1, np.int64)
        else:
            owners[c] = _codes(inventory.lookup(hops[c])["node"], vocab)
    return point_node, owners


def order_hops(hops: pd.DataFrame, inventory: Inventory | None = None) -> pd.DataFrame:
    """The hops table with each journey's sightings in causal order (TTL, sender/receiver role, corrected time); ``hop`` renumbered."""
    _check(hops)
    if not len(hops):
        return hops.copy()
    point_node, own = _node_codes(hops, inventory)
    known = point_node >= 0
    sends = known & ((point_node == own["src"]) | (point_node == own["outer_src"]))
    recvs = known & ((point_node == own["dst"]) | (point_node == own["outer_dst"]))
    role = np.where(sends, 0, np.where(recvs, 2, 1)).astype(np.int64)
    j = hops["journey"].to_numpy(np.int64)
    ttl = hops["ttl"].to_numpy(np.int64)
    # one role per (journey, ttl, node): a node's own sightings keep their (exact, same-clock) time order
    grp = pd.factorize(combine([j, ttl, point_node]))[0]
    grole = pd.Series(role).groupby(grp).transform("min").to_numpy()
    order = np.lexsort((hops["ts_corrected_ns"].to_numpy(np.int64), grole, -ttl, j))
    out = hops.iloc[order].reset_index(drop=True)
    jj = j[order]
    start = np.ones(len(jj), bool)
    start[1:] = jj[1:] != jj[:-1]
    first = np.flatnonzero(start)
    out["hop"] = (np.arange(len(jj)) - np.repeat(first, np.diff(np.append(first, len(jj))))).astype(np.int16)
    return out


def _frontend_match(addr: pd.Series, port: np.ndarray, proto: np.ndarray, fe: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(via, service) of each (addr, port, proto) that is a service frontend, else ('', '')."""
    n = len(port)
    if fe.empty or n == 0:
        return np.full(n, "", object), np.full(n, "", object)
    left = pd.DataFrame({"addr": addr.astype(str).to_numpy(), "port": port.astype(np.int32), "proto": proto.astype(np.int16), "_i": np.arange(n)})
    m = left.merge(fe.drop_duplicates(["addr", "port", "proto"]), on=["addr", "port", "proto"], how="left").sort_values("_i")
    return m["via"].fillna("").to_numpy(object), m["service"].fillna("").to_numpy(object)


def nat_table(
    hops: pd.DataFrame, inventory: Inventory | None = None, *, reply: pd.Series | None = None, ordered: bool = False
) -> pd.DataFrame:
    """One row per address/port translation between consecutive sightings of a journey (NAT_COLUMNS).

    ``reply`` (bool per journey id) marks journeys travelling server -> client; without it a journey is
    a reply when one of its changes restores a service frontend or un-masquerades a node address.
    ``ordered=True`` skips :func:`order_hops` when the table is already in causal order.
    """
    _check(hops)
    h = hops if ordered else order_hops(hops, inventory)
    n = len(h)
    j = h["journey"].to_numpy(np.int64)
    ok = (h["proto"].to_numpy() >= 0) & h["src"].notna().to_numpy() & h["dst"].notna().to_numpy()
    vocab = pd.Index(sorted(set(map(str, h["src"].dropna().unique())) | set(map(str, h["dst"].dropna().unique()))))
    s = _codes(h["src"], vocab)
    d = _codes(h["dst"], vocab)
    sp = h["sport"].to_numpy(np.int64)
    dp = h["dport"].to_numpy(np.int64)
    prev = np.zeros(n, bool)
    if n > 1:
        prev[1:] = (j[1:] == j[:-1]) & ok[1:] & ok[:-1]
    pi = np.arange(n) - 1
    dchg = np.zeros(n, bool)
    schg = np.zeros(n, bool)
    dchg[1:] = prev[1:] & ((d[1:] != d[:-1]) | (dp[1:] != dp[:-1]))
    schg[1:] = prev[1:] & ((s[1:] != s[:-1]) | (sp[1:] != sp[:-1]))
    rows_d = np.flatnonzero(dchg)
    rows_s = np.flatnonzero(schg)
    # one NAT row per change, the dst change first (PREROUTING before POSTROUTING, both directions)
    after = np.concatenate([rows_d, rows_s])
    is_dst = np.concatenate([np.ones(len(rows_d), bool), np.zeros(len(rows_s), bool)])
    o = np.lexsort((~is_dst, after))
    after, is_dst = after[o], is_dst[o]
    before = pi[after]
    proto = h["proto"].to_numpy(np.int16)[after]
    used = h.loc[:, ["point", "ts_corrected_ns", "src", "sport", "dst", "dport"]]  # the columns a NAT row takes from its sightings
    hb, ha = used.iloc[before].reset_index(drop=True), used.iloc[after].reset_index(drop=True)
    # the translated endpoint, before and after
    src_s, dst_s = as_strings(h["src"]), as_strings(h["dst"])
    addr_b = pd.Series(np.where(is_dst, dst_s[before], src_s[before]))
    addr_a = pd.Series(np.where(is_dst, dst_s[after], src_s[after]))
    port_b = np.where(is_dst, hb["dport"], hb["sport"]).astype(np.int32)
    port_a = np.where(is_dst, ha["dport"], ha["sport"]).astype(np.int32)
    fe = inventory.frontends() if inventory is not None else pd.DataFrame(columns=["addr", "port", "proto", "via", "service"])
    via_b, svc_b = _frontend_match(addr_b, port_b, proto, fe)
    via_a, svc_a = _frontend_match(addr_a, port_a, proto, fe)
    if inventory is not None:
        kind_b = as_strings(inventory.lookup(addr_b)["kind"])
        kind_a = as_strings(inventory.lookup(addr_a)["kind"])
        # the far end of the connection (server for forward, the same seen from the reply) decides egress
        peer_kind = as_strings(inventory.lookup(pd.Series(np.where(is_dst, src_s[after], dst_s[after])))["kind"])
    else:
        kind_b = kind_a = peer_kind = np.full(len(after), "", object)
    jn = j[after]
    if reply is not None:
        rep = pd.Series(reply).reindex(jn).fillna(False).to_numpy(bool)
    else:
        undo = (~is_dst & (via_a != "")) | (is_dst & (via_b == "") & (kind_b == "node"))
        rep = pd.Series(undo).groupby(jn).transform("any").to_numpy(bool)
    op = np.where(is_dst, np.where(rep, "un-SNAT", "DNAT"), np.where(rep, "un-DNAT", "SNAT"))
    # classify: service frontends name DNATs (before) and un-DNATs (after); node addresses name masquerades
    via = np.where(op == "DNAT", via_b, np.where(op == "un-DNAT", via_a, ""))
    svc = np.where(op == "DNAT", svc_b, np.where(op == "un-DNAT", svc_a, ""))
    masq_addr_kind = np.where(op == "SNAT", kind_a, np.where(op == "un-SNAT", kind_b, ""))
    masq_peer_ext = np.where(op == "SNAT", peer_kind == "external", np.where(op == "un-SNAT", peer_kind == "external", False))
    # SNAT: peer = after dst (the server); un-SNAT: peer = after src (the server answering)
    masq = np.isin(op, ["SNAT", "un-SNAT"]) & (masq_addr_kind == "node")
    kind = np.where(via != "", via, np.where(masq, np.where(masq_peer_ext, "egress-masquerade", "service-masquerade"), "other"))
    # a masquerade belongs to the service its connection's DNAT named
    svc_s = pd.Series(np.where(svc == "", None, svc), dtype=object)
    svc = svc_s.groupby(jn).transform("first").fillna("").to_numpy(object) if len(svc_s) else svc
    svc = np.where((kind == "other") | (kind == "egress-masquerade"), "", svc)
    node = _attribute(h, before, after, is_dst, op, inventory, src_s, dst_s)
    step = pd.Series(np.ones(len(after), np.int64)).groupby(jn).cumsum().to_numpy() - 1
    out = pd.DataFrame(
        {
            "journey": jn,
            "connection": np.full(len(after), -1, np.int64),
            "step": step.astype(np.int16),
            "op": pd.Categorical(op, categories=list(NAT_OPS)),
            "nat_kind": pd.Categorical(kind, categories=list(NAT_KINDS)),
            "service": pd.Categorical(np.where(svc == "", None, svc)),
            "node": pd.Categorical(np.where(node == "", None, node)),
            "reply": rep,
            "from_point": hb["point"].astype("category"),
            "to_point": ha["point"].astype("category"),
            "ts_corrected_ns": ha["ts_corrected_ns"].to_numpy(np.int64),
            "proto": proto,
            "addr_before": pd.Categorical(addr_b),
            "port_before": port_b,
            "addr_after": pd.Categorical(addr_a),
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


def _attribute(h: pd.DataFrame, before: np.ndarray, after: np.ndarray, is_dst: np.ndarray, op: np.ndarray, inventory: Inventory | None,
               src_s: np.ndarray, dst_s: np.ndarray) -> np.ndarray:
    """Node that applied each translation (see the module doc for the rules); ``src_s``/``dst_s``: the addresses as strings."""
    nodes = as_strings(h["node"])
    nb, na = nodes[before], nodes[after]
    out = na.copy()
    if not len(after):
        return out
    j = h["journey"].to_numpy(np.int64)
    _, ji = np.unique(j, return_inverse=True)
    first_row = np.full(ji.max() + 1, len(h), np.int64)
    last_row = np.full(ji.max() + 1, -1, np.int64)
    np.minimum.at(first_row, ji, np.arange(len(h)))
    np.maximum.at(last_row, ji, np.arange(len(h)))
    first_row, last_row = first_row[ji], last_row[ji]
    starts = nb == nodes[first_row[before]]
    ends = na == nodes[last_row[after]]
    owner = np.full(len(after), "", object)
    if inventory is not None:
        # DNAT / un-SNAT: owner of the destination before; SNAT / un-DNAT: owner of the source after
        addr = np.where(is_dst, dst_s[before], src_s[after])
        owner = as_strings(inventory.lookup(pd.Series(addr))["node"])
    out = np.where(ends & ~starts, nb, out)
    out = np.where(starts, na, out)
    out = np.where((owner != "") & ((owner == nb) | (owner == na)), owner, out)
    out = np.where(nb == na, nb, out)
    return out

