"""``pcaptools.dask``: the packet table, flows, correlation and paths on a Dask cluster (``pip install 'pcaptools[dask]'``).

Decode is split into record ranges of each file, decoded on the workers (:func:`read_packets`); flows
are built per partition after a shuffle on (file, address pair, protocol) (:func:`read_flows`);
correlation shuffles sightings on their NAT/tunnel-invariant fingerprint, estimates the clocks on the
client from a bounded sample and broadcasts them (:func:`correlate_captures`); paths reuse
:mod:`pcaptools.k8s.paths` on the combined hops and flows (:func:`load_paths`). Every result equals the
single-process one on the same input. Nothing else in pcaptools imports dask: only this package does.

    from dask.distributed import Client
    from pcaptools.dask import read_packets, read_flows
    with Client("tcp://scheduler:8786"):
        pk = read_packets(["node-1.pcap", "node-2.pcap"])   # dask.dataframe.DataFrame
        fl = read_flows(["node-1.pcap", "node-2.pcap"])     # pandas DataFrame, as pcaptools.read_flows
"""

from __future__ import annotations

from pcaptools._callable import lazy_getattr

_EXPORTS: dict[str, tuple[str, str | None]] = {
    "connect": ("pcaptools.dask.cluster", "connect"),
    "ClusterError": ("pcaptools.dask.cluster", "ClusterError"),
    "read_packets": ("pcaptools.dask.packets", "read_packets"),
    "plan_chunks": ("pcaptools.dask.packets", "plan_chunks"),
    "collect_packets": ("pcaptools.dask.packets", "collect_packets"),
    "flow_partitions": ("pcaptools.dask.flows", "flow_partitions"),
    "read_flows": ("pcaptools.dask.flows", "read_flows"),
    "correlate_captures": ("pcaptools.dask.correlation", "correlate_captures"),
    "load_capture_packets": ("pcaptools.dask.correlation", "load_capture_packets"),
    "load_paths": ("pcaptools.dask.paths", "load_paths"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)  # dask is imported only when one of these is used


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
