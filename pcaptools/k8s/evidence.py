"""What point inference reads of a capture file's packets, as a bounded summary built batch by batch.

:mod:`pcaptools.k8s.discover` names a plain capture's node, role and pod from its packets' addresses.
It reads them only through :class:`Evidence`: one row per distinct combination of what it looks at
(pcapng interface, ``-i any`` ifindex, tunnelled or not, outer and inner addresses, opens a TCP
connection, a LoadBalancer nodePort it is sent to) with the number of packets showing it. That table
grows with the distinct address pairs of a file, not its packets, so it is accumulated over
:func:`pcaptools.packets.iter_packets` batches with bounded memory, and the in-memory path computes
the same table from its whole packet table (:func:`evidence_of`): both give the same evidence.

Two questions need packets, not address pairs, and are kept as consistent hash samples (exact up to a
cap, then the keys whose hash starts with ``shift`` zero bits, the same keys whichever way the file was
read): the timestamps that tell two node names sharing one clock (``clocks``), and the packets that
arrive for a LoadBalancer ingress IP and leave for a node (``lb``: a hash of source, source port,
IPv4 id, TCP seq and protocol, unchanged by the balancer's DNAT). Limits: beyond the caps those two
answers come from the sample; a 64-bit hash collision could join two different packets in ``lb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

KEYS = ("iface", "ifindex", "tun", "osrc", "odst", "src", "dst", "syn", "lbport")
"""Columns of an evidence table before its packet count ``n`` (``osrc``/``odst`` only for tunnelled packets)."""

CLOCK_KEYS = 1 << 18
"""Most (timestamp, length) keys a file keeps for the shared-clock check (8 bytes each)."""

LB_KEYS = 1 << 16
"""Most packet hashes a file keeps for the load-balancer check."""

_ADDR = ("osrc", "odst", "src", "dst")


Unit = tuple[int, int]
"""(pcapng interface, ifindex) of a packet: the part of a file a capture point can be."""


@dataclass
class Evidence:
    """The packets of one capture file (or part of it) as inference reads them (module doc)."""

    table: pd.DataFrame  # KEYS + n, rows in order of first appearance in the file
    clocks: dict[Unit, np.ndarray]  # distinct ts_ns ^ wirelen << 48 (uint64, sorted), sampled by clock_shift
    lb: dict[Unit, tuple[np.ndarray, np.ndarray]]  # distinct packet hashes to an LB ingress IP / to a node or pod
    clock_shift: int = 0
    lb_shift: int = 0

    def __len__(self) -> int:
        return int(self.table["n"].sum())

    @property
    def weights(self) -> np.ndarray:
        """Packets per row of the table."""
        return self.table["n"].to_numpy(np.int64)

    def pairs(self) -> pd.DataFrame:
        """Distinct (iface, ifindex) of the packets, as :func:`pcaptools.correlate.capture_set.split_entry` reads them."""
        return self.table[["iface", "ifindex"]].drop_duplicates().reset_index(drop=True).astype(np.int64)

    def part(self, *, iface: int = -1, ifindex: int = -1) -> Evidence:
        """The packets of one pcapng interface and/or one ifindex (-1: any)."""
        t = self.table
        keep = np.ones(len(t), bool)
        if iface >= 0:
            keep &= t["iface"].to_numpy(np.int64) == iface
        if ifindex >= 0:
            keep &= t["ifindex"].to_numpy(np.int64) == ifindex

        def mine(u: Unit) -> bool:
            return iface in (-1, u[0]) and ifindex in (-1, u[1])

        return Evidence(t[keep], {u: v for u, v in self.clocks.items() if mine(u)}, {u: v for u, v in self.lb.items() if mine(u)},
                        self.clock_shift, self.lb_shift)  # fmt: skip

    def clock_keys(self, shift: int) -> np.ndarray:
        """The distinct clock keys of all its units, sampled at ``shift`` (at least its own)."""
        keys = distinct(*self.clocks.values())
        return keys[sampled(pd.util.hash_array(keys), shift)] if shift > self.clock_shift else keys

    def translated(self) -> bool:
        """True when a packet seen arriving for a LoadBalancer ingress IP is seen leaving for a node or pod."""
        inn, out = distinct(*(a for a, _ in self.lb.values())), distinct(*(b for _, b in self.lb.values()))
        return bool(np.intersect1d(inn, out, assume_unique=True).size)


def _codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of a column: -1 for missing, values as objects."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(np.int64), np.asarray(col.cat.categories.astype(object), object)
    codes, uniq = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniq, object)


def _combine(cols: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Row codes of the distinct combinations of integer columns (first-appearance order) and each column's value
    per combination: mixed-radix keys re-factorized after each column, so they never overflow."""
    key = np.zeros(cols[0].shape[0], np.int64)
    for c in cols:
        lo = int(c.min()) if c.size else 0
        span = (int(c.max()) if c.size else 0) - lo + 1
        key, _ = pd.factorize(key * span + (c - lo))
        key = key.astype(np.int64)
    return key, [c[_first_rows(key)] for c in cols]


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """First row of each code (0..max), without sorting."""
    first = np.full(int(codes.max()) + 1 if codes.size else 0, codes.shape[0], np.int64)
    np.minimum.at(first, codes, np.arange(codes.shape[0], dtype=np.int64))
    return first


