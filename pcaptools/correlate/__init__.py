"""Cross-capture correlation: the same packet at many capture points, through NAT and tunnels, on one clock.

``CaptureSet`` loads and labels captures; ``correlate`` matches packets, estimates clock offsets and
returns a ``Correlation`` (hops, offsets, hop latency, losses); ``write_merged`` writes a CaptureSet as one pcapng
(``pcaptools.correlate.merge`` is its module; ``pcaptools.merge_captures`` also takes paths). Names load on first use; the package itself is callable
(``pcaptools.correlate(capture_set)`` is ``pcaptools.correlate.correlate(capture_set)``).
"""

from __future__ import annotations

from pcaptools._callable import lazy_getattr, make_callable

__all__ = ["CaptureSet", "CapturePoint", "Correlation", "correlate", "write_merged"]

_EXPORTS = {
    "CaptureSet": ("pcaptools.correlate.capture_set", "CaptureSet"),
    "CapturePoint": ("pcaptools.correlate.capture_set", "CapturePoint"),
    "Correlation": ("pcaptools.correlate.api", "Correlation"),
    "correlate": ("pcaptools.correlate.api", "correlate"),
    "write_merged": ("pcaptools.correlate.merge", "merge"),  # a CaptureSet only; pcaptools.merge_captures takes paths too
    "merge": ("pcaptools.correlate.merge", None),
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)  # names imported on first use


make_callable(__name__, "correlate")
