"""The packets of each connection across capture points, in causal order: what a sequence diagram draws.

:func:`sequences` lays out one row per sighting (SEQUENCE_COLUMNS): the connection it belongs to (the
ids of :func:`pcaptools.k8s.paths.paths`), which packet of the connection it is, whether it travels
client -> server or back, the translation applied just before it (from the NAT table) and the
encapsulation around it there. Limits: those of :func:`pcaptools.k8s.paths.paths` (a reused 5-tuple
joins the earlier connection); packets are classified forward/reply by their first sighting's source.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pcaptools.fmt import endpoint
from pcaptools.k8s.nat import order_hops
from pcaptools.k8s.paths import _connections, as_inventory
from pcaptools.schema import SEQUENCE_COLUMNS, conform, empty

_FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"))


def packet_labels(proto: np.ndarray, tcp_flags: np.ndarray) -> np.ndarray:
    """Short packet names for people: 'SYN', 'SYN-ACK', 'PSH-ACK', 'UDP', 'ICMP', ... ."""
    out = np.full(len(proto), "", object)
    names = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
    for p, n in names.items():
        out[proto == p] = n
    tcp = np.flatnonzero((proto == 6) & (tcp_flags >= 0))
    flags, which = np.unique(np.asarray(tcp_flags)[tcp], return_inverse=True)  # a name per distinct flag set, not per packet
    if len(tcp):
        named = np.array(["-".join(n for bit, n in _FLAG_NAMES if int(f) & bit) or "TCP" for f in flags.tolist()], object)
        out[tcp] = named[which.reshape(-1)]
    rest = out == ""
    out[rest] = [f"proto {int(p)}" for p in proto[rest]]
    return out


def sequences(correlation, paths: pd.DataFrame, nat: pd.DataFrame | None = None, inventory=None, *,
              max_packets: int | None = None, labels: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per sighting of every connection's packets (SEQUENCE_COLUMNS), in connection, packet, causal order.

    ``paths`` and ``nat`` are :func:`pcaptools.k8s.paths.paths_and_nat` of the same correlation and inventory;
    ``max_packets`` keeps each connection's first packets only. Given a Correlation (not a bare hops table), a
    sighting after which its packet went missing names the point it never reached (``missing_at``). ``labels``:
    (sorted journeys, connection of each) of the whole hops table when ``correlation`` holds only some of its
    journeys (every connection's first ones, :func:`first_journeys`), as a streamed run gives them.
    """
    inv = as_inventory(inventory)
    hops = correlation if isinstance(correlation, pd.DataFrame) else correlation.hops
    keep = (hops["proto"].to_numpy() >= 0) & hops["src"].notna().to_numpy() & hops["dst"].notna().to_numpy()
    h = order_hops(hops.loc[keep].reset_index(drop=True), inv)
    if not len(h) or not len(paths):
        return empty(SEQUENCE_COLUMNS)
    if labels is None:
        uj, conn = _connections(h)
    else:
        uj = np.unique(h["journey"].to_numpy(np.int64))
        conn = labels[1][np.searchsorted(labels[0], uj)]
    j = h["journey"].to_numpy(np.int64)
    ji = np.searchsorted(uj, j)
    crow = conn[ji]
    tc = h["ts_corrected_ns"].to_numpy(np.int64)
    first = np.r_[True, j[1:] != j[:-1]]
    # packets of a connection in order of their first sighting
    jt = tc[first]
    jconn = conn
    order = np.lexsort((uj, jt, jconn))
    pk = np.empty(len(uj), np.int64)
    cstart = np.r_[True, jconn[order][1:] != jconn[order][:-1]]
    idx = np.arange(len(uj))
    pk[order] = idx - np.maximum.accumulate(np.where(cstart, idx, 0))
    start_t = pd.Series(jt).groupby(jconn).transform("min").to_numpy(np.int64)
    if max_packets is not None and len(uj):  # the connections' first packets only, before any text is made
        drawn = pk < max_packets
        if not drawn.all():
            rows = np.flatnonzero(drawn[ji])
            h = h.iloc[rows].reset_index(drop=True)
            uj, jconn, jt, pk, start_t = uj[drawn], jconn[drawn], jt[drawn], pk[drawn], start_t[drawn]
            j, tc, first = j[rows], tc[rows], first[rows]
            ji = np.searchsorted(uj, j)
            crow = jconn[ji]
    # forward: the first sighting's source is the client's as in the path table
    p = paths.set_index("connection")
    cli = p["client_addr"].astype(str).reindex(np.arange(conn.max() + 1)).to_numpy(object)
    cport = p["client_port"].reindex(np.arange(conn.max() + 1)).fillna(-2).to_numpy(np.int64)
    src0 = h["src"].astype(str).to_numpy(object)[first]
    sport0 = h["sport"].to_numpy(np.int64)[first]
    reply = ~((src0 == cli[jconn]) & (sport0 == cport[jconn]))
    labels = packet_labels(h["proto"].to_numpy(np.int64)[first], h["tcp_flags"].to_numpy(np.int64)[first])
    wl = h["wirelen"].to_numpy(np.int64)[first]
    labels = np.array([f"{lab} {w} B" for lab, w in zip(labels, wl.tolist(), strict=True)], object)
    enc = _encap_text(h)
    nat_txt = _nat_text(nat, uj, j, h["point"].astype(str).tolist(), tc)
    missing = np.full(len(h), "", object)
    ls = getattr(correlation, "losses", None)
    if ls is not None and len(ls):
        lost = pd.Series(ls["missing_at"].astype(str).to_numpy(object),
                         index=pd.MultiIndex.from_arrays([ls["journey"].to_numpy(np.int64), ls["point"].astype(str).to_numpy(object)]))
        lost = lost[~lost.index.duplicated()]
        missing = lost.reindex(pd.MultiIndex.from_arrays([j, h["point"].astype(str).to_numpy(object)])).fillna("").to_numpy(object)
    out = pd.DataFrame({
        "connection": crow, "packet": pk[ji], "journey": j, "reply": reply[ji], "hop": h["hop"].to_numpy(np.int16),
        "point": h["point"].astype(str), "node": h["node"].astype(str), "ts_corrected_ns": tc, "since_start_ns": tc - start_t[ji],
        "label": labels[ji], "nat": nat_txt, "encap": enc, "wirelen": h["wirelen"].to_numpy(np.int32),
        "missing_at": missing,
    })  # fmt: skip
    out = out.sort_values(["connection", "packet", "hop"], kind="stable", ignore_index=True)
    return conform(out, SEQUENCE_COLUMNS, table="sequences")


