"""Can a capture file be read at all? Its header (and, for pcapng, its Section Header Block) is checked and its first
record read, nothing more: what :mod:`pcaptools.k8s.discover` asks of a file found by walking a directory.

Link types are not judged here: a file whose records no decoder reads is still read (its rows counted as
``unknown_linktype``), exactly as when it is named on the command line.
"""

from __future__ import annotations

import os
import struct

from pcaptools.errors import BadMagic, CorruptBlock, EmptyCapture, NotAFile, TruncatedRecord

PROBE_REASONS = ("empty", "not_a_capture", "truncated_header", "corrupt_header", "permission_denied", "not_a_file")
"""Why no packet of a file can be read: a zero-length file (or compressed nothing), bytes that are no pcap/pcapng (also
inside gzip/xz/zstd), a file cut inside its file header or Section Header Block, a header (or first block length) that
is inconsistent or that the decompressor could not give back, a file the user may not read, a path that is no regular
file (a FIFO, a socket, a name the system refuses)."""

_SHB_MAX = 1 << 20  # a Section Header Block longer than this is taken as a bad length (real ones hold a few options)


def _content(path: str, n: int) -> bytes:
    """Up to ``n`` bytes of a capture file's content (decompressed when it is gzip/xz/zstd)."""
    from pcaptools.io.compressed import Decompressed, compression_of
    from pcaptools.io.sniff import open_regular

    with open_regular(path) as f:
        kind = compression_of(f.read(8))
        f.seek(0)
        if kind is None:
            return f.read(n)
        out = b""
        for piece in Decompressed(f, path, kind):
            out += piece
            if len(out) >= n:
                break
        return out[:n]


def _check_shb(path: str) -> None:
    """TruncatedRecord / CorruptBlock when a pcapng's first block (its Section Header Block) is cut or inconsistent."""
    head = _content(path, 12)
    if len(head) < 12:
        raise TruncatedRecord(f"its Section Header Block is cut after {len(head)} bytes (a pcapng starts with one of "
                              "at least 28); the file was cut off while being written", path=path, offset=0)  # fmt: skip
    order = {0x1A2B3C4D: "<", 0x4D3C2B1A: ">"}.get(struct.unpack("<I", head[8:12])[0])
    if order is None:
        raise CorruptBlock(f"its Section Header Block has no byte-order magic (found {head[8:12].hex()}, expected "
                           "1a2b3c4d either way round); not a pcapng dumpcap or tcpdump wrote", path=path, offset=8)  # fmt: skip
    length = struct.unpack(order + "I", head[4:8])[0]
    if length < 28 or length % 4 or length > _SHB_MAX:
        raise CorruptBlock(f"its Section Header Block says it is {length} bytes long (expected a multiple of 4 from 28 "
                           f"to {_SHB_MAX}); the file is damaged", path=path, offset=4)  # fmt: skip
    block = _content(path, length)
    if len(block) < length:
        raise TruncatedRecord(f"its Section Header Block needs {length} bytes, {len(block)} remain; the file was cut "
                              "off while being written", path=path, offset=len(block))  # fmt: skip
    if struct.unpack(order + "I", block[-4:])[0] != length:
        raise CorruptBlock(f"its Section Header Block ends with length {struct.unpack(order + 'I', block[-4:])[0]}, "
                           f"not the {length} it starts with; the file is damaged", path=path, offset=length - 4)  # fmt: skip


def _without_path(path: str, message: str) -> str:
    """The message of an error about ``path`` without the leading ``PATH: `` (the caller names the file once)."""
    if not message.startswith(path):
        return message
    rest = message[len(path):].lstrip(": ")
    return f"it {rest}" if rest.startswith("is ") else rest


def probe(path: str | os.PathLike) -> tuple[str, str] | None:
    """(reason of :data:`PROBE_REASONS`, what was found and what to try, without the path) when no packet of the capture
    file can be read at all, else None. Reads its header and first record (a few KiB). A name that is no UTF-8 text
    raises NotAFile: no answer could name that file (file names are text in tables, JSON and Parquet)."""
    from pcaptools.io import iter_records
    from pcaptools.io.sniff import check_name, open_capture

    p = os.fspath(path)
    check_name(p)
    try:
        if open_capture(p).format == "pcapng":
            _check_shb(p)
        next(iter_records(p, batch_records=1, batch_bytes=1 << 16), None)
    except EmptyCapture as exc:
        return "empty", _without_path(p, str(exc))
    except BadMagic as exc:
        return "not_a_capture", _without_path(p, str(exc))
    except TruncatedRecord as exc:
        return "truncated_header", _without_path(p, str(exc))
    except CorruptBlock as exc:
        return "corrupt_header", _without_path(p, str(exc))
    except NotAFile as exc:
        return "not_a_file", _without_path(p, str(exc))
    except PermissionError as exc:
        return "permission_denied", (f"permission denied ({exc.strerror or exc}); run as a user who may read it, or "
                                     "`chmod a+r` it")  # fmt: skip
    except OSError as exc:  # vanished since the walk, an I/O error, a name the system refuses
        return "not_a_file", f"cannot be read ({exc.strerror or exc}); expected a regular capture file"
    return None
