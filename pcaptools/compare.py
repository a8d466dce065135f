"""Compare CNI data planes from capture sets: overlay mode, encapsulation overhead, MTU/MSS, fragments, hops, latency.

Everything is measured from the tables of the layers above (packets, flows, correlation hops, paths);
nothing is assumed from a capture set's name or manifest ``cni``. A metric that the captures cannot
answer (no uplink capture, no cross-node pod traffic...) is ``None`` ("n/a"), never 0.

One code path whatever the size: the packet metrics are exact, mergeable reductions (:class:`_Tally`: counts,
sums, maxima, value counts from which medians and modes are read) over packet tables, the flow metrics value
counts over per-file flow tables, the hop metrics a pass over whole journeys. In memory each file is one table
(decoded once, shared with the correlation); within a ``memory`` budget that the captures exceed, the files are
read in batches (:func:`pcaptools.packets.iter_packets`), their flows computed within the budget
(:func:`pcaptools.flow_stream.iter_flows`), the correlation and paths streamed
(:func:`pcaptools.k8s.paths_stream.load_paths_bounded`) and the hops read back a row group at a time. The
results are the same. What a streamed set still holds whole: the per-hop latency samples of cross-node
pod-to-pod packets (the ``hop_samples`` table the figures draw, about 20 bytes a sample) and the path table.

Example::

    cmp = compare(["sample_pcaps/vpc", "sample_pcaps/calico-vxlan"])
    print(cmp.summary)

Tables only: figures and HTML are drawn from them by :mod:`pcaptools.render` (this module imports nothing from it).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools._callable import make_callable
from pcaptools.errors import CorrelationError
from pcaptools.flows import LINK_HEADER
from pcaptools.schema import (
    COMPARISON_CROSS_NODE_COLUMNS,
    COMPARISON_HOP_LATENCY_COLUMNS,
    COMPARISON_HOP_SAMPLE_COLUMNS,
    COMPARISON_LATENCY_COLUMNS,
    COMPARISON_MODE_COLUMNS,
    COMPARISON_POINTS_COLUMNS,
    COMPARISON_SUMMARY_COLUMNS,
    COMPARISON_WIRE_BYTES_COLUMNS,
    Column,
    conform,
    validate,
)

UPLINK_ROLES = ("node-uplink", "any")
"""Point roles whose packets count as 'on the uplink' (the wire between nodes); ``any`` covers unlabelled captures."""

TUNNEL_DEVICE_ROLE = "overlay"
"""Point role of a tunnel device (vxlan.calico, flannel.1, ...): packets seen there before encapsulation."""

_IP_OVERHEAD = {4: 40, 6: 60}  # IP + TCP header bytes without options: MSS + this = path MTU

STREAM_BATCH_RECORDS = 1 << 16
"""Records per packet batch when a set is streamed: the batch's table and its per-row arrays, some 30 MiB."""

MIN_FLOW_MEMORY = 96 << 20
"""Least memory a file's flows are given beyond the libraries' (when the run already holds its budget or more: a
smaller window costs more in per-window work than it saves)."""

HOPS_BATCH_ROWS = 1 << 16
"""Hops rows read back at a time from a streamed set's hops file (plus the journey carried over): some 15 MiB."""


@dataclass
class _Tally:
    """Exact, mergeable reductions over some packets of one capture point: counts, sums, maxima and value counts
    (medians and modes are read from the counts, so merging batches loses nothing)."""

    packets: int = 0
    tunnelled: int = 0
    kinds: Counter = field(default_factory=Counter)  # tunnel kind -> tunnelled packets
    vnis: set = field(default_factory=set)  # VNIs / keys of tunnelled packets
    ports: set = field(default_factory=set)  # outer UDP destination ports of tunnelled packets
    enc: Counter = field(default_factory=Counter)  # encapsulation bytes of a tunnelled packet -> packets
    enc_sum: int = 0
    wire_sum: int = 0
    pay_sum: int = 0
    full_pay: int = 0  # largest TCP payload (0: no TCP data) and, over the segments carrying that much:
    full_enc: int = 0  # their encapsulation bytes,
    full_pay_sum: int = 0  # payload bytes
    full_wire: int = 0  # and frame bytes
    max_ip: int = -1  # largest inner IP packet
    max_ip_tun: int = -1  # largest inner IP packet of tunnelled packets
    max_wire_ip: int = -1  # largest outermost IP packet
    max_frame: int = -1  # largest frame
    syn_mss: Counter = field(default_factory=Counter)  # MSS option of SYN / SYN-ACK packets -> packets
    pod_mss: Counter = field(default_factory=Counter)  # the same, sent from a pod address of the inventory
    fragments: int = 0
    frag_needed: int = 0  # ICMP frag-needed / ICMPv6 packet-too-big by IP version (the per-point count)
    frag_needed_any: int = 0  # ICMP type 3 code 4 or ICMPv6 type 2 whatever the IP version (the set's count)
    frag_mtus: set = field(default_factory=set)

    def merge(self, o: _Tally) -> _Tally:
        """This tally with ``o``'s packets added (in place)."""
        for k in ("packets", "tunnelled", "enc_sum", "wire_sum", "pay_sum", "fragments", "frag_needed", "frag_needed_any"):
            setattr(self, k, getattr(self, k) + getattr(o, k))
        for k in ("kinds", "enc", "syn_mss", "pod_mss"):
            getattr(self, k).update(getattr(o, k))
        for k in ("vnis", "ports", "frag_mtus"):
            getattr(self, k).update(getattr(o, k))
        for k in ("max_ip", "max_ip_tun", "max_wire_ip", "max_frame"):
            setattr(self, k, max(getattr(self, k), getattr(o, k)))
        if o.full_pay > self.full_pay:
            self.full_pay, self.full_enc, self.full_pay_sum, self.full_wire = o.full_pay, o.full_enc, o.full_pay_sum, o.full_wire
        elif o.full_pay == self.full_pay and o.full_pay > 0:
            self.full_enc += o.full_enc
            self.full_pay_sum += o.full_pay_sum
            self.full_wire += o.full_wire
        return self


def _counts(values: np.ndarray) -> Counter:
    """Value counts of an integer array."""
    u, c = np.unique(values, return_counts=True)
    return Counter(dict(zip(u.tolist(), c.tolist(), strict=True)))


