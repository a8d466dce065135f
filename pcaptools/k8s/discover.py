"""Capture sets from plain capture files: each point's node, interface, role and pod inferred, with the evidence.

Sources, in this order of trust (the first that answers decides a field; the evidence is recorded):

1. pcapng interface blocks: ``if_name`` (``NODE:IFACE`` as ``pcaptools merge`` writes, else the
   interface), ``if_description``/``if_hardware`` ``key=value`` pairs (``k8s.node=…;k8s.podName=…;
   k8s.namespace=…``, also ``node=``, ``pod=``, ``namespace=``, ``interface=``, ``role=``). A pcapng
   with several interfaces is split per interface.
2. Directory and file names: ``NODE/IFACE.pcap``, ``NODE_IFACE.pcap``, ``NODE-IFACE.pcap``,
   ``NODE.pcap`` (``-i any``); a name matching an inventory node (name, hostname or address) decides.
3. Packets: the inventory node whose addresses (its own, or its pods') are in nearly every packet
   that carries a node's or pod's address; for a veth, the one inventory pod whose IP is in nearly
   every packet. ``-i any`` (LINUX_SLL2) interface indexes are named from ``ip -j link`` output
   (``NODE.links.json`` beside the capture, or ``links=``), else ``if<N>``.
4. Interface names: roles from the network plugins' conventions (:mod:`pcaptools.k8s.cni`); the pod
   of a Calico / AWS VPC CNI veth from its hashed name, checked against the inventory.

The packets are read only through a bounded per-file summary (:mod:`pcaptools.k8s.evidence`: packet counts per
distinct combination of addresses, interface and ifindex, plus two capped hash samples), computed from a whole
packet table by :func:`load_captures` and over packet batches by :func:`infer_captures` (bounded memory, what
``correlate --memory`` uses): both give the same points, evidence and warnings.

``--point NODE:IFACE=FILE`` (``points=``) and manifests win over all of it. A contradiction (a
name says one node, the packets another; a veth's name says a pod on another node) raises
:class:`CorrelationError` naming the file and the ``--point`` that overrides it. Limits: ties
between two nodes (a capture that only shows traffic between them) decide nothing, and a file
with no evidence keeps its file stem as node name and ``if<N>`` / no interface name, with a warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.correlate.capture_set import CapturePoint, CaptureSet, _manifest_path, _once, parse_point_spec
from pcaptools.correlate.manifest import inventory_beside, read_manifest
from pcaptools.dataset import dataset_entries, is_dataset, member, read_meta
from pcaptools.errors import CorrelationError, InventoryError
from pcaptools.io.probe import PROBE_REASONS, probe
from pcaptools.k8s import cni
from pcaptools.k8s.evidence import Evidence, EvidenceBuilder, distinct, evidence_of
from pcaptools.k8s.inventory import Inventory

if TYPE_CHECKING:
    from pcaptools.correlate.api import Correlation

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")
"""File names read as captures when a directory is given (other files are ignored)."""

EVIDENCE_COLUMNS = ("point", "file", "pcapng_interface", "ifindex", "node", "node_from", "interface", "interface_from",
                    "role", "role_from", "pod", "pod_from")  # fmt: skip
"""Columns of ``CaptureSet.inference``: each field's value and the evidence that decided it."""

COVERAGE = 0.9  # share of node-touching packets a node must be in to own a capture
_KEYS = {
    "node": "node", "nodename": "node", "node_name": "node", "host": "node", "hostname": "node",
    "pod": "pod", "podname": "pod", "pod_name": "pod",
    "namespace": "namespace", "podnamespace": "namespace", "pod_namespace": "namespace", "ns": "namespace",
    "interface": "interface", "ifname": "interface", "iface": "interface", "interfacename": "interface",
    "role": "role",
}  # fmt: skip


def parse_description(text: str) -> dict[str, str]:
    """``k8s.node=n1;k8s.podName=web-0;k8s.namespace=default`` (``;``, ``,`` or space separated) -> fields."""
    out: dict[str, str] = {}
    for part in re.split(r"[;,\s]+", text or ""):
        key, eq, val = part.partition("=")
        if not eq or not val:
            continue
        k = re.sub(r"^(io\.kubernetes\.|kubernetes\.|k8s\.)", "", key.strip().lower()).replace("-", "_")
        if k in _KEYS:
            out.setdefault(_KEYS[k], val.strip())
    if out.get("namespace") and out.get("pod") and "/" not in out["pod"]:
        out["pod"] = f"{out['namespace']}/{out['pod']}"
    return out


