"""pcaptools why on the shipped lab captures: healthy sets blame nothing; packets removed from one capture point
(a drop before a pod veth, a gap at one point) are located to the truth's pair of points and named."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

import pcaptools
from pcaptools.cli import app, main
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.diagnose import CAUSES, SCHEMA_PATH, diagnose
from pcaptools.k8s.discover import manifest_drops

ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))
SAMPLES = sorted(p.parent.name for p in ROOT.glob("*/truth.json"))


def _frames(d: Path) -> list[tuple[dict, object]]:
    man = json.loads((d / "manifest.json").read_text())
    out = []
    for e in man["captures"]:
        e = dict(e, file=str(d / e["file"]))
        out.append((e, pcaptools.read_packets(e["file"])))
    return out


@pytest.fixture(scope="module", params=SAMPLES or [None])
def sample(request):
    if request.param is None:
        pytest.skip("no lab samples under sample_pcaps/")
    d = ROOT / request.param
    return d, _frames(d), json.loads((d / "truth.json").read_text())


def _point(c: dict) -> str:
    return f"{c['node']}:{c['interface']}"


def _conn(dg, t: dict):
    m = dg.connections[(dg.connections["client_addr"] == t["src"]) & (dg.connections["client_port"] == t["sport"])]
    assert len(m) == 1, f"{len(m)} connections with client {t['src']}:{t['sport']}"
    return int(m["connection"].iloc[0])


def _cross_node(truth: dict) -> dict:
    """A cross-node pod-to-pod connection whose tuple at the backend no other connection reused (port reuse
    after DNAT merges connections, see the paths module's limits)."""
    ok = [c for c in truth["connections"] if c.get("ok")]
    key = lambda c: tuple(sorted(c["server_tuple"].items()))  # noqa: E731
    return next(c for c in ok if c["kind"] == "pod-direct-cross-node" and sum(key(o) == key(c) for o in ok) == 1)


def test_healthy_capture_sets_blame_no_connection(sample):
    d, frames, truth = sample
    dg = diagnose(CaptureSet.from_frames(frames), None, d / "inventory.json")
    assert set(dg.connections["status"]) == {"ok"}
    assert dg.losses.empty
    ok = [c for c in truth["connections"] if c.get("ok")]
    for c in ok:
        _conn(dg, c["client_tuple"])
    assert len(dg.connections) == len(ok)


def test_packets_never_reaching_the_pod_veth_are_a_drop_inside_the_backend_node(sample):
    d, frames, truth = sample
    c = _cross_node(truth)
    fwd = c["path"]["forward"]
    last, t = fwd[-1], fwd[-1]["tuple"]
    cut, removed = [], 0
    for e, df in frames:
        # the pod never got them, so it never answered: no reply anywhere (a reply acknowledging them would show
        # they arrived, and the capture missed them)
        df = df[~((df["dst"].astype(str) == t["src"]) & (df["dport"] == t["sport"]))]
        if e["node"] == last["node"] and e["interface"] == last["interface"]:
            gone = (df["src"].astype(str) == t["src"]) & (df["sport"] == t["sport"])
            removed, df = int(gone.sum()), df[~gone]
        cut.append((e, df))
    assert removed > 0
    dg = diagnose(CaptureSet.from_frames(cut), None, d / "inventory.json")
    conn = _conn(dg, c["client_tuple"])
    ls = dg.losses[dg.losses["connection"] == conn]
    assert len(ls) == 1, ls.to_dict("records")
    loss = ls.iloc[0]
    assert (loss["direction"], loss["last_seen"], loss["first_missed"]) == ("forward", _point(fwd[-2]), _point(last))
    assert loss["node"] == c["backend"]["node"]
    assert loss["cause"] == "policy-drop" and 0 < loss["confidence"] <= 1
    assert loss["packets"] == removed
    assert dg.connections.set_index("connection").loc[conn, "status"] == "failed"
    others = dg.connections[dg.connections["connection"] != conn]
    assert set(others["status"]) == {"ok"}
    # the SYN was lost: the timeline shows where its attempt was last seen
    tl = dg.timeline[(dg.timeline["connection"] == conn) & dg.timeline["packet"].str.startswith("SYN ")]
    assert not tl.empty and not tl["reached"].any()
    assert tl["point"].iloc[-1] == _point(fwd[-2])


def test_a_packet_missing_at_one_point_but_seen_later_is_capture_loss(sample, tmp_path):
    d, frames, truth = sample
    c = _cross_node(truth)
    fwd = c["path"]["forward"]
    mid = next(x for x in fwd[1:-1] if x["interface"] == "eth0" and x["node"] == c["backend"]["node"])
    t = mid["tuple"]
    cut, dropped = [], 0
    for e, df in frames:
        if e["node"] == mid["node"] and e["interface"] == mid["interface"]:
            rows = df.index[(df["src"].astype(str) == t["src"]) & (df["sport"] == t["sport"])
                            & (df["dst"].astype(str) == t["dst"]) & (df["dport"] == t["dport"])]
            df = df.drop(rows[2:3])
            dropped = len(rows[2:3])
        cut.append((e, df))
    assert dropped == 1
    dg = diagnose(CaptureSet.from_frames(cut), None, d / "inventory.json")
    conn = _conn(dg, c["client_tuple"])
    ls = dg.losses[dg.losses["connection"] == conn]
    assert list(ls["cause"]) == ["capture-loss"]
    assert ls["first_missed"].iloc[0] == _point(mid) and int(ls["packets"].iloc[0]) == 1
    assert dg.connections.set_index("connection").loc[conn, "status"] == "ok"
    # the capture's own drop counter (a manifest's tcpdump counts) backs the verdict up
    man = json.loads((d / "manifest.json").read_text())
    entry = next(e for e in man["captures"] if e["node"] == mid["node"] and e["interface"] == mid["interface"])
    entry["tcpdump"] = {**entry.get("tcpdump", {}), "dropped": 1}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    drops = manifest_drops(tmp_path)
    assert drops == {_point(mid): 1}
    ls2 = diagnose(CaptureSet.from_frames(cut), None, d / "inventory.json", capture_drops=drops).losses
    hit = ls2[ls2["connection"] == conn].iloc[0]
    assert hit["cause"] == "capture-loss" and hit["confidence"] > ls["confidence"].iloc[0] and "reports 1" in hit["evidence"]


def test_why_json_follows_its_schema_and_paths_json_carries_the_same_fields(sample):
    d, _, truth = sample
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["$defs"]["loss"]["properties"]["cause"]["enum"]) == set(CAUSES)
    res = CliRunner().invoke(app, ["why", str(d), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    jsonschema.validate(doc, schema)
    assert doc["schema_version"] == 1
    assert len(doc["connections"]) == sum(1 for c in truth["connections"] if c.get("ok"))
    res = CliRunner().invoke(app, ["paths", str(d), "--json"])
    assert res.exit_code == 0, res.output
    recs = json.loads(res.output)["paths"]
    why = {c["connection"]: c for c in doc["connections"]}
    for r in recs:
        if r["connection"] in why:
            assert r["status"] == why[r["connection"]]["status"]
            assert r["losses"] == why[r["connection"]]["losses"]


def test_why_without_a_manifest_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["why", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcaptools: ") and "manifest.json" in err[0]


def test_ipv6_frames_within_the_1280_byte_minimum_mtu_are_never_an_mtu_blackhole():
    """IPv6 links carry 1280 IP bytes at least (RFC 8200), IPv4 links 576: below that a loss is not the MTU's doing."""
    from pcaptools.k8s.diagnose import _mtu_floor

    assert _mtu_floor("10.244.1.5") == 576 + 14
    assert _mtu_floor("fd00:10:244::5") == 1280 + 14
    assert _mtu_floor(None) == 576 + 14


def test_journeys_of_a_diagnosis_are_made_unique_in_or_out_of_hops_order():
    """diagnose's journey list skips np.unique's hashing when the hops are in their causal order (grouped by journey,
    as paths leaves them), and gives np.unique's answer for any order."""
    import numpy as np

    from pcaptools.k8s.diagnose import _unique
    from pcaptools.k8s.paths import load_paths

    j = load_paths(ROOT / "calico-vxlan").hops["journey"].to_numpy(np.int64)
    assert len(j) > 1000 and (j[1:] >= j[:-1]).all()
    shuffled = np.random.default_rng(0).permutation(j)
    for a in (j, shuffled, j[:0], j[:1]):
        assert np.array_equal(_unique(a), np.unique(a))
    assert len(_unique(j)) == len(np.unique(shuffled)) < len(j)  # journeys of several sightings appear once
