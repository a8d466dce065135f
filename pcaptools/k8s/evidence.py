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


@dataclass
class Evidence:
    """The packets of one capture file (or part of it) as inference reads them (module doc)."""

    table: pd.DataFrame  # KEYS + n, rows in order of first appearance in the file
    clocks: pd.DataFrame  # iface, ifindex, key (ts_ns ^ wirelen << 48): distinct, sampled by clock_shift
    lb: pd.DataFrame  # iface, ifindex, to_lb (bool), h: distinct packet hashes, sampled by lb_shift
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

        def pick(t: pd.DataFrame) -> pd.DataFrame:
            keep = np.ones(len(t), bool)
            if iface >= 0:
                keep &= t["iface"].to_numpy(np.int64) == iface
            if ifindex >= 0:
                keep &= t["ifindex"].to_numpy(np.int64) == ifindex
            return t[keep]

        return Evidence(pick(self.table), pick(self.clocks), pick(self.lb), self.clock_shift, self.lb_shift)


def _codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of a column: -1 for missing, values as objects."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy(np.int64), np.asarray(col.cat.categories.astype(object), object)
    codes, uniq = pd.factorize(col, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniq, object)


def _shrink(df: pd.DataFrame, col: str, shift: int, cap: int) -> tuple[pd.DataFrame, int]:
    """Raise ``shift`` until at most ``cap`` rows keep their hash (``col``) under it."""
    while len(df) > cap and shift < 63:
        shift += 1
        h = df[col].to_numpy(np.uint64)
        df = df[(h >> np.uint64(64 - shift)) == 0]
    return df, shift


class EvidenceBuilder:
    """Accumulates :class:`Evidence` over a file's packet tables (batches in file order)."""

    def __init__(self, nodes) -> None:
        self.lb_ports = np.array(sorted(nodes.lb_ports), np.int64)
        self.lb_ips = set(nodes.lb_ips)
        self.inside = set(nodes.addr_node) | set(nodes.pod_ip)
        self.parts: list[pd.DataFrame] = []
        self.clocks = pd.DataFrame({"iface": np.zeros(0, np.int64), "ifindex": np.zeros(0, np.int64),
                                    "key": np.zeros(0, np.uint64), "h": np.zeros(0, np.uint64)})  # fmt: skip
        self.lb = pd.DataFrame({"iface": np.zeros(0, np.int64), "ifindex": np.zeros(0, np.int64),
                                "to_lb": np.zeros(0, bool), "h": np.zeros(0, np.uint64)})  # fmt: skip
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
        cols: dict[str, np.ndarray] = {"iface": iface, "ifindex": ifindex, "tun": tun, "syn": syn, "lbport": lbport}
        values: dict[str, np.ndarray] = {}
        for c, src in zip(_ADDR, ("outer_src", "outer_dst", "src", "dst"), strict=True):
            codes, values[c] = _codes(pk[src])
            cols[c] = np.where(tun, codes, -1) if c in ("osrc", "odst") else codes
        g = pd.DataFrame(cols).groupby(list(KEYS), sort=False).size()  # first-appearance order
        t = g.index.to_frame(index=False)
        for c in _ADDR:
            k = t[c].to_numpy(np.int64)
            t[c] = np.where(k >= 0, np.append(values[c], None)[k], None)
        t["n"] = g.to_numpy(np.int64)
        self.parts = [self._merge([*self.parts, t])]
        self._add_clocks(pk, iface, ifindex)
        if self.lb_ips:
            self._add_lb(pk, iface, ifindex)

    @staticmethod
    def _merge(parts: list[pd.DataFrame]) -> pd.DataFrame:
        t = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if len(parts) == 1:
            return t
        g = t.groupby(list(KEYS), sort=False, dropna=False)["n"].sum()
        return g.reset_index()

    def _add_clocks(self, pk: pd.DataFrame, iface: np.ndarray, ifindex: np.ndarray) -> None:
        key = (pk["ts_ns"].to_numpy(np.int64) ^ (pk["wirelen"].to_numpy(np.int64) << 48)).view(np.uint64)
        h = pd.util.hash_array(key)
        keep = np.flatnonzero(sampled(h, self.clock_shift))
        new = pd.DataFrame({"iface": iface[keep], "ifindex": ifindex[keep], "key": key[keep], "h": h[keep]})
        both = pd.concat([self.clocks, new], ignore_index=True).drop_duplicates(["iface", "ifindex", "key"])
        self.clocks, self.clock_shift = _shrink(both, "h", self.clock_shift, CLOCK_KEYS)

    def _add_lb(self, pk: pd.DataFrame, iface: np.ndarray, ifindex: np.ndarray) -> None:
        codes, vals = _codes(pk["dst"])
        lut_lb = np.append(np.array([v in self.lb_ips for v in vals], bool), False)
        lut_in = np.append(np.array([v in self.inside for v in vals], bool), False)
        to_lb, to_in = lut_lb[codes], lut_in[codes]
        rows = np.flatnonzero(to_lb | to_in)
        if not rows.size:
            return
        sub = pk.iloc[rows]
        h = pd.util.hash_pandas_object(pd.DataFrame({
            "src": sub["src"].astype(object), "sport": sub["sport"].to_numpy(np.int64), "ip_id": sub["ip_id"].to_numpy(np.int64),
            "tcp_seq": sub["tcp_seq"].to_numpy(np.int64), "proto": sub["proto"].to_numpy(np.int64)}), index=False).to_numpy(np.uint64)  # fmt: skip
        parts = [self.lb]
        for sel, flag in ((to_lb[rows], True), (to_in[rows], False)):
            k = np.flatnonzero(sel & sampled(h, self.lb_shift))
            parts.append(pd.DataFrame({"iface": iface[rows][k], "ifindex": ifindex[rows][k], "to_lb": np.full(k.size, flag), "h": h[k]}))
        both = pd.concat(parts, ignore_index=True).drop_duplicates()
        self.lb, self.lb_shift = _shrink(both, "h", self.lb_shift, LB_KEYS)

    def result(self) -> Evidence:
        """The evidence of everything added."""
        if self.parts:
            t = self.parts[0].copy()
        else:
            t = pd.DataFrame({c: np.zeros(0, np.int64) for c in (*KEYS, "n")})
        for c in ("iface", "ifindex", "lbport", "n"):
            t[c] = t[c].to_numpy(np.int64)
        for c in ("tun", "syn"):
            t[c] = t[c].to_numpy(bool)
        for c in _ADDR:
            t[c] = t[c].astype(object)
        return Evidence(t, self.clocks.reset_index(drop=True), self.lb.reset_index(drop=True), self.clock_shift, self.lb_shift)


def sampled(h: np.ndarray, shift: int) -> np.ndarray:
    """Mask of the hashes kept at ``shift``."""
    return np.ones(h.shape[0], bool) if shift == 0 else (h >> np.uint64(64 - shift)) == 0


def evidence_of(pk: pd.DataFrame, nodes) -> Evidence:
    """The evidence of a whole packet table (the in-memory path: the same summary the streamed one builds)."""
    b = EvidenceBuilder(nodes)
    b.add(pk)
    return b.result()
