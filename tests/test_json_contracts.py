"""The --json contracts: every command's output validates against its shipped JSON Schema, on the shipped samples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from pcaptools.cli import main
from pcaptools.render.records import json_schema

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
OWN = ROOT / "tests" / "data" / "own"
VPC, CALICO = SAMPLES / "vpc", SAMPLES / "calico-vxlan"

pytestmark = pytest.mark.skipif(not (CALICO / "manifest.json").exists(), reason="no lab samples under sample_pcaps/")


def _json(capsys, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _valid(doc: dict, command: str) -> dict:
    jsonschema.Draft202012Validator(json_schema(command)).validate(doc)
    assert doc["schema_version"] == 1 and doc["command"] == command
    return doc


def _no_minus_one(obj, where="") -> None:
    """No -1 survives anywhere in a document: absent is null."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_minus_one(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_minus_one(v, f"{where}[{i}]")
    else:
        assert obj != -1 or isinstance(obj, bool), where


@pytest.mark.parametrize("command", ["info", "flows", "correlate", "compare", "paths", "why"])
def test_every_schema_is_a_valid_draft_2020_12_schema(command):
    schema = json_schema(command)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": 1, "description": "major version of this contract"}


def test_info_json_validates_on_own_captures(capsys):
    files = sorted(str(p) for p in OWN.glob("*.pcap*"))
    doc = _valid(_json(capsys, "info", *files), "info")
    assert [f["path"] for f in doc["files"]] == files


def test_flows_json_validates_and_absent_is_null(capsys):
    doc = _valid(_json(capsys, "flows", str(CALICO / "node-1" / "eth0.pcap")), "flows")
    flows = doc["flows"]
    assert flows
    _no_minus_one(doc)
    for f in flows:
        assert (f["vni"] is None) == (f["tunnel"] is None)
        if f["proto"] in (6, 17):
            assert isinstance(f["orig_p"], int) and isinstance(f["resp_p"], int)
    assert {f["proto_name"] for f in flows} >= {"tcp"}


def test_correlate_json_validates_with_offsets_and_latency_as_objects(capsys):
    doc = _valid(_json(capsys, "correlate", str(CALICO)), "correlate")
    assert doc["clock_offsets"][doc["reference"]]["reference"] is True
    assert sum(o["reference"] for o in doc["clock_offsets"].values()) == 1
    assert all(h["count"] > 0 and h["min_ns"] <= h["median_ns"] <= h["max_ns"] for h in doc["hop_latency"])
    assert sum(p["matched"] + p["unmatched"] for p in doc["points"]) > 0
    for p in doc["points"]:  # every row accounted for, with integers
        assert p["rows"] == p["matched"] + p["unmatched"] + sum(p["not_correlated"].values())
        assert all(type(v) is int for v in p["not_correlated"].values())


def test_compare_json_validates_and_numbers_are_numbers(capsys):
    doc = _valid(_json(capsys, "compare", str(VPC), str(CALICO)), "compare")
    rows = {r["metric"]: r["values"] for r in doc["summary"]}
    truth = json.loads((CALICO / "truth.json").read_text())
    overlay = truth.get("overlay") or {}
    if overlay.get("vni") is not None:
        assert rows["VNI / key"]["calico-vxlan"] == [overlay["vni"]]
    assert all(isinstance(v, int) for v in rows["SYN MSS options seen"]["vpc"])
    assert all(isinstance(r["syn_mss"], list) for r in doc["points"])


def test_paths_json_validates_with_nat_steps_hops_and_flow_fields(capsys):
    doc = _valid(_json(capsys, "paths", str(CALICO)), "paths")
    paths = doc["paths"]
    truth = json.loads((CALICO / "truth.json").read_text())
    assert len(paths) == doc["connections"] >= len(truth["connections"])
    for p in paths:
        assert p["forward_points"] == [h["point"] for h in p["hops"]]
        assert p["hops"][0]["latency_ns"] is None
        total = sum(h["latency_ns"] for h in p["hops"][1:])
        assert total == (p["latency_ns"] or 0)
        for step in p["nat"]:
            assert step["before"] != step["after"] and step["op"] in ("DNAT", "SNAT")
        if p["proto_name"] == "tcp":  # the client-side flow is joined: bytes both ways, a state
            assert p["orig_bytes"] > 0 and p["resp_bytes"] > 0 and p["flow_state"] is not None
            assert p["retransmissions"] >= 0
    kinds = {s["kind"] for p in paths for s in p["nat"]}
    assert "clusterip" in kinds


def test_paths_json_with_iptables_validates_with_rules_on_each_nat_step(capsys, tmp_path):
    from pcaptools.lab import kubeproxy, topology

    topo = topology.plan("calico-vxlan")  # the rules the lab installed when it made the sample
    args = []
    for n in topo.nodes:
        f = tmp_path / f"{n.name}.txt"
        f.write_text(kubeproxy.node_rules(topo, n))
        args += ["--iptables", f"{n.name}={f}"]
    doc = _valid(_json(capsys, "paths", str(CALICO), *args), "paths")
    steps = [s for p in doc["paths"] for s in p["nat"]]
    assert any(s["rules"] is not None and s["rules"]["chains"] for s in steps)
    assert all(s["rules"] is None for p in doc["paths"] for s in p["nat_reply"])
    _no_minus_one(doc)


def test_dumps_writes_exactly_what_json_dumps_writes(capsys):
    """render.records.dumps is json.dumps(indent=2, ensure_ascii=False, allow_nan=False), faster: same text for a
    paths document and for every kind of value, the standard library's errors for what JSON cannot hold."""
    import math

    import numpy as np

    from pcaptools.k8s.paths import load_paths
    from pcaptools.render.records import dumps, paths_document

    def std(doc):
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)

    ps = load_paths(CALICO)
    docs = [paths_document(ps.paths, ps.nat, ps.correlation.hops)]
    assert len(std(docs[0])) > 10_000
    docs += [
        {"a": [], "b": {}, "c": [[], {}, [[]]], "d": None, "e": True, "f": False, "g": -0.0, "h": 1e-05, "i": 1e16,
         "j": 2**70, "k": -3, "l": 0.1 + 0.2, "m": "µs → \"q\" \\ \n\t\x00\x1f\x7f\u2028 \U0001f600", "": ""},
        [1, "x", [None, {"z": [1.5]}]], "top", 7, 2.5, None, True, [], {},
        {"tuple": (1, 2)}, {3: "int key"}, {None: 1, True: 2, 1.5: 3}, {"np": np.float64(0.1)},
        {"deep": json.loads("[" * 150 + "]" * 150)},
    ]  # fmt: skip
    for doc in docs:
        assert dumps(doc) == std(doc)
    for bad in ({"x": math.nan}, [math.inf], {"np": np.int64(3)}, {"s": {1, 2}}):
        with pytest.raises((ValueError, TypeError)) as mine:
            dumps(bad)
        with pytest.raises(type(mine.value)) as theirs:
            std(bad)
        assert str(mine.value) == str(theirs.value)
