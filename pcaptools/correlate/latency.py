"""Per-hop latency between consecutive capture points, and packets that went missing on their path.

A packet is *expected* at point Q after point P when, for the same flow direction as seen at P
(5-tuple at P), Q is the most common next point of the other journeys through P (at least 2 of
them). A sighting at P whose journey never reaches Q, while Q was capturing (its corrected time
lies inside Q's capture span), is counted as lost between P and Q.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.addr import to_u128
from pcaptools.correlate.fingerprint import combine
from pcaptools.schema import (
    HOP_LATENCY_COLUMNS,
    HOP_SAMPLE_COLUMNS,
    LOSS_COLUMNS,
    LOSS_SUMMARY_COLUMNS,
    conform,
    empty,
    validate,
)


def hop_pairs(hops: pd.DataFrame) -> pd.DataFrame:
    """Consecutive sightings of each journey: from/to point codes and corrected latency (hops sorted by journey, hop)."""
    j = hops["journey"].to_numpy(np.int64)
    same = np.zeros(len(hops), bool)
    same[:-1] = j[:-1] == j[1:]
    idx = np.flatnonzero(same)
    codes = hops["point"].cat.codes.to_numpy(np.int64)
    t = hops["ts_corrected_ns"].to_numpy(np.int64)
    return pd.DataFrame({"row": idx, "from": codes[idx], "to": codes[idx + 1], "latency_ns": t[idx + 1] - t[idx]})


def hop_latency(hops: pd.DataFrame) -> pd.DataFrame:
    """One row per (from_point, to_point) pair seen consecutively: count and latency quantiles in ns."""
    return latency_table(hops["journey"].to_numpy(np.int64), hops["point"].cat.codes.to_numpy(np.int64),
                         hops["ts_corrected_ns"].to_numpy(np.int64), hops["point"].cat.categories)  # fmt: skip


def latency_table(journey: np.ndarray, point: np.ndarray, tc: np.ndarray, cats: pd.Index) -> pd.DataFrame:
    """:func:`hop_latency` from the columns it reads (sightings in hops order): exact quantiles of every pair."""
    j = np.asarray(journey, np.int64)
    same = np.zeros(j.shape[0], bool)
    same[:-1] = j[:-1] == j[1:]
    idx = np.flatnonzero(same)
    codes = np.asarray(point, np.int64)
    pairs = pd.DataFrame({"from": codes[idx], "to": codes[idx + 1], "latency_ns": tc[idx + 1] - tc[idx]})
    if pairs.empty:
        return empty(HOP_LATENCY_COLUMNS)
    g = pairs.groupby(["from", "to"], sort=True)["latency_ns"]
    q = g.quantile([0.5, 0.9, 0.99]).unstack()
    out = pd.DataFrame(
        {
            "count": g.size(),
            "median_ns": q[0.5].round().astype(np.int64),
            "p90_ns": q[0.9].round().astype(np.int64),
            "p99_ns": q[0.99].round().astype(np.int64),
            "min_ns": g.min().astype(np.int64),
            "max_ns": g.max().astype(np.int64),
        }
    ).reset_index()
    out.insert(0, "from_point", cats[out.pop("from").to_numpy()].astype(str))
    out.insert(1, "to_point", cats[out.pop("to").to_numpy()].astype(str))
    out = out.sort_values("count", ascending=False, ignore_index=True)
    return conform(out, HOP_LATENCY_COLUMNS, table="hop_latency")


def hop_samples(hops: pd.DataFrame) -> pd.DataFrame:
    """Every consecutive pair of sightings as one row (HOP_SAMPLE_COLUMNS): the samples behind hop_latency, for CDFs."""
    pairs = hop_pairs(hops)
    if pairs.empty:
        return empty(HOP_SAMPLE_COLUMNS)
    cats = hops["point"].cat.categories.astype(str)
    out = pd.DataFrame({"journey": hops["journey"].to_numpy(np.int64)[pairs["row"].to_numpy()],
                        "from_point": cats[pairs["from"].to_numpy()], "to_point": cats[pairs["to"].to_numpy()],
                        "latency_ns": pairs["latency_ns"].to_numpy(np.int64)})  # fmt: skip
    return conform(out, HOP_SAMPLE_COLUMNS, table="hop_samples")


def flow_hash(hops: pd.DataFrame) -> np.ndarray:
    """Per sighting: a hash of (point, proto, src, dst, sport, dport), its flow direction as seen at its point."""
    shi, slo, _ = to_u128(hops["src"])
    dhi, dlo, _ = to_u128(hops["dst"])
    return combine([hops["point"].cat.codes.to_numpy(np.int64), hops["proto"].to_numpy(np.int64), shi, slo, dhi, dlo,
                    hops["sport"].to_numpy(np.int64), hops["dport"].to_numpy(np.int64)])  # fmt: skip


def losses(hops: pd.DataFrame) -> pd.DataFrame:
    """Sightings whose journey stops short of the point that packets of the same flow direction reach next."""
    lost, q = lost_rows(hops["journey"].to_numpy(np.int64), hops["point"].cat.codes.to_numpy(np.int64),
                        hops["ts_corrected_ns"].to_numpy(np.int64), flow_hash(hops), len(hops["point"].cat.categories))  # fmt: skip
    cats = hops["point"].cat.categories
    out = hops.iloc[lost].loc[:, ["journey", "point", "ts_corrected_ns", "src", "dst", "sport", "dport", "proto"]]
    out.insert(2, "missing_at", pd.Categorical(cats[q], categories=cats))
    return validate(out.reset_index(drop=True).loc[:, [c.name for c in LOSS_COLUMNS]], LOSS_COLUMNS, table="losses")


def lost_rows(j: np.ndarray, codes: np.ndarray, t: np.ndarray, flow: np.ndarray, npts: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of lost sightings (hops order) and the point code each never reached (:func:`losses`)."""
    n = j.shape[0]
    codes = np.asarray(codes, np.int64)
    nxt = np.full(n, -1, np.int64)
    same = np.zeros(n, bool)
    same[:-1] = j[:-1] == j[1:]
    nxt[:-1][same[:-1]] = codes[1:][same[:-1]]
    # most common next point per (point, flow direction)
    has = nxt >= 0
    cnt = pd.DataFrame({"f": flow[has], "q": nxt[has]}).value_counts().reset_index(name="n")
    cnt = cnt[cnt["n"] >= 2].sort_values("n", ascending=False).drop_duplicates("f")
    expected = pd.Series(cnt["q"].to_numpy(), index=cnt["f"].to_numpy())
    exp_q = expected.reindex(flow).to_numpy()
    known = ~np.isnan(exp_q)
    q = np.where(known, exp_q, -1).astype(np.int64)
    # does the journey reach q anywhere?
    reached = np.isin(j * npts + q, j * npts + codes) & known
    # was q capturing at that time?
    lo = np.full(npts, np.iinfo(np.int64).max)
    hi = np.full(npts, np.iinfo(np.int64).min)
    np.minimum.at(lo, codes, t)
    np.maximum.at(hi, codes, t)
    qq = np.where(known, q, 0)
    live = known & (t >= lo[qq]) & (t <= hi[qq])
    lost = np.flatnonzero(live & ~reached)
    return lost, q[lost]


def loss_summary(losses_df: pd.DataFrame, hops: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """Lost packets per (point, missing_at) pair with the number of sightings at the point (``hops``: the hops
    table, or its sightings per point)."""
    if losses_df.empty:
        return empty(LOSS_SUMMARY_COLUMNS)
    g = losses_df.groupby(["point", "missing_at"], observed=True).size().rename("lost").reset_index()
    seen = hops if isinstance(hops, pd.Series) else hops["point"].value_counts()
    g["seen_at_point"] = g["point"].map(seen).astype(np.int64)
    g = g.sort_values("lost", ascending=False, ignore_index=True)
    return conform(g.astype({"point": str, "missing_at": str}), LOSS_SUMMARY_COLUMNS, table="loss_summary")
