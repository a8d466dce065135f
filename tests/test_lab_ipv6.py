"""The lab over IPv6 and dual stack (calico-vxlan over either underlay, vpc), and paths / why on its captures.

Four small runs (8 connections, 16 for dual stack: every kind over each family), each made once per module:
every truth connection found and named from the inventory, its IPv6 ClusterIP DNAT and SNAT steps where the
truth's conntrack put them, VXLAN over an IPv4 and an IPv6 underlay decoded, journeys matched across nodes
without an IPv6 IP id, neighbour discovery captured but never taken for a connection, no healthy connection
blamed by why, and ``paths --json`` on a run without its manifest.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_discover import agreement
from test_k8s_paths_lab import _ours

import pcaptools
from pcaptools.errors import LabError
from pcaptools.k8s import iptables
from pcaptools.k8s.diagnose import diagnose
from pcaptools.k8s.discover import load_captures
from pcaptools.k8s.paths import paths, paths_and_nat
from pcaptools.lab import kubeproxy, topology
from tests.lab_support import REASON, needs_lab

RUNS = {
    "calico-ipv6-over-ipv4": {"cni": "calico-vxlan", "ip_family": "ipv6", "underlay": "ipv4", "any_capture": True},
    "calico-dual-over-ipv6": {"cni": "calico-vxlan", "ip_family": "dual", "underlay": "ipv6"},
    "vpc-ipv6": {"cni": "vpc", "ip_family": "ipv6"},
    "vpc-dual": {"cni": "vpc", "ip_family": "dual"},
}
CALICO = [k for k, v in RUNS.items() if v["cni"] == "calico-vxlan"]
_MADE: dict[str, SimpleNamespace] = {}


def _family(ip: str) -> str:
    return f"ipv{ipaddress.ip_address(ip).version}"


def _make(name: str, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One lab run with its truth, inventory, correlation and paths (made once per module)."""
    if name not in _MADE:
        from pcaptools.lab import run_lab

        out = tmp_path_factory.mktemp(name)
        man = run_lab(out, connections=8, prefix=f"ptl{secrets.token_hex(2)}-", **RUNS[name])
        corr = pcaptools.correlate_captures(pcaptools.CaptureSet.load(man))
        p, nat = paths_and_nat(corr, out / "inventory.json")
        _MADE[name] = SimpleNamespace(
            name=name, dir=out, corr=corr, paths=p, nat=nat, **RUNS[name],
            truth=json.loads((out / "truth.json").read_text()),
            manifest=json.loads(man.read_text()),
            inventory=json.loads((out / "inventory.json").read_text()))  # fmt: skip
    return _MADE[name]


