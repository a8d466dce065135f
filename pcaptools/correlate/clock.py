"""Per-node clock model (offset at an instant, rate error) from packets matched in both directions between nodes.

Model: node ``k``'s clock reads ``t + offset_k + rate_k * (t - at)`` at reference time ``t``, so a
timestamp is corrected as ``ts - (offset_k + skew_k * (ts - at_k))`` with ``skew_k = rate_k / (1 + rate_k)``
(the rate per second of the node's own clock, what the table's ``skew_ppm`` reports) and ``at_k = at +
offset_k``; ``at`` is the middle of the matched traffic, the same instant for every node.

For a packet seen at a point on node ``a`` (time ``x`` from ``at``) and at a point on node ``b``,
``d = t_b - t_a = delay + theta + sigma * x`` with ``theta = offset_b - offset_a`` and ``sigma =
rate_b - rate_a``. Delays are never negative, so every a->b packet lies on or above the line
``theta + sigma * x`` and every b->a packet on or below it (Moon-Skelly-Towsley, in both
directions). The lines that separate the two clouds form a convex polygon in ``(theta, sigma)``,
found from the lower convex hull of the a->b points and the upper hull of the b->a points (as in
Zhang-Liu-Xia); its extent is an interval that holds the truth, not a standard error. Direction is
not taken from clocks: the two halves of one connection (as seen at point A) travel opposite ways,
and the half with the larger median ``d`` is the A->B one. Timestamps are known to their resolution
(1 us for classic pcap), so each constraint gets that much slack.

``x`` must be one clock's time: a first pass reads it on each node's clock less a rough offset (rate 0);
where rates apply and that could cost half the resolution (rate times the drift over the capture, e.g.
100 ppm over an hour moves a corrected time by 20 us), a second pass reads ``x`` as the first model's
corrected time, so every pair's line is on the reference's time scale and its ``x = 0`` is one instant.

Where the corridor is wide (slow paths, short captures) its rate interval is wide too; a regression
through per-window delay extremes of each pair of points (:func:`envelope_rate`) narrows it to
``_RATE_Z`` standard errors. Model choice: a node gets a rate only if its interval excludes 0 and
the rate exceeds its own uncertainty; otherwise its skew is 0. The offset is the middle of the
corridor at the chosen rates; its uncertainty spans the corridor over every rate the hulls allow.

Node pairs are solved jointly: rates and then offsets by weighted least squares over every node
pair (weight 1/half-width^2), clipped into the interval that all pairs' constraints together allow
(difference constraints closed by shortest paths), so nodes seen only through others (a load
balancer, an external client) are bounded by every path to them, not chained through one. Where
no line separates a pair's two directions (wrong matches), the rows a median-based line rules out
and then the worst violations are dropped until one does; ``params["dropped"]`` counts them. The
default reference is the first node of the largest group of nodes tied by two-way traffic, so a
capture of one connection that misses the first node still solves the nodes it crossed.

Holds (``tests/test_clock_truth.py``, lab captures retimed per node, every corrected time within 20 us
of the truth): one connection or one UDP exchange (12 sightings in 0.3 ms), also through a NodePort
that crosses one interface twice (:func:`.sample.clock_groups`); a connection every 30-120 s for an
hour at 10-100 ppm with offsets up to seconds (the clock sample pairs packets without time, so raw
timestamps seconds apart still pair); 5 ppm over 90 min; ``-i any`` captures alone or beside
per-interface ones; unanswered SYN retries among the traffic; the same clocks streamed in windows.

Limits: a pair needs packets both ways: traffic one way only (unanswered SYNs) bounds nothing, and a
node tied to the reference by nothing else is unsolved (NaN, ``null`` in ``--json``); so is a node in
another group than the reference's. A rate needs both directions spread over time (else it is left
at 0 and its uncertainty is NaN or the corridor's): where packets lie far from ``at`` and the rate is
unknown (two connections 0.7 s apart, only one of them reaching the reference), corrected times there
can be off by tens of us although the offset is exact at ``at_ns``; ``uncertainty_ns`` holds at
``at_ns`` only, and ``params["notes"]`` names such nodes with the error their rate allows. The offset's
interval assumes the minimum delay is not negative and the clocks are linear over the capture (an NTP
step inside the capture breaks it); the rate's narrowed interval is statistical (window minima of one
path, 4 SE).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.addr import to_u128
from pcaptools.correlate.fingerprint import combine
from pcaptools.schema import OFFSET_COLUMNS as _OFFSET_SCHEMA
from pcaptools.schema import validate

OFFSET_COLUMNS = tuple(c.name for c in _OFFSET_SCHEMA)
_SKEW_FLOOR = 1e-10  # weights never trust a rate interval tighter than 0.0001 ppm
_RATE_WINDOWS = 16  # time windows of the envelope regression
_RATE_Z = 4.0  # an envelope-regression rate interval spans this many standard errors each way
_FLOOR_WANDER_NS = 1_000.0  # how far a path's delay floor may move over a capture, whatever the resolution
RATE_NOTE_NS = 50_000.0
"""An unknown rate that may move a node's corrected times by more than this (and than its offset's uncertainty),
a few hops' latency in a cluster, gets a note."""


