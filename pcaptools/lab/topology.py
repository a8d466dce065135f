"""The lab's cluster plan (nodes, pods, services, addresses, names) and the commands that build it.

:func:`plan` is pure: the same arguments always give the same names, addresses and MACs, so two
runs are comparable. :func:`build` turns a plan into namespaces, veths, a VPC bridge, routes,
proxy-ARP entries and (for ``calico-vxlan``) ``vxlan.calico`` devices with static FDB entries.

IP families (``ip_family``): ``ipv4`` (the default), ``ipv6`` or ``dual``. IPv6 addresses come from a
ULA /48 (``ula``, else one derived from the run's prefix, so concurrent runs differ): the VPC segment,
client and internet /64s, Calico /122 blocks of a /64, a /108 service range, VPC-native pods in the VPC
/64 (proxy NDP, as proxy ARP for IPv4). Every address of an entity is in ``ips`` (the cluster's primary
family first, ``ip``); nodes, the router and the NLB also carry the ``underlay`` family, which the VXLAN
devices use between nodes. Pods route through their host veth's link-local address (Calico's
``fe80::ecee:eeff:feee:eeee``), as ``169.254.1.1`` for IPv4. Duplicate address detection is off in
every namespace (:func:`pcaptools.lab.netns.create`) and :func:`build` waits until no address is tentative.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
from dataclasses import dataclass, field

from pcaptools.errors import LabError
from pcaptools.lab import netns

CNI_MODES = ("vpc", "calico-vxlan")
IP_FAMILIES = ("ipv4", "ipv6", "dual")
"""Values of ``--ip-family``: the address families of pods, services and connections."""
UNDERLAYS = ("ipv4", "ipv6")
"""Values of ``--underlay``: the address family of the VXLAN packets between nodes."""
VXLAN_VNI = 4096
VXLAN_PORT = 4789
POD_GATEWAY = "169.254.1.1"
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


class _Addressed:
    """An entity with ``ip`` and ``ips`` (every family's address, ``ip`` first; empty means ``ip`` only)."""

    ip: str
    ips: tuple[str, ...]

    def addr(self, family: str) -> str | None:
        """Its address of ``family`` ('ipv4' | 'ipv6'), or None."""
        return pick(self.ips or (self.ip,), family)


@dataclass(frozen=True)
class Node(_Addressed):
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
    ips: tuple[str, ...] = ()  # every address on eth0, ``ip`` first (the underlay's among them)
    pod_cidrs: tuple[str, ...] = ()  # a block per pod family
    tunnel_ips: tuple[str, ...] = ()  # a vxlan.calico address per pod family
    underlay_ip: str | None = None  # the VXLAN endpoint (``ip`` unless the underlay is the other family)


@dataclass(frozen=True)
class Pod(_Addressed):
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
    ips: tuple[str, ...] = ()  # every address, ``ip`` first

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
    cluster_ips: tuple[str, ...] = ()  # every family's, ``cluster_ip`` first (empty: ``cluster_ip`` only)
    lb_ips: tuple[str, ...] = ()

    def cluster_addr(self, family: str) -> str | None:
        """Its cluster IP of ``family``, or None."""
        return pick(self.cluster_ips or (self.cluster_ip,), family)

    def lb_addr(self, family: str) -> str | None:
        """Its load-balancer address of ``family``, or None (not a LoadBalancer)."""
        return pick(self.lb_ips or ((self.lb_ip,) if self.lb_ip else ()), family)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Host(_Addressed):
    """A namespace outside the cluster (router, NLB, external client, internet host)."""

    name: str
    ns: str
    ip: str
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Nets:
    """One address family's networks (CIDR strings)."""

    family: str
    vpc: str
    pod: str | None
    service: str
    client: str
    internet: str


def family_of(ip: str) -> str:
    """'ipv4' or 'ipv6': the family of an address or network text."""
    return "ipv6" if ":" in ip else "ipv4"


def pick(addrs: tuple[str, ...] | list[str], family: str) -> str | None:
    """The first of ``addrs`` in ``family``, or None."""
    return next((a for a in addrs if family_of(a) == family), None)


def host_len(family: str) -> int:
    """Prefix length of one address: 32 or 128."""
    return 128 if family == "ipv6" else 32


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with ``mac`` (the pods' IPv6 gateway)."""
    b = [int(x, 16) for x in mac.split(":")]
    eui = [b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(eui)))


def ula_for(prefix: str) -> str:
    """A ULA /48 (fd00::/8 + 40 bits of sha1 of the run's prefix): each run its own IPv6 addresses."""
    h = hashlib.sha1(prefix.encode()).digest()[:5]
    return str(ipaddress.IPv6Network((b"\xfd" + h + bytes(10), 48)))


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
    families: tuple[str, ...] = ("ipv4",)  # of pods, services and connections, the primary first
    underlay: str = "ipv4"
    nets: dict[str, Nets] = field(default_factory=dict)  # family -> networks (the pods' and the underlay's)
    router_outside_ips: tuple[str, ...] = ()
    nlb_client_ips: tuple[str, ...] = ()

    @property
    def ip_family(self) -> str:
        """'ipv4', 'ipv6' or 'dual'."""
        return "dual" if len(self.families) > 1 else self.families[0]

    @property
    def net_families(self) -> tuple[str, ...]:
        """Families on the VPC segment and its hosts: the pods' and the underlay's."""
        return tuple(dict.fromkeys((*self.families, self.underlay)))

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
         client_cidr: str = "198.51.100.0/24", internet_cidr: str = "203.0.113.0/24",
         ip_family: str = "ipv4", underlay: str | None = None, ula: str | None = None) -> Topology:
    """Plan a cluster: ``nodes`` nodes, two web backends on different nodes, a DNS-like pod, client pods.

    ``ip_family`` sets the families of pods, services and connections; ``underlay`` (default: the
    primary family) the VXLAN packets' between nodes; ``ula`` the IPv6 /48 (default per ``prefix``).
    """
    if cni not in CNI_MODES:
        raise LabError(f"unknown CNI mode {cni!r}; expected one of {', '.join(CNI_MODES)}")
    if ip_family not in IP_FAMILIES:
        raise LabError(f"unknown IP family {ip_family!r}; expected one of {', '.join(IP_FAMILIES)}")
    families = ("ipv4", "ipv6") if ip_family == "dual" else (ip_family,)
    if underlay is not None and cni != "calico-vxlan" and underlay != families[0]:
        raise LabError(f"--underlay {underlay}: only calico-vxlan tunnels between nodes; {cni} routes pod addresses "
                       f"natively, so its nodes carry the pods' family ({families[0]}); drop --underlay")  # fmt: skip
    underlay = underlay or families[0]
    if underlay not in UNDERLAYS:
        raise LabError(f"unknown underlay {underlay!r}; expected one of {', '.join(UNDERLAYS)}")
    if not 2 <= nodes <= 20:
        raise LabError(f"nodes={nodes}: the lab needs 2 to 20 nodes (two backends on different nodes)")
    nets = {"ipv4": Nets("ipv4", vpc_cidr, pod_cidr if cni != "vpc" else None, service_cidr, client_cidr,
                         internet_cidr)}
    if "ipv6" in (*families, underlay):
        nets["ipv6"] = _ipv6_nets(cni, ula or ula_for(prefix))
    if "ipv4" not in (*families, underlay):
        del nets["ipv4"]
    fams = tuple(dict.fromkeys((*families, underlay)))
    vpc = {f: ipaddress.ip_network(nets[f].vpc) for f in fams}
    if vpc.get("ipv4") is not None and vpc["ipv4"].num_addresses < 256 * (nodes + 1):
        raise LabError(f"vpc_cidr {vpc_cidr} is too small for {nodes} nodes; use a /16 to /20")
    blocks: dict[str, list] = {}
    if cni != "vpc":
        for f in families:
            size = 26 if f == "ipv4" else 122
            blocks[f] = list(itertools.islice(ipaddress.ip_network(nets[f].pod).subnets(new_prefix=size), nodes))
            if len(blocks[f]) < nodes:
                raise LabError(f"pod_cidr {nets[f].pod} has fewer than {nodes} /{size} blocks; use a /16 to /24")
    svc = {f: ipaddress.ip_network(nets[f].service) for f in families}
    client = {f: ipaddress.ip_network(nets[f].client) for f in fams}
    inet = {f: ipaddress.ip_network(nets[f].internet) for f in fams}
    ns = lambda name: f"{prefix}{name}"  # noqa: E731

    def each(table: dict, k: int, only: tuple[str, ...] = fams) -> tuple[str, ...]:
        return tuple(str(table[f][k]) for f in only)

    first = nets[families[0]]
    router_ips, nlb_ips = each(vpc, 1), each(vpc, 200)
    topo = Topology(
        cni=cni, prefix=prefix, vpc_cidr=first.vpc, pod_cidr=first.pod, service_cidr=first.service,
        client_cidr=first.client, internet_cidr=first.internet,
        mtu=(1430 if underlay == "ipv6" else 1450) if cni == "calico-vxlan" else 1500, vpc_ns=ns("vpc"),
        router=Host("router", ns("router"), router_ips[0], router_ips), router_outside_ip=each(inet, 1)[0],
        nlb=Host("nlb", ns("nlb"), nlb_ips[0], nlb_ips), nlb_client_ip=each(client, 1)[0],
        client=Host("client", ns("client"), each(client, 20)[0], each(client, 20)),
        internet=Host("internet", ns("internet"), each(inet, 10)[0], each(inet, 10)),
        families=families, underlay=underlay, nets=nets, router_outside_ips=each(inet, 1),
        nlb_client_ips=each(client, 1),
    )
    for i in range(1, nodes + 1):
        name = f"node-{i}"
        node_blocks = tuple(str(blocks[f][i - 1]) for f in families if f in blocks)
        # IPv6: not the block's first address (the subnet-router anycast address)
        tunnels = tuple(str(blocks[f][i - 1][0 if f == "ipv4" else 1]) for f in families if f in blocks)
        ips = each(vpc, 10 + i)
        topo.nodes.append(Node(
            name=name, index=i, ns=ns(name), ip=ips[0], mac=_mac(f"{name}/eth0"),
            zone=ZONES[(i - 1) % len(ZONES)], pod_cidr=node_blocks[0] if node_blocks else None,
            tunnel_ip=tunnels[0] if tunnels else None,
            tunnel_mac=_mac(f"{name}/vxlan.calico", 0x66) if node_blocks else None,
            ips=ips, pod_cidrs=node_blocks, tunnel_ips=tunnels, underlay_ip=pick(ips, underlay)))
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
        if cni == "vpc":  # secondary ENI addresses from the VPC subnet
            ips = each(vpc, 256 * idx + 10 + k, families)
        else:
            ips = tuple(str(blocks[f][idx - 1][5 + k]) for f in families)
        host_if = veth_name(cni, "default", name)
        topo.pods.append(Pod(
            namespace="default", name=name, node=node.name, ns=ns(f"pod-{name}"), ip=ips[0], host_if=host_if,
            mac=_mac(f"default/{name}/eth0"),
            host_mac="ee:ee:ee:ee:ee:ee" if cni != "vpc" else _mac(f"default/{name}/{host_if}"),
            labels=labels, ports=ports, ips=ips))

    def service(name: str, typ: str, k: int, ports: tuple[ServicePort, ...], selector: dict[str, str],
                policy: str | None = None, lb: int | None = None, host: str | None = None) -> Service:
        cips = each(svc, k, families)
        lbs = each(vpc, lb, families) if lb is not None else ()
        return Service("default", name, typ, cips[0], ports, selector, policy, lbs[0] if lbs else None, host,
                       cluster_ips=cips, lb_ips=lbs)

    topo.services = [
        service("web", "NodePort", 20, (ServicePort("http", 8080, 80, "TCP", 30080),), {"app": "web"}, "Cluster"),
        service("web-lb", "LoadBalancer", 21, (ServicePort("http", 80, 80, "TCP", 30081),), {"app": "web"},
                "Cluster", 201, "k8s-default-weblb-0a1b2c3d4e.elb.us-east-1.amazonaws.com"),
        service("web-local", "LoadBalancer", 22, (ServicePort("http", 80, 80, "TCP", 30082),), {"app": "web"},
                "Local", 202, "k8s-default-weblocal-5f6a7b8c9d.elb.us-east-1.amazonaws.com"),
        service("dns", "ClusterIP", 10, (ServicePort("dns", 53, 53, "UDP"),), {"app": "dns"}),
    ]
    return topo