def capture_stem(path: str | os.PathLike) -> str:
    """File name without its capture suffix (``node-1_vxlan.calico.pcap.gz`` -> ``node-1_vxlan.calico``)."""
    name = Path(path).name
    for suf in sorted(CAPTURE_SUFFIXES + (".gz",), key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def read_links(path: str | os.PathLike) -> dict[int, str]:
    """ifindex -> interface name from ``ip -j link`` output; InventoryError when it is not that."""
    from pcaptools.jsonfile import load_json

    p = str(path)
    doc = load_json(p, what="ip -j link output", expected="the output of `ip -j link` on that node", error=InventoryError)
    if not isinstance(doc, list) or not all(isinstance(d, dict) and type(d.get("ifindex")) is int  # not bool, not text
                                            and isinstance(d.get("ifname"), str) for d in doc):  # fmt: skip
        raise InventoryError(
            f"{p}: expected the output of `ip -j link` (a list of objects with ifindex and ifname, an integer and a text), "
            f"found {_shape(doc)}; regenerate it with `ip -j link > NODE.links.json` on that node", path=p,
        )  # fmt: skip
    return {int(d["ifindex"]): str(d["ifname"]) for d in doc}


def _shape(doc) -> str:  # noqa: ANN001
    """What a JSON document that is not ``ip -j link`` output holds, named without quoting it."""
    if not isinstance(doc, list):
        return f"a JSON {type(doc).__name__}"
    bad = next(i for i, d in enumerate(doc) if not (isinstance(d, dict) and type(d.get("ifindex")) is int
                                                    and isinstance(d.get("ifname"), str)))  # fmt: skip
    d = doc[bad]
    if not isinstance(d, dict):
        return f"item {bad} a JSON {type(d).__name__}"
    return f"item {bad} with ifindex {type(d.get('ifindex')).__name__} and ifname {type(d.get('ifname')).__name__}"


def find_inventory(inputs: Sequence[str | os.PathLike], *, allow_outside: bool = False) -> str | None:
    """The inventory beside the inputs: a manifest's ``lab.inventory``, else an ``inventory.json`` in an input
    directory or beside (or one level above) an input file."""
    for src in inputs:
        p = Path(src)
        if _is_manifest(p):
            found = inventory_beside(p, allow_outside=allow_outside)
            if found:
                return found
        for d in ([p] if p.is_dir() else [p.parent, p.parent.parent]):
            if (d / "inventory.json").is_file():
                return str(d / "inventory.json")
    return None


def load_captures(
    inputs: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    inventory: Inventory | str | os.PathLike | dict | list | None = None,
    links: Iterable[str] = (),
    decoder: Callable | None = None,
    allow_outside: bool = False,
) -> CaptureSet:
    """A CaptureSet from manifests, directories and capture files (mixed); points of plain files are inferred.

    Files a manifest names must lie inside its directory unless ``allow_outside``.

    ``inventory`` (kubectl List, path or Inventory) names nodes and pods; ``links`` are ``ip -j link``
    dumps (``NODE.links.json`` or ``NODE=FILE``). ``cs.inference`` holds the evidence table
    (EVIDENCE_COLUMNS: each field and what decided it, "manifest" / "--point" for given ones) with
    ``attrs["warnings"]``. A single manifest (or only ``points``) is loaded exactly as CaptureSet.load does.
    """
    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    points = list(points)
    if not srcs and not points:
        raise CorrelationError("no captures given; pass capture files, directories of them, a manifest.json or --point NODE:IFACE=FILE")
    datasets = [s for s in srcs if is_dataset(s)]
    if len(srcs) == 1 and datasets and not points:  # a dataset alone: the points and evidence it was converted with
        cs = CaptureSet.load(srcs[0], decoder=decoder)
        cs.inference = stored_inference(srcs[0], cs)
        cs.skipped_files = list(read_meta(srcs[0]).get("skipped_files") or [])  # left out when it was converted
        cs.notes = [*skip_notes(cs.skipped_files), *cs.notes]
        return cs
    if is_capture_set(srcs, points) or (len(srcs) == 1 and datasets):  # a manifest, a dataset and/or --point: exactly what they say
        cs = CaptureSet.load(srcs[0] if srcs else None, points=points, decoder=decoder, allow_outside=allow_outside)
        how = ["--point"] * len(points)
        if srcs:
            how = ["manifest"] * (len(cs.points) - len(how)) + how  # manifest entries come first
        cs.inference = pd.DataFrame(
            [[p.name, p.file, p.pcapng_interface, p.ifindex, p.node, h, p.interface, h, p.role, h, p.pod, h if p.pod else ""]
             for p, h in zip(cs.points, how if len(how) == len(cs.points) else ["given"] * len(cs.points), strict=True)],
            columns=list(EVIDENCE_COLUMNS),
        )  # fmt: skip
        cs.inference.attrs = {"warnings": [], "inventory": None, "files": 0}
        if srcs and not datasets:  # a manifest `pcaptools manifest -o` wrote records the files it left out
            cs.skipped_files = _manifest_skipped(srcs[0], allow_outside=allow_outside)
            cs.notes = [*skip_notes(cs.skipped_files), *cs.notes]
        return cs
    dec = _once(decoder or _read_packets)
    found = _infer(srcs, points=points, inventory=inventory, links=links, allow_outside=allow_outside,
                   evidence=lambda path, nodes: evidence_of(dec(path), nodes))  # fmt: skip
    cs = CaptureSet.from_frames([(e, dec(e["file"])) for e in found.entries], cni=found.cni)
    cs.inference = found.table(cs.points)
    cs.skipped_files, cs.notes = list(found.skipped), [*skip_notes(found.skipped), *cs.notes]
    return cs


def infer_captures(
    inputs: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    inventory: Inventory | str | os.PathLike | dict | list | None = None,
    links: Iterable[str] = (),
    allow_outside: bool = False,
    batch_records: int = 1 << 16,
) -> tuple[list[dict], CaptureSet]:
    """:func:`load_captures`'s points and evidence, reading each file in batches of ``batch_records``
    (bounded memory, :mod:`pcaptools.k8s.evidence`): the manifest entries of the points and a CaptureSet
    with the same points and ``inference`` but no packets (its ``packets`` table is empty)."""
    from pcaptools.correlate.capture_set import name_points, split_entry
    from pcaptools.packets import iter_packets

    def evidence(path: str, nodes: _Nodes) -> Evidence:
        b = EvidenceBuilder(nodes)
        for pk in iter_packets(path, batch_records=batch_records):
            b.add(pk)
        return b.result()

    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found = _infer(srcs, points=list(points), inventory=inventory, links=links, allow_outside=allow_outside, evidence=evidence)
    split = [pt for e in found.entries for pt, _ in split_entry(e, found.evidence(e["file"]).pairs())]
    cs = CaptureSet(points=name_points(split), packets=pd.DataFrame(), cni=found.cni, notes=skip_notes(found.skipped),
                    skipped_files=list(found.skipped))  # fmt: skip
    cs.inference = found.table(cs.points)
    return found.entries, cs


class _Found:
    """What :func:`_infer` found: the manifest entries (given ones first), their evidence rows and warnings."""

    def __init__(self, entries: list[dict], rows: list[list], warnings: list[str], files: int, inv: Inventory | None,
                 cni: str, evidence: Callable[[str], Evidence], skipped: list[dict]) -> None:  # fmt: skip
        self.entries, self.rows, self.warnings, self.files, self.inv, self.cni = entries, rows, warnings, files, inv, cni
        self.evidence, self.skipped = evidence, skipped

    def table(self, points: list[CapturePoint]) -> pd.DataFrame:
        """The evidence table (EVIDENCE_COLUMNS, attrs) of the capture points made of the entries."""
        inv, warnings = self.inv, list(self.warnings)
        ev = pd.DataFrame(self.rows, columns=list(EVIDENCE_COLUMNS[1:]))
        if len(ev) != len(points):  # pragma: no cover - both follow split_entry's order
            raise CorrelationError(f"internal: {len(ev)} evidence rows for {len(points)} capture points")
        ev.insert(0, "point", [p.name for p in points])
        if inv is not None:
            out = ev[~ev["node"].isin(list(inv.nodes)) & ~ev["node_from"].str.startswith(("none", "manifest", "--point", "dataset"))]
            hosts = dict(zip(out["node"], out["role"], strict=False))
            if hosts:
                warnings.append(f"{', '.join(f'{h} ({r})' for h, r in hosts.items())}: not nodes of the inventory, "
                                "treated as hosts outside the cluster (role from their packets)")  # fmt: skip
        warnings += _shared_clocks(points, self.evidence)
        ev.attrs = {"warnings": list(dict.fromkeys(warnings)), "inventory": inv.source if inv is not None else None, "files": self.files}
        return ev


SKIP_REASONS = PROBE_REASONS
"""Why a capture file found by walking a directory was left out (``skipped_files``' ``reason``,
:data:`pcaptools.io.probe.PROBE_REASONS`): no packet of it can be read at all. A file whose records no decoder
reads is not left out: its rows are counted as ``unknown_linktype``, as for a file named on the command line."""


def _walk(srcs: list) -> tuple[list[tuple[str, str]], list[dict]]:
    """(path, "top" | "sub" of a directory given as input | "file" given) of the capture files among ``srcs``, and
    the files found by walking a directory that cannot be read at all (``{"path", "reason", "detail"}``, ``detail``
    without the path): those are left out, the others analysed. A file named on the command line is never left out
    (reading it says what is wrong); the run fails only when every capture file of the inputs is unreadable."""
    files: list[tuple[str, str]] = []
    skipped: list[dict] = []
    for s in srcs:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(CAPTURE_SUFFIXES))
            if not found:
                raise CorrelationError(
                    f"{p}: no capture files (*.pcap, *.pcapng, *.cap, optionally .gz) and no manifest.json in it; "
                    "expected NODE/IFACE.pcap or NODE/any.pcap files (see pcaptools/scripts/capture-cluster.sh)", path=str(p),
                )  # fmt: skip
            for f in found:
                why = probe(f)
                if why is None:
                    files.append((str(f), "top" if f.parent == p else "sub"))
                else:
                    skipped.append({"path": str(f), "reason": why[0], "detail": why[1]})
        elif p.exists():
            files.append((str(p), "file"))
        else:
            raise CorrelationError(f"{p}: no such file or directory; expected capture files, directories of them or a manifest.json", path=str(p))
    if skipped and not files:
        first = skipped[0]
        raise CorrelationError(
            f"none of the {len(skipped)} capture file(s) found in {', '.join(map(str, srcs))} can be read ({first['path']}: "
            f"{first['detail']}); expected pcap or pcapng captures written by tcpdump or dumpcap", path=first["path"],
        )  # fmt: skip
    return files, skipped


def skip_notes(skipped: Iterable[dict]) -> list[str]:
    """One note line per capture file left out: ``skipped PATH (reason): detail``."""
    return [f"skipped {s['path']} ({s['reason']}): {s['detail']}" for s in skipped]


