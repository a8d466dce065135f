"""Cross-capture correlation: the same packet at many capture points, through NAT and tunnels, on one clock.

``CaptureSet`` loads and labels captures; ``correlate`` matches packets, estimates clock offsets and
returns a ``Correlation`` (hops, offsets, hop latency, losses); ``merge`` writes one pcapng.
"""

from __future__ import annotations

from pcaptools.correlate.capture_set import CapturePoint, CaptureSet

__all__ = ["CaptureSet", "CapturePoint", "Correlation", "correlate", "merge"]


def correlate(capture_set: CaptureSet, **kw):
    """See :func:`pcaptools.correlate.api.correlate` (imported on first use: it compiles the matcher)."""
    from pcaptools.correlate.api import correlate as _correlate

    return _correlate(capture_set, **kw)


def merge(capture_set: CaptureSet, out, **kw) -> int:
    """See :func:`pcaptools.correlate.merge.merge`."""
    from pcaptools.correlate.merge import merge as _merge

    return _merge(capture_set, out, **kw)


def __getattr__(name: str):
    if name == "Correlation":
        from pcaptools.correlate.api import Correlation

        return Correlation
    raise AttributeError(f"module 'pcaptools.correlate' has no attribute {name!r}")