def _ipv6_nets(cni: str, ula: str) -> Nets:
    """IPv6 networks of a run inside the ULA /48 ``ula``: /64s for the VPC, pods, client and internet, a /108 for services."""
    try:
        net = ipaddress.IPv6Network(ula)
    except ValueError as exc:
        raise LabError(f"ula {ula!r}: not an IPv6 network ({exc}); pass a /48 inside fc00::/7") from None
    if net.prefixlen > 48 or not net.subnet_of(ipaddress.IPv6Network("fc00::/7")):
        raise LabError(f"ula {ula}: expected a unique local /48 (or shorter) inside fc00::/7, e.g. fd12:3456:789a::/48")
    subnet = lambda k: ipaddress.IPv6Network((int(net.network_address) + (k << 64), 64))  # noqa: E731
    return Nets("ipv6", str(subnet(1)), str(subnet(2)) if cni != "vpc" else None,
                str(ipaddress.IPv6Network((subnet(3).network_address, 108))), str(subnet(4)), str(subnet(5)))


def addresses(topo: Topology) -> dict[str, tuple[str, ...]]:
    """Every address of the plan -> all addresses of the same entity (pods, nodes, services, hosts, tunnels)."""
    groups: list[tuple[str, ...]] = [p.ips for p in topo.pods] + [n.ips for n in topo.nodes]
    groups += [n.tunnel_ips for n in topo.nodes if n.tunnel_ips]
    groups += [s.cluster_ips or (s.cluster_ip,) for s in topo.services]
    groups += [s.lb_ips for s in topo.services if s.lb_ips]
    groups += [h.ips for h in (topo.router, topo.nlb, topo.client, topo.internet)]
    return {a: g for g in groups for a in g}


