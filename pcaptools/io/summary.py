"""One capture file at a glance (what ``pcaptools info`` prints): format, interfaces, counts, time span, skips.

Reads through :func:`iter_records`, so memory stays bounded however large the file is. A small file
(:data:`SMALL_BYTES`) is walked by the record kernels' Python source (:func:`pcaptools.jit.interpreted`):
the same code, so the same answer, without importing numba and loading its machine code (a second or
more), which is what makes ``pcaptools info small.pcap`` instant.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import numpy as np

from pcaptools.io.linktypes import linktype_name
from pcaptools.io.reader import iter_records
from pcaptools.io.records import InterfaceStats
from pcaptools.io.sniff import Opened, open_capture
from pcaptools.jit import Overtime, interpreted

SMALL_BYTES = 1 << 20
"""Files up to this size (compressed ones count 8x) are walked interpreted: at worst (12,000-15,000
minimal frames, 14 µs per pcap and 30 µs per pcapng record) 0.2-0.4 s, less than loading numba and its
compiled walkers (about 1 s)."""
INTERPRETED_BUDGET_S = 0.5
"""An interpreted walk still running after this long (damage to resynchronise past) is redone compiled."""


def walks_interpreted(op: Opened) -> bool:
    """Whether ``op`` is small enough to walk uncompiled faster than numba's kernels could be loaded."""
    return op.capture_bytes <= SMALL_BYTES


def summarize(
    path: str | os.PathLike,
    *,
    progress: Callable[[int, int | None], None] | None = None,
    compiled: bool | None = None,
) -> dict:
    """JSON-ready summary of one capture; ``progress(bytes_read, total_or_None)`` is called per window.

    Keys (a stable contract, see ``pcaptools info --json``): ``path``, ``format``, ``compression``,
    ``file_bytes``, ``records``, ``records_total``, ``skipped``, ``link_types``, ``interfaces``,
    ``first_ts_ns``, ``last_ts_ns``, ``duration_ns``, ``captured_bytes``, ``wire_bytes``,
    ``stopped_at``, ``notes``; each interface has ``stats``: its pcapng Interface Statistics Block counters
(``ifrecv``, ``ifdrop``, ``filteraccept``, ``osdrop``, ``usrdeliv``, None where absent, and ``dropped``) or None
without one. ``compression`` is "gzip", "xz", "zstd" or None; ``stopped_at`` has a
    ``compressed_offset`` when compressed data ended on damage. Timestamps are the earliest and latest in the file (None if no
    record has one). ``compiled`` forces the numba walk (True) or the interpreted one (False); by
    default a file of at most :data:`SMALL_BYTES` is walked interpreted (compiled after all if that
    takes over :data:`INTERPRETED_BUDGET_S`). Both give the same summary.
    """
    path = os.fspath(path)
    op = open_capture(path)
    if compiled is None and walks_interpreted(op):
        try:
            with interpreted(budget_s=INTERPRETED_BUDGET_S):
                return _summary(path, op, progress)
        except Overtime:
            pass  # the file took long to walk after all: redo it compiled, from the start
    with interpreted(compiled is False):
        return _summary(path, op, progress)


def _summary(path: str, op: Opened, progress: Callable[[int, int | None], None] | None) -> dict:
    """The summary of :func:`summarize`, walked as the caller's :func:`interpreted` block says."""
    records = 0
    skipped: Counter[str] = Counter()
    per_iface: Counter[int] = Counter()
    first: int | None = None
    last: int | None = None
    cap_bytes = wire_bytes = 0
    batch = None
    for batch in iter_records(path):
        records += len(batch)
        skipped.update(batch.skipped)
        if len(batch):
            ts = batch.ts_ns[batch.ts_ns >= 0]
            if ts.size:
                lo, hi = int(ts.min()), int(ts.max())
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
            cap_bytes += int(batch.caplen.sum(dtype=np.int64))
            wire_bytes += int(batch.wirelen.sum(dtype=np.int64))
            ids, counts = np.unique(batch.iface, return_counts=True)
            per_iface.update(dict(zip(ids.tolist(), counts.tolist(), strict=True)))
        if progress is not None:
            progress(batch.data_base + len(batch.data), None if op.compression else op.file_size)
    interfaces = [] if batch is None else batch.interfaces
    link_types: list[str] = []
    for iface in interfaces:
        name = linktype_name(iface.linktype)
        if name not in link_types:
            link_types.append(name)
    return {
        "path": path,
        "format": op.format,
        "compression": op.compression,
        "file_bytes": op.file_size,
        "records": records,
        "records_total": records + sum(skipped.values()),
        "skipped": dict(sorted(skipped.items())),
        "link_types": link_types,
        "interfaces": [
            {
                "id": i.id,
                "name": i.name,
                "description": i.description,
                "link_type": linktype_name(i.linktype),
                "linktype": i.linktype,
                "snaplen": i.snaplen,
                "section": i.section,
                "tsresol_ns": i.tsresol_ns,
                "tsoffset_s": i.tsoffset_s,
                "records": per_iface.get(i.id, 0),
                "stats": _stats(i.stats),
            }
            for i in interfaces
        ],
        "first_ts_ns": first,
        "last_ts_ns": last,
        "duration_ns": None if first is None else last - first,
        "captured_bytes": cap_bytes,
        "wire_bytes": wire_bytes,
        "stopped_at": None if batch is None else batch.stopped_at,
        "notes": [] if batch is None else batch.notes,
    }


def _stats(st: InterfaceStats | None) -> dict | None:
    """The ISB counters of an interface as a JSON-ready dict, with the drops they add up to."""
    if st is None:
        return None
    return {"ifrecv": st.ifrecv, "ifdrop": st.ifdrop, "filteraccept": st.filteraccept, "osdrop": st.osdrop,
            "usrdeliv": st.usrdeliv, "dropped": st.dropped()}
