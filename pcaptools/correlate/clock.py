"""Estimate each node's clock offset (and linear skew) from packets matched in both directions between nodes.

For a packet going A->B the apparent delay is ``d_ab = t_b - t_a = delay + (off_b - off_a)``; the
way back gives ``d_ba = delay - (off_b - off_a)``. With ``q`` a low quantile (minimum for small
samples, 1st percentile from 200 packets on), ``off_b - off_a = (q(d_ab) - q(d_ba)) / 2`` and the
error is bounded by ``(q(d_ab) + q(d_ba)) / 2`` (half the fastest round trip) if the paths are
asymmetric. Direction is not taken from clocks: the two halves of one connection (as seen at point
A) always travel opposite ways, and the half with the larger apparent delay is the A->B one.

Every pair of capture points on different nodes gives an estimate; per node pair the tightest one
is kept, and all node pairs are solved together by weighted least squares (weight 1/bound^2) with
the reference node at 0. Points on one node share its clock. Skew: per time window the minimum
``d_ab`` and ``d_ba``; a line through each; ``(slope_ab - slope_ba) / 2`` is the relative rate. It
matters when ``|skew| * duration`` exceeds the offset bound; then timestamps are corrected with
the line (offset at the capture's midpoint plus skew times the distance to it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.addr import to_u128
from pcaptools.correlate.fingerprint import combine

OFFSET_COLUMNS = ("node", "offset_ns", "uncertainty_ns", "skew_ppm", "skew_matters", "pairs", "reference")
_WINDOWS = 8
_MIN_BOUND_NS = 1_000.0  # weights never trust a bound tighter than 1 us


def connection_key(packets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(key, half) per row: a direction-free hash of the 5-tuple as seen at its point, and which side sent it."""
    shi, slo, _ = to_u128(packets["src"])
    dhi, dlo, _ = to_u128(packets["dst"])
    hs = combine([shi, slo, packets["sport"].to_numpy(np.int64)])
    hd = combine([dhi, dlo, packets["dport"].to_numpy(np.int64)])
    key = combine([packets["proto"].to_numpy(np.int64), np.minimum(hs, hd), np.maximum(hs, hd)])
    return key, hs < hd


def _lowq(x: np.ndarray) -> float:
    return float(np.quantile(x, 0.01)) if x.shape[0] >= 200 else float(x.min())


def _label(d: np.ndarray, key: np.ndarray, half: np.ndarray) -> np.ndarray:
    """+1 for rows in the connection half with the larger median d, -1 for the other, 0 if one half only."""
    df = pd.DataFrame({"k": key, "h": half, "d": d})
    med = df.groupby(["k", "h"], sort=False)["d"].median().unstack("h")
    if True not in med.columns or False not in med.columns:
        return np.zeros(d.shape[0], np.int8)
    both = med.dropna()
    upper_is_true = pd.Series((both[True] > both[False]).to_numpy(), index=both.index)
    up = df["k"].map(upper_is_true)
    known = up.notna().to_numpy()
    upv = up.fillna(False).to_numpy(bool)
    lab = np.where(half == upv, 1, -1).astype(np.int8)
    lab[~known] = 0
    return lab