def _nat_text(nat: pd.DataFrame | None, journeys: np.ndarray, j: np.ndarray, points: list[str], tc: np.ndarray) -> np.ndarray:
    """Per sighting (journey ``j``, point, corrected time ``tc``) the translations made just before it ('DNAT
    a:p→b:q @node', '; '-joined in step order), '' where none: the NAT rows of ``journeys`` only."""
    out = np.full(len(j), "", object)
    if nat is None or not len(nat):
        return out
    n = nat.loc[np.isin(nat["journey"].to_numpy(np.int64), journeys)].sort_values(["journey", "step"])
    keys = zip(n["journey"].tolist(), n["to_point"].astype(str).tolist(), n["ts_corrected_ns"].tolist(), strict=True)
    steps = zip(n["op"], n["addr_before"], n["port_before"], n["addr_after"], n["port_after"], n["node"], strict=True)
    joined: dict[tuple, str] = {}
    for k, (op, a, pa, b, pb, node) in zip(keys, steps, strict=True):
        t = f"{op} {endpoint(str(a), int(pa))}→{endpoint(str(b), int(pb))}" + (f" @{node}" if isinstance(node, str) else "")
        joined[k] = f"{joined[k]}; {t}" if k in joined else t
    if joined:
        out[:] = [joined.get(k, "") for k in zip(j.tolist(), points, tc.tolist(), strict=True)]
    return out


def _encap_text(h: pd.DataFrame) -> np.ndarray:
    """Per sighting the encapsulation around it ('vxlan vni 4096 192.168.0.11→192.168.0.12'), '' where native: made
    once per distinct (tunnel, VNI, outer addresses), not per sighting."""
    enc = np.full(len(h), "", object)
    tun = np.flatnonzero(h["tunnel"].notna().to_numpy())
    if not len(tun):
        return enc
    cols = [h[c].to_numpy(object)[tun] for c in ("tunnel", "outer_src", "outer_dst")]
    vni = h["vni"].to_numpy(np.int64)[tun]
    key = pd.MultiIndex.from_arrays([*cols, vni])
    codes, uniq = pd.factorize(key)
    text = np.array([f"{t}{f' vni {v}' if v >= 0 else ''} {a}→{b}" for t, a, b, v in uniq], object)
    enc[tun] = text[codes]
    return enc


def first_journeys(parts: Iterable[pd.DataFrame], labels: tuple[np.ndarray, np.ndarray], inventory=None, *,
                   max_packets: int) -> np.ndarray:  # fmt: skip
    """The journeys of each connection's first ``max_packets`` packets as :func:`sequences` numbers them (by the
    corrected time of their causally first sighting, then journey), from the hops table in ``parts`` holding whole
    journeys; ``labels``: (sorted journeys, connection of each). One pass, at most ``max_packets`` kept a connection."""
    inv = as_inventory(inventory)
    uj, conn = labels
    best = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))  # connection, time, journey
    for hops in parts:
        keep = (hops["proto"].to_numpy() >= 0) & hops["src"].notna().to_numpy() & hops["dst"].notna().to_numpy()
        h = order_hops(hops.loc[keep].reset_index(drop=True), inv)
        if not len(h) or not len(uj):
            continue
        j = h["journey"].to_numpy(np.int64)
        first = np.r_[True, j[1:] != j[:-1]]
        jj, jt = j[first], h["ts_corrected_ns"].to_numpy(np.int64)[first]
        at = np.clip(np.searchsorted(uj, jj), 0, len(uj) - 1)
        known = uj[at] == jj
        c, t, jj = (np.concatenate([b, x]) for b, x in zip(best, (conn[at[known]], jt[known], jj[known]), strict=True))
        order = np.lexsort((jj, t, c))
        c, t, jj = c[order], t[order], jj[order]
        start = np.r_[True, c[1:] != c[:-1]]
        idx = np.arange(len(c))
        rank = idx - np.maximum.accumulate(np.where(start, idx, 0))
        top = rank < max_packets
        best = (c[top], t[top], jj[top])
    return np.sort(best[2])
