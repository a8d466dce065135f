"""One packet, two views: scapy's full dissection beside our decoded row (for checking the decoder by eye)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from pcaptools.decode import registry
from pcaptools.errors import DecodeError


def scapy_dissection(raw: bytes, linktype: int, vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
                     geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS) -> str:  # fmt: skip
    """``pkt.show()`` text of scapy's dissection, with our tunnel ports bound only for this call."""
    from scapy.config import conf
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw, bind_layers, split_layers

    try:
        from scapy.contrib.geneve import GENEVE
    except ImportError:  # pragma: no cover - scapy without contrib
        GENEVE = None
    added = []
    for p in vxlan_ports:
        if p != 4789:
            added.append((UDP, VXLAN, {"dport": int(p)}))
    if GENEVE is not None:
        for p in geneve_ports:
            added.append((UDP, GENEVE, {"dport": int(p)}))
    for lower, upper, fields in added:
        bind_layers(lower, upper, **fields)
    try:
        cls = conf.l2types.get(linktype, Raw)
        return cls(raw).show(dump=True)
    finally:
        for lower, upper, fields in added:
            split_layers(lower, upper, **fields)


def show_packet(path: str | os.PathLike, record: int, **options) -> tuple[str, pd.Series]:
    """(scapy dissection text, our decoded row) of the packet with 0-based record number ``record``."""
    from pcaptools.decode.api import decode_batch
    from pcaptools.io import read_records

    batch = read_records(path)
    hits = (batch.record == record).nonzero()[0]
    if record < 0 or not len(hits):
        raise DecodeError(_no_such_record(batch, record), path=os.fspath(path), record=record)
    i = int(hits[0])
    df = decode_batch(batch, **options)
    vx = options.get("vxlan_ports", registry.DEFAULT_VXLAN_PORTS)
    gn = options.get("geneve_ports", registry.DEFAULT_GENEVE_PORTS)
    return scapy_dissection(batch.packet(i), int(batch.linktype[i]), vx, gn), df.iloc[i]


def _no_such_record(batch, record: int) -> str:
    """Why ``record`` cannot be shown: out of the file's range, skipped by the reader, or a file with no packets."""
    where = os.fspath(batch.path)
    skipped = ", ".join(f"{k} {v:,}" for k, v in sorted(batch.skipped.items()))
    if not len(batch):
        held = f"{batch.records_total:,} record(s), all skipped ({skipped})" if batch.records_total else "no records"
        return f"{where}: expected a packet to show, found {held}; `pcaptools info {where}` says what the file holds"
    if 0 <= record < batch.records_total:
        return (f"{where}: record {record} was skipped by the reader ({skipped} in this file), so it has no packet to "
                f"show; `pcaptools info {where}` says why (records are numbered 0-{batch.records_total - 1})")
    return (f"{where}: expected a record number 0-{max(batch.records_total, int(batch.record.max()) + 1) - 1}, found "
            f"{record}; packets are numbered from 0 (tshark's frame number minus 1)")


def non_empty(row: pd.Series) -> dict[str, object]:
    """The row's fields that carry a value (not missing, not the -1 sentinel, not False)."""
    out = {}
    for k, v in row.items():
        v = v.item() if hasattr(v, "item") else v
        if v is None or v is False or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, int) and not isinstance(v, bool) and v == -1:
            continue
        out[str(k)] = v
    return out
