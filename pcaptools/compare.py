"""Compare CNI data planes from capture sets: overlay mode, encapsulation overhead, MTU/MSS, fragments, hops, latency.

Everything is measured from the tables of the layers above (packets, flows, correlation hops, paths);
nothing is assumed from a capture set's name or manifest ``cni``. A metric that the captures cannot
answer (no uplink capture, no cross-node pod traffic...) is ``None`` ("n/a"), never 0.

Example::

    cmp = compare(["sample_pcaps/vpc", "sample_pcaps/calico-vxlan"])
    print(cmp.summary)

Tables only: figures and HTML are drawn from them by :mod:`pcaptools.render` (this module imports nothing from it).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
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


@dataclass
class _Set:
    """One loaded capture set: its points' roles, full packet table, correlation and paths."""

    label: str
    source: str
    cni_declared: str
    points: pd.DataFrame  # point, node, interface, role, pod, file, packets
    packets: pd.DataFrame  # PACKET_COLUMNS + point, node, role
    correlation: object
    paths: pd.DataFrame | None
    nat: pd.DataFrame | None
    inventory: object
    notes: list[str] = field(default_factory=list)


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
    hop_samples: pd.DataFrame | None = None  # COMPARISON_HOP_SAMPLE_COLUMNS: the samples behind hop_latency, for CDFs
    capture_points: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> point, node, interface, role, pod, file, packets
    correlations: dict[str, object] = field(default_factory=dict, repr=False)  # label -> its Correlation
    paths: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> its paths table (PATH_COLUMNS)
    nat: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # label -> its NAT table (NAT_COLUMNS)
    inventories: dict[str, object] = field(default_factory=dict, repr=False)  # label -> its Inventory, None without one

    def value(self, metric: str, label: str):
        """One summary cell (None when not measurable)."""
        row = self.summary.loc[self.summary["metric"] == metric]
        if not len(row):
            raise KeyError(f"no metric {metric!r}; metrics are {list(self.summary['metric'])}")
        v = row.iloc[0][label]
        return None if _missing(v) else v

    def to_dict(self) -> dict:
        """Plain data: capture sets, summary rows (value per label, None = n/a) and the detail tables."""

        def recs(df: pd.DataFrame) -> list[dict]:
            return [{k: _plain(v) for k, v in r.items()} for r in df.to_dict(orient="records")]

        return {
            "capture_sets": {lab: {"source": self.sources.get(lab, ""), "notes": self.notes.get(lab, [])} for lab in self.labels},
            "summary": [
                {"section": r["section"], "metric": r["metric"], "unit": r["unit"], "doc": r["doc"],
                 "values": {lab: _plain(r[lab]) for lab in self.labels}}
                for r in self.summary.to_dict(orient="records")
            ],  # fmt: skip
            "mode": recs(self.mode),
            "wire_bytes": recs(self.wire_bytes),
            "points": recs(self.points),
            "latency": recs(self.latency),
            "hop_latency": recs(self.hop_latency),
            "cross_node": recs(self.cross_node),
        }

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)


def compare(
    capture_sets: Mapping[str, object] | list, *, inventory=None, window_ns: int | None = None, allow_outside: bool = False
) -> Comparison:
    """Measure and compare the data plane of several capture sets (label -> manifest dir/path or CaptureSet).

    ``inventory``: None (each set's manifest ``lab.inventory``, else ``inventory.json`` beside it), one
    inventory for every set, or a mapping label -> inventory (path, parsed kubectl List or Inventory).
    Files a manifest names must lie inside its directory unless ``allow_outside``.
    """
    items = _labelled(capture_sets)
    sets = []
    for label, src in items:
        inv = inventory.get(label) if isinstance(inventory, Mapping) and not _looks_like_kubectl(inventory) else inventory
        sets.append(_load(label, src, inv, window_ns, allow_outside))
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
        capture_points={s.label: s.points for s in sets}, correlations={s.label: s.correlation for s in sets},
        paths={s.label: s.paths for s in sets}, nat={s.label: s.nat for s in sets},
        inventories={s.label: s.inventory for s in sets},
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


