"""pcaptools: decode, correlate and compare Kubernetes node captures, columnar and fast.

Every name is imported on first use (PEP 562), so ``import pcaptools`` loads neither pandas nor
numba. Functions have distinct names from modules: ``flow_table``, ``correlate_captures``,
``compare_captures`` and ``path_table``; the modules ``pcaptools.flows``, ``pcaptools.correlate``
and ``pcaptools.compare`` are also callable (``pcaptools.flows(packets)``) for older code, and
``pcaptools.paths`` is ``path_table``.
"""

from __future__ import annotations

from pcaptools._callable import lazy_getattr

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, str | None]] = {
    # reading and decoding
    "read_records": ("pcaptools.io.reader", "read_records"),
    "iter_records": ("pcaptools.io.reader", "iter_records"),
    "summarize": ("pcaptools.io.summary", "summarize"),
    "read_packets": ("pcaptools.packets", "read_packets"),
    "iter_packets": ("pcaptools.packets", "iter_packets"),
    "read_dataset": ("pcaptools.dataset", "read_dataset"),  # Parquet datasets: decode once, analyse many times
    "convert_captures": ("pcaptools.convert", "convert"),
    # flows
    "flow_table": ("pcaptools.flows", "flows"),
    "read_flows": ("pcaptools.flows", "read_flows"),
    "iter_flows": ("pcaptools.flow_stream", "iter_flows"),
    # correlation
    "CaptureSet": ("pcaptools.correlate.capture_set", "CaptureSet"),
    "CapturePoint": ("pcaptools.correlate.capture_set", "CapturePoint"),
    "Correlation": ("pcaptools.correlate.api", "Correlation"),
    "correlate_captures": ("pcaptools.correlate.api", "correlate"),
    "merge_captures": ("pcaptools.k8s.discover", "merge_captures"),  # a CaptureSet or inputs; memory= streams
    "merge_inputs": ("pcaptools.k8s.discover", "merge_inputs"),  # inputs -> Merged: counts, notes, skipped_files
    "load_captures": ("pcaptools.k8s.discover", "load_captures"),  # plain captures -> CaptureSet
    # Kubernetes paths
    "Inventory": ("pcaptools.k8s.inventory", "Inventory"),
    "path_table": ("pcaptools.k8s.paths", "paths"),
    "paths": ("pcaptools.k8s.paths", "paths"),
    # comparison
    "Comparison": ("pcaptools.compare", "Comparison"),
    "compare_captures": ("pcaptools.compare", "compare"),
    # modules (callable: see pcaptools._callable)
    "flows": ("pcaptools.flows", None),
    "correlate": ("pcaptools.correlate", None),
    "compare": ("pcaptools.compare", None),
    "lab": ("pcaptools.lab", None),
    "schema": ("pcaptools.schema", None),
    "errors": ("pcaptools.errors", None),
}

__all__ = sorted(n for n, (_, attr) in _EXPORTS.items() if attr is not None) + ["compare", "correlate", "flows", "lab"]


__getattr__ = lazy_getattr(__name__, _EXPORTS)  # names imported on first use


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
