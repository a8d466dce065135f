"""Read pcap/pcapng (optionally gzip/xz/zstd) into :class:`RecordBatch` columns: whole, or streamed in windows.

One driver serves both formats: a format walker turns a byte buffer into record arrays until it
runs out of bytes, fills its output, or meets damage. Damage is counted by reason and the walk
goes on where the framing can be trusted; where it cannot, reading stops and ``stopped_at`` says
where (``on_error="skip"``), or a :class:`~pcaptools.errors.FormatError` says so (``"raise"``).
Compressed data that ends on damage ends the walk there: the record cut by it and the unreadable
rest count as one ``compressed_data_corrupt`` skip, and ``stopped_at`` names the compressed byte.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

import numpy as np

from pcaptools.errors import CorruptBlock, PcapError, TruncatedRecord
from pcaptools.io import pcap, pcapng
from pcaptools.io.compressed import Damage, Decompressed
from pcaptools.io.records import Interface, RecordBatch
from pcaptools.io.sniff import Opened, WindowReader, open_capture, whole_buffer

OnError = Literal["skip", "raise"]
_CHUNK = 1 << 20  # records per kernel call when reading a whole file
_U32_CAP = 0xFFFFFFFF


class _Parts:
    """Growing list of per-kernel-call column arrays, concatenated once at the end of a batch."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in names}
        self.n = 0

    def add(self, arrays: dict[str, np.ndarray], k: int) -> None:
        if k:
            for name, a in arrays.items():
                self.cols[name].append(a[:k])
            self.n += k

    def joined(self, name: str, dtype) -> np.ndarray:
        parts = self.cols.get(name, [])
        if not parts:
            return np.empty(0, dtype=dtype)
        return (
            parts[0].astype(dtype, copy=False)
            if len(parts) == 1
            else np.concatenate(parts).astype(dtype, copy=False)
        )


class _Walker:
    """State shared by both formats while walking one file: accounting, interfaces, damage policy."""

    format = ""

    def __init__(self, path: str, on_error: OnError) -> None:
        if on_error not in ("skip", "raise"):
            raise PcapError(f"on_error must be 'skip' or 'raise', got {on_error!r}", path=path)
        self.path = path
        self.on_error = on_error
        self.interfaces: list[Interface] = []
        self.skipped: Counter[str] = Counter()
        self.notes: list[str] = []
        self.stopped_at: dict | None = None
        self.finished = False
        self.cut: Damage | None = None  # set once the decompressed data has ended on damage
        self.seen_records = 0  # records and bytes walked so far: the density that sizes the next outputs
        self.seen_bytes = 0

    def out_size(self, room: int, left: int, min_record: int) -> int:
        """Output slots for one kernel call over ``left`` bytes: no more than ``room`` or than the bytes can
        hold, and once records were seen about 1.25x what their density predicts. Untouched slots cost
        nothing only below numpy's 4 MiB huge-page threshold; a window of 16 MiB would otherwise fault in
        huge pages for a million slots to fill 20,000 (a short guess ends in FULL: one more call)."""
        size = left // min_record + 1
        if self.seen_records:
            size = min(size, int(left * self.seen_records / max(self.seen_bytes, 1) * 1.25) + 64)
        return max(1, min(room, size))

    def saw(self, k: int, nbytes: int) -> None:
        """Account ``k`` records walked over ``nbytes`` bytes (for out_size)."""
        self.seen_records += k
        self.seen_bytes += nbytes

    def begin_batch(self) -> None:
        self.skipped = Counter()

    def stop(self, reason: str, offset: int, record: int, bytes_left: int, message: str, exc: type) -> None:
        """Damage the rest of the file cannot be read past: raise, or remember where reading stopped."""
        if self.on_error == "raise":
            raise exc(message, path=self.path, record=record, offset=offset)
        self.stopped_at = {"reason": reason, "offset": offset, "record": record, "bytes_left": bytes_left}
        if self.cut is not None and reason in ("truncated_record", self.cut.reason):
            self.stopped_at["compressed_offset"] = self.cut.offset
        self.notes.append(message)
        self.finished = True

    def ends_inside(self, offset: int, record: int, left: int, message: str) -> None:
        """The data ends inside a record: a capture cut off, or decompression that stopped at damage."""
        if self.cut is not None and self.cut.reason == "compressed_data_corrupt":
            reason, exc = self.cut.reason, CorruptBlock
            message = (
                f"{self.cut.message}; record {record} at decompressed byte {offset} is the first one lost"
            )
        else:
            reason, exc = "truncated_record", TruncatedRecord
            if self.cut is not None:
                message = f"{message} ({self.cut.message})"
        self.skipped[reason] += 1
        self.stop(reason, offset, record, left, message, exc)

    def data_ended(self, stream: Decompressed | None, end: int, record: int) -> None:
        """After the last walk: the rest lost to compressed damage counts as one skip; trailer notes are kept."""
        if stream is None:
            return
        d = stream.damage
        if d is not None and not self.finished:  # the damage fell on a record boundary
            if d.reason == "compressed_data_corrupt":
                self.skipped[d.reason] += 1
                self.stop(
                    d.reason,
                    end,
                    record,
                    0,
                    d.message + f"; record {record} is the first one lost",
                    CorruptBlock,
                )
            elif self.on_error == "raise":
                raise TruncatedRecord(d.message, path=self.path, record=record, offset=end)
            else:
                self.notes.append(d.message)
        elif d is not None and (self.stopped_at or {}).get("compressed_offset") is None:
            self.notes.append(d.message)  # reading stopped earlier, on damage the decompressor let through
        self.notes.extend(stream.notes)


