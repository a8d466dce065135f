"""What a correlation run adds up to once every window is matched: counts, hop latency, losses, ambiguity.

Everything here is a function of the matcher's spine (:class:`.windows.Spine`), so it is exact however
the run was cut into windows: latency quantiles from every consecutive pair of sightings, losses from
each flow direction's most common next point over all journeys, ambiguity from every journey's
fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pcaptools.correlate.windows import Matcher
from pcaptools.schema import HOP_LATENCY_COLUMNS, LOSS_COLUMNS, conform, empty, validate


@dataclass
class Totals:
    """The run's summary tables and counts (the parts of a Correlation that are not the hops table)."""

    hop_latency: pd.DataFrame
    losses: pd.DataFrame
    matched: dict[str, int]
    unmatched: dict[str, int]
    seen_at_point: pd.Series
    journeys: int
    multi_point_journeys: int
    ambiguous: int
    ambiguous_journey: np.ndarray  # per journey number: its fingerprint owns another journey


def totals(m: Matcher) -> Totals:
    """Sum up a matcher's spine after its last window."""
    sp = m.spine
    names = pd.Index(m.point_names)
    lost, q = _lost(sp)
    amb = sp.ambiguous()
    return Totals(
        hop_latency=_latency(sp, names),
        losses=_loss_table(m, lost, q),
        matched={name: int(sp.matched[k]) for k, name in enumerate(names)},
        unmatched={name: int(sp.unmatched[k]) for k, name in enumerate(names)},
        seen_at_point=pd.Series(sp.matched + sp.unmatched, index=names),
        journeys=int(m.next_journey),
        multi_point_journeys=int(sp.multi),
        ambiguous=int(amb.sum()),
        ambiguous_journey=amb,
    )


_QUANTILES = (0.5, 0.9, 0.99)


def _latency(sp, names: pd.Index) -> pd.DataFrame:
    """HOP_LATENCY_COLUMNS from every consecutive pair of sightings: exact quantiles (linear, as pandas), per point pair."""
    pair, lat = sp.array("pair"), sp.array("latency")
    if not pair.shape[0]:
        return empty(HOP_LATENCY_COLUMNS)
    rows = []
    for code in np.unique(pair):
        x = lat[pair == code]
        n = x.shape[0]
        at = []  # the ranks each quantile reads
        for q in _QUANTILES:
            h = (n - 1) * q
            lo = int(np.floor(h))
            at.append((lo, min(lo + 1, n - 1), h - lo))
        x = np.partition(x, sorted({0, n - 1, *(k for a in at for k in a[:2])}))  # those ranks in place, no full sort
        qs = [float(x[lo]) + (float(x[hi]) - float(x[lo])) * f for lo, hi, f in at]
        rows.append((int(code) // sp.npts, int(code) % sp.npts, n, *qs, int(x[0]), int(x[-1])))
    out = pd.DataFrame(rows, columns=["from", "to", "count", "median_ns", "p90_ns", "p99_ns", "min_ns", "max_ns"])
    for c in ("median_ns", "p90_ns", "p99_ns"):
        out[c] = out[c].round().astype(np.int64)
    out.insert(0, "from_point", names[out.pop("from").to_numpy()].astype(str))
    out.insert(1, "to_point", names[out.pop("to").to_numpy()].astype(str))
    out = out.sort_values("count", ascending=False, ignore_index=True)
    return conform(out, HOP_LATENCY_COLUMNS, table="hop_latency")


def _expected(sp) -> tuple[np.ndarray, np.ndarray]:
    """Flows (sorted) whose most common next point is known (seen next at least twice) and that point; a tie
    goes to the lower point number."""
    if not sp.next:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    f = np.concatenate([x[0] for x in sp.next])
    q = np.concatenate([x[1] for x in sp.next])
    n = np.concatenate([x[2] for x in sp.next])
    o = np.lexsort((q, f))
    f, q, n = f[o], q[o], n[o]
    new = np.ones(f.shape[0], bool)
    new[1:] = (f[1:] != f[:-1]) | (q[1:] != q[:-1])
    starts = np.flatnonzero(new)
    f, q, n = f[starts], q[starts], np.add.reduceat(n, starts) if starts.size else n[:0]
    o = np.lexsort((q, -n, f))  # per flow: most sightings first, then the lower point
    f, q, n = f[o], q[o], n[o]
    first = np.ones(f.shape[0], bool)
    first[1:] = f[1:] != f[:-1]
    keep = first & (n >= 2)
    return f[keep], q[keep]


def _lost(sp) -> tuple[np.ndarray, np.ndarray]:
    """Positions (hops order) of sightings whose journey never reached the point their flow direction reaches
    next while it was capturing, and that point (latency.losses, from the spine)."""
    keys, exp = _expected(sp)
    flow, t = sp.array("flow"), sp.array("tc")
    if not keys.shape[0] or not flow.shape[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pos = pd.Index(keys).get_indexer(flow)  # hashed: a binary search per sighting costs 8x more
    known = pos >= 0
    q = np.where(known, exp[pos], 0)
    j = np.repeat(np.arange(sp.array("size").shape[0], dtype=np.int64), sp.array("size"))
    if sp.npts <= 64:
        reached = ((sp.array("mask")[j] >> q.astype(np.uint64)) & np.uint64(1)).astype(bool)
    else:
        codes = sp.array("point").astype(np.int64)
        reached = np.isin(j * sp.npts + q, j * sp.npts + codes)
    del j
    live = known & (t >= sp.lo[q]) & (t <= sp.hi[q]) & ~reached
    lost = np.flatnonzero(live)
    return lost, q[lost]


def _loss_table(m: Matcher, lost, q) -> pd.DataFrame:
    """LOSS_COLUMNS rows of the lost sightings; addresses and ports from the flow each was seen in."""
    sp = m.spine
    pt, tc, flow = sp.array("point"), sp.array("tc"), sp.array("flow")
    parts = sp.flows
    fl = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]} if parts else None
    lf = flow[lost]
    if fl is not None and lost.size:
        _, first = np.unique(fl["flow"], return_index=True)
        keys = fl["flow"][first]
        at = first[np.searchsorted(keys, lf)]
    else:
        fl = {c: np.zeros(0, np.int64) for c in ("src", "dst", "sport", "dport", "proto")}
        at = np.zeros(0, np.int64)
    point_dtype = pd.CategoricalDtype(pd.Index(m.point_names))
    out = pd.DataFrame({
        "journey": sp.journey_of(lost).astype(np.int64),
        "point": pd.Categorical.from_codes(pt[lost].astype(np.int64), dtype=point_dtype),
        "missing_at": pd.Categorical.from_codes(q, dtype=point_dtype),
        "ts_corrected_ns": tc[lost],
        "src": pd.Categorical.from_codes(fl["src"][at].astype(np.int32), dtype=m.cats.dtype("src")),
        "dst": pd.Categorical.from_codes(fl["dst"][at].astype(np.int32), dtype=m.cats.dtype("dst")),
        "sport": fl["sport"][at].astype(np.int32),
        "dport": fl["dport"][at].astype(np.int32),
        "proto": fl["proto"][at].astype(np.int16),
    })  # fmt: skip
    return validate(out.loc[:, [c.name for c in LOSS_COLUMNS]], LOSS_COLUMNS, table="losses")
