"""Capture sets -> Parquet datasets (:mod:`pcaptools.dataset`): decode once, keep the capture points.

The inputs are taken as every multi-capture command takes them (files, directories, manifests,
``--point``); each point's node, interface, role and pod are inferred once, here, and stored with the
evidence, so analysing the dataset later gives the same points and results as the captures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.dataset import DEFAULT_WINDOW_NS, DatasetWriter


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
) -> Path:
    """Decode the capture set once into a dataset at ``out``: packets per point and time window, the points'
    metadata and inference evidence, reader skip counts, and with ``flows`` each file's flow table.

    Point inference reads every packet of plain captures, so this holds the set in memory once (as
    ``paths`` does); later analyses of the dataset read Parquet instead of decoding.
    """
    from pcaptools.correlate.capture_set import _split
    from pcaptools.decode import registry
    from pcaptools.errors import CorrelationError
    from pcaptools.k8s.diagnose import manifest_drops
    from pcaptools.k8s.discover import find_inventory, load_captures, manifest_doc
    from pcaptools.packets import read_packets

    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    writer = DatasetWriter(out, window_ns=window_ns, overwrite=overwrite)  # refuses a taken directory before any work
    try:
        inv = inventory or find_inventory(srcs, allow_outside=allow_outside)
        tables: dict[str, pd.DataFrame] = {}

        def decode(path: str) -> pd.DataFrame:
            if path not in tables:
                tables[path] = read_packets(path, payload_hash=True)
            return tables[path]

        cs = load_captures(srcs, points=points, inventory=inv, links=links, decoder=decode, allow_outside=allow_outside)
        entries = _entries(cs, manifest_doc(cs, "."))
        names = iter(p.name for p in cs.points)  # _split's order is the capture set's, renames (@any) included
        index: dict[str, int] = {}
        for e in entries:
            table = tables[e["file"]]
            if e["file"] not in index:
                index[e["file"]] = writer.add_file(table, path=e["file"])
                held = np.zeros(len(table), bool)
                for other in (x for x in entries if x["file"] == e["file"]):
                    for _pt, sub in _split(other, table):
                        held[sub.index.to_numpy()] = True
                writer.write(index[e["file"]], None, table[~held])
                if flows:
                    from pcaptools.flows import flows as flow_table

                    writer.write_flows(index[e["file"]], flow_table(table))
            for pt, sub in _split(e, table):
                name = next(names)
                if name not in (pt.name, f"{pt.name}@any"):  # pragma: no cover - both follow from_frames' order
                    raise CorrelationError(f"internal: capture point {pt.name} stored as {name}")
                writer.write(index[e["file"]], name, sub)
        ev = cs.inference
        description = {
            "cni": cs.cni, "notes": list(cs.notes), "entries": entries,
            "points": [asdict(p) for p in cs.points], "capture_drops": manifest_drops(srcs),
            "decode": {"vxlan_ports": list(registry.DEFAULT_VXLAN_PORTS), "geneve_ports": list(registry.DEFAULT_GENEVE_PORTS),
                       "wireguard_ports": list(registry.DEFAULT_WIREGUARD_PORTS), "max_tunnel_depth": 4},
            "inference": None if ev is None else {
                "rows": ev.to_dict("records"), "warnings": list(ev.attrs.get("warnings", [])),
                "inventory": ev.attrs.get("inventory"), "files": int(ev.attrs.get("files") or 0)},
        }  # fmt: skip
        return writer.close(description, inventory=inv if isinstance(inv, (str, os.PathLike)) else None)
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
