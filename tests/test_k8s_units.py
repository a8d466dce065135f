"""Inventory parsing and NAT classification on small hand-built inputs; the paths command end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcaptools.cli import app, main
from pcaptools.errors import InventoryError
from pcaptools.k8s.inventory import Inventory
from pcaptools.k8s.nat import nat_table, order_hops
from pcaptools.schema import HOPS_COLUMNS

LAB = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))

# a tiny cluster: two nodes with pod CIDRs, one pod each, a NodePort service and an egress-free LB
CLUSTER = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {"kind": "Node", "metadata": {"name": "n1"}, "spec": {"podCIDR": "10.1.1.0/24"},
         "status": {"addresses": [{"type": "InternalIP", "address": "172.16.0.1"}, {"type": "Hostname", "address": "n1"}]}},
        {"kind": "Node", "metadata": {"name": "n2"}, "spec": {"podCIDRs": ["10.1.2.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "172.16.0.2"}]}},
        {"kind": "Pod", "metadata": {"name": "cli", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"podIP": "10.1.1.5"}},
        {"kind": "Pod", "metadata": {"name": "srv", "namespace": "ns"}, "spec": {"nodeName": "n2"},
         "status": {"podIPs": [{"ip": "10.1.2.7"}]}},
        {"kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
         "spec": {"type": "LoadBalancer", "clusterIP": "10.9.0.1", "externalTrafficPolicy": "Local",
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 31000, "protocol": "TCP"}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "172.16.9.9"}]}}},
        {"kind": "EndpointSlice", "metadata": {"name": "web-x", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.1.2.7"], "nodeName": "n2", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "srv"}}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
        {"kind": "Pod", "metadata": {"name": "pending", "namespace": "ns"}},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return Inventory.load(CLUSTER)


def test_addresses_are_named_from_the_inventory(inv):
    got = inv.lookup(pd.Series(["10.1.1.5", "172.16.0.2", "10.9.0.1", "172.16.9.9", "10.1.2.1", "8.8.8.8", None], dtype="category"))
    assert list(got["kind"].iloc[:6]) == ["pod", "node", "service-clusterip", "loadbalancer", "node", "external"]
    assert pd.isna(got["kind"].iloc[6])
    assert list(got["name"].astype(str))[:5] == ["ns/cli", "n2", "ns/web", "ns/web", "n2"]
    assert list(got["node"].astype(str))[:2] == ["n1", "n2"]


def test_named_target_port_is_resolved_from_the_endpointslice(inv):
    (port,) = inv.services["ns/web"].ports
    assert (port.port, port.target_port, port.node_port, port.proto) == (80, 8080, 31000, 6)
    assert inv.services["ns/web"].external_traffic_policy == "Local"
    assert inv.endpoint_nodes("ns/web") == {"n2"}


def test_extra_kinds_and_missing_fields_are_tolerated(inv):
    assert "ns/pending" in inv.pods and inv.pods["ns/pending"].ips == ()
    assert any("ConfigMap" in n for n in inv.notes)
    assert inv.pod_network()["mode"] == "pod-cidr"


def test_lab_inventories_load_every_resource():
    for inv_path in sorted(LAB.glob("*/inventory.json")):
        doc = json.loads(inv_path.read_text())
        kinds = [it["kind"] for it in doc["items"]]
        inv = Inventory.load(inv_path)
        assert len(inv.nodes) == kinds.count("Node")
        assert len(inv.pods) == kinds.count("Pod")
        assert len(inv.services) == kinds.count("Service")
        cni = json.loads((inv_path.parent / "manifest.json").read_text())["cni"]
        assert inv.pod_network()["mode"] == ("vpc-native" if cni == "vpc" else "pod-cidr")


@pytest.mark.parametrize(
    "content, needle",
    [("{not json", "not JSON"), ("[1, 2]", r"items\[0\]"), ('{"items": {}}', "'items' should be a list"),
     ('"text"', "expected a JSON object"), ('{"kind": "List"}', "no 'items' list")],
)  # fmt: skip
def test_bad_inventory_raises_inventory_error(tmp_path, content, needle):
    p = tmp_path / "inventory.json"
    p.write_text(content)
    with pytest.raises(InventoryError, match=needle) as e:
        Inventory.load(p)
    assert e.value.path == str(p)


def test_missing_inventory_file_says_how_to_make_one(tmp_path):
    with pytest.raises(InventoryError, match="kubectl get nodes,pods,services,endpointslices"):
        Inventory.load(tmp_path / "nope.json")


# --- NAT on hand-built hops tables ---------------------------------------------------------------
def _hops(rows: list[tuple]) -> pd.DataFrame:
    """rows: (journey, point, src, sport, dst, dport, ttl, t_ns[, tunnel, outer_src, outer_dst])."""
    recs = []
    for r in rows:
        j, point, src, sport, dst, dport, ttl, t = r[:8]
        tun, osrc, odst = r[8:11] if len(r) > 8 else (None, None, None)
        node, iface = point.split(":")
        recs.append(dict(journey=j, hop=0, hops=0, point=point, node=node, interface=iface, ts_ns=t, ts_corrected_ns=t,
                         since_first_ns=0, ambiguous=False, fingerprint=np.uint64(j), file=f"{node}.pcap", record=0,
                         direction=None, src=src, dst=dst, sport=sport, dport=dport, proto=6, tunnel=tun,
                         vni=4096 if tun else -1, outer_src=osrc, outer_dst=odst, ttl=ttl, wirelen=60, ip_id=1, tcp_flags=2))  # fmt: skip
    df = pd.DataFrame(recs)
    for c in HOPS_COLUMNS:
        df[c.name] = df[c.name].astype("category") if c.dtype == "category" else df[c.name].astype(c.dtype)
    return df


def test_lb_nodeport_and_masquerade_are_classified_and_attributed(inv):
    # client -> LB (DNAT to n1:31000) -> n1 (DNAT to srv on n2, SNAT to n1) -> n2
    h = _hops([
        (0, "ext:eth0", "1.2.3.4", 5000, "172.16.9.9", 80, 64, 0),
        (0, "lb:eth0", "1.2.3.4", 5000, "172.16.0.1", 31000, 63, 10),
        (0, "n1:eth0", "1.2.3.4", 5000, "172.16.0.1", 31000, 63, 20),
        (0, "n1:eth0", "172.16.0.1", 7000, "10.1.2.7", 8080, 62, 30),
        (0, "n2:eth0", "172.16.0.1", 7000, "10.1.2.7", 8080, 62, 40),
    ])  # fmt: skip
    nat = nat_table(h, inv)
    got = [(str(r.op), str(r.nat_kind), str(r.node), str(r.service)) for r in nat.itertuples()]
    assert got == [("DNAT", "loadbalancer", "lb", "ns/web"), ("DNAT", "nodeport", "n1", "ns/web"),
                   ("SNAT", "service-masquerade", "n1", "ns/web")]  # fmt: skip
    assert not nat["reply"].any()


def test_replies_are_recognised_without_being_told(inv):
    # the reply of a ClusterIP connection: src restored to the service frontend on the client's node
    h = _hops([
        (3, "n2:veth", "10.1.2.7", 8080, "10.1.1.5", 4000, 64, 0),
        (3, "n1:veth", "10.9.0.1", 80, "10.1.1.5", 4000, 62, 50),
    ])  # fmt: skip
    (r,) = nat_table(h, inv).itertuples()
    assert (r.op, r.nat_kind, r.node, r.reply) == ("un-DNAT", "clusterip", "n1", True)
    assert (r.addr_before, r.port_before, r.addr_after, r.port_after) == ("10.1.2.7", 8080, "10.9.0.1", 80)


def test_egress_masquerade_and_its_undo(inv):
    h = _hops([
        (0, "n1:veth", "10.1.1.5", 4000, "8.8.8.8", 53, 64, 0),
        (0, "n1:eth0", "172.16.0.1", 4001, "8.8.8.8", 53, 63, 10),
        (1, "n1:eth0", "8.8.8.8", 53, "172.16.0.1", 4001, 60, 100),
        (1, "n1:veth", "8.8.8.8", 53, "10.1.1.5", 4000, 59, 110),
    ])  # fmt: skip
    nat = nat_table(h, inv)
    got = [(str(r.op), str(r.nat_kind), str(r.node)) for r in nat.itertuples()]
    assert got == [("SNAT", "egress-masquerade", "n1"), ("un-SNAT", "egress-masquerade", "n1")]


def test_tunnel_roles_fix_sightings_misordered_by_clock_error(inv):
    # n1's clock runs late: its encapsulated send looks later than n2's receive
    h = _hops([
        (0, "n1:veth", "10.1.1.5", 4000, "10.1.2.7", 8080, 64, 0),
        (0, "n1:eth0", "10.1.1.5", 4000, "10.1.2.7", 8080, 63, 90, "vxlan", "172.16.0.1", "172.16.0.2"),
        (0, "n2:eth0", "10.1.1.5", 4000, "10.1.2.7", 8080, 63, 50, "vxlan", "172.16.0.1", "172.16.0.2"),
        (0, "n2:veth", "10.1.1.5", 4000, "10.1.2.7", 8080, 62, 70),
    ])  # fmt: skip
    assert list(order_hops(h, inv)["point"].astype(str)) == ["n1:veth", "n1:eth0", "n2:eth0", "n2:veth"]
    # without an inventory only TTL and time order: the clock error shows
    assert list(order_hops(h)["point"].astype(str)) == ["n1:veth", "n2:eth0", "n1:eth0", "n2:veth"]


def test_unexplained_translation_is_other_without_inventory():
    h = _hops([(0, "a:x", "1.1.1.1", 1, "2.2.2.2", 2, 64, 0), (0, "b:y", "1.1.1.1", 1, "3.3.3.3", 3, 63, 5)])
    (r,) = nat_table(h).itertuples()
    assert (r.op, r.nat_kind) == ("DNAT", "other")
    assert r.node == "b"  # the packet starts at a: the later point's node


# --- the paths command ---------------------------------------------------------------------------
def test_paths_command_json_lists_every_truth_connection(tmp_path):
    d = LAB / "vpc"
    if not d.exists():
        pytest.skip("no lab sample")
    truth = json.loads((d / "truth.json").read_text())
    out = tmp_path / "p.csv"
    res = CliRunner().invoke(app, ["paths", str(d), "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    recs = json.loads(res.output)["paths"]
    tuples = {(r["client_addr"], r["client_port"]) for r in recs}
    assert all((c["client_tuple"]["src"], c["client_tuple"]["sport"]) in tuples for c in truth["connections"])
    assert len(pd.read_csv(out)) == len(recs)


def test_paths_command_renders_a_block_per_connection():
    d = LAB / "calico-vxlan"
    if not d.exists():
        pytest.skip("no lab sample")
    res = CliRunner().invoke(app, ["paths", str(d)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    n = len(json.loads((d / "truth.json").read_text())["connections"])
    assert res.output.count("\n  from ") == n
    assert "legend:" in res.output


def test_paths_command_bad_inputs_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "inv.json"
    bad.write_text("{")
    assert main(["paths", str(LAB / "vpc"), "--inventory", str(bad)]) == 2
    assert main(["paths", str(LAB / "vpc"), "-o", "paths.txt"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.startswith("pcaptools: ")]
    assert len(err) == 2 and all(line.startswith(("pcaptools: ", "Usage: pcaptools paths")) for line in lines)


def test_representative_journey_lookup_selects_what_isin_selects():
    """The rendering's lookup table of journey ids picks the same hops rows as np.isin, absent reply journeys (-1),
    ids beyond the table and negative ids included."""
    from pcaptools.k8s.paths import load_paths
    from pcaptools.render.records import _in_journeys

    d = LAB / "vpc"
    if not d.exists():
        pytest.skip("no lab sample")
    ps = load_paths(d)
    js = np.concatenate([ps.paths["forward_journey"].to_numpy(np.int64), ps.paths["reply_journey"].to_numpy(np.int64),
                         [-1]])  # a connection without a reply journey says -1: it must select nothing  # fmt: skip
    j = ps.correlation.hops["journey"].to_numpy(np.int64)
    for rows, ids in ((j, js), (j, js + 10**9), (j * 10**6, js * 10**6), (j - 5, js), (j[:0], js), (j, js[:0])):
        got = _in_journeys(rows, ids)
        assert np.array_equal(got, np.isin(rows, ids))
    assert _in_journeys(j, js).sum() >= len(ps.paths)


def test_routing_flags_with_shared_address_codes_equal_their_own():
    """Inventory.routing_flags and point_addresses given address_codes of the table answer as when they code it."""
    from pcaptools.k8s.inventory import address_codes, point_addresses, single_address_points
    from pcaptools.k8s.paths import load_paths

    d = LAB / "calico-vxlan"
    if not d.exists():
        pytest.skip("no lab sample")
    ps = load_paths(d)
    hops = ps.correlation.hops
    codes = address_codes(hops)
    own, shared = point_addresses(hops), point_addresses(hops, codes)
    assert own[0].equals(shared[0]) and own[1].equals(shared[1])
    single = single_address_points(*own)
    flags = ps.inventory.routing_flags(hops, single)
    assert flags.equals(ps.inventory.routing_flags(hops, single, codes))
    assert flags["tun"].any()  # Calico VXLAN: cross-node pod traffic is tunnelled


@pytest.mark.parametrize("codes", [300, 100_000])  # exact below ~2,900 address codes, hashed above
def test_connection_keys_are_one_per_unordered_tuple_at_any_address_count(codes):
    from pcaptools.k8s.paths import _address_pair_key, _tuple_key

    rng = np.random.default_rng(7)
    n = 50_000
    proto = rng.choice(np.array([1, 6, 17], np.int64), n)
    a, b = rng.integers(-1, codes, n), rng.integers(-1, codes, n)
    ap, bp = rng.integers(-1, 65536, n), rng.integers(-1, 65536, n)
    key = _tuple_key(proto, a, ap, b, bp, codes)
    assert np.array_equal(key, _tuple_key(proto, b, bp, a, ap, codes))  # both directions of a 5-tuple
    tuples = {(p, *sorted(((x, xp), (y, yp)))) for p, x, xp, y, yp in zip(proto, a, ap, b, bp, strict=True)}
    assert len(np.unique(key)) == len(tuples)  # one key per distinct unordered 5-tuple, none shared
    s, d = a[a >= 0], b[a >= 0]
    pair = _address_pair_key(proto[a >= 0], s, d, codes)
    assert np.array_equal(pair, _address_pair_key(proto[a >= 0], d, s, codes))
    assert len(np.unique(pair)) == len({(p, min(x, y), max(x, y)) for p, x, y in zip(proto[a >= 0], s, d, strict=True)})
