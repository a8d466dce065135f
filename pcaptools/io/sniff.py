"""Open a capture: tell pcap, pcapng and gzip/xz/zstd apart by magic number, and hand out read-only byte buffers.

Only regular files are opened (a FIFO, socket or device could block forever). Uncompressed files are
memory-mapped whole (for :func:`read_records`) or read in windows (for the streaming iterator);
compressed files are decompressed as a stream (:mod:`pcaptools.io.compressed`), into an unlinked
temporary file that is memory-mapped (whole) or into windows. The file name is never consulted,
and no error message quotes the file's bytes.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from pcaptools.errors import BadMagic, CorruptBlock, EmptyCapture, NotAFile, TruncatedRecord
from pcaptools.io.compressed import Decompressed, compression_of

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
_HINTS = {
    b"BZh": "it looks bzip2-compressed; decompress it first (bunzip2)",
    b"PK\x03\x04": "it looks like a zip archive; unzip it first",
}
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(path: str, mode: int) -> NotAFile | None:
    for test, what in _KINDS:
        if test(mode):
            if test is stat.S_ISDIR:
                return NotAFile(
                    f"{path} is a directory, not a capture file; pass the capture files inside it", path=path
                )
            return NotAFile(
                f"{path} is {what}, not a regular file; pcaptools reads capture files, not streams (it could "
                "wait forever): save the stream to a file first, e.g. `tcpdump -w capture.pcap` or "
                "`cat SOURCE > capture.pcap`",
                path=path,
            )
    return None


def check_name(path: str | os.PathLike) -> None:
    """NotAFile when ``path`` cannot be a file name pcaptools keeps as text (a NUL character, bytes that are no UTF-8)."""
    path = os.fspath(path)
    if "\0" in str(path):
        raise NotAFile(f"{path!r} is no file name (it contains a NUL character); expected a path to a file")
    try:  # file names become text in tables, point names, JSON and Parquet: bytes that are no UTF-8 cannot
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise NotAFile(f"{shown}: the file name is not UTF-8 text (byte {exc.object[exc.start]:#04x} at {exc.start}); "
                       "pcaptools keeps file names as text: rename the file (or link it) under a UTF-8 name") from None


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading, refusing FIFOs, sockets, devices and directories without blocking."""
    path = os.fspath(path)
    check_name(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, PermissionError):
        raise  # the CLI turns these into one line already
    except OSError as exc:  # a name too long, a loop of symbolic links, ...
        raise NotAFile(f"{path}: cannot be opened ({exc.strerror or exc}); expected a capture file") from None
    err = _not_regular(path, mode)
    if err is not None:
        raise err

    def opener(name: str, flags: int) -> int:
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open; fstat decides on the open file
        fd = os.open(name, flags | os.O_NONBLOCK)
        try:
            err = _not_regular(path, os.fstat(fd).st_mode)
            if err is not None:
                raise err
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # The file object owns the descriptor from the moment it exists: with the descriptor handed to ``os.fdopen`` and
    # closed here on an exception, a Ctrl-C/SIGTERM landing as ``fdopen`` returned closed it twice (once with the
    # dropped file object, once here: EBADF in place of the interrupt, or another thread's file closed). One landing
    # as ``os.open`` returns leaves that descriptor open until the interrupted process ends: never closed twice.
    return open(path, "rb", opener=opener)


COMPRESSED_RATIO = 8
"""A compressed capture (gzip, xz, zstd) is taken to hold this many times its file size in capture bytes
(what decoding it costs in time and memory grows with those)."""


@dataclass
class Opened:
    """What :func:`open_capture` found: the format, the compression peeled off (or None), and the file size."""

    path: str
    format: str  # "pcap" | "pcapng"
    compression: str | None  # "gzip" | "xz" | "zstd" | None
    file_size: int

    @property
    def gzip(self) -> bool:
        """True for any compressed file (the name predates xz and zstd support)."""
        return self.compression is not None

    @property
    def capture_bytes(self) -> int:
        """The capture bytes the file stands for: its size, :data:`COMPRESSED_RATIO` times that if compressed."""
        return self.file_size * (COMPRESSED_RATIO if self.compression is not None else 1)


