"""The spine of a correlation run: what its summary needs of every sighting, gathered window by window.

Per emitted sighting, in hops order: point, corrected time and flow hash (18 bytes); per consecutive pair of
sightings of one journey: their point pair and latency (10 bytes); per journey: its size, fingerprint and points as
bits (20 bytes). Summed as windows go, in memory: per flow (a 5-tuple at a point) its next points' counts and its
addresses, per point its sightings and capture span, per point pair its count and least and largest latency.
Hop latency percentiles, losses and ambiguity (a fingerprint owning more than one journey, possibly in another
window) are exact functions of it, computed once at the end (:mod:`.summary`).

:class:`Spine` keeps the per-sighting parts in memory (the one-window run). :class:`SpilledSpine` (a streamed run)
appends each window's parts to files in ``TMPDIR`` (:class:`.partition.Partitions`, removed by ``close``: on
success, on an error, on Ctrl-C and on SIGTERM through ``finally``) and the summary reads them back a chunk of
whole journeys at a time, so what it holds grows with flows, point pairs and journeys (1 byte each, the final
ambiguity), not with sightings.
"""

from __future__ import annotations

from collections.abc import Iterator

import numba
import numpy as np
import pandas as pd

_EMPTY_U64 = ("flow", "mask", "fp")
"""Spine columns of unsigned 64-bit values (the others are integers)."""


def repeated(values: np.ndarray) -> np.ndarray:
    """Per element: its value occurs more than once. Sorted values (journeys numbered by fingerprint) are compared
    with their neighbours; others are hashed (``pd.factorize``) and counted, no sort."""
    v = np.asarray(values)
    if v.shape[0] > 1 and (v[1:] >= v[:-1]).all():
        same = v[1:] == v[:-1]
        out = np.zeros(v.shape[0], bool)
        out[1:] = same
        out[:-1] |= same
        return out
    codes, uniq = pd.factorize(v, sort=False)
    return np.bincount(codes, minlength=uniq.shape[0])[codes] > 1


