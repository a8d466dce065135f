"""Faults the lab can inject, each on its own connection, with where the packet is dropped and why (the truth).

:func:`plan` adds the faults' services to the topology (before the inventory and kube-proxy rules are
written) and returns one :class:`Fault` per name: the client job that meets the fault (a fixed source
port, so the rules match that connection only and every other connection stays healthy), the commands
that install it, and its truth record (``cause``, ``direction``, ``last_seen`` / ``first_missed`` capture
points ``NODE:IFACE``, ``node`` or null between nodes). :func:`apply` runs the commands once the cluster is
built; :func:`after_capture` applies the capture-side fault (records removed from one capture file).

Faults (:data:`FAULTS`):

* ``policy-drop``: a NetworkPolicy-style DROP in the FORWARD chain of a backend's node, for one client's
  connection to that pod: seen on the node, never on the pod's veth, no ICMP.
* ``no-endpoints``: a ClusterIP service whose EndpointSlice is empty; kube-proxy's filter rule rejects
  new connections with ICMP port unreachable on the client's node.
* ``stale-endpoint``: a ClusterIP service that kube-proxy still DNATs to an address no pod has (its
  EndpointSlice is empty); Calico: an unused address of another node's block, dropped by that node's
  blackhole route; VPC: an unused VPC address nobody answers ARP for.
* ``mtu-blackhole``: calico-vxlan: the overlay MTU of one node set too high (the DNS pod's veth and
  ``vxlan.calico`` at 1500, the uplink at 1550); a large DF DNS answer leaves the node encapsulated and
  the VPC segment (MTU 1500) drops it without ICMP, while small answers pass. vpc (native routing): jumbo
  frames (9001) on a client's and a backend's nodes and pods while the segment between carries 1500, only
  during that job: the handshake passes, the backend's full-size DF segments vanish on the segment, no ICMP.
* ``mtu-icmp``: the pod MTU of a client and a backend on two nodes set above the path's, only while that
  connection runs (calico-vxlan: 1500 above the overlay's 1450; vpc: jumbo 9001 above the uplink's 1500); the
  backend's node drops its large DF segments and answers ICMP frag-needed, the backend retries smaller: the
  connection is degraded, not failed.
* ``asymmetric-return``: policy routing sends one connection's replies via a third node. calico-vxlan: the
  client's node, with strict ``rp_filter`` on its uplink, drops them (their source is routed through the
  overlay). vpc: rp_filter cannot see it (the backend is routed out of the same uplink), so the stateful form:
  the third node's conntrack never saw the SYN, the SYN-ACK is ctstate INVALID there and dropped.
* ``conntrack-invalid``: the client's node loses the connection's conntrack entry right after the SYN (its
  later packets are looked up in another conntrack zone with ``nf_conntrack_tcp_loose`` 0, as after
  ``conntrack -D`` of a live entry): ctstate INVALID, dropped by kube-proxy's INVALID rule; the handshake's
  SYN went through, every later packet of the client stops on its node.
* ``capture-drop``: about 1% of the records of one capture point removed after the run (seeded).
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcaptools.errors import LabError
from pcaptools.lab import netns, outdir
from pcaptools.lab.topology import Service, ServicePort, Topology

FAULTS = ("policy-drop", "no-endpoints", "stale-endpoint", "mtu-blackhole", "mtu-icmp", "asymmetric-return",
          "conntrack-invalid", "capture-drop")  # fmt: skip
"""Fault names accepted by ``pcaptools lab run --fault``."""

SCENARIOS = ("hairpin", "port-reuse", "hostnetwork", "hostnetwork-client", "nodelocal-dns")
"""Healthy traffic the regular jobs do not make, taken like faults (``--fault``), recorded under ``scenarios``:
a pod reaching its own service and landing on itself (the DNS pod, the service's one endpoint); a client
port reused for a second connection to the same pod after the first closed; a hostNetwork pod (a server in
a node's own namespace, listed in the inventory with ``hostNetwork: true``) reached on its node's address; a
hostNetwork client (a process in a node's own namespace, the node's one hostNetwork pod) connecting to a ClusterIP
service and to a pod on another node (kube-proxy's DNAT and masquerade happen in the node's OUTPUT and POSTROUTING,
before any capture point: packets show the connection from the node's address to the backend); NodeLocal DNSCache (169.254.20.10 bound on every node, on ``lo`` where the real cache uses a
``nodelocaldns`` dummy interface, and a hostNetwork DNS pod) queried over UDP and over TCP (the fallback for large answers)."""

NODELOCAL_IP = "169.254.20.10"

FIRST_SPORT = 41000
"""Fault connections use source ports from here (one each)."""


@dataclass
class Fault:
    """One injected fault: its client job (or none), the commands installing it, and its truth record."""

    name: str
    job: dict[str, Any] | None
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (namespace, argv)
    truth: dict[str, Any] = field(default_factory=dict)
    point: str | None = None  # capture-drop: NODE:IFACE whose file loses records
    rate: float = 0.01
    during: list[tuple[str, list[str]]] = field(default_factory=list)  # only while its own job runs
    undo: list[tuple[str, list[str]]] = field(default_factory=list)
    servers: list[tuple[str, str, int, str]] = field(default_factory=list)  # (namespace, proto, port, label) it adds
    inventory: list[dict[str, Any]] = field(default_factory=list)  # objects it adds to inventory.json


def _point(node: str, iface: str) -> str:
    return f"{node}:{iface}"


def _uplink_before_pod(topo: Topology, node: str) -> str:
    """The capture point a packet for a pod on ``node`` crosses last before the pod's veth, arriving from another node."""
    return _point(node, "vxlan.calico" if topo.cni == "calico-vxlan" else "eth0")


def plan(topo: Topology, names: list[str] | tuple[str, ...], first_id: int, seed: int = 1) -> list[Fault]:
    """Faults for ``names`` (each at most once), adding their services to ``topo``; job ids start at ``first_id``."""
    bad = [n for n in names if n not in FAULTS + SCENARIOS]
    if bad:
        raise LabError(f"unknown fault {bad[0]!r}; expected one of {', '.join(FAULTS + SCENARIOS)}")
    if len(set(names)) != len(names):
        raise LabError(f"faults {list(names)}: each fault can be given once")
    if "hostnetwork-client" in names and "nodelocal-dns" in names:
        raise LabError("hostnetwork-client and nodelocal-dns cannot run together: with NodeLocal DNSCache every node has "
                       "two hostNetwork pods, and packets cannot tell which of them opened a connection")  # fmt: skip
    client = next(p for p in topo.pods if p.labels.get("app") == "client" and p.node == topo.nodes[0].name)
    web = topo.endpoints(topo.service("web"))
    target = next(p for p in web if p.node != client.node)
    svc_net = ipaddress.ip_network(topo.service_cidr)
    out: list[Fault] = []
    for k, name in enumerate(names):
        sport = FIRST_SPORT + k
        base = {"id": first_id + len([f for f in out if f.job]), "client": client.key, "sport": sport, "timeout": 4.0,
                "size": 2_000, "proto": "tcp"}  # fmt: skip
        where = {"client": client.key, "client_ip": client.ip, "sport": sport}
        if name == "policy-drop":
            job = {**base, "kind": "pod-direct-cross-node", "service": None, "dst": target.ip, "port": 80}
            rule = ["iptables", "-I", "FORWARD", "-s", f"{client.ip}/32", "-d", f"{target.ip}/32", "-o", target.host_if,
                    "-p", "tcp", "--sport", str(sport), "--dport", "80", "-m", "comment", "--comment",
                    f"NetworkPolicy default/deny-{client.name}-to-{target.name}", "-j", "DROP"]  # fmt: skip
            t = {"cause": "policy-drop", "direction": "forward", "node": target.node,
                 "last_seen": _uplink_before_pod(topo, target.node), "first_missed": _point(target.node, target.host_if),
                 "why": f"DROP in FORWARD of {target.node} for {client.key} -> {target.key}"}  # fmt: skip
            out.append(Fault(name, job, [(topo.node(target.node).ns, rule)], {**where, **t}))
        elif name == "no-endpoints":
            svc = Service("default", "web-none", "ClusterIP", str(svc_net[30]), (ServicePort("http", 80, 80, "TCP"),),
                          {"app": "web-none"})  # fmt: skip
            topo.services.append(svc)
            job = {**base, "kind": "clusterip", "service": svc.key, "dst": svc.cluster_ip, "port": 80}
            cmds = []
            for n in topo.nodes:
                cmds += _reject_no_endpoints(n.ns, svc)
            t = {"cause": "no-endpoints", "direction": "forward", "node": client.node,
                 "last_seen": _point(client.node, client.host_if), "first_missed": None,
                 "why": f"{svc.key} has no endpoints; kube-proxy rejects with ICMP port unreachable"}  # fmt: skip
            out.append(Fault(name, job, cmds, {**where, **t}))
        elif name == "stale-endpoint":
            svc = Service("default", "web-stale", "ClusterIP", str(svc_net[31]), (ServicePort("http", 80, 80, "TCP"),),
                          {"app": "web-stale"})  # fmt: skip
            topo.services.append(svc)
            owner = topo.node(target.node)
            if topo.cni == "calico-vxlan":
                stale = str(ipaddress.ip_network(owner.pod_cidr)[40])
                t = {"node": owner.name, "last_seen": _point(owner.name, "vxlan.calico"), "first_missed": None,
                     "why": f"DNAT to {stale}, in {owner.name}'s block but no pod: {owner.name}'s blackhole route drops it"}
            else:
                stale = str(ipaddress.ip_network(topo.vpc_cidr)[256 * owner.index + 60])
                t = {"node": client.node, "last_seen": _point(client.node, client.host_if), "first_missed": None,
                     "why": f"DNAT to {stale}, a VPC address no pod has: {client.node} cannot resolve it (ARP)"}
            job = {**base, "kind": "clusterip", "service": svc.key, "dst": svc.cluster_ip, "port": 80}
            cmds = []
            for n in topo.nodes:
                cmds += _stale_dnat(n.ns, svc, stale)
            out.append(Fault(name, job, cmds, {**where, "cause": "stale-endpoint", "direction": "forward",
                                               "stale_ip": stale, **t}))  # fmt: skip
        elif name == "mtu-blackhole":
            dns = topo.service("dns")
            pod = topo.endpoints(dns)[0]
            node = topo.node(pod.node)
            job = {**base, "kind": "clusterip", "proto": "udp", "service": dns.key, "dst": dns.cluster_ip,
                   "port": dns.ports[0].port, "size": 1430}  # fmt: skip
            t = {"cause": "mtu-blackhole", "direction": "reverse", "node": None,
                 "last_seen": _point(node.name, "eth0"), "first_missed": _point(client.node, "eth0")}
            if topo.cni == "calico-vxlan":
                if client.node == node.name:
                    raise LabError("fault mtu-blackhole needs the DNS pod and the client on different nodes")
                cmds = [(node.ns, ["ip", "link", "set", "dev", "eth0", "mtu", "1550"]),
                        (node.ns, ["ip", "link", "set", "dev", "vxlan.calico", "mtu", "1500"]),
                        (node.ns, ["ip", "link", "set", "dev", pod.host_if, "mtu", "1500"]),
                        (pod.ns, ["ip", "link", "set", "dev", "eth0", "mtu", "1500"])]  # fmt: skip
                t["why"] = (f"overlay MTU 1500 on {node.name}: the {pod.key} answer leaves encapsulated above the "
                            "VPC segment's 1500 bytes and is dropped there, no ICMP")  # fmt: skip
                out.append(Fault(name, job, cmds, {**where, **t}))
                continue
            # native routing: jumbo frames (9001, as inside an AWS VPC) on the client's and a backend's nodes and pods
            # while the segment between them carries 1500 (as a VPN or peering link does): the handshake passes, TCP
            # agrees on an MSS near 9000 and the backend's full segments vanish on the segment, no ICMP (no path MTU
            # discovery can help). The backend's side stays jumbo for the run (its peers' MSS keeps their connections
            # small; its orphaned retransmissions stay large), the client's only while this job runs.
            job = {**base, "kind": "pod-direct-cross-node", "service": None, "dst": target.ip, "port": 80,
                   "size": 20_000}  # fmt: skip
            jumbo = {p.key: [(ns, ["ip", "link", "set", "dev", dev, "mtu", "9001"]) for ns, dev in
                             ((topo.node(p.node).ns, "eth0"), (topo.node(p.node).ns, p.host_if), (p.ns, "eth0"))]
                     for p in (client, target)}  # fmt: skip
            down = [(ns, [*argv[:-1], str(topo.mtu)]) for ns, argv in jumbo[client.key]]
            t.update(last_seen=_point(target.node, "eth0"),
                     why=f"jumbo MTU 9001 on {client.node} and {target.node} (uplinks and pods), {topo.mtu} on the "
                         f"segment between: {target.key}'s full-size DF segments are dropped there, no ICMP")  # fmt: skip
            out.append(Fault(name, job, jumbo[target.key], {**where, **t}, during=jumbo[client.key], undo=down))
        elif name == "mtu-icmp":
            far = next(p for p in topo.pods if p.labels.get("app") == "client" and p.node != client.node)
            near = next(p for p in web if p.node != far.node and p.node == client.node)
            job = {**base, "client": far.key, "kind": "pod-direct-cross-node", "service": None, "dst": near.ip,
                   "port": 80, "size": 20_000}  # fmt: skip
            where = {"client": far.key, "client_ip": far.ip, "sport": sport}
            # pods above the overlay's MTU (calico-vxlan), or with jumbo frames above the uplink's (vpc)
            big, link = ("1500", "vxlan.calico") if topo.cni == "calico-vxlan" else ("9001", "eth0")
            up, down = [], []
            for pod in (far, near):
                for ns, dev in ((topo.node(pod.node).ns, pod.host_if), (pod.ns, "eth0")):
                    up.append((ns, ["ip", "link", "set", "dev", dev, "mtu", big]))
                    down.append((ns, ["ip", "link", "set", "dev", dev, "mtu", str(topo.mtu)]))
            t = {"cause": "mtu-blackhole", "direction": "reverse", "node": near.node, "status": "degraded",
                 "last_seen": _point(near.node, near.host_if), "first_missed": _point(near.node, link),
                 "why": f"pod MTU {big} on {far.key} and {near.key} above {link}'s {topo.mtu}: {near.node} drops "
                        "the large DF segments and answers ICMP frag-needed; the backend retries smaller"}  # fmt: skip
            out.append(Fault(name, job, [], {**where, **t}, during=up, undo=down))
        elif name == "asymmetric-return":
            via = next(n for n in topo.nodes if n.name not in (client.node, target.node))
            job = {**base, "kind": "pod-direct-cross-node", "service": None, "dst": target.ip, "port": 80}
            sel = ["from", f"{target.ip}/32", "to", f"{client.ip}/32", "ipproto", "tcp", "dport", str(sport)]
            cmds = [(topo.node(target.node).ns, ["ip", "rule", "add", *sel, "table", "100"]),
                    (topo.node(target.node).ns, ["ip", "route", "add", f"{client.ip}/32", "via", via.ip, "dev", "eth0",
                                                 "table", "100"]),
                    (via.ns, ["ip", "rule", "add", *sel, "table", "100"]),
                    (via.ns, ["ip", "route", "add", f"{client.ip}/32", "via", topo.node(client.node).ip, "dev",
                              "eth0", "table", "100"]),
                    (via.ns, ["sysctl", "-q", "-w", "net.ipv4.conf.all.send_redirects=0",
                              "net.ipv4.conf.eth0.send_redirects=0"])]  # fmt: skip
            if topo.cni == "calico-vxlan":
                cmds.append((topo.node(client.node).ns, ["sysctl", "-q", "-w", "net.ipv4.conf.eth0.rp_filter=1"]))
                t = {"cause": "asymmetric-return", "direction": "reverse", "node": client.node,
                     "last_seen": _point(client.node, "eth0"), "first_missed": _point(client.node, client.host_if),
                     "why": f"{target.node} routes the reply natively via {via.name}; strict rp_filter on "
                            f"{client.node}'s eth0 drops it (its source {target.ip} is routed through vxlan.calico)"}  # fmt: skip
            else:
                # native routing: the client's node routes the backend out of eth0 too, so rp_filter accepts the
                # detour; the stateful form drops it: via never saw the SYN, so its SYN-ACK is ctstate INVALID there
                cmds.append((via.ns, _invalid_drop(["-s", f"{target.ip}/32", "-d", f"{client.ip}/32", "-p", "tcp",
                                                    "--dport", str(sport)])))  # fmt: skip
                t = {"cause": "asymmetric-return", "direction": "reverse", "node": None,
                     "last_seen": _point(via.name, "eth0"), "first_missed": _point(client.node, "eth0"),
                     "why": f"{target.node} routes the reply via {via.name}, whose conntrack never saw the SYN: the "
                            "SYN-ACK is ctstate INVALID there and kube-proxy's INVALID rule drops it"}  # fmt: skip
            out.append(Fault(name, job, cmds, {**where, **t}))
        elif name == "conntrack-invalid":
            job = {**base, "kind": "pod-direct-cross-node", "service": None, "dst": target.ip, "port": 80}
            node_ns = topo.node(client.node).ns
            sel = ["-s", f"{client.ip}/32", "-d", f"{target.ip}/32", "-p", "tcp", "--sport", str(sport), "--dport", "80"]
            # after the SYN, the connection's packets are looked up in another conntrack zone, where no entry holds
            # them and (tcp_loose 0) none is made: conntrack has lost the connection, as after `conntrack -D`
            cmds = [(node_ns, ["iptables", "-t", "raw", "-I", "PREROUTING", *sel, "!", "--syn", "-m", "comment",
                               "--comment", "fault conntrack-invalid: entry lost after the handshake", "-j", "CT",
                               "--zone", "1"]),
                    (node_ns, _invalid_drop(sel))]  # fmt: skip
            # kept for the run: the client's orphaned socket retransmits after the job ends
            cmds.append((node_ns, ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"]))
            t = {"cause": "conntrack", "direction": "forward", "node": client.node,
                 "last_seen": _point(client.node, client.host_if), "first_missed": _uplink_before_pod(topo, client.node),
                 "why": f"{client.node}'s conntrack loses the connection after its SYN (the entry gone, as after "
                        "`conntrack -D`, no pick-up mid-stream): every later packet is ctstate INVALID and "
                        "kube-proxy's INVALID rule drops it"}  # fmt: skip
            out.append(Fault(name, job, cmds, {**where, **t}))
        elif name == "hairpin":
            dns = topo.service("dns")
            pod = topo.endpoints(dns)[0]
            job = {**base, "client": pod.key, "kind": "clusterip", "proto": "udp", "service": dns.key,
                   "dst": dns.cluster_ip, "port": dns.ports[0].port, "size": 64}  # fmt: skip
            out.append(Fault(name, job, [], {"client": pod.key, "client_ip": pod.ip, "sport": sport, "scenario": name,
                                             "backend": pod.key, "node": pod.node,
                                             "point": _point(pod.node, pod.host_if)}))  # fmt: skip
        elif name == "port-reuse":
            for rep in range(2):
                job = {**base, "id": base["id"] + rep, "kind": "pod-direct-cross-node", "service": None,
                       "dst": target.ip, "port": 80}  # fmt: skip
                out.append(Fault(name, job, [], {**where, "scenario": name, "use": rep + 1, "backend": target.key}))
        elif name == "hostnetwork":
            node = topo.nodes[-1]
            pod = f"kube-system/node-exporter-{node.name}"
            job = {**base, "kind": "pod-direct", "service": None, "dst": node.ip, "port": 9100}
            item = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod.split("/")[1], "namespace": "kube-system", "labels": {"app": "node-exporter"}},
                    "spec": {"nodeName": node.name, "hostNetwork": True, "containers": [
                        {"name": "node-exporter", "ports": [{"containerPort": 9100, "hostPort": 9100, "protocol": "TCP"}]}]},
                    "status": {"phase": "Running", "hostIP": node.ip, "podIP": node.ip, "podIPs": [{"ip": node.ip}]}}  # fmt: skip
            out.append(Fault(name, job, [], {**where, "scenario": name, "backend": pod, "node": node.name},
                             servers=[(node.ns, "tcp", 9100, pod)], inventory=[item]))  # fmt: skip
        elif name == "hostnetwork-client":
            node = topo.nodes[0]  # not capture-drop's node: its uplink is the last point of this client's replies
            pod = f"kube-system/kube-proxy-{node.name}"
            item = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod.split("/")[1], "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
                    "spec": {"nodeName": node.name, "hostNetwork": True, "containers": [{"name": "kube-proxy"}]},
                    "status": {"phase": "Running", "hostIP": node.ip, "podIP": node.ip, "podIPs": [{"ip": node.ip}]}}  # fmt: skip
            web_svc = topo.service("web")
            far = next(p for p in web if p.node != node.name)
            dests = ((web_svc.key, "clusterip", web_svc.cluster_ip, web_svc.ports[0].port), (None, "pod-direct", far.ip, 80))
            for k, (svc, kind, dst, port) in enumerate(dests):
                job = {**base, "id": base["id"] + k, "sport": sport + 100 * k, "client": f"node:{node.name}",
                       "host_pod": pod, "kind": kind, "service": svc, "dst": dst, "port": port}  # fmt: skip
                out.append(Fault(name, job, [], {"client": pod, "client_ip": node.ip, "sport": sport + 100 * k,
                                                 "scenario": name, "node": node.name, "service": svc},
                                 inventory=[item] if k == 0 else []))  # fmt: skip
        elif name == "nodelocal-dns":
            cmds, servers, items = [], [], []
            for n in topo.nodes:
                pod = f"kube-system/node-local-dns-{n.name}"
                # the real cache binds a 'nodelocaldns' dummy interface; lo carries the address the same way
                cmds.append((n.ns, ["ip", "addr", "add", f"{NODELOCAL_IP}/32", "dev", "lo"]))
                servers += [(n.ns, "udp", 53, pod), (n.ns, "tcp", 53, pod)]
                items.append({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": pod.split("/")[1], "namespace": "kube-system",
                                           "labels": {"k8s-app": "node-local-dns"}},
                              "spec": {"nodeName": n.name, "hostNetwork": True, "containers": [
                                  {"name": "node-cache", "args": ["-localip", NODELOCAL_IP, "-conf", "/etc/Corefile"],
                                   "ports": [{"containerPort": 53, "protocol": "UDP"},
                                             {"containerPort": 53, "protocol": "TCP"}]}]},
                              "status": {"phase": "Running", "hostIP": n.ip, "podIP": n.ip, "podIPs": [{"ip": n.ip}]}})  # fmt: skip
            for k, proto in enumerate(("udp", "tcp")):  # a UDP query, then the TCP fallback
                job = {**base, "id": base["id"] + k, "sport": sport + 100 * k, "kind": "pod-direct", "proto": proto,
                       "service": None, "dst": NODELOCAL_IP, "port": 53, "size": 64 if proto == "udp" else 600,
                       "walk": False}  # fmt: skip
                out.append(Fault(name, job, cmds if k == 0 else [],
                                 {**where, "sport": sport + 100 * k, "scenario": name, "proto": proto,
                                  "backend": f"kube-system/node-local-dns-{client.node}", "node": client.node},
                                 servers=servers if k == 0 else [], inventory=items if k == 0 else []))  # fmt: skip
        elif name == "capture-drop":
            node = topo.nodes[1] if len(topo.nodes) > 1 else topo.nodes[0]
            pt = _point(node.name, "eth0")
            out.append(Fault(name, None, [], {"cause": "capture-loss", "point": pt, "rate": 0.01, "seed": seed},
                             point=pt))  # fmt: skip
    return out