def _manifest_skipped(source: str | os.PathLike, *, allow_outside: bool) -> list[dict]:
    """The ``skipped_files`` a manifest records (``pcaptools manifest -o``), paths resolved against its directory."""
    man = _manifest_path(source)
    doc = read_manifest(man, allow_outside=allow_outside)
    base = os.path.dirname(os.path.abspath(man))
    out = []
    for f in doc.get("skipped_files") or []:
        if isinstance(f, dict) and all(isinstance(f.get(k), str) for k in ("path", "reason", "detail")):
            out.append({"path": os.path.normpath(os.path.join(base, f["path"])), "reason": f["reason"], "detail": f["detail"]})
    return out


def skipped_files(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """The capture files found by walking the input directories that cannot be read at all and are left out of every
    command's answer, each ``{"path", "reason" (SKIP_REASONS), "detail"}`` (results carry the same list as
    ``skipped_files``; this walks again). Manifests and datasets name their files and are not walked: [] for them."""
    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    walked = [s for s in srcs if Path(s).is_dir() and not _is_manifest(s) and not is_dataset(s)]
    return _walk(walked)[1] if walked else []


def _given(srcs: list, points: list[str], *, allow_outside: bool) -> tuple[list[dict], list[tuple[str, str]], str, list[dict]]:
    """The entries manifests, datasets and ``--point`` specs give (each marked ``_from``), the plain files left to
    infer (path, where: see :func:`_walk`), the manifests' CNI label and the files found by walking left out."""
    manifests = [s for s in srcs if _is_manifest(s)]
    datasets = [s for s in srcs if is_dataset(s)]
    explicit: list[dict] = []
    cni_label = ""
    for m in manifests:
        man = _manifest_path(m)
        doc = read_manifest(man, allow_outside=allow_outside)  # files resolved against the manifest's directory
        cni_label = cni_label or str(doc.get("cni", ""))
        for c in doc["captures"]:
            explicit.append({**c, "_from": "manifest"})
    for d in datasets:
        explicit += [{**e, "_from": "dataset"} for e in dataset_entries(d)[0]]
    for spec in points:
        explicit.append({**parse_point_spec(spec), "_from": "--point"})
    taken = {os.path.realpath(e["file"]) for e in explicit}
    plain = [s for s in srcs if s not in manifests and s not in datasets]
    walked, skipped = _walk(plain) if plain else ([], [])
    files = [(f, w) for f, w in walked if os.path.realpath(f) not in taken]
    return explicit, files, cni_label, skipped


def _infer(srcs: list, *, points: list[str], inventory, links: Iterable[str], allow_outside: bool,
           evidence: Callable[[str, _Nodes], Evidence]) -> _Found:  # fmt: skip
    """The points of manifests, datasets, ``--point`` specs and plain files (inferred from ``evidence(path, nodes)``)."""
    explicit, files, cni_label, skipped = _given(srcs, points, allow_outside=allow_outside)
    inv = inventory if isinstance(inventory, Inventory) or inventory is None else Inventory.load(inventory)
    nodes = _Nodes(inv)
    ev_of = _once(lambda path: evidence(path, nodes))
    link_specs = _link_specs(links)
    warnings: list[str] = []
    found = []
    for f, where in files:
        found += _infer_file(f, where, ev_of(f), nodes, link_specs, warnings)
    # inventory nodes first (the first is the clock reference), then outside hosts; per node the
    # per-interface captures before its -i any capture (the order the lab's manifest lists them)
    rank = {n: i for i, n in enumerate(inv.nodes)} if inv is not None else {}
    found.sort(key=lambda t: (rank.get(t[0]["node"], len(rank)), t[0]["node"] if t[0]["node"] not in rank else "",
                              bool(t[0].get("interfaces")), t[0]["file"]))  # fmt: skip
    rows = [r for e in explicit for r in _explicit_rows(e, ev_of(e["file"]))] + [r for _, ev in found for r in ev]
    entries = [_clean(e) for e in explicit] + [e for e, _ in found]
    _check_unique(entries)
    return _Found(entries, rows, warnings, len(files), inv, cni_label, ev_of, skipped)


def stored_inference(directory: str | os.PathLike, cs: CaptureSet) -> pd.DataFrame:
    """The evidence table a dataset was converted with (EVIDENCE_COLUMNS, attrs), for the points of ``cs``."""
    inf = read_meta(directory).get("inference") or {}
    ev = pd.DataFrame(inf.get("rows") or [], columns=list(EVIDENCE_COLUMNS))
    for col in ("pcapng_interface", "ifindex"):  # null (none) in the file, -1 in the table
        ev[col] = ev[col].fillna(-1).astype("int64")
    if list(ev["point"]) != [p.name for p in cs.points]:
        raise CorrelationError(f"{directory}: its evidence names other capture points than it holds; convert the captures again",
                               path=str(directory))  # fmt: skip
    ev.attrs = {"warnings": list(inf.get("warnings") or []), "inventory": inf.get("inventory"), "files": int(inf.get("files") or 0)}
    return ev


def stored_captures(directory: str | os.PathLike) -> CaptureSet:
    """A dataset's capture points (as :meth:`CaptureSet.load` names them) and stored evidence, without its packets."""
    meta = read_meta(directory)
    pts = [CapturePoint(**{**p, "file": member(directory, p["file"]), "pod": p.get("pod") or "",
                           "ifindex": -1 if p.get("ifindex") is None else int(p["ifindex"]),
                           "pcapng_interface": -1 if p.get("pcapng_interface") is None else int(p["pcapng_interface"])})
           for p in meta["points"]]  # fmt: skip
    skipped = list(meta.get("skipped_files") or [])  # left out when it was converted
    cs = CaptureSet(points=pts, packets=pd.DataFrame(), cni=str(meta.get("cni") or ""), notes=skip_notes(skipped), skipped_files=skipped)
    cs.inference = stored_inference(directory, cs)
    return cs


def is_capture_set(inputs: Sequence[str | os.PathLike], points: Sequence[str]) -> bool:
    """True when the inputs say every capture point themselves: one manifest (or a directory holding one) and/or
    ``--point`` specs, nothing to infer."""
    return (len(inputs) == 1 and _is_manifest(inputs[0])) or (not inputs and bool(points))


def input_files(inputs: Sequence[str | os.PathLike], points: Sequence[str] = (), *, allow_outside: bool = False) -> list[dict]:
    """The capture files of these inputs as manifest entries (``file`` at least), in the order :func:`load_captures`
    decodes them: what :func:`pcaptools.correlate.stream.fits` prices and the files whose flows ``paths`` joins."""
    from pcaptools.correlate.capture_set import capture_entries

    inputs, points = list(inputs), list(points)
    if is_capture_set(inputs, points) or (len(inputs) == 1 and not points and is_dataset(inputs[0])):
        return capture_entries(inputs[0] if inputs else None, points=points, allow_outside=allow_outside)[0]
    explicit, files, _, _ = _given(inputs, points, allow_outside=allow_outside)
    return [*({"file": f} for f, _ in files), *explicit]  # plain files are decoded first, to infer their points


def correlate_inputs(inputs: Sequence[str | os.PathLike], *, points: Sequence[str] = (), inventory=None, links: Iterable[str] = (),
                     allow_outside: bool = False, window_ns: int | None = None, reference: str | None = None,
                     memory: int | None = None, out: str | os.PathLike | None = None,
                     window_rows: int | None = None, observer=None) -> tuple[Correlation, CaptureSet | None]:  # fmt: skip
    """Correlate what ``pcaptools correlate`` was given within the ``memory`` budget (default: a share of the memory
    available, :func:`pcaptools.correlate.budget.default_memory`), hops written to ``out``.

    Inputs larger than the budget are streamed in windows of corrected time (:mod:`pcaptools.correlate.stream`,
    the result's ``hops`` then empty, the table in ``out``); ``window_rows`` forces windows of about that many
    rows (tests). A set that names its points (a manifest, ``--point``) returns no CaptureSet; plain files,
    whose points are inferred (within the budget too: :func:`infer_captures`), return theirs, with its
    ``inference`` (its ``packets`` table is empty when streamed). ``observer`` sees the packets as they are read
    (:func:`pcaptools.correlate.stream.correlate_stream`; the one-window run hands it ``whole(cs, corr)``)."""
    corr, cs, _ = _correlate_inputs(inputs, points=points, inventory=inventory, links=links, allow_outside=allow_outside,
                                    window_ns=window_ns, reference=reference, memory=memory, out=out, window_rows=window_rows,
                                    observer=observer)  # fmt: skip
    return corr, cs


def _correlate_inputs(inputs, *, points, inventory, links, allow_outside, window_ns, reference, memory, out, window_rows,  # noqa: ANN001, ANN202
                      observer=None):  # fmt: skip
    """:func:`correlate_inputs` and how the run was cut (StreamStats, None for plain files correlated in memory);
    ``observer`` sees the packets as they are read (:func:`pcaptools.correlate.stream.correlate_stream`)."""
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS, correlate
    from pcaptools.correlate.budget import default_memory
    from pcaptools.correlate.stream import correlate_files, correlate_stream, fits, write_hops

    window_ns = DEFAULT_WINDOW_NS if window_ns is None else window_ns
    inputs, points = list(inputs), list(points)
    if is_capture_set(inputs, points):
        corr, stats = correlate_files(inputs[0] if inputs else None, points=points, window_ns=window_ns, reference=reference,
                                      memory=memory, out=out, allow_outside=allow_outside, window_rows=window_rows,
                                      observer=observer)  # fmt: skip
        return corr, None, stats
    if len(inputs) == 1 and not points and is_dataset(inputs[0]):  # its points and their evidence are stored
        corr, stats = correlate_files(inputs[0], window_ns=window_ns, reference=reference, memory=memory, out=out,
                                      window_rows=window_rows, observer=observer)  # fmt: skip
        return corr, stored_captures(inputs[0]), stats
    memory = default_memory() if memory is None else int(memory)
    if window_rows is not None or not fits(input_files(inputs, points, allow_outside=allow_outside), memory):
        entries, cs = infer_captures(inputs, points=points, inventory=inventory, links=links, allow_outside=allow_outside)
        corr, stats = correlate_stream(entries, window_ns=window_ns, reference=reference, memory=memory, window_rows=window_rows, out=out,
                                       observer=observer)  # fmt: skip
        corr.skipped_files, corr.notes = list(cs.skipped_files), [*cs.notes, *corr.notes]  # cs.notes: the files left out
        return corr, cs, stats
    cs = load_captures(inputs, points=points, inventory=inventory, links=links, allow_outside=allow_outside)
    corr = correlate(cs, window_ns=window_ns, reference=reference)
    if out is not None:
        write_hops([corr.hops], out)
    if observer is not None:
        observer.whole(cs, corr)
    return corr, cs, None


@dataclass
class Merged:
    """What :func:`merge_inputs` wrote: packets and capture points in the pcapng, the readers' notes (records skipped
    are not in the merged file either) and the capture set whose points were inferred (None for a streamed manifest
    or ``--point`` set: nothing inferred)."""

    packets: int
    points: int
    notes: list[str]
    captures: CaptureSet | None
    skipped_files: list[dict] = field(default_factory=list)  # capture files found by walking a directory, left out


def merge_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *, points: Sequence[str] = (),
                 inventory=None, links: Iterable[str] = (), dedup: bool = False, reference: str | None = None,  # noqa: ANN001
                 allow_outside: bool = False, memory: int | None = None, window_rows: int | None = None,
                 batch_records: int | None = None) -> Merged:  # fmt: skip
    """Merge what ``pcaptools merge`` was given into one pcapng on the reference clock (:mod:`pcaptools.correlate.merge`).

    Without ``memory``, or when the whole merge fits it (:data:`~pcaptools.correlate.merge.ROW_PEAK` a record), the
    capture set is loaded and correlated in memory; otherwise (bytes) the correlation is streamed
    when the inputs exceed the budget (:func:`correlate_inputs`; :class:`~pcaptools.correlate.merge.MergeRows` spills
    28 bytes per packet to ``TMPDIR``, ``dedup``'s comments are read back from a hops file in a temporary directory beside
    ``out``) and the capture files are read in windows: the same file byte for byte. ``window_rows`` forces streaming
    in windows of about that many rows and ``batch_records`` windows of records when writing (tests)."""
    from pcaptools.correlate.api import correlate
    from pcaptools.correlate.merge import ROW_PEAK, MergeRows, merge
    from pcaptools.correlate.stream import fits
    from pcaptools.dataset import original_files
    from pcaptools.process import temporary_directory

    srcs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    inv = inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside)
    sources = original_files(srcs)
    whole = memory is None or (batch_records is None and fits(input_files(srcs, points, allow_outside=allow_outside), memory,
                                                              row_bytes=ROW_PEAK))  # fmt: skip
    if whole and window_rows is None:
        cs = load_captures(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside)
        n = merge(cs, out, correlation=correlate(cs, reference=reference), dedup=dedup, batch_records=batch_records, sources=sources)
        return Merged(n, len(cs.points), list(cs.notes), cs, list(cs.skipped_files))
    rows = MergeRows(journeys=dedup)  # its spill (TMPDIR) is removed by write, or below on an error or a signal
    with temporary_directory(prefix=".merge-", dir=os.path.dirname(os.path.abspath(out))) as tmp:
        hops = os.path.join(tmp, "hops.parquet") if dedup else None
        try:
            _, cs = correlate_inputs(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside,
                                     reference=reference, memory=memory, out=hops, window_rows=window_rows, observer=rows)  # fmt: skip
            n = rows.write(out, dedup=dedup, hops=hops, memory=memory, batch_records=batch_records, sources=sources)
        finally:
            rows.close()
    skipped = list(cs.skipped_files) if cs is not None else []
    return Merged(n, rows.point_count, [*skip_notes(skipped), *rows.notes], cs, skipped)


