"""--iptables: kube-proxy chains named for each translation of the calico-vxlan sample, from the rules the lab
installed when it made it; a rule removed from the file leaves its translations flagged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import pcaptools
from pcaptools.cli import app, main
from pcaptools.k8s.iptables import explain, parse
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.lab import kubeproxy, topology

ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))
SAMPLE = ROOT / "calico-vxlan"


@pytest.fixture(scope="module")
def sample():
    if not (SAMPLE / "truth.json").exists():
        pytest.skip("no calico-vxlan sample")
    topo = topology.plan("calico-vxlan")
    rules = {n.name: kubeproxy.node_rules(topo, n) for n in topo.nodes}
    corr = pcaptools.correlate(pcaptools.CaptureSet.load(SAMPLE))
    _, nat = paths_and_nat(corr, SAMPLE / "inventory.json")
    return topo, rules, nat, json.loads((SAMPLE / "truth.json").read_text())


def test_every_translation_on_a_node_is_explained_by_kube_proxy_chains(sample):
    topo, rules, nat, truth = sample
    ex = explain(nat, [parse(text, node) for node, text in rules.items()])
    dn = ex[ex["op"] == "DNAT"]
    truth_dnat = {(n["node"], f"{n['after']['dst']}:{n['after']['dport']}") for c in truth["connections"] if c.get("ok")
                  for n in c["nat"] if n["kind"] == "DNAT" and n["node"].startswith("node-")}
    assert truth_dnat and truth_dnat <= set(zip(dn["node"], dn["after"], strict=True))
    assert ex["explained"].all(), ex.loc[~ex["explained"]].to_dict("records")
    for r in dn.itertuples(index=False):
        chain = r.chains.split(" → ")
        assert chain[0] in ("KUBE-SERVICES", "KUBE-NODEPORTS") and chain[-1].startswith("KUBE-SEP-")
        assert f"DNAT --to-destination {r.after}" in next(x.line for x in parse(rules[r.node], r.node).rules("nat", chain[-1])
                                                           if x.target == "DNAT")
    sn = ex[ex["op"] == "SNAT"]
    assert len(sn) and all(c.endswith(("KUBE-POSTROUTING", "cali-nat-outgoing")) for c in sn["chains"])


def _without_frontend(rules: dict[str, str], cluster_ip: str) -> list:
    """Every node's parsed rules less the KUBE-SERVICES lines of ``cluster_ip``: a Service whose frontend rule is gone."""
    return [parse("\n".join(x for x in t.splitlines() if not (x.startswith("-A KUBE-SERVICES") and cluster_ip in x)), n)
            for n, t in rules.items()]  # fmt: skip


def test_a_dnat_whose_frontend_rule_is_missing_is_flagged(sample):
    topo, rules, nat, _ = sample
    web = topo.service("web")
    ex = explain(nat, _without_frontend(rules, web.cluster_ip))
    bad = ex[~ex["explained"]]
    assert len(bad) and set(bad["before"]) == {f"{web.cluster_ip}:{web.ports[0].port}"}
    assert all("no rule of" in p for p in bad["problem"])


def _rule_args(rules: dict[str, str], tmp_path) -> list[str]:
    """``--iptables NODE=FILE`` for each node's rules, written to files under ``tmp_path``."""
    args = []
    for node, text in rules.items():
        f = tmp_path / f"{node}.txt"
        f.write_text(text)
        args += ["--iptables", f"{node}={f}"]
    return args


def test_why_iptables_adds_nat_chains_to_json(sample, tmp_path):
    _, rules, _, _ = sample
    args = _rule_args(rules, tmp_path)
    res = CliRunner().invoke(app, ["why", str(SAMPLE), "--json", *args])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    nats = [x for c in doc["connections"] for x in c["nat"]]
    assert nats and all(x["explained"] and x["chains"] for x in nats)


@pytest.mark.parametrize("command", ["why", "paths"])
def test_a_file_that_is_not_iptables_save_output_is_one_line_and_exit_2(command, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("Chain INPUT (policy ACCEPT)\n")
    assert main([command, str(SAMPLE), "--iptables", f"node-1={bad}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcaptools: ") and "iptables-save" in err[0]


def test_paths_iptables_puts_the_chains_on_each_nat_step_a_node_made(sample, tmp_path):
    _, rules, _, _ = sample
    args = _rule_args(rules, tmp_path)
    res = CliRunner().invoke(app, ["paths", str(SAMPLE), "--json", *args])
    assert res.exit_code == 0, res.output
    steps = [s for p in json.loads(res.output)["paths"] for s in p["nat"]]
    on_nodes = [s for s in steps if s["node"] in rules]
    assert on_nodes and all(s["rules"]["explained"] and s["rules"]["problem"] is None for s in on_nodes)
    assert all(s["rules"] is None for s in steps if s["node"] not in rules)  # the load balancer's: no rules given
    for s in on_nodes:
        want = ("KUBE-SERVICES", "KUBE-NODEPORTS") if s["op"] == "DNAT" else ("KUBE-MARK-MASQ", "cali-nat-outgoing")
        assert s["rules"]["chains"][0] in want
    text = CliRunner().invoke(app, ["paths", str(SAMPLE), *args]).output
    assert "rules: KUBE-SERVICES → KUBE-SVC-" in text


def test_a_flagged_translation_gives_the_same_rules_object_to_why_and_to_paths(sample):
    """One function builds ``{chains, explained, problem}`` for both contracts: a missing frontend rule reads alike."""
    from pcaptools.k8s.iptables import rule_object
    from pcaptools.render.records import nat_rule_objects

    topo, rules, nat, _ = sample
    web = topo.service("web")
    ex = explain(nat, _without_frontend(rules, web.cluster_ip))
    by_step = nat_rule_objects(ex)
    bad = next(r for r in ex.itertuples(index=False) if not r.explained)
    obj = rule_object(bad)
    assert obj == by_step[(bad.journey, bad.step)] and obj["explained"] is False and "no rule of" in obj["problem"]
    good = next(r for r in ex.itertuples(index=False) if r.explained)
    assert rule_object(good)["problem"] is None and rule_object(good)["chains"] == good.chains.split(" → ")
