"""The clock sample, gathered from packet tables one at a time: every sighting of the bottom-k fingerprints.

Clocks are estimated before any journey is matched (matching needs corrected times), from the rows of
the ``k`` smallest distinct fingerprints (:func:`.match.clock_sample`): the bottom ``k`` of a union is the
bottom ``k`` of its parts' bottom ``k``s, so tables fed one window at a time give the sample one table of
everything gives. Only what :func:`.clock.estimate_offsets` reads is kept (fingerprint, time, point,
input order, the connection hash): about 40 bytes for each of at most a few times ``k`` rows.
:func:`clock_groups` pairs the sample's sightings: a packet seen at most once per point, or again at
points of one node within ``REPEAT_NS`` (a hairpin through a node), counted there once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.correlate.clock import connection_key, estimate_offsets
from pcaptools.correlate.match import (
    CLOCK_SAMPLE,
    by_fingerprint,
    clock_sample,
    compact_order,
    runs_seen_once,
    unique_groups,
)

_FIELDS = ("fp", "ts_ns", "point_id", "key", "conn", "half")
REPEAT_NS = 1_000_000
"""A packet seen again at one point within this (in and out of one interface: a hairpin through a node, a
NodePort hop) counts for the clocks as its first sighting there; repeats further apart (retransmissions) are
left out."""


def clock_groups(fp: np.ndarray, point: np.ndarray, ts_ns: np.ndarray, point_node: np.ndarray, *,
                 order: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Clock-free journey id per row (:func:`.match.unique_groups`), a point's repeats within ``REPEAT_NS`` kept once.

    Every sighting of one packet at a point lies between its sightings up- and downstream, so the first
    one gives valid (if looser) delay bounds both ways; without this, traffic that crosses one interface
    twice (external traffic to a NodePort forwarded to another node) never reaches the clock estimate.
    A fingerprint repeated on two or more nodes (two packets that collide) is left out as before.
    """
    fp = np.asarray(fp, np.uint64)
    point = np.asarray(point, np.int64)
    ts_ns = np.asarray(ts_ns, np.int64)
    if order is None:
        order = by_fingerprint(fp)
    f = fp[order]
    group = np.full(fp.shape[0], -1, np.int64)  # unique_groups(fp, point, order=order), its sorted groups kept
    g = runs_seen_once(f, point[order], int(point.max()) + 1) if order.size else np.zeros(0, np.int64)
    group[order] = g
    twice = np.zeros(order.size, bool)  # fingerprint seen more than once
    twice[1:] = f[1:] == f[:-1]
    twice[:-1] |= twice[1:]
    cand = order[twice & (g < 0)]  # seen more than once at one point: only these can change
    o = cand[np.lexsort((ts_ns[cand], point[cand], fp[cand]))]
    if o.size < 2:
        return group
    new = np.ones(o.size, bool)
    new[1:] = (fp[o[1:]] != fp[o[:-1]]) | (point[o[1:]] != point[o[:-1]])
    starts = np.flatnonzero(new)
    run = np.cumsum(new) - 1
    span = np.maximum.reduceat(ts_ns[o], starts) - ts_ns[o[new]]
    size = np.diff(np.r_[starts, o.size])
    # one packet crossing one interface twice repeats on that node only (at its point and its -i any
    # point); two packets that share a fingerprint (a collision) repeat at every point both pass
    multi = np.flatnonzero(size > 1)
    f_multi = fp[o[starts[multi]]]
    n_multi = np.asarray(point_node, np.int64)[point[o[starts[multi]]]]
    k = np.lexsort((n_multi, f_multi))
    first = np.ones(k.size, bool)
    first[1:] = f_multi[k[1:]] != f_multi[k[:-1]]
    one_node = np.ones(k.size, bool)
    one_node[1:] = first[1:] | (n_multi[k[1:]] == n_multi[k[:-1]])
    ok_f = np.logical_and.reduceat(one_node, np.flatnonzero(first)) if k.size else np.zeros(0, bool)
    alone = np.zeros(starts.size, bool)
    alone[multi[k]] = ok_f[np.cumsum(first) - 1]
    repeat = ~new & (span[run] <= REPEAT_NS) & alone[run]
    if not repeat.any():
        return group
    fp = fp.copy()
    fp[o[repeat]] = 0
    order = order[fp[order] != 0]
    return unique_groups(fp, point, order=order)