class EvidenceBuilder:
    """Accumulates :class:`Evidence` over a file's packet tables (batches in file order)."""

    def __init__(self, nodes) -> None:
        self.lb_ports = np.array(sorted(nodes.lb_ports), np.int64)
        self.lb_ips = set(nodes.lb_ips)
        self.inside = set(nodes.addr_node) | set(nodes.pod_ip)
        self.table: pd.DataFrame | None = None
        self.clocks: dict[Unit, np.ndarray] = {}
        self.lb: dict[Unit, tuple[np.ndarray, np.ndarray]] = {}
        self.clock_shift = 0
        self.lb_shift = 0

    def add(self, pk: pd.DataFrame) -> None:
        """Count one packet table's rows into the summary."""
        if not len(pk):
            return
        iface = pk["iface"].to_numpy(np.int64)
        ifindex = pk["ifindex"].to_numpy(np.int64)
        tun = pk["tunnel"].notna().to_numpy()
        flags = pk["tcp_flags"].to_numpy(np.int64)
        syn = (flags >= 0) & ((flags & 0x12) == 0x02)
        dport = pk["dport"].to_numpy(np.int64)
        lbport = np.where(np.isin(dport, self.lb_ports), dport, -1) if self.lb_ports.size else np.full(len(pk), -1, np.int64)
        cols: dict[str, np.ndarray] = {"iface": iface, "ifindex": ifindex, "tun": tun.astype(np.int64), "syn": syn.astype(np.int64),
                                       "lbport": lbport}  # fmt: skip
        values: dict[str, np.ndarray] = {}
        for c, src in zip(_ADDR, ("outer_src", "outer_dst", "src", "dst"), strict=True):
            codes, values[c] = _codes(pk[src])
            cols[c] = np.where(tun, codes, -1) if c in ("osrc", "odst") else codes
        row, per = _combine([cols[k] for k in KEYS])
        t = pd.DataFrame(dict(zip(KEYS, per, strict=True)))
        for c in _ADDR:
            k = t[c].to_numpy(np.int64)
            t[c] = np.append(values[c], None)[k]
        t["tun"], t["syn"] = t["tun"].to_numpy(bool), t["syn"].to_numpy(bool)
        t["n"] = np.bincount(row, minlength=len(t)).astype(np.int64)
        self.table = t if self.table is None else _merge(self.table, t)
        units = self._units(iface, ifindex)
        self._add_clocks(pk, units)
        if self.lb_ips:
            self._add_lb(pk, units)

    @staticmethod
    def _units(iface: np.ndarray, ifindex: np.ndarray) -> list[tuple[Unit, np.ndarray]]:
        """(unit, its rows) of a batch."""
        inv, (a, b) = _combine([iface, ifindex])
        if len(a) == 1:
            return [((int(a[0]), int(b[0])), np.arange(len(inv)))]
        return [((int(x), int(y)), np.flatnonzero(inv == k)) for k, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True))]

    def _add_clocks(self, pk: pd.DataFrame, units: list[tuple[Unit, np.ndarray]]) -> None:
        key = (pk["ts_ns"].to_numpy(np.int64) ^ (pk["wirelen"].to_numpy(np.int64) << 48)).view(np.uint64)
        for u, rows in units:
            k = key[rows]
            if self.clock_shift:
                k = k[sampled(pd.util.hash_array(k), self.clock_shift)]
            self.clocks[u] = distinct(self.clocks[u], k) if u in self.clocks else distinct(k)
        while sum(v.size for v in self.clocks.values()) > CLOCK_KEYS and self.clock_shift < 63:
            self.clock_shift += 1
            self.clocks = {u: v[sampled(pd.util.hash_array(v), self.clock_shift)] for u, v in self.clocks.items()}

    def _add_lb(self, pk: pd.DataFrame, units: list[tuple[Unit, np.ndarray]]) -> None:
        codes, vals = _codes(pk["dst"])
        lut_lb = np.append(np.array([v in self.lb_ips for v in vals], bool), False)
        lut_in = np.append(np.array([v in self.inside for v in vals], bool), False)
        to_lb, to_in = lut_lb[codes], lut_in[codes]
        for u, rows in units:
            rows = rows[to_lb[rows] | to_in[rows]]
            if not rows.size:
                continue
            sub = pk.iloc[rows]
            h = pd.util.hash_pandas_object(pd.DataFrame({
                "src": sub["src"].astype(object), "sport": sub["sport"].to_numpy(np.int64), "ip_id": sub["ip_id"].to_numpy(np.int64),
                "tcp_seq": sub["tcp_seq"].to_numpy(np.int64), "proto": sub["proto"].to_numpy(np.int64)}), index=False).to_numpy(np.uint64)  # fmt: skip
            keep = sampled(h, self.lb_shift)
            old = self.lb.get(u, (np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
            self.lb[u] = (distinct(old[0], h[keep & to_lb[rows]]), distinct(old[1], h[keep & to_in[rows]]))
        while sum(a.size + b.size for a, b in self.lb.values()) > LB_KEYS and self.lb_shift < 63:
            self.lb_shift += 1
            self.lb = {u: (a[sampled(a, self.lb_shift)], b[sampled(b, self.lb_shift)]) for u, (a, b) in self.lb.items()}

    def result(self) -> Evidence:
        """The evidence of everything added."""
        if self.table is None:
            t = pd.DataFrame({c: np.zeros(0, np.int64) for c in (*KEYS, "n")})
            t["tun"], t["syn"] = t["tun"].astype(bool), t["syn"].astype(bool)
            for c in _ADDR:
                t[c] = t[c].astype(object)
        else:
            t = self.table.reset_index(drop=True)
        return Evidence(t, dict(self.clocks), dict(self.lb), self.clock_shift, self.lb_shift)


def _merge(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Two evidence tables as one: counts of equal rows summed, rows in first-appearance order (``old`` first)."""
    both = pd.concat([old, new], ignore_index=True)
    cols = [pd.factorize(both[c].to_numpy(object) if c in _ADDR else both[c].to_numpy(), use_na_sentinel=False)[0].astype(np.int64)
            for c in KEYS]  # fmt: skip
    row, _ = _combine(cols)
    first = _first_rows(row)
    out = both.iloc[first].reset_index(drop=True)
    out["n"] = np.bincount(row, weights=both["n"].to_numpy(np.int64), minlength=first.shape[0]).astype(np.int64)
    return out


def distinct(*arrays: np.ndarray) -> np.ndarray:
    """Sorted distinct values of the arrays together (by sorting: numpy 2's hashing ``np.unique`` is ten times slower here)."""
    a = np.sort(np.concatenate([np.zeros(0, np.uint64), *arrays]) if len(arrays) != 1 else arrays[0], kind="stable")  # sorted runs merge
    return a[np.r_[True, a[1:] != a[:-1]]] if a.size else a


def sampled(h: np.ndarray, shift: int) -> np.ndarray:
    """Mask of the hashes kept at ``shift``: those whose top ``shift`` bits are zero (all at 0)."""
    return np.ones(h.shape[0], bool) if shift == 0 else (h >> np.uint64(64 - shift)) == 0


def evidence_of(pk: pd.DataFrame, nodes) -> Evidence:
    """The evidence of a whole packet table (the in-memory path: the same summary the streamed one builds)."""
    b = EvidenceBuilder(nodes)
    b.add(pk)
    return b.result()
