"""Capture sets -> Parquet datasets (:mod:`pcaptools.dataset`): decode once, keep the capture points.

The inputs are taken as every multi-capture command takes them (files, directories, manifests,
``--point``), through the same :func:`~pcaptools.k8s.discover.load_captures` (plain files:
:func:`~pcaptools.k8s.discover.infer_captures`, its bounded twin), so the dataset holds the same capture points,
evidence and warnings the commands would find in the captures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pcaptools.dataset import DEFAULT_WINDOW_NS, DatasetError, DatasetWriter, is_dataset

BATCH_RECORDS = 1 << 20
"""Records decoded and written at a time when the points are given (a file this small reads back exactly
as ``read_packets`` decodes it; a larger one's category columns list their values in batch order)."""


def convert(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    points: Iterable[str] = (),
    inventory: str | os.PathLike | None = None,
    links: Iterable[str] = (),
    window_ns: int = DEFAULT_WINDOW_NS,
    flows: bool = False,
    overwrite: bool = False,
    allow_outside: bool = False,
    batch_records: int = BATCH_RECORDS,
) -> Path:
    """Decode the capture set once into a dataset at ``out``: packets per point and time window, the points'
    metadata and inference evidence, reader skip counts, and with ``flows`` each file's flow table.

    Each file is decoded and written in batches of ``batch_records``: memory stays bounded by a batch (flows: by
    the largest file). The points of plain captures are inferred first from a bounded summary of their packets
    (:func:`~pcaptools.k8s.discover.infer_captures`, one more read of each file), so they too are never held whole.
    """
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.decode import registry
    from pcaptools.k8s.diagnose import pcapng_drops
    from pcaptools.k8s.discover import (
        find_inventory,
        infer_captures,
        input_files,
        is_capture_set,
        load_captures,
        manifest_doc,
        manifest_drops,
    )
    from pcaptools.packets import iter_packets, read_packets

    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    points = list(points)
    done_before = [s for s in srcs if is_dataset(s)]
    if done_before:
        raise DatasetError(f"{done_before[0]}: is a dataset already; every command reads it as it is (to change its "
                           "windows or points, convert the captures again)", path=str(done_before[0]))  # fmt: skip
    given = is_capture_set(srcs, points)
    writer = DatasetWriter(out, window_ns=window_ns, overwrite=overwrite)  # refuses a taken directory before any work
    try:
        inv = inventory or find_inventory(srcs, allow_outside=allow_outside)
        done: dict[str, pd.DataFrame] = {}

        def decode(path: str) -> pd.DataFrame:
            """Write the file's packets in batches; return the rows standing for all (what the points are split by)."""
            if path not in done:
                for batch in iter_packets(path, payload_hash=True, batch_records=batch_records):
                    writer.add_batch(path, batch)
                if path not in writer.files:  # no record at all: the empty table, with the reader's accounting
                    writer.add_batch(path, read_packets(path, payload_hash=True))
                done[path] = writer.sample(path)
            return done[path]

        if given:
            cs = load_captures(srcs, points=points, inventory=inv, links=links, decoder=decode, allow_outside=allow_outside)
        else:  # points inferred within bounded memory, then the files written in the order load_captures decodes them
            entries, inferred = infer_captures(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside)
            for e in input_files(srcs, points, allow_outside=allow_outside):
                decode(e["file"])
            cs = CaptureSet.from_frames([(e, decode(e["file"])) for e in entries], cni=inferred.cni)
            cs.inference = inferred.inference
            cs.skipped_files, cs.notes = inferred.skipped_files, [*inferred.notes, *cs.notes]  # the files left out
        if flows:
            from pcaptools.flows import flows as flow_table

            for path in list(done):
                writer.write_flows(path, flow_table(writer.file_table(path)))
        ev = cs.inference
        description = {
            "cni": cs.cni, "notes": list(cs.notes), "skipped_files": list(cs.skipped_files), "entries": _entries(cs, manifest_doc(cs, ".")),
            "points": [_absent(asdict(p)) for p in cs.points], "capture_drops": manifest_drops(srcs),
            "pcapng_drops": {pt: [n, how] for pt, (n, how) in pcapng_drops(cs).items()},
            "decode": {"vxlan_ports": list(registry.DEFAULT_VXLAN_PORTS), "geneve_ports": list(registry.DEFAULT_GENEVE_PORTS),
                       "wireguard_ports": list(registry.DEFAULT_WIREGUARD_PORTS), "max_tunnel_depth": 4},
            "inference": None if ev is None else {
                "rows": [_absent(r) for r in ev.to_dict("records")], "warnings": list(ev.attrs.get("warnings", [])),
                "inventory": ev.attrs.get("inventory"), "files": int(ev.attrs.get("files") or 0)},
        }  # fmt: skip
        return writer.close(description, cs.points, inventory=inv if isinstance(inv, (str, os.PathLike)) else None)
    except BaseException:
        writer.abort()
        raise


def _entries(cs, doc: dict) -> list[dict]:
    """The manifest entries of the set's points (``manifest_doc`` grouping) with each ``file`` as decoded."""
    base = os.path.abspath(".")
    by_rel = {os.path.relpath(os.path.abspath(p.file), base): p.file for p in cs.points}
    out = []
    for e in doc["captures"]:
        e = {k: v for k, v in e.items() if k != "evidence" and v is not None}
        for item in e.get("interfaces") or []:
            item.pop("evidence", None)
            if item.get("pod") is None:
                item.pop("pod", None)
        out.append({**e, "file": by_rel[e["file"]]})
    return out


def _absent(row: dict) -> dict:
    """A point's record for JSON: ``ifindex`` / ``pcapng_interface`` -1 (none) written as null."""
    return {k: None if k in ("ifindex", "pcapng_interface") and v == -1 else (int(v) if hasattr(v, "item") else v)
            for k, v in row.items()}  # fmt: skip