def merge_captures(source: CaptureSet | str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   points: Sequence[str] = (), inventory=None, links: Iterable[str] = (), correlation: Correlation | None = None,  # noqa: ANN001
                   dedup: bool = False, reference: str | None = None, allow_outside: bool = False, memory: int | None = None,
                   batch_records: int | None = None, sources: dict[str, str] | None = None) -> int:  # fmt: skip
    """``pcaptools.merge_captures``: write a capture set, or the captures of manifests, directories and files, as one
    pcapng on the reference clock; the number of packets written.

    Given inputs (paths), this is ``pcaptools merge``: :func:`merge_inputs`, with ``memory`` (bytes) the same bounded
    path as ``merge --memory`` (the correlation streamed when the inputs exceed it, the files read in windows). Given a
    CaptureSet (already in memory, with its ``correlation`` if computed), ``memory`` bounds only the writing, as
    :func:`pcaptools.correlate.merge.merge` does; ``points``, ``inventory``, ``links`` and ``allow_outside`` apply to
    inputs, ``correlation`` and ``sources`` to a CaptureSet. Only the count is returned: for what ``pcaptools merge``
    also says (the readers' notes, the capture files left out, the inferred points) call
    :func:`merge_inputs` (``pcaptools.merge_inputs``), which returns :class:`Merged`; the notes a CaptureSet carries
    are its ``notes``."""
    from pcaptools.correlate.merge import merge

    if isinstance(source, CaptureSet):
        if correlation is None and reference is not None:
            from pcaptools.correlate.api import correlate

            correlation = correlate(source, reference=reference)
        return merge(source, out, correlation=correlation, dedup=dedup, memory=memory, batch_records=batch_records, sources=sources)
    return merge_inputs(source, out, points=points, inventory=inventory, links=links, dedup=dedup, reference=reference,
                        allow_outside=allow_outside, memory=memory, batch_records=batch_records).packets  # fmt: skip


