"""pcaptools.compare on the two lab samples (VPC native routing vs Calico VXLAN), checked against dpkt, manifests and truth."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import pcaptools
from pcaptools.cli import app, main
from pcaptools.compare import METRICS, Comparison
from pcaptools.render.figures import save_figures

ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))
VPC, CALICO = ROOT / "vpc", ROOT / "calico-vxlan"

pytestmark = pytest.mark.skipif(not (VPC / "manifest.json").exists() or not (CALICO / "manifest.json").exists(),
                                reason="lab samples missing under sample_pcaps/")  # fmt: skip


@pytest.fixture(scope="module")
def cmp() -> Comparison:
    return pcaptools.compare_captures([VPC, CALICO])


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _truth(d: Path) -> dict:
    return json.loads((d / "truth.json").read_text())


def _frames(d: Path, role: str):
    """(ethernet frame) for every record of every capture of ``role`` in the manifest, read with dpkt."""
    for c in _manifest(d)["captures"]:
        if c["role"] != role:
            continue
        with open(d / c["file"], "rb") as f:
            for _, buf in dpkt.pcap.Reader(f):
                yield dpkt.ethernet.Ethernet(buf), len(buf)


def _vxlan(eth, port: int):
    """(outer IP, inner Ethernet frame bytes) when ``eth`` carries VXLAN on ``port``, else None."""
    ip = eth.data
    if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == port:
        return ip, bytes(ip.data.data)[8:]
    return None


def test_mode_vni_and_port_come_from_the_packets_and_match_the_lab_config(cmp):
    overlay = _manifest(CALICO)["network"]["overlay"]
    assert _manifest(VPC)["network"]["overlay"] is None
    assert cmp.value("data-plane mode", "calico-vxlan") == overlay["type"] == "vxlan"
    assert cmp.value("VNI / key", "calico-vxlan") == [overlay["vni"]]
    assert cmp.value("tunnel UDP port", "calico-vxlan") == [overlay["udp_port"]]
    assert cmp.value("data-plane mode", "vpc") == "native"
    assert cmp.value("VNI / key", "vpc") is None and cmp.value("tunnel UDP port", "vpc") is None
    assert cmp.value("pod routing (inventory + packets)", "vpc") == "native"
    assert cmp.value("pod routing (inventory + packets)", "calico-vxlan") == "overlay"


def test_vxlan_overhead_per_packet_is_the_outer_headers_dpkt_reads(cmp):
    port = _manifest(CALICO)["network"]["overlay"]["udp_port"]
    per_packet, total_encap, total_wire = [], 0, 0
    for eth, wire in _frames(CALICO, "node-uplink"):
        total_wire += wire
        v = _vxlan(eth, port)
        if v is None:
            continue
        outer_ip, inner = v
        # outer Ethernet + outer IP header + UDP + VXLAN: everything the wire carries beyond the inner frame
        expected = 14 + outer_ip.hl * 4 + 8 + 8
        assert wire - len(inner) == expected
        per_packet.append(expected)
        total_encap += expected
    assert per_packet, "no VXLAN frames on the calico uplinks"
    assert cmp.value("encapsulation per tunnelled packet", "calico-vxlan") == statistics.median(per_packet)
    assert cmp.value("MTU reduction from encapsulation", "calico-vxlan") == statistics.median(per_packet)
    wb = cmp.wire_bytes.set_index("label")
    assert wb.loc["calico-vxlan", "encapsulation"] == total_encap
    assert wb.loc["calico-vxlan", "total"] == total_wire
    share = cmp.value("uplink bytes that are encapsulation", "calico-vxlan")
    assert share == pytest.approx(100 * total_encap / total_wire, abs=0.01)


def test_vpc_has_zero_encapsulation_overhead(cmp):
    assert not any(c["encapsulated"] for c in _truth(VPC)["connections"])
    for metric in ("encapsulation per tunnelled packet", "uplink bytes that are encapsulation",
                   "encapsulation per uplink flow (median)", "encapsulation vs payload, full-size segments",
                   "MTU reduction from encapsulation"):  # fmt: skip
        assert cmp.value(metric, "vpc") == 0, metric
    assert cmp.wire_bytes.set_index("label").loc["vpc", "encapsulation"] == 0
    assert cmp.value("overlay MTU implied", "vpc") is None  # no tunnel: n/a, not 0


def test_calico_flows_carry_encapsulation_and_full_size_segments_pay_for_it(cmp):
    assert cmp.value("encapsulation per uplink flow (median)", "calico-vxlan") > 0
    assert cmp.value("encapsulation vs payload, full-size segments", "calico-vxlan") > 0
    assert cmp.value("payload share of wire, full-size segments", "calico-vxlan") < cmp.value("payload share of wire, full-size segments", "vpc")


def test_largest_packet_inside_the_overlay_fits_uplink_mtu_minus_overhead(cmp):
    port = _manifest(CALICO)["network"]["overlay"]["udp_port"]
    outer_max = inner_max = 0
    for eth, _ in _frames(CALICO, "node-uplink"):
        v = _vxlan(eth, port)
        if v is not None:
            outer_max = max(outer_max, v[0].len)
            inner_max = max(inner_max, dpkt.ethernet.Ethernet(v[1]).data.len)
    assert cmp.value("largest IP packet on the uplink wire", "calico-vxlan") == outer_max
    assert cmp.value("largest IP packet inside the tunnel", "calico-vxlan") == inner_max
    overhead = cmp.value("encapsulation per tunnelled packet", "calico-vxlan")
    assert inner_max <= outer_max - overhead
    assert cmp.value("overlay MTU implied", "calico-vxlan") == outer_max - overhead
    # the calico pods' MTU (manifest network.mtu) bounds what they send, and the MSS they announce
    assert cmp.value("largest IP packet on pod veths", "calico-vxlan") <= _manifest(CALICO)["network"]["mtu"]
    assert cmp.value("path MTU implied by the effective MSS", "calico-vxlan") <= outer_max - overhead


def test_mss_announced_by_pods_is_the_most_common_syn_mss_dpkt_sees(cmp):
    for d, label in ((VPC, "vpc"), (CALICO, "calico-vxlan")):
        pods = {c["client"]["ip"] for c in _truth(d)["connections"] if c["client"]["kind"] == "pod"}
        seen = []
        for eth, _ in _frames(d, "pod-veth"):
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.flags & dpkt.tcp.TH_SYN:
                if dpkt.utils.inet_to_str(ip.src) in pods:
                    opts = dict(dpkt.tcp.parse_opts(ip.data.opts))
                    if dpkt.tcp.TCP_OPT_MSS in opts:
                        seen.append(int.from_bytes(opts[dpkt.tcp.TCP_OPT_MSS], "big"))
        assert seen
        assert cmp.value("MSS announced by pods", label) == statistics.mode(seen)
        eff = cmp.value("effective MSS (median over connections)", label)
        assert cmp.value("path MTU implied by the effective MSS", label) == eff + 40
    assert cmp.value("MSS announced by pods", "calico-vxlan") < cmp.value("MSS announced by pods", "vpc")


def test_fragment_and_frag_needed_counts_match_dpkt(cmp):
    for d, label in ((VPC, "vpc"), (CALICO, "calico-vxlan")):
        frags = need = 0
        for c in _manifest(d)["captures"]:
            with open(d / c["file"], "rb") as f:
                for _, buf in dpkt.pcap.Reader(f):
                    ip = dpkt.ethernet.Ethernet(buf).data
                    if not isinstance(ip, dpkt.ip.IP):
                        continue
                    frags += bool(ip.mf or ip.offset)
                    need += isinstance(ip.data, dpkt.icmp.ICMP) and ip.data.type == 3 and ip.data.code == 4
        assert cmp.value("IP fragments", label) == frags
        assert cmp.value("ICMP frag-needed / packet-too-big", label) == need
        if not need:
            assert cmp.value("MTUs in those ICMP messages", label) is None


def _truth_cross_node_pod_paths(d: Path) -> list[list[dict]]:
    return [c["path"]["forward"] for c in _truth(d)["connections"]
            if c["client"]["kind"] == "pod" and c["backend"]["kind"] == "pod" and c["client"]["node"] != c["backend"]["node"]]  # fmt: skip


def test_cross_node_pod_to_pod_crosses_more_points_under_calico_as_in_truth(cmp):
    med = {}
    for d, label in ((VPC, "vpc"), (CALICO, "calico-vxlan")):
        fwd = _truth_cross_node_pod_paths(d)
        assert cmp.value("cross-node pod-to-pod connections", label) == len(fwd)
        med[label] = statistics.median(len(p) for p in fwd)
        assert cmp.value("capture points crossed (median)", label) == med[label]
        overlay = _manifest(d)["network"]["overlay"]
        dev = overlay["device"] if overlay else None
        assert cmp.value("tunnel devices crossed (median)", label) == statistics.median(sum(h["interface"] == dev for h in p) for p in fwd)
    assert med["calico-vxlan"] > med["vpc"]
    assert cmp.value("tunnel devices crossed (median)", "calico-vxlan") > cmp.value("tunnel devices crossed (median)", "vpc") == 0


def test_latency_per_kind_accounts_for_every_truth_connection(cmp):
    for d, label in ((VPC, "vpc"), (CALICO, "calico-vxlan")):
        lat = cmp.latency.loc[cmp.latency["label"] == label]
        assert lat["connections"].sum() == len(_truth(d)["connections"])
        assert (lat["median_ns"] > 0).all() and (lat["p90_ns"] >= lat["median_ns"]).all()
        hop = cmp.hop_latency.loc[cmp.hop_latency["label"] == label]
        assert (hop["median_ns"] >= 0).all() and (hop["count"] > 0).all()
        assert cmp.value("cross-node pod-to-pod first packet, p90", label) >= cmp.value("cross-node pod-to-pod first packet, median", label) > 0
    # one hop per consecutive pair of the truth forward path
    for d, label in ((VPC, "vpc"), (CALICO, "calico-vxlan")):
        n_points = statistics.median(len(p) for p in _truth_cross_node_pod_paths(d))
        assert len(cmp.hop_latency.loc[cmp.hop_latency["label"] == label]) == n_points - 1


def test_summary_has_one_row_per_metric_with_unit_doc_and_a_column_per_set(cmp):
    s = cmp.summary
    assert list(s.columns) == ["key", "section", "metric", "unit", "vpc", "calico-vxlan", "doc"]
    assert list(s["metric"]) == [m[1] for m in METRICS.values()]
    assert list(s["key"]) == list(METRICS)
    assert s["doc"].str.len().gt(10).all()


def test_figures_are_written_as_readable_pngs(cmp, tmp_path):
    from matplotlib.image import imread

    paths = save_figures(cmp, tmp_path / "figs")
    assert {p.stem for p in paths} == {"wire_bytes", "latency", "hop_latency", "mtu"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert np.ptp(img[..., :3]) > 0.5  # not a blank canvas


def test_compare_accepts_labels_and_loaded_capture_sets():
    cs = pcaptools.CaptureSet.load(VPC)
    c = pcaptools.compare_captures({"mine": cs}, inventory=VPC / "inventory.json")
    assert c.labels == ["mine"]
    assert c.value("data-plane mode", "mine") == "native"
    assert c.value("cross-node pod-to-pod connections", "mine") == len(_truth_cross_node_pod_paths(VPC))


def test_without_inventory_pod_metrics_are_na_not_zero():
    c = pcaptools.compare_captures({"vpc": pcaptools.CaptureSet.load(VPC)})
    assert c.value("cross-node pod-to-pod connections", "vpc") is None
    assert c.value("pod routing (inventory + packets)", "vpc") is None
    assert c.value("data-plane mode", "vpc") == "native"
    assert any("inventory" in n for n in c.notes["vpc"])


def test_cli_json_contract():
    res = CliRunner().invoke(app, ["compare", str(VPC), str(CALICO), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [c["label"] for c in doc["capture_sets"]] == ["vpc", "calico-vxlan"]
    rows = {r["metric"]: r for r in doc["summary"]}
    assert len(rows) == len(METRICS)
    assert all(set(r) == {"section", "metric", "unit", "doc", "values"} and set(r["values"]) == {"vpc", "calico-vxlan"} for r in rows.values())
    assert rows["VNI / key"]["values"]["vpc"] is None
    assert rows["data-plane mode"]["values"] == {"vpc": "native", "calico-vxlan": "vxlan"}
    assert {"mode", "wire_bytes", "points", "latency", "hop_latency", "cross_node"} <= set(doc)


def test_cli_table_says_na_and_writes_csv_and_figures(tmp_path):
    out = tmp_path / "summary.csv"
    res = CliRunner().invoke(app, ["compare", str(VPC), str(CALICO), "-o", str(out), "--figures", str(tmp_path / "f")],
                             env={"COLUMNS": "200"})  # fmt: skip
    assert res.exit_code == 0, res.output
    vni = [line for line in res.output.splitlines() if "VNI / key" in line]
    assert len(vni) == 1 and "n/a" in vni[0] and "4096" in vni[0]
    back = pd.read_csv(out)
    assert len(back) == len(METRICS) and {"vpc", "calico-vxlan", "unit", "doc"} <= set(back.columns)
    assert len(list((tmp_path / "f").glob("*.png"))) == 4


def test_cli_writes_the_summary_as_parquet_with_the_csv_values_as_text(tmp_path):
    """A value column mixes text ('native') and numbers (MTU): Parquet holds it as text, the CSV's values."""
    for name in ("s.csv", "s.parquet"):
        res = CliRunner().invoke(app, ["compare", str(VPC), str(CALICO), "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    csv = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    pq = pd.read_parquet(tmp_path / "s.parquet")
    assert list(pq.columns) == list(csv.columns) and len(pq) == len(METRICS)
    for col in ("vpc", "calico-vxlan"):
        assert pq[col].fillna("").astype(str).tolist() == csv[col].tolist()
    assert "native" in pq["vpc"].tolist() and any(v.isdigit() for v in pq["vpc"].dropna())

def test_cli_bad_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing"), str(VPC)]) == 2
    assert main(["compare", str(tmp_path)]) == 2  # exists, no manifest.json
    assert main(["compare", str(VPC), "-o", "summary.txt"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if line.startswith("pcaptools: ")]
    assert len(err) == 3 and all(line.startswith(("pcaptools: ", "Usage: pcaptools compare")) for line in lines)
    assert "missing" in err[0] and "manifest.json" in err[1]
