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

from pcaptools.correlate.latency import latency_table, lost_rows
from pcaptools.correlate.windows import Matcher
from pcaptools.schema import LOSS_COLUMNS, validate


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
    a = m.spine.arrays()
    j, pt, tc, flow = a["journey"], a["point"].astype(np.int64), a["tc"], a["flow"]
    names = pd.Index(m.point_names)
    npts = len(names)
    n = j.shape[0]
    start = np.ones(n, bool)
    start[1:] = j[1:] != j[:-1]
    first = np.flatnonzero(start)
    size = np.diff(np.append(first, n))
    multi = np.repeat(size > 1, size)
    mc = np.bincount(pt[multi], minlength=npts)
    uc = np.bincount(pt[~multi], minlength=npts)
    amb = m.spine.ambiguous()
    lost, q = lost_rows(j, pt, tc, flow, npts)
    return Totals(
        hop_latency=latency_table(j, pt, tc, names),
        losses=_loss_table(m, j, pt, tc, flow, lost, q),
        matched={name: int(mc[k]) for k, name in enumerate(names)},
        unmatched={name: int(uc[k]) for k, name in enumerate(names)},
        seen_at_point=pd.Series(np.bincount(pt, minlength=npts), index=names),
        journeys=int(m.next_journey),
        multi_point_journeys=int((size > 1).sum()),
        ambiguous=int(amb.sum()),
        ambiguous_journey=amb,
    )


def _loss_table(m: Matcher, j, pt, tc, flow, lost, q) -> pd.DataFrame:
    """LOSS_COLUMNS rows of the lost sightings; addresses and ports from the flow each was seen in."""
    parts = m.spine.flows
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
        "journey": j[lost],
        "point": pd.Categorical.from_codes(pt[lost], dtype=point_dtype),
        "missing_at": pd.Categorical.from_codes(q, dtype=point_dtype),
        "ts_corrected_ns": tc[lost],
        "src": pd.Categorical.from_codes(fl["src"][at].astype(np.int32), dtype=m.cats.dtype("src")),
        "dst": pd.Categorical.from_codes(fl["dst"][at].astype(np.int32), dtype=m.cats.dtype("dst")),
        "sport": fl["sport"][at].astype(np.int32),
        "dport": fl["dport"][at].astype(np.int32),
        "proto": fl["proto"][at].astype(np.int16),
    })  # fmt: skip
    return validate(out.loc[:, [c.name for c in LOSS_COLUMNS]], LOSS_COLUMNS, table="losses")
