"""The emulated cluster lab, beyond tests/test_lab.py: repeatability, complete captures, MTU, UDP, Local policy.

Captures are read with dpkt (an independent reader, not pcaptools' decoder). Each CNI mode is built once here.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import struct
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import pytest

from pcaptools.errors import LabError

pytestmark = pytest.mark.lab

LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2 = 1, 276


def _lab_available() -> str | None:
    """Why the lab cannot run here, or None."""
    from pcaptools.lab import netns

    try:
        netns.check_host()
    except LabError as exc:
        return str(exc)
    return None


needs_netns = pytest.mark.skipif(_lab_available() is not None, reason=f"no network namespaces: {_lab_available()}")


def _prefix() -> str:
    return f"ptl{secrets.token_hex(2)}-"


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


class Lab:
    """One finished lab run: its directory, the three JSON files and the prefix it used."""

    def __init__(self, manifest: Path, prefix: str) -> None:
        self.dir = manifest.parent
        self.prefix = prefix
        self.manifest = json.loads(manifest.read_text())
        self.truth = json.loads((self.dir / "truth.json").read_text())
        self.inventory = json.loads((self.dir / "inventory.json").read_text())

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [i for i in self.inventory["items"] if i["kind"] == kind]

    def capture(self, **match: str) -> dict[str, Any]:
        found = [c for c in self.manifest["captures"] if all(c.get(k) == v for k, v in match.items())]
        assert len(found) == 1, f"{match}: {len(found)} captures"
        return found[0]

    def node_ip(self, node: str) -> str:
        n = next(i for i in self.items("Node") if i["metadata"]["name"] == node)
        return next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")

    def conns(self, kind: str) -> list[dict[str, Any]]:
        out = [c for c in self.truth["connections"] if c["kind"] == kind]
        assert out, f"the run made no {kind} connection"
        return out


def _run(tmp_path_factory: pytest.TempPathFactory, cni: str, **kw: Any) -> Lab:
    from pcaptools.lab import run_lab

    prefix = _prefix()
    out = tmp_path_factory.mktemp(cni)
    return Lab(run_lab(out, cni=cni, prefix=prefix, **kw), prefix)


@pytest.fixture(scope="module")
def vpc(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    if _lab_available():
        pytest.skip(f"no network namespaces: {_lab_available()}")
    return _run(tmp_path_factory, "vpc", connections=16)


@pytest.fixture(scope="module")
def calico(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    if _lab_available():
        pytest.skip(f"no network namespaces: {_lab_available()}")
    return _run(tmp_path_factory, "calico-vxlan", connections=16)


@pytest.fixture(params=["vpc", "calico"])
def lab(request: pytest.FixtureRequest) -> Lab:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------- reading captures with dpkt

def _frames(path: Path) -> tuple[int, int, list[tuple[bytes, int | None]]]:
    """(magic, linktype, [(link-layer payload starting at the IP/ARP header's frame, sll2 ifindex)])."""
    with open(path, "rb") as f:
        magic = struct.unpack("<I", f.read(4))[0]
        f.seek(0)
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        return magic, linktype, [(buf, None) for _ts, buf in reader]


def _ipv4(path: Path) -> list[tuple[dpkt.ip.IP, int | None]]:
    """Every IPv4 packet of a capture (Ethernet or LINUX_SLL2), with the SLL2 ifindex if any."""
    _magic, linktype, frames = _frames(path)
    out = []
    for buf, _ in frames:
        if linktype == LINKTYPE_ETHERNET:
            eth = dpkt.ethernet.Ethernet(buf)
            if isinstance(eth.data, dpkt.ip.IP):
                out.append((eth.data, None))
        elif linktype == LINKTYPE_LINUX_SLL2:
            proto, _res, ifindex = struct.unpack(">HHI", buf[:8])
            if proto == 0x0800:
                out.append((dpkt.ip.IP(buf[20:]), ifindex))
        else:
            raise AssertionError(f"{path}: unexpected linktype {linktype}")
    return out


def _addr(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _l4(ip: dpkt.ip.IP) -> tuple[str, int, str, int, str] | None:
    if isinstance(ip.data, dpkt.tcp.TCP):
        proto = "tcp"
    elif isinstance(ip.data, dpkt.udp.UDP):
        proto = "udp"
    else:
        return None
    return _addr(ip.src), ip.data.sport, _addr(ip.dst), ip.data.dport, proto


def _key(t: dict[str, Any]) -> tuple[str, int, str, int, str]:
    return t["src"], t["sport"], t["dst"], t["dport"], t["proto"]


def _opening(path: Path, tuple_: dict[str, Any]) -> list[dpkt.ip.IP]:
    """Packets with exactly this 5-tuple that open the flow: a bare SYN for TCP, any datagram for UDP."""
    out = []
    for ip, _ in _ipv4(path):
        if _l4(ip) != _key(tuple_):
            continue
        if tuple_["proto"] == "udp" or (ip.data.flags & dpkt.tcp.TH_SYN and not ip.data.flags & dpkt.tcp.TH_ACK):
            out.append(ip)
    return out


def _vxlan(path: Path) -> list[tuple[str, str, int, tuple[str, int, str, int, str] | None]]:
    """(outer src, outer dst, VNI, inner 5-tuple) of every UDP 4789 packet in an Ethernet capture."""
    out = []
    for ip, _ in _ipv4(path):
        if isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 4789:
            payload = bytes(ip.data.data)
            assert payload[0] & 0x08, f"{path}: VXLAN I flag not set"
            vni = int.from_bytes(payload[4:7], "big")
            inner = dpkt.ethernet.Ethernet(payload[8:])
            key = _l4(inner.data) if isinstance(inner.data, dpkt.ip.IP) else None
            out.append((_addr(ip.src), _addr(ip.dst), vni, key))
    return out


def _backend_veth(lab: Lab, conn: dict[str, Any]) -> Path:
    return lab.dir / lab.capture(role="pod-veth", pod=conn["backend"]["pod"])["file"]


# ---------------------------------------------------------------- the tests
# (tests/test_lab.py covers the main truth-vs-capture checks; these add what it does not check)

@needs_netns
def test_the_other_backend_never_sees_a_connection_it_did_not_get(lab: Lab) -> None:
    checked = 0
    for c in lab.truth["connections"]:
        if c["backend"]["kind"] != "pod" or c["service"] != "default/web":
            continue
        assert _opening(_backend_veth(lab, c), c["server_tuple"])
        others = [p for p in lab.items("Pod") if f"default/{p['metadata']['name']}" != c["backend"]["pod"]
                  and p["metadata"]["labels"] == {"app": "web"}]
        assert others
        for other in others:
            path = lab.dir / lab.capture(role="pod-veth", pod=f"default/{other['metadata']['name']}")["file"]
            ports = {(_addr(ip.src), ip.data.sport) for ip, _ in _ipv4(path) if isinstance(ip.data, dpkt.tcp.TCP)}
            assert (c["server_tuple"]["src"], c["server_tuple"]["sport"]) not in ports, (c["id"], path.name)
        checked += 1
    assert checked >= 2


@needs_netns
def test_calico_uplinks_never_carry_pod_addresses_outside_the_tunnel(calico: Lab) -> None:
    pod_ips = {p["status"]["podIP"] for p in calico.items("Pod")}
    tunneled = 0
    for n in calico.items("Node"):
        uplink = calico.dir / calico.capture(node=n["metadata"]["name"], interface="eth0")["file"]
        bare = [ip for ip, _ in _ipv4(uplink) if _addr(ip.src) in pod_ips or _addr(ip.dst) in pod_ips]
        assert not bare, f"{uplink}: pod addresses outside the tunnel"
        vx = _vxlan(uplink)
        assert {vni for _s, _d, vni, _k in vx} <= {4096}
        tunneled += sum(1 for _s, _d, _v, key in vx if key and (key[0] in pod_ips or key[2] in pod_ips))
    assert tunneled > 0


@needs_netns
def test_loadbalancer_local_preserves_the_client_ip_and_stays_on_the_target_node(lab: Lab) -> None:
    client_ip = lab.manifest["hosts"]["client"]["ip"]
    for c in lab.conns("loadbalancer-local"):
        syn = _opening(_backend_veth(lab, c), c["server_tuple"])
        assert syn and _addr(syn[0].src) == client_ip
        assert [n["kind"] for n in c["nat"]] == ["DNAT", "DNAT"]
        assert c["nat"][0]["node"] == "nlb"
        assert c["nat"][1]["node"] == c["backend"]["node"]
        assert c["nat"][0]["after"]["dst"] == lab.node_ip(c["backend"]["node"])


@needs_netns
def test_udp_clusterip_reaches_the_dns_pod_on_port_53(lab: Lab) -> None:
    udp = [c for c in lab.conns("clusterip") if c["proto"] == "udp"]
    assert udp
    for c in udp:
        assert c["backend"]["pod"] == "default/dns-0" and c["server_tuple"]["dport"] == 53
        assert _opening(_backend_veth(lab, c), c["server_tuple"])


@needs_netns
def test_large_transfers_are_segmented_to_the_mtu_on_every_capture(lab: Lab) -> None:
    mtu = lab.manifest["network"]["mtu"]
    biggest = 0
    for cap in lab.manifest["captures"]:
        for ip, _ in _ipv4(lab.dir / cap["file"]):
            biggest = max(biggest, ip.len)
            limit = 1500 if cap["interface"] == "eth0" else mtu
            assert ip.len <= limit, f"{cap['file']}: {ip.len}-byte IP packet above MTU {limit}"
    assert biggest > 1000
    assert any(c["request_bytes"] >= 200_000 and c["received_bytes"] >= 200_000 for c in lab.truth["connections"])


@needs_netns
def test_tcpdump_counts_match_the_files_and_no_capture_dropped_packets(lab: Lab) -> None:
    files = {p.relative_to(lab.dir).as_posix() for p in lab.dir.rglob("*.pcap")}
    assert files == {c["file"] for c in lab.manifest["captures"]}
    roles = {c["role"] for c in lab.manifest["captures"]}
    assert {"pod-veth", "node-uplink", "lb", "client", "external"} <= roles
    assert ("overlay" in roles) == (lab.manifest["cni"] == "calico-vxlan")
    for cap in lab.manifest["captures"]:
        _magic, _lt, frames = _frames(lab.dir / cap["file"])
        assert len(frames) == cap["tcpdump"]["captured"], cap
        assert cap["tcpdump"].get("dropped", 0) == 0, cap
    for pod in lab.items("Pod"):
        veth = lab.capture(role="pod-veth", pod=f"default/{pod['metadata']['name']}")
        assert veth["node"] == pod["spec"]["nodeName"]
        assert len(veth["interface"]) <= 15
        assert veth["interface"].startswith("eni" if lab.manifest["cni"] == "vpc" else "cali")


@needs_netns
def test_a_second_run_gives_the_same_topology_services_and_truth_structure(
        vpc: Lab, tmp_path_factory: pytest.TempPathFactory) -> None:
    again = _run(tmp_path_factory, "vpc", connections=16)

    def strip(inv: dict[str, Any]) -> list[Any]:
        return [{**i, "metadata": {k: v for k, v in i["metadata"].items() if k != "creationTimestamp"}}
                for i in inv["items"]]

    assert strip(again.inventory) == strip(vpc.inventory)
    assert [c["file"] for c in again.manifest["captures"]] == [c["file"] for c in vpc.manifest["captures"]]

    def shape(t: dict[str, Any]) -> list[Any]:
        return [(c["id"], c["kind"], c["service"], c["proto"], c["client"], c["client_tuple"]["dst"],
                 c["client_tuple"]["dport"], [n["kind"] for n in c["nat"]][:1]) for c in t["connections"]]

    assert shape(again.truth) == shape(vpc.truth)
    assert _namespaces(again.prefix) == []
