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
from pcaptools.packets import read_packets

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
    lbd = tmp / "ingress" / "nlb"
    lbd.mkdir(parents=True)
    (lbd / "eth0.pcap").write_bytes(_arriving_for_the_ingress(ROOT / "vpc" / "nlb" / "eth0.pcap", dport=30081, ingress="192.168.0.201"))
    cases["lb-ingress"] = ([str(lbd.parent)], {"inventory": str(ROOT / "vpc" / "inventory.json")})
    man = _manifest("vpc")  # a manifest for the nodes, the outside hosts as plain files
    part = tmp / "nodes.json"
    part.write_text(json.dumps({**man, "captures": [{**c, "file": str(ROOT / "vpc" / c["file"])} for c in man["captures"]
                                                    if c["node"] in set(man["nodes"])]}))  # fmt: skip
    plain = [str(ROOT / "vpc" / c["file"]) for c in man["captures"] if c["node"] not in set(man["nodes"])]
    cases["manifest-and-files"] = ([str(part), *plain], {"inventory": str(ROOT / "vpc" / "inventory.json"), "allow_outside": True})
    return cases


def _arriving_for_the_ingress(path: Path, *, dport: int, ingress: str) -> bytes:
    """The balancer's node-side capture (Ethernet, IPv4) with, before each packet to ``dport``, the same packet as it
    arrived: addressed to the LoadBalancer ingress IP (an ip-target balancer's two sides in one capture)."""
    import ipaddress

    import numpy as np

    from pcaptools.io import read_records

    data = path.read_bytes()
    rb = read_records(str(path))
    pk = read_packets(str(path))
    out = [data[:24]]
    for i in range(len(rb)):
        rec = data[int(rb.offset[i]) - 16 : int(rb.offset[i]) + int(rb.caplen[i])]
        if int(pk["dport"].iloc[i]) == dport and pk["proto"].iloc[i] == 6:
            arrived = bytearray(rec)
            arrived[16 + 30 : 16 + 34] = ipaddress.IPv4Address(ingress).packed  # Ethernet 14 + IPv4 dst at 16
            out.append(bytes(arrived))
        out.append(rec)
    assert np.all(rb.record == np.arange(len(rb)))
    return b"".join(out)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[list[str], dict]]:
    return plain_inputs(tmp_path_factory.mktemp("plain"))


CASES = ["calico-vxlan-dir", "calico-vxlan-dir-no-inventory", "calico-vxlan-flat", "vpc-dir", "vpc-dir-no-inventory", "vpc-flat",
         "packets-only", "veth-by-packets", "any-links", "no-evidence", "shared-clock", "pcapng-twice", "pcapng-two-sections",
         "own-files", "decode-files", "manifest-and-files", "lb-ingress"]  # fmt: skip


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


@pytest.mark.parametrize("case", ["lb-ingress", "shared-clock"])
def test_samples_beyond_their_caps_are_the_same_read_whole_or_in_batches(cases, case, monkeypatch):
    """Past CLOCK_KEYS / LB_KEYS a file keeps a hash sample: the same keys either way, and here the same verdicts
    (the balancer still seen translating, the one clock under two names still told)."""
    from pcaptools.k8s import evidence

    inputs, kw = cases[case]
    exact = load_captures(inputs, **kw).inference
    monkeypatch.setattr(evidence, "CLOCK_KEYS", 200)
    monkeypatch.setattr(evidence, "LB_KEYS", 40)
    whole = load_captures(inputs, **kw).inference
    _, bounded = infer_captures(inputs, batch_records=97, **kw)
    pd.testing.assert_frame_equal(whole, bounded.inference)
    assert whole.attrs == bounded.inference.attrs
    pd.testing.assert_frame_equal(exact, whole)
    if case == "shared-clock":
        assert any("identical timestamps" in w for w in whole.attrs["warnings"])
    else:
        assert whole.set_index("point").loc["nlb:eth0", "role_from"] == ("packets: arrive for LoadBalancer ingress 192.168.0.201 "
                                                                          "and leave for nodes (translated here)")
