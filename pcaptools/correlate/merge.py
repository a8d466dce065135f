"""Write every capture point's packets into one pcapng on the reference clock (one interface per point).

Layout: one Section Header Block; one Interface Description Block per (point, link type) with
``if_name`` "node:iface", ``if_description`` "k8s.node=…;interface=…;role=…" and ``if_tsresol`` 9
(nanoseconds); then Enhanced Packet Blocks in corrected time order across points. With ``dedup``
each journey's packet is written once (its first sighting) and its other sightings become EPB
``opt_comment`` text ("also at node-2:eth0 +125.3us src>dst ..."). Blocks are assembled with numpy
in chunks (headers, padded packet bytes and comments gathered by index), not one packet at a time.

With ``memory`` the packet bytes are not all held: each capture file is read in windows of records
(``iter_records``) and the points are k-way merged by corrected time. A buffered packet is written
once its time is below every point's next unread packet (known from the packet table: the
smallest corrected time among a point's rows not read yet), so the file is byte for byte the one
written whole, whatever the disorder of timestamps within a capture. The interfaces come before any
packet, so a first pass over the files (in windows too) finds the link type of every row written.

Without the packet tables: :class:`MergeRows` observes a streamed correlation (``correlate_inputs(...,
observer=...)``) and spills of each packet only its record, point, corrected time and input key (28 bytes, one file
per capture in ``TMPDIR``); the writer reads each capture's rows back a window at a time beside the capture itself
(:func:`_write_spilled`), so memory does not grow with the captures. ``dedup`` also spills the journey of each row
the correlation emits (16 bytes a row) and decides from the hops Parquet it wrote, read in journey order a batch of
whole journeys at a time, which sighting of each journey is written and its comment; the decisions, sorted by input
key in runs on disk, are read back beside each capture's rows to write its "kept" spill (:func:`_dedup_spill`), which
the writer reads as it reads the rows without ``dedup``. Ties in corrected time are written in (point, row in file)
order, as the capture set stacks its rows: the same file byte for byte.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pandas as pd

from pcaptools.errors import CorrelationError
from pcaptools.jit import njit
from pcaptools.packet_file import window_records

_CHUNK = 1 << 16


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _shb() -> bytes:
    opts = _opt(4, b"pcaptools merge") + _opt(0, b"")
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opts)


def _idb(linktype: int, name: str, desc: str) -> bytes:
    opts = _opt(2, name.encode()) + _opt(3, desc.encode()) + _opt(9, b"\x09") + _opt(0, b"")
    return _block(1, struct.pack("<HHI", linktype, 0, 0) + opts)


ROW_PEAK = 1900
"""Peak bytes per packet record of the in-memory merge (its decoded table, correlation and every packet's bytes, the
copies made while writing): 1,640-1,800 measured on gen_set.py's 200k and 1M-packet sets (records of 720 bytes on
average; 1.6 and 6.4 GiB). A set that fits the budget at this cost is merged in memory (faster: 5.5-6.2 s against
6.2-9.5 for the windowed writer on the 200k set), any other one read in windows."""


def _gather(dst: np.ndarray, dst_start: np.ndarray, src: np.ndarray, src_start: np.ndarray, length: np.ndarray) -> None:
    """dst[dst_start[i] : +length[i]] = src[src_start[i] : +length[i]] for all i (byte buffers), compiled: a copy per
    range and nothing per byte (the numpy gather it replaces built index arrays of 8 bytes per byte copied and took
    most of a merge's time)."""
    if len(length):
        _copy_ranges(dst, np.asarray(dst_start, np.int64), np.asarray(src, np.uint8), np.asarray(src_start, np.int64),
                     np.asarray(length, np.int64))  # fmt: skip


@njit(cache=True, nogil=True)
def _copy_ranges(dst, dst_start, src, src_start, length):  # pragma: no cover - compiled
    for i in range(length.shape[0]):
        d, s, n = dst_start[i], src_start[i], length[i]
        dst[d:d + n] = src[s:s + n]


def write_pcapng(
    path: str | os.PathLike,
    packets: pd.DataFrame,
    ts_ns: np.ndarray,
    points: list,
    *,
    comments: pd.Series | None = None,
    memory: int | None = None,
    batch_records: int | None = None,
    sources: dict[str, str] | None = None,
) -> int:
    """Write ``packets`` rows (columns file, record, point, link) with timestamps ``ts_ns``, time-ordered; returns the count.

    ``comments`` (index aligned with ``packets``) gives an opt_comment per row where not missing.
    ``memory`` (bytes) reads the capture files in windows and merges them (see the module docstring);
    ``batch_records`` sets the records per window instead (tests use it to cut every file). ``sources`` maps
    a ``file`` value to where its bytes are now (a dataset's files, :func:`pcaptools.dataset.original_files`).
    """
    names, fid = _file_ids(packets["file"])
    names = [(sources or {}).get(f, f) for f in names]
    cm = None if comments is None else comments.reindex(packets.index)
    return _write(path, names, fid.reshape(-1).astype(np.int64), packets["record"].to_numpy(np.int64),
                  packets["point"].cat.codes.to_numpy(np.int64), np.asarray(ts_ns, np.int64), points, comments=cm,
                  memory=memory, batch_records=batch_records)  # fmt: skip


def _file_ids(col: pd.Series) -> tuple[list[str], np.ndarray]:
    """The distinct file names of a ``file`` column, sorted, and each row's index into them (``np.unique(col.astype(str),
    return_inverse=True)``): from a categorical column's codes, without a string per row (4 M rows: seconds)."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        names, fid = np.unique(col.astype(str).to_numpy(), return_inverse=True)
        return names.tolist(), fid
    codes = col.cat.codes.to_numpy(np.int64)
    used = np.unique(codes)
    labels = [str(col.cat.categories[c]) if c >= 0 else str(np.nan) for c in used.tolist()]  # a missing value as astype(str)
    names = sorted(set(labels))
    rank = np.array([names.index(x) for x in labels], np.int64)
    return names, rank[np.searchsorted(used, codes)]


def _header(ukeys: np.ndarray, points: list) -> bytes:
    """The Section Header Block and one Interface Description Block per (point, link type) key (point * 65536 + link
    type, in the order the packets' interface numbers refer to)."""
    blocks = [_shb()]
    for uk in np.asarray(ukeys, np.int64).tolist():
        pt = points[uk // 65536]
        desc = f"k8s.node={pt.node};interface={pt.interface};role={pt.role}" + (f";pod={pt.pod}" if pt.pod else "")
        blocks.append(_idb(uk % 65536, pt.name, desc))
    return b"".join(blocks)


def _write(path, names: list[str], fid: np.ndarray, rec: np.ndarray, pcode: np.ndarray, ts_ns: np.ndarray, points: list, *,  # noqa: ANN001
           comments: pd.Series | None, memory: int | None, batch_records: int | None) -> int:  # fmt: skip
    """:func:`write_pcapng` on per-row arrays: file (index into ``names``), record, point code, corrected time (row
    order breaks ties); ``comments`` by row position."""
    n = len(rec)
    if memory is not None and batch_records is None:  # every point's window is buffered at once
        batch_records = max(256, window_records(memory) // max(1, len(np.unique(fid))))
    if batch_records is None:
        whole = _read_whole(names, fid, rec)
        ltype = whole[3]
    else:
        ltype = _linktypes(names, fid, rec, batch_records)
    # interfaces: one per (point, linktype), known from the table before any packet is written
    key = pcode * 65536 + ltype
    ukeys, iface = np.unique(key, return_inverse=True)
    header = _header(ukeys, points)
    cbuf = np.zeros(0, np.uint8)
    c_off = np.zeros(n, np.int64)
    c_len = np.zeros(n, np.int64)
    if comments is not None:
        has = comments.notna().to_numpy()
        enc = [s.encode() for s in comments[has].astype(str)]
        lens = np.array([len(e) for e in enc], np.int64)
        c_len[has] = lens
        c_off[has] = np.cumsum(lens) - lens
        cbuf = np.frombuffer(b"".join(enc), np.uint8) if enc else cbuf
    rows = _Rows(ts_ns, iface.reshape(-1), c_off, c_len, cbuf)
    with open(path, "wb") as out:
        out.write(header)
        if batch_records is None:
            _write_whole(out, rows, *whole)
        else:
            _write_merged(out, rows, names, fid, rec, batch_records)
    return n


class _Rows:
    """Per-row values of the table being written (time, interface, comment) and the packet bytes found so far."""

    def __init__(self, ts_ns, iface, c_off, c_len, cbuf) -> None:  # noqa: ANN001
        self.ts_ns, self.iface, self.c_off, self.c_len, self.cbuf = ts_ns, iface, c_off, c_len, cbuf


def _missing(f: str, rows: np.ndarray, rec: np.ndarray, found: np.ndarray) -> None:
    """Raise unless every row of file ``f`` was found in it."""
    if not f or not os.path.exists(f):
        raise CorrelationError(f"{f or '<no file>'}: merge needs the original capture files to copy packet bytes", path=f)
    if not found.all():
        r = int(rec[rows][np.argmax(~found)])
        raise CorrelationError(f"{f}: record {r} of the packet table is not in the file; was it rewritten since decoding?", path=f, record=r)


def _read_whole(names: list[str], fid: np.ndarray, rec: np.ndarray) -> tuple:
    """Every file read whole (memory-mapped when plain): per row its bytes' offset, caplen, wirelen, link type, file."""
    from pcaptools.io import read_records

    n = len(rec)
    src_off, caplen, wirelen, ltype, fidx = (np.zeros(n, np.int64) for _ in range(5))
    bufs = []
    for k, u in enumerate(pd.unique(fid)):
        f, sel = names[int(u)], np.flatnonzero(fid == u)
        if not f or not os.path.exists(f):
            _missing(f, sel, rec, np.zeros(0, bool))
        rb = read_records(f)
        pos = np.searchsorted(rb.record, rec[sel])
        found = (pos < len(rb)) & (rb.record[np.minimum(pos, len(rb) - 1)] == rec[sel]) if len(rb) else np.zeros(len(sel), bool)
        _missing(f, sel, rec, found)
        src_off[sel], caplen[sel], wirelen[sel], ltype[sel], fidx[sel] = (rb.offset[pos], rb.caplen[pos], rb.wirelen[pos],
                                                                          rb.linktype[pos], k)  # fmt: skip
        bufs.append(rb.data)
    return src_off, caplen, wirelen, ltype, fidx, bufs


def _write_whole(out, rows: _Rows, src_off, caplen, wirelen, ltype, fidx, bufs) -> None:  # noqa: ANN001, ARG001
    """Rows written in time order in chunks, their bytes taken from the files read whole."""
    order = np.argsort(rows.ts_ns, kind="stable")
    for lo in range(0, len(order), _CHUNK):
        idx = order[lo : lo + _CHUNK]
        out.write(_epbs(idx, rows.ts_ns, rows.iface, caplen, wirelen, src_off, fidx, bufs, rows.c_off, rows.c_len,
                        [rows.cbuf] * len(bufs)))  # fmt: skip


def _linktypes(names: list[str], fid: np.ndarray, rec: np.ndarray, batch_records: int) -> np.ndarray:
    """Link type of each row, from a first pass over the files in windows (interfaces are written before packets)."""
    from pcaptools.io import iter_records

    ltype = np.full(len(rec), -1, np.int64)
    for u in pd.unique(fid):
        f, sel = names[int(u)], np.flatnonzero(fid == u)
        if not f or not os.path.exists(f):
            _missing(f, sel, rec, np.zeros(0, bool))
        sel = sel[np.argsort(rec[sel], kind="stable")]
        for batch in iter_records(f, batch_records=batch_records):
            if len(batch) == 0:
                continue
            lo = np.searchsorted(rec[sel], batch.record[0], side="left")
            hi = np.searchsorted(rec[sel], batch.record[-1], side="right")
            part = sel[lo:hi]
            pos = np.minimum(np.searchsorted(batch.record, rec[part]), len(batch) - 1)
            hit = batch.record[pos] == rec[part]
            ltype[part[hit]] = batch.linktype[pos[hit]]
        _missing(f, sel, rec, ltype[sel] >= 0)
    return ltype


def _write_merged(out, rows: _Rows, names: list[str], fid: np.ndarray, rec: np.ndarray, batch_records: int) -> None:  # noqa: ANN001
    """Files read in windows and k-way merged by corrected time; the same blocks as :func:`_write_whole`."""
    from pcaptools.io import iter_records

    sources = []
    for u in pd.unique(fid):
        f, sel = names[int(u)], np.flatnonzero(fid == u)
        if not f or not os.path.exists(f):
            _missing(f, sel, rec, np.zeros(0, bool))
        sel = sel[np.argsort(rec[sel], kind="stable")]
        sources.append(_TableSource(f, sel, rows, rec, iter_records(f, batch_records=batch_records)))
    _kway(out, sources)


class _TableSource:
    """A capture's rows of the packet table (record order) for :func:`_kway`, with what the capture can still bring."""

    def __init__(self, f: str, sel: np.ndarray, rows: _Rows, rec: np.ndarray, batches) -> None:  # noqa: ANN001
        self.file, self.sel, self.rows, self.rec, self.batches = f, sel, rows, rec, batches
        self.done = 0
        # from each row on, the smallest time among the rows not read yet: what the point can still bring
        self.later_v = np.minimum.accumulate(rows.ts_ns[sel][::-1])[::-1]

    def later(self) -> int:
        return self.later_v[self.done]

    def finished(self) -> bool:
        return self.done == len(self.sel)

    def missing(self) -> None:
        _missing(self.file, self.sel, self.rec, np.arange(len(self.sel)) < self.done)

    def take(self, batch) -> tuple:  # noqa: ANN001
        """The next rows found in ``batch`` (only rows up to the window's last record can be in it), as a piece."""
        want = self.sel[self.done :]
        if len(batch):
            want = want[: np.searchsorted(self.rec[want], batch.record[-1], side="right")]
        pos = _found(batch, self.rec[want])
        r = want[: len(pos)]
        self.done += len(pos)
        rows = self.rows
        c_len = rows.c_len[r]
        c_off = np.cumsum(c_len) - c_len
        cbuf = np.zeros(int(c_len.sum()), np.uint8)
        _gather(cbuf, c_off, rows.cbuf, rows.c_off[r], c_len)
        return _piece(batch, pos, r, rows.ts_ns[r], rows.iface[r], c_off, c_len, cbuf)


def _found(batch, recs: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Positions in ``batch`` of the leading ``recs`` it holds (up to the first it does not)."""
    pos = np.minimum(np.searchsorted(batch.record, recs), max(len(batch) - 1, 0))
    hit = batch.record[pos] == recs if len(batch) else np.zeros(len(recs), bool)
    return pos[: int(np.argmin(hit)) if not hit.all() else len(recs)]


def _piece(batch, pos: np.ndarray, key: np.ndarray, t: np.ndarray, iface: np.ndarray, c_off: np.ndarray,  # noqa: ANN001
           c_len: np.ndarray, cbuf: np.ndarray) -> tuple:  # fmt: skip
    """Rows found at ``pos`` of ``batch`` as :func:`_flush` takes them, their bytes copied out of the window: (time,
    tie-break key, interface, caplen, wirelen, byte offset, comment offset, comment length, bytes, comment bytes)."""
    cap = batch.caplen[pos].astype(np.int64)
    off = np.cumsum(cap) - cap
    buf = np.zeros(int(cap.sum()), np.uint8)
    _gather(buf, off, batch.data, batch.offset[pos].astype(np.int64), cap)
    return t, key, iface, cap, batch.wirelen[pos].astype(np.int64), off, c_off, c_len, buf, cbuf


def _kway(out, sources: list) -> None:  # noqa: ANN001
    """Each source's capture read in windows, the points merged by corrected time: a row is written once its time is
    below what every capture can still bring (ties in time by the sources' key)."""
    active = list(sources)
    pending: list[tuple] = []
    while active:
        src = min(active, key=lambda s: s.later())  # the point that can bring the earliest packet
        batch = next(src.batches, None)
        if batch is None:  # the file ended before every row was found in it
            src.missing()
        pending.append(src.take(batch))
        if src.finished():
            active.remove(src)
        bound = min((s.later() for s in active), default=None)
        pending = _flush(out, pending, bound)


def _flush(out, pending: list[tuple], bound: int | None) -> list[tuple]:  # noqa: ANN001
    """Write the pending rows (:func:`_piece`) timed below ``bound`` (all when None) in (time, key) order; return the
    others, each piece's rows left as a piece on the same byte buffers: bytes are copied once out of the window
    (:func:`_piece`), never again while they wait (copying the rows left at each flush copied most of a merge's bytes
    several times). A piece's buffers go once none of its rows waits: rows of one capture come in time order, so its
    piece's written rows are mostly a prefix, and what is held stays about a window per capture."""
    if not pending:
        return pending
    t, key, iface, cap, wire, off, c_off, c_len = (np.concatenate([p[i] for p in pending]) for i in range(8))
    piece = np.concatenate([np.full(len(p[0]), k, np.int64) for k, p in enumerate(pending)])
    bufs, cbufs = [p[8] for p in pending], [p[9] for p in pending]
    ready = np.flatnonzero(t < bound) if bound is not None else np.arange(len(t))
    ready = ready[np.lexsort((key[ready], t[ready]))]
    for lo in range(0, ready.size, _CHUNK):
        sel = ready[lo : lo + _CHUNK]
        out.write(_epbs(np.arange(sel.size), t[sel], iface[sel], cap[sel], wire[sel], off[sel], piece[sel], bufs,
                        c_off[sel], c_len[sel], cbufs))  # fmt: skip
    if ready.size == len(t):
        return []
    waiting = np.ones(len(t), bool)
    waiting[ready] = False
    left, start = [], 0
    for p in pending:
        w = waiting[start : start + len(p[0])]
        start += len(p[0])
        if w.all():
            left.append(p)
        elif w.any():
            left.append((*(a[w] for a in p[:8]), p[8], p[9]))
    return left


def _epbs(idx, ts_ns, iface, caplen, wirelen, src_off, fidx, bufs, c_off, c_len, cbufs) -> bytes:
    """Enhanced Packet Blocks for rows ``idx`` as one bytes object; a row's packet bytes and comment come from the
    buffers ``bufs[fidx]`` and ``cbufs[fidx]``."""
    cap = caplen[idx]
    pad = (cap + 3) & ~3
    cl = c_len[idx]
    opt = np.where(cl > 0, 4 + ((cl + 3) & ~3) + 4, 0)
    total = 28 + pad + opt + 4
    start = np.cumsum(total) - total
    buf = np.zeros(int(total.sum()), np.uint8)
    t = ts_ns[idx].astype(np.int64).view(np.uint64)
    hdr = np.empty((idx.shape[0], 7), "<u4")
    hdr[:, 0] = 6
    hdr[:, 1] = total
    hdr[:, 2] = iface[idx]
    hdr[:, 3] = (t >> np.uint64(32)).astype(np.uint32)
    hdr[:, 4] = (t & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hdr[:, 5] = cap
    hdr[:, 6] = wirelen[idx]
    _gather(buf, start, hdr.view(np.uint8).reshape(-1), np.arange(idx.shape[0]) * 28, np.full(idx.shape[0], 28))
    for k in np.unique(fidx[idx]):
        m = fidx[idx] == k
        _gather(buf, start[m] + 28, bufs[int(k)], src_off[idx][m], cap[m])
    wc = np.flatnonzero(cl > 0)
    if wc.size:
        oh = np.zeros((wc.size, 2), "<u2")
        oh[:, 0] = 1
        oh[:, 1] = cl[wc]
        ostart = start[wc] + 28 + pad[wc]
        _gather(buf, ostart, oh.view(np.uint8).reshape(-1), np.arange(wc.size) * 4, np.full(wc.size, 4))
        cf = fidx[idx][wc]
        for k in np.unique(cf):
            m = cf == k
            _gather(buf, ostart[m] + 4, cbufs[int(k)], c_off[idx][wc][m], cl[wc][m])
        # opt_endofopt is the 4 zero bytes already there
    tail = np.empty((idx.shape[0], 1), "<u4")
    tail[:, 0] = total
    _gather(buf, start + total - 4, tail.view(np.uint8).reshape(-1), np.arange(idx.shape[0]) * 4, np.full(idx.shape[0], 4))
    return buf.tobytes()


def merge(
    capture_set, out: str | os.PathLike, *, correlation=None, dedup: bool = False, memory: int | None = None,
    batch_records: int | None = None, sources: dict[str, str] | None = None,
) -> int:  # fmt: skip
    """Write the capture set as one pcapng on the reference clock; ``dedup`` keeps each journey once with comments.

    ``memory`` (bytes) or ``batch_records`` write it reading the capture files in windows (see :func:`write_pcapng`);
    ``sources`` says where files named in the table are now (see :func:`write_pcapng`)."""
    from pcaptools.correlate.api import correlate

    corr = correlation if correlation is not None else correlate(capture_set)
    pk = capture_set.packets_of(("file", "record", "point"))  # what is written of the table (not a stacked copy of it)
    ts = corr.row_ts_corrected
    keep = np.ones(len(pk), bool)
    comments = None
    if dedup and len(corr.hops):
        rj = corr.row_journey
        keep = _first_sightings(ts, rj)
        rows = np.flatnonzero(keep & (rj >= 0))
        comments = pd.Series(_journey_text(corr.hops).reindex(rj[rows]).to_numpy(), index=pk.index[rows])
    sel = np.flatnonzero(keep)
    sub = pk if sel.shape[0] == len(pk) else pk.iloc[sel]
    return write_pcapng(out, sub, ts[sel], capture_set.points, comments=None if comments is None else comments.reindex(sub.index),
                        memory=memory, batch_records=batch_records, sources=sources)  # fmt: skip


def _first_sightings(ts: np.ndarray, rj: np.ndarray) -> np.ndarray:
    """Rows dedup keeps: each journey's first sighting (earliest corrected time, then row order) and rows of no journey."""
    m = np.flatnonzero(rj >= 0)
    o = m[np.lexsort((ts[m], rj[m]))]
    first = np.ones(o.shape[0], bool)
    first[1:] = rj[o][1:] != rj[o][:-1]
    keep = rj < 0
    keep[o[first]] = True  # the first sighting represents its journey
    return keep


def _hop_text(h: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
    """The journey and comment text ("also at POINT +Tus SRC:SPORT>DST:DPORT") of each hop after a journey's first."""
    later = h[h["hop"] > 0]
    text = (
        "also at " + later["point"].astype(str) + " +" + (later["since_first_ns"] / 1000).round(1).astype(str) + "us "
        + later["src"].astype(str) + ":" + later["sport"].astype(str) + ">" + later["dst"].astype(str) + ":" + later["dport"].astype(str)
    )
    return later["journey"].to_numpy(), text


def _journey_text(h: pd.DataFrame) -> pd.Series:
    """Each journey's comment: its later hops' text joined by "; ", indexed by journey."""
    journey, text = _hop_text(h)
    return text.groupby(journey).agg("; ".join)


_HOP_TEXT_COLUMNS = ["journey", "hop", "point", "since_first_ns", "src", "sport", "dst", "dport"]


class MergeRows:
    """Observer of a correlation run (``correlate_inputs(..., observer=MergeRows())``) keeping what merge needs
    of each packet: its file, record, point and corrected time (28 bytes a packet, not its table), in a spill file per
    capture file in ``TMPDIR`` (:class:`_RowSpill`), and with ``journeys`` the journey of each row emitted (16 bytes),
    so memory does not grow with the captures; the one-window run hands over its capture set and correlation instead
    (``whole``). :meth:`write` (or :meth:`close`) removes the spill."""

    def __init__(self, *, journeys: bool = True) -> None:
        self.pts: list | None = None
        self.names: dict[str, int] = {}
        self.keep_journeys = journeys  # False: no dedup will be asked, the rows' journeys are not kept
        self.spill: _RowSpill | None = None
        self.whole_run: tuple | None = None
        self.reader_notes: list[str] = []

    def points(self, pts: list) -> None:
        """The capture points, in the order of the capture set's rows."""
        self.pts = pts

    def batch(self, file: str, pk: pd.DataFrame, pid: np.ndarray, keys: np.ndarray, tc: np.ndarray) -> None:  # noqa: ARG002
        """One packet table read: its rows' file, record, point and input-order key (point, row in file), corrected time."""
        if not len(pk):
            return
        f = pk["file"].astype("category")
        ids = np.array([self.names.setdefault(str(c), len(self.names)) for c in f.cat.categories], np.int64)
        fid = ids[f.cat.codes.to_numpy(np.int64)] if ids.size else np.zeros(len(pk), np.int64)
        if self.spill is None:
            self.spill = _RowSpill()
        self.spill.add(fid, pk["record"].to_numpy(np.int64), np.asarray(tc, np.int64), np.asarray(keys, np.int64),
                       np.asarray(pid, np.int64))  # fmt: skip

    def emitted(self, keys: np.ndarray, journeys: np.ndarray) -> None:
        """The journey of rows matched in a window (by input-order key), one per row of the hops the window wrote and in
        their order: appended to the spill (16 bytes a row on disk) for dedup, which reads them beside the hops file."""
        if self.keep_journeys and len(keys):
            if self.spill is None:
                self.spill = _RowSpill()
            self.spill.emit(np.asarray(keys, np.int64), np.asarray(journeys, np.int64))

    def whole(self, capture_set, corr) -> None:  # noqa: ANN001
        """The one-window run: its capture set and correlation."""
        self.whole_run = (capture_set, corr)

    @property
    def notes(self) -> list[str]:
        """The readers' notes (records skipped, so not in the merged file either)."""
        return self.whole_run[0].notes if self.whole_run else list(self.reader_notes)

    @property
    def point_count(self) -> int:
        """How many capture points the merged file has an interface (or more) for."""
        return len(self.whole_run[0].points) if self.whole_run else len(self.pts or [])

    def close(self) -> None:
        """Remove the spill (also done by :meth:`write`)."""
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def write(self, out: str | os.PathLike, *, dedup: bool = False, hops: str | os.PathLike | None = None,
              memory: int | None = None, batch_records: int | None = None, sources: dict[str, str] | None = None,
              dedup_rows: int | None = None) -> int:  # fmt: skip
        """Write the merged pcapng (as :func:`merge`, byte for byte), the files read in windows; the count. ``dedup``
        of a streamed run needs ``hops``, the Parquet file the correlation wrote (decisions and comments come from it,
        :func:`_dedup_spill`); the rows are read back from the spill a window at a time (:func:`_write_spilled`), so
        memory does not grow with the captures, ``dedup`` or not. ``dedup_rows`` sizes dedup's runs and reads instead
        of ``memory`` (tests use it to cut journeys across them)."""
        try:
            if self.whole_run is not None:
                cs, corr = self.whole_run
                return merge(cs, out, correlation=corr, dedup=dedup, memory=memory, batch_records=batch_records, sources=sources)
            names = [(sources or {}).get(f, f) for f in self.names]
            if dedup and (hops is None or not self.keep_journeys):
                raise ValueError("a streamed merge with dedup needs the hops file the correlation wrote and MergeRows(journeys=True)")
            kind = "rows"
            if dedup and self.spill is not None:
                import pyarrow.parquet as pq

                if pq.ParquetFile(os.fspath(hops)).metadata.num_rows:  # no hops: no journey, every row written
                    rows = dedup_rows or 2 * window_records(memory if memory is not None else 2 << 30)
                    _dedup_spill(self.spill, hops, len(self.pts or []), rows=rows,
                                 batch_rows=dedup_rows or _HOPS_BATCH_ROWS, chunk=batch_records or rows)  # fmt: skip
                    kind = "kept"
            return _write_spilled(out, names, self.spill, self.pts or [], memory=memory, batch_records=batch_records, kind=kind)
        finally:
            self.close()


_SPILL_DTYPE = np.dtype([("rec", "<i8"), ("tc", "<i8"), ("key", "<i8"), ("pid", "<i4")])
"""One packet row of a streamed merge on disk: record in its file, corrected time, input-order key, point (28 bytes)."""

_KEPT_DTYPE = np.dtype([("rec", "<i8"), ("tc", "<i8"), ("key", "<i8"), ("pid", "<i4"), ("coff", "<i8"), ("clen", "<i4")])
"""A row ``dedup`` writes (:data:`_SPILL_DTYPE`) and where its comment is in its capture's text spill (offset, length;
0 bytes: none)."""

_EMITTED_DTYPE = np.dtype([("key", "<i8"), ("journey", "<i8")])
"""A row of a journey as the correlation emitted it (one per hops row, in the hops file's order)."""

_DECISION_DTYPE = np.dtype([("key", "<i8"), ("clen", "<i4")])
"""What dedup decided for a row of a journey: -1, a later sighting (not written), or the length of its comment (the
journey's first sighting; the text is beside, in the same order). First sightings of one-hop journeys have none."""

_DTYPES = {"rows": _SPILL_DTYPE, "kept": _KEPT_DTYPE, "later": np.dtype("<i8"), "emitted": _EMITTED_DTYPE,
           "decisions": _DECISION_DTYPE, "text": np.dtype("u1"), "dtext": np.dtype("u1")}  # fmt: skip
"""The record of each kind of spill file."""

_HOPS_BATCH_ROWS = 1 << 16
"""Hops rows dedup reads at a time (whole journeys: the last journey of a batch waits for the next)."""


class _RowSpill:
    """The rows of a streamed merge, one file per capture file (in ``TMPDIR``), appended as the correlation reads them;
    removed by :meth:`close` (on exit through ``finally``, Ctrl-C and SIGTERM included: :func:`pcaptools.process.signals_as_interrupt`)."""

    def __init__(self) -> None:
        from pcaptools.process import SpillDir

        self.dir = SpillDir(prefix="pcaptools-merge-")
        self.rows: dict[int, int] = {}  # file id -> rows on disk
        self.kept: dict[int, int] = {}  # file id -> rows dedup writes (kind "kept")
        self.emitted = 0  # rows of journeys (kind "emitted", file 0)
        self.last: dict[int, int] = {}  # file id -> last record appended
        self.unsorted: set[int] = set()  # files whose rows did not come in record order (a file read by two entries)

    def add(self, fid: np.ndarray, rec: np.ndarray, tc: np.ndarray, key: np.ndarray, pid: np.ndarray) -> None:
        """Append rows (any files) to their files' spills, in their order."""
        order = np.argsort(fid, kind="stable")
        f = fid[order]
        cut = np.flatnonzero(np.r_[True, f[1:] != f[:-1]])
        for k, lo in enumerate(cut.tolist()):
            hi = int(cut[k + 1]) if k + 1 < len(cut) else len(f)
            sel = order[lo:hi]
            u = int(f[lo])
            r = np.empty(sel.shape[0], _SPILL_DTYPE)
            r["rec"], r["tc"], r["key"], r["pid"] = rec[sel], tc[sel], key[sel], pid[sel]
            if (np.diff(r["rec"]) < 0).any() or (u in self.last and r["rec"][0] < self.last[u]):
                self.unsorted.add(u)
            self.last[u] = int(r["rec"][-1])
            with open(self.path(u), "ab") as fh:
                r.tofile(fh)
            self.rows[u] = self.rows.get(u, 0) + r.shape[0]

    def emit(self, key: np.ndarray, journey: np.ndarray) -> None:
        """Append rows of journeys as the correlation emitted them (:meth:`MergeRows.emitted`)."""
        r = np.empty(key.shape[0], _EMITTED_DTYPE)
        r["key"], r["journey"] = key, journey
        with open(self.path(0, "emitted"), "ab") as fh:
            r.tofile(fh)
        self.emitted += r.shape[0]

    def path(self, u: int, kind: str = "rows") -> str:
        return os.path.join(self.dir.name, f"{kind}-{u}.bin")

    def count(self, u: int, kind: str = "rows") -> int:
        """Records in file ``u``'s spill of ``kind`` (rows or kept)."""
        return (self.rows if kind == "rows" else self.kept)[u]

    def remove(self, u: int, kind: str) -> None:
        """Drop a spill file no longer read (its disk space)."""
        if os.path.exists(self.path(u, kind)):
            os.remove(self.path(u, kind))

    def read(self, u: int, start: int, count: int, kind: str = "rows") -> np.ndarray:
        """Records ``start`` to ``start + count`` of file ``u``'s spill of ``kind`` (:data:`_DTYPES`: "rows", "later"
        their suffix minima, "kept", "text" bytes...)."""
        dt = _DTYPES[kind]
        with open(self.path(u, kind), "rb") as fh:
            fh.seek(start * dt.itemsize)
            return np.fromfile(fh, dt, count=count)

    def sort(self, u: int) -> None:
        """File ``u``'s rows in record order (then input order), as the windowed writer reads the capture; a file whose
        rows came in order (every file but one read by several manifest entries) is left alone."""
        if u in self.unsorted:
            r = np.fromfile(self.path(u), _SPILL_DTYPE)
            r[np.lexsort((r["key"], r["rec"]))].tofile(self.path(u))
            self.unsorted.discard(u)

    def suffix_min(self, u: int, chunk: int, kind: str = "rows") -> None:
        """Write file ``u``'s "later" spill: per row (of ``kind``) the smallest corrected time from it on (what the
        capture can still bring once that row is next), computed from the end a chunk at a time."""
        n = self.count(u, kind)
        low = np.iinfo(np.int64).max
        with open(self.path(u, "later"), "wb") as out:
            out.truncate(n * 8)
            for hi in range(n, 0, -chunk):
                lo = max(0, hi - chunk)
                t = self.read(u, lo, hi - lo, kind)["tc"]
                m = np.minimum(np.minimum.accumulate(t[::-1])[::-1], low)
                low = int(m[0])
                out.seek(lo * 8)
                m.astype("<i8").tofile(out)

    def close(self) -> None:
        """Remove the spill directory, whole even when Ctrl-C or SIGTERM comes meanwhile (:class:`SpillDir`)."""
        self.dir.cleanup()


class _Cursor:
    """A capture file's spilled rows in record order, read a chunk at a time: the next rows and what they can bring."""

    def __init__(self, spill: _RowSpill, u: int, chunk: int, kind: str = "rows") -> None:
        self.spill, self.u, self.chunk, self.kind = spill, u, max(int(chunk), 1), kind
        self.n = spill.count(u, kind)
        self.base = 0  # file position of rows[0]
        self.rows = np.zeros(0, _DTYPES[kind])
        self.later_v = np.zeros(0, np.int64)
        self.done = 0  # rows consumed (file position)

    def _load(self, upto: int) -> None:
        """Hold rows up to file position ``upto`` (at least), dropping those consumed."""
        drop = self.done - self.base
        self.rows, self.later_v, self.base = self.rows[drop:], self.later_v[drop:], self.done
        end = self.base + self.rows.shape[0]
        if upto > end and end < self.n:
            count = max(upto - end, self.chunk)
            self.rows = np.concatenate([self.rows, self.spill.read(self.u, end, count, self.kind)])
            self.later_v = np.concatenate([self.later_v, self.spill.read(self.u, end, count, "later")])

    def later(self) -> int:
        """The smallest corrected time among the rows not consumed yet."""
        if self.done - self.base >= self.rows.shape[0]:
            self._load(self.done + 1)
        return int(self.later_v[self.done - self.base])

    def upto(self, record: int) -> np.ndarray:
        """The rows not consumed whose record is at most ``record`` (not consumed by this)."""
        while True:
            held = self.rows[self.done - self.base :]
            k = int(np.searchsorted(held["rec"], record, side="right"))
            if k < held.shape[0] or self.base + self.rows.shape[0] >= self.n:
                return held[:k]
            self._load(self.base + self.rows.shape[0] + self.chunk)

    def consume(self, k: int) -> None:
        self.done += int(k)

    def finished(self) -> bool:
        return self.done >= self.n

    def first_left(self) -> int:
        """The record of the first row not consumed."""
        if self.done - self.base >= self.rows.shape[0]:
            self._load(self.done + 1)
        return int(self.rows["rec"][self.done - self.base])


def _not_found(f: str, record: int) -> None:
    raise CorrelationError(f"{f}: record {record} of the packet table is not in the file; was it rewritten since decoding?", path=f, record=record)


def _write_spilled(path, names: list[str], spill: _RowSpill | None, points: list, *, memory: int | None,  # noqa: ANN001
                   batch_records: int | None, kind: str = "rows") -> int:  # fmt: skip
    """:func:`_write` of a streamed merge's rows without holding them: each capture file's spilled rows (record order)
    and the capture read side by side in windows, twice: once for the interfaces (every row's link type), once to
    k-way merge the points by corrected time (:func:`_write_merged`'s rule: a row is written once its time is below
    what every capture can still bring). Memory: per capture one window of records and about as many spilled rows;
    the file is :func:`_write`'s byte for byte (ties in time written in input order, the capture set's row order).
    ``kind`` "kept": the rows dedup keeps, each with its comment (:func:`_dedup_spill`)."""
    from pcaptools.io import iter_records
    from pcaptools.packet_file import window_bytes

    files = sorted(spill.rows) if spill is not None else []
    n = sum(spill.count(u, kind) for u in files) if spill is not None else 0
    if batch_records is None:
        batch_records = max(256, window_records(memory if memory is not None else 2 << 30) // max(1, len(files)))
    # two window buffers per capture, reused (the bytes are copied out of a batch before the next is taken): a fresh
    # buffer per window left glibc's heap holding hundreds of MiB of freed windows (856 MiB peak for 400k sightings)
    opts = {"batch_records": batch_records, "reuse_windows": True}
    if memory is not None:
        opts["batch_bytes"] = max(1 << 20, window_bytes(memory) // max(1, len(files)))
    kinds: set[int] = set()  # point * 65536 + link type of every row
    for u in files:
        f = names[u]
        if not f or not os.path.exists(f):
            _missing(f, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
        if kind == "rows":
            spill.sort(u)
        spill.suffix_min(u, batch_records, kind)
        cur = _Cursor(spill, u, batch_records, kind)
        for batch in iter_records(f, **opts):
            if not len(batch) or cur.finished():
                continue
            r = cur.upto(int(batch.record[-1]))
            pos = np.minimum(np.searchsorted(batch.record, r["rec"]), len(batch) - 1)
            hit = batch.record[pos] == r["rec"]
            if not hit.all():
                _not_found(f, int(r["rec"][np.argmin(hit)]))
            kinds.update(np.unique(r["pid"].astype(np.int64) * 65536 + batch.linktype[pos]).tolist())
            cur.consume(r.shape[0])
        if not cur.finished():
            _not_found(f, cur.first_left())
    ukeys = np.array(sorted(kinds), np.int64)
    header = _header(ukeys, points)
    with open(path, "wb") as out:
        out.write(header)
        _kway(out, [_SpillSource(names[u], _Cursor(spill, u, batch_records, kind), ukeys, iter_records(names[u], **opts))
                    for u in files if spill.count(u, kind)])  # fmt: skip
    return n


class _SpillSource:
    """A capture's spilled rows (:class:`_Cursor`) for :func:`_kway`; ties in time by input key; the comments of kept
    rows read from the capture's text spill beside them."""

    def __init__(self, f: str, cur: _Cursor, ukeys: np.ndarray, batches) -> None:  # noqa: ANN001
        self.file, self.cur, self.ukeys, self.batches = f, cur, ukeys, batches
        self.later, self.finished = cur.later, cur.finished

    def missing(self) -> None:
        _not_found(self.file, self.cur.first_left())

    def take(self, batch) -> tuple:  # noqa: ANN001
        """The next rows of the cursor found in ``batch`` (consumed), as a piece."""
        want = self.cur.upto(int(batch.record[-1])) if len(batch) else np.zeros(0, _DTYPES[self.cur.kind])
        pos = _found(batch, want["rec"])
        r = want[: len(pos)]
        self.cur.consume(len(pos))
        iface = np.searchsorted(self.ukeys, r["pid"].astype(np.int64) * 65536 + batch.linktype[pos].astype(np.int64))
        if self.cur.kind != "kept" or not len(r):
            none = np.zeros(len(pos), np.int64)
            return _piece(batch, pos, r["key"].copy(), r["tc"].copy(), iface, none, none, np.zeros(0, np.uint8))
        # kept rows are consumed in file order: their comments are one run of the text spill
        start = int(r["coff"][0])
        c_len = r["clen"].astype(np.int64)
        cbuf = self.cur.spill.read(self.cur.u, start, int(r["coff"][-1]) + int(c_len[-1]) - start, "text")
        return _piece(batch, pos, r["key"].copy(), r["tc"].copy(), iface, r["coff"] - start, c_len, cbuf)


# --- dedup of a streamed run, within a budget ------------------------------------------------------------------------
_DEDUP_COLUMNS = ["journey", "ts_corrected_ns", *(c for c in _HOP_TEXT_COLUMNS if c != "journey")]


def _dedup_spill(spill: _RowSpill, hops: str | os.PathLike, npids: int, *, rows: int, batch_rows: int, chunk: int) -> None:
    """Write each capture's "kept" spill: its rows but the later sightings of journeys, each journey's first sighting
    with its comment, byte for byte what :func:`merge` decides in memory, holding about ``rows`` decisions at a time.

    The hops file (in journey order, each journey's rows together) is read ``batch_rows`` rows at a time beside the
    journeys the correlation emitted (the same rows in the same order, with their input keys): per batch of whole
    journeys the first sighting (earliest corrected time, then input order) and the comment are decided
    (:func:`_decide`) and gathered into runs of about ``rows`` decisions sorted by input key (:class:`_Runs`). Each
    capture's rows (record order, which is input order within a point) are then read ``chunk`` at a time beside its
    points' decisions merged across runs (:class:`_RunCursor`), and the rows kept written with their comments in
    the same order (:func:`_keep`). Disk: 16 bytes a journey's row, 12 a decision and its text, the kept rows."""
    runs = _Runs(spill, npids, rows)
    for dec, text in _decide(spill, hops, batch_rows):
        runs.add(dec, text)
    runs.flush()
    spill.remove(0, "emitted")
    block = max(1, rows // max(1, runs.count()))
    cursors = {p: _RunCursor(runs, p, block) for p in range(npids)}
    for u in sorted(spill.rows):
        _keep(spill, u, cursors, chunk)
        spill.remove(u, "rows")
    left = [p for p, c in cursors.items() if not c.finished()]
    if left:
        raise CorrelationError(f"merge --dedup: point {left[0]} has journeys of rows that were not read; the correlation's "
                               "hops do not match its packets (a bug: please report it)")  # fmt: skip
    for kind in ("decisions", "dtext"):
        spill.remove(0, kind)


def _decide(spill: _RowSpill, hops: str | os.PathLike, batch_rows: int):  # noqa: ANN202
    """Per batch of whole journeys of the hops file: (decisions, their comments' bytes), see :func:`_dedup_spill`."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(os.fspath(hops))
    if pf.metadata.num_rows != spill.emitted:
        raise CorrelationError(f"{hops}: {pf.metadata.num_rows:,} hops rows but {spill.emitted:,} rows emitted by the "
                               "correlation; merge --dedup needs the hops file of the same run", path=os.fspath(hops))  # fmt: skip
    held: list[np.ndarray] = []  # the last journey's rows of the previous batch (it may go on): journey, key, tc
    held_text: list[np.ndarray] = []  # and its later hops' journey and text
    read = 0
    last = np.iinfo(np.int64).min
    with open(spill.path(0, "emitted"), "rb") as fh:
        for b in pf.iter_batches(batch_size=max(int(batch_rows), 1), columns=_DEDUP_COLUMNS):
            h = b.to_pandas()
            e = np.fromfile(fh, _EMITTED_DTYPE, count=len(h))
            j = h["journey"].to_numpy(np.int64)
            if e.shape[0] != j.shape[0] or not np.array_equal(e["journey"], j) or (j.size and (j[0] < last or (np.diff(j) < 0).any())):
                raise CorrelationError(f"{hops}: rows {read:,} to {read + len(h):,} are not the journeys the correlation emitted, "
                                       "in journey order; merge --dedup needs the hops file of the same run", path=os.fspath(hops))  # fmt: skip
            read += len(h)
            last = int(j[-1]) if j.size else last
            tj, text = _hop_text(h)
            cols = [np.concatenate([a, x]) for a, x in zip(held or [np.zeros(0, np.int64)] * 3,
                                                            (j, e["key"], h["ts_corrected_ns"].to_numpy(np.int64)), strict=True)]  # fmt: skip
            tcols = [np.concatenate([a, x]) for a, x in zip(held_text or [np.zeros(0, np.int64), np.zeros(0, object)],
                                                             (tj, text.to_numpy(object)), strict=True)]  # fmt: skip
            cut = int(np.searchsorted(cols[0], last))  # rows of journeys before the last one: complete
            tcut = int(np.searchsorted(tcols[0], last))
            held, held_text = [c[cut:] for c in cols], [c[tcut:] for c in tcols]
            if cut:
                yield _decisions(*(c[:cut] for c in cols), *(c[:tcut] for c in tcols))
    if held and held[0].size:
        yield _decisions(*held, *held_text)


def _decisions(j: np.ndarray, key: np.ndarray, tc: np.ndarray, tj: np.ndarray, text: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Decisions on whole journeys (rows by journey: ``j``, input ``key``, corrected time ``tc``; later hops' journey
    ``tj`` and text), as :func:`_first_sightings` and :func:`_journey_text` make them on the whole table: every
    sighting but the first dropped, the first given its journey's text; and the comments' bytes in their order."""
    o = np.lexsort((key, tc, j))
    first = np.r_[True, j[o][1:] != j[o][:-1]] if o.size else np.zeros(0, bool)
    kept_j, kept_key = j[o][first], key[o][first]
    per_j = pd.Series(text, dtype=object).groupby(tj, sort=True).agg("; ".join)
    enc = [t.encode() for t in per_j.to_numpy(object)]
    dec = np.empty(int((~first).sum()) + len(enc), _DECISION_DTYPE)
    nd = int((~first).sum())
    dec["key"][:nd], dec["clen"][:nd] = key[o][~first], -1
    dec["key"][nd:] = kept_key[np.searchsorted(kept_j, per_j.index.to_numpy(np.int64))]
    dec["clen"][nd:] = [len(t) for t in enc]
    return dec, enc


class _Runs:
    """Dedup's decisions on disk (kinds "decisions" and "dtext" of file 0), in runs sorted by input key, with per run
    and point how many decisions and text bytes it holds (so a point's part of each run is found without reading)."""

    def __init__(self, spill: _RowSpill, npids: int, rows: int) -> None:
        self.spill, self.npids, self.rows = spill, int(npids), max(int(rows), 1)
        self.pending: list[tuple[np.ndarray, list[bytes]]] = []
        self.held = 0
        self.first: list[np.ndarray] = []  # per run: position of each point's first decision (npids + 1)
        self.first_text: list[np.ndarray] = []  # and of its first text byte
        self.end = 0
        self.end_text = 0

    def count(self) -> int:
        return len(self.first)

    def add(self, dec: np.ndarray, text: list[bytes]) -> None:
        self.pending.append((dec, text))
        self.held += dec.shape[0]
        if self.held >= self.rows:
            self.flush()

    def flush(self) -> None:
        """Write the pending decisions as one run sorted by input key (a key is decided once)."""
        if not self.held:
            return
        dec = np.concatenate([d for d, _ in self.pending])
        text = [t for _, ts in self.pending for t in ts]
        self.pending, self.held = [], 0
        has = np.flatnonzero(dec["clen"] > 0)  # the rows with a comment, in the order of ``text``
        order = np.argsort(dec["key"], kind="stable")
        dec = dec[order]
        rank = np.empty(order.shape[0], np.int64)
        rank[order] = np.arange(order.shape[0])
        text = b"".join([text[i] for i in np.argsort(rank[has], kind="stable").tolist()])
        pid = dec["key"] >> 40
        if pid.size and (pid.min() < 0 or pid.max() >= self.npids):
            raise CorrelationError(f"merge --dedup: a journey's row has point {int(pid.max())} of {self.npids}; the correlation's "
                                   "hops do not match its points (a bug: please report it)")  # fmt: skip
        n = np.bincount(pid, minlength=self.npids)
        nt = np.bincount(pid, weights=np.maximum(dec["clen"], 0), minlength=self.npids).astype(np.int64)
        self.first.append(self.end + np.r_[0, np.cumsum(n)])
        self.first_text.append(self.end_text + np.r_[0, np.cumsum(nt)])
        for kind, data in (("decisions", dec), ("dtext", np.frombuffer(text, np.uint8))):
            with open(self.spill.path(0, kind), "ab") as fh:
                data.tofile(fh)
        self.end += dec.shape[0]
        self.end_text += len(text)


class _RunCursor:
    """One point's decisions merged across the runs in input-key order, ``block`` of each run read at a time."""

    def __init__(self, runs: _Runs, p: int, block: int) -> None:
        self.spill, self.block = runs.spill, max(int(block), 1)
        # per run: next decision, end, next text byte; decisions read not taken and their text
        self.next = [int(f[p]) for f in runs.first]
        self.stop = [int(f[p + 1]) for f in runs.first]
        self.next_text = [int(f[p]) for f in runs.first_text]
        self.dec = [np.zeros(0, _DECISION_DTYPE) for _ in runs.first]
        self.text = [np.zeros(0, np.uint8) for _ in runs.first]

    def finished(self) -> bool:
        return all(a >= b for a, b in zip(self.next, self.stop, strict=True)) and not any(d.size for d in self.dec)

    def upto(self, key: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The decisions not taken with keys up to ``key`` (taken now), sorted, their comments' bytes and offsets."""
        decs, texts = [], []
        for r in range(len(self.dec)):
            while self.next[r] < self.stop[r] and (not self.dec[r].size or self.dec[r]["key"][-1] <= key):
                d = self.spill.read(0, self.next[r], min(self.block, self.stop[r] - self.next[r]), "decisions")
                nt = int(np.maximum(d["clen"], 0).sum())
                self.text[r] = np.concatenate([self.text[r], self.spill.read(0, self.next_text[r], nt, "dtext")])
                self.dec[r] = np.concatenate([self.dec[r], d])
                self.next[r] += d.shape[0]
                self.next_text[r] += nt
            k = int(np.searchsorted(self.dec[r]["key"], key, side="right"))
            nt = int(np.maximum(self.dec[r]["clen"][:k], 0).sum())
            decs.append(self.dec[r][:k])
            texts.append(self.text[r][:nt])
            self.dec[r], self.text[r] = self.dec[r][k:], self.text[r][nt:]
        dec = np.concatenate(decs) if decs else np.zeros(0, _DECISION_DTYPE)
        text = np.concatenate(texts) if texts else np.zeros(0, np.uint8)
        clen = np.maximum(dec["clen"], 0).astype(np.int64)
        off = np.cumsum(clen) - clen
        order = np.argsort(dec["key"], kind="stable")
        out = np.zeros(text.shape[0], np.uint8)
        o_len = clen[order]
        o_off = np.cumsum(o_len) - o_len
        _gather(out, o_off, text, off[order], o_len)
        return dec[order], out, o_off


def _keep(spill: _RowSpill, u: int, cursors: dict[int, _RunCursor], chunk: int) -> None:
    """Capture ``u``'s "kept" spill and its "text" spill: its rows (record order) ``chunk`` at a time, less the rows
    decided dropped, each with its comment (offset and length in the text spill, written in the same order)."""
    spill.sort(u)
    n, pos_text, kept = spill.rows[u], 0, 0
    with open(spill.path(u, "kept"), "wb") as out, open(spill.path(u, "text"), "wb") as tout:
        for lo in range(0, n, max(int(chunk), 1)):
            r = spill.read(u, lo, chunk)
            drop = np.zeros(r.shape[0], bool)
            clen = np.zeros(r.shape[0], np.int64)
            src: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per point: rows, their text's offsets, text
            for p in np.unique(r["pid"]).tolist():
                sel = np.flatnonzero(r["pid"] == p)  # input order within a point is record order
                dec, text, toff = cursors[p].upto(int(r["key"][sel].max()))
                at = np.minimum(np.searchsorted(r["key"][sel], dec["key"]), sel.shape[0] - 1)
                if not (r["key"][sel][at] == dec["key"]).all():
                    raise CorrelationError(f"merge --dedup: a journey's row is not among the packets read (point {p}); the "
                                           "correlation's hops do not match its packets (a bug: please report it)")  # fmt: skip
                rows = sel[at]
                drop[rows[dec["clen"] < 0]] = True
                c = dec["clen"] > 0
                clen[rows[c]] = dec["clen"][c]
                src.append((rows[c], toff[c], text))
            keep = np.flatnonzero(~drop)
            k = np.empty(keep.shape[0], _KEPT_DTYPE)
            for c in ("rec", "tc", "key", "pid"):
                k[c] = r[c][keep]
            kl = clen[keep]
            k["clen"] = kl
            k["coff"] = pos_text + np.cumsum(kl) - kl
            at_row = np.full(r.shape[0], -1, np.int64)
            at_row[keep] = np.cumsum(kl) - kl  # each kept row's comment in this chunk's text
            buf = np.zeros(int(kl.sum()), np.uint8)
            for rows, toff, text in src:
                _gather(buf, at_row[rows], text, toff, clen[rows])
            k.tofile(out)
            buf.tofile(tout)
            pos_text += buf.shape[0]
            kept += keep.shape[0]
    spill.kept[u] = kept