def over_each_family(topo: Topology, jobs: list[dict]) -> list[dict]:
    """``jobs`` once per IP family of ``topo``: a dual-stack run makes every connection over IPv4 and over IPv6.

    The copies for the second family take new ids after the last and the same destination entity's
    address of that family; every job gains ``family``.
    """
    same = addresses(topo)
    out = [{**j, "family": topo.families[0]} for j in jobs]
    for fam in topo.families[1:]:
        base = max((j["id"] for j in jobs), default=-1) + 1
        for k, j in enumerate(jobs):
            dst = pick(same.get(j["dst"], (j["dst"],)), fam)
            if dst is None:
                raise LabError(f"job {j['id']}: {j['dst']} has no {fam} address in the plan")
            out.append({**j, "id": base + k, "dst": dst, "family": fam})
    return out


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mac_a: str | None = None,
          mac_b: str | None = None, mtu: int | None = None) -> list[str]:
    """ip-batch lines (run in ``ns_a``) creating a veth pair whose peer lands in ``ns_b``."""
    opt_a = (f" address {mac_a}" if mac_a else "") + (f" mtu {mtu}" if mtu else "")
    opt_b = (f" address {mac_b}" if mac_b else "") + (f" mtu {mtu}" if mtu else "")
    return [f"link add name {name_a}{opt_a} type veth peer name {name_b}{opt_b} netns {ns_b}",
            f"link set {name_a} up"]