class _PcapWalker(_Walker):
    format = "pcap"

    def start(self, buf: np.ndarray) -> int:
        """Parse the 24-byte file header; return where records start."""
        self.state, iface = pcap.parse_header(self.path, buf[: pcap.FILE_HEADER_LEN].tobytes())
        self.interfaces = [iface]
        self.record = 0
        self.last_sec = -1
        return pcap.FILE_HEADER_LEN

    def next_record(self) -> int:
        """Number the next record would get."""
        return self.record

    def step(
        self, buf: np.ndarray, pos: int, base: int, at_eof: bool, max_out: int
    ) -> tuple[_Parts, int, str]:
        """Walk ``buf`` from ``pos``: (columns, next position, "full" | "more" | "done")."""
        st = self.state
        end = len(buf)
        parts = _Parts(("offset", "caplen", "wirelen", "ts_ns", "record"))
        while True:
            room = max_out - parts.n
            if room <= 0:
                return parts, pos, "full"
            size = self.out_size(room, end - pos, st["rec_hdr"])
            off = np.empty(size, np.int64)
            cap = np.empty(size, np.uint32)
            wire = np.empty(size, np.uint32)
            ts = np.empty(size, np.int64)
            was = pos
            k, pos, code = pcap.walk(buf, pos, end, st["swap"], st["nano"], st["rec_hdr"], off, cap, wire, ts)
            self.saw(k, pos - was)
            rec = np.arange(self.record, self.record + k, dtype=np.int64)
            self.record += k
            parts.add({"offset": off, "caplen": cap, "wirelen": wire, "ts_ns": ts, "record": rec}, k)
            if k:
                self.last_sec = int(ts[k - 1] // 1_000_000_000)
            if code == pcap.FULL:
                continue
            if code == pcap.END:
                return parts, pos, "done" if at_eof else "more"
            if code == pcap.SHORT:
                if not at_eof:
                    return parts, pos, "more"
                self._truncated(buf, pos, base, end)
                return parts, pos, "done"
            # ABSURD caplen: the record header is garbage; look for the next believable one
            if not at_eof and end - pos < 4 * pcap.MAX_CAPLEN:
                return parts, pos, "more"
            if not self._resync(buf, pos, base, end):
                return parts, pos, "done"
            pos = self._resync_to

    def _truncated(self, buf: np.ndarray, pos: int, base: int, end: int) -> None:
        left = end - pos
        hdr = self.state["rec_hdr"]
        if left < hdr:
            what = f"needs a {hdr}-byte record header, {left} bytes remain"
        else:
            what = f"needs {int(pcap.record_header_at(buf, pos, self.state)[2])} bytes, {left - hdr} remain"
        self.record += 1
        self.ends_inside(
            base + pos,
            self.record - 1,
            left,
            f"{self.path}: record {self.record - 1} at byte {base + pos} {what}; capture ends mid-packet, "
            f"on_error='skip' keeps the {self.record - 1} records before it",
        )

    def _resync(self, buf: np.ndarray, pos: int, base: int, end: int) -> bool:
        st = self.state
        caplen = pcap.record_header_at(buf, pos, st)[2]
        rec = self.record
        self.record += 1
        self.skipped["caplen_absurd"] += 1
        msg = (
            f"{self.path}: record {rec} at byte {base + pos} claims caplen {caplen} (> {pcap.MAX_CAPLEN}, "
            f"snaplen {st['snaplen']}); the record header is corrupt"
        )
        if self.on_error == "raise":
            raise CorruptBlock(
                msg + "; on_error='skip' skips it and resynchronises",
                path=self.path,
                record=rec,
                offset=base + pos,
            )
        lo, hi = (
            (0, _U32_CAP) if self.last_sec < 0 else (max(0, self.last_sec - 86400), self.last_sec + 86400)
        )
        p = int(pcap.resync(buf, pos, end, st["swap"], st["nano"], st["rec_hdr"], st["snaplen"], lo, hi))
        if p < 0:
            self.stop(
                "caplen_absurd",
                base + pos,
                rec,
                end - pos,
                msg + f"; no believable record header follows, the last {end - pos} bytes are unread",
                CorruptBlock,
            )
            return False
        self.notes.append(msg + f"; resynchronised at byte {base + p} after skipping {p - pos} bytes")
        self._resync_to = p
        return True


class _PcapngWalker(_Walker):
    format = "pcapng"

    def start(self, buf: np.ndarray) -> int:
        """Nothing precedes the first Section Header Block; the walk parses it like any other."""
        self.st = np.zeros(pcapng.ST_N, np.int64)
        self.section = -1
        self.tsresol: list[int] = []
        self.tsoffset: list[int] = []
        return 0

    def next_record(self) -> int:
        """Number the next packet record would get."""
        return int(self.st[pcapng.ST_RECORD])

    def _order(self) -> str:
        return "big" if self.st[pcapng.ST_SWAP] else "little"

    def step(
        self, buf: np.ndarray, pos: int, base: int, at_eof: bool, max_out: int
    ) -> tuple[_Parts, int, str]:
        """Walk ``buf`` from ``pos``: (columns, next position, "full" | "more" | "done")."""
        end = len(buf)
        names = ("offset", "caplen", "wirelen", "ts_raw", "iface", "flags", "record")
        parts = _Parts(names)
        counters = np.zeros(len(pcapng.SKIP_REASONS), np.int64)
        try:
            while True:
                room = max_out - parts.n
                if room <= 0:
                    return parts, pos, "full"
                size = self.out_size(room, end - pos, 16)
                cols = {
                    "offset": np.empty(size, np.int64),
                    "caplen": np.empty(size, np.uint32),
                    "wirelen": np.empty(size, np.uint32),
                    "ts_raw": np.empty(size, np.uint64),
                    "iface": np.empty(size, np.uint32),
                    "flags": np.empty(size, np.uint32),
                    "record": np.empty(size, np.int64),
                }
                if self.section < 0:  # the sniffer saw the SHB magic at the start
                    k, code = 0, pcapng.AT_SHB
                else:
                    was = pos
                    k, pos, code = pcapng.walk(
                        buf, pos, end, self.st, self.on_error == "raise", counters, *cols.values()
                    )
                    self.saw(k, pos - was)
                parts.add(cols, k)
                if code == pcapng.FULL:
                    continue
                if code == pcapng.END:
                    return parts, pos, "done" if at_eof else "more"
                if code == pcapng.SHORT:
                    if not at_eof:
                        return parts, pos, "more"
                    self._stop_short(buf, pos, base, end)
                    return parts, pos, "done"
                if code == pcapng.AT_SHB:
                    new = self._section(buf, pos, base, end, at_eof)
                elif code == pcapng.AT_IDB:
                    new = self._interface(buf, pos, base)
                elif code == pcapng.AT_ISB:
                    new = self._statistics(buf, pos)
                elif code == pcapng.AT_DAMAGE:
                    self._damage(buf, pos, base)  # raises
                    new = -1
                else:
                    self._corrupt(buf, pos, base, end, code)
                    return parts, pos, "done"
                if new is None:
                    return parts, pos, "more"
                if new < 0:
                    return parts, pos, "done"
                pos = new
        finally:
            for reason, c in zip(pcapng.SKIP_REASONS, counters.tolist(), strict=True):
                if c:
                    self.skipped[reason] += c

    # rare blocks, handled in Python ----------------------------------------------------------
    def _section(self, buf: np.ndarray, pos: int, base: int, end: int, at_eof: bool) -> int | None:
        """Parse a Section Header Block: byte order, new interface numbering. None = need more bytes."""
        if end - pos < 12:
            if not at_eof:
                return None
            self._stop_short(buf, pos, base, end)
            return -1
        bom = buf[pos + 8 : pos + 12].tobytes()
        if bom == b"\x4d\x3c\x2b\x1a":
            swap = 0
        elif bom == b"\x1a\x2b\x3c\x4d":
            swap = 1
        else:
            self.stop(
                "corrupt_section_header",
                base + pos,
                int(self.st[pcapng.ST_RECORD]),
                end - pos,
                f"{self.path}: section header at byte {base + pos} has byte-order magic 0x{bom.hex()}, "
                "expected 1a2b3c4d in either byte order; the rest of the file cannot be read",
                CorruptBlock,
            )
            return -1
        order = "big" if swap else "little"
        blen = int.from_bytes(buf[pos + 4 : pos + 8].tobytes(), order)
        if blen < 28 or blen % 4 or blen > pcapng.MAX_BLOCK:
            self._corrupt(buf, pos, base, end, pcapng.BAD_LENGTH, blen=blen)
            return -1
        if end - pos < blen:
            if not at_eof:
                return None
            self._stop_short(buf, pos, base, end, blen=blen)
            return -1
        trailer = int.from_bytes(buf[pos + blen - 4 : pos + blen].tobytes(), order)
        if trailer != blen:
            self.st[pcapng.ST_SWAP] = swap
            self._corrupt(buf, pos, base, end, pcapng.BAD_TRAILER)
            return -1
        self.section += 1
        self.st[pcapng.ST_SWAP] = swap
        self.st[pcapng.ST_IF_BASE] = len(self.interfaces)
        self.st[pcapng.ST_IF_COUNT] = 0
        return pos + blen

    def _interface(self, buf: np.ndarray, pos: int, base: int) -> int:
        order = self._order()
        blen = int.from_bytes(buf[pos + 4 : pos + 8].tobytes(), order)
        if blen < 20:
            self._corrupt(buf, pos, base, len(buf), pcapng.BAD_LENGTH, blen=blen)
            return -1
        iface, tsresol, tsoffset = pcapng.parse_idb(
            buf[pos : pos + blen].tobytes(), order, iface_id=len(self.interfaces), section=self.section
        )
        self.interfaces.append(iface)
        self.tsresol.append(tsresol)
        self.tsoffset.append(tsoffset)
        self.st[pcapng.ST_IF_COUNT] += 1
        return pos + blen

    def _statistics(self, buf: np.ndarray, pos: int) -> int:
        """An Interface Statistics Block (still counted as a skipped block): its counters go to its interface."""
        order = self._order()
        blen = int.from_bytes(buf[pos + 4 : pos + 8].tobytes(), order)
        self.skipped["interface_statistics_block"] += 1
        if blen >= 24:
            local, stats = pcapng.parse_isb(buf[pos : pos + blen].tobytes(), order)
            if local < self.st[pcapng.ST_IF_COUNT]:
                k = int(self.st[pcapng.ST_IF_BASE]) + local
                self.interfaces[k] = replace(self.interfaces[k], stats=stats)
        return pos + blen

    def _block_desc(self, buf: np.ndarray, pos: int) -> tuple[int, int]:
        order = self._order()
        return (
            int.from_bytes(buf[pos : pos + 4].tobytes(), order),
            int.from_bytes(buf[pos + 4 : pos + 8].tobytes(), order),
        )

    def _stop_short(self, buf: np.ndarray, pos: int, base: int, end: int, blen: int | None = None) -> None:
        rec = int(self.st[pcapng.ST_RECORD])
        left = end - pos
        if blen is None and left >= 8:
            blen = self._block_desc(buf, pos)[1]
        need = f"needs {blen} bytes" if blen is not None else "needs an 8-byte block header"
        self.ends_inside(
            base + pos,
            rec,
            left,
            f"{self.path}: block at byte {base + pos} (packet record {rec}) {need}, {left} remain; "
            f"capture ends mid-block, on_error='skip' keeps the {rec} packet records before it",
        )

    def _corrupt(
        self, buf: np.ndarray, pos: int, base: int, end: int, code: int, blen: int | None = None
    ) -> None:
        rec = int(self.st[pcapng.ST_RECORD])
        btype, blen0 = self._block_desc(buf, pos)
        blen = blen0 if blen is None else blen
        if code == pcapng.BAD_TRAILER:
            order = self._order()
            trailer = int.from_bytes(buf[pos + blen - 4 : pos + blen].tobytes(), order)
            reason = "block_trailer_mismatch"
            what = f"block type 0x{btype:08x} at byte {base + pos} says length {blen} at its start and {trailer} at its end"
        else:
            reason = "block_length_invalid"
            what = (
                f"block type 0x{btype:08x} at byte {base + pos} has length {blen} "
                f"(expected a multiple of 4 from 12 to {pcapng.MAX_BLOCK})"
            )
        self.skipped[reason] += 1
        self.stop(
            reason,
            base + pos,
            rec,
            end - pos,
            f"{self.path}: {what}; the block framing is broken so the rest of the file ({end - pos} bytes) "
            f"cannot be trusted, on_error='skip' keeps the {rec} packet records before it",
            CorruptBlock,
        )

    def _damage(self, buf: np.ndarray, pos: int, base: int) -> None:
        order = self._order()
        btype, blen = self._block_desc(buf, pos)
        rec = int(self.st[pcapng.ST_RECORD])
        raw = buf[pos + 8 : pos + 28].tobytes().ljust(20, b"\0")
        if btype == pcapng.EPB:
            local, caplen = int.from_bytes(raw[0:4], order), int.from_bytes(raw[12:16], order)
        elif btype == pcapng.PB:
            local, caplen = int.from_bytes(raw[0:2], order), int.from_bytes(raw[12:16], order)
        else:
            local, caplen = 0, 0
        n_if = int(self.st[pcapng.ST_IF_COUNT])
        if local >= n_if:
            what = (
                f"names interface {local} but its section has {n_if} interface description blocks before it"
            )
        elif caplen > pcapng.MAX_CAPLEN:
            what = f"claims caplen {caplen} (> {pcapng.MAX_CAPLEN})"
        else:
            what = f"claims caplen {caplen} but the block is only {blen} bytes long"
        raise CorruptBlock(
            f"{self.path}: packet record {rec} at byte {base + pos} {what}; on_error='skip' skips this block",
            path=self.path,
            record=rec,
            offset=base + pos,
        )

    def timestamps(self, ts_raw: np.ndarray, iface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 ns for raw timestamps (own interface's resolution and offset), and where int64 overflows."""
        ts = np.empty(ts_raw.shape[0], np.int64)
        over = np.zeros(ts_raw.shape[0], bool)
        if not ts_raw.shape[0]:
            return ts, over
        ids = np.unique(iface)
        for i in ids.tolist():
            sel = iface == i if len(ids) > 1 else slice(None)
            ts[sel], over[sel] = pcapng.units_to_ns(ts_raw[sel], self.tsresol[i], self.tsoffset[i])
        return ts, over


def _walker(op: Opened, on_error: OnError) -> _Walker:
    return (_PcapWalker if op.format == "pcap" else _PcapngWalker)(op.path, on_error)


def _batch(walker: _Walker, buf: np.ndarray, base: int, parts: _Parts) -> RecordBatch:
    """Columns of one walk turned into a RecordBatch with the accounting identity filled in."""
    n = parts.n
    iface_lt = np.array([i.linktype for i in walker.interfaces] or [0], dtype=np.uint16)
    offset, caplen = parts.joined("offset", np.int64), parts.joined("caplen", np.uint32)
    wirelen, record = parts.joined("wirelen", np.uint32), parts.joined("record", np.int64)
    if isinstance(walker, _PcapngWalker):
        iface = parts.joined("iface", np.uint32)
        ts, over = walker.timestamps(parts.joined("ts_raw", np.uint64), iface)
        flags = parts.joined("flags", np.uint32)
        if over.any():  # never wrap: a timestamp beyond int64 nanoseconds is a counted skip
            k = int(over.sum())
            first = int(record[over][0])
            walker.skipped["timestamp_overflow"] += k
            walker.notes.append(
                f"{walker.path}: {k} records (first: record {first}) have a timestamp (with its interface's "
                "if_tsoffset) beyond the int64 nanosecond range (years 1677-2262); skipped, not wrapped"
            )
            keep = ~over
            offset, caplen, wirelen, record = offset[keep], caplen[keep], wirelen[keep], record[keep]
            iface, ts, flags = iface[keep], ts[keep], flags[keep]
            n -= k
    else:
        iface = np.zeros(n, np.uint32)
        ts = parts.joined("ts_ns", np.int64)
        flags = None
    skipped = {k: int(v) for k, v in sorted(walker.skipped.items()) if v}
    notes = list(walker.notes)
    snaplens = np.array([i.snaplen or _U32_CAP for i in walker.interfaces] or [_U32_CAP], dtype=np.uint32)
    one = len(iface_lt) == 1  # one interface (every classic pcap): no per-record lookups
    over = int(np.count_nonzero(caplen > (snaplens[0] if one else snaplens[iface]))) if n else 0
    if over:  # the bytes are there and the framing holds: keep them, as tshark does, but say so
        notes.append(
            f"{walker.path}: {over} records in this batch have caplen > their interface's snaplen (kept)"
        )
    return RecordBatch(
        path=walker.path,
        format=walker.format,
        data=buf,
        offset=offset,
        caplen=caplen,
        wirelen=wirelen,
        ts_ns=ts,
        iface=iface,
        linktype=np.full(n, iface_lt[0], np.uint16) if one else iface_lt[iface],
        record=record,
        flags=flags,
        interfaces=list(walker.interfaces),
        skipped=skipped,
        records_total=n + sum(skipped.values()),
        data_base=base,
        stopped_at=walker.stopped_at,
        notes=notes,
    )


def _header_len(fmt: str) -> int:
    return pcap.FILE_HEADER_LEN if fmt == "pcap" else 0


def _start(walker: _Walker, buf: np.ndarray, op: Opened, stream: Decompressed | None) -> int:
    """Parse what precedes the records; a file header lost to compressed damage says so."""
    if len(buf) < _header_len(op.format):
        d = stream.damage if stream is not None else None
        if d is not None:
            exc = CorruptBlock if d.reason == "compressed_data_corrupt" else TruncatedRecord
            raise exc(
                d.message + "; not even the capture's file header could be read",
                path=op.path,
                offset=d.offset,
            )
        pcap.parse_header(op.path, buf.tobytes())  # raises TruncatedRecord
    return walker.start(buf)


def read_records(path: str | os.PathLike, *, on_error: OnError = "skip", unmap: bool = False) -> RecordBatch:
    """All records of a pcap/pcapng capture (gzip/xz/zstd or not) as one batch; ``data`` is memory-mapped.

    ``on_error="skip"`` counts damaged records in ``skipped`` and stops (``stopped_at``) where the
    rest cannot be trusted; ``"raise"`` raises TruncatedRecord/CorruptBlock there instead. A
    compressed file is decompressed into an unlinked temporary file first (bounded memory).
    ``unmap=True`` drops the file's pages from the process's RSS after the walk (they stay in the page
    cache and ``data`` stays readable, mapped again where touched): for readers of several files.
    """
    from pcaptools.io import split
    from pcaptools.io.threads import usable_cores

    op = open_capture(path)
    walker = _walker(op, on_error)
    cores = usable_cores()
    ranged = cores > 1 and (op.compression is not None or op.file_size >= split.SPLIT_MIN_BYTES)
    buf, stream = whole_buffer(op, populate=not ranged or op.compression is not None)
    walker.cut = stream.damage if stream is not None else None
    pos = _start(walker, buf, op, stream)
    walker.begin_batch()
    parts = _Parts(())
    collected: list[_Parts] = []
    walked_to = 0  # bytes before this are unmapped already (unmap=True)
    status = "full"
    if ranged and len(buf) >= split.SPLIT_MIN_BYTES:  # a large capture: its records walked on every core first
        if isinstance(walker, _PcapngWalker):  # the section header and interfaces first, up to the first packet
            parts, pos, status = walker.step(buf, pos, 0, True, 1)
            collected.append(parts)
            if status == "full" and not walker.finished:
                parts, pos = _ranged_blocks(walker, buf, pos, cores, unmap)
                collected.append(parts)
        else:
            parts, pos = _ranged_prefix(walker, buf, pos, cores, unmap)
            collected.append(parts)
        walked_to = pos if unmap else 0
    while status == "full" and not walker.finished:  # the sequential walk (on from the ranges)
        parts, pos, status = walker.step(buf, pos, 0, True, _CHUNK)
        collected.append(parts)
    walker.data_ended(stream, len(buf), walker.next_record())
    if unmap:
        split.release(buf, walked_to)
    merged = _Parts(tuple(collected[0].cols))
    for p in collected:
        for name, arrs in p.cols.items():
            merged.cols[name].extend(arrs)
        merged.n += p.n
    return _batch(walker, buf, 0, merged)


def _ranged_prefix(walker: _PcapWalker, buf: np.ndarray, pos: int, cores: int, unmap: bool) -> tuple[_Parts, int]:
    """The records :func:`pcaptools.io.split.walk_ranges` found from ``pos`` as the walk's first parts, and where the
    walker takes over after them, as if it had walked them itself."""
    from pcaptools.io import split

    (off, cap, wire, ts), resume = split.walk_ranges(buf, pos, walker.state, cores, unmap=unmap)
    parts = _Parts(("offset", "caplen", "wirelen", "ts_ns", "record"))
    k = len(off)
    parts.add({"offset": off, "caplen": cap, "wirelen": wire, "ts_ns": ts, "record": np.arange(k, dtype=np.int64)}, k)
    walker.record = k
    walker.saw(k, resume - pos)
    if k:
        walker.last_sec = int(ts[-1] // 1_000_000_000)
    return parts, resume


def _ranged_blocks(walker: _PcapngWalker, buf: np.ndarray, pos: int, cores: int, unmap: bool) -> tuple[_Parts, int]:
    """The packet blocks :func:`pcaptools.io.split_pcapng.walk_ranges` found from ``pos`` as the walk's next parts,
    their skips counted and the walker's state moved past them, as if it had walked them; and where it goes on."""
    from pcaptools.io import split_pcapng

    cols, counters, records, resume = split_pcapng.walk_ranges(buf, pos, walker.st, cores,
                                                               raise_=walker.on_error == "raise", unmap=unmap)  # fmt: skip
    parts = _Parts(("offset", "caplen", "wirelen", "ts_raw", "iface", "flags", "record"))
    parts.add(dict(zip(parts.cols, cols, strict=True)), len(cols[0]))
    walker.st[pcapng.ST_RECORD] += records
    for reason, c in zip(pcapng.SKIP_REASONS, counters.tolist(), strict=True):
        if c:
            walker.skipped[reason] += c
    walker.saw(len(cols[0]), resume - pos)
    return parts, resume


def iter_records(
    path: str | os.PathLike,
    *,
    batch_records: int = 1 << 20,
    batch_bytes: int = 16 << 20,
    on_error: OnError = "skip",
    reuse_windows: bool = False,
) -> Iterator[RecordBatch]:
    """Batches of at most ``batch_records`` records from windows of about ``batch_bytes`` bytes.

    Memory stays bounded by about two windows: each window is read (or decompressed) into its own
    buffer and a record cut by the window's end is carried over to the next one. A batch's
    ``data`` is its own window; ``data_base`` is the window's offset in the (decompressed) file.
    ``reuse_windows=True`` reads into two buffers in turn instead of a fresh one per window (no new
    pages to fault in): a batch's ``data`` is then valid only until the next batch is taken, for
    consumers that keep nothing of it (``iter_packets``).
    """
    if batch_records < 1 or batch_bytes < 1:
        raise PcapError(f"batch_records and batch_bytes must be >= 1, got {batch_records} and {batch_bytes}")
    op = open_capture(path)
    walker = _walker(op, on_error)
    reader = WindowReader(op, reuse=reuse_windows)
    try:
        yield from _stream(walker, reader, batch_records, batch_bytes)
    finally:
        reader.close()


def _stream(
    walker: _Walker, reader: WindowReader, batch_records: int, batch_bytes: int
) -> Iterator[RecordBatch]:
    """The windowed walk behind :func:`iter_records`: refill, walk, yield, carry the cut record over."""
    op = reader.op
    buf, eof = reader.fill(np.empty(0, np.uint8), max(batch_bytes, _header_len(op.format)))
    stream = reader.stream
    pos = _start(walker, buf, op, stream if eof else None)
    base = 0
    while True:
        walker.begin_batch()
        if eof and stream is not None:
            walker.cut = stream.damage
        parts, pos, status = walker.step(buf, pos, base, eof, batch_records)
        finished = walker.finished or status == "done"
        if finished:
            walker.data_ended(stream, base + pos, walker.next_record())
        if parts.n or walker.skipped or finished:
            yield _batch(walker, buf, base, parts)
        if finished:
            return
        if status == "full":
            continue
        # "more": keep the unread tail (a record cut by the window's end) and read a new window
        carry = buf[pos:]
        base += pos
        buf, eof = reader.fill(carry, max(batch_bytes, 2 * len(carry) + 1))
        pos = 0
