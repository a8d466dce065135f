"""iptables rules as kube-proxy (iptables mode), the CNIs and the NLB would install them.

Chain names follow kube-proxy: ``KUBE-SVC-``/``KUBE-SEP-``/``KUBE-EXT-``/``KUBE-SVL-`` + the first 16
base32 characters of sha256(servicePortName + protocol [+ endpoint]), backends chosen with
``-m statistic --mode random --probability 1/(n-i)``, external Cluster traffic marked 0x4000 and
masqueraded in KUBE-POSTROUTING.

Each IP family gets its own ruleset (``ip6tables-restore`` for IPv6, as kube-proxy runs one proxier per
family): the same chains over that family's addresses, ``/128`` hosts and ``[addr]:port`` endpoints.
"""

from __future__ import annotations

import base64
import hashlib

from pcaptools.lab import netns
from pcaptools.lab.topology import Node, Pod, Service, ServicePort, Topology, host_len

MASQ_MARK = "0x4000/0x4000"


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_name(svc: Service, port: ServicePort) -> str:
    """kube-proxy's servicePortName string, e.g. ``default/web:http``."""
    return f"{svc.namespace}/{svc.name}:{port.name}"


def svc_chain(svc: Service, port: ServicePort, kind: str = "SVC") -> str:
    """``KUBE-SVC-…`` (or ``KUBE-EXT-``/``KUBE-SVL-``) for a service port."""
    return f"KUBE-{kind}-" + _hash16(port_name(svc, port) + port.protocol.lower())


def hostport(ip: str, port: int) -> str:
    """``ip:port``, ``[ip]:port`` for IPv6 (kube-proxy's endpoint string, iptables' --to-destination)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def sep_chain(svc: Service, port: ServicePort, pod: Pod, family: str | None = None) -> str:
    """``KUBE-SEP-…`` for one endpoint of a service port (the pod's address of ``family``, default its first)."""
    ip = pod.addr(family) if family else pod.ip
    return "KUBE-SEP-" + _hash16(port_name(svc, port) + port.protocol.lower() + hostport(ip, port.target_port))


def _probability(i: int, n: int) -> str:
    return f" -m statistic --mode random --probability {1.0 / (n - i):.11f}" if i < n - 1 else ""


def node_rules(topo: Topology, node: Node, family: str | None = None) -> str:
    """The node's full ruleset of ``family`` (default the run's first; iptables-restore format): kube-proxy's nat
    chains plus the CNI's SNAT."""
    fam = family or topo.families[0]
    h = host_len(fam)
    chains: list[str] = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    rules: list[str] = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    filter_rules: list[str] = []
    cluster_cidr = topo.nets[fam].pod  # EKS's kube-proxy runs without --cluster-cidr under the VPC CNI
    for svc in topo.services:
        eps = topo.endpoints(svc)
        cip = svc.cluster_addr(fam)
        lb_ip = svc.lb_addr(fam)
        for port in svc.ports:
            pn, proto = port_name(svc, port), port.protocol.lower()
            svc_c = svc_chain(svc, port)
            chains.append(svc_c)
            rules.append(f'-A KUBE-SERVICES -d {cip}/{h} -p {proto} -m comment --comment '
                         f'"{pn} cluster IP" -m {proto} --dport {port.port} -j {svc_c}')
            if cluster_cidr:
                rules.append(f'-A {svc_c} ! -s {cluster_cidr} -d {cip}/{h} -p {proto} -m comment '
                             f'--comment "{pn} cluster IP" -m {proto} --dport {port.port} -j KUBE-MARK-MASQ')
            for i, pod in enumerate(eps):
                sep = sep_chain(svc, port, pod, fam)
                ep = hostport(pod.addr(fam), port.target_port)
                chains.append(sep)
                rules.append(f'-A {svc_c} -m comment --comment "{pn} -> {ep}"'
                             f"{_probability(i, len(eps))} -j {sep}")
                rules.append(f'-A {sep} -s {pod.addr(fam)}/{h} -m comment --comment "{pn}" '
                             "-j KUBE-MARK-MASQ")
                rules.append(f'-A {sep} -p {proto} -m comment --comment "{pn}" -m {proto} '
                             f"-j DNAT --to-destination {ep}")
            if port.node_port is None:
                continue
            ext = svc_chain(svc, port, "EXT")
            chains.append(ext)
            rules.append(f'-A KUBE-NODEPORTS -p {proto} -m comment --comment "{pn}" -m {proto} '
                         f"--dport {port.node_port} -j {ext}")
            if lb_ip:
                rules.append(f'-A KUBE-SERVICES -d {lb_ip}/{h} -p {proto} -m comment --comment '
                             f'"{pn} loadbalancer IP" -m {proto} --dport {port.port} -j {ext}')
            if svc.external_traffic_policy == "Local":
                svl = svc_chain(svc, port, "SVL")
                chains.append(svl)
                if cluster_cidr:
                    rules.append(f'-A {ext} -s {cluster_cidr} -m comment --comment "pod traffic for {pn} '
                                 f'external destinations" -j {svc_c}')
                rules += [
                    f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {pn} external destinations" '
                    "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                    f'-A {ext} -m comment --comment "route LOCAL traffic for {pn} external destinations" '
                    f"-m addrtype --src-type LOCAL -j {svc_c}",
                    f"-A {ext} -j {svl}",
                ]
                local = [p for p in eps if p.node == node.name]
                for i, pod in enumerate(local):
                    ep = hostport(pod.addr(fam), port.target_port)
                    rules.append(f'-A {svl} -m comment --comment "{pn} -> {ep}"'
                                 f"{_probability(i, len(local))} -j {sep_chain(svc, port, pod, fam)}")
                if not local:
                    filter_rules.append(
                        f'-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment "{pn} has no local endpoints" '
                        f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port} -j DROP")
            else:
                rules += [f'-A {ext} -m comment --comment "masquerade traffic for {pn} external destinations" '
                          "-j KUBE-MARK-MASQ", f"-A {ext} -j {svc_c}"]
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                 'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    cni_chains, cni_rules = _cni_snat(topo, node, fam)
    nat = _table("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"], chains + cni_chains, rules + cni_rules)
    filt = _table("filter", ["INPUT", "FORWARD", "OUTPUT"], ["KUBE-EXTERNAL-SERVICES"], [
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        "-j KUBE-EXTERNAL-SERVICES", *filter_rules])
    return nat + filt