def _len(cidr: str) -> int:
    return ipaddress.ip_network(cidr).prefixlen


def build(topo: Topology, *, segment_offload: bool = False) -> None:
    """Create every namespace, link, address, route and neighbour entry of ``topo``."""
    ipv6 = "ipv6" in topo.net_families
    for name in topo.namespaces():
        netns.create(name, ipv6=ipv6)
    nets = [topo.nets[f] for f in topo.net_families]

    # the VPC L2 segment: a bridge with one port per node, the router and the NLB
    netns.sysctl(topo.vpc_ns, {"net.bridge.bridge-nf-call-iptables": 0,
                                "net.bridge.bridge-nf-call-arptables": 0,
                                **({"net.bridge.bridge-nf-call-ip6tables": 0} if ipv6 else {})})
    vpc_cmds = ["link add name br0 type bridge mcast_snooping 0", "link set br0 up"]
    attached = [(f"p{n.index}", n.ns, n.mac) for n in topo.nodes]
    attached += [("prtr", topo.router.ns, _mac("router/eth0")), ("pnlb", topo.nlb.ns, _mac("nlb/eth0"))]
    for port, other, mac in attached:
        vpc_cmds += _veth(topo.vpc_ns, port, other, "eth0", mac_b=mac)
        vpc_cmds.append(f"link set {port} master br0")
    netns.ip_batch(topo.vpc_ns, vpc_cmds)

    fwd = _forwarding(topo)
    pairs = lambda ips, nets_: zip(ips, nets_, strict=True)  # noqa: E731
    # router: VPC <-> "internet"
    netns.sysctl(topo.router.ns, fwd)
    netns.ip_batch(topo.router.ns, [
        *(f"addr add {ip}/{_len(n.vpc)} dev eth0" for ip, n in pairs(topo.router.ips, nets)), "link set eth0 up",
        *_veth(topo.router.ns, "inet0", topo.internet.ns, "eth0", mac_b=_mac("internet/eth0")),
        *(f"addr add {ip}/{_len(n.internet)} dev inet0" for ip, n in pairs(topo.router_outside_ips, nets)),
        *(f"route add {n.client} via {ip}" for ip, n in pairs(topo.nlb.ips, nets)),
    ])
    netns.ip_batch(topo.internet.ns, [
        *(f"addr add {ip}/{_len(n.internet)} dev eth0" for ip, n in pairs(topo.internet.ips, nets)), "link set eth0 up",
        *(f"route add default via {ip}" for ip in topo.router_outside_ips),
    ])
    # NLB: VPC <-> external client; the load-balancer addresses live on its eth0
    netns.sysctl(topo.nlb.ns, fwd)
    lb_ips = [ip for s in topo.services for ip in s.lb_ips]
    netns.ip_batch(topo.nlb.ns, [
        *(f"addr add {ip}/{_len(n.vpc)} dev eth0" for ip, n in pairs(topo.nlb.ips, nets)),
        *(f"addr add {ip}/{host_len(family_of(ip))} dev eth0" for ip in lb_ips),
        "link set eth0 up", *(f"route add default via {ip}" for ip in topo.router.ips),
        *_veth(topo.nlb.ns, "cl0", topo.client.ns, "eth0", mac_b=_mac("client/eth0")),
        *(f"addr add {ip}/{_len(n.client)} dev cl0" for ip, n in pairs(topo.nlb_client_ips, nets)),
    ])
    netns.ip_batch(topo.client.ns, [
        *(f"addr add {ip}/{_len(n.client)} dev eth0" for ip, n in pairs(topo.client.ips, nets)), "link set eth0 up",
        *(f"route add default via {ip}" for ip in topo.nlb_client_ips),
    ])

    for node in topo.nodes:
        _build_node(topo, node)
    if not segment_offload:
        # senders emit MSS-sized segments (as on the wire of a real ENI) instead of 64 KB GSO blobs
        for p in topo.pods:
            netns.ip_batch(p.ns, ["link set eth0 gso_max_segs 1"])
        netns.ip_batch(topo.internet.ns, ["link set eth0 gso_max_segs 1"])
    if ipv6:
        for name in topo.namespaces():
            netns.wait_addresses(name)


