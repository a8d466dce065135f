"""Public entry points of the decoder: capture files -> packet tables (schema.PACKET_COLUMNS)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Literal

import pandas as pd

from pcaptools.decode import registry
from pcaptools.errors import DecodeError

PathLike = str | os.PathLike


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate packet tables keeping every category column a category (union of categories)."""
    if len(frames) == 1:
        return frames[0]
    from pcaptools.decode.table import concat

    out = concat(frames)
    attrs: dict = {"skipped": {}, "notes": [], "stopped_at": {}, "interface_stats": {}}
    for f in frames:
        attrs["skipped"].update(f.attrs.get("skipped", {}))
        attrs["notes"].extend(f.attrs.get("notes", []))
        attrs["stopped_at"].update(f.attrs.get("stopped_at", {}))
        attrs["interface_stats"].update(f.attrs.get("interface_stats", {}))
    out.attrs = attrs
    return out


def read_packets(
    path_or_paths: PathLike | Iterable[PathLike],
    *,
    vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
    geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS,
    wireguard_ports: Iterable[int] = registry.DEFAULT_WIREGUARD_PORTS,
    max_tunnel_depth: int = 4,
    on_error: Literal["skip", "raise"] = "skip",
    payload_hash: bool = False,
) -> pd.DataFrame:
    """Decode one or more pcap/pcapng(.gz) files into one packet table; ``file`` names each row's file.

    A dataset directory ``pcaptools convert`` wrote (or one of its files, ``DIR::FILE``) is read back from
    Parquet instead, equal to decoding its captures (:func:`pcaptools.dataset.read_dataset` filters it).

    Reader skips are in ``df.attrs["skipped"]`` (per file), with ``notes``, ``stopped_at`` and
    ``interface_stats`` (per file, per interface: its pcapng Interface Statistics Block counters or None).
    ``payload_hash=True`` adds a uint64 column hashing each packet's first 16 L4 payload bytes (the
    correlator's fingerprint needs it), taken during the decode walk.
    """
    from pcaptools.decode.api import decode_many, decode_options
    from pcaptools.decode.compiling import announce_compiles
    from pcaptools.io import read_records

    announce_compiles()  # the first run after install compiles for a while: say so on stderr

    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    if not paths:
        raise DecodeError("read_packets: expected at least one capture file, found none")
    tables, depth = decode_options(vxlan_ports, geneve_ports, wireguard_ports, max_tunnel_depth)
    names = [os.fspath(p) for p in paths]
    options = {"vxlan_ports": vxlan_ports, "geneve_ports": geneve_ports, "wireguard_ports": wireguard_ports,
               "max_tunnel_depth": max_tunnel_depth}  # fmt: skip
    if not any(_is_stored(p) for p in names):  # capture files: decoded in one walk into one table, nothing stacked
        # several files: each file's pages leave the RSS once read; the decode walk maps each range again as it walks
        batches = [read_records(p, on_error=on_error, unmap=len(names) > 1) for p in names]
        return decode_many(batches, tables, depth, names, payload_hash=payload_hash)
    frames = [_stored(p, options, payload_hash) if _is_stored(p) else
              decode_many([read_records(p, on_error=on_error)], tables, depth, [p], payload_hash=payload_hash)
              for p in names]  # fmt: skip
    return _concat(frames)


def _is_stored(path: str) -> bool:
    """A dataset directory or one of its capture files (``DIR::FILE``): read from Parquet, not decoded."""
    from pcaptools.dataset import is_dataset, split_member

    return is_dataset(path) or split_member(path) is not None


def _stored(path: str, options: dict, payload_hash: bool) -> pd.DataFrame:
    """The packet table a dataset holds for ``path``, when it was decoded with the same ``options``."""
    from pcaptools.dataset import read_dataset, split_member

    d, file = split_member(path) or (path, None)
    _check_stored(d, options)
    return read_dataset(d, files=None if file is None else [file], payload_hash=payload_hash)


def _check_stored(directory: str, options: dict) -> None:
    """DecodeError when the dataset was decoded with other decoder ``options`` than asked."""
    from pcaptools.dataset import read_meta

    used = read_meta(directory)["decode"]
    asked = {k: sorted({int(x) for x in v}) if k != "max_tunnel_depth" else int(v) for k, v in options.items()}
    if asked != {k: sorted(v) if isinstance(v, list) else v for k, v in used.items()}:
        raise DecodeError(f"{directory}: the dataset was decoded with {used}, not {asked}; convert the captures again with those options")


def iter_packets(
    path: PathLike,
    *,
    batch_records: int = 1 << 20,
    batch_bytes: int = 16 << 20,
    vxlan_ports: Iterable[int] = registry.DEFAULT_VXLAN_PORTS,
    geneve_ports: Iterable[int] = registry.DEFAULT_GENEVE_PORTS,
    wireguard_ports: Iterable[int] = registry.DEFAULT_WIREGUARD_PORTS,
    max_tunnel_depth: int = 4,
    on_error: Literal["skip", "raise"] = "skip",
    payload_hash: bool = False,
) -> Iterator[pd.DataFrame]:
    """Packet tables of at most ``batch_records`` rows each, with bounded memory (streamed reading);
    each read from a window of about ``batch_bytes`` capture bytes (two windows are held; see
    :func:`pcaptools.io.iter_records`); ``payload_hash`` as for :func:`read_packets`."""
    from pcaptools.decode.api import decode_options, decode_with
    from pcaptools.decode.compiling import announce_compiles
    from pcaptools.io import iter_records

    name = os.fspath(path)
    if _is_stored(name):  # a dataset holds decoded rows, not records to stream: one file of it is read in its parts
        from pcaptools.dataset import iter_member, split_member

        member = split_member(name)
        if member is None:
            raise DecodeError(f"{name}: a dataset `pcaptools convert` wrote is already decoded and is not read in windows; "
                              "read it whole (drop --memory / memory=), one capture file at a time (DIR::FILE) or in parts "
                              "with pcaptools.read_dataset(DIR, points=…, start_ns=…, end_ns=…)")  # fmt: skip
        _check_stored(member[0], {"vxlan_ports": vxlan_ports, "geneve_ports": geneve_ports, "wireguard_ports": wireguard_ports,
                                  "max_tunnel_depth": max_tunnel_depth})  # fmt: skip
        yield from iter_member(*member, batch_records=batch_records, payload_hash=payload_hash)
        return
    announce_compiles()

    tables, depth = decode_options(vxlan_ports, geneve_ports, wireguard_ports, max_tunnel_depth)
    # the tables keep nothing of a batch's window, so two window buffers serve the whole file
    for batch in iter_records(path, batch_records=batch_records, batch_bytes=batch_bytes, on_error=on_error,
                              reuse_windows=True):
        yield decode_with(batch, tables, depth, file_name=name, payload_hash=payload_hash)
