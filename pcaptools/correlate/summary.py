"""What a correlation run adds up to once every window is matched: counts, hop latency, losses, ambiguity.

Everything here is a function of the matcher's spine (:mod:`.spine`), so it is exact however the run was cut into
windows: latency quantiles from every consecutive pair of sightings, losses from each flow direction's most common
next point over all journeys, ambiguity from every journey's fingerprint.

A spilled spine (a streamed run) is read back from disk with memory bounded by its ``chunk_rows``, with the
in-memory spine's results: losses a chunk of whole journeys at a time (the expected next point per flow is in
memory; the lost rows are the output); ambiguity per hash partition of the fingerprints (:meth:`.spine.SpilledSpine.
ambiguous`); the latency quantiles by a search over value ranges (:func:`_spilled_ranks`): each point pair's count,
least and largest latency are known, a pass over the pairs counts each range's values in 1,024 bins, the bins
holding the wanted ranks become the next ranges, and a range whose values fit the chunk is read whole and sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pcaptools.correlate.spine import SpilledSpine, summed_counts
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
    amb = sp.ambiguous()
    return Totals(
        hop_latency=_latency(sp, names),
        losses=_loss_table(m, _lost_rows(sp)),
        matched={name: int(sp.matched[k]) for k, name in enumerate(names)},
        unmatched={name: int(sp.unmatched[k]) for k, name in enumerate(names)},
        seen_at_point=pd.Series(sp.matched + sp.unmatched, index=names),
        journeys=int(m.next_journey),
        multi_point_journeys=int(sp.multi),
        ambiguous=int(amb.sum()),
        ambiguous_journey=amb,
    )


_QUANTILES = (0.5, 0.9, 0.99)

LATENCY_BINS = 1 << 10
"""Bins a value range of one point pair's latencies is counted in per pass of the spilled quantile search."""


def _ranks(n: int) -> list[tuple[int, int, float]]:
    """Per quantile of :data:`_QUANTILES` of ``n`` sorted values: the two ranks it reads and the fraction between them
    (linear interpolation, as pandas)."""
    at = []
    for q in _QUANTILES:
        h = (n - 1) * q
        lo = int(np.floor(h))
        at.append((lo, min(lo + 1, n - 1), h - lo))
    return at


def _latency(sp, names: pd.Index) -> pd.DataFrame:
    """HOP_LATENCY_COLUMNS from every consecutive pair of sightings: exact quantiles (linear, as pandas), per point pair."""
    rows = _spilled_rows(sp) if isinstance(sp, SpilledSpine) else _rows(sp)
    if not rows:
        return empty(HOP_LATENCY_COLUMNS)
    out = pd.DataFrame(rows, columns=["from", "to", "count", "median_ns", "p90_ns", "p99_ns", "min_ns", "max_ns"])
    for c in ("median_ns", "p90_ns", "p99_ns"):
        out[c] = out[c].round().astype(np.int64)
    out.insert(0, "from_point", names[out.pop("from").to_numpy()].astype(str))
    out.insert(1, "to_point", names[out.pop("to").to_numpy()].astype(str))
    out = out.sort_values("count", ascending=False, ignore_index=True)
    return conform(out, HOP_LATENCY_COLUMNS, table="hop_latency")


