"""A Kubernetes inventory (``kubectl get nodes,pods,services,endpointslices -A -o json``) as address lookups.

:meth:`Inventory.load` reads the ``List`` JSON (a path, the text's parsed ``dict``, or a list of
items). Unknown kinds are ignored and missing fields are tolerated: a pod without an IP names nothing,
a service without ports matches no port. :meth:`Inventory.lookup` maps an address column (category
strings) to entity kind / name / node over its categories only, so it is vectorised over tables.

Every address comes from the inventory (no ranges are assumed): pod IPs from ``status.podIP(s)``, node
addresses from ``status.addresses``, service frontends from ``spec.clusterIP(s)``,
``spec.externalIPs`` and ``status.loadBalancer.ingress[].ip``. An address inside a node's
``spec.podCIDR(s)`` that is no pod belongs to that node (a CNI tunnel or gateway address, such as
Calico's ``vxlan.calico`` address or flannel's ``cni0``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pcaptools.errors import InventoryError
from pcaptools.jsonfile import load_json
from pcaptools.k8s.inventory_check import check_items
from pcaptools.k8s.journeys import grouped, journey_index
from pcaptools.labels import categorical, category_codes, codes_in, vocabulary

ENTITY_KINDS = ("pod", "node", "service-clusterip", "loadbalancer", "external")
"""Values of an address's entity kind: a pod IP, a node address (or an address of a node's pod CIDR
that is no pod), a service cluster IP, a load-balancer ingress or external IP of a service, or
anything the inventory does not name."""

PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
"""Kubernetes protocol names -> IP protocol numbers."""


@dataclass(frozen=True)
class ServicePort:
    """One port of a service: frontend ``port``, ``node_port`` (-1 if none) and the resolved ``target_port``."""

    name: str
    proto: int
    port: int
    target_port: int  # -1 when a named targetPort could not be resolved
    node_port: int = -1


@dataclass(frozen=True)
class Endpoint:
    """One ready or not endpoint address of a service (from an EndpointSlice)."""

    service: str
    ip: str
    pod: str  # "ns/name" from targetRef, "" if none
    node: str  # nodeName, "" if none
    ready: bool = True


@dataclass(frozen=True)
class Service:
    """A service: ``ns/name``, type, frontends, ports and traffic policy."""

    name: str
    type: str
    cluster_ips: tuple[str, ...]
    lb_ips: tuple[str, ...]
    lb_hostnames: tuple[str, ...]
    external_ips: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    external_traffic_policy: str  # "Cluster", "Local" or "" (not applicable)
    selector: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Pod:
    """A pod: ``ns/name``, node, IPs and whether it shares its node's network."""

    name: str
    node: str
    ips: tuple[str, ...]
    host_network: bool = False
    labels: dict = field(default_factory=dict, compare=False)
    ports: tuple[tuple[int, int], ...] = ()  # (IP protocol, containerPort) of its containers
    local_ips: tuple[str, ...] = ()  # addresses a hostNetwork pod binds on its node (NodeLocal DNSCache -localip)


@dataclass(frozen=True)
class Node:
    """A node: name, addresses (InternalIP first), pod CIDRs, provider id and zone."""

    name: str
    addresses: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    provider_id: str = ""
    zone: str = ""
    hostnames: tuple[str, ...] = ()  # status.addresses of type Hostname


def _canon(ip: Any) -> str | None:
    """Canonical text of an IP address, or None when it is not one."""
    try:
        return ipaddress.ip_address(str(ip).strip()).compressed
    except ValueError:
        return None


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def _name(meta: dict) -> str:
    ns = _get(meta, "namespace", default="")
    n = _get(meta, "name", default="")
    return f"{ns}/{n}" if ns else str(n)


