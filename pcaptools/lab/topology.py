"""The lab's cluster plan (nodes, pods, services, addresses, names) and the commands that build it.

:func:`plan` is pure: the same arguments always give the same names, addresses and MACs, so two
runs are comparable. :func:`build` turns a plan into namespaces, veths, a VPC bridge, routes,
proxy-ARP entries and (for ``calico-vxlan``) ``vxlan.calico`` devices with static FDB entries.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from pcaptools.errors import LabError
from pcaptools.lab import netns

CNI_MODES = ("vpc", "calico-vxlan")
VXLAN_VNI = 4096
VXLAN_PORT = 4789
POD_GATEWAY = "169.254.1.1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


@dataclass(frozen=True)
class Node:
    """A Kubernetes node: one namespace with ``eth0`` on the VPC segment."""

    name: str
    index: int
    ns: str
    ip: str
    mac: str
    zone: str
    pod_cidr: str | None = None  # calico block
    tunnel_ip: str | None = None  # vxlan.calico address
    tunnel_mac: str | None = None


@dataclass(frozen=True)
class Pod:
    """A pod: a namespace whose ``eth0`` is a veth to ``host_if`` on its node."""

    namespace: str
    name: str
    node: str
    ns: str
    ip: str
    host_if: str
    mac: str
    host_mac: str
    labels: dict[str, str]
    ports: tuple[tuple[str, int, str], ...]  # (name, containerPort, protocol)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int
    protocol: str  # "TCP" | "UDP"
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str  # ClusterIP | NodePort | LoadBalancer
    cluster_ip: str
    ports: tuple[ServicePort, ...]
    selector: dict[str, str]
    external_traffic_policy: str | None = None  # Cluster | Local
    lb_ip: str | None = None
    lb_hostname: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Host:
    """A namespace outside the cluster (router, NLB, external client, internet host)."""

    name: str
    ns: str
    ip: str


@dataclass
class Topology:
    """Everything a lab run needs to know about its cluster; built by :func:`plan`."""

    cni: str
    prefix: str
    vpc_cidr: str
    pod_cidr: str | None
    service_cidr: str
    client_cidr: str
    internet_cidr: str
    mtu: int
    vpc_ns: str
    router: Host
    router_outside_ip: str
    nlb: Host
    nlb_client_ip: str
    client: Host
    internet: Host
    nodes: list[Node] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pod(self, key: str) -> Pod:
        return next(p for p in self.pods if p.key == key or p.name == key)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name or s.key == name)

    def endpoints(self, svc: Service) -> list[Pod]:
        """Pods the service selects, in a stable order."""
        return [p for p in self.pods if all(p.labels.get(k) == v for k, v in svc.selector.items())]

    def namespaces(self) -> list[str]:
        """Every namespace of the run, outermost first (the order they are created)."""
        hosts = [self.vpc_ns, self.router.ns, self.nlb.ns, self.client.ns, self.internet.ns]
        return hosts + [n.ns for n in self.nodes] + [p.ns for p in self.pods]


def _mac(seed: str, first: int = 0x02) -> str:
    """A stable locally administered MAC derived from ``seed``."""
    h = hashlib.sha1(seed.encode()).digest()
    return ":".join(f"{b:02x}" for b in (first, *h[:5]))


def veth_name(cni: str, namespace: str, pod: str) -> str:
    """Host-side veth name as the CNIs derive it: prefix + sha1("<ns>.<pod>")[:11] (15 chars max)."""
    prefix = "eni" if cni == "vpc" else "cali"
    return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def plan(cni: str = "vpc", *, nodes: int = 3, prefix: str = "ptlab-", vpc_cidr: str = "192.168.0.0/16",
         pod_cidr: str = "10.244.0.0/16", service_cidr: str = "10.100.0.0/16",
         client_cidr: str = "198.51.100.0/24", internet_cidr: str = "203.0.113.0/24") -> Topology:
    """Plan a cluster: ``nodes`` nodes, two web backends on different nodes, a DNS-like pod, client pods."""
    if cni not in CNI_MODES:
        raise LabError(f"unknown CNI mode {cni!r}; expected one of {', '.join(CNI_MODES)}")
    if not 2 <= nodes <= 20:
        raise LabError(f"nodes={nodes}: the lab needs 2 to 20 nodes (two backends on different nodes)")
    vpc = ipaddress.ip_network(vpc_cidr)
    svc_net = ipaddress.ip_network(service_cidr)
    if vpc.num_addresses < 256 * (nodes + 1):
        raise LabError(f"vpc_cidr {vpc_cidr} is too small for {nodes} nodes; use a /16 to /20")
    blocks = list(ipaddress.ip_network(pod_cidr).subnets(new_prefix=26)) if cni != "vpc" else []
    if cni != "vpc" and len(blocks) < nodes:
        raise LabError(f"pod_cidr {pod_cidr} has fewer than {nodes} /26 blocks; use a /16 to /24")
    client_net = ipaddress.ip_network(client_cidr)
    inet_net = ipaddress.ip_network(internet_cidr)
    ns = lambda name: f"{prefix}{name}"  # noqa: E731
    topo = Topology(
        cni=cni, prefix=prefix, vpc_cidr=str(vpc), pod_cidr=pod_cidr if cni != "vpc" else None,
        service_cidr=str(svc_net), client_cidr=str(client_net), internet_cidr=str(inet_net),
        mtu=1450 if cni == "calico-vxlan" else 1500, vpc_ns=ns("vpc"),
        router=Host("router", ns("router"), str(vpc[1])), router_outside_ip=str(inet_net[1]),
        nlb=Host("nlb", ns("nlb"), str(vpc[200])), nlb_client_ip=str(client_net[1]),
        client=Host("client", ns("client"), str(client_net[20])),
        internet=Host("internet", ns("internet"), str(inet_net[10])),
    )
    for i in range(1, nodes + 1):
        name = f"node-{i}"
        block = blocks[i - 1] if blocks else None
        topo.nodes.append(Node(
            name=name, index=i, ns=ns(name), ip=str(vpc[10 + i]), mac=_mac(f"{name}/eth0"),
            zone=ZONES[(i - 1) % len(ZONES)], pod_cidr=str(block) if block else None,
            tunnel_ip=str(block[0]) if block else None,
            tunnel_mac=_mac(f"{name}/vxlan.calico", 0x66) if block else None))
    # pod name -> node index (1-based); backends on different nodes, the last node without a backend
    last = nodes
    layout = [("backend-0", 1, {"app": "web"}, (("http", 80, "TCP"),)),
              ("backend-1", 2, {"app": "web"}, (("http", 80, "TCP"),)),
              ("dns-0", 2, {"app": "dns"}, (("dns", 53, "UDP"),)),
              ("client-0", 1, {"app": "client"}, ()),
              ("client-1", last, {"app": "client"}, ())]
    per_node: dict[int, int] = {}
    for name, idx, labels, ports in layout:
        node = topo.nodes[idx - 1]
        k = per_node.get(idx, 0)
        per_node[idx] = k + 1
        if cni == "vpc":
            ip = str(vpc[256 * idx + 10 + k])  # secondary ENI addresses from the VPC subnet
        else:
            ip = str(blocks[idx - 1][5 + k])
        host_if = veth_name(cni, "default", name)
        topo.pods.append(Pod(
            namespace="default", name=name, node=node.name, ns=ns(f"pod-{name}"), ip=ip, host_if=host_if,
            mac=_mac(f"default/{name}/eth0"),
            host_mac="ee:ee:ee:ee:ee:ee" if cni != "vpc" else _mac(f"default/{name}/{host_if}"),
            labels=labels, ports=ports))
    topo.services = [
        Service("default", "web", "NodePort", str(svc_net[20]),
                (ServicePort("http", 8080, 80, "TCP", 30080),), {"app": "web"}, "Cluster"),
        Service("default", "web-lb", "LoadBalancer", str(svc_net[21]),
                (ServicePort("http", 80, 80, "TCP", 30081),), {"app": "web"}, "Cluster",
                lb_ip=str(vpc[201]), lb_hostname="k8s-default-weblb-0a1b2c3d4e.elb.us-east-1.amazonaws.com"),
        Service("default", "web-local", "LoadBalancer", str(svc_net[22]),
                (ServicePort("http", 80, 80, "TCP", 30082),), {"app": "web"}, "Local",
                lb_ip=str(vpc[202]), lb_hostname="k8s-default-weblocal-5f6a7b8c9d.elb.us-east-1.amazonaws.com"),
        Service("default", "dns", "ClusterIP", str(svc_net[10]),
                (ServicePort("dns", 53, 53, "UDP"),), {"app": "dns"}),
    ]
    return topo


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mac_a: str | None = None,
          mac_b: str | None = None, mtu: int | None = None) -> list[str]:
    """ip-batch lines (run in ``ns_a``) creating a veth pair whose peer lands in ``ns_b``."""
    opt_a = (f" address {mac_a}" if mac_a else "") + (f" mtu {mtu}" if mtu else "")
    opt_b = (f" address {mac_b}" if mac_b else "") + (f" mtu {mtu}" if mtu else "")
    return [f"link add name {name_a}{opt_a} type veth peer name {name_b}{opt_b} netns {ns_b}",
            f"link set {name_a} up"]


def build(topo: Topology, *, segment_offload: bool = False) -> None:
    """Create every namespace, link, address, route and neighbour entry of ``topo``."""
    for name in topo.namespaces():
        netns.create(name)
    vpc_len = ipaddress.ip_network(topo.vpc_cidr).prefixlen
    client_len = ipaddress.ip_network(topo.client_cidr).prefixlen
    inet_len = ipaddress.ip_network(topo.internet_cidr).prefixlen

    # the VPC L2 segment: a bridge with one port per node, the router and the NLB
    netns.sysctl(topo.vpc_ns, {"net.bridge.bridge-nf-call-iptables": 0,
                                "net.bridge.bridge-nf-call-arptables": 0})
    vpc_cmds = ["link add name br0 type bridge mcast_snooping 0", "link set br0 up"]
    attached = [(f"p{n.index}", n.ns, n.mac) for n in topo.nodes]
    attached += [("prtr", topo.router.ns, _mac("router/eth0")), ("pnlb", topo.nlb.ns, _mac("nlb/eth0"))]
    for port, other, mac in attached:
        vpc_cmds += _veth(topo.vpc_ns, port, other, "eth0", mac_b=mac)
        vpc_cmds.append(f"link set {port} master br0")
    netns.ip_batch(topo.vpc_ns, vpc_cmds)

    fwd = {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}
    # router: VPC <-> "internet"
    netns.sysctl(topo.router.ns, fwd)
    netns.ip_batch(topo.router.ns, [
        f"addr add {topo.router.ip}/{vpc_len} dev eth0", "link set eth0 up",
        *_veth(topo.router.ns, "inet0", topo.internet.ns, "eth0", mac_b=_mac("internet/eth0")),
        f"addr add {topo.router_outside_ip}/{inet_len} dev inet0",
        f"route add {topo.client_cidr} via {topo.nlb.ip}",
    ])
    netns.ip_batch(topo.internet.ns, [
        f"addr add {topo.internet.ip}/{inet_len} dev eth0", "link set eth0 up",
        f"route add default via {topo.router_outside_ip}",
    ])
    # NLB: VPC <-> external client; the load-balancer addresses live on its eth0
    netns.sysctl(topo.nlb.ns, fwd)
    lb_ips = [s.lb_ip for s in topo.services if s.lb_ip]
    netns.ip_batch(topo.nlb.ns, [
        f"addr add {topo.nlb.ip}/{vpc_len} dev eth0", *(f"addr add {ip}/32 dev eth0" for ip in lb_ips),
        "link set eth0 up", f"route add default via {topo.router.ip}",
        *_veth(topo.nlb.ns, "cl0", topo.client.ns, "eth0", mac_b=_mac("client/eth0")),
        f"addr add {topo.nlb_client_ip}/{client_len} dev cl0",
    ])
    netns.ip_batch(topo.client.ns, [
        f"addr add {topo.client.ip}/{client_len} dev eth0", "link set eth0 up",
        f"route add default via {topo.nlb_client_ip}",
    ])

    for node in topo.nodes:
        _build_node(topo, node, vpc_len)
    if not segment_offload:
        # senders emit MSS-sized segments (as on the wire of a real ENI) instead of 64 KB GSO blobs
        for p in topo.pods:
            netns.ip_batch(p.ns, ["link set eth0 gso_max_segs 1"])
        netns.ip_batch(topo.internet.ns, ["link set eth0 gso_max_segs 1"])


def _build_node(topo: Topology, node: Node, vpc_len: int) -> None:
    """Node namespace: uplink, pod veths with /32 routes and proxy ARP, CNI specifics."""
    settings: dict[str, str | int] = {
        "net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0,
        "net.ipv4.conf.all.route_localnet": 1, "net.ipv4.neigh.eth0.proxy_delay": 0,
    }
    cmds = [f"addr add {node.ip}/{vpc_len} dev eth0", "link set eth0 up",
            f"route add default via {topo.router.ip}",
            # the VPC route table sends traffic for the NLB's clients back through the NLB
            f"route add {topo.client_cidr} via {topo.nlb.ip}"]
    pods = [p for p in topo.pods if p.node == node.name]
    for p in pods:
        cmds += _veth(node.ns, p.host_if, p.ns, "eth0", mac_a=p.host_mac, mac_b=p.mac, mtu=topo.mtu)
        cmds.append(f"route add {p.ip}/32 dev {p.host_if} scope link")
        if topo.cni == "vpc":
            # the VPC fabric delivers a secondary IP to its ENI: the node answers ARP for its pods
            cmds.append(f"neigh add proxy {p.ip} dev eth0")
        settings[f"net.ipv4.conf.{p.host_if}.proxy_arp"] = 1
        settings[f"net.ipv4.neigh.{p.host_if}.proxy_delay"] = 0
    if topo.cni == "calico-vxlan":
        cmds += [f"link add name vxlan.calico address {node.tunnel_mac} mtu {topo.mtu} type vxlan "
                 f"id {VXLAN_VNI} dstport {VXLAN_PORT} local {node.ip} dev eth0 nolearning",
                 "link set vxlan.calico up", f"addr add {node.tunnel_ip}/32 dev vxlan.calico",
                 f"route add blackhole {node.pod_cidr} proto 80"]
        for other in topo.nodes:
            if other.name == node.name:
                continue
            cmds += [f"neigh add {other.tunnel_ip} lladdr {other.tunnel_mac} dev vxlan.calico nud permanent",
                     f"route add {other.pod_cidr} via {other.tunnel_ip} dev vxlan.calico onlink"]
    netns.ip_batch(node.ns, cmds)
    netns.sysctl(node.ns, settings)
    if topo.cni == "calico-vxlan":
        # vxlan's receive path merges a burst of segments (GRO) into one >MTU packet; keep the wire's
        netns.gro_off(node.ns, ["vxlan.calico"])
        fdb = [f"fdb append {o.tunnel_mac} dev vxlan.calico dst {o.ip} self permanent"
               for o in topo.nodes if o.name != node.name]
        netns.run(["bridge", "-batch", "-"], ns=node.ns, stdin="\n".join(fdb) + "\n")
    for p in pods:
        netns.ip_batch(p.ns, [
            f"addr add {p.ip}/32 dev eth0", "link set eth0 up",
            f"route add {POD_GATEWAY} dev eth0 scope link", f"route add default via {POD_GATEWAY} dev eth0",
        ])