def _invalid_drop(match: list[str]) -> list[str]:
    """kube-proxy's filter rule dropping ctstate INVALID packets (KUBE-FORWARD), limited to ``match``."""
    return ["iptables", "-I", "FORWARD", *match, "-m", "conntrack", "--ctstate", "INVALID", "-m", "comment", "--comment",
            "kube-proxy: drop ctstate INVALID", "-j", "DROP"]  # fmt: skip


def _reject_no_endpoints(ns: str, svc: Service) -> list[tuple[str, list[str]]]:
    """kube-proxy's filter rule for a service port without endpoints (REJECT, ICMP port unreachable)."""
    p = svc.ports[0]
    chain = "KUBE-SERVICES"
    cmds = [(ns, ["iptables", "-N", chain])]
    for hook in ("FORWARD", "OUTPUT"):
        cmds.append((ns, ["iptables", "-I", hook, "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
                          "kubernetes service portals", "-j", chain]))  # fmt: skip
    cmds.append((ns, ["iptables", "-A", chain, "-d", f"{svc.cluster_ip}/32", "-p", p.protocol.lower(), "-m", "comment",
                      "--comment", f"{svc.key}:{p.name} has no endpoints", "-m", p.protocol.lower(), "--dport",
                      str(p.port), "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]))  # fmt: skip
    return cmds


def _stale_dnat(ns: str, svc: Service, stale: str) -> list[tuple[str, list[str]]]:
    """kube-proxy nat rules still pointing the service at an endpoint that is gone."""
    from pcaptools.lab.kubeproxy import _hash16, port_name, svc_chain

    p = svc.ports[0]
    sc = svc_chain(svc, p)
    sep = "KUBE-SEP-" + _hash16(port_name(svc, p) + p.protocol.lower() + f"{stale}:{p.target_port}")
    proto = p.protocol.lower()
    return [(ns, ["iptables", "-t", "nat", "-N", sep]),
            (ns, ["iptables", "-t", "nat", "-I", "KUBE-SERVICES", "1", "-d", f"{svc.cluster_ip}/32", "-p", proto, "-m",
                  "comment", "--comment", f"{port_name(svc, p)} cluster IP", "-m", proto, "--dport", str(p.port),
                  "-j", sc]),
            (ns, ["iptables", "-t", "nat", "-A", sc, "-m", "comment", "--comment",
                  f"{port_name(svc, p)} -> {stale}:{p.target_port}", "-j", sep]),
            (ns, ["iptables", "-t", "nat", "-A", sep, "-p", proto, "-m", proto, "-j", "DNAT", "--to-destination",
                  f"{stale}:{p.target_port}"])]  # fmt: skip


def servers(faults: list[Fault]) -> list[Any]:
    """Servers the faults' scenarios add (not started), as :class:`pcaptools.lab.traffic.Server`."""
    from pcaptools.lab.traffic import Server

    return [Server(*x) for f in faults for x in f.servers]


def inventory_items(faults: list[Fault]) -> list[dict[str, Any]]:
    """Objects the faults' scenarios add to the inventory (hostNetwork pods)."""
    return [it for f in faults for it in f.inventory]


def apply(faults: list[Fault]) -> None:
    """Install every fault's rules and settings (after the cluster and kube-proxy's rules are in place)."""
    for f in faults:
        for ns, argv in f.commands:
            netns.run(argv, ns=ns)


def before(fault: Fault | None) -> None:
    """Settings a fault holds only while its own job runs (so no other connection meets them)."""
    for ns, argv in fault.during if fault is not None else []:
        netns.run(argv, ns=ns)


def after(fault: Fault | None) -> None:
    """Undo :func:`before`."""
    for ns, argv in fault.undo if fault is not None else []:
        netns.run(argv, ns=ns)


def after_capture(out: Path, faults: list[Fault], files: dict[str, str]) -> None:
    """Remove about ``rate`` of the records of each capture-drop fault's file (seeded); the count goes to its truth."""
    for f in faults:
        if f.point is None:
            continue
        rel = files.get(f.point)
        if rel is None:
            raise LabError(f"fault capture-drop: no capture file for point {f.point}")
        kept, dropped = _drop_records(out, rel, f.rate, int(f.truth.get("seed", 1)))
        f.truth.update(records_kept=kept, records_dropped=len(dropped), dropped=dropped)


def _drop_records(out: Path, rel: str, rate: float, seed: int) -> tuple[int, list[dict[str, Any]]]:
    """Rewrite the classic pcap ``out/rel`` without a seeded random ``rate`` of its records; (kept, dropped
    records with their original number and first 96 bytes in hex). Written through outdir: no link is followed."""
    data = (out / rel).read_bytes()
    if len(data) < 24:
        return 0, []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    rng = random.Random(seed)
    chunks, pos, kept, dropped, k = [data[:24]], 24, 0, [], 0
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        end = pos + 16 + incl
        if rng.random() < rate:
            dropped.append({"record": k, "head": data[pos + 16:min(end, pos + 16 + 96)].hex()})
        else:
            chunks.append(data[pos:end])
            kept += 1
        pos, k = end, k + 1
    with os.fdopen(outdir.open_new(out, rel), "wb") as fh:
        fh.write(b"".join(chunks))
    return kept, dropped


def truth(faults: list[Fault], results: dict[int, dict[str, Any]], *, scenarios: bool = False) -> list[dict[str, Any]]:
    """Truth records of the faults: fault name, the connection it hit (client tuple, client's own result), where and why;
    with ``scenarios`` those of the scenarios instead."""
    recs = []
    for f in faults:
        if (f.name in SCENARIOS) != scenarios:
            continue
        rec = {"fault": f.name, **({"status": "failed"} if f.job is not None else {}),
               **{k: v for k, v in f.truth.items() if k not in ("client_ip", "sport")}}
        if f.job is not None:
            res = results.get(f.job["id"], {})
            rec["id"] = f.job["id"]
            rec["client_tuple"] = {"src": f.truth["client_ip"], "sport": f.truth["sport"], "dst": f.job["dst"],
                                   "dport": f.job["port"], "proto": f.job["proto"]}  # fmt: skip
            rec["client_ok"] = bool(res.get("ok"))
            rec["client_error"] = res.get("error")
        recs.append(rec)
    return recs
