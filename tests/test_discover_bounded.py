"""Point inference within bounded memory: the evidence summed over packet batches names the same points as the whole table."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pcaptools.k8s.discover import infer_captures, load_captures
from pcaptools.lab import topology

ROOT = Path(__file__).parent.parent / "sample_pcaps"
OWN = Path(__file__).parent / "data" / "own"
DECODE = Path(__file__).parent / "data" / "decode"


def _manifest(sample: str) -> dict:
    return json.loads((ROOT / sample / "manifest.json").read_text())


def plain_inputs(tmp: Path) -> dict[str, tuple[list[str], dict]]:
    """The plain-file inputs the discovery tests read (name -> (inputs, load_captures keywords)), built under ``tmp``."""
    cases: dict[str, tuple[list[str], dict]] = {}
    for s in ("calico-vxlan", "vpc"):
        d = tmp / s
        shutil.copytree(ROOT / s, d, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
        cases[f"{s}-dir"] = ([str(d)], {"inventory": str(d / "inventory.json")})
        cases[f"{s}-dir-no-inventory"] = ([str(d)], {})
        flat = tmp / f"{s}-flat"
        flat.mkdir()
        for i, c in enumerate(_manifest(s)["captures"]):
            data = (ROOT / s / c["file"]).read_bytes()
            if i % 2:
                (flat / f"{c['node']}_{c['interface']}.pcap.gz").write_bytes(gzip.compress(data))
            else:
                (flat / f"{c['node']}-{c['interface']}.pcap").write_bytes(data)
        cases[f"{s}-flat"] = ([str(flat)], {"inventory": str(ROOT / s / "inventory.json")})
    packets_only = tmp / "packets-only"
    packets_only.mkdir()
    shutil.copy(ROOT / "calico-vxlan" / "node-1" / "eth0.pcap", packets_only / "trace1.pcap")
    shutil.copy(ROOT / "calico-vxlan" / "node-3" / "eth0.pcap", packets_only / "trace2.pcap")
    shutil.copy(ROOT / "calico-vxlan" / "nlb" / "eth0.pcap", packets_only / "trace3.pcap")
    shutil.copy(ROOT / "vpc" / "client" / "eth0.pcap", packets_only / "trace4.pcap")
    cases["packets-only"] = ([str(packets_only)], {"inventory": str(ROOT / "calico-vxlan" / "inventory.json")})
    veth = tmp / "veth" / "node-1"
    veth.mkdir(parents=True)
    shutil.copy(ROOT / "vpc" / "node-1" / f"{topology.veth_name('vpc', 'default', 'backend-0')}.pcap", veth / "veth3f2a1b0c.pcap")
    cases["veth-by-packets"] = ([str(veth.parent)], {"inventory": str(ROOT / "vpc" / "inventory.json")})
    anyd = tmp / "any"
    anyd.mkdir()
    shutil.copy(OWN / "any_nano.pcap", anyd / "host-a.pcap")
    (anyd / "host-a.links.json").write_text(json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]))
    cases["any-links"] = ([str(anyd)], {})
    noev = tmp / "no-evidence"
    noev.mkdir()
    shutil.copy(ROOT / "vpc" / "client" / "eth0.pcap", noev / "capture.pcap")
    shutil.copy(ROOT / "vpc" / "nlb" / "eth0.pcap", noev / "trace.pcap")
    shutil.copy(OWN / "any_nano.pcap", noev / "anycap.pcap")
    cases["no-evidence"] = ([str(noev)], {})
    twin = tmp / "one-host-two-names"  # the same capture under two names: one clock
    twin.mkdir()
    for n in ("host-a", "host-b"):
        shutil.copy(ROOT / "vpc" / "node-1" / "eth0.pcap", twin / f"{n}.pcap")
    cases["shared-clock"] = ([str(twin)], {})
    twice = tmp / "twice.pcapng"
    twice.write_bytes((OWN / "dumpcap.pcapng").read_bytes() * 2)
    cases["pcapng-twice"] = ([str(twice)], {})
    cases["pcapng-two-sections"] = ([str(OWN / "two_sections.pcapng")], {})
    cases["own-files"] = ([str(OWN / f) for f in ("eth.pcap", "any_nano.pcapng", "snaplen96.pcap", "truncated_last.pcap")], {})
    cases["decode-files"] = ([str(DECODE / f) for f in ("sll_vxlan.pcap", "tunnels.pcap", "icmp_errors.pcap")], {})
    man = _manifest("vpc")  # a manifest for the nodes, the outside hosts as plain files
    part = tmp / "nodes.json"
    part.write_text(json.dumps({**man, "captures": [{**c, "file": str(ROOT / "vpc" / c["file"])} for c in man["captures"]
                                                    if c["node"] in set(man["nodes"])]}))  # fmt: skip
    plain = [str(ROOT / "vpc" / c["file"]) for c in man["captures"] if c["node"] not in set(man["nodes"])]
    cases["manifest-and-files"] = ([str(part), *plain], {"inventory": str(ROOT / "vpc" / "inventory.json"), "allow_outside": True})
    return cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[list[str], dict]]:
    return plain_inputs(tmp_path_factory.mktemp("plain"))


CASES = ["calico-vxlan-dir", "calico-vxlan-dir-no-inventory", "calico-vxlan-flat", "vpc-dir", "vpc-dir-no-inventory", "vpc-flat",
         "packets-only", "veth-by-packets", "any-links", "no-evidence", "shared-clock", "pcapng-twice", "pcapng-two-sections",
         "own-files", "decode-files", "manifest-and-files"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_evidence_read_in_batches_equals_the_whole_tables(cases, case):
    inputs, kw = cases[case]
    whole = load_captures(inputs, **kw)
    entries, bounded = infer_captures(inputs, batch_records=97, **kw)  # many batches, cut anywhere
    pd.testing.assert_frame_equal(whole.inference, bounded.inference)
    assert whole.inference.attrs == bounded.inference.attrs
    assert whole.points == bounded.points
    assert len(bounded.packets) == 0 and len(entries) >= 1
    if case == "shared-clock":
        assert any("identical timestamps" in w for w in bounded.inference.attrs["warnings"])