def _rows(sp) -> list[tuple]:
    """Per point pair (by code): from, to, count, the three quantiles, least and largest; from the spine in memory."""
    pair, lat = sp.array("pair"), sp.array("latency")
    rows = []
    for code in np.unique(pair):
        x = lat[pair == code]
        n = x.shape[0]
        at = _ranks(n)
        x = np.partition(x, sorted({0, n - 1, *(k for a in at for k in a[:2])}))  # those ranks in place, no full sort
        qs = [float(x[lo]) + (float(x[hi]) - float(x[lo])) * f for lo, hi, f in at]
        rows.append((int(code) // sp.npts, int(code) % sp.npts, n, *qs, int(x[0]), int(x[-1])))
    return rows


def _spilled_rows(sp: SpilledSpine) -> list[tuple]:
    """:func:`_rows` of a spilled spine: the values at the ranks the quantiles read, found by :func:`_spilled_ranks`."""
    value = _spilled_ranks(sp)
    rows = []
    for code in np.flatnonzero(sp.pair_n).tolist():
        n = int(sp.pair_n[code])
        qs = [float(value[code, lo]) + (float(value[code, hi]) - float(value[code, lo])) * f for lo, hi, f in _ranks(n)]
        rows.append((code // sp.npts, code % sp.npts, n, *qs, int(sp.pair_min[code]), int(sp.pair_max[code])))
    return rows


def _spilled_ranks(sp: SpilledSpine) -> dict[tuple[int, int], int]:
    """The latency at each rank the quantiles read, per point pair code: ``{(code, rank): value}``.

    A target is a pair's value range ``[lo, hi]`` holding ``count`` of its values, ``below`` of them smaller, and the
    wanted ranks within. It starts as the pair's whole range; a range of one value answers its ranks; targets whose
    values fit ``chunk_rows`` together are read whole and sorted; the others are counted in :data:`LATENCY_BINS` bins,
    and the bins holding wanted ranks are the next targets (each pass narrows a range 1,024 times: at most 7 passes
    over the pairs file, 2-3 for latencies of microseconds to seconds)."""
    value: dict[tuple[int, int], int] = {}
    targets = []  # (code, lo, hi, below, count, ranks)
    for code in np.flatnonzero(sp.pair_n).tolist():
        n = int(sp.pair_n[code])
        ranks = sorted({k for a in _ranks(n) for k in a[:2]})
        targets.append((code, int(sp.pair_min[code]), int(sp.pair_max[code]), 0, n, ranks))
    while targets:
        open_ = []
        for t in targets:
            if t[1] == t[2]:  # one value: every rank in it is that value
                value.update({(t[0], r): t[1] for r in t[5]})
            else:
                open_.append(t)
        if not open_:
            break
        whole, room = set(), sp.chunk_rows
        for i in sorted(range(len(open_)), key=lambda i: open_[i][4]):
            if open_[i][4] <= room:
                whole.add(i)
                room -= open_[i][4]
        shift = [max((t[2] - t[1]).bit_length() - LATENCY_BINS.bit_length() + 1, 0) for t in open_]
        got: dict[int, list] = {i: [] for i in whole}
        counts = {i: np.zeros(((t[2] - t[1]) >> shift[i]) + 1, np.int64) for i, t in enumerate(open_) if i not in whole}
        by_code: dict[int, list[int]] = {}
        for i, t in enumerate(open_):
            by_code.setdefault(t[0], []).append(i)
        codes = np.array(sorted(by_code), np.int64)
        for pair, lat in sp.pair_chunks(sp.chunk_rows):
            o = np.argsort(pair, kind="stable")
            ps, xs = pair[o], lat[o]
            start, end = np.searchsorted(ps, codes), np.searchsorted(ps, codes, side="right")
            for k, code in enumerate(codes.tolist()):
                x = xs[start[k] : end[k]]
                if not x.shape[0]:
                    continue
                for i in by_code[code]:
                    _, lo, hi = open_[i][:3]
                    sel = x[(x >= lo) & (x <= hi)]
                    if i in whole:
                        got[i].append(sel)
                    else:
                        counts[i] += np.bincount((sel - lo) >> shift[i], minlength=counts[i].shape[0])
        targets = []
        for i, (code, lo, hi, below, _, ranks) in enumerate(open_):
            if i in whole:
                x = np.sort(np.concatenate(got[i]))
                value.update({(code, r): int(x[r - below]) for r in ranks})
                continue
            cum = np.cumsum(counts[i])
            into: dict[int, list[int]] = {}
            for r in ranks:
                into.setdefault(int(np.searchsorted(cum, r - below, side="right")), []).append(r)
            for b, rs in into.items():
                blo = lo + (b << shift[i])
                targets.append((code, blo, min(blo + (1 << shift[i]) - 1, hi), below + (int(cum[b - 1]) if b else 0),
                                int(counts[i][b]), rs))  # fmt: skip
    return value


def _expected(sp) -> tuple[np.ndarray, np.ndarray]:
    """Flows (sorted) whose most common next point is known (seen next at least twice) and that point; a tie
    goes to the lower point number."""
    if not sp.next:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    f, q, n = summed_counts(sp.next)
    o = np.lexsort((q, -n, f))  # per flow: most sightings first, then the lower point
    f, q, n = f[o], q[o], n[o]
    first = np.ones(f.shape[0], bool)
    first[1:] = f[1:] != f[:-1]
    keep = first & (n >= 2)
    return f[keep], q[keep]


def _lost_rows(sp) -> dict[str, np.ndarray]:
    """The lost sightings (:func:`_lost`) of every chunk of whole journeys: journey, point, missing point, corrected
    time and flow of each."""
    keys, exp = _expected(sp)
    parts = []
    if keys.shape[0]:
        index = pd.Index(keys)  # hashed: a binary search per sighting costs 8x more
        for j0, _, cols in sp.chunks(getattr(sp, "chunk_rows", 0)):
            lost, q = _lost(sp, index, exp, cols)
            if lost.size:
                journey = j0 + np.searchsorted(np.cumsum(cols["size"], dtype=np.int64), lost, side="right")
                parts.append({"journey": journey.astype(np.int64), "point": cols["point"][lost].astype(np.int64), "missing_at": q,
                              "tc": cols["tc"][lost], "flow": cols["flow"][lost]})  # fmt: skip
    if not parts:
        return {"journey": np.zeros(0, np.int64), "point": np.zeros(0, np.int64), "missing_at": np.zeros(0, np.int64),
                "tc": np.zeros(0, np.int64), "flow": np.zeros(0, np.uint64)}  # fmt: skip
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def _lost(sp, index: pd.Index, exp: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in ``cols``, whole journeys of the spine) of sightings whose journey never reached the point their
    flow direction reaches next while it was capturing, and that point (latency.losses, from the spine)."""
    flow, t, size = cols["flow"], cols["tc"], cols["size"]
    if not flow.shape[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pos = index.get_indexer(flow)
    known = pos >= 0
    q = np.where(known, exp[pos], 0)
    j = np.repeat(np.arange(size.shape[0], dtype=np.int64), size)
    if sp.npts <= 64:
        reached = ((cols["mask"][j] >> q.astype(np.uint64)) & np.uint64(1)).astype(bool)
    else:
        codes = cols["point"].astype(np.int64)
        reached = np.isin(j * sp.npts + q, j * sp.npts + codes)
    del j
    live = known & (t >= sp.lo[q]) & (t <= sp.hi[q]) & ~reached
    lost = np.flatnonzero(live)
    return lost, q[lost]


def _loss_table(m: Matcher, got: dict[str, np.ndarray]) -> pd.DataFrame:
    """LOSS_COLUMNS rows of the lost sightings; addresses and ports from the flow each was seen in."""
    fl = m.spine.flow_table()
    if fl is not None and got["flow"].size:
        at = np.searchsorted(fl["flow"], got["flow"])
    else:
        fl = {c: np.zeros(0, np.int64) for c in ("src", "dst", "sport", "dport", "proto")}
        at = np.zeros(0, np.int64)
    point_dtype = pd.CategoricalDtype(pd.Index(m.point_names))
    out = pd.DataFrame({
        "journey": got["journey"],
        "point": pd.Categorical.from_codes(got["point"], dtype=point_dtype),
        "missing_at": pd.Categorical.from_codes(got["missing_at"], dtype=point_dtype),
        "ts_corrected_ns": got["tc"],
        "src": pd.Categorical.from_codes(fl["src"][at].astype(np.int32), dtype=m.cats.dtype("src")),
        "dst": pd.Categorical.from_codes(fl["dst"][at].astype(np.int32), dtype=m.cats.dtype("dst")),
        "sport": fl["sport"][at].astype(np.int32),
        "dport": fl["dport"][at].astype(np.int32),
        "proto": fl["proto"][at].astype(np.int16),
    })  # fmt: skip
    return validate(out.loc[:, [c.name for c in LOSS_COLUMNS]], LOSS_COLUMNS, table="losses")