def _cni_snat(topo: Topology, node: Node, fam: str) -> tuple[list[str], list[str]]:
    """Pod -> outside SNAT: AWS-SNAT-CHAIN-0 (VPC CNI) or cali-nat-outgoing (Calico natOutgoing)."""
    nets = topo.nets[fam]
    if topo.cni == "vpc":
        return ["AWS-SNAT-CHAIN-0"], [
            '-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0',
            f'-A AWS-SNAT-CHAIN-0 -d {nets.vpc} -m comment --comment "AWS SNAT CHAIN" -j RETURN',
            '-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL '
            f"-j SNAT --to-source {node.addr(fam)} --random-fully",
        ]
    return ["cali-POSTROUTING", "cali-nat-outgoing"], [
        '-A POSTROUTING -m comment --comment "cali:POSTROUTING" -j cali-POSTROUTING',
        '-A cali-POSTROUTING -m comment --comment "cali:nat-outgoing" -j cali-nat-outgoing',
        f"-A cali-nat-outgoing -s {nets.pod} ! -d {nets.pod} -m comment --comment "
        '"cali:natOutgoing ippool" -j MASQUERADE --random-fully',
    ]


def nlb_rules(topo: Topology, family: str | None = None) -> str:
    """The NLB of ``family`` (default the run's first): listener address:port DNATed to a target node's NodePort
    (client IP preserved)."""
    fam = family or topo.families[0]
    chains, rules = [], []
    for svc in topo.services:
        lb_ip = svc.lb_addr(fam)
        if not lb_ip:
            continue
        for port in svc.ports:
            if svc.external_traffic_policy == "Local":
                hosts = {p.node for p in topo.endpoints(svc)}
                targets = [n for n in topo.nodes if n.name in hosts]  # health checks fail elsewhere
            else:
                targets = topo.nodes
            chain = "NLB-TG-" + _hash16(port_name(svc, port))
            chains.append(chain)
            proto = port.protocol.lower()
            rules.append(f"-A PREROUTING -d {lb_ip}/{host_len(fam)} -p {proto} -m {proto} --dport {port.port} "
                         f'-m comment --comment "listener {port_name(svc, port)}" -j {chain}')
            for i, n in enumerate(targets):
                rules.append(f'-A {chain} -p {proto} -m comment --comment "target {n.name}"'
                             f"{_probability(i, len(targets))} -j DNAT --to-destination "
                             f"{hostport(n.addr(fam), port.node_port)}")
    return _table("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"], chains, rules)


def _table(name: str, builtin: list[str], chains: list[str], rules: list[str]) -> str:
    head = [f"*{name}", *(f":{c} ACCEPT [0:0]" for c in builtin), *(f":{c} - [0:0]" for c in dict.fromkeys(chains))]
    return "\n".join([*head, *rules, "COMMIT", ""])


def install(topo: Topology) -> None:
    """Load every node's and the NLB's rules, one ruleset per IP family of the run (iptables / ip6tables)."""
    for fam in topo.families:
        for node in topo.nodes:
            netns.iptables_restore(node.ns, node_rules(topo, node, fam), family=fam)
        netns.iptables_restore(topo.nlb.ns, nlb_rules(topo, fam), family=fam)


def saved(topo: Topology) -> dict[str, str]:
    """Each node's rules as the kernel holds them: ``NODE/iptables-save.txt``, and ``NODE/ip6tables-save.txt`` when
    the run has IPv6 (what capture tools collect beside their pcaps, for ``why --iptables``)."""
    out = {}
    for n in topo.nodes:
        out[f"{n.name}/iptables-save.txt"] = netns.run(["iptables-save"], ns=n.ns)
        if "ipv6" in topo.families:
            out[f"{n.name}/ip6tables-save.txt"] = netns.run(["ip6tables-save"], ns=n.ns)
    return out
