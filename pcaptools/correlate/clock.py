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


def pair_estimate(d: np.ndarray, t: np.ndarray, key: np.ndarray, half: np.ndarray) -> dict | None:
    """Offset of point B relative to point A from apparent delays ``d = t_b - t_a`` of matched packets."""
    lab = _label(d, key, half)
    if not (lab == 1).any() or not (lab == -1).any():
        return None
    ab, ba = lab == 1, lab == -1
    off = (_lowq(d[ab]) - _lowq(-d[ba])) / 2
    bound = abs(_lowq(d[ab]) + _lowq(-d[ba])) / 2
    # refine: with the offset inside the gap, every packet's direction is the side of it its d falls on
    fwd = d > off
    if fwd.any() and (~fwd).any():
        off2 = (_lowq(d[fwd]) - _lowq(-d[~fwd])) / 2
        if abs(off2 - off) <= bound + 1:
            off, ab, ba = off2, d > off2, d <= off2
            if not ab.any() or not ba.any():
                ab, ba = lab == 1, lab == -1
    q_ab, q_ba = _lowq(d[ab]), _lowq(-d[ba])
    fwd = ab
    est = {"offset_ns": off, "bound_ns": abs(q_ab + q_ba) / 2, "n": int(d.shape[0]), "skew": 0.0, "line_ns": off}
    span = float(t.max() - t.min())
    if span > 0:
        w = np.minimum(((t - t.min()) / span * _WINDOWS).astype(np.int64), _WINDOWS - 1)
        xs, y_ab, y_ba = [], [], []
        for k in range(_WINDOWS):
            m = w == k
            if (m & ab).any() and (m & ba).any():
                xs.append(float(np.median(t[m] - t.min())))
                y_ab.append(float(d[m & ab].min()))
                y_ba.append(float((-d[m & ba]).min()))
        if len(xs) >= 3:
            x = np.asarray(xs)
            s_ab, c_ab = np.polyfit(x, y_ab, 1)
            s_ba, c_ba = np.polyfit(x, y_ba, 1)
            est["skew"] = (s_ab - s_ba) / 2
            mid = span / 2
            est["line_ns"] = ((c_ab + s_ab * mid) - (c_ba + s_ba * mid)) / 2
    est["t_mid"] = float(t.min()) + span / 2
    est["span"] = span
    return est


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
