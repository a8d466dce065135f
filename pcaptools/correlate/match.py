"""Pair sightings of the same packet across capture points into journeys (numpy sort + one numba walk).

Rows are sorted by (fingerprint, corrected time). A row's *slot* is how the packet looks at its point: the point, the
TTL and whether it came tunnelled (:func:`.windows.slots`), so that a packet routed back out of the interface it came
in by (a hairpin) takes a second slot there. Within one fingerprint, a sighting at slot ``p`` joins the oldest open
journey that started at most ``window_ns`` earlier, has not been seen at ``p`` yet and whose latest sighting has a TTL
at least the sighting's; otherwise it opens a new journey. That keeps FIFO order for repeats (retransmissions, duplicate ACK
bursts) and puts two sightings from one point into one journey only at another look: a lower TTL (routed back), or
the same TTL tunnelled the other way (an ``-i any`` capture without interface numbers sees a packet on the overlay
device and, encapsulated, on the uplink as one point).

The TTL (IPv6 hop limit) of a packet never rises along its path: routers decrement it; NAT and VXLAN, Geneve, IPIP or
GRE encapsulation leave the inner packet's alone (a tunnelled row's ``ttl`` is the inner packet's). Fingerprints leave
addresses and ports out (:mod:`.fingerprint`), so unrelated packets can share one; the TTL keeps such a packet seen
with a higher TTL than the journey's last sighting, for instance one sent back the other way, out of the journey. A
row without a TTL (``ttl`` negative) neither is held to the rule nor holds a later row to it.

Limit: the rule reads sightings in corrected time. TTL drops happen inside one node (one clock) and transfers between
nodes keep the TTL, so a clock error only swaps sightings of equal TTL, which the rule allows; but where a router
between two capture nodes decrements the TTL, a clock error between them larger than that link's one-way latency puts
the downstream sighting (lower TTL) first and splits the journey in two. And an unrelated packet whose TTL happens to
be no higher than the journey's last (a reply reaching the point where the request started, after more hops than the
request had made; ICMP errors from routers further and further away) still joins.
"""

from __future__ import annotations

import numba
import numpy as np

NO_TTL = 1 << 30
"""A TTL above any real one: what the walk holds for a sighting without a TTL (coded negative) and for a journey with
none yet, so that neither constrains the other."""


@numba.njit(cache=True)
def _walk(fp, ts, pt, ttl, window, npoints):  # pragma: no cover - compiled
    n = fp.shape[0]
    jid = np.empty(n, np.int64)
    words = (npoints + 63) // 64
    seen = np.zeros((n, words), np.uint64)  # per journey (worst case one per row): slots seen
    jstart = np.empty(n, np.int64)
    jttl = np.empty(n, np.int64)  # per journey: TTL of its latest sighting with one (NO_TTL: none yet)
    ptr = np.zeros(npoints, np.int64)  # per slot: first open journey that may lack it
    nj = 0
    head = 0  # first journey still inside the window
    for i in range(n):
        if i == 0 or fp[i] != fp[i - 1]:
            head = nj
            for k in range(npoints):
                ptr[k] = nj
        t = ts[i]
        while head < nj and t - jstart[head] > window:
            head += 1
        p = pt[i]
        w = p // 64
        bit = np.uint64(1) << np.uint64(p % 64)
        h = np.int64(ttl[i])
        if h < 0:  # no TTL (not IP, or not read): joins whatever its place allows
            h = NO_TTL
        j = max(ptr[p], head)
        while j < nj:
            if (seen[j, w] & bit) == 0 and (h == NO_TTL or h <= jttl[j]):
                break  # lacks p, and its TTL lets the sighting follow
            j += 1
        if j == nj:
            jstart[nj] = t
            jttl[nj] = NO_TTL
            nj += 1
        seen[j, w] |= bit
        if h != NO_TTL:
            jttl[j] = h  # never above the journey's last TTL: the least so far
        jid[i] = j
        # every journey in [start, j] now holds p or never will: a slot has one TTL, a journey's only falls
        ptr[p] = j + 1
    return jid


@numba.njit(cache=True)
def _sort_runs(f, t, rows, p):  # pragma: no cover - compiled
    """In place, within each run of equal ``f``: sort stably by ``t``, moving ``rows`` and ``p`` along (runs are
    mostly 1-8 rows; the arrays are gathered in fingerprint order, so every access is sequential)."""
    n = f.shape[0]
    i = 0
    while i < n:
        j = i + 1
        while j < n and f[j] == f[i]:
            j += 1
        if j - i <= 32:  # insertion sort: stable, no allocation
            for a in range(i + 1, j):
                k, r, q = t[a], rows[a], p[a]
                c = a - 1
                while c >= i and t[c] > k:
                    t[c + 1], rows[c + 1], p[c + 1] = t[c], rows[c], p[c]
                    c -= 1
                t[c + 1], rows[c + 1], p[c + 1] = k, r, q
        else:
            o = np.argsort(t[i:j], kind="mergesort")
            t[i:j], rows[i:j], p[i:j] = t[i:j][o], rows[i:j][o], p[i:j][o]
        i = j


