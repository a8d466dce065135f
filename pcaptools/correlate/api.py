"""``pcaptools.correlate``: find each packet at every capture point, align clocks, measure hops and losses.

Two passes: fingerprints seen at most once per point are paired without looking at time, which is
enough to estimate the nodes' clock offsets; then every sighting is matched on corrected time
within ``window_ns`` (see :mod:`.match`) and laid out as a hops table (:data:`HOPS_COLUMNS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.clock import correct, estimate_offsets
from pcaptools.correlate.fingerprint import combine, fingerprint
from pcaptools.correlate.latency import hop_latency, loss_summary, losses
from pcaptools.correlate.match import (
    by_fingerprint,
    clock_sample,
    journey_order,
    match,
    time_order,
    unique_groups,
)
from pcaptools.errors import CorrelationError
from pcaptools.schema import HOPS_COLUMNS, validate

DEFAULT_WINDOW_NS = 2_000_000_000
"""Default matching window: sightings of one packet more than 2 s apart (after clock correction) are separate."""

_CARRY = ("file", "record", "direction", "src", "dst", "sport", "dport", "proto", "tunnel", "vni",
          "outer_src", "outer_dst", "ttl", "wirelen", "ip_id", "tcp_flags")  # fmt: skip


@dataclass
class Correlation:
    """Result of :func:`correlate`: hops, clock offsets, hop latency, losses and per-point match counts."""

    hops: pd.DataFrame
    offsets: pd.DataFrame
    hop_latency: pd.DataFrame
    losses: pd.DataFrame
    matched: dict[str, int]
    unmatched: dict[str, int]
    journeys: int
    ambiguous: int
    window_ns: int
    notes: list[str] = field(default_factory=list)
    row_ts_corrected: np.ndarray = field(default=None, repr=False)  # per capture-set row, reference clock
    row_journey: np.ndarray = field(default=None, repr=False)  # per capture-set row, -1 if not matchable

    def loss_summary(self) -> pd.DataFrame:
        """Lost packets per (point, missing_at)."""
        return loss_summary(self.losses, self.hops)

    def to_dict(self) -> dict:
        """Plain summary: clock offsets per node, journeys, matched/unmatched per point, latency per hop pair."""
        offs = {}
        for r in self.offsets.itertuples(index=False):
            solved = not pd.isna(r.uncertainty_ns)  # an unsolved node's clock is left as captured: its values are absent
            offs[r.node] = {
                "offset_ns": int(r.offset_ns) if solved else None,
                "uncertainty_ns": round(float(r.uncertainty_ns), 1) if solved else None,
                "at_ns": int(r.at_ns) if solved else None,
                "skew_ppm": round(float(r.skew_ppm), 4) if solved else None,
                "skew_uncertainty_ppm": None if not np.isfinite(r.skew_uncertainty_ppm) else round(float(r.skew_uncertainty_ppm), 4),
                "skew_matters": bool(r.skew_matters),
                "reference": bool(r.reference),
            }
        lat = {
            f"{r.from_point} -> {r.to_point}": {
                "count": int(r.count), "median_ns": int(r.median_ns), "p90_ns": int(r.p90_ns),
                "p99_ns": int(r.p99_ns), "min_ns": int(r.min_ns), "max_ns": int(r.max_ns),
            }  # fmt: skip
            for r in self.hop_latency.itertuples(index=False)
        }
        ls = self.loss_summary()
        return {
            "clock_offsets": offs,
            "journeys": int(self.journeys),
            "multi_point_journeys": int((self.hops.groupby("journey", sort=False).size() > 1).sum()) if len(self.hops) else 0,
            "ambiguous_journeys": int(self.ambiguous),
            "window_ns": int(self.window_ns),
            "matched": self.matched,
            "unmatched": self.unmatched,
            "hop_latency": lat,
            "losses": [
                {"point": str(r.point), "missing_at": str(r.missing_at), "lost": int(r.lost), "seen_at_point": int(r.seen_at_point)}
                for r in ls.itertuples(index=False)
            ],
            "notes": list(self.notes),
        }

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), **kw)


def correlate(capture_set: CaptureSet, *, window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None) -> Correlation:
    """Match packets across the capture set's points, estimate clock offsets, and build hops/latency/loss tables."""
    if window_ns <= 0:
        raise CorrelationError(f"window_ns must be positive, got {window_ns}")
    nodes = capture_set.nodes
    if reference is not None and reference not in nodes:
        raise CorrelationError(f"reference node {reference!r} is not in the capture set; nodes are {nodes}")
    pk = capture_set.packets
    notes = list(capture_set.notes)
    pid = pk["point_id"].to_numpy(np.int64)
    point_node = np.array([nodes.index(p.node) for p in capture_set.points], np.int64)
    node_of_row = point_node[pid]
    fp = fingerprint(pk, pk["payload_hash"].to_numpy(np.uint64))
    ts = pk["ts_ns"].to_numpy(np.int64)
    fp[ts < 0] = 0  # records without a timestamp (pcapng simple packet blocks) cannot be placed in time

    by_fp = by_fingerprint(fp)  # sorted once, for both passes
    group = unique_groups(fp, pid, order=by_fp)
    group[~clock_sample(fp, order=by_fp)] = -1  # clocks from a bounded, uniform sample of packets
    offsets, params = estimate_offsets(pk, group, nodes, point_node, reference=reference)
    notes += clock_notes(offsets, params)
    tc = correct(ts, node_of_row, params)
    # a packet may cross one point twice (in natively, out encapsulated or routed back out): sightings
    # at one point count as distinct places when their TTL or encapsulation differ; repeats with the
    # same look (retransmissions, duplicate ACKs) stay separate journeys
    look = combine([pid, pk["ttl"].to_numpy(np.int64), pk["tunnel"].notna().to_numpy().astype(np.int64)])
    slot = pd.factorize(look)[0]
    ft = time_order(fp, tc, by_fp)
    jid = match(fp, tc, slot, window_ns=window_ns, npoints=int(slot.max()) + 1 if slot.size else 1, order=ft)
    hops, row_journey = _hops(pk, jid, fp, ts, tc, ft)
    return correlation_result(hops, offsets, notes, window_ns, row_ts_corrected=tc, row_journey=row_journey)


