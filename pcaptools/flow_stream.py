"""Flows of a capture larger than memory: the same table as ``flows(read_packets(path))``, memory bounded.

How (an external-memory group-by, in two passes over disk, never over the capture twice):

1. **Windows.** The capture is decoded in time-ordered windows (``iter_packets`` batches, their
   records and read-window bytes sized from the memory cap). Each packet that can belong to a flow
   keeps only the columns flows need (``spill_columns``, about 100 bytes) and goes to one of
   ``BUCKETS`` spill files in a private temporary directory (``TMPDIR``), chosen by a hash of its canonical flow key (Community ID
   ordering of addresses and ports, protocol). Every packet of a flow, and so every flow spanning
   any number of windows, lands in one bucket: a flow is carried over, never cut.
2. **Buckets.** Buckets are read back a group at a time (as many as fit the cap), put back in
   capture order and given to the in-memory flow code (:func:`pcaptools.flows.flow_rows`). Every
   flow column depends only on the packets of its own key, in capture order, so each group's flows
   are exactly those of the whole table, and their union is the whole flow table.

Two aggregates look beyond one key, and are resolved while windows go by:

* **Fragment ports.** A non-first fragment takes the ports of the first (in capture order) first
  fragment of its datagram. The first fragment of every fragmented datagram seen so far is kept
  (key and ports: a few dozen bytes each, only for fragmented traffic); a later fragment whose
  first fragment has not been seen yet is held in memory until it shows up or the capture ends,
  then spilled under the key it gets.
* **ICMP errors** count on the flow whose key their quoted packet has: each error packet is also
  written to the error spill of the bucket of its quoted key, so the attribution happens inside
  that bucket, as in memory.

Memory is bounded by one decoded window plus one bucket group, whatever the capture's length.
Its limit: a bucket holds whole flows, so a single flow with more packets than the cap allows
(one very long connection) is still read whole; its spilled rows are about 100 bytes each.
A capture that fits in one window is computed directly, without spilling.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools import community_id as cid
from pcaptools.flows import REQUIRED, _i64, check_packets, error_rows, flow_rows
from pcaptools.fmt import add_skipped
from pcaptools.packet_file import BASE_BYTES, window_bytes, window_records
from pcaptools.process import temporary_directory
from pcaptools.schema import FLOW_COLUMNS, FLOW_STATES, validate

BUCKETS = 64
"""Spill files per capture: flows are spread over them by key hash and read back a group at a time."""
ROW_BYTES = 1 << 10
"""Memory per spilled row while its bucket's flows are computed (the row, about 100 bytes, and temporaries)."""

_ROW = "_row"  # capture order of a spilled row, to restore it in a bucket
_FRAG_KEY = ["sh", "sl", "dh", "dl", "p", "id"]


def spill_columns() -> list[str]:
    """Packet columns the flows of a spilled packet need (``flows.REQUIRED`` and the file name)."""
    return ["file", *REQUIRED]


