"""Open a capture: tell pcap, pcapng and gzip apart by magic number, and hand out read-only byte buffers.

Uncompressed files are memory-mapped whole (for :func:`read_records`) or read in windows (for the
streaming iterator); gzip files are decompressed, whole or in windows. The name of the file is never
consulted, only its first bytes.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pcaptools.errors import BadMagic, CorruptBlock, TruncatedRecord

PCAP_MAGICS: dict[bytes, tuple[str, bool, int]] = {
    # file bytes -> (byte order, nanosecond timestamps, record header length)
    b"\xd4\xc3\xb2\xa1": ("<", False, 16),
    b"\xa1\xb2\xc3\xd4": (">", False, 16),
    b"\x4d\x3c\xb2\xa1": ("<", True, 16),
    b"\xa1\xb2\x3c\x4d": (">", True, 16),
    b"\x34\xcd\xb2\xa1": ("<", False, 24),  # Kuznetsov's patched libpcap: 8 more bytes per record
    b"\xa1\xb2\xcd\x34": (">", False, 24),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
_HINTS = {
    b"\x28\xb5\x2f\xfd": "it looks zstd-compressed; decompress it first (zstd -d)",
    b"BZh": "it looks bzip2-compressed; decompress it first (bunzip2)",
    b"\xfd7zXZ": "it looks xz-compressed; decompress it first (xz -d)",
    b"PK\x03\x04": "it looks like a zip archive; unzip it first",
}


@dataclass
class Opened:
    """What :func:`open_capture` found: the format, whether gzip was peeled off, and the file size."""

    path: str
    format: str  # "pcap" | "pcapng"
    gzip: bool
    file_size: int


def _check_start(path: str, head: bytes, *, decompressed: bool) -> str:
    """Format name for the first bytes of a capture, or BadMagic saying what was found instead."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    what = "its gzip content" if decompressed else path
    if not head:
        raise BadMagic(
            f"{path}: {'gzip content' if decompressed else 'file'} is empty (0 bytes); "
            "expected a pcap or pcapng capture",
            path=path,
            offset=0,
        )
    if len(head) < 4:
        raise TruncatedRecord(
            f"{path}: only {len(head)} bytes, too short for a capture file header; "
            "the file was cut off while being written",
            path=path,
            offset=0,
        )
    hint = next((h for m, h in _HINTS.items() if head.startswith(m)), "")
    raise BadMagic(
        f"{what if decompressed else path} is not a pcap or pcapng file (starts with 0x{head[:4].hex()}); "
        + (hint or "expected a1b2c3d4/a1b23c4d (pcap), 0a0d0d0a (pcapng) or gzip 1f8b"),
        path=path,
        offset=0,
    )


def _gunzip_chunks(path: str, f, chunk: int = 1 << 22) -> Iterator[bytes]:
    """Decompressed pieces of a (possibly multi-member) gzip stream; CorruptBlock/TruncatedRecord on damage."""
    d = zlib.decompressobj(wbits=31)
    consumed = 0
    while True:
        raw = f.read(chunk)
        if not raw:
            break
        while raw:
            try:
                out = d.decompress(raw)
            except zlib.error as exc:
                raise CorruptBlock(
                    f"{path}: gzip data is corrupt near compressed byte {consumed} ({exc}); "
                    "try `gzip -t` to check the file, or recompress it from the original capture",
                    path=path,
                    offset=consumed,
                ) from None
            if out:
                yield out
            consumed += len(raw) - len(d.unused_data)
            if d.eof:  # next gzip member (files joined with cat), or trailing garbage
                raw = d.unused_data
                d = zlib.decompressobj(wbits=31)
                if raw and not raw.startswith(GZIP_MAGIC):
                    return  # trailing padding after the last member: gzip(1) ignores it too
            else:
                raw = b""
    tail = d.flush()
    if tail:
        yield tail
    if not d.eof and consumed:
        raise TruncatedRecord(
            f"{path}: gzip stream ends early after {consumed} compressed bytes; "
            "the file was cut off, records decompressed so far are readable with iter_records",
            path=path,
            offset=consumed,
        )


def open_capture(path: str | os.PathLike) -> Opened:
    """Detect the format of ``path`` from its magic numbers (looking inside gzip)."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == GZIP_MAGIC:
            f.seek(0)
            inner = b""
            try:
                for piece in _gunzip_chunks(path, f, chunk=1 << 12):
                    inner += piece
                    if len(inner) >= 4:
                        break
            except TruncatedRecord:
                pass
            return Opened(path, _check_start(path, inner[:4], decompressed=True), True, size)
    return Opened(path, _check_start(path, head, decompressed=False), False, size)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def whole_buffer(op: Opened) -> tuple[np.ndarray, str | None]:
    """The whole (decompressed) file as a read-only uint8 array, and a note if gzip was cut short.

    Uncompressed files are memory-mapped, so the array costs no RAM until pages are touched.
    """
    if not op.gzip:
        with open(op.path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(mm, dtype=np.uint8), None
    pieces: list[bytes] = []
    note = None
    with open(op.path, "rb") as f:
        try:
            for piece in _gunzip_chunks(op.path, f):
                pieces.append(piece)
        except TruncatedRecord as exc:
            note = str(exc)
    return _readonly(np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()), note


class WindowReader:
    """Reads the (decompressed) file in windows for bounded-memory streaming: one fresh buffer per window."""

    def __init__(self, op: Opened) -> None:
        self.op = op
        self.file = open(op.path, "rb")  # noqa: SIM115 - closed by close()
        self.gz = _gunzip_chunks(op.path, self.file) if op.gzip else None
        self.leftover = b""
        self.error: TruncatedRecord | None = None  # a gzip stream cut short: what came before is usable

    def fill(self, carry: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
        """Read-only buffer of ``carry`` followed by new bytes up to ``size`` in all; True once at the end."""
        buf = np.empty(max(size, len(carry)), np.uint8)
        buf[: len(carry)] = carry
        have = len(carry)
        eof = False
        view = memoryview(buf)
        while have < len(buf):
            if self.gz is None:
                k = self.file.readinto(view[have:])
                if not k:
                    eof = True
                    break
                have += k
                continue
            if not self.leftover:
                try:
                    self.leftover = next(self.gz)
                except StopIteration:
                    eof = True
                    break
                except TruncatedRecord as exc:
                    self.error, eof = exc, True
                    break
            take = min(len(self.leftover), len(buf) - have)
            buf[have : have + take] = np.frombuffer(self.leftover, np.uint8, take)
            self.leftover = self.leftover[take:]
            have += take
        return _readonly(buf[:have]), eof

    def close(self) -> None:
        self.file.close()
