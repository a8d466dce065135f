"""One tree of errors, grouped by cause. Each says what was expected, what was found and what to try."""

from __future__ import annotations


class PcapError(Exception):
    """Root of every error pcaptools raises on purpose.

    ``path``, ``record`` (0-based record number) and ``offset`` (byte offset in the file) are set
    where they are known, so a caller can point the user at the exact place.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.record = record
        self.offset = offset


class FormatError(PcapError):
    """The file is not a capture, or its container structure is broken."""


class BadMagic(FormatError):
    """The file does not start with a pcap or pcapng magic number."""


class EmptyCapture(BadMagic):
    """The file (or its compressed content) holds no byte at all."""


class TruncatedRecord(FormatError):
    """A record or block runs past the end of the file."""


class CorruptBlock(FormatError):
    """A block's lengths or fields are inconsistent, and the rest of the file cannot be trusted."""


class NotAFile(FormatError):
    """The path is a FIFO, socket, device or directory, not a capture file (reading it could block forever)."""


class DecodeError(PcapError):
    """Packets could not be decoded (bad options, unsupported request)."""


class CorrelationError(PcapError):
    """Captures could not be correlated (no common packets, bad capture set)."""


class InventoryError(PcapError):
    """A Kubernetes inventory or manifest file is missing, malformed or inconsistent."""


class LabError(PcapError):
    """The emulated cluster lab could not be built, driven or torn down."""
