"""Ground truth for a lab run: conntrack parsing, the NAT chain and the capture points each connection crossed.

Starting from the 5-tuple the client saw, we walk the lab's routing hop by hop; in every namespace
that tracks connections we look up the conntrack entry whose original tuple equals the tuple
arriving there, and read the DNAT (reply source differs from the original destination) and the
SNAT (reply destination differs from the original source) the kernel applied. The backend is
where the walk ends; the server's own log of its peer must match the last tuple.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pcaptools.errors import LabError
from pcaptools.lab.topology import VXLAN_PORT, VXLAN_VNI, Topology

Tuple5 = tuple[str, int, str, int, str]  # src, sport, dst, dport, proto


@dataclass(frozen=True)
class CtEntry:
    """One line of ``conntrack -L -o extended``: original and reply tuples, state and flags."""

    proto: str
    state: str | None
    orig: Tuple5
    reply: Tuple5
    flags: tuple[str, ...]
    line: str


def parse_conntrack(text: str) -> list[CtEntry]:
    """Parse ``conntrack -L [-o extended]`` output (TCP/UDP lines; others are skipped)."""
    out: list[CtEntry] = []
    for line in text.splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] in ("ipv4", "ipv6"):
            tok = tok[2:]
        if len(tok) < 3 or tok[0] not in ("tcp", "udp"):
            continue
        proto = tok[0]
        state = tok[3] if len(tok) > 3 and "=" not in tok[3] and not tok[3].startswith("[") else None
        kv: list[dict[str, str]] = [{}, {}]
        side = 0
        flags = []
        for t in tok[3:]:
            if t.startswith("["):
                flags.append(t.strip("[]"))
                continue
            if "=" not in t:
                continue
            k, v = t.split("=", 1)
            if k in ("src", "dst", "sport", "dport"):
                if k in kv[side] and side == 0:
                    side = 1
                if k not in kv[side]:
                    kv[side][k] = v
        if not all(k in d for d in kv for k in ("src", "dst", "sport", "dport")):
            continue
        o, r = kv
        out.append(CtEntry(proto, state, (o["src"], int(o["sport"]), o["dst"], int(o["dport"]), proto),
                           (r["src"], int(r["sport"]), r["dst"], int(r["dport"]), proto), tuple(flags), line))
    return out


def tuple_dict(t: Tuple5) -> dict[str, Any]:
    return {"src": t[0], "sport": t[1], "dst": t[2], "dport": t[3], "proto": t[4]}


def capture_file(label: str, interface: str) -> str:
    """Manifest ``file`` of a capture: ``<node or host label>/<interface>.pcap``."""
    return f"{label}/{interface}.pcap"


class _Router:
    """Where each lab namespace sends a packet for a destination (mirrors the routes :func:`build` adds)."""

    def __init__(self, topo: Topology) -> None:
        self.t = topo
        self.pod_by_ip = {ip: p for p in topo.pods for ip in p.ips}
        self.node_by_ip = {ip: n for n in topo.nodes for ip in n.ips}
        self.node_by_tunnel = {ip: n for n in topo.nodes for ip in n.tunnel_ips}
        nets = [topo.nets[f] for f in topo.net_families]
        self.client_nets = [ipaddress.ip_network(n.client) for n in nets]
        self.inet_nets = [ipaddress.ip_network(n.internet) for n in nets]
        self.lb_ips = {ip for s in topo.services for ip in s.lb_ips} | set(topo.nlb.ips)

    def owner(self, ip: str) -> str | None:
        """The place that owns ``ip`` (where a packet to it is delivered), if any."""
        if ip in self.pod_by_ip:
            return "pod:" + self.pod_by_ip[ip].key
        if ip in self.node_by_ip:
            return "node:" + self.node_by_ip[ip].name
        if ip in self.node_by_tunnel:
            return "node:" + self.node_by_tunnel[ip].name
        if ip in self.t.client.ips:
            return "client"
        if ip in self.t.internet.ips:
            return "internet"
        if ip in self.lb_ips:
            return "nlb"
        return None

    def _vpc_place(self, dst: str) -> str:
        """Next hop on the VPC segment for ``dst`` (node, NLB or the router)."""
        addr = ipaddress.ip_address(dst)
        if dst in self.pod_by_ip:
            return "node:" + self.pod_by_ip[dst].node
        if dst in self.node_by_ip:
            return "node:" + self.node_by_ip[dst].name
        if dst in self.lb_ips or any(addr in n for n in self.client_nets):
            return "nlb"
        return "router"

    def next(self, place: str, dst: str) -> tuple[str, bool]:
        """(next place, via overlay) for a packet to ``dst`` leaving ``place``."""
        addr = ipaddress.ip_address(dst)
        if place.startswith("pod:"):
            return "node:" + self.t.pod(place[4:]).node, False
        if place == "client":
            return "nlb", False
        if place == "internet":
            return "router", False
        if place == "router":
            return ("internet", False) if any(addr in n for n in self.inet_nets) else (self._vpc_place(dst), False)
        if place == "nlb":
            return ("client", False) if any(addr in n for n in self.client_nets) else (self._vpc_place(dst), False)
        node = self.t.node(place[5:])
        pod = self.pod_by_ip.get(dst)
        if pod is not None and pod.node == node.name:
            return "pod:" + pod.key, False
        if self.t.cni == "calico-vxlan":
            for other in self.t.nodes:
                if other.name != node.name and any(addr in ipaddress.ip_network(c) for c in other.pod_cidrs):
                    return "node:" + other.name, True
        nxt = self._vpc_place(dst)
        return nxt, False

    def label(self, place: str) -> str:
        """Manifest ``node`` label of a place (node name, or the host label)."""
        if place.startswith("node:"):
            return place[5:]
        if place.startswith("pod:"):
            return self.t.pod(place[4:]).node
        return place

    def side(self, place: str, toward: str, overlay: bool) -> list[tuple[str, str]]:
        """Capture points (label, interface) on ``place``'s side of the link toward ``toward``."""
        if place.startswith("node:"):
            name = place[5:]
            if toward.startswith("pod:"):
                return [(name, self.t.pod(toward[4:]).host_if)]
            return [(name, "vxlan.calico"), (name, "eth0")] if overlay else [(name, "eth0")]
        if place == "nlb":
            return [] if toward == "client" else [("nlb", "eth0")]
        if place in ("client", "internet"):
            return [(place, "eth0")]
        return []  # pods are captured on their node's veth; the router is not captured