def _check_start(path: str, head: bytes, *, decompressed: str | None) -> str:
    """Format name for the first bytes of a capture, or BadMagic saying what was expected (never the bytes)."""
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if not head:
        raise EmptyCapture(
            f"{path}: {decompressed + ' content' if decompressed else 'file'} is empty (0 bytes); "
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
    what = f"{path}: its {decompressed} content" if decompressed else path
    raise BadMagic(
        f"{what} is not a pcap or pcapng file (unknown magic number); "
        + (
            hint
            or "expected a capture written by tcpdump, dumpcap or Wireshark (pcap or pcapng, optionally "
            "gzip/xz/zstd-compressed); `capinfos FILE` or `file FILE` tells what it is"
        ),
        path=path,
        offset=0,
    )


def open_capture(path: str | os.PathLike) -> Opened:
    """Detect the format of ``path`` from its magic numbers (looking inside gzip, xz and zstd)."""
    path = os.fspath(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        kind = compression_of(head)
        if kind is None:
            return Opened(path, _check_start(path, head[:4], decompressed=None), None, size)
        f.seek(0)
        stream = Decompressed(f, path, kind)
        inner = b""
        for piece in stream:
            inner += piece
            if len(inner) >= 4:
                break
        if len(inner) < 4 and stream.damage is not None:
            exc = CorruptBlock if stream.damage.reason == "compressed_data_corrupt" else TruncatedRecord
            raise exc(
                stream.damage.message + "; not even the capture's file header could be read",
                path=path,
                offset=stream.damage.offset,
            )
        return Opened(path, _check_start(path, inner[:4], decompressed=kind), kind, size)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


POPULATE_MAX_BYTES = 4 << 30
"""Files up to this size have their page-table entries filled when mapped (MAP_POPULATE): one kernel call
instead of a page fault every 64 KiB, and the walks' prefetches then reach pages nobody touched yet.
A larger file is mapped lazily (populating it would read it all before the walk starts)."""


def _map(fd: int, populate: bool = True) -> mmap.mmap:
    """Read-only shared map of the whole file, populated when it is at most POPULATE_MAX_BYTES (and ``populate``)."""
    size = os.fstat(fd).st_size
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate and size <= POPULATE_MAX_BYTES else 0)
    return mmap.mmap(fd, 0, flags=flags, prot=mmap.PROT_READ)


def whole_buffer(op: Opened, *, populate: bool = True) -> tuple[np.ndarray, Decompressed | None]:
    """The whole (decompressed) file as a read-only uint8 array, and the decompression's outcome.

    Uncompressed files are memory-mapped, so the array costs no RAM until pages are touched; a
    compressed file is decompressed in bounded pieces into an unlinked temporary file (in TMPDIR)
    that is memory-mapped the same way. The outcome's ``damage`` and ``notes`` say where
    decompression stopped early and what it noticed. ``populate=False``: the caller fills the page
    tables itself (the ranged record walk does, one range per thread).
    """
    with open_regular(op.path) as f:
        if op.compression is None:
            if os.fstat(f.fileno()).st_size == 0:
                return _readonly(np.empty(0, np.uint8)), None
            return np.frombuffer(_map(f.fileno(), populate), dtype=np.uint8), None
        stream = Decompressed(f, op.path, op.compression)
        with tempfile.TemporaryFile(prefix="pcaptools-") as tmp:
            for piece in stream:
                tmp.write(piece)
            tmp.flush()
            if not stream.produced:
                return _readonly(np.empty(0, np.uint8)), stream
            mm = _map(tmp.fileno(), populate)
    return np.frombuffer(mm, dtype=np.uint8), stream


class WindowReader:
    """Reads the (decompressed) file in windows for bounded-memory streaming: one fresh buffer per window."""

    def __init__(self, op: Opened, *, reuse: bool = False) -> None:
        self.op = op
        self.reuse = reuse  # read into two buffers in turn (the one not holding the carried bytes)
        self.buffers: list[np.ndarray] = []
        self.file = open_regular(op.path)
        self.stream = Decompressed(self.file, op.path, op.compression) if op.compression else None
        self.pieces: Iterator[bytes] | None = iter(self.stream) if self.stream else None
        self.leftover = memoryview(b"")

    def fill(self, carry: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
        """Read-only buffer of ``carry`` followed by new bytes up to ``size`` in all; True once at the end."""
        buf = self._buffer(max(size, len(carry)), carry)
        buf[: len(carry)] = carry
        have = len(carry)
        eof = False
        view = memoryview(buf)
        while have < len(buf):
            if self.pieces is None:
                k = self.file.readinto(view[have:])
                if not k:
                    eof = True
                    break
                have += k
                continue
            if not self.leftover:
                try:
                    self.leftover = memoryview(next(self.pieces))
                except StopIteration:
                    eof = True
                    break
            take = min(len(self.leftover), len(buf) - have)
            buf[have : have + take] = np.frombuffer(self.leftover, np.uint8, take)
            self.leftover = self.leftover[take:]
            have += take
        return _readonly(buf[:have]), eof

    def _buffer(self, size: int, carry: np.ndarray) -> np.ndarray:
        """A writable buffer of ``size`` bytes that does not hold ``carry``: fresh, or the older of two."""
        if not self.reuse:
            return np.empty(size, np.uint8)
        free = [b for b in self.buffers if len(b) >= size and not np.shares_memory(b, carry)]
        if free:
            return free[0][:size]
        self.buffers = [b for b in self.buffers if np.shares_memory(b, carry)] + [np.empty(size, np.uint8)]
        return self.buffers[-1]

    def close(self) -> None:
        self.file.close()
