"""Paths on Dask: correlation and flows computed on the cluster, then :func:`pcaptools.k8s.paths.paths_and_nat`
on the client over the combined hops and flows (one Python step per connection, as in one process)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from pcaptools.dask.correlation import correlate_packets, load_capture_packets
from pcaptools.dask.flows import read_flows
from pcaptools.dask.packets import DEFAULT_CHUNK_RECORDS
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.paths import PathSet, as_inventory, paths_and_nat


def load_paths(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    inventory: Inventory | str | os.PathLike | dict | None = None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
    chunk_records: int = DEFAULT_CHUNK_RECORDS,
) -> PathSet:
    """:func:`pcaptools.k8s.paths.load_paths` on the cluster for a manifest and/or ``NODE:IFACE=FILE`` points:
    the same paths, NAT steps and flows; ``captures`` holds the points (one row per file interface)."""
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS
    from pcaptools.k8s.discover import find_inventory

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    inv = as_inventory(inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside))
    cap = load_capture_packets(srcs, points=points, allow_outside=allow_outside, chunk_records=chunk_records,
                               flow_columns=with_flows)  # fmt: skip
    corr = correlate_packets(cap, window_ns=window_ns or DEFAULT_WINDOW_NS, reference=reference)
    fl = read_flows(cap.files, packets=cap.file_packets) if with_flows else None
    p, nat = paths_and_nat(corr, inv, flows=fl)
    return PathSet(paths=p, nat=nat, correlation=corr, inventory=inv, captures=cap.captures)
