"""pcaptools why scored against the lab's fault truth: one run per CNI (calico-vxlan, and vpc: native routing) with
every fault, made once per session.

Every faulty connection must be located to the truth's node and pair of capture points with the truth's cause;
no healthy connection may be blamed (a capture loss blames the capture, and only at the point that lost records).
``hostnetwork-client`` runs on vpc only, as ``nodelocal-dns`` on calico-vxlan (the two
cannot share a run: NodeLocal DNSCache gives every node a second hostNetwork pod).
"""

from __future__ import annotations

import json
import secrets

import jsonschema
import pytest

import pcaptools
from pcaptools.k8s import iptables
from pcaptools.k8s.diagnose import SCHEMA_PATH, diagnose
from tests.lab_support import REASON

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FAULTS = ("policy-drop", "no-endpoints", "stale-endpoint", "mtu-blackhole", "mtu-icmp", "asymmetric-return",
          "conntrack-invalid", "capture-drop")  # fmt: skip
SCENARIOS = {"calico-vxlan": ("hairpin", "port-reuse", "hostnetwork", "nodelocal-dns"),
             "vpc": ("hairpin", "port-reuse", "hostnetwork", "hostnetwork-client")}  # fmt: skip


@pytest.fixture(scope="session", params=sorted(SCENARIOS))
def faulty(request, tmp_path_factory):
    """(truth, diagnosis, cni) of one lab run of ``cni`` with all its faults and scenarios."""
    if REASON:
        pytest.skip(REASON)
    from pcaptools.lab import run_lab

    cni = request.param
    out = tmp_path_factory.mktemp(f"faults-{cni}")
    man = run_lab(out, cni=cni, prefix=f"ptw{secrets.token_hex(2)}-", connections=16,
                  faults=FAULTS + SCENARIOS[cni])  # fmt: skip
    cs = pcaptools.CaptureSet.load(man)
    rules = [iptables.load(str(f)) for f in sorted(out.glob("*/iptables-save.txt"))]
    d = diagnose(cs, pcaptools.correlate(cs), out / "inventory.json", iptables=rules)
    return json.loads((out / "truth.json").read_text()), d, cni


def _scenario(faulty, name: str) -> list[dict]:
    """The truth records of scenario ``name`` in this run; the test is skipped on a CNI that does not run it."""
    truth, _, cni = faulty
    if name not in SCENARIOS[cni]:
        pytest.skip(f"{name} does not run on {cni}")
    return [x for x in truth["scenarios"] if x["scenario"] == name]


def _conn(d, t: dict):
    c = d.connections
    m = c[(c["client_addr"] == t["src"]) & (c["client_port"] == t["sport"]) & (c["server_addr"] == t["dst"])
          & (c["server_port"] == t["dport"])]  # fmt: skip
    assert len(m) == 1, f"{len(m)} connections with client tuple {t}"
    return m.iloc[0]


def _losses(d, conn: int) -> list[dict]:
    return d.connection_record(conn)["losses"]


def _from_client(paths, t: dict):
    """The path rows whose client address and port are the truth's client tuple ``t``."""
    return paths[(paths["client_addr"].astype(str) == t["src"]) & (paths["client_port"] == t["sport"])]


def test_every_fault_is_recorded_in_truth_with_where_and_why(faulty):
    truth, _, _ = faulty
    got = {f["fault"]: f for f in truth["faults"]}
    assert set(got) == set(FAULTS)
    for name, f in got.items():
        assert f["cause"] and f.get("why") or name == "capture-drop"
        if name != "capture-drop":
            # a failed connection fails for the client too; a degraded one still delivers
            assert f["client_ok"] == (f["status"] == "degraded"), f"{name}: client ok={f['client_ok']} ({f})"
            assert {"direction", "last_seen", "first_missed", "node", "status"} <= set(f)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "capture-drop"])
def test_faulty_connection_is_located_to_the_truth_points_and_cause(faulty, fault):
    truth, d, _ = faulty
    f = next(x for x in truth["faults"] if x["fault"] == fault)
    row = _conn(d, f["client_tuple"])
    assert row["status"] == f["status"]
    real = [x for x in _losses(d, int(row["connection"])) if x["cause"] != "capture-loss"]
    assert len(real) == 1, real
    loss = real[0]
    want = {k: f[k] for k in ("direction", "last_seen", "first_missed", "node")}
    assert {k: loss[k] for k in want} == want
    assert loss["cause"] == f["cause"]
    assert 0.5 <= loss["confidence"] <= 1
    assert loss["packets"] >= 1 and loss["evidence"]