def _load(label: str, src, inventory, window_ns: int | None, allow_outside: bool = False) -> _Set:
    from pcaptools.correlate import CaptureSet, correlate
    from pcaptools.k8s.paths import as_inventory, paths_and_nat
    from pcaptools.packets import read_packets

    decoded: dict[str, pd.DataFrame] = {}

    def dec(path: str) -> pd.DataFrame:
        if path not in decoded:
            decoded[path] = read_packets(path, payload_hash=True)  # the correlation needs it: no second read
        return decoded[path]

    if isinstance(src, CaptureSet):
        cs, source = src, src.cni or label
        inv = as_inventory(inventory)
    else:
        from pcaptools.k8s.discover import find_inventory, load_captures

        p = Path(src)
        if not p.exists():
            raise CorrelationError(f"{p}: capture set {label!r} does not exist; expected a directory holding manifest.json or captures (e.g. sample_pcaps/vpc)", path=str(p))
        inv = as_inventory(find_inventory([p], allow_outside=allow_outside) if inventory is None else inventory)
        cs, source = load_captures([p], inventory=inv, decoder=dec, allow_outside=allow_outside), str(p)
    frames, pts = [], []
    for pt in cs.points:
        df = dec(pt.file)
        if pt.pcapng_interface >= 0:
            df = df[df["iface"].to_numpy() == pt.pcapng_interface]
        if pt.ifindex >= 0:
            df = df[df["ifindex"].to_numpy() == pt.ifindex]
        frames.append(df.assign(point=pt.name, node=pt.node, role=pt.role))
        pts.append({"point": pt.name, "node": pt.node, "interface": pt.interface, "role": pt.role, "pod": pt.pod,
                    "file": pt.file, "packets": len(df)})  # fmt: skip
    from pcaptools.decode.table import concat

    packets = concat(frames) if frames else pd.DataFrame()
    for c in ("point", "node", "role"):
        packets[c] = packets[c].astype("category")
    corr = correlate(cs) if window_ns is None else correlate(cs, window_ns=window_ns)
    notes = list(corr.notes)
    if not isinstance(src, CaptureSet):
        from pcaptools.k8s.discover import summary_lines

        notes += summary_lines(cs)
    pth, nat = paths_and_nat(corr, inv)
    if inv is None:
        notes.append("no inventory: cross-node pod-to-pod connections and pod routing cannot be named (n/a)")
    return _Set(label=label, source=source, cni_declared=cs.cni, points=pd.DataFrame(pts), packets=packets,
                correlation=corr, paths=pth, nat=nat, inventory=inv, notes=notes)  # fmt: skip


# --- measurements ------------------------------------------------------------------------------------
def _link_header(pk: pd.DataFrame) -> np.ndarray:
    """Bytes of each frame's own link header (same table as flows' encap_overhead_bytes)."""
    link = pk["link"].astype("category").array
    lens = np.array([LINK_HEADER.get(str(c), 0) for c in link.categories] + [0], np.int64)
    codes = np.asarray(link.codes, np.int64)
    return lens[np.where(codes >= 0, codes, len(lens) - 1)] + 4 * (pk["vlan"].to_numpy(np.int64) >= 0)


def _encap(pk: pd.DataFrame) -> np.ndarray:
    """Encapsulation bytes per frame: wire bytes beyond link header + inner IP packet (0 when native)."""
    tun = pk["tunnel"].notna().to_numpy()
    wire = pk["wirelen"].to_numpy(np.int64)
    ip_len = pk["ip_len"].to_numpy(np.int64)
    return np.where(tun & (ip_len > 0), np.maximum(wire - ip_len - _link_header(pk), 0), 0)


def _wire_ip(pk: pd.DataFrame) -> np.ndarray:
    """Outermost IP packet length on the wire: ip_len when native, frame minus link header when tunnelled (-1 no IP)."""
    tun = pk["tunnel"].notna().to_numpy()
    ip_len = pk["ip_len"].to_numpy(np.int64)
    outer = pk["wirelen"].to_numpy(np.int64) - _link_header(pk)
    return np.where(tun, outer, np.where(pk["ip_version"].to_numpy() > 0, ip_len, -1))


def _uplink(s: _Set) -> pd.DataFrame:
    return s.packets.loc[s.packets["role"].astype(str).isin(UPLINK_ROLES).to_numpy()]


def _max(x: np.ndarray) -> int | None:
    x = x[x > 0]
    return int(x.max()) if x.size else None


def _mode(s: _Set) -> tuple[dict, dict]:
    up = _uplink(s)
    tun = up["tunnel"].notna().to_numpy()
    out: dict[str, object] = {}
    if not len(up):
        out.update(mode=None, vnis=None, ports=None, tunnelled_share=None)
        s.notes.append("no uplink capture (role node-uplink or any): data-plane mode and overhead are n/a")
    else:
        kinds = up.loc[tun, "tunnel"].astype(str).value_counts()
        vnis = sorted({int(v) for v in up.loc[tun, "vni"] if v >= 0})
        ports = sorted({int(v) for v in up.loc[tun, "outer_dport"] if v >= 0})
        out["mode"] = "+".join(kinds.index) if len(kinds) else "native"
        out["vnis"] = vnis or None
        out["ports"] = ports or None
        out["tunnelled_share"] = round(100 * tun.mean(), 2)
    out["routing"] = s.inventory.pod_network(s.correlation.hops).get("routing") if s.inventory is not None else None
    det = pd.DataFrame([{"mode": out["mode"], "tunnels": out["mode"] if tun.any() else None, "vnis": out["vnis"] or [],
                         "udp_ports": out["ports"] or [], "tunnelled_packets": int(tun.sum()), "uplink_packets": len(up),
                         "cni_declared": s.cni_declared}])  # fmt: skip
    return out, {"mode": det}