@pytest.fixture(scope="module", params=list(RUNS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    if REASON:
        pytest.skip(REASON)
    return _make(request.param, tmp_path_factory)


@pytest.fixture(scope="module", params=CALICO)
def calico_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    if REASON:
        pytest.skip(REASON)
    return _make(request.param, tmp_path_factory)


def _families(run: SimpleNamespace) -> list[str]:
    return ["ipv4", "ipv6"] if run.ip_family == "dual" else [run.ip_family]


def _ok(run: SimpleNamespace) -> list[dict]:
    conns = [c for c in run.truth["connections"] if c.get("ok")]
    assert len(conns) == len(run.truth["connections"]) > 0
    return conns


# ---------------------------------------------------------------- the lab itself

@needs_lab
@pytest.mark.lab
def test_every_connection_succeeds_over_each_family_and_the_server_log_agrees(run):
    conns = _ok(run)
    by_family = {f: [c for c in conns if c["ip_family"] == f] for f in _families(run)}
    assert {f: len(c) for f, c in by_family.items()} == {f: 8 for f in _families(run)}
    for fam, cs in by_family.items():
        for c in cs:
            t = c["client_tuple"]
            assert _family(t["src"]) == _family(t["dst"]) == fam, f"connection {c['id']} ({c['kind']})"
            assert c["server_log_agrees"], f"connection {c['id']} ({c['kind']}): the server saw another peer"
    kinds = {c["kind"] for c in by_family["ipv6"]}
    assert {"clusterip", "nodeport", "loadbalancer-cluster", "loadbalancer-local", "egress", "pod-direct-cross-node"} <= kinds


@needs_lab
@pytest.mark.lab
def test_ipv6_addresses_come_from_the_runs_unique_local_prefix(run):
    nets = run.manifest["network"]["families"]["ipv6"]
    ula = ipaddress.ip_network(nets["vpc"]).supernet(new_prefix=48)
    assert ula.subnet_of(ipaddress.ip_network("fc00::/7"))
    for c in _ok(run):
        for ip in (c["client_tuple"]["src"], c["client_tuple"]["dst"]):
            if _family(ip) == "ipv6":
                assert ipaddress.ip_address(ip) in ula, f"connection {c['id']}: {ip} outside {ula}"


@needs_lab
@pytest.mark.lab
def test_inventory_lists_every_family_as_kubernetes_does(run):
    fams = _families(run)
    want = [f"IPv{f[-1]}" for f in fams]
    items = run.inventory["items"]
    for pod in (i for i in items if i["kind"] == "Pod"):
        ips = [x["ip"] for x in pod["status"]["podIPs"]]
        assert [_family(ip) for ip in ips] == fams and pod["status"]["podIP"] == ips[0]
    for svc in (i for i in items if i["kind"] == "Service"):
        assert svc["spec"]["ipFamilies"] == want and [_family(ip) for ip in svc["spec"]["clusterIPs"]] == fams
        assert svc["spec"]["ipFamilyPolicy"] == ("RequireDualStack" if len(fams) > 1 else "SingleStack")
    slices = [i for i in items if i["kind"] == "EndpointSlice"]
    services = [i for i in items if i["kind"] == "Service"]
    assert sorted(s["addressType"] for s in slices) == sorted(want * len(services))
    for s in slices:
        assert all(_family(a) == f"ipv{s['addressType'][-1]}" for e in s["endpoints"] for a in e["addresses"])
    for node in (i for i in items if i["kind"] == "Node"):
        internal = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert {_family(a) for a in internal} == {*fams, run.manifest["network"]["underlay"]}


# ---------------------------------------------------------------- paths on the captures

@needs_lab
@pytest.mark.lab
def test_paths_find_every_truth_connection_with_client_and_backend_named_from_the_inventory(run):
    assert len(run.paths) == len(run.truth["connections"])  # neighbour discovery and MLD make no connection
    for c in _ok(run):
        r = _ours(run.paths, c)
        assert r["kind"] == ("pod-direct" if c["kind"].startswith("pod-direct") else c["kind"]), f"connection {c['id']}"
        assert (r["service"] if isinstance(r["service"], str) else None) == c["service"], f"connection {c['id']}"
        cl, be = c["client"], c["backend"]
        if cl["kind"] == "pod":
            assert (r["client"], r["client_node"], r["client_kind"]) == (cl["pod"], cl["node"], "pod")
        else:
            assert (r["client_kind"], r["client"]) == ("external", c["client_tuple"]["src"])
        if be["kind"] == "pod":
            assert (r["backend"], r["backend_node"], r["backend_port"]) == (be["pod"], be["node"], be["port"])
        else:
            assert (r["backend_kind"], r["backend"]) == ("external", be["ip"])


@needs_lab
@pytest.mark.lab
def test_nat_steps_over_ipv6_are_the_truths_with_their_nodes_and_addresses(run):
    seen = set()
    for c in _ok(run):
        r = _ours(run.paths, c)
        steps = run.nat[run.nat["journey"] == r["forward_journey"]].sort_values("step")
        got = [(str(s.op), str(s.node), str(s.addr_before), int(s.port_before), str(s.addr_after), int(s.port_after))
               for s in steps.itertuples()]  # fmt: skip
        want = []
        for n in c["nat"]:
            ep, port = ("dst", "dport") if n["kind"] == "DNAT" else ("src", "sport")
            want.append((n["kind"], n["node"], n["before"][ep], n["before"][port], n["after"][ep], n["after"][port]))
        assert got == want, f"connection {c['id']} ({c['kind']}, {c['ip_family']})"
        if c["ip_family"] == "ipv6":
            seen |= {(str(s.op), str(s.nat_kind)) for s in steps.itertuples()}
    assert {("DNAT", "clusterip"), ("DNAT", "nodeport"), ("DNAT", "loadbalancer"), ("SNAT", "service-masquerade"),
            ("SNAT", "egress-masquerade")} <= seen  # fmt: skip


@needs_lab
@pytest.mark.lab
def test_journeys_cross_every_truth_point_in_order_across_nodes(run):
    cross = 0
    for c in _ok(run):
        r = _ours(run.paths, c)
        for way in ("forward", "reverse"):
            want = [f"{h['node']}:{h['interface']}" for h in c["path"][way]]
            got = [x for x in r[f"{way}_points"].split(" → ") if not x.endswith("@any")]  # --any: each node's too
            assert got == want, f"connection {c['id']} ({c['kind']}, {c['ip_family']}) {way}"
        cross += c["ip_family"] == "ipv6" and len({h["node"] for h in c["path"]["forward"]}) > 1
        assert r["client_ip_preserved"] == ("yes" if c["server_tuple"]["src"] == c["client_tuple"]["src"] else "no")
    assert cross >= 4  # IPv6 has no IP id: the fingerprint alone still finds each packet on every node


@needs_lab
@pytest.mark.lab
def test_vxlan_over_the_underlay_is_decoded_with_the_node_addresses(calico_run):
    run = calico_run
    underlay = run.manifest["network"]["underlay"]
    encapsulated = [c for c in _ok(run) if c["encapsulated"]]
    assert {c["ip_family"] for c in encapsulated} == set(_families(run))
    for c in encapsulated:
        r = _ours(run.paths, c)
        for e in c["encap"]:
            assert _family(e["outer_src"]) == _family(e["outer_dst"]) == underlay
            a, b = e["between"]
            assert f"vxlan vni {e['vni']} {e['outer_src']}→{e['outer_dst']} ({a}→{b})" in r["encap"], f"connection {c['id']}"
    h = run.corr.hops
    tun = h[h["tunnel"].astype(str) == "vxlan"]
    assert len(tun) and {_family(str(a)) for a in tun["outer_src"].unique()} == {underlay}
    assert {_family(str(a)) for a in tun["src"].unique()} == set(_families(run))


@needs_lab
@pytest.mark.lab
def test_neighbour_discovery_is_captured_but_never_matched_or_a_connection(run):
    pk = pcaptools.CaptureSet.load(run.dir / "manifest.json").packets
    nd = pk[(pk["proto"] == 58) & pk["icmp_type"].isin([135, 136])]
    assert len(nd) > 0, "no neighbour solicitation or advertisement captured: the test proves nothing"
    h = run.corr.hops
    assert not ((h["proto"] == 58).any()), "ICMPv6 sightings were matched into journeys"
    assert not (run.paths["proto"] == 58).any()


@needs_lab
@pytest.mark.lab
def test_why_blames_no_healthy_connection(run):
    cs = pcaptools.CaptureSet.load(run.dir / "manifest.json")
    d = diagnose(cs, run.corr, run.dir / "inventory.json")
    c = d.connections
    for t in _ok(run):
        ct = t["client_tuple"]
        m = c[(c["client_addr"] == ct["src"]) & (c["client_port"] == ct["sport"]) & (c["server_addr"] == ct["dst"])]
        assert len(m) == 1, f"connection {t['id']}: {len(m)} diagnosed connections with client tuple {ct}"
        losses = d.connection_record(int(m.iloc[0]["connection"]))["losses"]
        assert m.iloc[0]["status"] == "ok" and not losses, (t["id"], t["kind"], t["ip_family"], losses)


@needs_lab
@pytest.mark.lab
def test_the_saved_rules_of_each_family_explain_every_translation_the_nodes_made(run):
    for fam, name in (("ipv4", "iptables-save.txt"), ("ipv6", "ip6tables-save.txt")):
        if fam not in _families(run):
            continue
        rules = [iptables.load(f"{n}={run.dir / n / name}") for n in run.manifest["nodes"]]
        nat = run.nat[run.nat["addr_before"].astype(str).map(_family) == fam]
        ex = iptables.explain(nat, rules)
        assert len(ex) >= 4 and ex["explained"].all(), ex[~ex["explained"]].to_dict("records")
        assert ex.loc[ex["op"] == "DNAT", "chains"].str.contains("KUBE-SEP-").all()


@needs_lab
@pytest.mark.lab
def test_paths_json_without_the_manifest_names_every_connection_and_its_nat(tmp_path, capsys, tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    from pcaptools.cli import main

    run = _make("calico-ipv6-over-ipv4", tmp_path_factory)
    d = tmp_path / "byo"
    shutil.copytree(run.dir, d, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    assert {p.name for p in d.iterdir() if p.is_dir()} >= {"node-1", "node-2", "node-3"}
    assert (d / "node-1" / "node-1.links.json").is_file()
    assert main(["paths", str(d), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1 and doc["connections"] == len(run.truth["connections"])
    recs = {(r["client_addr"], r["client_port"]): r for r in doc["paths"]}
    for c in _ok(run):
        r = recs[(c["client_tuple"]["src"], c["client_tuple"]["sport"])]
        assert (r["server_addr"], r["server_port"]) == (c["client_tuple"]["dst"], c["client_tuple"]["dport"])
        # a step's before/after are the tuples at its two points: compare the endpoint it translated
        def step(op: str, node: str, before: dict, after: dict) -> tuple:
            keys = ("dst", "dport") if op == "DNAT" else ("src", "sport")
            return op, node, [before[k] for k in keys], [after[k] for k in keys]

        got = [step(s["op"], s["node"], s["before"], s["after"]) for s in r["nat"] if s["op"] in ("DNAT", "SNAT")]
        want = [step(n["kind"], n["node"], n["before"], n["after"]) for n in c["nat"]]
        assert got == want, f"connection {c['id']} ({c['kind']})"
    ref = paths(run.corr, run.dir / "inventory.json")
    got = paths(pcaptools.correlate(load_captures([d], inventory=d / "inventory.json")), d / "inventory.json")
    score, bad = agreement(ref, got)
    assert score == 1.0, bad


# ---------------------------------------------------------------- the plan, without namespaces

def test_ipv6_plans_take_a_unique_local_prefix_per_run_or_the_one_given():
    a, b = (topology.plan("calico-vxlan", ip_family="ipv6", prefix=p) for p in ("ptlab-aaaaaa-", "ptlab-bbbbbb-"))
    ua, ub = (ipaddress.ip_network(t.nets["ipv6"].vpc).supernet(new_prefix=48) for t in (a, b))
    assert ua != ub and ua.subnet_of(ipaddress.ip_network("fd00::/8"))
    given = topology.plan("vpc", ip_family="dual", ula="fd12:3456:789a::/48")
    inside = ipaddress.ip_network("fd12:3456:789a::/48")
    for p in given.pods:
        assert [_family(ip) for ip in p.ips] == ["ipv4", "ipv6"] and ipaddress.ip_address(p.ips[1]) in inside
    with pytest.raises(LabError, match="unique local"):
        topology.plan("vpc", ip_family="ipv6", ula="2001:db8::/48")


def test_ipv6_kube_proxy_rules_use_host_prefixes_and_bracketed_endpoints():
    topo = topology.plan("calico-vxlan", ip_family="dual")
    v4, v6 = (kubeproxy.node_rules(topo, topo.nodes[0], f) for f in ("ipv4", "ipv6"))
    web = topo.service("web")
    assert f"-d {web.cluster_addr('ipv6')}/128 " in v6 and f"-d {web.cluster_addr('ipv4')}/32 " in v4
    backends = topo.endpoints(web)
    assert {f"[{p.addr('ipv6')}]:80" for p in backends} <= set(re.findall(r"--to-destination (\S+)", v6))
    assert not re.search(r"\d+\.\d+\.\d+\.\d+", v6) and "::" not in v4
    nlb = kubeproxy.nlb_rules(topo, "ipv6")
    assert f"[{topo.nodes[0].addr('ipv6')}]:30081" in nlb


def test_bad_ip_family_or_underlay_is_a_usage_error(tmp_path, capsys):
    from pcaptools.cli import main

    for args in (["--ip-family", "ipv5"], ["--underlay", "ipx"]):
        assert main(["lab", "run", "--out", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("Usage:") and len(err) == 2 and "expected one of" in err[1]


def test_faults_over_ipv6_are_refused_in_one_line(tmp_path):
    from pcaptools.lab import run_lab

    with pytest.raises(LabError, match="IPv4 only"):
        run_lab(tmp_path, ip_family="ipv6", faults=["policy-drop"], prefix=f"ptl{secrets.token_hex(2)}-")
    assert not any(Path(tmp_path).iterdir())


def test_an_underlay_is_refused_on_native_routing_where_nothing_is_tunnelled():
    with pytest.raises(LabError, match="only calico-vxlan tunnels"):
        topology.plan("vpc", ip_family="ipv4", underlay="ipv6")
    assert topology.plan("vpc", ip_family="ipv6", underlay="ipv6").underlay == "ipv6"  # the pods' own family: a no-op