@numba.njit(cache=True, nogil=True)
def _bucket_sort(fp, rows, bits):  # pragma: no cover - compiled
    """``rows`` ordered by ``fp[rows]``, ties kept in the order given: a stable counting sort on the top ``bits``
    bits, then a stable sort inside each bucket (insertion sort; a merge sort for a crowded one)."""
    n = rows.shape[0]
    shift = np.uint64(64 - bits)
    end = np.zeros((1 << bits) + 1, np.int64)
    for i in range(n):
        end[(fp[rows[i]] >> shift) + np.uint64(1)] += 1
    for b in range(1 << bits):
        end[b + 1] += end[b]
    out = np.empty(n, np.int64)
    key = np.empty(n, np.uint64)
    for i in range(n):
        r = rows[i]
        f = fp[r]
        b = f >> shift
        out[end[b]] = r
        key[end[b]] = f
        end[b] += 1
    lo = 0
    for b in range(1 << bits):
        hi = end[b]
        if hi - lo > 32:
            o = np.argsort(key[lo:hi], kind="mergesort")
            out[lo:hi] = out[lo:hi][o]
        elif hi - lo > 1:
            for a in range(lo + 1, hi):
                r = out[a]
                k = key[a]
                c = a - 1
                while c >= lo and key[c] > k:
                    out[c + 1] = out[c]
                    key[c + 1] = key[c]
                    c -= 1
                out[c + 1] = r
                key[c + 1] = k
        lo = hi
    return out


def by_fingerprint(fp: np.ndarray) -> np.ndarray:
    """Matchable rows (``fp != 0``) ordered by fingerprint, ties in row order: the one sort both passes share.

    Fingerprints are hashes, spread evenly: a bucket per row on their top bits leaves a few rows to sort in
    each, three passes in all (a stable ``argsort`` of 4 M rows costs several times that); the order is
    exactly the stable ``argsort``'s."""
    fp = np.asarray(fp, np.uint64)
    rows = np.flatnonzero(fp != 0)
    if rows.shape[0] < 1 << 12:
        return rows[np.argsort(fp[rows], kind="stable")]
    return _bucket_sort(fp, rows, min(int(rows.shape[0]).bit_length(), 22))