def summary_lines(cs: CaptureSet) -> list[str]:
    """One line saying what was inferred (and by which evidence), then one ``warning:`` line per doubt."""
    ev = cs.inference
    if ev is None or not ev.attrs.get("files"):
        return []
    inf = ev[~ev["node_from"].isin(["manifest", "--point", "dataset"])]

    def tally(col: str) -> str:
        kinds = inf[col].str.split(":").str[0].value_counts()
        return ", ".join(f"{n} {k}" for k, n in kinds.items())

    nodes = list(dict.fromkeys(inf["node"]))
    line = (f"inferred {len(inf)} capture points on {len(nodes)} nodes/hosts ({', '.join(nodes)}) from "
            f"{ev.attrs['files']} files; node from {tally('node_from')}; role from {tally('role_from')}; "
            f"pods {int((inf['pod'] != '').sum())} (`pcaptools manifest` shows the evidence)")  # fmt: skip
    return [line] + [f"warning: {w}" for w in ev.attrs.get("warnings", [])]


def manifest_doc(cs: CaptureSet, out_dir: str | os.PathLike = ".") -> dict:
    """The capture set as a manifest (files relative to ``out_dir``) with each field's evidence, for review."""
    base = os.path.abspath(out_dir)
    ev = cs.inference
    by_point = {} if ev is None else {r["point"]: r for r in ev.to_dict("records")}
    groups: dict[tuple, dict] = {}
    for pt in cs.points:
        key = (pt.file, pt.pcapng_interface, pt.node)
        r = by_point.get(pt.name, {})
        rel = os.path.relpath(os.path.abspath(pt.file), base)
        if pt.ifindex >= 0:  # an -i any capture: one entry, its interfaces listed
            e = groups.setdefault(key, {
                "file": rel, "node": pt.node, "interface": "any", "role": "any",
                "pcapng_interface": pt.pcapng_interface if pt.pcapng_interface >= 0 else None,
                "interfaces": [], "evidence": {"node": r.get("node_from") or None}})  # fmt: skip
            item = {"ifindex": pt.ifindex, "interface": pt.interface, "role": pt.role, "pod": pt.pod or None}
            item["evidence"] = {k: r.get(f"{k}_from") or None for k in ("interface", "role", "pod")}
            e["interfaces"].append(item)
            continue
        e = {"file": rel, "node": pt.node, "interface": pt.interface, "role": pt.role, "pod": pt.pod or None,
             "pcapng_interface": pt.pcapng_interface if pt.pcapng_interface >= 0 else None}
        e["evidence"] = {k: r.get(f"{k}_from") or None for k in ("node", "interface", "role", "pod")}
        groups[(pt.file, pt.pcapng_interface, pt.name)] = e
    doc: dict = {"schema_version": 1, "format": "pcaptools-inferred/1", "cni": cs.cni, "captures": list(groups.values())}
    inv = None if ev is None else ev.attrs.get("inventory")
    doc["inventory"] = os.path.relpath(os.path.abspath(inv), base) if inv else None
    doc["warnings"] = list(ev.attrs.get("warnings", [])) if ev is not None else []
    if cs.skipped_files:  # the files left out when it was inferred (relative as ``file``), said again by load_captures
        doc["skipped_files"] = [{**f, "path": os.path.relpath(os.path.abspath(f["path"]), base)} for f in cs.skipped_files]
    return doc


# --- inference of one file ------------------------------------------------------------------------------
def _read_packets(path: str) -> pd.DataFrame:
    from pcaptools.packets import read_packets

    return read_packets(path, payload_hash=True)  # the correlator needs it: hashed in the decode walk, no second read


def _is_manifest(src) -> bool:
    p = Path(src)
    return (p.is_dir() and (p / "manifest.json").is_file()) or (p.is_file() and p.suffix == ".json")