def iter_flows(
    path: str | os.PathLike,
    *,
    memory: int,
    idle_timeout_s: float | None = None,
    seed: int = 0,
    community_id: bool = True,
    batch_records: int | None = None,
    rows: Callable[[pd.DataFrame], np.ndarray] | None = None,
    columns: Collection[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Flow tables of one capture whose union is ``flows(read_packets(path))``, with memory bounded by ``memory`` bytes.

    Each table holds complete flows (a group of key buckets, sorted by first packet); ``read_flows``
    with ``memory=`` joins and sorts them. ``batch_records`` overrides the window size derived from
    ``memory`` (tests use it to cut many flows). ``rows``: a boolean mask of the packets to keep, per decoded window
    (the flows are then those of ``flows(packets[rows(packets)])``, e.g. one capture point's rows of an -i any file).
    ``columns``: only these of the flow columns besides the key (:func:`pcaptools.flows.flows`' ``columns``).
    """
    opts = {"idle_timeout_s": idle_timeout_s, "seed": seed, "community_id": community_id, "columns": columns}
    yield from _flow_parts(path, memory, opts, batch_records, {}, rows)


def _flow_parts(path, memory, opts, batch_records, order, rows=None, skipped=None) -> Iterator[pd.DataFrame]:  # noqa: ANN001
    """iter_flows' work; ``order`` receives the first-seen order of src, dst and tunnel values, ``skipped`` (if
    given) the reader's skipped records per file and reason, summed over the windows."""
    from pcaptools.packets import iter_packets

    windows = iter_packets(path, batch_records=batch_records or window_records(memory), batch_bytes=window_bytes(memory))
    if skipped is not None:
        windows = _counting(windows, skipped)
    if rows is not None:
        windows = (w.loc[rows(w)].reset_index(drop=True) for w in windows)
    first = next(windows, None)
    if first is None:
        return
    check_packets(first, opts["idle_timeout_s"])
    second = next(windows, None)
    if second is None:  # the whole capture is one window: nothing to spill
        yield flow_rows(first, first, **opts)
        return
    with temporary_directory(prefix="pcaptools-flows-") as tmp:
        spill = _Spill(Path(tmp), order)
        for window in (first, second):
            spill.add(window)
        del first, second
        for window in windows:
            spill.add(window)
        spill.finish()
        group_rows = max(1024, (memory - BASE_BYTES) // ROW_BYTES)
        for group in spill.groups(group_rows):
            packets, errors = spill.load(group)
            yield flow_rows(packets, errors, fill_fragments=False, **opts)


def _counting(windows: Iterator[pd.DataFrame], skipped: dict[str, dict[str, int]]) -> Iterator[pd.DataFrame]:
    """The windows, their ``attrs["skipped"]`` added into ``skipped`` as they go by."""
    for window in windows:
        add_skipped(skipped, window.attrs)
        yield window


_CATEGORY_SOURCE = {"file": "file", "orig_h": "src", "resp_h": "dst", "tunnel": "tunnel"}
"""Flow columns whose categories follow a packet column's (first-seen order), as flows() gives them."""


def read_flows_bounded(
    path: str | os.PathLike, *, memory: int, batch_records: int | None = None,
    skipped: dict[str, dict[str, int]] | None = None, **flow_options: object,
) -> pd.DataFrame:
    """The flow table of one capture, identical to ``flows(read_packets(path), **flow_options)``, from :func:`iter_flows`;
    ``skipped`` (if given) receives the reader's skipped records by file and reason, as ``read_packets``' attrs say them."""
    order: dict[str, pd.Index] = {}
    opts = {"idle_timeout_s": None, "seed": 0, "community_id": True, **flow_options}
    parts = list(_flow_parts(path, memory, opts, batch_records, order, skipped=skipped))
    if not order:  # one window, or none: computed directly, nothing to join
        return parts[0] if parts else _empty_flows(path, opts)
    from pcaptools.decode.table import concat

    res = concat(parts, text_categories=True)  # a part without tunnels has empty (object) categories
    for c in FLOW_COLUMNS:
        if c.dtype == "category" and c.name != "state":
            if c.name in _CATEGORY_SOURCE:  # first-seen order of the packet column, as flows() keeps it
                seen = order[_CATEGORY_SOURCE[c.name]]
                cats = seen[seen.isin(res[c.name].cat.categories)]
                res[c.name] = res[c.name].cat.set_categories(pd.Index(list(cats), dtype=object))
            else:  # flows() builds these from values
                res[c.name] = pd.Categorical(np.asarray(res[c.name].astype(object)))
    res["state"] = pd.Categorical(res["state"], categories=list(FLOW_STATES))
    res = res.sort_values(["first_ts_ns", "uid"], kind="stable", ignore_index=True)
    return validate(res[[c.name for c in FLOW_COLUMNS]], FLOW_COLUMNS, table="flow")


def _empty_flows(path: str | os.PathLike, opts: dict) -> pd.DataFrame:
    """The flow table of a capture without records (read the usual way, it is empty)."""
    from pcaptools.flows import flows
    from pcaptools.packets import read_packets

    return flows(read_packets(path), **opts)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread uint64 per value."""
    x = x.astype(np.uint64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def key_bucket(s: tuple, d: tuple, proto: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Bucket (0..BUCKETS-1) of each row's flow key: both directions of a flow get the same one."""
    c = cid.flow_ports(proto, p1, p2)
    pa, pb, _, one_way = c
    swap = cid.order(s[0], s[1], d[0], d[1], pa, pb, one_way)
    a_hi, a_lo = np.where(swap, d[0], s[0]), np.where(swap, d[1], s[1])
    b_hi, b_lo = np.where(swap, s[0], d[0]), np.where(swap, s[1], d[1])
    qa, qb = np.where(swap, pb, pa) & 0xFFFF, np.where(swap, pa, pb) & 0xFFFF
    rest = ((proto.astype(np.int64) + 256 * one_way) << 32) | (qa << 16) | qb
    h = _mix(rest)
    for part in (a_hi, a_lo, b_hi, b_lo):
        h = _mix(h ^ np.asarray(part).astype(np.uint64))
    return (h % np.uint64(BUCKETS)).astype(np.int64)


class _Spill:
    """Spill files of one capture: packets by key bucket, ICMP errors by quoted key bucket, fragment state."""

    def __init__(self, tmp: Path, order: dict[str, pd.Index]) -> None:
        self.tmp = tmp
        self.order = order
        self.dicts: dict[str, pd.Index] = {}  # category columns: every value spilled so far, codes index it
        self.addr_index = pd.Index([], dtype=object)  # addresses parsed so far (windows repeat them)
        self.addr_vals = list(cid.addresses(pd.Categorical([None])))  # slot 0: a missing address
        self.dtypes: dict[str, object] = {}
        self.rows = np.zeros(BUCKETS, np.int64)
        self.next_row = 0
        self.heads = pd.DataFrame({k: pd.Series(dtype=np.uint64 if k[0] in "sd" else np.int64) for k in _FRAG_KEY}
                                  | {"p1": pd.Series(dtype=np.int64), "p2": pd.Series(dtype=np.int64)})  # fmt: skip
        self.pending: list[pd.DataFrame] = []

    def add(self, window: pd.DataFrame) -> None:
        """Spill one decoded window (fragment ports filled where the first fragment is known)."""
        from pcaptools.decode.table import concat

        for name in _CATEGORY_SOURCE.values():
            cats = window[name].cat.categories
            seen = self.order.get(name, cats[:0])
            self.order[name] = seen.append(cats[~cats.isin(seen)])
        t = window[spill_columns()].copy()
        t[_ROW] = np.arange(self.next_row, self.next_row + len(t), dtype=np.int64)
        self.next_row += len(t)
        erows, q_src, q_dst, q_proto = error_rows(t, parse=self.addresses)
        if erows.size:
            qb = key_bucket(tuple(a[erows] for a in q_src), tuple(a[erows] for a in q_dst), q_proto[erows],
                            _i64(t["icmp_q_sport"])[erows], _i64(t["icmp_q_dport"])[erows])  # fmt: skip
            self._write("e", t.iloc[erows], qb)
        self.pending.append(t)
        t = concat(self.pending, text_categories=True) if len(self.pending) > 1 else t  # order kept by _ROW
        self.pending = []
        t, held = self._fragments(t)
        if len(held):
            self.pending.append(held)
        self._spill_rows(t)

    def finish(self) -> None:
        """Spill the fragments whose first fragment never came, under the key they have."""
        for t in self.pending:
            self._spill_rows(t)
        self.pending = []

    def _spill_rows(self, t: pd.DataFrame) -> None:
        src, dst = self.addresses(t["src"]), self.addresses(t["dst"])
        proto = _i64(t["proto"])
        ok = np.flatnonzero(src[2] & dst[2] & (proto >= 0) & (src[3] == dst[3]))
        p1, p2 = _ports(t)
        b = key_bucket(tuple(a[ok] for a in src), tuple(a[ok] for a in dst), proto[ok], p1[ok], p2[ok])
        self.rows += np.bincount(b, minlength=BUCKETS)
        self._write("p", t.iloc[ok], b)

    def _fragments(self, t: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``t`` with later fragments given their first fragment's ports, and the fragments still waiting."""
        off = _i64(t["frag_offset"])
        if not (off > 0).any() and not np.asarray(t["more_frags"], bool).any():
            return t, t.iloc[:0]
        src, dst = self.addresses(t["src"]), self.addresses(t["dst"])
        proto = _i64(t["proto"])
        ok = src[2] & dst[2] & (proto >= 0) & (src[3] == dst[3])
        keys = pd.DataFrame({"sh": src[0], "sl": src[1], "dh": dst[0], "dl": dst[1], "p": proto,
                             "id": _i64(t["ip_id"])})  # fmt: skip
        p1, p2 = _ports(t)
        first = ok & (off == 0) & np.asarray(t["more_frags"], bool)
        order = np.argsort(t[_ROW].to_numpy(), kind="stable")  # first fragment = first in capture order
        new = keys.assign(p1=p1, p2=p2).iloc[order][first[order]]
        self.heads = pd.concat([self.heads, new], ignore_index=True).drop_duplicates(_FRAG_KEY, keep="first")
        later = np.flatnonzero(ok & (off > 0))
        if later.size == 0:
            return t, t.iloc[:0]
        m = keys.iloc[later].merge(self.heads, on=_FRAG_KEY, how="left")
        got = m["p1"].notna().to_numpy()
        t = t.copy()
        icmp = np.isin(proto[later[got]], (1, 58))
        for c1, c2, sel in (("icmp_type", "icmp_code", icmp), ("sport", "dport", ~icmp)):
            idx = later[got][sel]
            t.loc[t.index[idx], c1] = m["p1"].to_numpy()[got][sel].astype(t[c1].dtype)
            t.loc[t.index[idx], c2] = m["p2"].to_numpy()[got][sel].astype(t[c2].dtype)
        wait = np.zeros(len(t), bool)
        wait[later[~got]] = True
        return t.iloc[np.flatnonzero(~wait)], t.iloc[np.flatnonzero(wait)]

    def addresses(self, col: pd.Series) -> tuple[np.ndarray, ...]:
        """``cid.addresses(col)``, each distinct address parsed once per capture rather than once per window."""
        cats = pd.Index(list(col.cat.categories), dtype=object)
        new = cats[~cats.isin(self.addr_index)]
        if len(new):
            parsed = cid.addresses(pd.Categorical(list(new), categories=list(new)))
            self.addr_index = self.addr_index.append(new)
            self.addr_vals = [np.r_[have, got] for have, got in zip(self.addr_vals, parsed, strict=True)]
        slot = np.append(self.addr_index.get_indexer(cats) + 1, 0)  # code -1 (missing) -> slot 0
        idx = slot[col.cat.codes.to_numpy()]
        return tuple(v[idx] for v in self.addr_vals)

    def _encode(self, t: pd.DataFrame) -> dict[str, np.ndarray]:
        """Columns of ``t`` as arrays, category columns as codes into this capture's dictionaries."""
        out = {}
        for name in t.columns:
            col = t[name]
            if isinstance(col.dtype, pd.CategoricalDtype):
                cats = pd.Index(list(col.cat.categories), dtype=object)
                known = self.dicts.get(name, cats[:0])
                self.dicts[name] = known = known.append(cats[~cats.isin(known)])
                lut = np.append(known.get_indexer(cats), -1).astype(np.int32)
                out[name] = lut[col.cat.codes.to_numpy()]
            else:
                self.dtypes.setdefault(name, col.dtype)
                out[name] = col.to_numpy()
        return out

    def _write(self, kind: str, rows: pd.DataFrame, bucket: np.ndarray) -> None:
        """Append ``rows`` to the spill file of their bucket, as arrays (one pickle per bucket and window)."""
        if bucket.size == 0:
            return
        cols = self._encode(rows)
        o = np.argsort(bucket, kind="stable")
        b = bucket[o]
        cuts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        for lo, hi in zip(cuts, np.r_[cuts[1:], b.size], strict=True):
            part = {name: a[o[lo:hi]] for name, a in cols.items()}
            with open(self.tmp / f"{kind}{int(b[lo])}", "ab") as fh:
                pickle.dump(part, fh, protocol=5)

    def groups(self, group_rows: int) -> Iterator[list[int]]:
        """Buckets read back together: consecutive ones while their rows fit ``group_rows``."""
        group: list[int] = []
        total = 0
        for k in range(BUCKETS):
            if group and total + self.rows[k] > group_rows:
                yield group
                group, total = [], 0
            group.append(k)
            total += int(self.rows[k])
        yield group

    def load(self, group: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Packets and ICMP errors of a bucket group, back in capture order."""
        out = []
        for kind in ("p", "e"):
            parts = []
            for k in group:
                path = self.tmp / f"{kind}{k}"
                if path.exists():
                    with open(path, "rb") as fh:
                        while True:
                            try:
                                parts.append(pickle.load(fh))  # noqa: S301 - our own private spill file
                            except EOFError:
                                break
                    path.unlink()
            out.append(self._table(parts))
        return out[0], out[1]

    def _table(self, parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
        """A packet table (spill columns) from spilled arrays, sorted back into capture order."""
        names = [*spill_columns(), _ROW]
        cols = {}
        for name in names:
            a = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, self.dtypes.get(name, np.int32))
            if name in self.dicts:
                # only this group's values: flows parse every category (addresses) once per call
                cols[name] = pd.Categorical.from_codes(a, categories=self.dicts[name], validate=False).remove_unused_categories()
            else:
                cols[name] = a
        t = pd.DataFrame(cols, copy=False)
        return t.sort_values(_ROW, kind="stable", ignore_index=True)


def _ports(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The (p1, p2) flows key a row by: ICMP type and code, else source and destination port."""
    icmp = np.isin(_i64(t["proto"]), (1, 58))
    p1 = np.where(icmp, _i64(t["icmp_type"]), _i64(t["sport"]))
    p2 = np.where(icmp, _i64(t["icmp_code"]), _i64(t["dport"]))
    return p1, p2