def walk(topo: Topology, start: str, first: Tuple5, conntrack: dict[str, list[CtEntry]],
         max_hops: int = 16) -> dict[str, Any]:
    """Follow one connection from ``start`` (a place) through routing and conntrack NAT to its end."""
    r = _Router(topo)
    place, t = start, first
    hops, nat, crossings, used = [start], [], [], []
    for _ in range(max_hops):
        entry = next((e for e in conntrack.get(place, []) if e.orig == t), None)
        after_dnat, out = t, t
        if entry is not None:
            used.append({"at": r.label(place), "line": entry.line})
            after_dnat = (t[0], t[1], entry.reply[0], entry.reply[1], t[4])
            out = (entry.reply[2], entry.reply[3], entry.reply[0], entry.reply[1], t[4])
            if after_dnat != t:
                nat.append({"kind": "DNAT", "node": r.label(place), "before": tuple_dict(t),
                            "after": tuple_dict(after_dnat)})
            if out != after_dnat:
                nat.append({"kind": "SNAT", "node": r.label(place), "before": tuple_dict(after_dnat),
                            "after": tuple_dict(out)})
        if len(hops) > 1 and r.owner(after_dnat[2]) == place:  # a hairpin ends where it started
            t = after_dnat
            break
        nxt, overlay = r.next(place, out[2])
        encap = None
        if overlay:
            src_n, dst_n = topo.node(place[5:]), topo.node(nxt[5:])
            encap = {"type": "vxlan", "vni": VXLAN_VNI, "udp_dport": VXLAN_PORT, "outer_src": src_n.underlay_ip,
                     "outer_dst": dst_n.underlay_ip, "between": [src_n.name, dst_n.name]}
        points = r.side(place, nxt, overlay) + list(reversed(r.side(nxt, place, overlay)))
        for label, iface in points:
            crossings.append({"file": capture_file(label, iface), "node": label, "interface": iface,
                              "tuple": tuple_dict(out),
                              "encap": encap if (encap and iface == "eth0") else None})
        place, t = nxt, out
        hops.append(place)
    else:
        raise LabError(f"connection {tuple_dict(first)} from {start} did not reach its end within "
                       f"{max_hops} hops; the lab's routes or conntrack entries are inconsistent")
    return {"end": place, "last": t, "hops": hops, "nat": nat, "forward": crossings, "conntrack": used}


def reverse_path(forward: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reply direction: the same capture points backwards, each tuple swapped, outer IPs swapped."""
    out = []
    for c in reversed(forward):
        t = c["tuple"]
        enc = c["encap"]
        if enc:
            enc = {**enc, "outer_src": enc["outer_dst"], "outer_dst": enc["outer_src"],
                   "between": list(reversed(enc["between"]))}
        out.append({**c, "tuple": {"src": t["dst"], "sport": t["dport"], "dst": t["src"], "dport": t["sport"],
                                   "proto": t["proto"]}, "encap": enc})
    return out
