"""Interface-naming conventions of Kubernetes network plugins: device name -> capture-point role, veth -> pod.

One table (:data:`CONVENTIONS`), first match wins. Only Calico and the AWS VPC CNI derive the
host-side veth name from the pod (``prefix + sha1("namespace.podname").hexdigest()[:11]``); the
other plugins' veth names (``lxc…`` Cilium endpoint ids, ``veth…`` random, ``azv…``, ``gke…``) say
"a pod's veth" but not which pod.
"""

from __future__ import annotations

import hashlib
import re

CONVENTIONS: tuple[tuple[str, str, str], ...] = (
    # (regular expression on the whole name, role, what names it so)
    (r"any", "any", "tcpdump -i any (every interface of the host)"),
    (r"lo", "loopback", "loopback"),
    (r"vxlan\.calico|vxlan-v6\.calico", "overlay", "Calico VXLAN device"),
    (r"wireguard\.cali|wg-v6\.cali", "overlay", "Calico WireGuard device"),
    (r"flannel\.\d+|flannel-wg", "overlay", "flannel VXLAN/WireGuard device"),
    (r"cilium_vxlan|cilium_geneve|cilium_wg0", "overlay", "Cilium tunnel device"),
    (r"genev_sys_\d+|vxlan_sys_\d+", "overlay", "OVS/OVN (Antrea, Kube-OVN) tunnel device"),
    (r"tunl\d+", "overlay", "IP-in-IP tunnel device (Calico IPIP)"),
    (r"weave|vxlan-\d+", "overlay", "Weave Net device"),
    (r"cali[0-9a-f]{11}", "pod-veth", "Calico pod veth"),
    (r"eni[0-9a-f]{11}", "pod-veth", "AWS VPC CNI pod veth"),
    (r"lxc[0-9a-f]+|lxc_health", "pod-veth", "Cilium endpoint veth"),
    (r"azv[0-9a-f]+", "pod-veth", "Azure CNI pod veth"),
    (r"gke[0-9a-f]+", "pod-veth", "GKE pod veth"),
    (r"veth[0-9a-zA-Z]+", "pod-veth", "pod veth (bridge/ptp plugins, flannel, kindnet)"),
    (r"kube-ipvs0", "service-vip", "kube-proxy IPVS dummy (service IPs)"),
    (r"nodelocaldns", "service-vip", "NodeLocal DNSCache dummy"),
    (r"cbr0|cni0|docker0|br-[0-9a-f]+|kube-bridge", "bridge", "pod bridge"),
    (r"cilium_host|cilium_net", "other", "Cilium host device"),
    (r"eth\d+|ens\d+\w*|enp\d+\w*|eno\d+\w*|enX\d+|bond\d+(\.\d+)?|em\d+|wlan\d+", "node-uplink", "node NIC"),
)
"""Interface name patterns (full match) -> role; first match wins."""

_COMPILED = tuple((re.compile(rx), role, what) for rx, role, what in CONVENTIONS)

VETH_HASH_PREFIX = {"cali": "Calico", "eni": "AWS VPC CNI"}
"""Host-veth prefixes whose rest is sha1("namespace.podname").hexdigest()[:11]."""


def role_of(interface: str) -> tuple[str, str] | None:
    """(role, convention) of an interface name, or None when no plugin convention names it."""
    for rx, role, what in _COMPILED:
        if rx.fullmatch(interface):
            return role, what
    return None


def veth_name(prefix: str, namespace: str, pod: str) -> str:
    """Host-side veth name Calico (``cali``) and the AWS VPC CNI (``eni``) give a pod."""
    return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def veth_owners(pods: list[str]) -> dict[str, str]:
    """Hashed veth name -> pod ("namespace/name") for every prefix in VETH_HASH_PREFIX."""
    out: dict[str, str] = {}
    for key in pods:
        ns, _, name = key.partition("/")
        if not name:
            continue
        for prefix in VETH_HASH_PREFIX:
            out[veth_name(prefix, ns, name)] = key
    return out