def _median(counts: Counter) -> float:
    """np.median of the values these counts stand for (the mean of the two middle ones for an even number)."""
    v = sorted(counts)
    cum = np.cumsum([counts[x] for x in v])
    n = int(cum[-1])
    lo, hi = v[int(np.searchsorted(cum, (n - 1) // 2, side="right"))], v[int(np.searchsorted(cum, n // 2, side="right"))]
    return (lo + hi) / 2


def _mode_value(counts: Counter) -> int:
    """The most common value, the smallest of the most common (as ``pd.Series.mode().iloc[0]``)."""
    top = max(counts.values())
    return int(min(v for v, c in counts.items() if c == top))


@dataclass
class _FlowTally:
    """Value counts over flow tables: uplink flows' encapsulation bytes, pod flows' effective MSS and path MTU."""

    enc: Counter = field(default_factory=Counter)
    eff: Counter = field(default_factory=Counter)
    pmtu: Counter = field(default_factory=Counter)

    def add_uplink(self, fl: pd.DataFrame) -> None:
        """Count the uplink flows of one table."""
        self.enc.update(_counts(fl["encap_overhead_bytes"].to_numpy(np.int64)))

    def add_pod(self, fl: pd.DataFrame) -> None:
        """Count the effective MSS (and the path MTU it implies) of the flows that announced both MSS."""
        both = fl.loc[(fl["mss_orig"] >= 0) & (fl["mss_resp"] >= 0)]
        if not len(both):
            return
        eff = np.minimum(both["mss_orig"].to_numpy(np.int64), both["mss_resp"].to_numpy(np.int64))
        v6 = both["orig_h"].astype(str).str.contains(":").to_numpy(bool)
        self.eff.update(_counts(eff))
        self.pmtu.update(_counts(eff + np.where(v6, _IP_OVERHEAD[6], _IP_OVERHEAD[4])))


@dataclass
class _Set:
    """One measured capture set: its points, their packet tallies, flow tallies, correlation and paths."""

    label: str
    source: str
    cni_declared: str
    points: pd.DataFrame  # point, node, interface, role, pod, file, packets
    tallies: dict[str, _Tally]  # point -> its packets' reductions
    flows: _FlowTally
    correlation: object
    paths: pd.DataFrame | None
    nat: pd.DataFrame | None
    inventory: object
    routing: str | None  # Inventory.pod_network's routing verdict from every hop (None without an inventory)
    hops: Callable[[], Iterator[pd.DataFrame]]  # the whole hops table, in parts holding whole journeys
    notes: list[str] = field(default_factory=list)
    hops_file: Path | None = None  # the streamed hops (a Parquet file in a temporary directory), None in memory
    streamed: dict | None = None  # how the streamed correlation and paths were cut (PathSet.streamed), None in memory
    keep: object = None  # what must live as long as the result (the temporary directory)


@dataclass
class Comparison:
    """Result of :func:`compare`: a metric x capture-set ``summary`` plus detail tables, JSON and figures."""

    labels: list[str]
    summary: pd.DataFrame  # COMPARISON_SUMMARY_COLUMNS + one object column per label
    mode: pd.DataFrame  # COMPARISON_MODE_COLUMNS
    wire_bytes: pd.DataFrame  # COMPARISON_WIRE_BYTES_COLUMNS (uplink bytes)
    points: pd.DataFrame  # COMPARISON_POINTS_COLUMNS
    latency: pd.DataFrame  # COMPARISON_LATENCY_COLUMNS
    hop_latency: pd.DataFrame  # COMPARISON_HOP_LATENCY_COLUMNS
    cross_node: pd.DataFrame  # COMPARISON_CROSS_NODE_COLUMNS
    sources: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    # label -> the captures found in its directory that cannot be read at all, left out ({path, reason, detail})
    skipped_files: dict[str, list[dict]] = field(default_factory=dict)
    hop_samples: pd.DataFrame | None = None  # COMPARISON_HOP_SAMPLE_COLUMNS: the samples behind hop_latency, for CDFs
    capture_points: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> point, node, interface, role, pod, file, packets
    correlations: dict[str, object] = field(default_factory=dict, repr=False)  # label -> its Correlation (hops: see hops_files)
    paths: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> its paths table (PATH_COLUMNS)
    nat: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> its NAT table (NAT_COLUMNS)
    inventories: dict[str, object] = field(default_factory=dict, repr=False)  # label -> its Inventory, None without one
    # label -> its hops as a Parquet file when the set was streamed (its correlation's ``hops`` then holds only the
    # paths' representative journeys); the files live as long as this Comparison
    hops_files: dict[str, Path | None] = field(default_factory=dict, repr=False)
    streamed: dict[str, dict | None] = field(default_factory=dict, repr=False)  # label -> windows, carried journeys, buckets; None in memory
    _keep: list = field(default_factory=list, repr=False)

    def hop_tables(self, label: str) -> Iterator[pd.DataFrame]:
        """The whole hops table of ``label`` in parts that hold whole journeys: one part in memory, a Parquet row
        group at a time when streamed."""
        return _hop_parts(self.hops_files.get(label), self.correlations[label])

    def value(self, metric: str, label: str):
        """One summary cell (None when not measurable)."""
        row = self.summary.loc[self.summary["metric"] == metric]
        if not len(row):
            raise KeyError(f"no metric {metric!r}; metrics are {list(self.summary['metric'])}")
        v = row.iloc[0][label]
        return None if _missing(v) else v

    def to_dict(self) -> dict:
        """Plain data: capture sets, summary rows (value per label, None = n/a) and the detail tables (their declared
        absent values, such as ``largest_ip`` -1 of a point without IP packets, as None)."""
        from pcaptools.render.records import comparison_details

        return {
            "capture_sets": {lab: {"source": self.sources.get(lab, ""), "notes": self.notes.get(lab, []),
                                   "skipped_files": self.skipped_files.get(lab, [])} for lab in self.labels},  # fmt: skip
            "summary": [
                {"section": r["section"], "metric": r["metric"], "unit": r["unit"], "doc": r["doc"],
                 "values": {lab: _plain(r[lab]) for lab in self.labels}}
                for r in self.summary.to_dict(orient="records")
            ],  # fmt: skip
            **comparison_details(self),
        }

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)


def _hop_parts(hops_file: Path | None, correlation, *, batch_rows: int = HOPS_BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """A correlation's hops in parts of whole journeys: its table, or its streamed file about ``batch_rows`` rows at a
    time (a journey's rows are consecutive in the file: the last journey of a batch is carried to the next)."""
    if hops_file is None:
        yield correlation.hops
        return
    if not hops_file.exists():  # defensive: the correlation writes the file even when nothing matched (0 rows)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    carry = None
    for b in pq.ParquetFile(hops_file).iter_batches(batch_size=batch_rows):
        t = pa.Table.from_batches([b]) if carry is None else pa.concat_tables([carry, pa.Table.from_batches([b])])
        j = t.column("journey").to_numpy()
        last = int(np.flatnonzero(np.r_[True, j[1:] != j[:-1]])[-1]) if len(j) else 0
        if last:
            yield t.slice(0, last).to_pandas()
        carry = t.slice(last)
    if carry is not None and carry.num_rows:
        yield carry.to_pandas()


def compare(
    capture_sets: Mapping[str, object] | list, *, inventory=None, window_ns: int | None = None, allow_outside: bool = False,
    memory: int | None = None, window_rows: int | None = None, bucket_rows: int | None = None,
    batch_records: int | None = None,
) -> Comparison:  # fmt: skip
    """Measure and compare the data plane of several capture sets (label -> manifest dir/path or CaptureSet).

    ``inventory``: None (each set's manifest ``lab.inventory``, else ``inventory.json`` beside it), one
    inventory for every set, or a mapping label -> inventory (path, parsed kubectl List or Inventory).
    Files a manifest names must lie inside its directory unless ``allow_outside``. ``memory`` (bytes): a set whose
    captures exceed it is streamed (module doc), with the same results; None reads every set in memory.
    ``window_rows`` / ``bucket_rows`` / ``batch_records`` force streaming with correlation windows, path buckets and
    packet batches of about that many rows (tests).
    """
    items = _labelled(capture_sets)
    forced = {"window_rows": window_rows, "bucket_rows": bucket_rows, "batch_records": batch_records}
    sets = []
    for label, src in items:
        inv = inventory.get(label) if isinstance(inventory, Mapping) and not _looks_like_kubectl(inventory) else inventory
        sets.append(_load(label, src, inv, window_ns, allow_outside, memory, forced))
    labels = [s.label for s in sets]
    rows: list[tuple] = []
    details: dict[str, list[pd.DataFrame]] = {k: [] for k in _DETAILS}
    per_set = []
    for s in sets:
        m: dict[str, object] = {}
        for fn in (_mode, _overhead, _mtu, _fragments, _hops, _latency):
            vals, det = fn(s)
            m.update(vals)
            for k, df in det.items():
                details[k].append(df.assign(label=s.label) if len(df) else df)
        per_set.append(m)
    for key, (section, metric, unit, doc) in METRICS.items():
        rows.append({"key": key, "section": section, "metric": metric, "unit": unit,
                     **{lab: per_set[i].get(key) for i, lab in enumerate(labels)}, "doc": doc})  # fmt: skip
    summary = pd.DataFrame(rows, columns=["key", "section", "metric", "unit", *labels, "doc"])
    for c in COMPARISON_SUMMARY_COLUMNS:
        summary[c.name] = summary[c.name].astype(c.dtype)
    for lab in labels:
        summary[lab] = summary[lab].astype(object)
    validate(summary, COMPARISON_SUMMARY_COLUMNS, table="comparison summary")

    def cat(k: str) -> pd.DataFrame:
        parts = [d for d in details[k] if len(d)]
        return conform(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), _DETAILS[k], table=f"comparison {k}")

    return Comparison(
        labels=labels, summary=summary, mode=cat("mode"), wire_bytes=cat("wire_bytes"), points=cat("points"),
        latency=cat("latency"), hop_latency=cat("hop_latency"), cross_node=cat("cross_node"),
        sources={s.label: s.source for s in sets}, notes={s.label: s.notes for s in sets}, hop_samples=cat("hop_samples"),
        skipped_files={s.label: list(getattr(s.correlation, "skipped_files", None) or []) for s in sets},
        capture_points={s.label: s.points for s in sets}, correlations={s.label: s.correlation for s in sets},
        paths={s.label: s.paths for s in sets}, nat={s.label: s.nat for s in sets},
        inventories={s.label: s.inventory for s in sets}, hops_files={s.label: s.hops_file for s in sets},
        streamed={s.label: s.streamed for s in sets},
        _keep=[s.keep for s in sets if s.keep is not None],
    )  # fmt: skip



_DETAILS: dict[str, tuple[Column, ...]] = {
    "mode": COMPARISON_MODE_COLUMNS, "wire_bytes": COMPARISON_WIRE_BYTES_COLUMNS, "points": COMPARISON_POINTS_COLUMNS,
    "latency": COMPARISON_LATENCY_COLUMNS, "hop_latency": COMPARISON_HOP_LATENCY_COLUMNS,
    "cross_node": COMPARISON_CROSS_NODE_COLUMNS, "hop_samples": COMPARISON_HOP_SAMPLE_COLUMNS,
}  # fmt: skip
"""Detail tables of a Comparison and their schemas (pcaptools.schema)."""


# --- metrics: key -> (section, metric name, unit, doc) ----------------------------------------------
METRICS: dict[str, tuple[str, str, str, str]] = {
    "mode": ("data plane", "data-plane mode", "", "overlay kind of packets on the uplinks (vxlan/geneve/ipip/gre/wireguard), 'native' if none is tunnelled"),
    "vnis": ("data plane", "VNI / key", "", "VXLAN/Geneve VNIs or GRE keys seen on the uplinks"),
    "ports": ("data plane", "tunnel UDP port", "", "outer UDP destination ports of tunnelled packets"),
    "routing": ("data plane", "pod routing (inventory + packets)", "", "cross-node pod-to-pod packets tunnelled somewhere (overlay) or bare on shared interfaces (native)"),
    "tunnelled_share": ("data plane", "uplink packets tunnelled", "%", "share of uplink packets that carry an encapsulation"),
    "overhead_pkt": ("overhead", "encapsulation per tunnelled packet", "bytes", "median wire bytes beyond link header + inner IP packet (outer IP/UDP/tunnel/inner Ethernet); 0 if nothing tunnelled"),
    "overhead_share": ("overhead", "uplink bytes that are encapsulation", "%", "encapsulation bytes / all frame bytes on the uplinks"),
    "overhead_flow": ("overhead", "encapsulation per uplink flow (median)", "bytes", "median of flows' encap_overhead_bytes over the uplink flows"),
    "overhead_full": ("overhead", "encapsulation vs payload, full-size segments", "%", "encapsulation bytes / TCP payload bytes of the largest TCP segments on the uplinks"),
    "payload_full": ("overhead", "payload share of wire, full-size segments", "%", "TCP payload / frame bytes of the largest TCP segments on the uplinks (MSS and overhead together)"),
    "ip_pod": ("MTU / MSS", "largest IP packet on pod veths", "bytes", "largest inner IP packet at pod-veth points"),
    "ip_overlay": ("MTU / MSS", "largest IP packet inside the tunnel", "bytes", "largest inner IP packet of tunnelled uplink packets or at tunnel devices"),
    "ip_uplink": ("MTU / MSS", "largest IP packet on the uplink wire", "bytes", "largest outermost IP packet on the uplinks (a lower bound of the uplink MTU)"),
    "mtu_overlay": ("MTU / MSS", "overlay MTU implied", "bytes", "largest uplink IP packet minus the per-packet encapsulation (n/a without a tunnel)"),
    "mtu_reduction": ("MTU / MSS", "MTU reduction from encapsulation", "bytes", "IP-level bytes the tunnel takes from the uplink MTU (outer IP + UDP + tunnel + inner Ethernet)"),
    "mss_values": ("MTU / MSS", "SYN MSS options seen", "bytes", "distinct TCP MSS options announced in SYN / SYN-ACK packets"),
    "mss_pod": ("MTU / MSS", "MSS announced by pods", "bytes", "most common MSS in SYNs and SYN-ACKs sent from pod-veth points' pods"),
    "mss_effective": ("MTU / MSS", "effective MSS (median over connections)", "bytes", "min(mss_orig, mss_resp) of TCP flows that announced both, median"),
    "pmtu": ("MTU / MSS", "path MTU implied by the effective MSS", "bytes", "effective MSS + 40 (IPv4) / + 60 (IPv6)"),
    "fragments": ("fragmentation", "IP fragments", "packets", "packets with a fragment offset or the more-fragments flag, all points"),
    "frag_needed": ("fragmentation", "ICMP frag-needed / packet-too-big", "packets", "ICMP type 3 code 4 and ICMPv6 type 2 messages, all points"),
    "frag_mtus": ("fragmentation", "MTUs in those ICMP messages", "bytes", "next-hop MTUs announced by frag-needed / packet-too-big"),
    "xnode_conns": ("hops", "cross-node pod-to-pod connections", "", "connections from a pod to a pod on another node (paths, needs an inventory)"),
    "xnode_points": ("hops", "capture points crossed (median)", "points", "forward capture points of the first packet of those connections"),
    "xnode_tunnel_devs": ("hops", "tunnel devices crossed (median)", "points", "of those points, tunnel devices (role overlay)"),
    "xnode_encap": ("hops", "cross-node connections encapsulated", "%", "share of those connections whose first packet was tunnelled"),
    "lat_xnode_pod": ("latency", "cross-node pod-to-pod first packet, median", "µs", "first packet first to last capture point, corrected clocks"),
    "lat_xnode_pod_p90": ("latency", "cross-node pod-to-pod first packet, p90", "µs", "90th percentile of the same"),
    "lat_all_pkts": ("latency", "cross-node pod-to-pod, all packets, median", "µs", "every packet seen from a pod veth to a pod veth on another node: first to last sighting"),
    "lat_all_pkts_p90": ("latency", "cross-node pod-to-pod, all packets, p90", "µs", "90th percentile of the same"),
}



# --- loading -----------------------------------------------------------------------------------------
def _looks_like_kubectl(x) -> bool:
    return isinstance(x, Mapping) and ("items" in x or "kind" in x)


def _labelled(capture_sets) -> list[tuple[str, object]]:
    """(label, source) pairs: dict keys, else directory names (parent/name when two collide)."""
    if isinstance(capture_sets, Mapping):
        items = [(str(k), v) for k, v in capture_sets.items()]
    else:
        srcs = list(capture_sets) if not isinstance(capture_sets, (str, os.PathLike)) else [capture_sets]
        items = [(_default_label(s), s) for s in srcs]
        names = [n for n, _ in items]
        items = [(f"{n}#{names[:i].count(n) + 1}" if names.count(n) > 1 else n, s) for i, (n, s) in enumerate(items)]
    if not items:
        raise CorrelationError("compare: expected at least one capture set (a directory holding manifest.json), found none")
    return items


def _default_label(src) -> str:
    from pcaptools.correlate import CaptureSet

    if isinstance(src, CaptureSet):
        return src.cni or "capture-set"
    p = Path(src)
    return (p.parent.name if p.name == "manifest.json" else p.name) or str(p)



def _load(label: str, src, inventory, window_ns: int | None, allow_outside: bool, memory: int | None,
          forced: dict[str, int | None]) -> _Set:  # fmt: skip
    """Load and measure one capture set: in memory, or streamed when its captures exceed ``memory`` (or ``forced``)."""
    from pcaptools.correlate import CaptureSet
    from pcaptools.k8s.paths import as_inventory

    if isinstance(src, CaptureSet):
        return _load_in_memory(label, src, src.cni or label, as_inventory(inventory), window_ns, {}, given=True)
    from pcaptools.k8s.discover import find_inventory, load_captures
    from pcaptools.k8s.paths_stream import streams

    p = Path(src)
    if not p.exists():
        raise CorrelationError(f"{p}: capture set {label!r} does not exist; expected a directory holding manifest.json or captures (e.g. sample_pcaps/vpc)", path=str(p))
    inv = as_inventory(find_inventory([p], allow_outside=allow_outside) if inventory is None else inventory)
    if any(v is not None for v in forced.values()) or (memory is not None and streams([p], [], memory, allow_outside=allow_outside)):
        return _load_bounded(label, p, inv, window_ns, allow_outside, memory, forced)
    decoded: dict[str, pd.DataFrame] = {}
    cs = load_captures([p], inventory=inv, decoder=lambda path: _decoded(decoded, path), allow_outside=allow_outside)
    return _load_in_memory(label, cs, str(p), inv, window_ns, decoded, given=False)


def _decoded(decoded: dict[str, pd.DataFrame], path: str) -> pd.DataFrame:
    """A capture file's packet table, decoded once (with the payload hash the correlation needs: no second read)."""
    from pcaptools.packets import read_packets

    if path not in decoded:
        decoded[path] = read_packets(path, payload_hash=True)
    return decoded[path]


def _load_in_memory(label: str, cs, source: str, inv, window_ns: int | None, decoded: dict[str, pd.DataFrame], *,
                    given: bool) -> _Set:  # fmt: skip
    """A capture set whose files are each one packet table: measured, then correlated and named in memory (``given``:
    a CaptureSet the caller loaded, whose inference is not ours to summarise)."""
    from pcaptools.correlate import correlate
    from pcaptools.flows import flows
    from pcaptools.k8s.paths import paths_and_nat

    pod_ips = _pod_addresses(inv)
    files = list(dict.fromkeys(pt.file for pt in cs.points))
    pairs = {f: _tally_file([_decoded(decoded, f)], pod_ips) for f in files}

    def flows_of(f: str, rows: Callable | None) -> list[pd.DataFrame]:
        pk = _decoded(decoded, f)
        return [flows(pk if rows is None else pk.loc[rows(pk)])]

    points, tallies = _point_tallies(cs.points, pairs)
    ft = _flow_tally(cs.points, tallies, pairs, flows_of)
    decoded.clear()  # the correlation reads the capture set's own table
    corr = correlate(cs) if window_ns is None else correlate(cs, window_ns=window_ns)
    notes = list(corr.notes)
    if not given:
        from pcaptools.k8s.discover import summary_lines

        notes += summary_lines(cs)
    pth, nat = paths_and_nat(corr, inv)
    routing = inv.pod_network(corr.hops).get("routing") if inv is not None else None
    return _finish_set(_Set(label=label, source=source, cni_declared=cs.cni, points=points, tallies=tallies, flows=ft,
                            correlation=corr, paths=pth, nat=nat, inventory=inv, routing=routing,
                            hops=lambda: _hop_parts(None, corr), notes=notes))  # fmt: skip


def _load_bounded(label: str, p: Path, inv, window_ns: int | None, allow_outside: bool, memory: int | None,
                  forced: dict[str, int | None]) -> _Set:  # fmt: skip
    """A capture set larger than ``memory``: packets tallied batch by batch, flows per file within the budget,
    correlation and paths streamed (hops kept in a temporary Parquet file, read back a row group at a time)."""
    from pcaptools.correlate.budget import default_memory
    from pcaptools.process import SpillDir

    memory = default_memory() if memory is None else int(memory)
    tmp = SpillDir(prefix="pcaptools-compare-")  # lives as long as the result (its keep)
    try:
        return _bounded_set(label, p, inv, window_ns, allow_outside, memory, forced, tmp)
    except BaseException:  # an error, Ctrl-C or SIGTERM: removed now, whole
        tmp.cleanup()
        raise


def _bounded_set(label: str, p: Path, inv, window_ns: int | None, allow_outside: bool, memory: int,
                 forced: dict[str, int | None], tmp) -> _Set:  # fmt: skip
    """:func:`_load_bounded`'s work, its hops file in ``tmp`` (a :class:`pcaptools.process.SpillDir`)."""
    from pcaptools.correlate.capture_set import capture_entries, name_points, split_entry
    from pcaptools.correlate.stream import _rss
    from pcaptools.flow_stream import iter_flows
    from pcaptools.k8s.discover import summary_lines
    from pcaptools.k8s.paths_stream import load_paths_bounded
    from pcaptools.packet_file import BASE_BYTES
    from pcaptools.packets import iter_packets
    from pcaptools.process import release_freed_memory

    hops_file = Path(tmp.name) / "hops.parquet"
    ps = load_paths_bounded(p, inventory=inv, window_ns=window_ns, with_flows=False, allow_outside=allow_outside, memory=memory,
                            window_rows=forced["window_rows"], bucket_rows=forced["bucket_rows"], hops_out=hops_file)  # fmt: skip
    release_freed_memory()
    corr = ps.correlation
    streamed = ps.streamed is not None
    batch = forced["batch_records"] or STREAM_BATCH_RECORDS
    pod_ips = _pod_addresses(inv)

    def tally(f: str) -> dict:
        return _tally_file(iter_packets(f, batch_records=batch), pod_ips)

    notes = list(corr.notes)
    if ps.captures is not None:  # inferred points (or a dataset's stored ones)
        cs_points, cni = ps.captures.points, ps.captures.cni
        pairs = {f: tally(f) for f in dict.fromkeys(pt.file for pt in cs_points)}
        notes += summary_lines(ps.captures)
    else:  # a manifest: its entries split per ifindex as the correlation split them
        entries, cni = capture_entries(p, allow_outside=allow_outside)
        pairs = {f: tally(f) for f in dict.fromkeys(str(e["file"]) for e in entries)}
        split = []
        for e in entries:
            seen = sorted(pairs[str(e["file"])])
            df = pd.DataFrame({"iface": [a for a, _ in seen], "ifindex": [b for _, b in seen]}, dtype=np.int64)
            split.extend(pt for pt, _ in split_entry(e, df))
        cs_points = name_points(split)

    def flows_of(f: str, rows: Callable | None) -> Iterator[pd.DataFrame]:  # within what the run leaves of the budget
        return iter_flows(f, memory=BASE_BYTES + max(memory - _rss(), MIN_FLOW_MEMORY), rows=rows)

    points, tallies = _point_tallies(cs_points, pairs)
    release_freed_memory()
    ft = _flow_tally(cs_points, tallies, pairs, flows_of)
    release_freed_memory()
    if ps.network is not None:
        routing = ps.network.get("routing")
    else:
        routing = inv.pod_network(corr.hops).get("routing") if inv is not None else None
    file = hops_file if streamed else None
    return _finish_set(_Set(label=label, source=str(p), cni_declared=cni, points=points, tallies=tallies, flows=ft,
                            correlation=corr, paths=ps.paths, nat=ps.nat, inventory=inv, routing=routing,
                            hops=lambda: _hop_parts(file, corr), notes=notes, hops_file=file, keep=tmp,
                            streamed=ps.streamed))  # fmt: skip


def _finish_set(s: _Set) -> _Set:
    """The note every set without an inventory carries."""
    if s.inventory is None:
        s.notes.append("no inventory: cross-node pod-to-pod connections and pod routing cannot be named (n/a)")
    return s


# --- reductions over packets and flows ---------------------------------------------------------------
def _link_header(pk: pd.DataFrame) -> np.ndarray:
    """Bytes of each frame's own link header (same table as flows' encap_overhead_bytes)."""
    link = pk["link"].astype("category").array
    lens = np.array([LINK_HEADER.get(str(c), 0) for c in link.categories] + [0], np.int64)
    codes = np.asarray(link.codes, np.int64)
    return lens[np.where(codes >= 0, codes, len(lens) - 1)] + 4 * (pk["vlan"].to_numpy(np.int64) >= 0)


def _in(col: pd.Series, values: set[str]) -> np.ndarray:
    """Per row: whether a category (address) column's value is one of ``values``, decided once per category."""
    cat = col.astype("category").array
    hit = np.append(pd.Index(cat.categories.astype(str)).isin(list(values)), False)
    codes = np.asarray(cat.codes, np.int64)
    return hit[np.where(codes >= 0, codes, len(hit) - 1)]


def _row_arrays(pk: pd.DataFrame, pod_ips: set[str]) -> dict[str, np.ndarray]:
    """The per-row quantities the tallies reduce: encapsulation bytes, outermost IP length, SYN MSS, fragments..."""
    tun = pk["tunnel"].notna().to_numpy()
    wire = pk["wirelen"].to_numpy(np.int64)
    ip_len = pk["ip_len"].to_numpy(np.int64)
    lh = _link_header(pk)
    kind = pk["tunnel"].astype("category").array
    kcodes = np.asarray(kind.codes, np.int64)
    names = np.array([str(c) for c in kind.categories] + [""], object)
    proto = pk["proto"].to_numpy(np.int64)
    flags = pk["tcp_flags"].to_numpy(np.int64)
    mss = pk["tcp_mss"].to_numpy(np.int64)
    syn = (proto == 6) & ((flags & 0x02) != 0) & (mss >= 0)
    ityp, icode = pk["icmp_type"].to_numpy(np.int64), pk["icmp_code"].to_numpy(np.int64)
    v6 = pk["ip_version"].to_numpy(np.int64) == 6
    need4, need6 = (proto == 1) & (ityp == 3) & (icode == 4), (proto == 58) & (ityp == 2)
    return {
        "tun": tun, "kind": names[np.where(kcodes >= 0, kcodes, len(names) - 1)],
        "vni": pk["vni"].to_numpy(np.int64), "odport": pk["outer_dport"].to_numpy(np.int64),
        "wire": wire, "ip_len": ip_len, "pay": np.maximum(pk["payload_len"].to_numpy(np.int64), 0),
        "enc": np.where(tun & (ip_len > 0), np.maximum(wire - ip_len - lh, 0), 0),
        "wire_ip": np.where(tun, wire - lh, np.where(pk["ip_version"].to_numpy(np.int64) > 0, ip_len, -1)),
        "tcp": proto == 6, "syn": syn, "mss": mss,
        "from_pod": syn & _in(pk["src"], pod_ips) if pod_ips else np.zeros(len(pk), bool),
        "frag": (pk["frag_offset"].to_numpy(np.int64) > 0) | pk["more_frags"].to_numpy(bool),
        "need_v": np.where(v6, need6, need4), "need": need4 | need6, "icmp_mtu": pk["icmp_mtu"].to_numpy(np.int64),
    }  # fmt: skip


def _tally(a: dict[str, np.ndarray], sel) -> _Tally:  # noqa: ANN001
    """The reductions of the rows ``sel`` (an index array or slice) of one batch's :func:`_row_arrays`."""
    r = {k: v[sel] for k, v in a.items()}
    tun, enc, wire, pay = r["tun"], r["enc"], r["wire"], r["pay"]
    t = _Tally(packets=int(tun.shape[0]), tunnelled=int(tun.sum()))
    if not t.packets:
        return t
    if t.tunnelled:
        t.kinds = Counter(r["kind"][tun].tolist())
        t.vnis = {v for v in r["vni"][tun].tolist() if v >= 0}
        t.ports = {v for v in r["odport"][tun].tolist() if v >= 0}
        t.enc = _counts(enc[tun])
        t.max_ip_tun = int(r["ip_len"][tun].max())
    t.enc_sum, t.wire_sum, t.pay_sum = int(enc.sum()), int(wire.sum()), int(pay.sum())
    data = r["tcp"] & (pay > 0)
    if data.any():
        t.full_pay = int(pay[data].max())
        big = data & (pay == t.full_pay)
        t.full_enc, t.full_pay_sum, t.full_wire = int(enc[big].sum()), int(pay[big].sum()), int(wire[big].sum())
    t.max_ip, t.max_wire_ip, t.max_frame = int(r["ip_len"].max()), int(r["wire_ip"].max()), int(wire.max())
    t.syn_mss = _counts(r["mss"][r["syn"]])
    t.pod_mss = _counts(r["mss"][r["from_pod"]])
    t.fragments, t.frag_needed, t.frag_needed_any = int(r["frag"].sum()), int(r["need_v"].sum()), int(r["need"].sum())
    t.frag_mtus = {v for v in r["icmp_mtu"][r["need"]].tolist() if v >= 0}
    return t


def _tally_file(tables: Iterable[pd.DataFrame], pod_ips: set[str]) -> dict[tuple[int, int], _Tally]:
    """One capture file's packets (in one table or batches) reduced per (pcapng interface, ifindex): what its capture
    points are made of."""
    out: dict[tuple[int, int], _Tally] = {}
    for pk in tables:
        if not len(pk):
            continue
        a = _row_arrays(pk, pod_ips)
        # (interface, ifindex) pairs as one sortable int64 (both at least -1, below 2^31): np.unique on rows sorts slowly
        key = ((pk["iface"].to_numpy(np.int64) + 1) << 32) | (pk["ifindex"].to_numpy(np.int64) + 1)
        uk, inv = np.unique(key, return_inverse=True)
        pairs = np.stack([(uk >> 32) - 1, (uk & 0xFFFFFFFF) - 1], 1)
        inv = inv.reshape(-1)
        if len(pairs) == 1:
            groups = [(pairs[0], slice(None))]
        else:
            order = np.argsort(inv, kind="stable")
            cut = np.searchsorted(inv[order], np.arange(len(pairs) + 1))
            groups = [(pairs[k], order[cut[k] : cut[k + 1]]) for k in range(len(pairs))]
        for (iface, ifx), sel in groups:
            out.setdefault((int(iface), int(ifx)), _Tally()).merge(_tally(a, sel))
    return out


def _point_pairs(pt, pairs: dict[tuple[int, int], _Tally]) -> list[tuple[int, int]]:  # noqa: ANN001
    """The (pcapng interface, ifindex) groups of its file a capture point is made of."""
    return [k for k in pairs if (pt.pcapng_interface < 0 or k[0] == pt.pcapng_interface) and (pt.ifindex < 0 or k[1] == pt.ifindex)]


def _point_tallies(points: list, pairs: dict[str, dict]) -> tuple[pd.DataFrame, dict[str, _Tally]]:
    """The points table (point, node, interface, role, pod, file, packets) and each point's tally."""
    tallies, rows = {}, []
    for pt in points:
        t = _Tally()
        for k in _point_pairs(pt, pairs[pt.file]):
            t.merge(pairs[pt.file][k])
        tallies[pt.name] = t
        rows.append({"point": pt.name, "node": pt.node, "interface": pt.interface, "role": pt.role, "pod": pt.pod,
                     "file": pt.file, "packets": t.packets})  # fmt: skip
    return pd.DataFrame(rows), tallies


def _flow_tally(points: list, tallies: dict[str, _Tally], pairs: dict[str, dict],
                flows_of: Callable[[str, Callable | None], Iterable[pd.DataFrame]]) -> _FlowTally:  # fmt: skip
    """Flow value counts: per file, the flows of its uplink points' packets, and of its pod-veth points' packets (every
    point's when no pod veth saw a packet): where connections start and end. Flows are per file (a flow key holds its
    file), so per-file tables give the flows of the whole set's table."""
    ft = _FlowTally()
    pod_seen = any(pt.role == "pod-veth" and tallies[pt.name].packets for pt in points)
    for f in dict.fromkeys(pt.file for pt in points):
        mine = [pt for pt in points if pt.file == f]
        for add, chosen in ((ft.add_uplink, [pt for pt in mine if pt.role in UPLINK_ROLES]),
                            (ft.add_pod, [pt for pt in mine if pt.role == "pod-veth" or not pod_seen])):  # fmt: skip
            keys = list(dict.fromkeys(k for pt in chosen for k in _point_pairs(pt, pairs[f])))
            if not sum(pairs[f][k].packets for k in keys):
                continue
            rows = None if set(keys) == set(pairs[f]) else _rows_of(keys)
            for fl in flows_of(f, rows):
                add(fl)
    return ft


def _rows_of(keys: list[tuple[int, int]]) -> Callable[[pd.DataFrame], np.ndarray]:
    """A row mask of the packets whose (pcapng interface, ifindex) is one of ``keys``."""
    def key(iface: np.ndarray, ifx: np.ndarray) -> np.ndarray:  # one int64 per pair (ifindex -1 kept apart)
        return (iface << 32) | (ifx & 0xFFFFFFFF)

    want = np.array(keys, np.int64).reshape(-1, 2)
    wanted = key(want[:, 0], want[:, 1])

    def rows(pk: pd.DataFrame) -> np.ndarray:  # np.isin: no rows x keys matrix (a node's -i any holds many veths)
        return np.isin(key(pk["iface"].to_numpy(np.int64), pk["ifindex"].to_numpy(np.int64)), wanted)

    return rows


# --- measurements ------------------------------------------------------------------------------------
def _merged(s: _Set, roles: Iterable[str] | None = None) -> _Tally:
    """One tally of the points with these roles (all points if None)."""
    t = _Tally()
    for pt, role in zip(s.points["point"], s.points["role"], strict=True):
        if roles is None or role in roles:
            t.merge(s.tallies[pt])
    return t


def _largest(s: _Set, roles: Iterable[str], attr: str) -> int:
    """The largest of a tally maximum over the points with these roles (-1 if none)."""
    return max([getattr(s.tallies[pt], attr) for pt, role in zip(s.points["point"], s.points["role"], strict=True) if role in roles],
               default=-1)  # fmt: skip


def _positive(x: int) -> int | None:
    return x if x > 0 else None


def _mode(s: _Set) -> tuple[dict, dict]:
    up = _merged(s, UPLINK_ROLES)
    out: dict[str, object] = {}
    if not up.packets:
        out.update(mode=None, vnis=None, ports=None, tunnelled_share=None)
        s.notes.append("no uplink capture (role node-uplink or any): data-plane mode and overhead are n/a")
    else:
        kinds = sorted(up.kinds.items(), key=lambda kv: (-kv[1], kv[0]))  # most packets first
        out["mode"] = "+".join(k for k, _ in kinds) if kinds else "native"
        out["vnis"] = sorted(up.vnis) or None
        out["ports"] = sorted(up.ports) or None
        out["tunnelled_share"] = round(100 * (up.tunnelled / up.packets), 2)
    out["routing"] = s.routing
    det = pd.DataFrame([{"mode": out["mode"], "tunnels": out["mode"] if up.tunnelled else None, "vnis": out["vnis"] or [],
                         "udp_ports": out["ports"] or [], "tunnelled_packets": up.tunnelled, "uplink_packets": up.packets,
                         "cni_declared": s.cni_declared}])  # fmt: skip
    return out, {"mode": det}


def _overhead(s: _Set) -> tuple[dict, dict]:
    up = _merged(s, UPLINK_ROLES)
    if not up.packets:
        keys = ("overhead_pkt", "overhead_share", "overhead_flow", "overhead_full", "payload_full")
        return dict.fromkeys(keys), {}
    out: dict[str, object] = {
        "overhead_pkt": int(_median(up.enc)) if up.tunnelled else 0,
        "overhead_share": round(100 * up.enc_sum / up.wire_sum, 2) if up.wire_sum else None,
        "overhead_flow": int(_median(s.flows.enc)) if s.flows.enc else None,
    }
    if up.full_pay > 0:
        out["overhead_full"] = round(100 * up.full_enc / up.full_pay_sum, 2)
        out["payload_full"] = round(100 * up.full_pay_sum / up.full_wire, 2)
    else:
        out["overhead_full"] = out["payload_full"] = None
    det = pd.DataFrame([{"payload": up.pay_sum, "inner_headers": up.wire_sum - up.enc_sum - up.pay_sum,
                         "encapsulation": up.enc_sum, "total": up.wire_sum, "packets": up.packets}])  # fmt: skip
    return out, {"wire_bytes": det}


def _mtu(s: _Set) -> tuple[dict, dict]:
    up = _merged(s, UPLINK_ROLES)
    out: dict[str, object] = {
        "ip_pod": _positive(_largest(s, ("pod-veth",), "max_ip")),
        "ip_overlay": _positive(max(_largest(s, UPLINK_ROLES, "max_ip_tun"), _largest(s, (TUNNEL_DEVICE_ROLE,), "max_ip"))),
        "ip_uplink": _positive(_largest(s, UPLINK_ROLES, "max_wire_ip")),
    }
    if up.tunnelled:
        ip_ovh = int(_median(up.enc))  # frame overhead == IP-level overhead (outer link header replaces the inner one)
        out["mtu_reduction"] = ip_ovh
        out["mtu_overlay"] = out["ip_uplink"] - ip_ovh if out["ip_uplink"] is not None else None
    else:
        out["mtu_reduction"] = 0 if up.packets else None
        out["mtu_overlay"] = None
    every = _merged(s)
    out["mss_values"] = sorted(every.syn_mss) or None
    pod = every.pod_mss if _pod_addresses(s.inventory) else _merged(s, ("pod-veth",)).syn_mss
    out["mss_pod"] = _mode_value(pod) if pod else None
    ft = s.flows
    out["mss_effective"] = int(_median(ft.eff)) if ft.eff else None
    out["pmtu"] = int(_median(ft.pmtu)) if ft.pmtu else None
    rows = [{"point": pt, "role": role, "packets": t.packets, "tunnelled": t.tunnelled, "largest_ip": t.max_ip,
             "largest_wire_ip": t.max_wire_ip, "largest_frame": t.max_frame, "syn_mss": sorted(t.syn_mss),
             "fragments": t.fragments, "frag_needed": t.frag_needed}
            for pt, role in zip(s.points["point"], s.points["role"], strict=True) if (t := s.tallies[pt]).packets]  # fmt: skip
    return out, {"points": pd.DataFrame(rows)}


def _fragments(s: _Set) -> tuple[dict, dict]:
    t = _merged(s)
    return {"fragments": t.fragments, "frag_needed": t.frag_needed_any, "frag_mtus": sorted(t.frag_mtus) or None}, {}


def _pod_addresses(inventory) -> set[str]:  # noqa: ANN001
    if inventory is None:
        return set()
    return {ip for p in inventory.pods.values() if not p.host_network for ip in p.ips}


def _point_roles(s: _Set) -> dict[str, str]:
    return dict(zip(s.points["point"], s.points["role"], strict=True))


def _xnode_paths(s: _Set) -> pd.DataFrame | None:
    p = s.paths
    if p is None or s.inventory is None or not len(p):
        return None
    m = (p["client_kind"].astype(str) == "pod").to_numpy() & (p["backend_kind"].astype(str) == "pod").to_numpy() & p["cross_node"].to_numpy()
    return p.loc[m]


def _hops(s: _Set) -> tuple[dict, dict]:
    x = _xnode_paths(s)
    keys = ("xnode_conns", "xnode_points", "xnode_tunnel_devs", "xnode_encap")
    if x is None:
        return dict.fromkeys(keys), {}
    if not len(x):
        return {"xnode_conns": 0, "xnode_points": None, "xnode_tunnel_devs": None, "xnode_encap": None}, {}
    roles = _point_roles(s)
    pts = x["forward_points"].str.split(" → ")
    npts = pts.map(len).to_numpy()
    ndev = pts.map(lambda ps: sum(roles.get(q) == TUNNEL_DEVICE_ROLE for q in ps)).to_numpy()
    det = pd.DataFrame({"connection": x["connection"].to_numpy(), "kind": x["kind"].astype(str).to_numpy(),
                        "points": npts, "tunnel_devices": ndev, "encapsulated": x["encapsulated"].to_numpy(),
                        "forward_points": pts.to_numpy()})  # fmt: skip
    out = {"xnode_conns": len(x), "xnode_points": float(np.median(npts)), "xnode_tunnel_devs": float(np.median(ndev)),
           "xnode_encap": round(100 * x["encapsulated"].mean(), 1)}  # fmt: skip
    return out, {"cross_node": det}


def _latency(s: _Set) -> tuple[dict, dict]:
    out: dict[str, object] = dict.fromkeys(("lat_xnode_pod", "lat_xnode_pod_p90", "lat_all_pkts", "lat_all_pkts_p90"))
    det: dict[str, pd.DataFrame] = {}
    p = s.paths
    if p is not None and len(p):
        q = p.loc[p["latency_ns"].to_numpy() >= 0]
        kind = q["kind"].astype(str) + np.where(q["cross_node"].to_numpy(), " (cross-node)", "")
        if s.inventory is not None:
            pods = (q["client_kind"].astype(str) == "pod").to_numpy() & (q["backend_kind"].astype(str) == "pod").to_numpy()
            same = pods & ~q["cross_node"].to_numpy()
            kind = kind.where(~same, kind + " (same node)")
        g = q.groupby(kind.to_numpy(), sort=True)["latency_ns"]
        det["latency"] = pd.DataFrame({"connections": g.size(), "median_ns": g.median(), "p90_ns": g.quantile(0.9)}).rename_axis("kind").reset_index()
    x = _xnode_paths(s)
    if x is not None and len(x) and (x["latency_ns"] >= 0).any():
        lat = x.loc[x["latency_ns"] >= 0, "latency_ns"].to_numpy(np.float64)
        out["lat_xnode_pod"], out["lat_xnode_pod_p90"] = round(np.median(lat) / 1e3, 1), round(np.quantile(lat, 0.9) / 1e3, 1)
    hop = _pod_to_pod_hops(s)
    if hop is not None:
        totals, pairs, samples = hop
        if totals.size:
            out["lat_all_pkts"], out["lat_all_pkts_p90"] = round(np.median(totals) / 1e3, 1), round(np.quantile(totals, 0.9) / 1e3, 1)
        det["hop_latency"] = pairs
        det["hop_samples"] = samples
    return out, det


def _pod_to_pod_hops(s: _Set) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame] | None:
    """Journeys from a pod veth to a pod veth on another node: total latency each, per role-pair hop latency, and
    the samples (hop, latency_ns) behind both, the total as hop 'pod → pod (total)'. One pass over the hops in parts
    of whole journeys (:func:`_journey_hops`), the samples kept (medians and p90 need them all)."""
    roles = _point_roles(s)
    nodes = dict(zip(s.points["point"], s.points["node"], strict=True))
    totals, parts, rows = [], [], 0
    for h in s.hops():
        rows += len(h)
        got = _journey_hops(h, roles, nodes)
        if got is not None:
            totals.append(got[0])
            parts.append(got[1])
    if not rows:
        return None
    if not totals:
        return np.zeros(0), pd.DataFrame(), pd.DataFrame()
    tot = np.concatenate(totals)
    d = pd.concat(parts, ignore_index=True)
    for c in ("hop", "from_role", "to_role"):
        d[c] = d[c].astype(object)
    g = d.groupby("hop", sort=False)
    pairs = pd.DataFrame({"from_role": g["from_role"].first(), "to_role": g["to_role"].first(), "count": g.size(),
                          "median_ns": g["dt"].median(), "p90_ns": g["dt"].quantile(0.9), "position": g["pos"].median()})  # fmt: skip
    pairs = pairs.sort_values("position").drop(columns="position").reset_index()
    samples = pd.concat([d[["hop", "dt"]].rename(columns={"dt": "latency_ns"}),
                         pd.DataFrame({"hop": "pod → pod (total)", "latency_ns": tot})], ignore_index=True)  # fmt: skip
    return tot.astype(np.float64), pairs, samples


def _journey_hops(h: pd.DataFrame, roles: dict[str, str], nodes: dict[str, str]) -> tuple[np.ndarray, pd.DataFrame] | None:
    """Of one part of the hops table (whole journeys, rows of a journey together): the total latency of each
    pod-veth to pod-veth journey across nodes and its hop samples (hop, from_role, to_role, dt, pos), None if none."""
    if not len(h):
        return None
    pcat = h["point"].astype("category").array
    codes = np.asarray(pcat.codes)
    role = np.array([roles.get(str(c), "any") for c in pcat.categories] + ["any"], object)[codes]
    node = np.array([nodes.get(str(c), "") for c in pcat.categories] + [""], object)[codes]
    j = h["journey"].to_numpy(np.int64)
    t = h["ts_corrected_ns"].to_numpy(np.int64)
    n = len(j)
    start = np.r_[True, j[1:] != j[:-1]]
    first = np.flatnonzero(start)
    last = np.r_[first[1:] - 1, n - 1]
    ok = (role[first] == "pod-veth") & (role[last] == "pod-veth") & (node[first] != node[last])
    if not ok.any():
        return None
    totals = (t[last] - t[first])[ok]
    jrow = np.cumsum(start) - 1
    keep = ok[jrow]
    idx = np.flatnonzero(keep[1:] & ~start[1:]) + 1  # a row and its predecessor in the same journey
    pos = idx - first[jrow[idx]]
    across = node[idx] != node[idx - 1]
    rcode, rnames = pd.factorize(role)  # the few roles as codes: labels made per distinct hop, not per row
    frm, to = rcode[idx - 1], rcode[idx]
    combo, kinds = pd.factorize((frm * len(rnames) + to) * 2 + across)
    labels = [f"{rnames[k // 2 // len(rnames)]} → {rnames[k // 2 % len(rnames)]}" + (" (wire)" if k % 2 else "") for k in kinds.tolist()]
    d = pd.DataFrame({"hop": _sorted_categorical(combo, labels), "from_role": _sorted_categorical(frm, list(rnames)),
                      "to_role": _sorted_categorical(to, list(rnames)), "dt": t[idx] - t[idx - 1], "pos": pos})  # fmt: skip
    return totals, d


def _sorted_categorical(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    """``pd.Categorical(np.array(names)[codes])`` (categories: the values present, sorted) without a string per row."""
    present = np.unique(codes)
    order = sorted(present.tolist(), key=lambda k: names[k])
    lut = np.full(len(names), -1, np.int64)
    lut[order] = np.arange(len(order))
    return pd.Categorical.from_codes(lut[codes], categories=pd.Index([names[k] for k in order]), validate=False)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v):
    """JSON-safe scalar: numpy numbers to Python, NaN to None."""
    if _missing(v):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


make_callable(__name__, "compare")  # pcaptools.compare(...) calls compare(); see pcaptools._callable