def clock_notes(offsets: pd.DataFrame, params: dict) -> list[str]:
    """Notes on nodes whose clock could not be solved and on matched packets no clock line allowed (for people)."""
    notes = []
    for r in offsets.itertuples(index=False):
        if pd.isna(r.uncertainty_ns):
            notes.append(
                f"node {r.node}: no packets matched in both directions with the reference's clock domain; its clock is left uncorrected"
            )
    for a, b, n in params["dropped"]:
        notes.append(f"nodes {a} and {b}: no clock line gives every matched packet a non-negative delay (wrong matches?); {n} were left out of the clock estimate")
    return notes


def correlation_result(hops: pd.DataFrame, offsets: pd.DataFrame, notes: list[str], window_ns: int, *,
                       row_ts_corrected: np.ndarray | None = None, row_journey: np.ndarray | None = None) -> Correlation:  # fmt: skip
    """The Correlation of a finished hops table: counts per point, journeys, ambiguity, latency and losses
    (shared by :func:`correlate` and :mod:`pcaptools.dask.correlation`)."""
    matched, unmatched = {}, {}
    cats = list(hops["point"].cat.categories)
    multi = hops["hops"].to_numpy() > 1
    codes = hops["point"].cat.codes.to_numpy()
    m = np.bincount(codes[multi], minlength=len(cats))
    u = np.bincount(codes[~multi], minlength=len(cats))
    for k, name in enumerate(cats):
        matched[name], unmatched[name] = int(m[k]), int(u[k])
    nj = int(hops["journey"].max()) + 1 if len(hops) else 0
    amb = int(hops.loc[hops["ambiguous"], "journey"].nunique())
    if nj and not multi.any():
        notes.append("no packet was seen at more than one capture point; check that the captures overlap in time and path")
    return Correlation(
        hops=hops, offsets=offsets, hop_latency=hop_latency(hops), losses=losses(hops),
        matched=matched, unmatched=unmatched, journeys=nj, ambiguous=amb, window_ns=int(window_ns), notes=notes,
        row_ts_corrected=row_ts_corrected, row_journey=row_journey,
    )  # fmt: skip