@dataclass
class Inventory:
    """Nodes, pods, services and endpoints of a cluster, with vectorised address lookups."""

    nodes: dict[str, Node]
    pods: dict[str, Pod]
    services: dict[str, Service]
    endpoints: list[Endpoint]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike | dict | list) -> Inventory:
        """From a kubectl ``List`` JSON file, its parsed dict, or a list of items; InventoryError if unusable."""
        where = ""
        if isinstance(source, (str, os.PathLike)):
            where = str(source)
            p = Path(source)
            if os.path.isdir(p):  # False, not an OSError, for names too long or with a NUL
                p = p / "inventory.json"
                where = str(p)
            doc = load_json(p, what="inventory", error=InventoryError, expected="the output of "
                            "`kubectl get nodes,pods,services,endpointslices -A -o json > inventory.json`")
        else:
            doc = source
        return cls.from_items(_items(doc, where), source=where)

    @classmethod
    def from_items(cls, items: list, *, source: str = "") -> Inventory:
        """From kubectl items (dicts with ``kind``); other kinds are skipped, missing fields tolerated."""
        nodes: dict[str, Node] = {}
        pods: dict[str, Pod] = {}
        services: dict[str, Service] = {}
        slices: list[dict] = []
        skipped: dict[str, int] = {}
        check_items(items, source)
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise InventoryError(
                    f"{source or 'inventory'}: items[{i}] is a {type(it).__name__}, expected an object with 'kind' "
                    "(a Kubernetes resource); regenerate it with kubectl ... -o json",
                    path=source or None, record=i,
                )  # fmt: skip
            kind = it.get("kind")
            meta = it.get("metadata") if isinstance(it.get("metadata"), dict) else {}
            if kind == "Node":
                n = _node(it, meta)
                if n.name:
                    nodes[n.name] = n
            elif kind == "Pod":
                p = _pod(it, meta)
                if p.name:
                    pods[p.name] = p
            elif kind == "Service":
                services[_name(meta)] = it  # resolved once the slices are known (named target ports)
            elif kind == "EndpointSlice":
                slices.append(it)
            else:
                skipped[str(kind)] = skipped.get(str(kind), 0) + 1
        endpoints, slice_ports = _endpoints(slices)
        svcs = {name: _service(name, it, slice_ports.get(name, {})) for name, it in services.items()}
        notes = [f"ignored {n} item(s) of kind {k}" for k, n in sorted(skipped.items())]
        if not (nodes or pods or svcs):
            notes.append("the inventory holds no nodes, pods or services; every address will be 'external'")
        inv = cls(nodes=nodes, pods=pods, services=svcs, endpoints=endpoints, source=source, notes=notes)
        inv._build()
        return inv

    # -- address table -------------------------------------------------------------------------
    def _build(self) -> None:
        table: dict[str, tuple[str, str, str]] = {}
        for svc in self.services.values():
            for ip in svc.lb_ips + svc.external_ips:
                table[ip] = ("loadbalancer", svc.name, "")
            for ip in svc.cluster_ips:
                table[ip] = ("service-clusterip", svc.name, "")
        for p in self.pods.values():
            if not p.host_network:
                for ip in p.ips:
                    table[ip] = ("pod", p.name, p.node)
        for ep in self.endpoints:  # endpoints of pods missing from the listing still name their pod
            if ep.ip not in table and ep.pod:
                table[ep.ip] = ("pod", ep.pod, ep.node)
        for n in self.nodes.values():
            for ip in n.addresses:
                table[ip] = ("node", n.name, n.name)
        self._table = table
        self._entities: dict[str, tuple[str, str, str]] = {}  # entity() of each address text asked, parsed once
        nets = []
        for n in self.nodes.values():
            for c in n.pod_cidrs:
                try:
                    nets.append((ipaddress.ip_network(c, strict=False), n.name))
                except ValueError:
                    self.notes.append(f"node {n.name}: podCIDR {c!r} is not a network; ignored")
        self._cidrs = nets

    def entity(self, addr: str) -> tuple[str, str, str]:
        """(kind, name, node) of one address; unnamed addresses are ('external', addr, ''). Remembered per address
        text: a path table asks for every connection's client and backend (6 µs a parse, 0.36 s at 30k connections)."""
        known = self._entities.get(addr) if type(addr) is str else None
        if known is None:
            known = self._entity(addr)
            if type(addr) is str:
                self._entities[addr] = known
        return known

    def _entity(self, addr: str) -> tuple[str, str, str]:
        ip = _canon(addr)
        if ip is None:
            return ("external", str(addr), "")
        hit = self._table.get(ip)
        if hit is not None:
            return hit
        a = ipaddress.ip_address(ip)
        for net, node in self._cidrs:
            if a.version == net.version and a in net:
                return ("node", node, node)
        return ("external", ip, "")

    def lookup(self, addresses: pd.Series | pd.Categorical) -> pd.DataFrame:
        """Entity ``kind``, ``name`` and ``node`` of every address of a column (parsed once per category)."""
        cat = addresses.array if isinstance(addresses, pd.Series) and isinstance(addresses.dtype, pd.CategoricalDtype) else pd.Categorical(addresses)
        cats = [str(c) for c in cat.categories]
        ents = [self.entity(c) for c in cats] + [("", "", "")]
        codes = np.asarray(cat.codes, np.int64)
        idx = np.where(codes >= 0, codes, len(cats))
        kind_codes = np.array([ENTITY_KINDS.index(e[0]) if e[0] else -1 for e in ents], np.int64)
        out = pd.DataFrame(
            {
                "kind": pd.Categorical.from_codes(kind_codes[idx], categories=list(ENTITY_KINDS)),
                "name": categorical(np.array([e[1] for e in ents], object), idx),
                "node": categorical(np.array([e[2] for e in ents], object), idx),
            }
        )
        if isinstance(addresses, pd.Series):
            out.index = addresses.index
        return out

    def node_of(self, addresses: pd.Series | pd.Categorical) -> np.ndarray:
        """Node owning each address (pod's node, node itself, pod-CIDR owner) as an object array, '' if none."""
        return self.lookup(addresses)["node"].astype(str).to_numpy(object)

    # -- services ----------------------------------------------------------------------------
    def frontends(self) -> pd.DataFrame:
        """Every (address, port, proto) a service answers on, with how (clusterip/nodeport/loadbalancer)."""
        rows = []
        node_ips = [ip for n in self.nodes.values() for ip in n.addresses]
        for s in self.services.values():
            for p in s.ports:
                for ip in s.cluster_ips:
                    rows.append((ip, p.port, p.proto, "clusterip", s.name, p.target_port))
                for ip in s.lb_ips + s.external_ips:
                    rows.append((ip, p.port, p.proto, "loadbalancer", s.name, p.target_port))
                if p.node_port > 0:
                    for ip in node_ips:
                        rows.append((ip, p.node_port, p.proto, "nodeport", s.name, p.target_port))
        return pd.DataFrame(rows, columns=["addr", "port", "proto", "via", "service", "target_port"]).astype(
            {"port": np.int32, "proto": np.int16, "target_port": np.int32}
        )

    def endpoint_nodes(self, service: str) -> set[str]:
        """Nodes holding at least one endpoint of ``service``."""
        return {e.node for e in self.endpoints if e.service == service and e.node}

    def host_network_pod(self, node: str, port: int, proto: int, *, only_one: bool = False) -> str | None:
        """The hostNetwork pod of ``node`` listening on ``port``/``proto`` (a containerPort); with ``only_one``,
        also the node's single hostNetwork pod when none declares the port (a client's port is ephemeral)."""
        pods = [p for p in self.pods.values() if p.host_network and p.node == node]
        hit = [p for p in pods if (proto, port) in p.ports]
        if len(hit) == 1:
            return hit[0].name
        return pods[0].name if only_one and len(pods) == 1 else None

    def node_local(self, addr: str, node: str) -> str | None:
        """The hostNetwork pod of ``node`` that listens on ``addr`` bound locally on every node (NodeLocal DNSCache)."""
        ip = _canon(addr)
        hit = [p.name for p in self.pods.values() if p.host_network and p.node == node and ip in p.local_ips]
        return hit[0] if hit else None

    def node_addresses(self) -> dict[str, str]:
        """Node address -> node name."""
        return {ip: n.name for n in self.nodes.values() for ip in n.addresses}

    def pod_network(self, hops: pd.DataFrame | None = None) -> dict:
        """How pods are addressed and routed: inventory ``mode`` ('pod-cidr', 'vpc-native', 'unknown'), evidence,
        and with a hops table ``routing`` from packets ('native', 'overlay', 'unknown')."""
        ev = []
        with_cidr = [n.name for n in self.nodes.values() if n.pod_cidrs]
        aws = [n.name for n in self.nodes.values() if n.provider_id.startswith("aws://")]
        pod_ips = [ipaddress.ip_address(ip) for p in self.pods.values() if not p.host_network for ip in p.ips]
        in_cidr = sum(any(a.version == net.version and a in net for net, _ in self._cidrs) for a in pod_ips)
        if with_cidr:
            ev.append(f"{len(with_cidr)}/{len(self.nodes)} nodes have spec.podCIDR; {in_cidr}/{len(pod_ips)} pod IPs inside them")
        else:
            ev.append("no node has spec.podCIDR")
        if aws:
            ev.append(f"{len(aws)}/{len(self.nodes)} nodes have an aws:// providerID")
        node_ips = [ipaddress.ip_address(ip) for n in self.nodes.values() for ip in n.addresses]
        if node_ips and pod_ips:
            # the longest prefix common to node and pod addresses: pods numbered from the nodes' network share a long one
            span = _common_prefix(node_ips + pod_ips)
            if span:
                ev.append(f"node and pod IPs share a /{span} prefix")
        if with_cidr and in_cidr == len(pod_ips):
            mode = "pod-cidr"
        elif not with_cidr and pod_ips:
            mode = "vpc-native"
        else:
            mode = "unknown"
        out = {"mode": mode, "evidence": ev}
        if hops is not None:
            out["routing"], pk_ev = self._routing_from_packets(hops)
            ev.append(pk_ev)
        return out

    def _routing_from_packets(self, hops: pd.DataFrame) -> tuple[str, str]:
        """Cross-node pod-to-pod packets on shared interfaces (not one pod's veth): tunnelled -> overlay, bare -> native."""
        if not len(hops):
            return "unknown", "no packets"
        codes = address_codes(hops)  # the addresses as codes once, for both passes (each a pass over every sighting)
        return routing_verdict(*routing_counts(self.routing_flags(hops, single_address_points(*point_addresses(hops, codes)), codes)))

    def routing_flags(self, hops: pd.DataFrame, single: set[str], codes: tuple | None = None) -> pd.DataFrame:
        """Per journey of ``hops`` (``journey`` index): ``tun``, a cross-node pod-to-pod sighting tunnelled, and ``bare``,
        one not tunnelled on a shared interface (a point not in ``single``, :func:`single_address_points`). A journey cut
        over several tables: their flags combined with ``any``. Each distinct address is named once; rows are codes
        (``codes``: :func:`address_codes` of ``hops``, when the caller has them)."""
        vocab, s, d = address_codes(hops) if codes is None else codes
        ents = [self.entity(a) for a in vocab]
        # per code + 1 (a missing address, code -1, at 0: no pod, no node): whether a pod, and its node
        pod = np.array([False] + [e[0] == "pod" for e in ents])
        node_ids: dict[str, int] = {}
        node = np.array([-1] + [node_ids.setdefault(str(e[2]), len(node_ids)) for e in ents], np.int64)
        nv = len(vocab) + 1
        if nv * nv <= len(s) + 1024:  # few addresses: cross-node pod pairs looked up once per (src, dst) code pair
            pair = pod[:, None] & pod[None, :] & (node[:, None] != node[None, :])
            cross = pair.reshape(-1)[s * nv + d + (nv + 1)]  # (s + 1) * nv + (d + 1) in two passes, not np.where's
        else:
            cross = pod[s + 1] & pod[d + 1] & (node[s + 1] != node[d + 1])
        tun = hops["tunnel"].notna().to_numpy()
        # a point where one address is in every row is a single pod's interface: pod IPs are always bare there
        pc, points = category_codes(hops["point"])
        shared = ~np.array([p in single for p in points] + [False])[pc]
        j = hops["journey"].to_numpy(np.int64)
        flags = {"tun": cross & tun, "bare": cross & ~tun & shared}
        if len(j) and grouped(j):  # paths' causal order: a journey's flags are an OR over its run of rows
            starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
            return pd.DataFrame({k: np.logical_or.reduceat(rows, starts) for k, rows in flags.items()},
                                index=pd.Index(j[starts], dtype=np.int64))  # fmt: skip
        uj, ji = journey_index(j)
        for k, rows in flags.items():  # per journey: any of its rows (set where one is, no weighted count)
            hit = np.zeros(len(uj), bool)
            hit[ji[rows]] = True
            flags[k] = hit
        return pd.DataFrame(flags, index=pd.Index(uj, dtype=np.int64))

    def describe(self) -> str:
        """One line: counts of nodes, pods, services and endpoints."""
        return f"{len(self.nodes)} nodes, {len(self.pods)} pods, {len(self.services)} services, {len(self.endpoints)} endpoints"