def _overhead(s: _Set) -> tuple[dict, dict]:
    from pcaptools.flows import flows

    up = _uplink(s)
    if not len(up):
        keys = ("overhead_pkt", "overhead_share", "overhead_flow", "overhead_full", "payload_full")
        return dict.fromkeys(keys), {}
    enc = _encap(up)
    tun = up["tunnel"].notna().to_numpy()
    wire = up["wirelen"].to_numpy(np.int64)
    pay = np.maximum(up["payload_len"].to_numpy(np.int64), 0)
    out: dict[str, object] = {
        "overhead_pkt": int(np.median(enc[tun])) if tun.any() else 0,
        "overhead_share": round(100 * enc.sum() / wire.sum(), 2) if wire.sum() else None,
    }
    fl = flows(up)
    out["overhead_flow"] = int(np.median(fl["encap_overhead_bytes"])) if len(fl) else None
    tcp_data = (up["proto"].to_numpy() == 6) & (pay > 0)
    if tcp_data.any():
        big = tcp_data & (pay == pay[tcp_data].max())
        out["overhead_full"] = round(100 * enc[big].sum() / pay[big].sum(), 2)
        out["payload_full"] = round(100 * pay[big].sum() / wire[big].sum(), 2)
    else:
        out["overhead_full"] = out["payload_full"] = None
    det = pd.DataFrame([{"payload": int(pay.sum()), "inner_headers": int((wire - enc - pay).sum()),
                         "encapsulation": int(enc.sum()), "total": int(wire.sum()), "packets": len(up)}])  # fmt: skip
    return out, {"wire_bytes": det}


def _mtu(s: _Set) -> tuple[dict, dict]:
    pk = s.packets
    role = pk["role"].astype(str).to_numpy()
    ip_len = pk["ip_len"].to_numpy(np.int64)
    tun = pk["tunnel"].notna().to_numpy()
    wip = _wire_ip(pk)
    upl = np.isin(role, UPLINK_ROLES)
    out: dict[str, object] = {
        "ip_pod": _max(ip_len[role == "pod-veth"]),
        "ip_overlay": _max(ip_len[(upl & tun) | (role == TUNNEL_DEVICE_ROLE)]),
        "ip_uplink": _max(wip[upl]),
    }
    enc = _encap(pk)
    if (upl & tun).any():
        ip_ovh = int(np.median(enc[upl & tun]))  # frame overhead == IP-level overhead (outer link header replaces the inner one)
        out["mtu_reduction"] = ip_ovh
        out["mtu_overlay"] = out["ip_uplink"] - ip_ovh if out["ip_uplink"] is not None else None
    else:
        out["mtu_reduction"] = 0 if upl.any() else None
        out["mtu_overlay"] = None
    mss = pk["tcp_mss"].to_numpy(np.int64)
    flags = pk["tcp_flags"].to_numpy(np.int64)
    syn = (pk["proto"].to_numpy() == 6) & ((flags & 0x02) != 0) & (mss >= 0)
    out["mss_values"] = sorted(set(mss[syn].tolist())) or None
    pod_ips = _pod_addresses(s)
    from_pod = syn & pk["src"].astype(str).isin(pod_ips).to_numpy() if pod_ips else syn & (role == "pod-veth")
    out["mss_pod"] = int(pd.Series(mss[from_pod]).mode().iloc[0]) if from_pod.any() else None
    from pcaptools.flows import flows

    fl = flows(pk.loc[role == "pod-veth"] if (role == "pod-veth").any() else pk)  # where connections start and end
    both = fl.loc[(fl["mss_orig"] >= 0) & (fl["mss_resp"] >= 0)]
    if len(both):
        eff = np.minimum(both["mss_orig"].to_numpy(), both["mss_resp"].to_numpy())
        out["mss_effective"] = int(np.median(eff))
        v6 = both["orig_h"].astype(str).str.contains(":").to_numpy()
        out["pmtu"] = int(np.median(eff + np.where(v6, _IP_OVERHEAD[6], _IP_OVERHEAD[4])))
    else:
        out["mss_effective"] = out["pmtu"] = None
    frag = ((pk["frag_offset"].to_numpy() > 0) | pk["more_frags"].to_numpy())
    ityp, icode = pk["icmp_type"].to_numpy(), pk["icmp_code"].to_numpy()
    v6 = pk["ip_version"].to_numpy() == 6
    need = np.where(v6, (pk["proto"].to_numpy() == 58) & (ityp == 2), (pk["proto"].to_numpy() == 1) & (ityp == 3) & (icode == 4))
    det = pd.DataFrame({"point": pk["point"].astype(str), "role": role, "ip_len": ip_len, "wire_ip": wip,
                        "wirelen": pk["wirelen"].to_numpy(np.int64), "tunnelled": tun, "mss": np.where(syn, mss, -1),
                        "fragment": frag, "frag_needed": need})  # fmt: skip
    g = det.groupby("point", sort=False)
    per = pd.DataFrame({
        "role": g["role"].first(),
        "packets": g.size(),
        "tunnelled": g["tunnelled"].sum(),
        "largest_ip": g["ip_len"].max(),
        "largest_wire_ip": g["wire_ip"].max(),
        "largest_frame": g["wirelen"].max(),
        "syn_mss": g["mss"].agg(lambda x: sorted(set(x[x >= 0].tolist()))),
        "fragments": g["fragment"].sum(),
        "frag_needed": g["frag_needed"].sum(),
    }).reset_index()  # fmt: skip
    per = per.set_index("point").reindex(s.points["point"]).dropna(subset=["role"]).reset_index()
    return out, {"points": per}