def _take(col: pd.Series, idx: np.ndarray, want: str):
    """``col`` at rows ``idx`` as the hops schema's dtype ``want`` (categories kept, codes taken)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return pd.Categorical.from_codes(col.cat.codes.to_numpy()[idx], dtype=col.dtype, validate=False)
    v = col.to_numpy()[idx]
    if want == "category":
        return pd.Series(v).astype("category")
    return v if want == "bool" else v.astype(want, copy=False)


def _hops(pk: pd.DataFrame, jid: np.ndarray, fp: np.ndarray, ts: np.ndarray, tc: np.ndarray,
          ft: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:  # fmt: skip
    """Rows of matchable sightings sorted by (journey, corrected time), and the final journey id of every input row.

    Journeys are numbered by first corrected time; one permutation of the sorted rows puts them in that
    order, and every column is gathered once through it (no pandas sort or take)."""
    if ft is None:  # ft: the matchable rows by (fingerprint, corrected time), as match() walked them
        rows = np.flatnonzero(jid >= 0)
        order = rows[np.lexsort((tc[rows], jid[rows]))]
    else:
        order = journey_order(jid, ft)
    j = jid[order]
    n = j.shape[0]
    start = np.ones(n, bool)
    start[1:] = j[1:] != j[:-1]
    first = np.flatnonzero(start)
    size = np.diff(np.append(first, n))
    run = np.repeat(np.arange(first.shape[0]), size)
    hop = np.arange(n) - first[run]
    tco = tc[order]
    first_t = tco[first]
    # ambiguous: a fingerprint that owns more than one journey
    _, inv, cnt = np.unique(fp[order][first], return_inverse=True, return_counts=True)
    amb = cnt[inv] > 1
    # journeys renumbered densely in order of first corrected time; their runs laid out in that order
    by_rank = np.argsort(first_t, kind="stable")
    rank = np.empty(first.shape[0], np.int64)
    rank[by_rank] = np.arange(first.shape[0])
    size_r = size[by_rank]
    perm = np.repeat(first[by_rank] - (np.cumsum(size_r) - size_r), size_r) + np.arange(n)
    final = order[perm]
    row_journey = np.full(jid.shape[0], -1, np.int64)
    row_journey[order] = rank[run]
    want = {c.name: c.dtype for c in HOPS_COLUMNS}
    tcf = tc[final]
    out: dict[str, object] = {
        "journey": np.repeat(np.arange(first.shape[0], dtype=np.int64), size_r),
        "hop": hop[perm].astype(np.int16),
        "hops": np.repeat(size_r, size_r).astype(np.int16),
        "point": _take(pk["point"], final, "category"),
        "node": _take(pk["node"], final, "category"),
        "interface": _take(pk["interface"], final, "category"),
        "ts_ns": ts[final],
        "ts_corrected_ns": tcf,
        "since_first_ns": tcf - np.repeat(first_t[by_rank], size_r),
        "ambiguous": np.repeat(amb[by_rank], size_r),
        "fingerprint": fp[final],
    }
    for c in _CARRY:
        out[c] = _take(pk[c], final, want[c])
    hops = pd.DataFrame({c.name: out[c.name] for c in HOPS_COLUMNS}, copy=False)
    return validate(hops, HOPS_COLUMNS, table="hops"), row_journey