def compact_order(keep: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``order`` (row numbers, only rows where ``keep``) as positions among the kept rows: the same sort of
    ``rows[keep]``, without sorting again."""
    if keep.all():  # nothing left out: positions are row numbers
        return order
    pos = np.cumsum(keep, dtype=np.int64) - 1
    return pos[order[keep[order]]]


CLOCK_SAMPLE = 1 << 18
"""Distinct fingerprints the clock estimate reads at most (a bounded sample: see :func:`clock_sample`)."""


def clock_sample(fp: np.ndarray, k: int = CLOCK_SAMPLE, *, order: np.ndarray | None = None) -> np.ndarray:
    """Mask of the rows whose fingerprint is one of the ``k`` smallest distinct non-zero fingerprints.

    A fingerprint is a hash, so this is a uniform sample of packets over time that keeps every sighting
    of each sampled packet; and the bottom ``k`` of a union is the bottom ``k`` of its parts' bottom ``k``s,
    so windows of a stream and partitions of a cluster pick the same sample as one pass over everything.
    ``order``: :func:`by_fingerprint` of ``fp`` if known."""
    fp = np.asarray(fp, np.uint64)
    if order is None:
        order = by_fingerprint(fp)
    s = fp[order]
    new = np.ones(s.shape[0], bool)
    new[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(new)
    if starts.shape[0] <= k:
        return fp != 0
    return (fp != 0) & (fp < s[starts[k]])  # s[starts[k]]: the smallest fingerprint left out


def time_order(fp: np.ndarray, ts_ns: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Matchable rows by (fingerprint, time), ties in row order: ``lexsort((ts, fp))`` of them, from ``order``
    (:func:`by_fingerprint`) with a stable time sort inside each fingerprint's run."""
    fp = np.asarray(fp, np.uint64)
    if order is None:
        order = by_fingerprint(fp)
    rows = np.array(order, np.int64)
    _sort_runs(fp[rows], np.asarray(ts_ns, np.int64)[rows], rows, np.empty(rows.shape[0], np.int64))
    return rows


def journeys(fp: np.ndarray, ts_ns: np.ndarray, point: np.ndarray, ttl: np.ndarray, *, window_ns: int, npoints: int,
             order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rows by (journey, time, row) and the journey id of each: ``journey_order(jid, ft)`` and ``jid`` in that order,
    where ``ft = time_order(fp, ts_ns, order)`` and ``jid = match(fp, ts_ns, point, ttl, order=ft)``, with the rows'
    columns gathered once (``order``: :func:`by_fingerprint` of ``fp``; ``point``: each row's slot, below ``npoints``,
    one per (point, TTL, tunnelled) (:func:`.windows.slots`); ``ttl``: each
    row's TTL or hop limit, negative where it has none, one value per slot: a journey passed over at a slot for its TTL
    is passed over there for good)."""
    rows = np.array(order, np.int64)
    f, t, p = np.asarray(fp, np.uint64)[rows], np.asarray(ts_ns, np.int64)[rows], np.asarray(point, np.int64)[rows]
    return _journeys(f, t, rows, p, np.asarray(ttl), int(window_ns), int(npoints))


@numba.njit(cache=True)
def _journeys(f, t, rows, p, ttl, window, npoints):  # pragma: no cover - compiled
    """:func:`_sort_runs`, :func:`_walk` and :func:`_group` in one kernel: a fresh process loads one compiled
    library from numba's cache instead of three (30-60 ms each). ``ttl``: of every row (read at ``rows``)."""
    _sort_runs(f, t, rows, p)
    h = np.empty(rows.shape[0], np.int64)
    for i in range(rows.shape[0]):
        h[i] = ttl[rows[i]]
    return _group(_walk(f, t, p, h, window, npoints), rows)


def match(fp: np.ndarray, ts_ns: np.ndarray, point: np.ndarray, ttl: np.ndarray, *, window_ns: int, npoints: int,
          order: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Journey id per row (-1 where ``fp == 0``); journey ids are dense, ordered by (fingerprint, first time).

    ``point``, ``ttl``: as :func:`journeys` reads them; ``order``: :func:`time_order` of ``fp`` and ``ts_ns`` if
    already computed."""
    fp = np.asarray(fp, np.uint64)
    out = np.full(fp.shape[0], -1, np.int64)
    ts_ns = np.asarray(ts_ns, np.int64)
    if order is None:
        order = time_order(fp, ts_ns)
    if order.size == 0:
        return out
    jid = _walk(fp[order], ts_ns[order], np.asarray(point, np.int64)[order], np.asarray(ttl, np.int64)[order],
                int(window_ns), int(npoints))  # fmt: skip
    out[order] = jid
    return out


@numba.njit(cache=True)
def _group(jid, rows):  # pragma: no cover - compiled
    """``rows`` (with ``jid``, their journey ids, in fingerprint and time order) regrouped by journey, a stable
    counting sort in linear time; and the journey id of each row in the new order."""
    n = rows.shape[0]
    nj = 0
    for i in range(n):
        if jid[i] + 1 > nj:
            nj = jid[i] + 1
    start = np.zeros(nj + 1, np.int64)
    for i in range(n):
        start[jid[i] + 1] += 1
    for k in range(nj):
        start[k + 1] += start[k]
    out = np.empty(n, np.int64)
    j_out = np.empty(n, np.int64)
    for i in range(n):
        j = jid[i]
        out[start[j]] = rows[i]
        j_out[start[j]] = j
        start[j] += 1
    return out, j_out


def journey_order(jid: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``order`` (rows by fingerprint and time) regrouped by journey id, a stable counting sort: rows by
    (journey, time, row), what ``lexsort((ts, jid))`` gives, in linear time."""
    return _group(np.asarray(jid, np.int64)[order], np.asarray(order, np.int64))[0]


@numba.njit(cache=True)
def _unique_walk(f, p, npoints):  # pragma: no cover - compiled
    """Group id per row of fingerprint runs seen at 2+ points and at most once per point, else -1."""
    n = f.shape[0]
    out = np.full(n, -1, np.int64)
    last = np.full(npoints, -1, np.int64)  # run that last saw each point
    g = -1
    i = 0
    while i < n:
        j = i + 1
        while j < n and f[j] == f[i]:
            j += 1
        g += 1
        ok = j - i >= 2
        for a in range(i, j):
            if last[p[a]] == g:
                ok = False
            last[p[a]] = g
        if ok:
            for a in range(i, j):
                out[a] = g
        i = j
    return out


def unique_groups(fp: np.ndarray, point: np.ndarray, *, order: np.ndarray | None = None) -> np.ndarray:
    """Journey id per row for fingerprints seen at most once per point and at 2+ points, else -1 (clock-free).

    Ids number the fingerprints in ascending order; ``order``: :func:`by_fingerprint` of ``fp`` if known."""
    fp = np.asarray(fp, np.uint64)
    out = np.full(fp.shape[0], -1, np.int64)
    if order is None:
        order = by_fingerprint(fp)
    if order.size == 0:
        return out
    p = np.asarray(point, np.int64)
    out[order] = runs_seen_once(fp[order], p[order], int(p.max()) + 1)
    return out


def runs_seen_once(f: np.ndarray, p: np.ndarray, npoints: int) -> np.ndarray:
    """:func:`unique_groups` of rows already in fingerprint order (``f``: their fingerprints, ``p``: their points
    below ``npoints``): group id per row, in that order."""
    return _unique_walk(f, p, npoints)