def connection_key(packets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(key, half) per row: a direction-free hash of the 5-tuple as seen at its point, and which side sent it."""
    shi, slo, _ = to_u128(packets["src"])
    dhi, dlo, _ = to_u128(packets["dst"])
    hs = combine([shi, slo, packets["sport"].to_numpy(np.int64)])
    hd = combine([dhi, dlo, packets["dport"].to_numpy(np.int64)])
    key = combine([packets["proto"].to_numpy(np.int64), np.minimum(hs, hd), np.maximum(hs, hd)])
    return key, hs < hd


def _label(d: np.ndarray, key: np.ndarray, half: np.ndarray) -> np.ndarray:
    """+1 for rows in the connection half with the larger median d, -1 for the other, 0 if one half only."""
    codes, uniq = pd.factorize(key, sort=False)
    med = pd.Series(d).groupby(codes.astype(np.int64) * 2 + half, sort=False).median()  # one int key per (connection, half)
    m = np.full(2 * uniq.shape[0], np.nan)
    m[med.index.to_numpy()] = med.to_numpy()
    m = m.reshape(-1, 2)  # per connection: median of its half False, of its half True
    if np.isnan(m[:, 0]).all() or np.isnan(m[:, 1]).all():
        return np.zeros(d.shape[0], np.int8)
    known = ~np.isnan(m).any(axis=1)[codes]
    lab = np.where(half == (m[:, 1] > m[:, 0])[codes], 1, -1).astype(np.int8)
    lab[~known] = 0
    return lab


def _chain(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower convex hull (Andrew's monotone chain) of a few points, left to right."""
    o = np.lexsort((y, x))
    xs, ys = x[o].tolist(), y[o].tolist()
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(xs, ys, strict=True):
        if hx and px == hx[-1]:
            continue  # same x: the lowest came first
        while len(hx) >= 2 and (hx[-1] - hx[-2]) * (py - hy[-2]) - (hy[-1] - hy[-2]) * (px - hx[-2]) <= 0:
            hx.pop()
            hy.pop()
        hx.append(px)
        hy.append(py)
    return np.array(hx), np.array(hy)


def lower_hull(x: np.ndarray, y: np.ndarray, *, bins: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (x, y) of the lower convex hull of a point cloud, left to right, in O(n) numpy passes.

    The hull of the lowest point per x-bin (and both x extremes) is checked against every point; points
    below it join the candidates until none is (one pass in practice). Only points below the hull's higher end
    over their bin can lie below it (the hull is convex), so only those are checked against it: the same points.
    """
    n = x.shape[0]
    if n <= 2 * bins:
        return _chain(x, y)
    x0, x1 = float(x.min()), float(x.max())
    if x1 <= x0:
        return _chain(x[[int(np.argmin(y))]], y[[int(np.argmin(y))]])
    b = np.minimum(((x - x0) * (bins / (x1 - x0))).astype(np.int64), bins - 1)
    low = np.full(bins, np.inf)
    np.minimum.at(low, b, y)
    cand = np.flatnonzero(y <= low[b])
    ends = np.flatnonzero((x == x0) | (x == x1))
    cand = np.union1d(cand, ends)
    w = (x1 - x0) / bins  # each bin's x range, widened past rounding of ``b``, within [x0, x1]
    lo_x = np.clip(x0 + w * np.arange(bins) - w * 1e-6, x0, x1)
    hi_x = np.clip(x0 + w * np.arange(1, bins + 1) + w * 1e-6, x0, x1)
    while True:
        hx, hy = _chain(x[cand], y[cand])
        if hx.shape[0] < 2:
            return hx, hy
        top = np.maximum(_hull_at(hx, hy, lo_x), _hull_at(hx, hy, hi_x))  # the hull's highest over each bin
        near = np.flatnonzero(y < top[b] + 1e-6 * (1.0 + np.abs(top[b])))  # every point that can lie below it
        line = _hull_at(hx, hy, x[near])
        bad = near[y[near] < line - 1e-6 * (1.0 + np.abs(line))]
        if bad.size == 0:
            return hx, hy
        cand = np.union1d(cand, bad)


def _hull_at(hx: np.ndarray, hy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The piecewise linear function through the vertices (hx, hy) at ``x`` (end segments extended)."""
    k = np.clip(np.searchsorted(hx, x, side="right") - 1, 0, hx.shape[0] - 2)
    return hy[k] + (hy[k + 1] - hy[k]) / (hx[k + 1] - hx[k]) * (x - hx[k])


class Corridor:
    """Lines ``theta + sigma * x`` that keep a->b points (fx, fy) above and b->a points (bx, by) below."""

    def __init__(self, fx: np.ndarray, fy: np.ndarray, bx: np.ndarray, by: np.ndarray, slack: float):
        self.fx, self.fy = lower_hull(fx, fy + slack)
        bxh, nby = lower_hull(bx, -(by - slack))
        self.bx, self.by = bxh, -nby
        self.n = int(fx.shape[0] + bx.shape[0])

    def top(self, s: np.ndarray) -> np.ndarray:
        """Highest theta allowed by the a->b packets at each rate in ``s``."""
        return (self.fy[None, :] - s[:, None] * self.fx[None, :]).min(axis=1)

    def bottom(self, s: np.ndarray) -> np.ndarray:
        """Lowest theta allowed by the b->a packets at each rate in ``s``."""
        return (self.by[None, :] - s[:, None] * self.bx[None, :]).max(axis=1)

    def fit(self) -> dict:
        """Widest corridor's rate, the interval of feasible rates and the theta range over them (inf if unbounded)."""
        sl = [np.diff(y) / np.diff(x) for x, y in ((self.fx, self.fy), (self.bx, self.by)) if x.shape[0] > 1]
        c = np.unique(np.concatenate([*sl, [0.0]]))
        g = self.top(c) - self.bottom(c)
        k = int(np.argmax(g))
        right = self.bx.min() - self.fx.max()  # d gap / d sigma beyond the last breakpoint
        left = self.bx.max() - self.fx.min()  # ... before the first
        out = {"sigma": float(c[k]), "gap": float(g[k]), "lo": -np.inf, "hi": np.inf}
        if right >= 0 or left <= 0:  # one direction lies wholly before the other: the rate is not bounded
            out["sigma"] = 0.0
            return out
        if g[k] < 0:
            return out
        j = k + np.flatnonzero(g[k:] < 0)
        out["hi"] = float(c[j[0] - 1] + (c[j[0]] - c[j[0] - 1]) * g[j[0] - 1] / (g[j[0] - 1] - g[j[0]])) if j.size else float(c[-1] - g[-1] / right)
        j = np.flatnonzero(g[:k] < 0)
        out["lo"] = float(c[j[-1] + 1] - (c[j[-1] + 1] - c[j[-1]]) * g[j[-1] + 1] / (g[j[-1] + 1] - g[j[-1]])) if j.size else float(c[0] - g[0] / left)
        s = np.concatenate([c[(c > out["lo"]) & (c < out["hi"])], [out["lo"], out["hi"]]])
        out["theta_lo"], out["theta_hi"] = float(self.bottom(s).min()), float(self.top(s).max())
        return out

    def middle(self, sigma: float) -> float:
        """Theta of the line through the middle of the corridor (or of the overlap, if none) at rate ``sigma``."""
        s = np.array([sigma])
        return (float(self.top(s)[0]) + float(self.bottom(s)[0])) / 2


def envelope_rate(x: np.ndarray, d: np.ndarray, fwd: np.ndarray, res: float) -> tuple[float, float, float] | None:
    """Rate, its standard error and the time span from the delay envelope of one point pair: per time window the lowest
    a->b and highest b->a ``d``, one common slope through both (separate intercepts), refit on the
    detrended delays. None with under 4 windows holding both directions.

    One point pair has one path each way, so its delay floor is one number; pooling pairs of different
    paths would turn a window without the fast path into a phantom trend. Residuals are floored at the
    timestamp resolution.
    """
    o = np.argsort(x, kind="stable")
    x, d, fwd = x[o], d[o], fwd[o]
    if min(fwd.sum(), (~fwd).sum()) < 4 or x[-1] <= x[0]:
        return None
    # equal-time windows: a burst (one connection) falls into one window, so the scatter between windows
    # is the scatter between bursts; equal-count windows would split a burst and understate it
    w = np.minimum(((x - x[0]) / (x[-1] - x[0]) * _RATE_WINDOWS).astype(np.int64), _RATE_WINDOWS - 1)
    fi, bi = np.flatnonzero(fwd), np.flatnonzero(~fwd)
    sigma, se = 0.0, np.inf
    for _ in range(3):
        y = d - sigma * x
        pts = []
        for idx, sign in ((fi, 1.0), (bi, -1.0)):
            cut = np.searchsorted(w[idx], np.arange(_RATE_WINDOWS + 1))  # rows are in time order: windows are runs
            pick = [lo + int(np.argmin(sign * y[idx[lo:hi]])) for lo, hi in zip(cut[:-1], cut[1:], strict=True) if hi > lo]
            pts.append(idx[np.array(pick, np.int64)])  # per window, the lowest a->b / highest b->a
        both = np.intersect1d(w[pts[0]], w[pts[1]])
        pts = [p_[np.isin(w[p_], both)] for p_ in pts]
        if both.shape[0] < 4:
            return None
        sxx = sxy = rss = 0.0
        m = 0
        for p_ in pts:
            xc = x[p_] - x[p_].mean()
            yc = y[p_] - y[p_].mean()
            sxx += float(xc @ xc)
            sxy += float(xc @ yc)
            m += p_.shape[0]
        if sxx <= 0:
            return None
        step = sxy / sxx
        for p_ in pts:
            xc = x[p_] - x[p_].mean()
            r = (y[p_] - y[p_].mean()) - step * xc
            rss += float(r @ r)
        sigma += step
        se = max(np.sqrt(rss / max(m - 3, 1)), res) / np.sqrt(sxx)
    return sigma, float(se), float(x[-1] - x[0])


def _median_rate(fx: np.ndarray, fy: np.ndarray, bx: np.ndarray, by: np.ndarray) -> float:
    """Rate through per-time-window medians of both directions (robust to wrong matches); 0 under 3 windows."""
    x0, x1 = min(fx.min(), bx.min()), max(fx.max(), bx.max())
    if x1 <= x0:
        return 0.0
    cols = []
    for x, y in ((fx, fy), (bx, by)):
        w = np.minimum(((x - x0) / (x1 - x0) * _RATE_WINDOWS).astype(np.int64), _RATE_WINDOWS - 1)
        g = pd.DataFrame({"w": w, "x": x, "y": y}).groupby("w").median()
        cols.append(g)
    both = cols[0].index.intersection(cols[1].index)
    if both.shape[0] < 3:
        return 0.0
    sxx = sxy = 0.0
    for g in cols:
        g = g.loc[both]
        xc = g["x"].to_numpy() - g["x"].mean()
        sxx += float(xc @ xc)
        sxy += float(xc @ (g["y"].to_numpy() - g["y"].mean()))
    return sxy / sxx if sxx > 0 else 0.0


def _robust_keep(fx, fy, bx, by) -> tuple[np.ndarray, np.ndarray]:
    """Rows that can be right: at the median-based rate, an a->b row below the median b->a delay needs
    a negative delay at any offset between the two medians (and the mirror for b->a rows)."""
    sigma = _median_rate(fx, fy, bx, by)
    yf, yb = fy - sigma * fx, by - sigma * bx
    return yf >= float(np.median(yb)), yb <= float(np.median(yf))


def _pair_corridor(fx, fy, bx, by, slack: float) -> tuple[Corridor, dict] | None:
    """Corridor and fit of one node pair; rows no line separates (wrong matches) are dropped.

    First what a robust line rules out (far off: a wrong match is typically milliseconds away); then,
    while no line separates the rest, the worst half of the violations of the widest corridor's line.
    """
    if fx.size == 0 or bx.size == 0:
        return None
    cor = Corridor(fx, fy, bx, by, slack)
    fit = cor.fit()
    if fit["gap"] >= 0:
        return cor, fit
    keep_f, keep_b = _robust_keep(fx, fy + slack, bx, by - slack)
    for _ in range(20):
        if not keep_f.any() or not keep_b.any():
            return None
        cor = Corridor(fx[keep_f], fy[keep_f], bx[keep_b], by[keep_b], slack)
        fit = cor.fit()
        if fit["gap"] >= 0:
            break
        mid = cor.middle(fit["sigma"])
        vf = np.where(keep_f, mid - (fy + slack - fit["sigma"] * fx), -np.inf)
        vb = np.where(keep_b, (by - slack - fit["sigma"] * bx) - mid, -np.inf)
        worst = max(vf.max(), vb.max())
        keep_f &= vf <= worst / 2
        keep_b &= vb <= worst / 2
    else:
        return None
    fit["dropped"] = int((~keep_f).sum() + (~keep_b).sum())
    return cor, fit


def _closure(edges: list[tuple[int, int]], lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray | None:
    """Tightest upper bounds ``U[a, b] >= v_b - v_a`` implied by all pair intervals; None if they contradict."""
    u = np.full((n, n), np.inf)
    np.fill_diagonal(u, 0.0)
    for (a, b), l_, h in zip(edges, lo, hi, strict=True):
        u[a, b] = min(u[a, b], h)
        u[b, a] = min(u[b, a], -l_)
    for k in range(n):
        u = np.minimum(u, u[:, k : k + 1] + u[k : k + 1, :])
    return None if (np.diag(u) < -1e-6).any() else u


def _joint(edges: list[tuple[int, int]], est: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int, ref: int, floor: float):
    """Values per node (ref = 0) from pair differences: WLS, clipped into the jointly allowed interval.

    Returns (value, uncertainty, known) where uncertainty is the farther end of that interval (NaN if unknown).
    """
    val = np.zeros(n)
    unc = np.full(n, np.nan)
    unc[ref] = 0.0
    known = np.zeros(n, bool)
    known[ref] = True
    half = np.maximum((hi - lo) / 2, floor)
    use = np.isfinite(half) & np.isfinite(est)
    e = [edges[i] for i in np.flatnonzero(use)]
    if not e:
        return val, unc, known
    reach = _reachable(e, n, ref)
    cols = [k for k in range(n) if k != ref and reach[k]]
    if not cols:
        return val, unc, known
    A = np.zeros((len(e), n))
    for r, (a, b) in enumerate(e):
        A[r, a], A[r, b] = -1.0, 1.0
    w = 1.0 / half[use]
    val[cols] = np.linalg.lstsq(A[:, cols] * w[:, None], est[use] * w, rcond=None)[0]
    known[cols] = True
    u = _closure(e, lo[use], hi[use], n)
    if u is not None:
        low, high = -u[cols, ref], u[ref, cols]
        val[cols] = np.clip(val[cols], low, high)
        unc[cols] = np.maximum(val[cols] - low, high - val[cols])
    else:  # contradicting pairs: the spread of the WLS fit stands in
        unc[cols] = np.sqrt(np.clip(np.diag(np.linalg.pinv((A[:, cols] * w[:, None]).T @ (A[:, cols] * w[:, None]))), 0, None))
    return val, unc, known


def _with_envelope_rate(fit: dict, rates: list[tuple[float, float, float]]) -> dict:
    """Narrow a pair's feasible rate interval to ``_RATE_Z`` standard errors of its envelope regression.

    The half-width is never under ``2 * _FLOOR_WANDER_NS / span``: a path's delay floor may itself move
    by a microsecond over a capture (load, scheduling), which no number of windows averages away.

    Point pairs of one node pair see the same packets, so their errors are not independent: the
    estimates are averaged by inverse variance but the smallest single standard error is kept (or their
    spread, if larger). An envelope rate outside the feasible interval is not trusted. The estimate stays
    the widest corridor's rate, clipped into the narrowed interval: window minima are biased where one
    direction is much sparser than the other (its extreme sits further from the floor), the corridor's
    extreme points are not, but alone they wander when the corridor is wide.
    """
    out = {**fit, "sigma_lo": fit["lo"], "sigma_hi": fit["hi"]}
    if not rates:
        return out
    r = np.array(rates)
    half = np.maximum(_RATE_Z * r[:, 1], 2 * _FLOOR_WANDER_NS / r[:, 2])
    wt = 1.0 / half**2
    sigma = float((r[:, 0] * wt).sum() / wt.sum())
    h = float(half.min())
    if r.shape[0] > 1:  # estimates that disagree beyond their errors: their spread is the error
        h = max(h, _RATE_Z * float(np.sqrt((wt * (r[:, 0] - sigma) ** 2).sum() / wt.sum())))
    lo, hi = max(fit["lo"], sigma - h), min(fit["hi"], sigma + h)
    if lo <= sigma <= hi:  # the widest corridor's rate stays the estimate where the regression allows it
        out.update(sigma=float(np.clip(fit["sigma"], lo, hi)), sigma_lo=lo, sigma_hi=hi)
    return out


def _rough_offsets(pooled: list[tuple], ts: np.ndarray, n: int, ref: int) -> np.ndarray:
    """Offsets to within the fastest round trip (or the drift over the capture): pair corridors at rate 0, joint."""
    fwd: dict[tuple[int, int], list] = {}
    for a, b, _, _, lab, d in pooled:
        fwd.setdefault((a, b), [[], []])
        fwd[(a, b)][0].append(d[lab == 1])
        fwd[(a, b)][1].append(d[lab == -1])
    edges, est = [], []
    for (a, b), (f, bk) in fwd.items():
        fy, by = np.concatenate(f), np.concatenate(bk)
        if fy.size and by.size:
            edges.append((a, b))
            est.append((fy.min() + by.max()) / 2)
    off = np.zeros(n)
    if not edges:
        return off
    reach = _reachable(edges, n, ref)
    cols = [k for k in range(n) if k != ref and reach[k]]
    if cols:
        A = np.zeros((len(edges), n))
        for r, (a, b) in enumerate(edges):
            A[r, a], A[r, b] = -1.0, 1.0
        off[cols] = np.linalg.lstsq(A[:, cols], np.array(est), rcond=None)[0]
    return off


def _resolution(ts: np.ndarray) -> float:
    """Timestamp resolution of the capture set: 1 us if every timestamp is a whole microsecond, else 1 ns."""
    return 1000.0 if ts.size and not (ts % 1000).any() else 1.0


def _point_pairs(ts: np.ndarray, pid: np.ndarray, group: np.ndarray, key: np.ndarray, half: np.ndarray,
                 point_node: np.ndarray) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:  # fmt: skip
    """Per pair of points on two nodes: (a, b, rows at a's point, rows at b's point, direction label, raw timestamp
    difference ``t_b - t_a`` as float), a < b.

    The label is +1 for packets going a->b, -1 for b->a, 0 where the connection was seen one way only. Pairs are in
    the order of the rows at a's point (input order, time order within a capture file: what :func:`envelope_rate`
    sorts by is then sorted already); every use of them is a function of the set of pairs, not of their order.
    """
    rows = np.flatnonzero(group >= 0)
    ngroups = int(group[rows].max()) + 1 if rows.size else 0
    at, mine, mine_g = [], [], []  # per point: its row of each group (-1: not seen there), its rows and their groups
    pr = pid[rows]
    for i in range(len(point_node)):
        r = rows[pr == i]  # ascending: input order
        g = group[r]
        row_of = np.full(ngroups, -1, np.int64)
        row_of[g] = r  # a group is seen at most once per point
        at.append(row_of)
        mine.append(r)
        mine_g.append(g)
    out = []
    for i in range(len(point_node)):
        for j in range(i + 1, len(point_node)):
            a, b = int(point_node[i]), int(point_node[j])
            if a == b:
                continue
            first = i if a < b else j  # the pair's rows in the order of the point on the lower node
            other = at[j if first == i else i][mine_g[first]]
            seen = other >= 0  # groups seen at both points
            if np.count_nonzero(seen) < 2:
                continue
            r1, r2 = mine[first][seen], other[seen]
            ri, rj = (r1, r2) if first == i else (r2, r1)
            d = (ts[rj] - ts[ri]).astype(np.float64)
            lab = _label(d, key[ri], half[ri])
            if a > b:
                a, b, ri, rj, lab, d = b, a, rj, ri, -lab, -d  # exact: a whole number's negation
            out.append((a, b, ri, rj, lab, d))
    return out


def _solve(pooled: list[tuple], ts: np.ndarray, x: np.ndarray, nn: int, ref: int, slack: float) -> dict:
    """Rates and offsets of every node from the point pairs, ``x`` the time of each row from ``at``.

    ``d = t_b - t_a`` is the raw timestamp difference; the rate found is d's slope against ``x``.
    """
    by_pair: dict[tuple[int, int], list[list]] = {}
    for a, b, ri, _, lab, d in pooled:
        xa = x[ri]
        parts = by_pair.setdefault((a, b), [[], [], [], [], []])
        f, bk = lab == 1, lab == -1
        rate = envelope_rate(xa[f | bk], d[f | bk], f[f | bk], slack)
        if rate is not None:
            parts[4].append(rate)
        parts[0].append(xa[f])
        parts[1].append(d[f])
        parts[2].append(xa[bk])
        parts[3].append(d[bk])
    edges, cors, fits = [], [], []
    for (a, b), parts in sorted(by_pair.items()):
        fx, fy, bx, by = (np.concatenate(q) for q in parts[:4])
        res = _pair_corridor(fx, fy, bx, by, slack)
        if res is None:
            continue
        edges.append((a, b))
        cors.append(res[0])
        fits.append(_with_envelope_rate(res[1], parts[4]))
    pairs = np.zeros(nn, np.int64)
    for (a, b), c in zip(edges, cors, strict=True):
        pairs[a] += c.n
        pairs[b] += c.n
    # rates: jointly, then kept only where the data excludes 0 and the rate exceeds its uncertainty
    s_lo = np.array([f["sigma_lo"] for f in fits])
    s_hi = np.array([f["sigma_hi"] for f in fits])
    s_est = np.array([f["sigma"] for f in fits])
    skew, skew_unc, _ = _joint(edges, s_est, s_lo, s_hi, nn, ref, _SKEW_FLOOR)
    matters = np.isfinite(skew_unc) & (np.abs(skew) > skew_unc) & (np.abs(skew) > 0)
    applied = np.where(matters, skew, 0.0)
    # offsets at `at` with those rates: middle of each pair's corridor; intervals over every feasible rate
    t_est, t_lo, t_hi = [], [], []
    for (a, b), c, f in zip(edges, cors, fits, strict=True):
        s = np.array([applied[b] - applied[a]])
        top, bot = float(c.top(s)[0]), float(c.bottom(s)[0])
        t_est.append((top + bot) / 2)
        if np.isfinite(f["lo"]) and np.isfinite(f["hi"]):
            lo_, hi_ = min(f["theta_lo"], bot, top), max(f["theta_hi"], top, bot)
        else:  # rate unbounded: the interval at the chosen rate is all there is
            lo_, hi_ = min(bot, top), max(bot, top)
        t_lo.append(lo_)
        t_hi.append(hi_)
    off, unc, known = _joint(edges, np.array(t_est), np.array(t_lo), np.array(t_hi), nn, ref, slack)
    applied[~known] = 0.0
    matters &= known
    skew_unc[~known] = np.nan
    dropped = [(a, b, f["dropped"]) for (a, b), f in zip(edges, fits, strict=True) if f.get("dropped")]
    return {"off": off, "unc": unc, "known": known, "rate": applied, "rate_unc": skew_unc, "matters": matters,
            "pairs": pairs, "dropped": dropped}  # fmt: skip


def estimate_offsets(
    packets: pd.DataFrame, group: np.ndarray, nodes: list[str], point_node: np.ndarray, *, reference: str | None = None,
    connection: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Per-node clock table (schema.OFFSET_COLUMNS) and correction parameters, from clock-free matched groups.

    ``packets`` needs ``ts_ns`` and ``point_id``, and the 5-tuple columns unless ``connection`` (its
    :func:`connection_key`) is given. ``params["dropped"]`` lists (node, node, rows) where matched packets
    contradicted every clock line. Without ``reference`` the first node of the largest group of nodes
    tied together by packets is the reference (the first node, unless it shares no packet with most others).
    """
    nn = len(nodes)
    ts = packets["ts_ns"].to_numpy(np.int64)
    pid = packets["point_id"].to_numpy(np.int64)
    key, half = connection_key(packets) if connection is None else connection
    point_node = np.asarray(point_node, np.int64)
    rows = np.flatnonzero(group >= 0)
    slack = _resolution(ts[rows])
    pooled = _point_pairs(ts, pid, group, key, half, point_node)
    ref = nodes.index(reference) if reference is not None else _default_reference(pooled, nn)
    # x: time from the middle of the traffic on the reference clock. Nodes may be seconds apart, so a
    # first pass reads x on each node's own clock less its rough offset (rate 0); where rates apply, a
    # second pass reads x as the first model's corrected time, so rates and offsets are on the reference's
    # time scale: node k's clock runs ``rate_k`` fast per reference second, and a pair's x = 0 is one instant
    # (a rough offset 100 ms off times a 100 ppm rate difference would move that pair's offset by 10 us).
    rough = _rough_offsets(pooled, ts, nn, ref)
    node_of = point_node[pid]
    mid = ts[rows] - rough[node_of[rows]].round().astype(np.int64) if rows.size else np.zeros(1, np.int64)
    at_ref = int((mid.min() + mid.max()) // 2)
    x = (ts - at_ref - rough[node_of]).astype(np.float64)
    sol = _solve(pooled, ts, x, nn, ref, slack)
    r = float(np.abs(sol["rate"]).max())
    span = float(np.ptp(x[rows])) if rows.size else 0.0
    shift = float(np.abs(rough - sol["off"])[sol["known"]].max())
    if 2 * r * (r * span + shift) > slack / 2:  # what reading x on each node's clock costs a pair's line, against the resolution
        first = {"offset": sol["off"], "skew": sol["rate"] / (1 + sol["rate"]), "at": at_ref + np.round(sol["off"]).astype(np.int64)}
        x = (correct(ts, node_of, first) - at_ref).astype(np.float64)
        sol = _solve(pooled, ts, x, nn, ref, slack)
    off, unc, known, matters = sol["off"], sol["unc"], sol["known"], sol["matters"]
    # a clock running ``r`` fast per reference second gains r / (1 + r) per second of its own, the rate
    # the correction (applied to the node's own timestamps) needs
    skew = sol["rate"] / (1 + sol["rate"])
    skew_unc = sol["rate_unc"]
    table = pd.DataFrame(
        {
            "node": pd.Series(nodes, dtype="str"),
            "offset_ns": np.round(off).astype(np.int64),
            "uncertainty_ns": unc,
            "at_ns": at_ref + np.round(off).astype(np.int64),
            "skew_ppm": skew * 1e6,
            "skew_uncertainty_ppm": np.where(np.isfinite(skew_unc), skew_unc * 1e6, np.nan),
            "skew_matters": matters,
            "pairs": sol["pairs"],
            "reference": np.arange(nn) == ref,
        }
    )
    dropped = [(nodes[a], nodes[b], n) for a, b, n in sol["dropped"]]
    far = np.zeros(nn)  # how far each node's sampled packets lie from `at`
    if rows.size:
        np.maximum.at(far, node_of[rows], np.abs(x[rows]))
    params = {"offset": off, "skew": skew, "at": at_ref + np.round(off).astype(np.int64), "known": known, "dropped": dropped,
              "notes": _rate_notes(nodes, known & ~matters, unc, skew_unc, far, ref, slack)}  # fmt: skip
    return validate(table, _OFFSET_SCHEMA, table="offsets"), params


def _rate_notes(nodes: list[str], no_rate: np.ndarray, unc: np.ndarray, rate_unc: np.ndarray, far: np.ndarray, ref: int,
                res: float) -> list[str]:  # fmt: skip
    """Notes for solved nodes left without a rate whose packets lie so far from ``at`` that the unknown rate, not the
    offset, bounds their corrected times (``uncertainty_ns`` holds at ``at_ns`` only)."""
    out = []
    for k in np.flatnonzero(no_rate):
        if k == ref or far[k] <= 0:
            continue
        if not np.isfinite(rate_unc[k]):
            if far[k] >= 1e9:
                out.append(f"node {nodes[k]}: its clock rate cannot be bounded from these packets; its corrected times up to "
                           f"{far[k] / 1e9:.3g} s from at_ns are off by its drift over that time ({far[k] / 1e9:.3g} µs per ppm)")  # fmt: skip
        elif rate_unc[k] * far[k] > max(unc[k], RATE_NOTE_NS, 10 * res):
            ppm = rate_unc[k] * 1e6
            off = unc[k] + rate_unc[k] * far[k]
            out.append(f"node {nodes[k]}: its clock rate is known only to ±{ppm:.0f} ppm; its corrected times up to "
                       f"{far[k] / 1e9:.3g} s from at_ns may be off by up to "
                       + (f"{off / 1e6:.3g} ms" if off >= 1e6 else f"{off / 1e3:.3g} µs"))  # fmt: skip
    return out


def _default_reference(pooled: list[tuple], n: int) -> int:
    """First node of the largest set of nodes tied by packets both ways (the first node if it is in one)."""
    edges = [(a, b) for a, b, _, _, lab, _ in pooled if (lab == 1).any() and (lab == -1).any()]
    best, size = 0, 0
    for k in range(n):
        r = int(_reachable(edges, n, k).sum())
        if r > size:
            best, size = k, r
    return best


def correct(ts_ns: np.ndarray, node: np.ndarray, params: dict) -> np.ndarray:
    """Timestamps on the reference clock: ``ts - (offset + skew * (ts - at))`` with the row's node's model."""
    out = ts_ns - np.round(params["offset"]).astype(np.int64)[node]
    if params["skew"].any():
        out = out - np.round(params["skew"][node] * (ts_ns - params["at"][node]).astype(np.float64)).astype(np.int64)
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