def _clean(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def _explicit_rows(e: dict, ev: Evidence) -> list[list]:
    """Evidence rows of a manifest / --point entry, in the order split_entry makes its points."""
    src = e["_from"]
    idb = e.get("pcapng_interface")
    idb = -1 if idb is None else int(idb)
    sub = ev.part(iface=idb)
    ifx = sub.table["ifindex"].to_numpy(np.int64)
    iface = str(e.get("interface") or "")
    if len(sub) and (iface in ("", "any") or e.get("interfaces")) and (ifx >= 0).any():
        named = {int(i["ifindex"]): i for i in e.get("interfaces") or [] if isinstance(i, dict) and "ifindex" in i}
        return [[e["file"], idb, int(k), e.get("node", ""), src, str(named.get(int(k), {}).get("interface") or f"if{int(k)}"),
                 src, str(named.get(int(k), {}).get("role") or e.get("role") or "any"), src,
                 str(named.get(int(k), {}).get("pod") or ""), src if named.get(int(k), {}).get("pod") else ""]
                for k in np.unique(ifx)]  # fmt: skip
    pod = str(e.get("pod") or "")
    node = str(e.get("node") or "")
    return [[e["file"], idb, -1, node, src, iface, src, str(e.get("role") or "any"), src, pod, src if pod else ""]]


def _check_unique(entries: list[dict]) -> None:
    """CorrelationError when two files were given (or inferred) the same capture point."""
    seen: dict[str, str] = {}
    for e in entries:
        if e.get("interfaces") or e.get("interface") in ("", "any"):
            continue
        name = f"{e.get('node')}:{e.get('interface')}"
        if name in seen and seen[name] != e["file"]:
            raise CorrelationError(
                f"{e['file']}: inferred capture point {name}, the same as {seen[name]}; name one of them with "
                f"--point NODE:IFACE={e['file']}", path=e["file"],
            )  # fmt: skip
        seen[name] = e["file"]


def _link_specs(links: Iterable[str]) -> dict[str, str]:
    """node -> ip -j link file from ``NODE=FILE`` or ``NODE.links.json`` specs."""
    out = {}
    for spec in links:
        node, eq, file = str(spec).partition("=")
        if not eq:
            file = node
            node = Path(file).name.removesuffix(".json").removesuffix(".links")
        if not Path(file).is_file():
            raise InventoryError(f"--links {spec}: {file} does not exist; expected NODE=FILE or NODE.links.json (`ip -j link` output)", path=file)
        read_links(file)  # checked now, whether or not a capture of that node needs it: a file given is never ignored unread
        out[node] = file
    return out


class _Nodes:
    """Inventory lookups used by the inference: names -> node, address -> node, veth -> pod."""

    def __init__(self, inv: Inventory | None) -> None:
        self.inv = inv
        self.by_name: dict[str, tuple[str, str]] = {}
        self.addr_node: dict[str, str] = {}
        self.pod_ip: dict[str, str] = {}
        self.veth: dict[str, str] = {}
        self.lb_ips: set[str] = set()
        self.lb_ports: set[int] = set()
        self._node_of: dict[str, str] = {}
        if inv is None:
            return
        for n in inv.nodes.values():
            self.by_name[n.name.lower()] = (n.name, "node name")
            for h in n.hostnames:
                self.by_name.setdefault(h.lower(), (n.name, "hostname"))
                self.by_name.setdefault(h.lower().split(".")[0], (n.name, "hostname"))
            for a in n.addresses:
                self.by_name.setdefault(a, (n.name, "address"))
                self.addr_node[a] = n.name
        for p in inv.pods.values():
            if not p.host_network:
                for ip in p.ips:
                    self.pod_ip[ip] = p.name
        self.veth = cni.veth_owners(list(inv.pods))
        for s in inv.services.values():
            self.lb_ips.update(s.lb_ips)
            if s.type == "LoadBalancer":
                self.lb_ports.update(p.node_port for p in s.ports if p.node_port > 0)

    def match(self, name: str) -> tuple[str, str] | None:
        """(node, how) when ``name`` is an inventory node's name, hostname or address."""
        if not name:
            return None
        return self.by_name.get(name.lower()) or self.by_name.get(name.lower().split(".")[0])

    def node_of(self, addr: str) -> str:
        """Inventory node an address belongs to (its own, a pod's, inside its pod CIDR), else ''."""
        if addr not in self._node_of:
            kind, _name, node = self.inv.entity(addr) if self.inv is not None and addr else ("", "", "")
            self._node_of[addr] = node if kind in ("node", "pod") else ""
        return self._node_of[addr]

    def pod_node(self, pod: str) -> str:
        p = self.inv.pods.get(pod) if self.inv is not None else None
        return p.node if p is not None else ""


def _addr_cols(ev: Evidence) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) address strings per evidence row: outer addresses of tunnelled packets, else the IP addresses."""
    t = ev.table
    tun = t["tun"].to_numpy(bool)
    a = np.where(tun, t["osrc"].to_numpy(object), t["src"].to_numpy(object))
    b = np.where(tun, t["odst"].to_numpy(object), t["dst"].to_numpy(object))
    return a, b


def _touch(ev: Evidence, nodes: _Nodes) -> tuple[np.ndarray, list[str]]:
    """Evidence rows x inventory nodes: the packets carry an address of that node (its own, a pod's, one of its pod CIDR)."""
    names = list(nodes.inv.nodes) if nodes.inv is not None else []
    idx = {n: i for i, n in enumerate(names)}
    t = ev.table
    touch = np.zeros((len(t), len(names)), bool)
    for col in (*_addr_cols(ev), t["src"].to_numpy(object), t["dst"].to_numpy(object)):
        codes, uniq = pd.factorize(pd.Series(col, dtype=object).fillna(""))
        lut = np.array([idx.get(nodes.node_of(str(u)), -1) for u in uniq] + [-1], np.int64)
        k = lut[codes]
        hit = k >= 0
        touch[np.flatnonzero(hit), k[hit]] = True
    return touch, names


def _node_from_packets(ev: Evidence, nodes: _Nodes) -> tuple[str, str] | None:
    """(node, evidence) when one inventory node's addresses are in nearly every packet that carries a node's."""
    if nodes.inv is None or not len(ev):
        return None
    touch, names = _touch(ev, nodes)
    any_touch = touch.any(axis=1)
    w = ev.weights[any_touch]
    n = int(w.sum())
    if n < 3:
        return None
    cov = (touch[any_touch] * w[:, None]).sum(axis=0) / n
    order = np.argsort(-cov)
    best = int(order[0])
    second = float(cov[order[1]]) if len(order) > 1 else 0.0
    if cov[best] < COVERAGE or second > cov[best] - 0.2:
        return None
    ip = next((ip for ip, k in nodes.addr_node.items() if k == names[best]), "")
    return names[best], f"packets: node {names[best]} ({ip}), its pods or pod CIDR in {cov[best]:.0%} of {n} packets with a node's address"


def _node_from_packets_share(ev: Evidence, nodes: _Nodes, node: str) -> float:
    """Share of the packets carrying any inventory node's address that carry ``node``'s."""
    touch, names = _touch(ev, nodes)
    any_touch = touch.any(axis=1)
    w = ev.weights
    return float(w[any_touch & touch[:, names.index(node)]].sum() / w[any_touch].sum()) if any_touch.any() else 1.0


def _presence(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(addresses, packets holding each, packets with both addresses) over the rows where a and b are set
    (``w``: packets per row)."""
    ok = pd.notna(a) & pd.notna(b)
    codes, uniq = pd.factorize(np.concatenate([a[ok], b[ok]]).astype(str))
    wk = w[ok]
    n = int(wk.sum())
    ca, cb = codes[: ok.sum()], codes[ok.sum() :]
    other = cb != ca
    cnt = np.bincount(ca, weights=wk, minlength=len(uniq)) + np.bincount(cb[other], weights=wk[other], minlength=len(uniq))
    return np.asarray(uniq, object), np.rint(cnt).astype(np.int64), n


def _own_address(ev: Evidence) -> str | None:
    """The address in at least COVERAGE of the IP packets (the capturing host's own), if one is."""
    uniq, cnt, n = _presence(*_addr_cols(ev), ev.weights)
    if n < 3:
        return None
    k = int(np.argmax(cnt))
    return str(uniq[k]) if cnt[k] >= COVERAGE * n else None


def _pod_from_packets(ev: Evidence, nodes: _Nodes, node: str) -> tuple[str, str] | None:
    """The one inventory pod (on ``node`` if known) whose IP is in nearly every IP packet of a veth."""
    if nodes.inv is None or not len(ev):
        return None
    uniq, cnt, n = _presence(ev.table["src"].to_numpy(object), ev.table["dst"].to_numpy(object), ev.weights)
    if n < 1:
        return None
    cands = []
    for ip, c in zip(uniq, cnt, strict=True):
        pod = nodes.pod_ip.get(str(ip))
        if pod is None or c < COVERAGE * n:
            continue
        if node and nodes.inv.nodes.get(node) and nodes.pod_node(pod) != node:
            continue
        cands.append((pod, str(ip), c / n))
    if len(cands) != 1:
        return None
    pod, ip, share = cands[0]
    return pod, f"packets: pod IP {ip} in {share:.0%} of {n} IP packets"


def _names(path: str, where: str, nodes: _Nodes) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """((node, evidence) | None, (interface, evidence) | None) from the directory and file name.

    ``where``: "sub" (in a subdirectory of an input directory: NODE/IFACE.pcap), "top" (directly in
    one: the file name alone), "file" (given itself: its directory counts when it is an inventory node,
    or when the file name is an interface and names no node).
    """
    stem = capture_stem(path)
    parent = Path(path).parent.name
    by_stem = _stem_names(path, stem, nodes)
    use_dir = where == "sub" or (where == "file" and bool(parent) and (
        nodes.match(parent) is not None or (by_stem[0] is None and (stem == "any" or cni.role_of(stem) is not None))))
    if use_dir:
        m = nodes.match(parent)
        node = (m[0], f"name: directory {parent!r} = inventory {m[1]}") if m else (parent, f"name: directory {parent!r}")
        rest = stem
        for sep in ("_", "-"):
            if stem.startswith(parent + sep):
                rest = stem[len(parent) + 1 :]
        if nodes.match(stem) or stem == parent:
            return node, None
        return node, (rest, f"name: file {Path(path).name!r}")
    return by_stem


def _stem_names(path: str, stem: str, nodes: _Nodes) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """The file name alone: NODE_IFACE, an inventory node (NODE.pcap), NODE-IFACE."""
    if "_" in stem:  # node names (DNS labels) never hold '_'
        nd, iface = stem.split("_", 1)
        m = nodes.match(nd)
        return ((m[0], f"name: file {Path(path).name!r} (NODE_IFACE) = inventory {m[1]}") if m else
                (nd, f"name: file {Path(path).name!r} (NODE_IFACE)")), (iface, f"name: file {Path(path).name!r} (NODE_IFACE)")  # fmt: skip
    m = nodes.match(stem)
    if m:
        return (m[0], f"name: file {Path(path).name!r} = inventory {m[1]}"), None
    if nodes.inv is not None:  # NODE-IFACE with an inventory node as prefix
        for name in sorted(nodes.by_name, key=len, reverse=True):
            if stem.lower().startswith(name + "-") and len(stem) > len(name) + 1:
                n, how = nodes.by_name[name]
                return (n, f"name: file {Path(path).name!r} (NODE-IFACE) = inventory {how}"), (stem[len(name) + 1 :], f"name: file {Path(path).name!r} (NODE-IFACE)")
    if "-" in stem:
        nd, iface = stem.rsplit("-", 1)
        if cni.role_of(iface):
            return (nd, f"name: file {Path(path).name!r} (NODE-IFACE)"), (iface, f"name: file {Path(path).name!r} (NODE-IFACE)")
    return None, None


def _interfaces_of(path: str) -> list:
    """pcapng interface blocks of a file ([] for classic pcap, whose header names no interface)."""
    from pcaptools.io import read_records
    from pcaptools.io.sniff import open_capture

    if open_capture(path).format != "pcapng":
        return []
    return list(read_records(path).interfaces)


def _infer_file(path: str, where: str, ev: Evidence, nodes: _Nodes, link_specs: dict[str, str],
                warnings: list[str]) -> list[tuple[dict, list[list]]]:  # fmt: skip
    """Manifest entries (with evidence rows in split_entry's order) of one plain capture file."""
    idbs = _interfaces_of(path)
    used = sorted({int(i) for i in ev.table["iface"]}) if len(ev) else []
    units = [(i, ev.part(iface=i)) for i in used] if len(used) > 1 else [(-1, ev)]
    # the file name names one interface; a file holding several (e.g. concatenated sections) names each
    # by its own block, else by its number (or splits it per ifindex when it is an -i any capture)
    file_iface = len(units) == 1
    if not file_iface and _names(path, where, nodes)[1] is not None:
        warnings.append(f"{path}: holds {len(units)} pcapng interfaces, so the interface in its file name names none of them; "
                        f"they are named by their interface blocks, else pcapng number or ifindex (pass --point NODE:IFACE={path} to name one)")  # fmt: skip
    out = []
    for idb, sub in units:
        info = idbs[idb if idb >= 0 else (used[0] if used else 0)] if idbs else None
        out.append(_infer_unit(path, where, idb, sub, info, nodes, link_specs, warnings, file_iface=file_iface))
    # one interface name in several blocks (concatenated captures of one interface): each keeps its number
    names = [(e["node"], e["interface"]) for e, _ in out if not e.get("interfaces")]
    for e, rows in out:
        key = (e["node"], e["interface"])
        if not e.get("interfaces") and names.count(key) > 1:
            e["interface"] = rows[0][5] = f"{e['interface']}#{e['pcapng_interface']}"
            rows[0][6] += f"; #{e['pcapng_interface']}: pcapng interface number, {names.count(key)} interfaces have this name"
    if len(set(names)) < len(names):
        warnings.append(f"{path}: several pcapng interfaces share a name; each is named NAME#<pcapng interface number> "
                        f"(pass --point NODE:IFACE={path} to name one)")  # fmt: skip
    return out


def _infer_unit(path: str, where: str, idb: int, ev: Evidence, info, nodes: _Nodes, link_specs: dict[str, str],
                warnings: list[str], *, file_iface: bool = True) -> tuple[dict, list[list]]:  # fmt: skip
    """Manifest entry and evidence rows of one interface of a capture file (``idb`` -1: the whole file)."""
    name_node, name_iface = _names(path, where, nodes)
    if not file_iface:
        name_iface = None
    kv: dict[str, str] = {}
    node = iface = role = pod = None  # (value, evidence)
    if info is not None:
        kv = {**parse_description(info.hardware), **parse_description(info.description)}
        what = f"pcapng: interface {info.id}"
        if info.name and info.name not in ("-", "any") and not info.name.startswith("/"):
            n, colon, i = info.name.rpartition(":")
            if colon and n:
                node = (n, f"{what} if_name {info.name!r}")
                iface = (i, f"{what} if_name {info.name!r}")
            else:
                iface = (info.name, f"{what} if_name")
        if kv.get("node"):
            node = (kv["node"], f"{what} if_description {info.description!r}")
        if kv.get("interface") and iface is None:
            iface = (kv["interface"], f"{what} if_description")
        if kv.get("role"):
            role = (kv["role"], f"{what} if_description")
        if kv.get("pod"):
            pod = (kv["pod"], f"{what} if_description")
        if node is not None:
            m = nodes.match(node[0])
            if m:
                node = (m[0], node[1] + f" = inventory {m[1]}")
    if node is None and name_node is not None:
        node = name_node
    if iface is None and name_iface is not None:
        iface = name_iface
    is_any = len(ev) > 0 and bool((ev.table["ifindex"].to_numpy(np.int64) >= 0).any()) and (iface is None or iface[0] == "any")
    if not is_any and iface is None and idb >= 0:
        iface = (f"if{idb}", "none: pcapng interface number")
    ifname = iface[0] if iface else ""
    conv = cni.role_of(ifname) if ifname else None
    # pod of a hashed veth name (Calico, AWS VPC CNI), checked against what else is known
    if not is_any and ifname in nodes.veth:
        owner = nodes.veth[ifname]
        how = f"convention: veth name {ifname} = {ifname[:-11]} + sha1('{owner.replace('/', '.')}')[:11] ({cni.VETH_HASH_PREFIX[ifname[:-11]]})"
        if pod is not None and pod[0] != owner:
            raise CorrelationError(
                f"{path}: {pod[1]} says pod {pod[0]}, but the veth name {ifname} is {owner}'s ({how}); "
                f"if the description is right, pass --point NODE:{ifname}={path} and fix the pod in `pcaptools manifest` output",
                path=path,
            )  # fmt: skip
        pod = pod or (owner, how)
    # node from the packets: decides when nothing better did, and contradicts a name that matched the inventory
    by_packets = _node_from_packets(ev, nodes)
    if node is None and pod is not None and nodes.pod_node(pod[0]):
        node = (nodes.pod_node(pod[0]), f"inventory: pod {pod[0]} runs there ({pod[1]})")
    if node is None and by_packets is not None:
        node = by_packets
    if pod is not None and node is not None and nodes.pod_node(pod[0]) and nodes.inv and node[0] in nodes.inv.nodes \
            and nodes.pod_node(pod[0]) != node[0]:  # fmt: skip
        raise CorrelationError(
            f"{path}: captured on node {node[0]} ({node[1]}), but pod {pod[0]} ({pod[1]}) runs on "
            f"{nodes.pod_node(pod[0])} per the inventory; pass --point NODE:{ifname or 'IFACE'}={path} with the right node",
            path=path,
        )  # fmt: skip
    if by_packets is not None and node is not None and node[0] in (nodes.inv.nodes if nodes.inv else {}) and by_packets[0] != node[0]:
        cov_named = _node_from_packets_share(ev, nodes, node[0])
        if cov_named < COVERAGE:
            raise CorrelationError(
                f"{path}: named node {node[0]} by {node[1]}, but {by_packets[1]} (node {node[0]} in {cov_named:.0%}); "
                f"if the name is right, pass --point {node[0]}:{ifname or 'IFACE'}={path}", path=path,
            )  # fmt: skip
    if node is None:
        stem = capture_stem(path)
        node = (name_node or (stem, ""))[0], "none: file stem"
        warnings.append(
            f"{path}: no node evidence (no pcapng description, name not an inventory node, no node address decides "
            f"in its packets); named {node[0]!r} after the file; pass --point NODE:IFACE={path} to name it"
        )  # fmt: skip
    # role
    if role is None and nodes.inv is not None and node[0] not in nodes.inv.nodes and not is_any:
        role = _outside_role(ev, nodes)
    if role is None and conv is not None:
        role = (conv[0], f"convention: {ifname}: {conv[1]}")
    if role is None:
        role = ("any", "none: unlabelled")
        if not is_any:
            warnings.append(f"{path}: interface {ifname or '(unnamed)'} matches no plugin naming convention; role 'any'")
    if pod is None and role[0] == "pod-veth" and not is_any:
        pod = _pod_from_packets(ev, nodes, node[0])
        if pod is None and nodes.inv is not None:
            warnings.append(f"{path}: pod veth {ifname} names no inventory pod (no CNI hash match) and no single pod IP "
                            f"is in {COVERAGE:.0%} of its packets; pod unknown, set it in `pcaptools manifest` output")  # fmt: skip
    entry = {"file": path, "node": node[0], "interface": ifname, "role": role[0]}
    if pod is not None:
        entry["pod"] = pod[0]
    if idb >= 0:
        entry["pcapng_interface"] = idb
    if not is_any:
        return entry, [[path, idb, -1, node[0], node[1], ifname, iface[1] if iface else "", role[0], role[1],
                        pod[0] if pod else "", pod[1] if pod else ""]]  # fmt: skip
    entry.update(interface="any", role="any")
    linkmap, lsrc = _links_for(path, node[0], link_specs)
    if linkmap is None:
        warnings.append(f"{path}: -i any capture without an `ip -j link` dump of {node[0]}; its interfaces are named "
                        f"if<N> (put {node[0]}.links.json beside it or pass --links)")  # fmt: skip
    rows, items = [], []
    for k in np.unique(ev.table["ifindex"].to_numpy(np.int64)):
        k = int(k)
        part = ev.part(ifindex=k)
        nm = (linkmap or {}).get(k)
        nm_ev = f"links: {lsrc} ifindex {k}" if nm else "none: SLL2 ifindex"
        nm = nm or f"if{k}"
        c = cni.role_of(nm) if nm else None
        r = (c[0], f"convention: {nm}: {c[1]}") if c else ("other", f"none: {nm} matches no convention")
        pd_ = None
        if nm in nodes.veth:
            owner = nodes.veth[nm]
            pd_ = (owner, f"convention: veth name {nm} = {nm[:-11]} + sha1('{owner.replace('/', '.')}')[:11]")
        elif r[0] == "pod-veth":
            pd_ = _pod_from_packets(part, nodes, node[0])
        item = {"ifindex": k, "interface": nm, "role": r[0]}
        if pd_:
            item["pod"] = pd_[0]
        items.append(item)
        rows.append([path, idb, k, node[0], node[1], nm, nm_ev, r[0], r[1], pd_[0] if pd_ else "", pd_[1] if pd_ else ""])
    entry["interfaces"] = items
    return entry, rows


def _outside_role(ev: Evidence, nodes: _Nodes) -> tuple[str, str]:
    """lb / client / external for a host that is not an inventory node, from its packets.

    lb: the same packet (source, port, IP id, TCP seq) arrives for a LoadBalancer ingress IP and leaves
    for a node or pod (translated here), or packets go to a LoadBalancer service's nodePort on a node
    while none is addressed to an ingress IP (an instance-target balancer's node side); client: its own
    address opens TCP connections. Heuristics: a client that targets those nodePorts directly looks like lb.
    """
    t = ev.table
    w = ev.weights
    dst = t["dst"].astype(str).to_numpy()
    to_node = np.isin(dst, list(nodes.addr_node))
    if nodes.lb_ports and to_node.any() and not np.isin(dst, list(nodes.lb_ips)).any():
        port = t["lbport"].to_numpy(np.int64)
        hit = to_node & (port >= 0)
        if hit.any():
            ports = sorted({int(x) for x in port[hit]})
            return "lb", f"packets: {int(w[hit].sum())} to LoadBalancer nodePorts {ports} on nodes, none to an ingress IP"
    if nodes.lb_ips:
        to_lb = np.isin(dst, list(nodes.lb_ips))
        if ev.translated():
            ips = sorted(set(dst[to_lb]))
            return "lb", f"packets: arrive for LoadBalancer ingress {', '.join(ips)} and leave for nodes (translated here)"
    own = _own_address(ev)
    syn = t["syn"].to_numpy(bool)
    if own is not None and (syn & (t["src"].astype(str).to_numpy() == own)).any():
        return "client", f"packets: own address {own} opens connections (SYN)"
    return "external", "packets: not an inventory node, opens no connection"


def _links_for(path: str, node: str, specs: dict[str, str]) -> tuple[dict[int, str] | None, str]:
    """ip -j link of an -i any capture: --links, else NODE.links.json / STEM.links.json / links.json beside it."""
    if node in specs:
        return read_links(specs[node]), f"--links {specs[node]}"
    p = Path(path)
    stem = capture_stem(path)
    for cand in (p.parent / f"{stem}.links.json", p.parent / f"{node}.links.json", p.parent / "links.json",
                 p.parent.parent / f"{node}.links.json"):  # fmt: skip
        if cand.is_file():
            return read_links(cand), f"{cand.name}"
    return None, ""


def _shared_clocks(points: list[CapturePoint], evidence: Callable[[str], Evidence]) -> list[str]:
    """Warnings for two node names whose captures hold the same packets at identical timestamps (one host)."""
    files = list(dict.fromkeys(p.file for p in points))
    if sum(len(evidence(f)) for f in files) == 0 or len({p.node for p in points}) < 2:
        return []
    shift = max(evidence(f).clock_shift for f in files)  # every file's sample at the coarsest one
    keys: dict[str, list[np.ndarray]] = {}
    for p in points:
        keys.setdefault(p.node, []).append(evidence(p.file).part(iface=p.pcapng_interface, ifindex=p.ifindex).clock_keys(shift))
    cats = sorted(keys)
    out = []
    per = {i: distinct(*keys[n]) for i, n in enumerate(cats)}
    for i in range(len(cats)):
        for j in range(i + 1, len(cats)):
            common = np.intersect1d(per[i], per[j], assume_unique=True).size
            if common << shift >= 10 and common >= 0.5 * min(per[i].size, per[j].size):
                out.append(f"{cats[i]} and {cats[j]} hold {common << shift} packets with identical timestamps: one clock, "
                           f"likely one host under two names; name both the same with --point")  # fmt: skip
    return out


def manifest_drops(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, int]:
    """Point ``NODE:IFACE`` -> packets its capture reports dropped (a manifest's ``tcpdump``: dropped, or
    received minus captured), for the captures that report any (a dataset keeps its manifest's); {} where no
    input is a readable manifest."""
    out: dict[str, int] = {}
    for src in [inputs] if isinstance(inputs, (str, Path)) else list(inputs):
        p = Path(src)
        if is_dataset(p):  # a dataset keeps what its manifest said
            out.update({str(k): int(v) for k, v in read_meta(p)["capture_drops"].items()})
            continue
        p = p / "manifest.json" if p.is_dir() else p
        if p.suffix != ".json" or not p.is_file():
            continue
        try:
            doc = read_manifest(p, allow_outside=True)  # validated; only the counts are read here
        except InventoryError:
            continue  # a bad manifest is reported by whoever reads its captures
        for c in doc["captures"]:
            t = c.get("tcpdump")
            if not isinstance(t, dict) or not c.get("node") or not c.get("interface"):
                continue
            n = {k: t.get(k) if type(t.get(k)) is int else 0 for k in ("dropped", "received", "captured")}
            lost = n["dropped"] or max(n["received"] - n["captured"], 0)
            if lost > 0:
                out[f"{c['node']}:{c['interface']}"] = lost
    return out
