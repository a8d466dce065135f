"""Vectorised packet decoder: RecordBatch -> packet table (schema.PACKET_COLUMNS).

Layer decoders live in ``link``, ``ip``, ``l4`` and ``tunnels/*``; ``registry`` holds every edge;
``walk`` takes each packet through all its layers in one numba pass; ``table`` assembles the DataFrame.
"""

from __future__ import annotations

__all__ = ["decode_batch"]


def __getattr__(name: str):
    if name == "decode_batch":
        from pcaptools.decode.api import decode_batch

        return decode_batch
    raise AttributeError(f"module 'pcaptools.decode' has no attribute {name!r}")
