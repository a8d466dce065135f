"""``decode_batch``: one RecordBatch in, one validated packet table out."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pcaptools.decode import registry
from pcaptools.errors import DecodeError
from pcaptools.io.records import Interface, RecordBatch


def _ports(name: str, ports: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(p) for p in ports)
    bad = [p for p in out if not 0 < p < 65536]
    if bad:
        raise DecodeError(f"{name}: expected UDP ports 1-65535, found {bad}; try e.g. {name}=(4789, 8472)")
    return out


def decode_options(
    vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
    geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS,
    wireguard_ports: Iterable[int] = registry.DEFAULT_WIREGUARD_PORTS,
    max_tunnel_depth: int = 4,
) -> tuple[registry.Tables, int]:
    """Check the user's options once and build the registry's lookup arrays from them."""
    vx = _ports("vxlan_ports", vxlan_ports)
    gn = _ports("geneve_ports", geneve_ports)
    wg = _ports("wireguard_ports", wireguard_ports)
    clash = sorted((set(vx) & set(gn)) | (set(vx) & set(wg)) | (set(gn) & set(wg)))
    if clash:
        raise DecodeError(f"UDP ports {clash} are given for two tunnels; expected each port for one tunnel only")
    if not 0 <= int(max_tunnel_depth) <= 16:
        raise DecodeError(f"max_tunnel_depth: expected 0-16, found {max_tunnel_depth}")
    return registry.build_tables(registry.udp_dport(vx, gn, wg)), int(max_tunnel_depth)


def decode_batch(
    batch: RecordBatch,
    *,
    vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
    geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS,
    wireguard_ports: Iterable[int] = registry.DEFAULT_WIREGUARD_PORTS,
    max_tunnel_depth: int = 4,
    file_name: str | None = None,
) -> pd.DataFrame:
    """Packet table (one row per record, PACKET_COLUMNS) of a batch; malformed packets set ``error``."""
    tables, depth = decode_options(vxlan_ports, geneve_ports, wireguard_ports, max_tunnel_depth)
    return decode_with(batch, tables, depth, file_name)


def decode_with(
    batch: RecordBatch, tables: registry.Tables, depth: int, file_name: str | None = None, *, payload_hash: bool = False
) -> pd.DataFrame:
    """decode_batch with prepared tables (read_packets builds them once for many batches); ``payload_hash``
    adds that column (uint64 hash of the first 16 L4 payload bytes, taken during the decode walk)."""
    return decode_many([batch], tables, depth, [file_name if file_name is not None else str(batch.path)],
                       payload_hash=payload_hash)  # fmt: skip


def decode_many(
    batches: list[RecordBatch], tables: registry.Tables, depth: int, file_names: list[str], *, payload_hash: bool = False
) -> pd.DataFrame:
    """The packet tables of several batches (one file each, named by ``file_names``) as one table, walked and built
    at once into columns of all their rows: what stacking each batch's :func:`decode_with` table gives (attrs per
    file), without the copy of every column that stacking costs."""
    from pcaptools.decode.table import build_many
    from pcaptools.decode.walk import Walk
    from pcaptools.schema import TUNNELS

    w = Walk(batches, tables, depth, payload_hash=payload_hash)
    w.run()
    df = build_many(w, file_names)
    attrs: dict = {"skipped": {}, "notes": [], "stopped_at": {}, "interface_stats": {}}
    gre = (w.c["tunnel"] == TUNNELS.index("gre") + 1) & (w.c["ip_version"] == 0) & (w.err == 0) & (w.trunc == 0)
    for i, batch in enumerate(batches):
        path = str(batch.path)
        attrs["skipped"][path] = dict(batch.skipped)
        attrs["notes"].extend(batch.notes)
        opaque_gre = int(np.count_nonzero(gre[w.bounds[i] : w.bounds[i + 1]]))
        if opaque_gre:
            attrs["notes"].append(
                f"{batch.path}: {opaque_gre} GRE packets carry a protocol pcaptools does not decode (ERSPAN 0x88be, "
                "PPP 0x880b, ...); their inner columns are empty"
            )
        attrs["stopped_at"][path] = batch.stopped_at
        attrs["interface_stats"][path] = interface_stats(batch.interfaces)
    df.attrs = attrs
    return df


STAT_FIELDS = ("ifrecv", "ifdrop", "filteraccept", "osdrop", "usrdeliv")
"""Counters of a pcapng Interface Statistics Block, in the order ``df.attrs["interface_stats"]`` lists them."""


def interface_stats(interfaces: Iterable[Interface]) -> list[dict | None]:
    """Per interface of a file (index = interface id): its last Statistics Block's counters as plain data
    (``interface``, :data:`STAT_FIELDS`, ``dropped`` as :meth:`InterfaceStats.dropped` counts it), None without one."""
    return [None if i.stats is None else
            {"interface": int(i.id), **{k: getattr(i.stats, k) for k in STAT_FIELDS}, "dropped": i.stats.dropped()}
            for i in interfaces]  # fmt: skip
