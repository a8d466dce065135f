"""Capture sets from plain files (no manifest): the inferred points give the same paths as the lab's manifest."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import pcaptools
from pcaptools.cli import main
from pcaptools.errors import CorrelationError
from pcaptools.io import read_records
from pcaptools.k8s import cni
from pcaptools.k8s.discover import capture_stem, load_captures, parse_description, read_links
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.paths import paths
from pcaptools.lab import topology

ROOT = Path(__file__).parent.parent / "sample_pcaps"
SAMPLES = sorted(p.parent.name for p in ROOT.glob("*/manifest.json"))
KEY = ["proto", "client_addr", "client_port", "server_addr", "server_port"]
SAME = ["kind", "client", "backend", "service", "nat", "nat_reply", "forward_points", "reverse_points", "encap"]


def agreement(ref: pd.DataFrame, got: pd.DataFrame) -> tuple[float, list]:
    """Share of connections (union of both tables' client tuples) whose connection, NAT steps and hop order agree."""
    a = ref.astype({c: str for c in KEY + SAME}).set_index(KEY)[SAME]
    b = got.astype({c: str for c in KEY + SAME}).set_index(KEY)[SAME]
    keys = a.index.union(b.index)
    bad = [k for k in keys if k not in a.index or k not in b.index or a.loc[[k]].values.tolist() != b.loc[[k]].values.tolist()]
    return 1 - len(bad) / len(keys), bad


def _manifest(sample: str) -> dict:
    return json.loads((ROOT / sample / "manifest.json").read_text())


_REF: dict[str, pd.DataFrame] = {}


def _reference(sample: str) -> pd.DataFrame:
    if sample not in _REF:
        _REF[sample] = paths(pcaptools.correlate(pcaptools.CaptureSet.load(ROOT / sample)), ROOT / sample / "inventory.json")
    return _REF[sample]


def _paths_json(capsys, *args: str) -> pd.DataFrame:
    assert main(["paths", *args, "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)["paths"]
    for r in rows:  # a NAT step's instant is on the reference node's clock, which may differ between runs
        for step in r["nat"] + r["nat_reply"]:
            step.pop("ts_corrected_ns")
    return pd.DataFrame(rows), out.err


def _ref_json(capsys, sample: str) -> pd.DataFrame:
    ref, _ = _paths_json(capsys, str(ROOT / sample))
    return ref


def _copy_without_manifest(sample: str, dst: Path) -> Path:
    shutil.copytree(ROOT / sample, dst, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    return dst


@pytest.mark.parametrize("sample", SAMPLES)
def test_directory_without_manifest_gives_the_manifests_paths(sample, tmp_path, capsys):
    d = _copy_without_manifest(sample, tmp_path / sample)
    ref = _ref_json(capsys, sample)
    got, err = _paths_json(capsys, str(d))
    score, bad = agreement(ref, got)
    print(f"{sample}: manifest-free directory agrees on {score:.0%} of {len(ref)} connections")
    assert score == 1.0, bad
    assert len(got) == len(ref) >= 8
    assert "inferred" in err and "capture points" in err


@pytest.mark.parametrize("sample", SAMPLES)
def test_inferred_points_have_the_manifests_roles_and_pods(sample, tmp_path):
    d = _copy_without_manifest(sample, tmp_path / sample)
    cs = load_captures([d], inventory=d / "inventory.json")
    truth = {(c["node"], c["interface"]): (c["role"], c.get("pod", "")) for c in _manifest(sample)["captures"]}
    got = {(p.node, p.interface): (p.role, p.pod) for p in cs.points}
    assert got == truth
    ev = cs.inference.set_index("point")
    veths = [p.name for p in cs.points if p.role == "pod-veth"]
    assert veths and all(ev.loc[v, "pod_from"].startswith("convention: veth name") for v in veths)
    assert all(ev["node_from"].str.startswith("name: directory"))


@pytest.mark.parametrize("sample", SAMPLES)
def test_flat_directory_of_node_iface_files_gives_the_manifests_paths(sample, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, c in enumerate(_manifest(sample)["captures"]):
        data = (ROOT / sample / c["file"]).read_bytes()
        if i % 2:  # every other file gzip-compressed, as copied off a node
            (flat / f"{c['node']}_{c['interface']}.pcap.gz").write_bytes(gzip.compress(data))
        else:
            (flat / f"{c['node']}_{c['interface']}.pcap").write_bytes(data)
    shutil.copy(ROOT / sample / "inventory.json", flat / "inventory.json")
    got, _ = _paths_json(capsys, str(flat))
    score, bad = agreement(_ref_json(capsys, sample), got)
    print(f"{sample}: flat NODE_IFACE.pcap directory agrees on {score:.0%}")
    assert score == 1.0, bad


def test_node_dash_iface_names_split_at_an_inventory_node(tmp_path):
    s = "calico-vxlan"
    for c in _manifest(s)["captures"]:
        shutil.copy(ROOT / s / c["file"], tmp_path / f"{c['node']}-{c['interface']}.pcap")
    cs = load_captures([tmp_path], inventory=ROOT / s / "inventory.json")
    names = {p.name for p in cs.points}
    assert {"node-1:eth0", "node-2:vxlan.calico", "nlb:eth0", "node-3:calib731b83791f"} <= names
    assert len(names) == len(_manifest(s)["captures"])


def test_dumpcap_pcapng_with_kubernetes_descriptions_names_points_from_them(tmp_path, capsys):
    if not (shutil.which("dumpcap") and shutil.which("mergecap")):
        pytest.skip("needs dumpcap and mergecap (wireshark-common)")
    s = "calico-vxlan"
    parts = []
    for i, c in enumerate(_manifest(s)["captures"]):
        desc = f"k8s.node={c['node']}"
        if c.get("pod"):
            ns, _, pod = c["pod"].partition("/")
            desc += f";k8s.podName={pod};k8s.namespace={ns}"
        out = tmp_path / f"part{i}.pcapng"
        with open(ROOT / s / c["file"], "rb") as f:
            subprocess.run(["dumpcap", "-q", "-i", "-", "--ifname", c["interface"], "--ifdescr", desc, "-w", str(out)],
                           stdin=f, check=True, capture_output=True)  # fmt: skip
        parts.append(str(out))
    merged = tmp_path / "capture.pcapng"  # a name that says nothing
    subprocess.run(["mergecap", "-w", str(merged), *parts], check=True, capture_output=True)
    inv = str(ROOT / s / "inventory.json")
    cs = load_captures([merged], inventory=inv)
    assert len(cs.points) == len(parts)
    ev = cs.inference
    assert all(ev["node_from"].str.startswith("pcapng: interface")) and all(ev["interface_from"].str.contains("if_name"))
    pods = ev[ev["pod"] != ""]
    assert len(pods) == 5 and all(pods["pod_from"].str.contains("if_description"))
    truth = {(c["node"], c["interface"]): (c["role"], c.get("pod", "")) for c in _manifest(s)["captures"]}
    assert {(p.node, p.interface): (p.role, p.pod) for p in cs.points} == truth
    got, _ = _paths_json(capsys, str(merged), "--inventory", inv)
    score, bad = agreement(_ref_json(capsys, s), got)
    print(f"dumpcap+mergecap pcapng with k8s descriptions agrees on {score:.0%}")
    assert score == 1.0, bad


def test_our_merged_pcapng_is_split_per_interface(tmp_path, capsys):
    s = "vpc"
    merged = tmp_path / "merged.pcapng"
    assert main(["merge", str(ROOT / s), "-o", str(merged)]) == 0
    capsys.readouterr()
    cs = load_captures([merged], inventory=ROOT / s / "inventory.json")
    assert sorted(p.name for p in cs.points) == sorted(f"{c['node']}:{c['interface']}" for c in _manifest(s)["captures"])
    assert all(p.pcapng_interface >= 0 for p in cs.points)
    counts = cs.packets["point"].value_counts()
    for c in _manifest(s)["captures"]:
        assert counts[f"{c['node']}:{c['interface']}"] == c["tcpdump"]["captured"]


def test_pcapng_of_two_sections_named_node_iface_gets_one_point_per_interface(tmp_path, capsys):
    two = Path(__file__).parent / "data" / "own" / "two_sections.pcapng"  # eth.pcapng + any_nano.pcapng, concatenated
    batch = read_records(two)
    cs = load_captures(two)
    # the file name's "sections" cannot name both interfaces: section 0 is pcapng interface 0, section 1 an -i any capture
    assert [(p.name, p.pcapng_interface, p.ifindex) for p in cs.points] == [("two:if0", 0, -1), ("two:if2", 1, 2)]
    counts = cs.packets["point"].value_counts()
    assert counts["two:if0"] == int((batch.iface == 0).sum()) > 0
    assert counts["two:if2"] == int((batch.iface == 1).sum()) > 0
    assert any("holds 2 pcapng interfaces" in w for w in cs.inference.attrs["warnings"])
    out = tmp_path / "m.json"
    assert main(["manifest", str(two), "-o", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads(out.read_text())
    assert [(c["interface"], c["pcapng_interface"]) for c in doc["captures"]] == [("if0", 0), ("any", 1)]
    got, _ = _paths_json(capsys, str(two))
    assert len(got) > 0 and {tuple(fp) for fp in got["forward_points"]} == {("two:if0", "two:if2")}


def test_concatenated_captures_of_one_named_interface_keep_their_pcapng_numbers(tmp_path, capsys):
    one = (Path(__file__).parent / "data" / "own" / "dumpcap.pcapng").read_bytes()  # one section, if_name ptio-va
    twice = tmp_path / "twice.pcapng"
    twice.write_bytes(one + one)
    cs = load_captures(twice)
    assert [(p.name, p.pcapng_interface) for p in cs.points] == [("twice:ptio-va#0", 0), ("twice:ptio-va#1", 1)]
    assert cs.packets["point"].value_counts().tolist() == [len(read_records(twice).iface) // 2] * 2
    warnings = cs.inference.attrs["warnings"]
    assert any("share a name" in w for w in warnings) and len(warnings) == len(set(warnings))
    out = tmp_path / "m.json"
    assert main(["manifest", str(twice), "-o", str(out)]) == 0
    capsys.readouterr()
    assert [p.name for p in load_captures(out).points] == ["twice:ptio-va#0", "twice:ptio-va#1"]


def test_capture_without_evidence_is_named_after_its_file_and_still_analysed(tmp_path, capsys):
    shutil.copy(ROOT / "vpc" / "client" / "eth0.pcap", tmp_path / "capture.pcap")
    shutil.copy(ROOT / "vpc" / "nlb" / "eth0.pcap", tmp_path / "trace.pcap")
    shutil.copy(Path(__file__).parent / "data" / "own" / "any_nano.pcap", tmp_path / "anycap.pcap")
    got, err = _paths_json(capsys, str(tmp_path))
    assert "warning: " in err and "no node evidence" in err and "--point NODE:IFACE=" in err
    assert "without an `ip -j link` dump" in err
    cs = load_captures([tmp_path])
    assert {p.name for p in cs.points} == {"capture", "trace", "anycap:if2"}
    assert dict(cs.inference.set_index("point")["node_from"])["capture"] == "none: file stem"
    assert set(got["forward_points"].explode().dropna()) == {"capture", "trace", "anycap:if2"}
    assert sum(list(fp) == ["capture", "trace"] for fp in got["forward_points"]) >= 3  # client, then the LB's node side


def test_links_json_names_the_interfaces_of_an_any_capture(tmp_path):
    shutil.copy(Path(__file__).parent / "data" / "own" / "any_nano.pcap", tmp_path / "host-a.pcap")
    (tmp_path / "host-a.links.json").write_text(json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]))
    cs = load_captures([tmp_path])
    assert [(p.name, p.role) for p in cs.points] == [("host-a:eth0", "node-uplink")]
    assert cs.inference["interface_from"].iloc[0] == "links: host-a.links.json ifindex 2"
    (tmp_path / "host-a.links.json").write_text('{"not": "ip -j link"}')
    with pytest.raises(Exception, match="expected the output of `ip -j link`"):
        load_captures([tmp_path])


def test_name_contradicted_by_packets_is_an_error_until_point_overrides(tmp_path, capsys):
    (tmp_path / "node-2").mkdir()
    shutil.copy(ROOT / "calico-vxlan" / "node-1" / "eth0.pcap", tmp_path / "node-2" / "eth0.pcap")
    inv = str(ROOT / "calico-vxlan" / "inventory.json")
    with pytest.raises(CorrelationError, match=r"node-2/eth0.pcap: named node node-2 .* node node-1 .*--point node-2:eth0="):
        load_captures([tmp_path], inventory=inv)
    assert main(["correlate", str(tmp_path), "--inventory", inv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcaptools: ") and err.count("\n") == 1 and "Traceback" not in err
    cs = load_captures([], points=[f"node-2:eth0={tmp_path / 'node-2' / 'eth0.pcap'}"], inventory=inv)
    assert [p.name for p in cs.points] == ["node-2:eth0"]


def test_veth_of_a_pod_on_another_node_is_an_error(tmp_path):
    (tmp_path / "node-2").mkdir()
    veth = topology.veth_name("calico-vxlan", "default", "backend-0")  # backend-0 runs on node-1
    shutil.copy(ROOT / "calico-vxlan" / "node-1" / f"{veth}.pcap", tmp_path / "node-2" / f"{veth}.pcap")
    with pytest.raises(CorrelationError, match=r"pod default/backend-0 .* runs on node-1 .*--point"):
        load_captures([tmp_path], inventory=ROOT / "calico-vxlan" / "inventory.json")


def test_veth_hash_rule_matches_the_lab_and_the_inventory():
    inv = Inventory.load(ROOT / "vpc" / "inventory.json")
    owners = cni.veth_owners(list(inv.pods))
    for key in inv.pods:
        ns, _, name = key.partition("/")
        assert owners[topology.veth_name("vpc", ns, name)] == key
        assert owners[topology.veth_name("calico-vxlan", ns, name)] == key
    assert cni.veth_name("cali", "default", "web-0") == "cali" + __import__("hashlib").sha1(b"default.web-0").hexdigest()[:11]


@pytest.mark.parametrize(("name", "role"), [
    ("eth0", "node-uplink"), ("ens5", "node-uplink"), ("enp0s3", "node-uplink"), ("bond0", "node-uplink"),
    ("vxlan.calico", "overlay"), ("flannel.1", "overlay"), ("cilium_vxlan", "overlay"), ("genev_sys_6081", "overlay"),
    ("tunl0", "overlay"), ("wireguard.cali", "overlay"), ("cilium_wg0", "overlay"),
    ("cali1234567890a", "pod-veth"), ("eni1234567890a", "pod-veth"), ("lxc4f3e2d1c", "pod-veth"), ("veth9a8b7c6d", "pod-veth"),
    ("azv1a2b3c4d5e6", "pod-veth"), ("gke1a2b3c4d5e6", "pod-veth"),
    ("kube-ipvs0", "service-vip"), ("nodelocaldns", "service-vip"), ("cni0", "bridge"), ("docker0", "bridge"), ("cbr0", "bridge"),
])  # fmt: skip
def test_interface_names_get_their_plugins_role(name, role):
    assert cni.role_of(name)[0] == role


def test_description_key_value_forms_are_parsed():
    assert parse_description("k8s.node=node-1;k8s.podName=web-0;k8s.namespace=default") == {
        "node": "node-1", "pod": "default/web-0", "namespace": "default"}  # fmt: skip
    assert parse_description("node=n1, pod=kube-system/coredns-1 interface=eth0") == {
        "node": "n1", "pod": "kube-system/coredns-1", "interface": "eth0"}  # fmt: skip
    assert parse_description("Intel 82599 10G") == {}
    assert capture_stem("a/node-1_vxlan.calico.pcap.gz") == "node-1_vxlan.calico"


def test_manifest_command_writes_a_manifest_the_other_commands_read(tmp_path, capsys):
    d = _copy_without_manifest("vpc", tmp_path / "vpc")
    out = d / "reviewed.json"
    assert main(["manifest", str(d), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "evidence" in text and "convention: veth name" in text.replace("\n", " ").replace("│", "")
    doc = json.loads(out.read_text())
    assert doc["inventory"] == "inventory.json"
    assert {c["file"] for c in doc["captures"]} == {c["file"] for c in _manifest("vpc")["captures"]}
    backend = next(c for c in doc["captures"] if c.get("pod") == "default/backend-0")
    assert backend["evidence"]["pod"].startswith("convention: veth name eni")
    got, _ = _paths_json(capsys, str(out))
    score, bad = agreement(_ref_json(capsys, "vpc"), got)
    assert score == 1.0, bad


def test_read_links_rejects_other_json(tmp_path):
    p = tmp_path / "x.links.json"
    p.write_text("[1, 2]")
    with pytest.raises(Exception, match="ifindex and ifname"):
        read_links(p)


FAKE_KUBECTL = r"""#!/usr/bin/env bash
# stands in for kubectl: records each call, answers from the files the test prepared
echo "$*" >> "$FAKE_DIR/calls"
args=" $* "
case "$args" in
  *" get nodes -o jsonpath"*) printf 'node-a\nnode-b\n' ;;
  *" get nodes,pods,services,endpointslices "*) echo '{"kind": "List", "items": []}' ;;
  *" ip -j link"*) echo '[{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]' ;;
  *" tcpdump -i any "*) cat "$FAKE_PCAP" ;;
  *) ;;
esac
"""


def test_capture_script_writes_the_layout_the_inference_reads(tmp_path):
    script = Path(pcaptools.__file__).parent / "scripts" / "capture-cluster.sh"
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "FAKE_DIR": str(tmp_path),
           "FAKE_PCAP": str(Path(__file__).parent / "data" / "own" / "any_nano.pcap")}  # fmt: skip
    out = tmp_path / "captures"
    res = subprocess.run(["bash", str(script), "-o", str(out), "-d", "1"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    calls = (tmp_path / "calls").read_text()
    assert "nodeName" in calls and "hostNetwork" in calls and calls.count("delete pod") == 2
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "inventory.json", "node-a/any.pcap", "node-a/node-a.links.json", "node-b/any.pcap", "node-b/node-b.links.json"]  # fmt: skip
    cs = load_captures([out], inventory=out / "inventory.json")
    ev = cs.inference.set_index("point")
    assert list(ev.index) == ["node-a:eth0", "node-b:eth0"]
    assert ev.loc["node-a:eth0", "node_from"] == "name: directory 'node-a'"
    assert ev.loc["node-b:eth0", "interface_from"] == "links: node-b.links.json ifindex 2"
    assert ev.loc["node-a:eth0", "role"] == "node-uplink"
    # the fake gave both nodes the same capture: one clock under two names is warned about
    assert any("node-a and node-b hold 34 packets with identical timestamps" in w for w in cs.inference.attrs["warnings"])


def test_capture_with_only_packet_evidence_is_placed_on_its_node(tmp_path):
    s = "calico-vxlan"
    shutil.copy(ROOT / s / "node-1" / "eth0.pcap", tmp_path / "trace1.pcap")
    shutil.copy(ROOT / s / "node-3" / "eth0.pcap", tmp_path / "trace2.pcap")
    cs = load_captures([tmp_path], inventory=ROOT / s / "inventory.json")
    ev = cs.inference.set_index("file")["node_from"]
    assert [p.node for p in cs.points] == ["node-1", "node-3"]
    assert ev[str(tmp_path / "trace1.pcap")].startswith("packets: node node-1 (192.168.0.11)")
    assert all(p.role == "any" for p in cs.points)  # no interface name: unlabelled, with a warning
    assert sum("matches no plugin naming convention" in w for w in cs.inference.attrs["warnings"]) == 2


def test_links_option_names_a_node_s_any_capture(tmp_path):
    shutil.copy(Path(__file__).parent / "data" / "own" / "any_nano.pcap", tmp_path / "host-a.pcap")
    links = tmp_path / "elsewhere.json"
    links.write_text(json.dumps([{"ifindex": 2, "ifname": "ens5"}]))
    cs = load_captures([tmp_path / "host-a.pcap"], links=[f"host-a={links}"])
    assert [p.name for p in cs.points] == ["host-a:ens5"]
    assert cs.inference["interface_from"].iloc[0] == f"links: --links {links} ifindex 2"


def test_compare_reads_manifest_free_directories_like_the_manifests(tmp_path):
    a = _copy_without_manifest("vpc", tmp_path / "vpc")
    b = _copy_without_manifest("calico-vxlan", tmp_path / "calico-vxlan")
    ref = pcaptools.compare([ROOT / "vpc", ROOT / "calico-vxlan"]).summary
    got = pcaptools.compare([a, b]).summary
    pd.testing.assert_frame_equal(ref, got)
    assert got.loc[got["metric"] == "data-plane mode", ["vpc", "calico-vxlan"]].values.tolist() == [["native", "vxlan"]]


def test_manifest_mixed_with_plain_files_gives_the_manifests_paths(tmp_path, capsys):
    s = "vpc"
    man = _manifest(s)
    nodes = set(man["nodes"])
    part = tmp_path / "nodes.json"  # the node captures through a manifest, the outside hosts as plain files
    part.write_text(json.dumps({**man, "captures": [{**c, "file": str(ROOT / s / c["file"])} for c in man["captures"] if c["node"] in nodes]}))
    plain = [str(ROOT / s / c["file"]) for c in man["captures"] if c["node"] not in nodes]
    assert main(["paths", str(part), *plain, "--json"]) == 2  # its files lie outside the manifest's directory
    assert "--allow-outside" in capsys.readouterr().err
    got, err = _paths_json(capsys, str(part), *plain, "--inventory", str(ROOT / s / "inventory.json"), "--allow-outside")
    score, bad = agreement(_ref_json(capsys, s), got)
    assert score == 1.0, bad
    assert "inferred 3 capture points" in err


def test_directory_named_by_internal_ip_or_hostname_names_the_node(tmp_path):
    s = "calico-vxlan"
    for d in ("192.168.0.11", "node-3.ec2.internal"):
        (tmp_path / d).mkdir()
    shutil.copy(ROOT / s / "node-1" / "eth0.pcap", tmp_path / "192.168.0.11" / "eth0.pcap")
    shutil.copy(ROOT / s / "node-3" / "eth0.pcap", tmp_path / "node-3.ec2.internal" / "eth0.pcap")
    cs = load_captures([tmp_path], inventory=ROOT / s / "inventory.json")
    ev = cs.inference.set_index("point")["node_from"]
    assert list(ev.index) == ["node-1:eth0", "node-3:eth0"]
    assert ev["node-1:eth0"] == "name: directory '192.168.0.11' = inventory address"
    assert ev["node-3:eth0"] == "name: directory 'node-3.ec2.internal' = inventory node name"


def test_veth_without_a_hashed_name_gets_the_pod_whose_ip_is_in_its_packets(tmp_path):
    s = "vpc"
    (tmp_path / "node-1").mkdir()
    veth = topology.veth_name("vpc", "default", "backend-0")
    shutil.copy(ROOT / s / "node-1" / f"{veth}.pcap", tmp_path / "node-1" / "veth3f2a1b0c.pcap")
    cs = load_captures([tmp_path], inventory=ROOT / s / "inventory.json")
    [pt] = cs.points
    assert (pt.name, pt.role, pt.pod) == ("node-1:veth3f2a1b0c", "pod-veth", "default/backend-0")
    assert cs.inference["pod_from"].iloc[0].startswith("packets: pod IP 192.168.1.10 in ")
