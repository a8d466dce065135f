"""The record walk of a large classic pcap on every usable core: byte ranges walked at once, kept only where they join.

A pcap's records are found one after another (each header's caplen says where the next starts), so a
range cut from the middle of the file needs a guess at its first record: the first offset after the
cut where :data:`CHAIN` consecutive headers look like records (caplen within the snaplen and the wire
length, a sub-second fraction, a time near the first record's). A guess is only a guess; each range's
walk is checked against it: the walk of the range before must end exactly at the guessed offset (it
walks real records from a real one, so it lands on every real record start past the cut). Ranges are
kept up to the first one that does not join; the ordinary sequential walk goes on from the last record
start found, so a wrong guess, damage or a cut-off last record cost time, never a different answer.

Each thread also fills its range's page-table entries itself (``MADV_POPULATE_READ``, which the
kernel runs without the GIL) instead of one ``MAP_POPULATE`` of the whole file in the main thread.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pcaptools.io import pcap

SPLIT_MIN_BYTES = 16 << 20
"""Files from this size up are walked in ranges, one per usable core (smaller ones: a thread is not worth it)."""
SYNC_WINDOW = 1 << 16
"""Bytes after a cut searched for the range's first record (a range without one joins the range before)."""
CHAIN = 3
"""Consecutive plausible record headers that make a guessed first record."""
STEP_BYTES = 128 << 20
"""A range is mapped (and, read with ``unmap``, unmapped) this many bytes at a time as its walk goes (16 MiB steps
cost 7% more CPU in the walk, measured)."""
MAX_CANDIDATES = 64
"""Plausible offsets of a window whose chains are followed before the range is given up."""
_MADV_POPULATE_READ = 22  # Linux 5.14+
_MADV_DONTNEED = 4
_PAGE = 4096