class ClockSample:
    """Accumulates the clock sample of packet tables (:meth:`add`) and estimates the clocks from it."""

    def __init__(self, k: int = CLOCK_SAMPLE) -> None:
        self.k = int(k)
        self.parts: list[dict[str, np.ndarray]] = []
        self.rows = 0
        self.limit: np.uint64 | None = None  # fingerprints at or above it are out of the sample for good
        self._trim_at = 4 * self.k
        self.order: np.ndarray | None = None  # by_fingerprint of the one table added, while nothing else was

    def add(self, pk: pd.DataFrame, fp: np.ndarray, point_id: np.ndarray, key: np.ndarray, *,
            order: np.ndarray | None = None) -> None:  # fmt: skip
        """Offer the rows of a packet table (``fp``: fingerprints, 0 = not matchable; ``key``: input order;
        ``order``: rows by fingerprint as :func:`.match.by_fingerprint` gives, if known)."""
        self.add_tables([pk], fp, pk["ts_ns"].to_numpy(np.int64), point_id, key, order=order)

    def add_tables(self, tables: list[pd.DataFrame], fp: np.ndarray, ts_ns: np.ndarray, point_id: np.ndarray,
                   key: np.ndarray, *, order: np.ndarray | None = None) -> None:  # fmt: skip
        """:meth:`add` of packet tables taken as one stacked table (``fp``, ``ts_ns``, ``point_id``, ``key``: of the
        stacked rows): only the sampled rows' 5-tuples are read, from each table."""
        ok = fp != 0 if self.limit is None else (fp != 0) & (fp < self.limit)
        rows = np.flatnonzero(ok)
        if not rows.size:
            return
        self.order = compact_order(ok, order) if order is not None and not self.parts else None
        bounds = np.cumsum([0, *(len(t) for t in tables)])
        cut = np.searchsorted(rows, bounds)
        keys = [connection_key(t if cut[i + 1] - cut[i] == len(t) else  # every row sampled: the table as it is
                               t[["src", "dst", "sport", "dport", "proto"]].iloc[rows[cut[i] : cut[i + 1]] - bounds[i]])
                for i, t in enumerate(tables)]  # fmt: skip
        conn, half = (keys[0] if len(keys) == 1 else (np.concatenate([k[0] for k in keys]), np.concatenate([k[1] for k in keys])))
        self.parts.append({"fp": fp[rows], "ts_ns": np.asarray(ts_ns, np.int64)[rows],
                           "point_id": np.asarray(point_id, np.int64)[rows], "key": np.asarray(key, np.int64)[rows],
                           "conn": conn, "half": half})  # fmt: skip
        self.rows += rows.size
        if self.rows > self._trim_at:
            self._trim()

    def _trim(self) -> None:
        cols = self._stacked()
        keep = clock_sample(cols["fp"], self.k, order=self.order if len(self.parts) == 1 else None)
        if not keep.all():
            self.order = None
            self.limit = cols["fp"][keep].max() + np.uint64(1)
        self.parts = [cols if keep.all() else {c: v[keep] for c, v in cols.items()}]  # a sample within k: kept as it is
        self.rows = int(keep.sum())
        self._trim_at = max(4 * self.k, 2 * self.rows)

    def _stacked(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {
                c: np.zeros(0, np.uint64 if c == "fp" else bool if c == "half" else np.int64) for c in _FIELDS
            }
        if len(self.parts) == 1:  # one part: its arrays (never written to), not copies
            return dict(self.parts[0])
        return {c: np.concatenate([p[c] for p in self.parts]) for c in _FIELDS}

    def relabel(self, point_of: np.ndarray) -> None:
        """Rows added with provisional point codes (points unknown until every file is read): ``point_of[code]``
        is the point; keys become (point, row in file), the input order of a capture set."""
        self.order = None
        self.parts = [{**p, "point_id": point_of[p["point_id"]], "key": (point_of[p["point_id"]] << 40) | p["key"]}
                      for p in self.parts]  # fmt: skip

    def estimate(
        self, nodes: list[str], point_node: np.ndarray, *, reference: str | None = None
    ) -> tuple[pd.DataFrame, dict]:
        """Clock table and correction parameters (:func:`.clock.estimate_offsets`) from the sample, rows in input order."""
        self._trim()
        cols = self._stacked()
        order = self.order if len(self.parts) == 1 else None
        if cols["key"].size > 1 and (np.diff(cols["key"]) < 0).any():
            o = np.argsort(cols["key"], kind="stable")
            cols = {c: v[o] for c, v in cols.items()}
            order = None
        fp = cols["fp"]
        group = clock_groups(fp, cols["point_id"], cols["ts_ns"], np.asarray(point_node, np.int64),
                             order=by_fingerprint(fp) if order is None else order)  # fmt: skip
        pk = pd.DataFrame({"ts_ns": cols["ts_ns"], "point_id": cols["point_id"]})
        return estimate_offsets(pk, group, nodes, np.asarray(point_node, np.int64), reference=reference,
                                connection=(cols["conn"], cols["half"]))  # fmt: skip
