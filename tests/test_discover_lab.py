"""A lab run read without its manifest (the layout a real cluster's capture script writes) gives the manifest's paths."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

import pytest
from test_discover import agreement

import pcaptools
from pcaptools.k8s.discover import load_captures
from pcaptools.k8s.paths import paths
from tests.lab_support import REASON

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def any_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if REASON:
        pytest.skip(REASON)
    from pcaptools.lab import run_lab

    # one connection of each kind (8): under load the UDP conntrack entry (30 s) must outlive the run
    out = tmp_path_factory.mktemp("byo-any")
    return run_lab(out, cni="calico-vxlan", any_capture=True, connections=8, prefix=f"ptl{secrets.token_hex(2)}-").parent


def _reference(manifest: Path, inv: Path):
    # a reference manifest written in tmp_path names the lab's files where they are: outside its directory
    return paths(pcaptools.correlate(pcaptools.CaptureSet.load(manifest, allow_outside=True)), inv)


def test_lab_writes_links_json_beside_each_any_capture(any_lab):
    man = json.loads((any_lab / "manifest.json").read_text())
    anys = [c for c in man["captures"] if c["interface"] == "any"]
    assert len(anys) == 3
    for c in anys:
        links = json.loads((any_lab / c["links"]).read_text())
        assert c["links"] == f"{c['node']}/{c['node']}.links.json"
        assert {(d["ifindex"], d["ifname"]) for d in links} == {(i["ifindex"], i["interface"]) for i in c["interfaces"]}


def test_lab_run_without_manifest_gives_the_manifests_paths(any_lab, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(any_lab, d, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    ref = _reference(any_lab / "manifest.json", any_lab / "inventory.json")
    cs = load_captures([d], inventory=d / "inventory.json")
    got = paths(pcaptools.correlate(cs), d / "inventory.json")
    score, bad = agreement(ref, got)
    print(f"lab calico-vxlan --any, manifest removed: {score:.0%} of {len(ref)} connections agree")
    assert score == 1.0, bad
    truth = pcaptools.CaptureSet.load(any_lab / "manifest.json")
    assert {(p.name, p.role, p.pod) for p in cs.points} == {(p.name, p.role, p.pod) for p in truth.points}


def test_any_captures_with_only_links_json_give_the_manifests_paths(any_lab, tmp_path):
    man = json.loads((any_lab / "manifest.json").read_text())
    nodes = set(man["nodes"])
    keep = [c for c in man["captures"] if c["node"] not in nodes or c["interface"] == "any"]
    d = tmp_path / "any-only"
    for c in keep:
        for rel in [c["file"], *([c["links"]] if c.get("links") else [])]:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(any_lab / rel, d / rel)
    shutil.copy(any_lab / "inventory.json", d / "inventory.json")
    ref_man = tmp_path / "reference.json"  # the truth, restricted to the same captures
    ref_man.write_text(json.dumps({**man, "captures": [{**c, "file": str(any_lab / c["file"])} for c in keep]}))
    ref = _reference(ref_man, any_lab / "inventory.json")
    cs = load_captures([d], inventory=d / "inventory.json")
    got = paths(pcaptools.correlate(cs), d / "inventory.json")
    score, bad = agreement(ref, got)
    print(f"lab calico-vxlan -i any with only NODE.links.json: {score:.0%} of {len(ref)} connections agree")
    assert score == 1.0, bad
    truth = pcaptools.CaptureSet.load(ref_man, allow_outside=True)
    assert {(p.name, p.role, p.pod) for p in cs.points if p.role != "other"} == {
        (p.name, p.role, p.pod) for p in truth.points if p.role != "other"}  # fmt: skip
    ev = cs.inference
    assert ev.loc[ev["ifindex"] >= 0, "interface_from"].str.startswith("links: ").all()