def pair_counts(f: np.ndarray, q: np.ndarray, npts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (flow ``f``, point ``q`` < ``npts``) pairs sorted by flow then point, and how often each occurs.

    Flows are hashed (``pd.factorize``) and counted per point with one bincount; only the distinct pairs
    are sorted. With very many distinct flows (the count table would outgrow the input) the rows are sorted."""
    codes, uniq = pd.factorize(f, sort=False)
    if uniq.shape[0] * npts <= 4 * f.shape[0] + 1024:
        cnt = np.bincount(codes.astype(np.int64) * npts + q, minlength=uniq.shape[0] * npts)
        nz = np.flatnonzero(cnt)
        fu, qu = uniq[nz // npts], nz % npts
        o = np.lexsort((qu, fu))
        return fu[o], qu[o], cnt[nz][o]
    o = np.lexsort((q, f))
    f, q = f[o], q[o]
    new = np.ones(f.shape[0], bool)
    new[1:] = (f[1:] != f[:-1]) | (q[1:] != q[:-1])
    starts = np.flatnonzero(new)
    return f[starts], q[starts], np.diff(np.append(starts, f.shape[0]))


def summed_counts(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_counts` of several windows as one: distinct (flow, point) sorted, their counts summed."""
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(parts) == 1:
        return parts[0]
    f = np.concatenate([x[0] for x in parts])
    q = np.concatenate([x[1] for x in parts])
    n = np.concatenate([x[2] for x in parts])
    o = np.lexsort((q, f))
    f, q, n = f[o], q[o], n[o]
    new = np.ones(f.shape[0], bool)
    new[1:] = (f[1:] != f[:-1]) | (q[1:] != q[:-1])
    starts = np.flatnonzero(new)
    return f[starts], q[starts], np.add.reduceat(n, starts) if starts.size else n[:0]


@numba.njit(cache=True, nogil=True)
def _sightings(pid, tc, flow, size, npts, point, pair, latency, flow_at, next_point, mask, matched, unmatched, lo,
               hi):  # pragma: no cover - compiled  # fmt: skip
    """:meth:`Spine.add` of sightings in hops order (``size`` per journey), one pass: each one's point (``point``), per
    consecutive pair of a journey's sightings its point pair, latency, first sighting's flow and second one's point,
    per journey its points as bits (``mask``, if it has room), and the per-point sums (matched: of journeys seen
    twice or more, unmatched, least and largest time) added to."""
    k = 0
    a = 0
    for j in range(size.shape[0]):
        s = size[j]
        bits = np.uint64(0)
        for h in range(s):
            p = pid[k]
            t = tc[k]
            point[k] = p
            if s > 1:
                matched[p] += 1
            else:
                unmatched[p] += 1
            lo[p] = min(lo[p], t)
            hi[p] = max(hi[p], t)
            if npts <= 64:
                bits |= np.uint64(1) << np.uint64(p)
            if h > 0:
                pair[a] = pid[k - 1] * npts + p
                latency[a] = t - tc[k - 1]
                flow_at[a] = flow[k - 1]
                next_point[a] = p
                a += 1
            k += 1
        if mask.shape[0]:
            mask[j] = bits


COMPACT_ROWS = 1 << 16
"""Per-window sums (next points, flows) are merged into one once they hold this many rows more than twice the merged
ones: they stay about the size of the run's distinct flows, however many windows the run has."""


class Spine:
    """What the summary needs, gathered window by window (module doc), the per-sighting parts in memory."""

    def __init__(self, npts: int) -> None:
        self.npts = npts
        self.cols: dict[str, list] = {c: [] for c in ("point", "tc", "flow", "size", "mask", "fp", "pair", "latency")}
        self.flows: list[dict] = []  # per window: (flow, src, dst, sport, dport, proto) of its distinct flows
        self.next: list[tuple] = []  # per window: distinct (flow, next point) and their counts
        self._merged = [0, 0]  # rows of the merged next-point counts and flows (:data:`COMPACT_ROWS`)
        self.matched = np.zeros(npts, np.int64)
        self.unmatched = np.zeros(npts, np.int64)
        self.multi = 0
        self.journeys = 0
        self.sightings = 0
        self.lo = np.full(npts, np.iinfo(np.int64).max)
        self.hi = np.full(npts, np.iinfo(np.int64).min)
        self._small = np.int16 if npts * npts < 1 << 15 else np.int32
        self._amb: np.ndarray | None = None

    def add(self, pid: np.ndarray, tc: np.ndarray, flow: np.ndarray, fps: np.ndarray, size: np.ndarray) -> None:
        """One window's complete journeys, numbered on from the last ones (sightings in hops order; ``size``:
        sightings per journey)."""
        n = pid.shape[0]
        size = np.asarray(size, np.int64)
        m = n - size.shape[0]  # consecutive pairs of sightings of one journey
        point, pair = np.empty(n, self._small), np.empty(m, self._small)
        latency, flow_at, next_point = np.empty(m, np.int64), np.empty(m, np.uint64), np.empty(m, np.int64)
        mask = np.empty(size.shape[0] if self.npts <= 64 else 0, np.uint64)
        _sightings(pid, np.asarray(tc, np.int64), np.asarray(flow, np.uint64), size, self.npts, point, pair, latency,
                   flow_at, next_point, mask, self.matched, self.unmatched, self.lo, self.hi)  # fmt: skip
        journeys = {"size": size.astype(np.int32), "fp": fps}
        if self.npts <= 64:  # the points of each journey, as bits
            journeys["mask"] = mask
        self._keep({"point": point, "tc": tc, "flow": flow}, journeys, {"pair": pair, "latency": latency})
        self.next.append(pair_counts(flow_at, next_point, self.npts))
        self.multi += int((size > 1).sum())
        self.journeys += int(size.shape[0])
        self.sightings += n
        self._amb = None
        if sum(x[0].shape[0] for x in self.next) > 2 * self._merged[0] + COMPACT_ROWS:
            self.next = [summed_counts(self.next)]
            self._merged[0] = self.next[0][0].shape[0]

    def add_flows(self, flows: dict[str, np.ndarray]) -> None:
        """One window's distinct flows (``flow`` hash, then ``src``, ``dst``, ``sport``, ``dport``, ``proto``); the
        first one seen of each flow is what the losses table reads."""
        self.flows.append(flows)
        if sum(f["flow"].shape[0] for f in self.flows) > 2 * self._merged[1] + COMPACT_ROWS:
            self.flows = [self.flow_table()]
            self._merged[1] = self.flows[0]["flow"].shape[0]

    def flow_table(self) -> dict[str, np.ndarray] | None:
        """Each distinct flow once, as first seen, sorted by flow hash (None before any)."""
        if not self.flows:
            return None
        fl = {c: np.concatenate([p[c] for p in self.flows]) for c in self.flows[0]} if len(self.flows) > 1 else self.flows[0]
        _, first = np.unique(fl["flow"], return_index=True)
        return {c: v[first] for c, v in fl.items()}

    def _keep(self, sightings: dict, journeys: dict, pairs: dict) -> None:
        for part in (sightings, journeys, pairs):
            for c, v in part.items():
                self.cols[c].append(v)

    def ambiguous(self) -> np.ndarray:
        """Per journey number: its fingerprint owns another journey too (computed once)."""
        if self._amb is None:
            self._amb = repeated(self.array("fp"))
        return self._amb

    def chunks(self, rows: int) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:  # noqa: ARG002
        """(first journey, first sighting, columns) of the journeys in chunks of whole journeys: here one chunk of all.
        Columns: ``point``, ``tc``, ``flow`` per sighting, ``size`` and (at most 64 points) ``mask`` per journey."""
        cols = {c: self.array(c) for c in ("point", "tc", "flow", "size")}
        if self.npts <= 64:
            cols["mask"] = self.array("mask")
        yield 0, 0, cols

    def array(self, name: str) -> np.ndarray:
        """One gathered column as a single array (kept so, the pieces released)."""
        lst = self.cols[name]
        if len(lst) != 1:
            lst[:] = [np.concatenate(lst) if lst else np.zeros(0, np.uint64 if name in _EMPTY_U64 else np.int64)]
        return lst[0]

    def close(self) -> None:
        """Nothing to remove (:meth:`SpilledSpine.close` removes its files)."""


class SpilledSpine(Spine):
    """:class:`Spine` with the per-sighting, per-pair and per-journey parts appended to files in ``TMPDIR`` as each
    window comes, and read back ``chunk_rows`` at a time (module doc). Per point pair, its latencies' count, least
    and largest are summed in memory (the summary's quantile search starts from them)."""

    def __init__(self, npts: int, *, chunk_rows: int) -> None:
        from pcaptools.correlate.partition import Partitions

        super().__init__(npts)
        self.chunk_rows = max(int(chunk_rows), 1)
        self.disk = Partitions(1, flush_rows=1, prefix="pcaptools-spine-")
        npairs = npts * npts
        self.pair_n = np.zeros(npairs, np.int64)
        self.pair_min = np.full(npairs, np.iinfo(np.int64).max)
        self.pair_max = np.full(npairs, np.iinfo(np.int64).min)
        self.pairs = 0

    def _keep(self, sightings: dict, journeys: dict, pairs: dict) -> None:
        self.disk.put(sightings, 0, kind="sightings")
        self.disk.put(journeys, 0, kind="journeys")
        if pairs["pair"].shape[0]:
            self.disk.put(pairs, 0, kind="pairs")
            code = pairs["pair"].astype(np.int64)
            self.pair_n += np.bincount(code, minlength=self.pair_n.shape[0])
            np.minimum.at(self.pair_min, code, pairs["latency"])
            np.maximum.at(self.pair_max, code, pairs["latency"])
            self.pairs += int(code.shape[0])

    def read(self, kind: str, start: int, count: int) -> dict[str, np.ndarray]:
        """Records ``start`` to ``start + count`` of one kind of file (``sightings``, ``journeys``, ``pairs``)."""
        return self.disk.read(0, kind, int(start), int(count))

    def chunks(self, rows: int) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """:meth:`Spine.chunks`: chunks of whole journeys of at most ``rows`` sightings (or one journey, if larger)."""
        j0 = s0 = 0
        while j0 < self.journeys:
            js = self.read("journeys", j0, min(rows, self.journeys - j0))  # at least one sighting a journey
            end = np.cumsum(js["size"], dtype=np.int64)
            k = max(int(np.searchsorted(end, rows, side="right")), 1)
            count = int(end[k - 1])
            cols = self.read("sightings", s0, count)
            cols["size"] = js["size"][:k]
            if "mask" in js:
                cols["mask"] = js["mask"][:k]
            yield j0, s0, cols
            j0 += k
            s0 += count

    def pair_chunks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(point pair code, latency) of every consecutive pair of sightings, ``rows`` at a time."""
        for lo in range(0, self.pairs, rows):
            got = self.read("pairs", lo, min(rows, self.pairs - lo))
            yield got["pair"], got["latency"]

    def ambiguous(self) -> np.ndarray:
        """Per journey number (in memory, 1 byte each): its fingerprint owns another journey too. The journeys'
        fingerprints are split by their hash into files of about ``chunk_rows`` each (one fingerprint's journeys
        share one), each read whole to find its repeated fingerprints; one file's worth is read as it is."""
        if self._amb is not None:
            return self._amb
        from pcaptools.correlate.fingerprint import fingerprint_partition

        amb = np.zeros(self.journeys, bool)
        parts = -(-self.journeys // self.chunk_rows)
        if parts <= 1:
            if self.journeys:
                amb[:] = repeated(self.read("journeys", 0, self.journeys)["fp"])
        else:
            for lo in range(0, self.journeys, self.chunk_rows):
                fp = self.read("journeys", lo, min(self.chunk_rows, self.journeys - lo))["fp"]
                self.disk.put({"fp": fp, "journey": np.arange(lo, lo + fp.shape[0], dtype=np.int64)},
                              fingerprint_partition(fp, parts), kind="fingerprints")  # fmt: skip
            for p in range(parts):
                n = self.disk.size(p, "fingerprints")
                if not n:
                    continue
                got = self.disk.read(p, "fingerprints", 0, n)
                self.disk.remove(p, "fingerprints")
                amb[got["journey"][repeated(got["fp"])]] = True
        self._amb = amb
        return amb

    def close(self) -> None:
        """Remove the spine's files."""
        self.disk.close()
