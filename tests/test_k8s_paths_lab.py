"""pcaptools.paths on the lab samples against their truth.json: kind, client, backend, NAT (kind, node), points, encapsulation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from correlate_support import dpkt_packets

import pcaptools
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.render.records import paths_document
from pcaptools.schema import NAT_COLUMNS, PATH_COLUMNS, validate

ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))
SAMPLES = sorted(p.parent.name for p in ROOT.glob("*/truth.json"))


def _decoder():
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]

        return read_packets
    except ImportError:
        return dpkt_packets


@pytest.fixture(scope="module", params=SAMPLES or [None])
def lab(request):
    if request.param is None:
        pytest.skip("no lab samples under sample_pcaps/")
    d = ROOT / request.param
    corr = pcaptools.correlate_captures(pcaptools.CaptureSet.load(d, decoder=_decoder()))
    p, nat = paths_and_nat(corr, d / "inventory.json")
    truth = json.loads((d / "truth.json").read_text())
    lab_rows.update(corr=corr, inventory=Inventory.load(d / "inventory.json"), cni=truth["cni"])
    return truth, p, nat


lab_rows: dict = {}


def _ours(p, conn: dict):
    t = conn["client_tuple"]
    m = p[(p["client_addr"].astype(str) == t["src"]) & (p["client_port"] == t["sport"])
          & (p["server_addr"].astype(str) == t["dst"]) & (p["server_port"] == t["dport"])]  # fmt: skip
    assert len(m) == 1, f"connection {conn['id']} ({conn['kind']}): {len(m)} paths with client tuple {t}"
    return m.iloc[0]


def _truth_connections(truth: dict) -> list[dict]:
    conns = [c for c in truth["connections"] if c.get("ok")]
    assert conns, "truth lists no successful connection"
    return conns


def test_tables_follow_their_schemas(lab):
    _, p, nat = lab
    validate(p, PATH_COLUMNS, table="paths")
    validate(nat, NAT_COLUMNS, table="nat")


def test_every_truth_connection_has_its_kind_and_service(lab):
    truth, p, _ = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        want = "pod-direct" if c["kind"].startswith("pod-direct") else c["kind"]
        assert r["kind"] == want, f"connection {c['id']}: kind {r['kind']}, truth {c['kind']}"
        if c["kind"].startswith("pod-direct"):
            assert bool(r["cross_node"]) == (c["kind"] == "pod-direct-cross-node"), f"connection {c['id']}"
        got_svc = r["service"] if isinstance(r["service"], str) else None
        assert got_svc == c["service"], f"connection {c['id']}: service {got_svc}, truth {c['service']}"


def test_every_truth_connection_names_client_and_backend(lab):
    truth, p, _ = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        cl, be = c["client"], c["backend"]
        if cl["kind"] == "pod":
            assert (r["client"], r["client_node"], r["client_kind"]) == (cl["pod"], cl["node"], "pod"), f"connection {c['id']}"
        else:
            assert (r["client_kind"], r["client"]) == ("external", cl["ip"]), f"connection {c['id']}"
        if be["kind"] == "pod":
            assert (r["backend"], r["backend_node"], r["backend_kind"]) == (be["pod"], be["node"], "pod"), f"connection {c['id']}"
            assert r["backend_port"] == be["port"]
        else:
            assert (r["backend_kind"], r["backend"]) == ("external", be["ip"]), f"connection {c['id']}"


def test_every_truth_connection_has_its_nat_steps_and_nodes(lab):
    truth, p, nat = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        steps = nat[(nat["journey"] == r["forward_journey"])].sort_values("step")
        got = [(str(s.op), str(s.node)) for s in steps.itertuples()]
        want = [(n["kind"], n["node"]) for n in c["nat"]]
        assert got == want, f"connection {c['id']} ({c['kind']}): NAT {got}, truth {want}"
        for s, n in zip(steps.itertuples(), c["nat"], strict=True):
            ep = "dst" if n["kind"] == "DNAT" else "src"
            port = "dport" if ep == "dst" else "sport"
            assert (str(s.addr_before), int(s.port_before)) == (n["before"][ep], n["before"][port])
            assert (str(s.addr_after), int(s.port_after)) == (n["after"][ep], n["after"][port])


def test_replies_undo_the_forward_translations(lab):
    truth, p, nat = lab
    undo = {"DNAT": "un-DNAT", "SNAT": "un-SNAT"}
    for c in _truth_connections(truth):
        r = _ours(p, c)
        if r["reply_journey"] < 0:
            continue
        steps = nat[nat["journey"] == r["reply_journey"]]
        assert steps["reply"].all()
        assert sorted((str(s.op), str(s.node)) for s in steps.itertuples()) == sorted((undo[n["kind"]], n["node"]) for n in c["nat"])


def test_every_truth_connection_crosses_the_same_points_in_order(lab):
    truth, p, _ = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        want = [f"{h['node']}:{h['interface']}" for h in c["path"]["forward"]]
        assert r["forward_points"].split(" → ") == want, f"connection {c['id']} ({c['kind']}) forward"
        if c["path"].get("reverse"):
            want_r = [f"{h['node']}:{h['interface']}" for h in c["path"]["reverse"]]
            assert r["reverse_points"].split(" → ") == want_r, f"connection {c['id']} ({c['kind']}) reverse"


def test_encapsulation_matches_truth(lab):
    truth, p, _ = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        assert bool(r["encapsulated"]) == c["encapsulated"], f"connection {c['id']}"
        for e in c["encap"]:
            a, b = e["between"]
            assert f"{e['type']} vni {e['vni']} {e['outer_src']}→{e['outer_dst']} ({a}→{b})" in r["encap"]
        if not c["encapsulated"] and r["cross_node"]:
            assert r["encap"] == "native"


def test_client_ip_preserved_agrees_with_the_server_tuple(lab):
    truth, p, _ = lab
    for c in _truth_connections(truth):
        r = _ours(p, c)
        want = "yes" if c["server_tuple"]["src"] == c["client_tuple"]["src"] else "no"
        assert r["client_ip_preserved"] == want, f"connection {c['id']} ({c['kind']})"


def test_no_extra_connections_beyond_truth_and_noise(lab):
    truth, p, _ = lab
    tcp_udp = p[p["proto"].isin([6, 17])]
    # every TCP/UDP connection we report with a client pod or the external client is one of truth's
    keys = {(c["client_tuple"]["src"], c["client_tuple"]["sport"]) for c in truth["connections"]}
    ours = {(str(r.client_addr), int(r.client_port)) for r in tcp_udp.itertuples()}
    assert keys <= ours


def test_json_records_carry_every_path_with_nat_and_hop_objects(lab):
    _, p, nat = lab
    doc = paths_document(p, nat, lab_rows["corr"].hops)
    recs = doc["paths"]
    assert doc["schema_version"] == 1 and len(recs) == len(p) == doc["connections"]
    assert {c.name for c in PATH_COLUMNS} - {"hop_latency"} <= set(recs[0])  # per-hop latency lives in the hop objects
    for r, row in zip(recs, p.itertuples(index=False), strict=True):
        assert [h["point"] for h in r["hops"]] == row.forward_points.split(" → ")
        assert [s["text"] for s in r["nat"]] == [x for x in row.nat.split("; ") if x]
        assert r["latency_ns"] == (None if row.latency_ns < 0 else row.latency_ns)
    json.dumps(doc, allow_nan=False)


def test_pod_routing_is_inferred_from_inventory_and_packets(lab):
    net = lab_rows["inventory"].pod_network(lab_rows["corr"].hops)
    overlay = lab_rows["cni"] != "vpc"
    assert net["mode"] == ("pod-cidr" if overlay else "vpc-native")
    assert net["routing"] == ("overlay" if overlay else "native")
