"""Decompress gzip, xz and zstd captures as a stream of bounded pieces, naming damage by its compressed byte.

Each member (gzip), stream (xz) or frame (zstd) is decompressed in input chunks with an output
cap per call, so memory stays bounded however well the data compresses. Where the compressed
data turns out to be corrupt, the member is decoded again up to the failing chunk and that chunk
byte by byte, so every byte the codec could produce before the damage is handed out, and the
damage is named with the compressed byte where the codec gave up. gzip trailers (CRC-32, length)
are checked here, not by zlib: a bad trailer alone loses nothing and becomes a note, as tshark
reads such files. xz checks its own blocks (a bad check is damage at the end of its block); zstd
needs the optional ``zstandard`` package.
"""

from __future__ import annotations

import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pcaptools.errors import FormatError

MAGICS = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
"""Leading bytes -> compression name (the file name is never consulted)."""

PIECE = 1 << 20  # most decompressed bytes one codec call may return
XZ_MEMLIMIT = 1 << 28  # xz -9 needs 65 MiB; a larger dictionary is a hostile or broken header


def compression_of(head: bytes) -> str | None:
    """Compression name for the first bytes of a file, or None when they are no compressed stream we read."""
    return next((name for magic, name in MAGICS.items() if head.startswith(magic)), None)


@dataclass(frozen=True)
class Damage:
    """Why decompression ended early: ``reason`` is a skip reason, ``offset`` the compressed byte."""

    reason: str  # "compressed_data_corrupt" | "compressed_stream_truncated"
    offset: int
    message: str


@dataclass
class _Codec:
    """What the member loop needs of a codec: a fresh decoder, a bounded feed, end-of-member and leftovers."""

    new: Callable[[], object]
    feed: Callable[[object, bytes], Iterator[bytes]]
    eof: Callable[[object], bool]
    unused: Callable[[object], bytes]
    errors: tuple[type[BaseException], ...]
    chunk: int


def _zlib_feed(d, data: bytes) -> Iterator[bytes]:
    out = d.decompress(data, PIECE)
    yield out
    while not d.eof and (len(out) == PIECE or d.unconsumed_tail):  # output capped: more is pending
        out = d.decompress(d.unconsumed_tail, PIECE)
        yield out


def _lzma_feed(d, data: bytes) -> Iterator[bytes]:
    out = d.decompress(data, PIECE)
    yield out
    while not d.eof and not d.needs_input:
        yield d.decompress(b"", PIECE)


def _zstd_feed(d, data: bytes) -> Iterator[bytes]:
    # zstandard's decompressobj has no output cap; 512-byte inputs bound one call to 16 MiB (RLE blocks)
    for i in range(0, len(data), 512):
        if d.eof:
            break
        yield d.decompress(data[i : i + 512])


def _zstd_codec(path: str) -> _Codec:
    try:
        import zstandard
    except ImportError:
        raise FormatError(
            f"{path} is zstd-compressed and the optional package zstandard is not installed; "
            "install it (pip install zstandard) or decompress the file first (zstd -d)",
            path=path,
            offset=0,
        ) from None
    return _Codec(
        new=lambda: zstandard.ZstdDecompressor().decompressobj(),
        feed=_zstd_feed,
        eof=lambda d: d.eof,
        unused=lambda d: d.unused_data,
        errors=(zstandard.ZstdError,),
        chunk=1 << 16,
    )


def _codec(kind: str, path: str) -> _Codec:
    if kind == "gzip":
        return _Codec(
            new=lambda: zlib.decompressobj(-15),  # raw deflate: the gzip header and trailer are ours
            feed=_zlib_feed,
            eof=lambda d: d.eof,
            unused=lambda d: d.unused_data,
            errors=(zlib.error,),
            chunk=1 << 16,
        )
    if kind == "xz":
        return _Codec(
            new=lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT),
            feed=_lzma_feed,
            eof=lambda d: d.eof,
            unused=lambda d: d.unused_data,
            errors=(lzma.LZMAError,),
            chunk=1 << 16,
        )
    return _zstd_codec(path)


