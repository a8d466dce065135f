"""Lab building blocks that need no namespaces: conntrack parsing, kube-proxy rules, the plan."""

from __future__ import annotations

import re

import pytest

from pcaptools.errors import LabError
from pcaptools.lab import kubeproxy, topology, truth


def test_conntrack_extended_lines_give_original_and_reply_tuples():
    text = (
        "ipv4     2 tcp      6 118 TIME_WAIT src=10.1.0.5 dst=10.96.0.10 sport=41000 dport=8080 "
        "src=10.2.0.7 dst=10.1.0.5 sport=80 dport=41000 [ASSURED] mark=0 use=1\n"
        "ipv4     2 udp      17 28 src=10.1.0.5 dst=10.96.0.53 sport=5000 dport=53 [UNREPLIED] "
        "src=10.2.0.9 dst=10.1.0.5 sport=53 dport=5000 mark=0 use=1\n"
        "ipv4     2 icmp     1 29 src=10.1.0.5 dst=10.2.0.7 type=8 code=0 id=7 src=10.2.0.7 dst=10.1.0.5 "
        "type=0 code=0 id=7 mark=0 use=1\n"
    )
    tcp, udp = truth.parse_conntrack(text)
    assert tcp.orig == ("10.1.0.5", 41000, "10.96.0.10", 8080, "tcp")
    assert tcp.reply == ("10.2.0.7", 80, "10.1.0.5", 41000, "tcp")
    assert tcp.state == "TIME_WAIT" and "ASSURED" in tcp.flags
    assert udp.state is None and udp.flags == ("UNREPLIED",) and udp.reply[0] == "10.2.0.9"


@pytest.mark.parametrize("cni", topology.CNI_MODES)
def test_kube_proxy_rules_pick_each_backend_with_kube_proxy_probabilities(cni):
    topo = topology.plan(cni)
    rules = kubeproxy.node_rules(topo, topo.nodes[0])
    web = topo.service("web")
    svc = kubeproxy.svc_chain(web, web.ports[0])
    assert re.fullmatch(r"KUBE-SVC-[A-Z2-7]{16}", svc)
    jumps = [r for r in rules.splitlines() if r.startswith(f"-A {svc} ") and "KUBE-SEP-" in r]
    n = len(topo.endpoints(web))
    assert len(jumps) == n == 2
    probs = [float(m.group(1)) for r in jumps if (m := re.search(r"--probability (\S+)", r))]
    assert probs == [pytest.approx(1 / n)]  # the last endpoint takes the rest
    assert "-j MASQUERADE --random-fully" in rules and "KUBE-MARK-MASQ" in rules


def test_local_policy_only_routes_to_local_endpoints():
    topo = topology.plan("calico-vxlan")
    svc = topo.service("web-local")
    svl = kubeproxy.svc_chain(svc, svc.ports[0], "SVL")
    for node in topo.nodes:
        rules = kubeproxy.node_rules(topo, node).splitlines()
        local = [p for p in topo.endpoints(svc) if p.node == node.name]
        targets = [r for r in rules if r.startswith(f"-A {svl} ")]
        assert len(targets) == len(local)
        for r in targets:
            assert any(f"-> {p.ip}:" in r for p in local)
    nlb = kubeproxy.nlb_rules(topo)
    chain = "NLB-TG-" + kubeproxy._hash16(kubeproxy.port_name(svc, svc.ports[0]))
    targets = {m.group(1) for m in re.finditer(rf"-A {chain} .*--to-destination (\S+):", nlb)}
    assert targets == {topo.node(p.node).ip for p in topo.endpoints(svc)}


@pytest.mark.parametrize("cni", topology.CNI_MODES)
def test_plan_is_repeatable_and_names_fit_linux_limits(cni):
    a, b = topology.plan(cni, prefix="ptlab-"), topology.plan(cni, prefix="ptlab-")
    assert a == b
    for p in a.pods:
        assert len(p.host_if) <= 15
    assert len({p.ip for p in a.pods}) == len(a.pods)
    assert len({p.node for p in a.endpoints(a.service("web"))}) == 2


def test_bad_plans_are_lab_errors():
    with pytest.raises(LabError, match="expected one of"):
        topology.plan("weave")
    with pytest.raises(LabError, match="2 to 20"):
        topology.plan("vpc", nodes=1)
