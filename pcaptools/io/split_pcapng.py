"""The block walk of a large pcapng on every usable core: byte ranges walked at once, kept only where they join.

pcapng blocks are self-delimiting (``type | length | body | length``, 4-byte aligned from the section's start), so a
range cut from the middle of a file starts at a guessed block: the first aligned offset after the cut where
:data:`~pcaptools.io.split.CHAIN` consecutive blocks have a plausible type, a valid length and the same length in
their trailer, the first a packet block of an interface the section has. Every range is walked with the state at the
first range's start (byte order, the section's interfaces): a range is only right while no Section Header,
Interface Description or Statistics Block lies before it, and the block walk returns at each of those, so a range that
meets one stops there like one that meets damage. Ranges are kept up to the first one that does not end exactly at
the next one's guessed start (the walk of real blocks from a real block start lands on every real block start); the
sequential walk goes on from there, so a wrong guess, a new section or interface, damage or a cut-off end cost time,
never a different answer. Packet record numbers and skip counters of each range are counted from zero and added up
in file order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pcaptools.io import pcapng
from pcaptools.io.split import CHAIN, MAX_CANDIDATES, SYNC_WINDOW, _stack, walk_in_steps

COLUMNS = (np.int64, np.uint32, np.uint32, np.uint64, np.uint32, np.uint32, np.int64)
"""dtypes of a pcapng range walk's columns: offset, caplen, wirelen, ts_raw, iface, flags, record."""
_PACKET = (pcapng.EPB, pcapng.SPB, pcapng.PB)
_OTHER = (pcapng.NRB, pcapng.ISB, pcapng.DSB, pcapng.JOURNAL, *pcapng.CUSTOM_BLOCKS)


def _block_ok(buf: np.ndarray, p: int, swap: bool, n_if: int, first: bool) -> int:
    """Length of the plausible block at ``p`` (a packet block of a known interface when ``first``), else 0."""
    end = len(buf)
    if end - p < 12:
        return 0
    order = "big" if swap else "little"
    btype = int.from_bytes(buf[p : p + 4].tobytes(), order)
    blen = int.from_bytes(buf[p + 4 : p + 8].tobytes(), order)
    if btype not in _PACKET and (first or btype not in _OTHER):
        return 0
    if blen < 16 or blen % 4 or blen > pcapng.MAX_BLOCK or end - p < blen:
        return 0
    if int.from_bytes(buf[p + blen - 4 : p + blen].tobytes(), order) != blen:
        return 0
    if btype == pcapng.EPB or btype == pcapng.PB:
        if blen < 32:
            return 0
        local = int.from_bytes(buf[p + 8 : p + (12 if btype == pcapng.EPB else 10)].tobytes(), order)
        caplen = int.from_bytes(buf[p + 20 : p + 24].tobytes(), order)
        if local >= n_if or caplen > min(blen - 32, pcapng.MAX_CAPLEN):
            return 0
    return blen


def first_block_after(buf: np.ndarray, cut: int, first: int, st: np.ndarray) -> int:
    """Offset of the first plausible block start in SYNC_WINDOW bytes from ``cut`` (aligned to 4 from ``first``, a
    block start): a packet block followed by CHAIN - 1 plausible blocks (or the file's end), or -1."""
    swap = bool(st[pcapng.ST_SWAP])
    n_if = int(st[pcapng.ST_IF_COUNT])
    c0 = first + (cut - first + 3) // 4 * 4
    hi = min(len(buf), c0 + SYNC_WINDOW + 8)
    words = np.frombuffer(buf[c0 : c0 + (hi - c0) // 4 * 4].tobytes(), dtype=">u4" if swap else "<u4")
    if len(words) < 3:
        return -1
    btype, blen = words[:-1], words[1:].astype(np.int64)
    cand = np.isin(btype, np.array(_PACKET, np.uint32)) & (blen >= 16) & (blen % 4 == 0) & (blen <= pcapng.MAX_BLOCK)
    for i in np.flatnonzero(cand)[:MAX_CANDIDATES].tolist():
        p = c0 + 4 * i
        ok = True
        for j in range(CHAIN):
            n = _block_ok(buf, p, swap, n_if, j == 0)
            if not n:
                ok = False
                break
            p += n
            if p == len(buf):
                break
        if ok:
            return c0 + 4 * i
    return -1


def _walk_range(buf: np.ndarray, lo: int, stop: int, st0: np.ndarray, raise_: bool,
                unmap: bool) -> tuple[list[tuple[np.ndarray, ...]], int, int, np.ndarray, int]:  # fmt: skip
    """Blocks from ``lo`` up to ``stop`` walked with the state ``st0`` (records numbered from 0): (column parts,
    position, exit code, skip counters, packet records seen), mapped a step at a time by split.walk_in_steps."""
    st = st0.copy()
    st[pcapng.ST_RECORD] = 0
    counters = np.zeros(len(pcapng.SKIP_REASONS), np.int64)
    parts, pos, code = walk_in_steps(buf, lo, stop, lambda p, ahead, cols: pcapng.walk(buf, p, ahead, st, raise_, counters, *cols),
                                     COLUMNS, 16, (pcapng.END, pcapng.SHORT, pcapng.FULL), unmap)  # fmt: skip
    return parts, pos, code, counters, int(st[pcapng.ST_RECORD])


def walk_ranges(buf: np.ndarray, first: int, st: np.ndarray, threads: int, *, raise_: bool = False,
                unmap: bool = False) -> tuple[tuple[np.ndarray, ...], np.ndarray, int, int]:  # fmt: skip
    """The columns (COLUMNS; records numbered on from ``st``'s next record) of the packet blocks from ``first`` (a
    block start inside a section whose interfaces ``st`` describes) walked in up to ``threads`` byte ranges at once,
    the skip counters of the blocks walked (by pcapng.SKIP_REASONS), the packet records they hold (with skipped ones)
    and the block start where the sequential walk must go on. ``raise_``: damage stops a range (the sequential walk
    raises on it) instead of being counted."""
    end = len(buf)
    starts = [first]
    for i in range(1, threads):
        cut = first + (end - first) * i // threads
        s = first_block_after(buf, cut, first, st) if cut > starts[-1] else -1
        if s > starts[-1]:
            starts.append(s)
    stops = [*starts[1:], end]
    pcapng.walk.dispatcher()  # numba's dispatcher made here, not by two threads at once
    with ThreadPoolExecutor(len(starts)) as pool:
        results = list(pool.map(lambda r: _walk_range(buf, *r, st, raise_, unmap), zip(starts, stops, strict=True)))
        kept: list[tuple[np.ndarray, ...]] = []
        counters = np.zeros(len(pcapng.SKIP_REASONS), np.int64)
        pos, seen = first, int(st[pcapng.ST_RECORD])
        for (parts, at, code, cnt, records), stop in zip(results, stops, strict=True):
            for p in parts:
                p[6][:] += seen  # record numbers go on from the ranges before
            kept.extend(parts)
            counters += cnt
            seen += records
            pos = at
            if not (code == pcapng.END and at == stop) or stop == end:
                break  # a section, interface or statistics block, damage, a cut-off block or a wrong guess
        if not kept:
            return tuple(np.empty(0, dt) for dt in COLUMNS), counters, seen - int(st[pcapng.ST_RECORD]), pos
        return _stack(kept, pool, COLUMNS), counters, seen - int(st[pcapng.ST_RECORD]), pos
