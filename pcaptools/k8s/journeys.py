"""Compiled passes over a hops table whose rows are grouped by journey (a journey's sightings contiguous).

A journey is one packet seen at a few capture points, so its run of rows is short: each kernel compares the
rows of one run with each other (quadratic in the run, linear in the table) instead of hashing or sorting
the whole table, which is what made :func:`pcaptools.k8s.nat.order_hops` and :func:`pcaptools.k8s.paths._build`
cost a second on a million sightings. Limits: a run of thousands of rows (one packet duplicated thousands of
times) costs its square; the callers fall back to their vectorised code when rows are not grouped.
"""

from __future__ import annotations

import numpy as np

from pcaptools.jit import njit


def grouped(j: np.ndarray) -> bool:
    """Whether ``j`` is non-decreasing, so each journey's rows are one run (what these kernels need)."""
    return bool(len(j) < 2 or (j[1:] >= j[:-1]).all())


def journey_index(j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct journeys in ascending order, each row's index in them), as ``np.unique(j, return_inverse=True)``
    gives them; read off the runs, with no sort, when the rows are grouped (:func:`grouped`)."""
    if len(j) and grouped(j):
        new = np.r_[True, j[1:] != j[:-1]]
        return j[new], np.cumsum(new) - 1
    uj, ji = np.unique(j, return_inverse=True)
    return uj, ji.reshape(-1)


@njit(cache=True, nogil=True)
def run_causal_order(j, ttl, node, src_node, osrc_node, dst_node, odst_node, ts):  # pragma: no cover - compiled
    """Each journey run's rows in causal order (:func:`pcaptools.k8s.nat.order_hops`): a stable sort of the run by
    (TTL descending, role, time), a row's role 0 where its capture ``node`` (a code, -1 unknown) owns the (outer)
    source, else 2 where it owns the (outer) destination, else 1, and the least role of the run's rows with the same
    (TTL, node) taken by each. Returns (the row order, each row's position in its run (int16, as the hops table's
    ``hop``), whether any row moved)."""
    n = len(j)
    order = np.arange(n)
    hop = np.empty(n, np.int16)
    role = np.empty(n, np.int64)
    g = np.empty(n, np.int64)
    moved = False
    s = 0
    while s < n:
        e = s + 1
        while e < n and j[e] == j[s]:
            e += 1
        for r in range(s, e):
            p = node[r]
            if p >= 0 and (p == src_node[r] or p == osrc_node[r]):
                role[r] = 0
            elif p >= 0 and (p == dst_node[r] or p == odst_node[r]):
                role[r] = 2
            else:
                role[r] = 1
        for r in range(s, e):
            hop[r] = r - s
            m = role[r]
            for k in range(s, e):
                if ttl[k] == ttl[r] and node[k] == node[r] and role[k] < m:
                    m = role[k]
            g[r] = m
        for r in range(s + 1, e):  # insertion sort: a row moves before those strictly after it (stable)
            x = order[r]
            q = r - 1
            while q >= s:
                y = order[q]
                if ttl[y] != ttl[x]:
                    after = ttl[y] < ttl[x]
                elif g[y] != g[x]:
                    after = g[y] > g[x]
                else:
                    after = ts[y] > ts[x]
                if not after:
                    break
                order[q + 1] = y
                q -= 1
            if q + 1 != r:
                order[q + 1] = x
                moved = True
        s = e
    return order, hop, moved


@njit(cache=True, nogil=True)
def run_distinct(j, a, b, c, t, f1, f2):  # pragma: no cover - compiled
    """The distinct (``a``, ``b``, ``c``) of each journey run: (row of its first occurrence, least ``t``, any ``f1``,
    any ``f2``) per distinct value, in row order."""
    n = len(j)
    first = np.empty(n, np.int64)
    tmin = np.empty(n, np.int64)
    any1 = np.zeros(n, np.bool_)
    any2 = np.zeros(n, np.bool_)
    m = 0
    s = 0
    while s < n:
        e = s + 1
        while e < n and j[e] == j[s]:
            e += 1
        m0 = m
        for r in range(s, e):
            hit = -1
            for q in range(m0, m):
                k = first[q]
                if a[k] == a[r] and b[k] == b[r] and c[k] == c[r]:
                    hit = q
                    break
            if hit < 0:
                hit = m
                first[m] = r
                tmin[m] = t[r]
                m += 1
            elif t[r] < tmin[hit]:
                tmin[hit] = t[r]
            any1[hit] = any1[hit] or f1[r]
            any2[hit] = any2[hit] or f2[r]
        s = e
    return first[:m], tmin[:m], any1[:m], any2[:m]


@njit(cache=True, nogil=True)
def run_directions(ji, crow, s, sp, d, dp, fwd_a, fwd_b, nj):  # pragma: no cover - compiled
    """Per journey (``ji`` its index per row), whether some row carries a 5-tuple of its connection's first packet
    (rows ``fwd_a[c]:fwd_b[c]``; ``fwd_b <= fwd_a`` when none), and whether some row carries the reverse of one."""
    fwd = np.zeros(nj, np.bool_)
    rev = np.zeros(nj, np.bool_)
    for r in range(len(ji)):
        c = crow[r]
        for k in range(fwd_a[c], fwd_b[c]):
            if s[k] == s[r] and sp[k] == sp[r] and d[k] == d[r] and dp[k] == dp[r]:
                fwd[ji[r]] = True
            if s[k] == d[r] and sp[k] == dp[r] and d[k] == s[r] and dp[k] == sp[r]:
                rev[ji[r]] = True
    return fwd, rev


@njit(cache=True, nogil=True)
def components(pj, key, t, nj, nk):  # pragma: no cover - compiled
    """Per journey (``0 <= pj < nj``), the least journey index of its component in the graph of journey ``pj[i]`` -
    tuple ``key[i]`` (``0 <= key < nk``) edges (union-find, each set's root its least member); and per root, the
    least ``t[i]`` of its component's edges (int64 max for a journey that is no root)."""
    parent = np.arange(nj + nk)
    for i in range(len(pj)):
        a = pj[i]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        b = nj + key[i]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    out = np.empty(nj, np.int64)
    for x in range(nj):
        a = x
        while parent[a] != a:
            a = parent[a]
        out[x] = a
    first = np.full(nj, np.iinfo(np.int64).max, np.int64)
    for i in range(len(pj)):
        r = out[pj[i]]
        if t[i] < first[r]:
            first[r] = t[i]
    return out, first


@njit(cache=True, nogil=True)
def pick_least(group, eligible, prio, t, ngroups):  # pragma: no cover - compiled
    """Per group, the index of its eligible element with the least (``prio``, ``t``), the first on a tie; -1 if none."""
    out = np.full(ngroups, -1, np.int64)
    for i in range(len(group)):
        if not eligible[i]:
            continue
        g = group[i]
        b = out[g]
        if b < 0 or prio[i] < prio[b] or (prio[i] == prio[b] and t[i] < t[b]):
            out[g] = i
    return out


@njit(cache=True, nogil=True)
def run_tuples(j, proto, s, sp, d, dp, t, flags):  # pragma: no cover - compiled
    """The distinct unordered 5-tuples of each journey run: a row's tuple is (``proto``, the lesser and the greater
    of its endpoints ``s * 65538 + sp + 1`` and ``d * 65538 + dp + 1``). Per distinct tuple, in row order: (its
    journey ``j``, protocol, lesser and greater endpoint, least ``t``, whether a row of it is a TCP SYN without ACK,
    whether one has SYN set); :func:`run_distinct` of those columns without making them for every row."""
    n = len(j)
    pj = np.empty(n, np.int64)
    pp = np.empty(n, np.int64)
    plo = np.empty(n, np.int64)
    phi = np.empty(n, np.int64)
    tmin = np.empty(n, np.int64)
    syn = np.zeros(n, np.bool_)
    hs = np.zeros(n, np.bool_)
    m = 0
    r = 0
    while r < n:
        e = r + 1
        while e < n and j[e] == j[r]:
            e += 1
        m0 = m
        for q in range(r, e):
            e1 = s[q] * 65538 + sp[q] + 1
            e2 = d[q] * 65538 + dp[q] + 1
            lo, hi = min(e1, e2), max(e1, e2)
            p = proto[q]
            hit = -1
            for k in range(m0, m):
                if pp[k] == p and plo[k] == lo and phi[k] == hi:
                    hit = k
                    break
            if hit < 0:
                hit = m
                pj[m], pp[m], plo[m], phi[m], tmin[m] = j[q], p, lo, hi, t[q]
                m += 1
            elif t[q] < tmin[hit]:
                tmin[hit] = t[q]
            f = flags[q]
            if p == 6 and f >= 0:
                syn[hit] = syn[hit] or (f & 0x12) == 0x02
                hs[hit] = hs[hit] or (f & 0x02) != 0
        r = e
    return pj[:m], pp[:m], plo[:m], phi[:m], tmin[:m], syn[:m], hs[:m]


@njit(cache=True, nogil=True)
def tuple_uses(by_time, key, t, syn, hs, nk, idle):  # pragma: no cover - compiled
    """Which use of its tuple each (journey, tuple ``key`` below ``nk``) element is, numbered 1, 2, ... across all
    tuples: each tuple's elements in time order (``by_time``: all elements in (``t``, element) order), a use
    starting at a SYN (``syn``) after an element without SYN or SYN-ACK (``hs``), or after more than ``idle`` of
    silence (the cut :func:`pcaptools.k8s.paths._epochs` makes with it)."""
    n = len(key)
    fill = np.zeros(nk + 1, np.int64)
    for i in range(n):
        fill[key[i] + 1] += 1
    for k in range(nk):
        fill[k + 1] += fill[k]
    g = np.empty(n, np.int64)
    for i in by_time:  # a counting sort by tuple: each tuple's elements keep their time order
        g[fill[key[i]]] = i
        fill[key[i]] += 1
    epoch = np.empty(n, np.int64)
    e = 0
    for i in range(n):
        x = g[i]
        if i == 0 or key[x] != key[g[i - 1]]:
            e += 1
        else:
            y = g[i - 1]
            if (syn[x] and not hs[y]) or t[x] - t[y] > idle:
                e += 1
        epoch[x] = e
    return epoch