def test_no_healthy_connection_is_blamed(faulty):
    truth, d, _ = faulty
    faulty_ids = {f["id"] for f in truth["faults"] + truth["scenarios"] if "id" in f}
    healthy = [c for c in truth["connections"] if c.get("ok") and c["id"] not in faulty_ids]
    assert len(healthy) >= 16
    for c in healthy:
        row = _conn(d, c["client_tuple"])
        real = [x for x in _losses(d, int(row["connection"])) if x["cause"] != "capture-loss"]
        assert row["status"] == "ok" and not real, (c["id"], c["kind"], real)


def test_capture_losses_are_only_at_the_point_that_lost_records(faulty):
    truth, d, _ = faulty
    f = next(x for x in truth["faults"] if x["fault"] == "capture-drop")
    cl = d.losses[d.losses["cause"] == "capture-loss"]
    assert set(cl["first_missed"]) <= {f["point"]}
    assert int(cl["packets"].sum()) <= f["records_dropped"]
    # a VXLAN frame on a node's uplink always travels on to another point, so its loss must be seen, when the
    # packet inside can be told apart: it carries payload (UDP, or an IPv4 packet longer than IP + the largest
    # TCP header). Pure ACKs repeat their fingerprint (README: "cannot tell apart: duplicate ACKs"), and a lost
    # one may pair with its twin.
    def inner_has_payload(h: str) -> bool:
        inner = 128  # hex offset of the inner IPv4 header: Ethernet 14 + IP 20 + UDP 8 + VXLAN 8 + Ethernet 14 bytes
        return len(h) >= inner + 20 and (h[inner + 18:inner + 20] == "11" or int(h[inner + 4:inner + 8], 16) > 80)

    vxlan = [x for x in f["dropped"] if len(x["head"]) >= 76 and x["head"][24:28] == "0800" and x["head"][46:48] == "11"
             and int(x["head"][72:76], 16) == 4789 and inner_has_payload(x["head"])]  # fmt: skip
    assert int(cl["packets"].sum()) >= len(vxlan)


def test_the_timeline_shows_every_lost_syn_attempt_where_it_was_last_seen(faulty):
    truth, d, _ = faulty
    f = next(x for x in truth["faults"] if x["fault"] == "policy-drop")
    row = _conn(d, f["client_tuple"])
    syn = [a for a in d.connection_record(int(row["connection"]))["timeline"] if a["packet"].startswith("SYN ")]
    assert len(syn) >= 2, "the client retried its SYN"
    assert [a["attempt"] for a in syn] == list(range(1, len(syn) + 1))
    route = d.paths.set_index("connection").loc[int(row["connection"]), "forward_points"].split(" → ")
    for a in syn:
        assert not a["reached"] and [s["point"] for s in a["sightings"]] == route
        assert route[-1] == f["last_seen"]
        for node in {p.split(":")[0] for p in route}:  # one node's sightings share its clock: in time order
            ts = [s["ts_ns"] for s in a["sightings"] if s["point"].startswith(node + ":")]
            assert ts == sorted(ts)


def test_why_json_of_the_faulty_run_follows_its_schema(faulty):
    _, d, _ = faulty
    doc = d.to_dict()
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    failed = [c for c in doc["connections"] if c["status"] != "ok"]
    assert len(failed) == len(FAULTS) - 1


def test_scenarios_are_healthy_and_blame_nothing(faulty):
    truth, d, cni = faulty
    assert {x["scenario"] for x in truth["scenarios"]} == set(SCENARIOS[cni])
    for x in truth["scenarios"]:
        assert x["client_ok"], x
        c = d.connections
        rows = c[(c["client_addr"] == x["client_tuple"]["src"]) & (c["client_port"] == x["client_tuple"]["sport"])]
        assert len(rows) >= 1 and set(rows["status"]) == {"ok"}, x