@functools.cache
def _madvise():
    """libc's madvise through ctypes (a foreign call releases the GIL), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def populate(buf: np.ndarray, lo: int, hi: int) -> None:
    """Fill the page-table entries of the memory-mapped ``buf[lo:hi]`` now (no page fault per 64 KiB later, and the
    walk's prefetches reach the pages); does nothing where the kernel lacks MADV_POPULATE_READ."""
    fn = _madvise()
    if fn is None or hi <= lo:
        return
    base = buf.ctypes.data
    a = (base + lo) & ~(_PAGE - 1)
    fn(a, base + hi - a, _MADV_POPULATE_READ)  # failure (EINVAL on old kernels) only costs the faults later


def is_mapped(buf: np.ndarray) -> bool:
    """Whether ``buf`` is a view of a file's memory map (whose pages the kernel can drop and map again)."""
    base = buf
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


def release(buf: np.ndarray, lo: int = 0, hi: int | None = None) -> None:
    """Unmap the pages of the memory-mapped ``buf[lo:hi]`` from this process (MADV_DONTNEED): they stay in the page
    cache and the bytes stay readable (touched again, they are mapped again), but no longer count in its RSS.
    Nothing for a buffer that is not a file's memory map (there it would drop the data)."""
    fn = _madvise()
    hi = len(buf) if hi is None else hi
    if fn is None or hi <= lo or not is_mapped(buf):
        return
    base = buf.ctypes.data
    a = (base + lo + _PAGE - 1) & ~(_PAGE - 1)  # whole pages inside the range only
    b = (base + hi) & ~(_PAGE - 1)
    if b > a:
        fn(a, b - a, _MADV_DONTNEED)


def _u32_at_every_byte(w: np.ndarray, swap: bool) -> np.ndarray:
    """The 32-bit word starting at each byte offset of ``w`` (len(w) - 3 of them) in the file's byte order."""
    b = [w[i : len(w) - 3 + i].astype(np.uint32) for i in range(4)]
    if swap:
        b.reverse()
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def _plausible(sec: np.ndarray, frac: np.ndarray, cap: np.ndarray, wire: np.ndarray, state: dict, sec_lo: int,
               sec_hi: int) -> np.ndarray:  # fmt: skip
    """Which record headers (fields as arrays) could be real: io.pcap's resync test, vectorised."""
    limit = state["snaplen"] if 0 < state["snaplen"] < pcap.MAX_CAPLEN else pcap.MAX_CAPLEN
    return ((cap > 0) & (cap <= limit) & (cap <= wire) & (wire <= pcap.MAX_CAPLEN)
            & (frac < (1_000_000_000 if state["nano"] else 1_000_000)) & (sec >= sec_lo) & (sec <= sec_hi))  # fmt: skip


def first_record_after(buf: np.ndarray, cut: int, state: dict, sec_lo: int, sec_hi: int) -> int:
    """Offset of the first plausible record start in SYNC_WINDOW bytes from ``cut`` (CHAIN headers in a row, or
    fewer ending exactly at the file's end), or -1."""
    hdr, end = state["rec_hdr"], len(buf)
    x = _u32_at_every_byte(np.asarray(buf[cut : min(end, cut + SYNC_WINDOW + 16)]), state["swap"])
    m = len(x) - 12  # offsets whose four header words are all in the window
    if m <= 0:
        return -1
    ok = _plausible(x[:m], x[4 : m + 4], x[8 : m + 8], x[12 : m + 12], state, sec_lo, sec_hi)
    for c in np.flatnonzero(ok)[:MAX_CANDIDATES].tolist():
        p = cut + c
        for _ in range(CHAIN - 1):
            p += hdr + pcap.record_header_at(buf, p, state)[2]
            if p == end:
                break
            if end - p < hdr or not _plausible(*(np.uint32(v) for v in pcap.record_header_at(buf, p, state)), state,
                                                 sec_lo, sec_hi):  # fmt: skip
                p = -1
                break
        if p >= 0:
            return cut + c
    return -1


def walk_in_steps(buf: np.ndarray, lo: int, stop: int, walk, dtypes: tuple, min_record: int, codes: tuple[int, int, int],
                  unmap: bool = False) -> tuple[list[tuple[np.ndarray, ...]], int, int]:  # fmt: skip
    """Records from ``lo`` up to ``stop`` walked by ``walk(pos, ahead, columns) -> (records, position, exit code)``
    into columns of ``dtypes``: (column parts, position, exit code). ``codes``: the walk's (END, SHORT, FULL).
    The range is mapped STEP_BYTES at a time just ahead of the walk, not all at once (a file larger than memory, or
    not yet in the page cache, is read while it is walked); a record longer than a step gets a longer step. The
    output columns are allocated once for the whole range (pages never written cost nothing) and again only if it
    holds more records than guessed: an allocation (mmap, madvise) waits for the memory-map lock that another
    thread's populate holds for its whole step. ``unmap``: the pages behind the walk are unmapped again
    (:func:`release`). Both formats' range walkers (pcap here, pcapng in :mod:`pcaptools.io.split_pcapng`) use it."""
    end_code, short_code, full_code = codes
    parts = []
    pos = released = lo
    step = STEP_BYTES
    size = min((stop - lo) // 128 + 1024, (stop - lo) // min_record + 1)  # records of 112+ bytes on average: one allocation
    while True:
        cols = tuple(np.empty(max(1, size), dt) for dt in dtypes)
        k = 0
        while True:
            ahead = min(stop, pos + step)
            was = pos
            populate(buf, pos, ahead)
            j, pos, code = walk(pos, ahead, tuple(c[k:] for c in cols))
            k += j
            if unmap:
                release(buf, released, pos)
                released = pos
            if ahead < stop and code in (end_code, short_code):
                step = STEP_BYTES if pos > was else 2 * step  # a record longer than a step: a longer one
                continue  # the step's end (or the record crossing it): the next step goes on from here
            break
        if k:
            parts.append(tuple(c[:k] for c in cols))
        if code != full_code:
            if unmap:
                release(buf, released, stop)
            return parts, pos, code
        size = int((stop - pos) * k / max(pos - lo, 1) * 1.1) + 1024  # more records than guessed: their density
        size = min(size, (stop - pos) // min_record + 1)


def _walk_range(buf: np.ndarray, lo: int, stop: int, state: dict, unmap: bool = False) -> tuple[list[tuple[np.ndarray, ...]], int, int]:
    """Records from ``lo`` up to ``stop`` (the next range's guessed first record): (column parts, position, exit code).
    ``stop`` is the walk's end, so it ends at END exactly on ``stop`` or at SHORT on the record that crosses it."""
    swap, nano, hdr = state["swap"], state["nano"], state["rec_hdr"]
    return walk_in_steps(buf, lo, stop, lambda pos, ahead, cols: pcap.walk(buf, pos, ahead, swap, nano, hdr, *cols),
                         COLUMNS, hdr, (pcap.END, pcap.SHORT, pcap.FULL), unmap)  # fmt: skip


def walk_ranges(buf: np.ndarray, first: int, state: dict, threads: int, *, unmap: bool = False) -> tuple[tuple[np.ndarray, ...], int]:
    """The columns (offset, caplen, wirelen, ts_ns) of the records from ``first`` (a record start) walked in up to
    ``threads`` byte ranges at once, and the record start where the sequential walk must go on (past them).
    Only records every sequential walk would also find are returned; damage is left to the sequential walk.
    ``unmap``: each thread unmaps its range's pages after walking it (:func:`release`)."""
    end = len(buf)
    if end - first < state["rec_hdr"]:
        return _stack([]), first
    sec0 = pcap.record_header_at(buf, first, state)[0]
    starts = [first]
    for i in range(1, threads):
        cut = first + (end - first) * i // threads
        s = first_record_after(buf, cut, state, max(0, sec0 - 86400), sec0 + 366 * 86400) if cut > starts[-1] else -1
        if s > starts[-1]:
            starts.append(s)
    stops = [*starts[1:], end]
    pcap.walk.dispatcher()  # numba's dispatcher made here, not by two threads at once
    with ThreadPoolExecutor(len(starts)) as pool:  # the walk, the madvise calls and numpy's copies release the GIL
        results = list(pool.map(lambda r: _walk_range(buf, *r, state, unmap), zip(starts, stops, strict=True)))
        kept: list[tuple[np.ndarray, ...]] = []
        pos = first
        for (parts, at, code), stop in zip(results, stops, strict=True):
            kept.extend(parts)
            pos = at
            if not (code == pcap.END and at == stop) or stop == end:
                break  # damage, a cut-off record, or a wrong guess of the next range's start: the sequential walk goes on
        return _stack(kept, pool), pos


COLUMNS = (np.int64, np.uint32, np.uint32, np.int64)
"""dtypes of a pcap range walk's columns: offset, caplen, wirelen, ts_ns."""


def _stack(parts: list[tuple[np.ndarray, ...]], pool: ThreadPoolExecutor | None = None,
           dtypes: tuple[type, ...] = COLUMNS) -> tuple[np.ndarray, ...]:  # fmt: skip
    """The parts' columns (of ``dtypes``) each as one array, copied part by part on ``pool``."""
    if len(parts) == 1:
        return parts[0]
    n = sum(len(p[0]) for p in parts)
    out = tuple(np.empty(n, dt) for dt in dtypes)
    at = np.cumsum([0] + [len(p[0]) for p in parts]).tolist()

    def copy(i: int) -> None:
        for o, col in zip(out, parts[i], strict=True):
            o[at[i] : at[i + 1]] = col

    for f in [pool.submit(copy, i) for i in range(len(parts))] if pool is not None else []:
        f.result()
    if pool is None:
        for i in range(len(parts)):
            copy(i)
    return out