def _skew(d: np.ndarray, x: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> float:
    """Relative clock rate from lines through per-window minima of d_ab and d_ba (0 if under 3 windows).

    Refit on the detrended delays a few times: a window's minimum is biased by the drift inside it.
    """
    w = np.empty(x.shape[0], np.int64)  # equal-count windows: captures are bursty
    w[np.argsort(x, kind="stable")] = np.arange(x.shape[0]) * _WINDOWS // x.shape[0]
    keep = [k for k in range(_WINDOWS) if (ab & (w == k)).any() and (ba & (w == k)).any()]
    if len(keep) < 3:
        return 0.0
    masks = [w == k for k in keep]
    xs = np.array([float(np.median(x[m])) for m in masks])
    if np.ptp(xs) <= 0:
        return 0.0
    skew = 0.0
    for _ in range(4):
        dd = d - skew * x
        y_ab = np.array([float(dd[m & ab].min()) for m in masks])
        y_ba = np.array([float((-dd[m & ba]).min()) for m in masks])
        (s_ab, c_ab), (s_ba, c_ba) = np.polyfit(xs, y_ab, 1), np.polyfit(xs, y_ba, 1)
        skew += float(s_ab - s_ba) / 2
    # keep the skew only where the window minima say so: |skew| over 3 standard errors of the two
    # slopes. Short or bursty captures (one clock shared by all points included) give a noisy slope
    # that would otherwise be applied as a drift of hundreds of microseconds.
    if len(keep) < 4:
        return 0.0
    sxx = float(((xs - xs.mean()) ** 2).sum())
    res_ab = y_ab - (s_ab * xs + c_ab)
    res_ba = y_ba - (s_ba * xs + c_ba)
    se = np.sqrt((res_ab @ res_ab + res_ba @ res_ba) / (len(keep) - 2) / sxx) / 2
    return skew if abs(skew) > 3 * se else 0.0


def _offset(d: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> tuple[float, float]:
    q_ab, q_ba = _lowq(d[ab]), _lowq(-d[ba])
    return (q_ab - q_ba) / 2, abs(q_ab + q_ba) / 2


def pair_estimate(d: np.ndarray, t: np.ndarray, key: np.ndarray, half: np.ndarray) -> dict | None:
    """Offset (at the midpoint), error bound and skew of point B's clock against point A's from ``d = t_b - t_a``."""
    lab = _label(d, key, half)
    if not (lab == 1).any() or not (lab == -1).any():
        return None
    span = float(t.max() - t.min())
    t_mid = float(t.min()) + span / 2
    x = t - t_mid
    ab, ba = lab == 1, lab == -1
    skew = _skew(d, x, ab, ba)
    dd = d - skew * x  # detrended: what d would be at the midpoint
    off, bound = _offset(dd, ab, ba)
    # refine: with the offset inside the gap, every packet's direction is the side of it that d falls on
    fwd = dd > off
    if fwd.any() and (~fwd).any():
        off2, bound2 = _offset(dd, fwd, ~fwd)
        if abs(off2 - off) <= bound + 1:
            skew2 = _skew(d, x, fwd, ~fwd)
            dd2 = d - skew2 * x
            fwd2 = dd2 > off2
            if fwd2.any() and (~fwd2).any():
                skew, dd = skew2, dd2
                off, bound = _offset(dd, fwd2, ~fwd2)
    return {"offset_ns": off, "bound_ns": bound, "n": int(d.shape[0]), "skew": skew, "line_ns": off, "t_mid": t_mid, "span": span}


def estimate_offsets(
    packets: pd.DataFrame, group: np.ndarray, nodes: list[str], point_node: np.ndarray, *, reference: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Per-node offset table (OFFSET_COLUMNS) and correction parameters, from clock-free matched groups."""
    if reference is None:
        reference = nodes[0]
    ref = nodes.index(reference)
    ts = packets["ts_ns"].to_numpy(np.int64)
    pid = packets["point_id"].to_numpy(np.int64)
    key, half = connection_key(packets)
    npts = len(point_node)
    rows = np.flatnonzero(group >= 0)
    by_point = []
    for i in range(npts):
        r = rows[pid[rows] == i]
        o = np.argsort(group[r], kind="stable")
        by_point.append((group[r][o], r[o]))
    best: dict[tuple[int, int], dict] = {}
    for i in range(npts):
        for j in range(i + 1, npts):
            a, b = int(point_node[i]), int(point_node[j])
            if a == b:
                continue
            _, ii, jj = np.intersect1d(by_point[i][0], by_point[j][0], assume_unique=True, return_indices=True)
            if ii.shape[0] < 2:
                continue
            ri, rj = by_point[i][1][ii], by_point[j][1][jj]
            est = pair_estimate((ts[rj] - ts[ri]).astype(np.float64), ts[ri].astype(np.float64), key[ri], half[ri])
            if est is None:
                continue
            if a > b:  # store as (low node, high node): offset of high relative to low
                a, b = b, a
                est = {**est, "offset_ns": -est["offset_ns"], "line_ns": -est["line_ns"], "skew": -est["skew"]}
            if (a, b) not in best or est["bound_ns"] < best[(a, b)]["bound_ns"]:
                best[(a, b)] = est
    nn = len(nodes)
    off = np.zeros(nn)
    line = np.zeros(nn)
    skew = np.zeros(nn)
    unc = np.full(nn, np.nan)
    pairs = np.zeros(nn, np.int64)
    unc[ref] = 0.0
    if best:
        edges = list(best)
        A = np.zeros((len(edges), nn))
        for r, (a, b) in enumerate(edges):
            A[r, a], A[r, b] = -1.0, 1.0
            pairs[a] += best[(a, b)]["n"]
            pairs[b] += best[(a, b)]["n"]
        bound = np.array([max(best[e]["bound_ns"], _MIN_BOUND_NS) for e in edges])
        wts = 1.0 / bound
        reach = _reachable(edges, nn, ref)
        cols = [k for k in range(nn) if k != ref and reach[k]]
        if cols:
            Aw = A[:, cols] * wts[:, None]
            for target, field in ((off, "offset_ns"), (line, "line_ns"), (skew, "skew")):
                y = np.array([best[e][field] for e in edges]) * wts
                sol = np.linalg.lstsq(Aw, y, rcond=None)[0]
                target[cols] = sol
            cov = np.linalg.pinv(Aw.T @ Aw)
            unc[cols] = np.sqrt(np.clip(np.diag(cov), 0, None))
    span = max((e["span"] for e in best.values()), default=0.0)
    t_mid = np.mean([e["t_mid"] for e in best.values()]) if best else 0.0
    matters = np.abs(skew) * span > np.nan_to_num(unc, nan=np.inf)
    table = pd.DataFrame(
        {
            "node": nodes,
            "offset_ns": np.round(off).astype(np.int64),
            "uncertainty_ns": unc,
            "skew_ppm": skew * 1e6,
            "skew_matters": matters,
            "pairs": pairs,
            "reference": [k == ref for k in range(nn)],
        }
    )
    params = {"offset": off, "line": line, "skew": skew, "matters": matters, "t_mid": t_mid, "known": ~np.isnan(unc)}
    return table, params


def correct(ts_ns: np.ndarray, node: np.ndarray, params: dict) -> np.ndarray:
    """Timestamps on the reference clock: minus the node's offset (and skew * time from the midpoint when it matters)."""
    off = np.where(params["matters"], params["line"], params["offset"])[node]
    out = ts_ns - np.round(off).astype(np.int64)
    if params["matters"].any():
        s = np.where(params["matters"], params["skew"], 0.0)[node]
        out = out - np.round(s * (ts_ns.astype(np.float64) - params["t_mid"])).astype(np.int64)
    return out


def _reachable(edges: list[tuple[int, int]], n: int, start: int) -> np.ndarray:
    seen = np.zeros(n, bool)
    seen[start] = True
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            if seen[a] != seen[b]:
                seen[a] = seen[b] = True
                changed = True
    return seen