def test_a_reused_client_port_is_two_connections(faulty):
    _, d, _ = faulty
    uses = _scenario(faulty, "port-reuse")
    assert [x["use"] for x in uses] == [1, 2] and uses[0]["client_tuple"] == uses[1]["client_tuple"]
    t = uses[0]["client_tuple"]
    p = d.paths
    rows = _from_client(p, t)
    rows = rows[rows["server_addr"].astype(str) == t["dst"]]
    assert len(rows) == 2
    assert rows["first_ts_ns"].is_monotonic_increasing and (rows["journeys"] >= 6).all()
    assert set(rows["backend"].astype(str)) == {uses[0]["backend"]}


def test_a_hairpin_leaves_and_reenters_its_own_veth_with_dnat_then_snat(faulty):
    _, d, _ = faulty
    (x,) = _scenario(faulty, "hairpin")
    t = x["client_tuple"]
    p = d.paths
    r = _from_client(p, t).iloc[0]
    assert r["kind"] == "clusterip" and str(r["backend"]) == x["backend"] == str(r["client"])
    fwd = r["forward_points"].split(" → ")
    assert fwd[0] == fwd[-1] == x["point"]
    assert r["nat"].startswith("DNAT") and "; SNAT" in r["nat"] and f"@{x['node']}" in r["nat"]
    assert r["client_ip_preserved"] == "no"


def test_the_saved_iptables_explain_every_translation_the_nodes_made(faulty):
    truth, d, cni = faulty
    nr = d.nat_rules
    assert nr is not None and len(nr)
    assert nr["explained"].all(), nr.loc[~nr["explained"]].to_dict("records")
    if cni == "vpc":
        return  # the stale address is on the node's own subnet: nobody answers ARP, the DNATed packet never leaves
    stale = next(x for x in truth["faults"] if x["fault"] == "stale-endpoint")
    hit = nr[nr["after"] == f"{stale['stale_ip']}:80"]
    assert len(hit) and all(c.split(" → ")[-1].startswith("KUBE-SEP-") for c in hit["chains"])


def test_a_hostnetwork_server_is_named_as_its_pod_not_as_the_node(faulty):
    truth, d, _ = faulty
    (x,) = _scenario(faulty, "hostnetwork")
    t = x["client_tuple"]
    p = d.paths
    r = _from_client(p, t).iloc[0]
    assert (str(r["backend"]), str(r["backend_kind"]), str(r["backend_node"])) == (x["backend"], "pod", x["node"])
    rec = next(c for c in truth["connections"] if c["id"] == x["id"])  # natOutgoing masquerades pod -> node traffic
    assert [n["kind"] for n in rec["nat"]] == [s.split(" ")[0] for s in r["nat"].split("; ") if s]


def test_nodelocal_dns_over_udp_and_tcp_is_answered_by_the_clients_own_node(faulty):
    _, d, _ = faulty
    xs = _scenario(faulty, "nodelocal-dns")
    assert sorted(x["proto"] for x in xs) == ["tcp", "udp"]
    p = d.paths
    for x in xs:
        t = x["client_tuple"]
        r = _from_client(p, t).iloc[0]
        assert int(r["proto"]) == {"udp": 17, "tcp": 6}[x["proto"]] and str(r["server_addr"]) == t["dst"]
        assert (str(r["backend"]), str(r["backend_kind"]), str(r["backend_node"])) == (x["backend"], "pod", x["node"])
        assert r["nat"] == "" and not r["cross_node"]


def test_a_hostnetwork_client_is_named_as_its_pod_not_as_the_node_or_snat(faulty):
    truth, d, _ = faulty
    xs = _scenario(faulty, "hostnetwork-client")
    assert sorted(x["service"] or "" for x in xs) == ["", "default/web"]  # to a pod, and to a ClusterIP service
    for x in xs:
        rec = next(c for c in truth["connections"] if c["id"] == x["id"])
        wire = rec["path"]["forward"][0]["tuple"]  # the service's DNAT happened in the node's OUTPUT chain, uncaptured
        (r,) = [r for r in _from_client(d.paths, wire).itertuples(index=False)]
        assert (str(r.client), str(r.client_kind), str(r.client_node)) == (x["client"], "pod", x["node"])
        assert (str(r.backend), str(r.backend_node)) == (rec["backend"]["pod"], rec["backend"]["node"])
        assert str(r.backend_addr) == wire["dst"] and r.client_ip_preserved == "yes" and r.nat == ""
