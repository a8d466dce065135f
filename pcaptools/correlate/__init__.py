"""Cross-capture correlation: the same packet at many capture points, through NAT and tunnels, on one clock.

``CaptureSet`` loads and labels captures; ``correlate`` matches packets, estimates clock offsets and
returns a ``Correlation`` (hops, offsets, hop latency, losses); ``merge_captures`` writes one pcapng
(``pcaptools.correlate.merge`` is its module). Names load on first use; the package itself is callable
(``pcaptools.correlate(capture_set)`` is ``pcaptools.correlate.correlate(capture_set)``).
"""

from __future__ import annotations

import importlib
from typing import Any

from pcaptools._callable import make_callable

__all__ = ["CaptureSet", "CapturePoint", "Correlation", "correlate", "merge_captures"]

_EXPORTS = {
    "CaptureSet": ("pcaptools.correlate.capture_set", "CaptureSet"),
    "CapturePoint": ("pcaptools.correlate.capture_set", "CapturePoint"),
    "Correlation": ("pcaptools.correlate.api", "Correlation"),
    "correlate": ("pcaptools.correlate.api", "correlate"),
    "merge_captures": ("pcaptools.correlate.merge", "merge"),
    "merge": ("pcaptools.correlate.merge", None),
}


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (the matcher compiles on first call)."""
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'pcaptools.correlate' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    return mod if attr is None else getattr(mod, attr)


make_callable(__name__, "correlate")
