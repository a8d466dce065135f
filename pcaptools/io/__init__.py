"""Capture readers: pcap/pcapng/gzip bytes -> :class:`~pcaptools.io.records.RecordBatch` columns.

Exports are loaded lazily so that importing the record contract does not compile the walkers.
"""

from __future__ import annotations

__all__ = ["read_records", "iter_records", "summarize"]


def __getattr__(name: str):
    if name in ("read_records", "iter_records"):
        from pcaptools.io import reader

        return getattr(reader, name)
    if name == "summarize":
        from pcaptools.io.summary import summarize

        return summarize
    raise AttributeError(f"module 'pcaptools.io' has no attribute {name!r}")
