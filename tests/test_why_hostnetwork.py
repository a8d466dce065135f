"""hostNetwork pods share their node's address: a node-address endpoint is named as the hostNetwork pod that
listens on the port (server) or as the node's only hostNetwork pod (client), not as the node (scapy-crafted capture)."""

from __future__ import annotations

from scapy.all import IP, TCP, Ether, wrpcap

import pcaptools
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.paths import paths

NODE_IP, POD_IP = "192.168.0.11", "10.244.0.5"


def _pod(name: str, ns: str, ip: str, host: bool, ports: list[int]) -> dict:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": "node-1", "hostNetwork": host,
                     "containers": [{"name": "c", "ports": [{"containerPort": p, "protocol": "TCP"} for p in ports]}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}  # fmt: skip


def _inventory(host_pods: list[dict]) -> Inventory:
    node = {"kind": "Node", "metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.244.0.0/26"},
            "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}  # fmt: skip
    return Inventory.load({"kind": "List", "items": [node, _pod("web", "default", POD_IP, False, [80]), *host_pods]})


def _handshake(tmp_path, src: str, sport: int, dst: str, dport: int):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    pk = [e / IP(src=src, dst=dst, id=1) / TCP(sport=sport, dport=dport, flags="S", seq=1),
          e / IP(src=dst, dst=src, id=2) / TCP(sport=dport, dport=sport, flags="SA", seq=9, ack=2),
          e / IP(src=src, dst=dst, id=3) / TCP(sport=sport, dport=dport, flags="A", seq=2, ack=10)]  # fmt: skip
    for k, p in enumerate(pk):
        p.time = 1_700_000_000.0 + k * 0.001
    f = tmp_path / "eth0.pcap"
    wrpcap(str(f), pk)
    return pcaptools.correlate(pcaptools.CaptureSet.load(points=[f"node-1:eth0={f}"]))


def test_a_node_address_client_is_the_nodes_only_hostnetwork_pod(tmp_path):
    corr = _handshake(tmp_path, NODE_IP, 50000, POD_IP, 80)
    r = paths(corr, _inventory([_pod("kube-proxy-x", "kube-system", NODE_IP, True, [])])).iloc[0]
    assert (str(r["client"]), str(r["client_kind"]), str(r["client_node"])) == ("kube-system/kube-proxy-x", "pod", "node-1")
    assert str(r["backend"]) == "default/web" and r["nat"] == ""
    two = [_pod("kube-proxy-x", "kube-system", NODE_IP, True, []), _pod("aws-node-y", "kube-system", NODE_IP, True, [61678])]
    r = paths(corr, _inventory(two)).iloc[0]
    assert (str(r["client"]), str(r["client_kind"])) == ("node-1", "node")  # two candidates, no port to tell


def test_a_node_address_server_is_the_hostnetwork_pod_listening_on_the_port(tmp_path):
    corr = _handshake(tmp_path, POD_IP, 40000, NODE_IP, 9100)
    host = [_pod("kube-proxy-x", "kube-system", NODE_IP, True, []), _pod("exporter-z", "monitoring", NODE_IP, True, [9100])]
    r = paths(corr, _inventory(host)).iloc[0]
    assert (str(r["backend"]), str(r["backend_kind"]), str(r["backend_node"])) == ("monitoring/exporter-z", "pod", "node-1")
    assert str(r["kind"]) == "pod-direct"
