"""How values are written for people, shared by the library's text columns and the renderers (imports nothing,
so the CLI's startup stays light)."""

from __future__ import annotations

from collections.abc import Iterable

PROTO_NAMES: dict[int, str] = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmpv6", 132: "sctp"}
"""IP protocol numbers with a name (others are written as their number)."""


def fmt_ns(ns: int | float | None) -> str:
    """A duration: ``850 ns``, ``38.0 µs``, ``1.25 ms``, ``2.000 s``; '' when absent (None or NaN)."""
    if ns is None or ns != ns:
        return ""
    a = abs(ns)
    if a < 1_000:
        return f"{int(ns)} ns"
    if a < 1_000_000:
        return f"{ns / 1e3:,.1f} µs"
    if a < 1_000_000_000:
        return f"{ns / 1e6:,.2f} ms"
    return f"{ns / 1e9:,.3f} s"


def endpoint(addr: str, port: int | None = None) -> str:
    """``10.0.0.1:80``, ``[::1]:37675``, or the bare address when there is no port (None, NaN or -1)."""
    if port is None or port != port or int(port) < 0:
        return addr
    return f"[{addr}]:{int(port)}" if ":" in addr else f"{addr}:{int(port)}"


def add_skipped(into: dict[str, dict[str, int]], table_attrs: dict) -> None:
    """Add a packet table's ``attrs["skipped"]`` (``{file: {reason: count}}``) into ``into``, summing per file and reason."""
    for path, reasons in (table_attrs.get("skipped") or {}).items():
        mine = into.setdefault(str(path), {})
        for k, v in reasons.items():
            mine[k] = mine.get(k, 0) + int(v)


def shared_file_notes(skips: Iterable[dict[str, dict[str, int]]]) -> list[str]:
    """:func:`reader_notes` of several readers' ``{file: {reason: count}}`` (one per capture point): points that share a
    file (an ``-i any`` capture split per interface) read the same records, so each file's skips are said once, the
    first reader's. One helper for the in-memory capture set and the streamed correlation, so both say the same."""
    first: dict[str, dict[str, int]] = {}
    for skipped in skips:
        for path, reasons in (skipped or {}).items():
            first.setdefault(str(path), dict(reasons))
    return reader_notes(first)


def reader_notes(skipped: dict[str, dict[str, int]]) -> list[str]:
    """One note per capture file whose reader skipped records that may hold packets (``{file: {reason: count}}``, as
    packet tables' ``attrs["skipped"]``): every result built from the files (correlate, paths, why, merge) says what no
    table holds. pcapng blocks that hold no packet (statistics, name resolution, ...; ``pcapng.NO_PACKET``) are
    counted by ``pcaptools info`` but lose nothing, so they bring no note (dumpcap ends every capture with one)."""
    from pcaptools.io.pcapng import NO_PACKET

    notes = []
    for path, reasons in skipped.items():
        lost = {k: int(v) for k, v in sorted(reasons.items()) if v and k not in NO_PACKET}
        if lost:
            why = ", ".join(f"{k} {v:,}" for k, v in lost.items())
            notes.append(f"{path}: {sum(lost.values()):,} record(s) skipped by the reader ({why}); "
                         f"`pcaptools info {path}` says where and why")  # fmt: skip
    return notes