def _fragments(s: _Set) -> tuple[dict, dict]:
    pk = s.packets
    frag = (pk["frag_offset"].to_numpy() > 0) | pk["more_frags"].to_numpy()
    ityp, icode, proto = pk["icmp_type"].to_numpy(), pk["icmp_code"].to_numpy(), pk["proto"].to_numpy()
    need = ((proto == 1) & (ityp == 3) & (icode == 4)) | ((proto == 58) & (ityp == 2))
    mtus = sorted({int(v) for v in pk["icmp_mtu"].to_numpy()[need] if v >= 0})
    return {"fragments": int(frag.sum()), "frag_needed": int(need.sum()), "frag_mtus": mtus or None}, {}


def _pod_addresses(s: _Set) -> set[str]:
    if s.inventory is None:
        return set()
    return {ip for p in s.inventory.pods.values() if not p.host_network for ip in p.ips}


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
    the samples (hop, latency_ns) behind both, the total as hop 'pod → pod (total)'."""
    h = s.correlation.hops
    if not len(h):
        return None
    roles = _point_roles(s)
    nodes = dict(zip(s.points["point"], s.points["node"], strict=True))
    pcat = h["point"].astype("category").array
    role = np.array([roles.get(str(c), "any") for c in pcat.categories] + ["any"], object)[np.asarray(pcat.codes)]
    node = np.array([nodes.get(str(c), "") for c in pcat.categories] + [""], object)[np.asarray(pcat.codes)]
    j = h["journey"].to_numpy(np.int64)
    t = h["ts_corrected_ns"].to_numpy(np.int64)
    n = len(j)
    start = np.r_[True, j[1:] != j[:-1]]
    first = np.flatnonzero(start)
    last = np.r_[first[1:] - 1, n - 1]
    ok = (role[first] == "pod-veth") & (role[last] == "pod-veth") & (node[first] != node[last])
    if not ok.any():
        return np.zeros(0), pd.DataFrame(), pd.DataFrame()
    totals = (t[last] - t[first])[ok]
    jrow = np.cumsum(start) - 1
    keep = ok[jrow]
    idx = np.flatnonzero(keep[1:] & ~start[1:]) + 1  # a row and its predecessor in the same journey
    pos = idx - first[jrow[idx]]
    across = node[idx] != node[idx - 1]
    frm, to = role[idx - 1], role[idx]
    hop = pd.Series(frm).str.cat(pd.Series(to), sep=" → ") + np.where(across, " (wire)", "")
    d = pd.DataFrame({"hop": hop.to_numpy(), "from_role": frm, "to_role": to, "dt": t[idx] - t[idx - 1], "pos": pos})
    g = d.groupby("hop", sort=False)
    pairs = pd.DataFrame({"from_role": g["from_role"].first(), "to_role": g["to_role"].first(), "count": g.size(),
                          "median_ns": g["dt"].median(), "p90_ns": g["dt"].quantile(0.9), "position": g["pos"].median()})  # fmt: skip
    pairs = pairs.sort_values("position").drop(columns="position").reset_index()
    samples = pd.concat([d[["hop", "dt"]].rename(columns={"dt": "latency_ns"}),
                         pd.DataFrame({"hop": "pod → pod (total)", "latency_ns": totals})], ignore_index=True)  # fmt: skip
    return totals.astype(np.float64), pairs, samples


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