def _forwarding(topo: Topology) -> dict[str, str | int]:
    """Routing sysctls of a forwarding box, for each family of the run."""
    fwd: dict[str, str | int] = {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0,
                                 "net.ipv4.conf.default.rp_filter": 0}
    if "ipv6" in topo.net_families:
        fwd.update({"net.ipv6.conf.all.forwarding": 1, "net.ipv6.conf.default.forwarding": 1})
    return fwd


def _build_node(topo: Topology, node: Node) -> None:
    """Node namespace: uplink, pod veths with host routes and proxy ARP/NDP, CNI specifics."""
    settings: dict[str, str | int] = {
        **_forwarding(topo), "net.ipv4.conf.all.route_localnet": 1, "net.ipv4.neigh.eth0.proxy_delay": 0,
    }
    nets = [topo.nets[f] for f in topo.net_families]
    cmds = [*(f"addr add {ip}/{_len(n.vpc)} dev eth0" for ip, n in zip(node.ips, nets, strict=True)),
            "link set eth0 up"]
    for ip, n in zip(topo.router.ips, nets, strict=True):
        # the VPC route table sends traffic for the NLB's clients back through the NLB
        cmds += [f"route add default via {ip}", f"route add {n.client} via {topo.nlb.addr(n.family)}"]
    if "ipv6" in topo.net_families:
        settings.update({"net.ipv6.conf.eth0.proxy_ndp": 1, "net.ipv6.neigh.eth0.proxy_delay": 0})
    pods = [p for p in topo.pods if p.node == node.name]
    for p in pods:
        cmds += _veth(node.ns, p.host_if, p.ns, "eth0", mac_a=p.host_mac, mac_b=p.mac, mtu=topo.mtu)
        for ip in p.ips:
            cmds.append(f"route add {ip}/{host_len(family_of(ip))} dev {p.host_if}"
                        + (" scope link" if family_of(ip) == "ipv4" else ""))
            if topo.cni == "vpc":
                # the VPC fabric delivers a secondary IP to its ENI: the node answers ARP / NDP for its pods
                cmds.append(f"neigh add proxy {ip} dev eth0")
        settings[f"net.ipv4.conf.{p.host_if}.proxy_arp"] = 1
        settings[f"net.ipv4.neigh.{p.host_if}.proxy_delay"] = 0
    if topo.cni == "calico-vxlan":
        cmds += [f"link add name vxlan.calico address {node.tunnel_mac} mtu {topo.mtu} type vxlan "
                 f"id {VXLAN_VNI} dstport {VXLAN_PORT} local {node.underlay_ip or node.ip} dev eth0 nolearning",
                 "link set vxlan.calico up"]
        for tun, block in zip(node.tunnel_ips, node.pod_cidrs, strict=True):
            cmds += [f"addr add {tun}/{host_len(family_of(tun))} dev vxlan.calico",
                     f"route add blackhole {block} proto 80"]
        for other in topo.nodes:
            if other.name == node.name:
                continue
            for tun, block in zip(other.tunnel_ips, other.pod_cidrs, strict=True):
                cmds += [f"neigh add {tun} lladdr {other.tunnel_mac} dev vxlan.calico nud permanent",
                         f"route add {block} via {tun} dev vxlan.calico onlink"]
    netns.ip_batch(node.ns, cmds)
    netns.sysctl(node.ns, settings)
    if topo.cni == "calico-vxlan":
        # vxlan's receive path merges a burst of segments (GRO) into one >MTU packet; keep the wire's
        netns.gro_off(node.ns, ["vxlan.calico"])
        fdb = [f"fdb append {o.tunnel_mac} dev vxlan.calico dst {o.underlay_ip or o.ip} self permanent"
               for o in topo.nodes if o.name != node.name]
        netns.run(["bridge", "-batch", "-"], ns=node.ns, stdin="\n".join(fdb) + "\n")
    for p in pods:
        cmds = []
        for ip in p.ips:
            if family_of(ip) == "ipv4":
                cmds += [f"addr add {ip}/32 dev eth0", "link set eth0 up", f"route add {POD_GATEWAY} dev eth0 scope link",
                         f"route add default via {POD_GATEWAY} dev eth0"]
            else:  # the gateway is the host veth's own link-local address, as Calico and the VPC CNI set it up
                cmds += [f"addr add {ip}/128 dev eth0 nodad", "link set eth0 up",
                         f"route add default via {link_local(p.host_mac)} dev eth0"]
        netns.ip_batch(p.ns, list(dict.fromkeys(cmds)))
