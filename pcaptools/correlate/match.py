"""Pair sightings of the same packet across capture points into journeys (numpy sort + one numba walk).

Rows are sorted by (fingerprint, corrected time). Within one fingerprint, a sighting at point ``p``
joins the oldest open journey that started at most ``window_ns`` earlier and has not been seen at
``p`` yet; otherwise it opens a new journey. That keeps FIFO order for repeats (retransmissions,
duplicate ACK bursts) and never puts two sightings from one point into one journey.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _walk(fp, ts, pt, window, npoints):  # pragma: no cover - compiled
    n = fp.shape[0]
    jid = np.empty(n, np.int64)
    words = (npoints + 63) // 64
    seen = np.zeros((n, words), np.uint64)  # per journey (worst case one per row): points seen
    jstart = np.empty(n, np.int64)
    ptr = np.zeros(npoints, np.int64)  # per point: first open journey that may lack it
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
        j = max(ptr[p], head)
        while j < nj and (seen[j, w] & bit) != 0:
            j += 1
        if j == nj:
            jstart[nj] = t
            nj += 1
        seen[j, w] |= bit
        jid[i] = j
        ptr[p] = j + 1  # every journey in [start, j] now holds p
    return jid


def match(fp: np.ndarray, ts_ns: np.ndarray, point: np.ndarray, *, window_ns: int, npoints: int) -> np.ndarray:
    """Journey id per row (-1 where ``fp == 0``); journey ids are dense, ordered by (fingerprint, first time)."""
    fp = np.asarray(fp, np.uint64)
    out = np.full(fp.shape[0], -1, np.int64)
    rows = np.flatnonzero(fp != 0)
    if rows.size == 0:
        return out
    order = rows[np.lexsort((ts_ns[rows], fp[rows]))]
    jid = _walk(fp[order], np.asarray(ts_ns, np.int64)[order], np.asarray(point, np.int64)[order], int(window_ns), int(npoints))
    out[order] = jid
    return out


def unique_groups(fp: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Journey id per row for fingerprints seen at most once per point and at 2+ points, else -1 (clock-free)."""
    fp = np.asarray(fp, np.uint64)
    out = np.full(fp.shape[0], -1, np.int64)
    rows = np.flatnonzero(fp != 0)
    if rows.size == 0:
        return out
    order = rows[np.lexsort((np.asarray(point)[rows], fp[rows]))]
    f = fp[order]
    p = np.asarray(point)[order]
    new = np.ones(f.shape[0], bool)
    new[1:] = f[1:] != f[:-1]
    gid = np.cumsum(new) - 1
    size = np.bincount(gid)
    dup_pt = np.zeros(f.shape[0], bool)
    dup_pt[1:] = (~new[1:]) & (p[1:] == p[:-1])
    bad = np.zeros(size.shape[0], bool)
    bad[gid[dup_pt]] = True
    keep = (size >= 2) & ~bad
    out[order] = np.where(keep[gid], gid, -1)
    return out