def address_codes(hops: pd.DataFrame) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """(vocabulary of the src and dst addresses, src codes, dst codes in it) of a hops table."""
    vocab = vocabulary(hops["src"], hops["dst"])
    return vocab, codes_in(hops["src"], vocab), codes_in(hops["dst"], vocab)


def point_addresses(hops: pd.DataFrame, codes: tuple | None = None) -> tuple[pd.Series, pd.Series]:
    """(rows per (point, address) over src and dst, rows per point) of a hops table: sums over tables add up.
    Counted on codes (``codes``: :func:`address_codes` of ``hops``, when the caller has them); rows with a missing
    point or address count for no pair, as ``value_counts`` drops them."""
    pc, points = category_codes(hops["point"])
    vocab, s, d = address_codes(hops) if codes is None else codes
    nv = max(len(vocab), 1)
    span = len(points) * nv
    if span <= 8 * len(pc) + 1024:  # few (point, address) codes: src and dst counted apart, no concatenation or sort
        at = pc * nv
        has_point = pc >= 0
        counts = np.zeros(span + 1, np.int64)  # the last: rows with a missing point or address
        for a in (s, d):
            k = at + a
            k[~(has_point & (a >= 0))] = span  # not np.where(ok, k, span): 4.5 ms on 792k rows, this ~1
            counts += np.bincount(k, minlength=span + 1)
        key = np.flatnonzero(counts[:span])
        n = counts[key]
    else:
        p = np.concatenate([pc, pc])
        a = np.concatenate([s, d])
        ok = (p >= 0) & (a >= 0)
        key, n = np.unique(p[ok] * nv + a[ok], return_counts=True)
    o = np.argsort(-n, kind="stable")  # most rows first, as value_counts orders them
    index = pd.MultiIndex(levels=[pd.Index(points), vocab], codes=[key[o] // nv, key[o] % nv], names=["p", "a"])
    pairs = pd.Series(n[o].astype(np.int64), index=index, name="count")
    per_point = np.bincount(pc[pc >= 0] if len(pc) and pc.min() < 0 else pc, minlength=len(points))
    used = np.flatnonzero(per_point)
    used = used[np.argsort(-per_point[used], kind="stable")]
    return pairs, pd.Series(per_point[used].astype(np.int64), index=pd.Index([points[i] for i in used]), name="count")


def single_address_points(pairs: pd.Series, rows: pd.Series) -> set[str]:
    """Points where one address is in every row (a single pod's interface), from :func:`point_addresses`' counts."""
    if not len(pairs):
        return set()
    top = pairs.groupby(level="p").max()
    return {str(p) for p, n in top.items() if n >= rows.get(p, 0)}


def routing_counts(flags: pd.DataFrame) -> tuple[int, int]:
    """(tunnelled, bare) journeys of :meth:`Inventory.routing_flags`: bare counts those bare on a shared interface and
    tunnelled nowhere (sums, so a run that sees its journeys in parts adds them up)."""
    tun = flags["tun"].to_numpy(bool)
    return int(tun.sum()), int((flags["bare"].to_numpy(bool) & ~tun).sum())


def routing_verdict(n_tun: int, n_bare: int) -> tuple[str, str]:
    """(routing, evidence) from the journeys' :func:`routing_counts`: tunnelled -> overlay, bare -> native."""
    ev = f"cross-node pod-to-pod packets: {n_tun} tunnelled on the way, {n_bare} bare on shared interfaces and never tunnelled"
    if n_tun and not n_bare:
        return "overlay", ev
    if n_bare and not n_tun:
        return "native", ev
    return ("mixed" if n_tun else "unknown"), ev


def _common_prefix(addrs: list) -> int | None:
    if len({a.version for a in addrs}) != 1:
        return None
    bits = addrs[0].max_prefixlen
    ints = [int(a) for a in addrs]
    diff = 0
    for v in ints[1:]:
        diff |= v ^ ints[0]
    return bits - diff.bit_length()


def _items(doc: Any, where: str) -> list:
    src = where or "inventory"
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise InventoryError(
            f"{src}: expected a JSON object (a kubectl List), found a {type(doc).__name__}; "
            "run `kubectl get nodes,pods,services,endpointslices -A -o json`",
            path=where or None,
        )
    if "items" in doc:
        items = doc["items"]
        if not isinstance(items, list):
            raise InventoryError(
                f"{src}: 'items' should be a list of resources, found a {type(items).__name__}", path=where or None
            )
        return items
    if "kind" in doc and doc.get("kind") != "List":
        return [doc]  # a single resource
    raise InventoryError(
        f"{src}: no 'items' list; expected the output of `kubectl get nodes,pods,services,endpointslices -A -o json`",
        path=where or None,
    )


def _node(it: dict, meta: dict) -> Node:
    addrs = _get(it, "status", "addresses", default=[]) or []
    order = {"InternalIP": 0, "ExternalIP": 1}
    ips = []
    for a in sorted((a for a in addrs if isinstance(a, dict)), key=lambda a: order.get(a.get("type"), 9)):
        if a.get("type") in order:
            ip = _canon(a.get("address"))
            if ip and ip not in ips:
                ips.append(ip)
    spec = it.get("spec") if isinstance(it.get("spec"), dict) else {}
    cidrs = list(spec.get("podCIDRs") or [])
    if spec.get("podCIDR") and spec["podCIDR"] not in cidrs:
        cidrs.insert(0, spec["podCIDR"])
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    return Node(
        name=str(meta.get("name", "")), addresses=tuple(ips), pod_cidrs=tuple(str(c) for c in cidrs),
        provider_id=str(spec.get("providerID", "")), zone=str(labels.get("topology.kubernetes.io/zone", "")),
        hostnames=tuple(str(a.get("address")) for a in addrs if isinstance(a, dict) and a.get("type") == "Hostname" and a.get("address")),
    )  # fmt: skip


def _local_ips(it: dict) -> tuple[str, ...]:
    """Addresses from a container's ``-localip a,b`` argument (NodeLocal DNSCache listens there on every node)."""
    out: list[str] = []
    for c in _get(it, "spec", "containers", default=[]) or []:
        args = [str(a) for a in (c.get("args") or []) + (c.get("command") or [])] if isinstance(c, dict) else []
        for k, a in enumerate(args):
            val = args[k + 1] if a in ("-localip", "--localip") and k + 1 < len(args) else a.partition("=")[2] if a.startswith(("-localip=", "--localip=")) else ""
            out += [ip for ip in (_canon(x.strip()) for x in val.split(",") if x.strip()) if ip]
    return tuple(dict.fromkeys(out))


def _pod(it: dict, meta: dict) -> Pod:
    ips = []
    for x in [_get(it, "status", "podIP")] + [_get(p, "ip") for p in (_get(it, "status", "podIPs", default=[]) or [])]:
        ip = _canon(x) if x else None
        if ip and ip not in ips:
            ips.append(ip)
    return Pod(
        name=_name(meta), node=str(_get(it, "spec", "nodeName", default="")), ips=tuple(ips),
        host_network=bool(_get(it, "spec", "hostNetwork", default=False)),
        ports=tuple((PROTOCOLS.get(str(p.get("protocol", "TCP")).upper(), -1), int(p["containerPort"]))
                    for c in (_get(it, "spec", "containers", default=[]) or []) if isinstance(c, dict)
                    for p in (c.get("ports") or []) if isinstance(p, dict) and isinstance(p.get("containerPort"), int)),
        local_ips=_local_ips(it),
        labels=meta.get("labels") if isinstance(meta.get("labels"), dict) else {},
    )  # fmt: skip


def _endpoints(slices: list[dict]) -> tuple[list[Endpoint], dict[str, dict[str, int]]]:
    eps: list[Endpoint] = []
    ports: dict[str, dict[str, int]] = {}
    for s in slices:
        meta = s.get("metadata") if isinstance(s.get("metadata"), dict) else {}
        svc = _get(meta, "labels", "kubernetes.io/service-name")
        if not svc:
            continue
        name = f"{meta.get('namespace', '')}/{svc}" if meta.get("namespace") else str(svc)
        for p in s.get("ports") or []:
            if isinstance(p, dict) and isinstance(p.get("port"), int):
                ports.setdefault(name, {})[str(p.get("name") or "")] = p["port"]
        for e in s.get("endpoints") or []:
            if not isinstance(e, dict):
                continue
            ref = e.get("targetRef") if isinstance(e.get("targetRef"), dict) else {}
            pod = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref.get("kind", "Pod") == "Pod" and ref.get("name") else ""
            for a in e.get("addresses") or []:
                ip = _canon(a)
                if ip:
                    ready = _get(e, "conditions", "ready", default=True)
                    eps.append(Endpoint(service=name, ip=ip, pod=pod, node=str(e.get("nodeName") or ""), ready=bool(ready)))
    return eps, ports


def _service(name: str, it: dict, slice_ports: dict[str, int]) -> Service:
    spec = it.get("spec") if isinstance(it.get("spec"), dict) else {}
    cips = []
    for x in [spec.get("clusterIP")] + list(spec.get("clusterIPs") or []):
        ip = _canon(x) if x and x != "None" else None
        if ip and ip not in cips:
            cips.append(ip)
    lb_ips, hosts = [], []
    for ing in _get(it, "status", "loadBalancer", "ingress", default=[]) or []:
        if isinstance(ing, dict):
            ip = _canon(ing.get("ip")) if ing.get("ip") else None
            if ip:
                lb_ips.append(ip)
            if ing.get("hostname"):
                hosts.append(str(ing["hostname"]))
    ext = [ip for ip in (_canon(x) for x in spec.get("externalIPs") or []) if ip]
    ports = []
    for p in spec.get("ports") or []:
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            continue
        tp = p.get("targetPort", p["port"])
        if isinstance(tp, str):
            tp = int(tp) if tp.isdigit() else slice_ports.get(str(p.get("name") or ""), -1)
        ports.append(ServicePort(
            name=str(p.get("name") or ""), proto=PROTOCOLS.get(str(p.get("protocol", "TCP")).upper(), -1),
            port=int(p["port"]), target_port=int(tp), node_port=int(p.get("nodePort") or -1),
        ))  # fmt: skip
    typ = str(spec.get("type") or "ClusterIP")
    etp = str(spec.get("externalTrafficPolicy") or ("Cluster" if typ in ("NodePort", "LoadBalancer") else ""))
    return Service(
        name=name, type=typ, cluster_ips=tuple(cips), lb_ips=tuple(lb_ips), lb_hostnames=tuple(hosts),
        external_ips=tuple(ext), ports=tuple(ports), external_traffic_policy=etp,
        selector=spec.get("selector") if isinstance(spec.get("selector"), dict) else {},
    )  # fmt: skip
