"""The emulated cluster lab: truth.json checked against the pcaps it wrote (read with dpkt)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from pcaptools.errors import LabError
from tests.lab_support import REASON, needs_lab

ROLES = {"pod-veth", "node-uplink", "overlay", "lb", "client", "any", "external"}




def _run(tmp_path_factory: pytest.TempPathFactory, cni: str, **kw: object) -> tuple[Path, str]:
    from pcaptools.lab import run_lab

    prefix = f"ptl{secrets.token_hex(2)}-"
    out = tmp_path_factory.mktemp(cni)
    return run_lab(out, cni=cni, prefix=prefix, connections=16, **kw), prefix


@pytest.fixture(scope="module")
def vpc_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if REASON:
        pytest.skip(REASON)
    return _run(tmp_path_factory, "vpc")


@pytest.fixture(scope="module")
def calico_lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if REASON:
        pytest.skip(REASON)
    return _run(tmp_path_factory, "calico-vxlan", any_capture=True, nano=True)


@pytest.fixture(params=["vpc", "calico-vxlan"])
def lab(request: pytest.FixtureRequest) -> tuple[Path, str]:
    return request.getfixturevalue("vpc_lab" if request.param == "vpc" else "calico_lab")


def _load(manifest: Path) -> tuple[dict, dict, dict]:
    d = manifest.parent
    return (json.loads(manifest.read_text()), json.loads((d / "truth.json").read_text()),
            json.loads((d / "inventory.json").read_text()))


def _packets(path: Path) -> list[dict]:
    """Every IPv4 TCP/UDP packet of a capture: inner 5-tuple, TCP flags, VXLAN outer header if any."""
    out = []
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        dlt = reader.datalink()
        for _ts, buf in reader:
            if dlt == dpkt.pcap.DLT_EN10MB:
                eth = dpkt.ethernet.Ethernet(buf)
                ifindex = None
            elif dlt == 276:  # LINUX_SLL2: protocol, reserved, ifindex, hatype, pkttype, halen, addr[8]
                proto, _res, ifindex = struct.unpack("!HHI", buf[:8])
                if proto != 0x0800:
                    continue
                eth = dpkt.ethernet.Ethernet(b"\0" * 12 + b"\x08\x00" + buf[20:])
            else:
                raise AssertionError(f"{path}: unexpected link type {dlt}")
            rec = _ip_record(eth)
            if rec is None:
                continue
            rec["ifindex"] = ifindex
            if rec["proto"] == "udp" and rec["dport"] == 4789:
                vx = rec.pop("payload")
                inner = _ip_record(dpkt.ethernet.Ethernet(vx[8:]))
                if inner is not None:
                    inner.pop("payload")
                    inner.update(ifindex=ifindex, vni=int.from_bytes(vx[4:7], "big"), vxlan_flags=vx[0],
                                 outer_src=rec["src"], outer_dst=rec["dst"])
                    out.append(inner)
                continue
            rec.pop("payload")
            out.append(rec)
    return out


def _ip_record(eth: dpkt.ethernet.Ethernet) -> dict | None:
    ip = eth.data
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP | dpkt.udp.UDP):
        return None
    l4 = ip.data
    is_tcp = isinstance(l4, dpkt.tcp.TCP)
    return {"src": socket.inet_ntoa(ip.src), "dst": socket.inet_ntoa(ip.dst), "sport": l4.sport,
            "dport": l4.dport, "proto": "tcp" if is_tcp else "udp", "flags": l4.flags if is_tcp else None,
            "vni": None, "payload": bytes(l4.data)}


def _last_frame(path: Path) -> bytes:
    with path.open("rb") as f:
        frames = [buf for _ts, buf in dpkt.pcap.Reader(f)]
    return frames[-1]


def _key(t: dict) -> tuple:
    return (t["src"], t["sport"], t["dst"], t["dport"], t["proto"])


class _Caps:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, list[dict]] = {}

    def __call__(self, rel: str) -> list[dict]:
        if rel not in self.cache:
            self.cache[rel] = _packets(self.root / rel)
        return self.cache[rel]


def _syn(pkts: list[dict], tup: dict) -> list[dict]:
    return [p for p in pkts if _key(p) == _key(tup) and p["flags"] & dpkt.tcp.TH_SYN
            and not p["flags"] & dpkt.tcp.TH_ACK]


@needs_lab
@pytest.mark.lab
def test_every_connection_succeeds_and_the_server_log_agrees_with_conntrack(lab):
    _m, truth, _i = _load(lab[0])
    conns = truth["connections"]
    assert len(conns) == 16
    for c in conns:
        assert c["ok"], c
        assert c["server_log_agrees"], c
        if c["proto"] == "tcp":
            assert c["received_bytes"] > c["request_bytes"]  # body plus the response header


@needs_lab
@pytest.mark.lab
def test_backend_named_in_truth_receives_the_syn_on_its_veth(lab):
    manifest, truth, _i = _load(lab[0])
    caps = _Caps(lab[0].parent)
    veth = {c["pod"]: c["file"] for c in manifest["captures"] if c["role"] == "pod-veth"}
    tcp = [c for c in truth["connections"] if c["proto"] == "tcp" and c["backend"]["kind"] == "pod"]
    assert tcp
    for c in tcp:
        assert len(_syn(caps(veth[c["backend"]["pod"]]), c["server_tuple"])) >= 1, c["id"]
        others = [p for p in veth if p not in (c["backend"]["pod"], c["client"].get("pod"))]
        for pod in others:
            assert not _syn(caps(veth[pod]), c["server_tuple"]), (c["id"], pod)


@needs_lab
@pytest.mark.lab
def test_every_capture_point_in_truth_sees_the_connection_in_both_directions(lab):
    _m, truth, _i = _load(lab[0])
    caps = _Caps(lab[0].parent)
    for c in truth["connections"]:
        for direction in ("forward", "reverse"):
            for hop in c["path"][direction]:
                seen = [p for p in caps(hop["file"]) if _key(p) == _key(hop["tuple"])]
                assert seen, (c["id"], direction, hop["file"], hop["tuple"])
                enc = hop["encap"]
                if enc:
                    assert all(p["vni"] == enc["vni"] and (p["outer_src"], p["outer_dst"])
                               == (enc["outer_src"], enc["outer_dst"]) for p in seen), (c["id"], hop)
                else:
                    assert all(p["vni"] is None for p in seen), (c["id"], hop)


@needs_lab
@pytest.mark.lab
def test_calico_uplink_carries_vxlan_vni_4096_between_the_two_node_ips(calico_lab):
    manifest, truth, _i = _load(calico_lab[0])
    caps = _Caps(calico_lab[0].parent)
    node_ips = {name: n["ip"] for name, n in manifest["nodes"].items()}
    cross = [c for c in truth["connections"] if c["kind"] == "pod-direct-cross-node"]
    assert cross
    for c in cross:
        src_node, dst_node = c["client"]["node"], c["backend"]["node"]
        assert src_node != dst_node
        pkts = [p for p in caps(f"{src_node}/eth0.pcap") if _key(p) == _key(c["client_tuple"])]
        assert pkts and all(p["vni"] == 4096 for p in pkts)
        assert {(p["outer_src"], p["outer_dst"]) for p in pkts} == {(node_ips[src_node], node_ips[dst_node])}
        # the overlay device shows the same packets without the outer header
        assert [p for p in caps(f"{src_node}/vxlan.calico.pcap") if _key(p) == _key(c["client_tuple"])
                and p["vni"] is None]


@needs_lab
@pytest.mark.lab
def test_vpc_uplink_shows_pod_ips_natively_and_no_vxlan(vpc_lab):
    manifest, truth, inventory = _load(vpc_lab[0])
    caps = _Caps(vpc_lab[0].parent)
    uplinks = [c["file"] for c in manifest["captures"] if c["role"] == "node-uplink"]
    for f in uplinks:
        assert all(p["vni"] is None and not (p["proto"] == "udp" and 4789 in (p["sport"], p["dport"]))
                   for p in caps(f)), f
    pod_ips = {i["status"]["podIP"] for i in inventory["items"] if i["kind"] == "Pod"}
    cross = [c for c in truth["connections"] if c["kind"] == "pod-direct-cross-node"]
    assert cross
    for c in cross:
        t = c["client_tuple"]
        assert t["src"] in pod_ips and t["dst"] in pod_ips
        for node in (c["client"]["node"], c["backend"]["node"]):
            assert [p for p in caps(f"{node}/eth0.pcap") if _key(p) == _key(t)], (c["id"], node)


def _node_addresses(manifest: dict, node: str) -> set[str]:
    n = manifest["nodes"][node]
    return {a for a in (n["ip"], n.get("tunnel_ip")) if a}


@needs_lab
@pytest.mark.lab
def test_nodeport_cluster_path_shows_snat_to_the_forwarding_node_on_the_backend_veth(lab):
    manifest, truth, _i = _load(lab[0])
    caps = _Caps(lab[0].parent)
    veth = {c["pod"]: c["file"] for c in manifest["captures"] if c["role"] == "pod-veth"}
    conns = [c for c in truth["connections"] if c["kind"] in ("nodeport", "loadbalancer-cluster")]
    assert conns
    for c in conns:
        snat = [n for n in c["nat"] if n["kind"] == "SNAT"]
        assert len(snat) == 1, c["nat"]
        syn = _syn(caps(veth[c["backend"]["pod"]]), c["server_tuple"])
        assert syn and syn[0]["src"] == snat[0]["after"]["src"] != c["client_tuple"]["src"]
        assert syn[0]["src"] in _node_addresses(manifest, snat[0]["node"])


@needs_lab
@pytest.mark.lab
def test_loadbalancer_local_path_preserves_the_client_ip(lab):
    manifest, truth, inventory = _load(lab[0])
    caps = _Caps(lab[0].parent)
    veth = {c["pod"]: c["file"] for c in manifest["captures"] if c["role"] == "pod-veth"}
    conns = [c for c in truth["connections"] if c["kind"] == "loadbalancer-local"]
    assert conns
    for c in conns:
        assert not [n for n in c["nat"] if n["kind"] == "SNAT"]
        dnat = [n for n in c["nat"] if n["kind"] == "DNAT"]
        assert [n["node"] for n in dnat] == ["nlb", c["backend"]["node"]]  # the node DNATs to its own pod
        syn = _syn(caps(veth[c["backend"]["pod"]]), c["server_tuple"])
        assert syn and syn[0]["src"] == c["client_tuple"]["src"] == manifest["hosts"]["client"]["ip"]


@needs_lab
@pytest.mark.lab
def test_egress_reaches_the_internet_host_from_the_node_ip(lab):
    manifest, truth, _i = _load(lab[0])
    caps = _Caps(lab[0].parent)
    conns = [c for c in truth["connections"] if c["kind"] == "egress"]
    assert conns
    for c in conns:
        syn = [p for p in caps("internet/eth0.pcap") if p["dport"] == c["client_tuple"]["dport"]
               and p["dst"] == c["client_tuple"]["dst"] and p["flags"] == dpkt.tcp.TH_SYN
               and p["sport"] == c["server_tuple"]["sport"]]
        assert syn and syn[0]["src"] == manifest["nodes"][c["client"]["node"]]["ip"] != c["client"]["ip"]


@needs_lab
@pytest.mark.lab
def test_inventory_is_kubectl_shaped_and_matches_the_captures(lab):
    manifest, truth, inv = _load(lab[0])
    assert inv["apiVersion"] == "v1" and inv["kind"] == "List"
    by_kind: dict[str, list[dict]] = {}
    for item in inv["items"]:
        by_kind.setdefault(item["kind"], []).append(item)
    nodes = {n["metadata"]["name"]: n for n in by_kind["Node"]}
    assert set(nodes) == set(manifest["nodes"])
    for name, n in nodes.items():
        assert n["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert {"type": "InternalIP", "address": manifest["nodes"][name]["ip"]} in n["status"]["addresses"]
        if manifest["cni"] == "vpc":
            assert n["spec"]["providerID"].startswith("aws:///")
        else:
            assert n["spec"]["podCIDR"] == manifest["nodes"][name]["pod_cidr"]
    pods = {f'{p["metadata"]["namespace"]}/{p["metadata"]["name"]}': p for p in by_kind["Pod"]}
    veth_pods = {c["pod"] for c in manifest["captures"] if c["role"] == "pod-veth"}
    assert veth_pods == set(pods)
    for c in truth["connections"]:
        if c["backend"]["kind"] == "pod":
            p = pods[c["backend"]["pod"]]
            assert p["status"]["podIP"] == c["server_tuple"]["dst"]
            assert p["spec"]["nodeName"] == c["backend"]["node"]
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    assert {s["spec"]["type"] for s in services.values()} >= {"ClusterIP", "NodePort", "LoadBalancer"}
    policies = {s["spec"].get("externalTrafficPolicy") for s in services.values() if s["spec"]["type"] == "LoadBalancer"}
    assert policies == {"Cluster", "Local"}
    for s in services.values():
        if s["spec"]["type"] == "LoadBalancer":
            assert s["status"]["loadBalancer"]["ingress"][0]["ip"] in manifest["hosts"]["nlb"]["lb_ips"]
    for sl in by_kind["EndpointSlice"]:
        svc = services[sl["metadata"]["labels"]["kubernetes.io/service-name"]]
        selected = {k for k, p in pods.items()
                    if all(p["metadata"]["labels"].get(a) == b for a, b in svc["spec"]["selector"].items())}
        assert {f'{e["targetRef"]["namespace"]}/{e["targetRef"]["name"]}' for e in sl["endpoints"]} == selected
        assert {e["addresses"][0] for e in sl["endpoints"]} == {pods[k]["status"]["podIP"] for k in selected}
    web_nodes = {pods[k]["spec"]["nodeName"] for k in pods if pods[k]["metadata"]["labels"].get("app") == "web"}
    assert len(web_nodes) == 2  # two backends on different nodes


@needs_lab
@pytest.mark.lab
def test_manifest_lists_complete_readable_captures_with_known_roles(lab):
    manifest, _t, _i = _load(lab[0])
    assert manifest["cni"] in ("vpc", "calico-vxlan")
    for c in manifest["captures"]:
        assert c["role"] in ROLES
        assert (lab[0].parent / c["file"]).is_file()
        # a quiesced stop: tcpdump is stopped only once its end marker is in the file, so every
        # packet the kernel counted for it was written; `complete` is exactly tcpdump's own counts
        t = c["tcpdump"]
        assert c["complete"] == (t.get("dropped", 0) == 0 and t["captured"] == t["received"]), c
        assert t.get("dropped", 0) == 0 and t["captured"] == t["received"], c
        assert c["complete"], c
        if c["role"] != "any":  # the last frame is the end marker sent out of this very interface
            last = _last_frame(lab[0].parent / c["file"])
            assert last[:6] == bytes.fromhex("0180c200000e") and last[12:14] == b"\x88\xb5", c
            assert last[14:].rstrip(b"\0").decode().endswith(f" {c['interface']}"), c
        if c["role"] == "pod-veth":
            assert c["pod"].startswith("default/")
            assert len(c["interface"]) <= 15
            assert c["interface"].startswith("eni" if manifest["cni"] == "vpc" else "cali")
    roles = {c["role"] for c in manifest["captures"]}
    assert roles >= {"pod-veth", "node-uplink", "lb", "client", "external"}
    assert ("overlay" in roles) == (manifest["cni"] == "calico-vxlan")


@needs_lab
@pytest.mark.lab
def test_any_capture_is_sll2_with_nanosecond_stamps_and_ifindexes_from_the_manifest(calico_lab):
    manifest, truth, _i = _load(calico_lab[0])
    anys = [c for c in manifest["captures"] if c["role"] == "any"]
    assert len(anys) == len(manifest["nodes"])
    for c in anys:
        path = calico_lab[0].parent / c["file"]
        magic = path.read_bytes()[:4]
        assert magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")  # nanosecond pcap
        index = {i["ifindex"]: i for i in c["interfaces"]}
        pkts = _packets(path)
        assert pkts and {p["ifindex"] for p in pkts} <= set(index)
        vx = [p for p in pkts if p["vni"] is not None]
        assert vx and {index[p["ifindex"]]["role"] for p in vx} == {"node-uplink"}


@needs_lab
@pytest.mark.lab
def test_lab_namespaces_are_gone_after_the_run(lab):
    _manifest, prefix = lab
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert prefix not in out


@needs_lab
@pytest.mark.lab
def test_clean_leaves_namespaces_that_no_lab_run_registered():
    from pcaptools.lab import clean

    prefix = f"ptl{secrets.token_hex(2)}-"
    names = [prefix + "node-1", prefix + "vpc"]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = clean(prefix)
        assert done.removed == [] and done.runs == [] and done.unlisted == sorted(names)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(name in listed for name in names)
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_not_root_is_a_lab_error_not_a_traceback(monkeypatch, tmp_path):
    from pcaptools.lab import run_lab

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="root"):
        run_lab(tmp_path, prefix=f"ptl{secrets.token_hex(2)}-")


def test_unknown_cni_is_rejected_by_the_cli_in_one_line(tmp_path, capsys):
    from pcaptools.cli import main

    assert main(["lab", "run", "--cni", "flannel-ish", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcaptools: unknown CNI mode") and "calico-vxlan" in err[0]


def test_lab_help_shows_an_example():
    from typer.testing import CliRunner

    from pcaptools.cli import app

    res = CliRunner().invoke(app, ["lab", "run", "--help"])
    assert res.exit_code == 0 and "pcaptools lab run --cni" in res.output


@needs_lab
@pytest.mark.lab
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_during_a_run_removes_its_namespaces(tmp_path, signame):
    import signal
    import sys
    import time

    sig = getattr(signal, signame)
    prefix = f"ptl{secrets.token_hex(2)}-"
    proc = subprocess.Popen([sys.executable, "-m", "pcaptools.cli", "lab", "run", "--cni", "calico-vxlan",
                             "--out", str(tmp_path), "--prefix", prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))  # a run under nohup ignores SIGHUP
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:  # wait until the nodes exist
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        if any(n.startswith(prefix) and n.endswith("-node-2") for n in listed):
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcaptools: lab run interrupted: signal {int(sig)}; its "
                                                   f"namespaces {prefix}") and lines[0].endswith("* were removed")
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not (tmp_path / "manifest.json").exists()