def _gzip_header_len(buf: bytes) -> int | str:
    """Length of the gzip member header at the start of ``buf`` (RFC 1952), or why it is not one."""
    if len(buf) < 10:
        return "ends inside the 10-byte gzip header"
    if buf[:2] != b"\x1f\x8b" or buf[2] != 8:
        return f"has no gzip member header (magic 1f8b, method 8) there, found method {buf[2]}"
    flg = buf[3]
    p = 10
    if flg & 4:  # FEXTRA
        if len(buf) < p + 2:
            return "ends inside the gzip header's extra field"
        p += 2 + int.from_bytes(buf[p : p + 2], "little")
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flg & bit:
            z = buf.find(b"\0", p)
            if z < 0:
                return "has a gzip header name/comment with no end"
            p = z + 1
    if flg & 2:  # FHCRC
        p += 2
    if p > len(buf):
        return "ends inside the gzip header"
    return p


class Decompressed:
    """Decompressed pieces of one compressed file; ``damage`` and ``notes`` are final once iteration ends.

    ``damage`` is None when every member decoded to its end; a bad gzip trailer, trailing bytes
    after the last member or a missing trailer are ``notes`` (nothing was lost).
    """

    def __init__(self, f: BinaryIO, path: str, kind: str) -> None:
        self.f, self.path, self.kind = f, path, kind
        self.codec = _codec(kind, path)
        self.size = os.fstat(f.fileno()).st_size
        self.damage: Damage | None = None
        self.notes: list[str] = []
        self.produced = 0  # decompressed bytes handed out

    def __iter__(self) -> Iterator[bytes]:
        return self._gzip() if self.kind == "gzip" else self._frames()

    def _read_at(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)

    def _broken(self, reason: str, offset: int, what: str) -> None:
        tool = {"gzip": "gzip -t", "xz": "xz -t", "zstd": "zstd -t"}[self.kind]
        self.damage = Damage(
            reason,
            offset,
            f"{self.path}: {self.kind} data {what} at compressed byte {offset} of {self.size}, after "
            f"{self.produced} decompressed bytes; the records before it are kept and the rest is unreadable "
            f"(`{tool}` confirms the damage; recompress from the original capture if you have it)",
        )

    def _member(self, start: int, crc: list[int] | None = None) -> Iterator[bytes]:
        """Decompress one member/stream/frame from compressed byte ``start``; returns where it ended (or None)."""
        c = self.codec
        d = c.new()
        pos = start
        emitted = 0
        while True:
            raw = self._read_at(pos, c.chunk)
            if not raw:
                self._broken("compressed_stream_truncated", pos, "ends before its end-of-stream marker")
                return None
            try:
                for out in c.feed(d, raw):
                    if out:
                        emitted += len(out)
                        self.produced += len(out)
                        if crc is not None:
                            crc[0] = zlib.crc32(out, crc[0])
                        yield out
            except c.errors as exc:
                return (yield from self._replay(start, pos, emitted, exc))
            if c.eof(d):
                return pos + len(raw) - len(c.unused(d))
            pos += len(raw)

    def _replay(self, start: int, fail_pos: int, emitted: int, exc: BaseException) -> Iterator[bytes]:
        """Decode the member again up to the failing chunk, then byte by byte: hand out what precedes the damage.

        Returns where the member ended when the damage was only its content checksum (zstd), else None.
        """
        c = self.codec
        d = c.new()
        skip = emitted
        pos = start
        try:
            while pos < fail_pos:  # these chunks decoded before; their output was handed out already
                raw = self._read_at(pos, min(c.chunk, fail_pos - pos))
                for out in c.feed(d, raw):
                    skip -= len(out)
                pos += len(raw)
            raw = self._read_at(fail_pos, c.chunk)
            for i in range(len(raw)):
                try:
                    outs = list(c.feed(d, raw[i : i + 1]))
                except c.errors as e:
                    if self.kind == "zstd" and "checksum" in str(e):  # the frame's last 4 bytes: nothing lost
                        self.notes.append(
                            f"{self.path}: zstd frame content checksum ending at compressed byte {fail_pos + i} "
                            "does not match; every record was kept, but its bytes may be damaged"
                        )
                        return fail_pos + i + 1
                    self._broken("compressed_data_corrupt", fail_pos + i, f"is corrupt ({e})")
                    return None
                for out in outs:
                    if skip >= len(out):
                        skip -= len(out)
                        continue
                    out = out[max(skip, 0) :]
                    skip = 0
                    self.produced += len(out)
                    yield out
        except c.errors:
            pass
        self._broken("compressed_data_corrupt", fail_pos, f"is corrupt ({exc})")
        return None

    def _gzip(self) -> Iterator[bytes]:
        pos, member = 0, 0
        while True:
            head = self._read_at(pos, 1 << 17)
            hlen = _gzip_header_len(head)
            if isinstance(hlen, str):
                self._broken(
                    "compressed_stream_truncated" if len(head) < 10 else "compressed_data_corrupt",
                    pos,
                    f"of member {member} {hlen}",
                )
                return
            crc = [0]
            before = self.produced
            end = yield from self._member(pos + hlen, crc)
            if end is None:
                return
            trailer = self._read_at(end, 8)
            size = self.produced - before
            good = True
            if len(trailer) < 8:
                self.notes.append(
                    f"{self.path}: gzip member {member} has no complete 8-byte trailer at compressed byte {end} "
                    "(file cut just after its data); all of its data was decompressed"
                )
                return
            want_crc, want_size = int.from_bytes(trailer[:4], "little"), int.from_bytes(trailer[4:], "little")
            if (want_crc, want_size) != (crc[0], size & 0xFFFFFFFF):
                good = False
                self.notes.append(
                    f"{self.path}: gzip member {member} trailer at compressed byte {end} says CRC-32 "
                    f"{want_crc:08x} and {want_size} bytes, the data gave {crc[0]:08x} and {size & 0xFFFFFFFF}; "
                    "every record was kept (as tshark does), but its bytes may be damaged"
                )
            pos = end + 8
            nxt = self._read_at(pos, 2)
            if not nxt:
                return
            if nxt == b"\x1f\x8b":
                member += 1
                continue
            if not good:  # the deflate stream ended early on damage: what follows is the lost rest
                self._broken("compressed_data_corrupt", end, "ends early with a wrong trailer")
                return
            self.notes.append(
                f"{self.path}: {self.size - pos} bytes after the last gzip member (from compressed byte {pos}) "
                "are not gzip data and were ignored, as gzip does"
            )
            return

    def _frames(self) -> Iterator[bytes]:
        """xz streams or zstd frames, one after another (concatenated files, xz stream padding)."""
        pos = 0
        while True:
            end = yield from self._member(pos)
            if end is None:
                return
            pos = end
            while True:  # xz stream padding: zero bytes between streams
                z = self._read_at(pos, 1 << 12)
                n = len(z) - len(z.lstrip(b"\0"))
                pos += n
                if n < len(z) or not z:
                    break
            head = self._read_at(pos, 6)
            if not head:
                return
            if compression_of(head) == self.kind or (self.kind == "zstd" and _zstd_skippable(head)):
                continue
            self.notes.append(
                f"{self.path}: {self.size - pos} bytes after the last {self.kind} "
                f"{'frame' if self.kind == 'zstd' else 'stream'} (from compressed byte {pos}) were ignored"
            )
            return


def _zstd_skippable(head: bytes) -> bool:
    return len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and (head[0] & 0xF0) == 0x50
