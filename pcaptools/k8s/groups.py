"""Many connections told in a few rows: grouped by route (``paths``) and by kind of loss (``why``).

Two connections share a route when they have the same kind, client and its node, service, backend and its node,
NAT operations with the nodes that applied them, encapsulation and client-IP verdict. The NAT steps count by
operation and node, not by address: SNAT gives every connection a port of its own, and a route is what the
connections have in common. Per route: how many connections, the first packet's latency from its first to its last
capture point (median and 95th percentile over the connections seen at two points or more) and the first
connection, the one a listing shows as the route's example.

A kind of loss is a connection status, direction, cause, the last capture point that saw the packets and the first
that missed them (:class:`~pcaptools.k8s.diagnose.Diagnosis` losses): a thousand connections dropped at one place for
one reason are one row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROUTE_KEY = ("kind", "client", "client_node", "service", "backend", "backend_node", "nat_ops", "encap", "client_ip_preserved")
"""What two connections of one route share (``nat_ops``: :func:`nat_ops`; the others are path table columns)."""


def nat_ops(paths: pd.DataFrame, nat: pd.DataFrame | None) -> np.ndarray:
    """Per connection, the NAT steps of its first packet as ``DNAT@node-1, SNAT@node-2`` ('' if none): the
    operations in order and the node of each, from the NAT rows of the forward journeys (``nat``: a NAT table
    holding at least those)."""
    fwd = paths["forward_journey"].to_numpy(np.int64)
    out = np.full(len(fwd), "", object)
    if nat is None or not len(nat) or not len(fwd):
        return out
    j = nat["journey"].to_numpy(np.int64)
    keep = np.flatnonzero(np.isin(j, fwd))
    if not len(keep):
        return out
    j = j[keep]
    order = np.lexsort((nat["step"].to_numpy()[keep], j))  # steps in order within each journey
    j = j[order]
    at = keep[order]
    op, ops = pd.factorize(nat["op"].to_numpy(object)[at])
    node, nodes = pd.factorize(nat["node"].to_numpy(object)[at])  # -1: no node known
    pair, pairs = pd.factorize(op.astype(np.int64) * (len(nodes) + 1) + node + 1)
    names = np.array([f"{ops[p // (len(nodes) + 1)]}@{nodes[p % (len(nodes) + 1) - 1]}" if p % (len(nodes) + 1) else str(ops[p // (len(nodes) + 1)])
                      for p in pairs], object)  # fmt: skip
    step = names[pair]
    start = np.r_[True, j[1:] != j[:-1]]
    first = np.flatnonzero(start)
    which = np.cumsum(start) - 1
    rank = np.arange(len(j)) - first[which]
    text = step[first].copy()
    for k in range(1, int(rank.max()) + 1):  # a step position at a time, over every journey with that many steps
        more = rank == k
        text[which[more]] = text[which[more]] + ", " + step[more]
    uj = j[first]
    pos = np.minimum(np.searchsorted(uj, fwd), len(uj) - 1)
    found = uj[pos] == fwd
    out[found] = text[pos[found]]
    return out


def route_groups(paths: pd.DataFrame, nat: pd.DataFrame | None, ops: np.ndarray | None = None) -> pd.DataFrame:
    """One row per route (module doc), the most connections first (ties: the earlier first connection): the
    :data:`ROUTE_KEY` columns, ``connections``, ``latency_p50_ns`` and ``latency_p95_ns`` (<NA> when no connection
    of the route was seen at two points) and ``first_connection``. ``ops``: :func:`nat_ops` when already known (the
    NAT table is then not read)."""
    ops = nat_ops(paths, nat) if ops is None else ops
    codes = {c: pd.factorize(paths[c] if c != "nat_ops" else ops, use_na_sentinel=True)[0] for c in ROUTE_KEY}
    g = pd.DataFrame(codes).groupby(list(ROUTE_KEY), sort=False).ngroup().to_numpy(np.int64)  # in first-seen order
    n = int(g.max()) + 1 if len(g) else 0
    first = np.full(n, len(g), np.int64)
    np.minimum.at(first, g, np.arange(len(g)))
    lat = paths["latency_ns"].to_numpy(np.int64)
    seen = pd.Series(np.where(lat >= 0, lat, np.nan))
    by = seen.groupby(g)
    out = paths.iloc[first][[c for c in ROUTE_KEY if c != "nat_ops"]].reset_index(drop=True)
    out.insert(ROUTE_KEY.index("nat_ops"), "nat_ops", ops[first])
    out["connections"] = np.bincount(g, minlength=n)
    for q, name in ((0.5, "latency_p50_ns"), (0.95, "latency_p95_ns")):
        out[name] = by.quantile(q).reindex(range(n)).round().astype("Int64").array
    out["first_connection"] = paths["connection"].to_numpy(np.int64)[first]
    order = np.lexsort((out["first_connection"].to_numpy(), -out["connections"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


LOSS_KEY = ("status", "direction", "cause", "last_seen", "first_missed")
"""What the losses of one kind share (``status``: their connection's)."""


def loss_groups(connections: pd.DataFrame, losses: pd.DataFrame, listed: np.ndarray) -> pd.DataFrame:
    """The losses of the ``listed`` connections by kind (module doc), the most connections first (ties: the earlier
    first connection): :data:`LOSS_KEY`, ``connections`` (each counted once in a kind, and in every kind it has),
    ``packets`` and ``first_connection``. A listed connection without a loss (NAT its rules do not explain) is
    counted by its status alone, the other key columns empty."""
    kinds = LossGroups()
    kinds.add(connections, losses, listed)
    return kinds.table()


class LossGroups:
    """:func:`loss_groups` of connections given a part at a time (a streamed diagnosis' buckets, each with every loss
    of its connections): each part's kinds are counted and summed into the kinds so far, kept in order of first
    appearance, the kinds with a loss apart from those of connections without one (which :func:`loss_groups` counts
    after every loss). Held: a row per kind, not per connection."""

    _AGG = {"connections": "sum", "packets": "sum", "first_connection": "min"}

    def __init__(self) -> None:
        self._lossy: pd.DataFrame | None = None
        self._bare: pd.DataFrame | None = None

    def add(self, connections: pd.DataFrame, losses: pd.DataFrame, listed: np.ndarray) -> None:
        """Count the kinds of the ``listed`` connections of a part (``connections`` and ``losses``: its tables)."""
        status = pd.Series(connections["status"].astype(str).to_numpy(), index=connections["connection"].to_numpy(np.int64))
        listed = np.asarray(listed, np.int64)
        mine = losses.loc[np.isin(losses["connection"].to_numpy(np.int64), listed)]
        if len(mine):
            c = mine["connection"].to_numpy(np.int64)
            rows = pd.DataFrame({"status": status.reindex(c).fillna("ok").to_numpy(object), "direction": mine["direction"].astype(str).to_numpy(object),
                                 "cause": mine["cause"].astype(str).to_numpy(object), "last_seen": mine["last_seen"].astype(str).to_numpy(object),
                                 "first_missed": mine["first_missed"].astype(object).where(mine["first_missed"].notna(), "").astype(str).to_numpy(object),
                                 "connection": c, "packets": mine["packets"].to_numpy(np.int64)})  # fmt: skip
            self._lossy = self._summed(self._lossy, _kinds(rows))
        bare = listed[~np.isin(listed, mine["connection"].to_numpy(np.int64))]
        if len(bare):
            rows = pd.DataFrame({"status": status.reindex(bare).fillna("ok").to_numpy(object), "direction": "", "cause": "",
                                 "last_seen": "", "first_missed": "", "connection": bare, "packets": 0})  # fmt: skip
            self._bare = self._summed(self._bare, _kinds(rows))

    @classmethod
    def _summed(cls, before: pd.DataFrame | None, kinds: pd.DataFrame) -> pd.DataFrame:
        """Kinds counted so far and a part's, summed per kind (a connection lies in one part: its counts add up)."""
        if before is None:
            return kinds
        both = pd.concat([before, kinds], ignore_index=True)
        return both.groupby(list(LOSS_KEY), sort=False).agg(cls._AGG).reset_index()

    def table(self) -> pd.DataFrame:
        """The kinds counted: :func:`loss_groups`' table."""
        parts = [x for x in (self._lossy, self._bare) if x is not None]
        if not parts:
            return pd.DataFrame({**{k: pd.Series([], dtype=object) for k in LOSS_KEY}, "connections": pd.Series([], dtype=np.int64),
                                 "packets": pd.Series([], dtype=np.int64), "first_connection": pd.Series([], dtype=np.int64)})  # fmt: skip
        out = pd.concat(parts, ignore_index=True)
        order = np.lexsort((out["first_connection"].to_numpy(), -out["connections"].to_numpy()))
        return out.iloc[order].reset_index(drop=True)


def _kinds(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of (:data:`LOSS_KEY`, connection, packets) counted per kind, in order of first appearance: its
    ``connections`` (distinct), ``packets`` and ``first_connection``."""
    return rows.groupby(list(LOSS_KEY), sort=False).agg(connections=("connection", "nunique"), packets=("packets", "sum"),
                                                        first_connection=("connection", "min")).reset_index()  # fmt: skip
