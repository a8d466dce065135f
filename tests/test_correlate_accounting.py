"""Every packet-table row given to a correlation is accounted for per capture point: ``rows == matched + unmatched +
not correlated`` (by reason: no IP, link-scoped ICMPv6, no timestamp), equal to the rows the reader decoded, the same
in memory, streamed in windows and matched in spilled partitions."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import dpkt
import numpy as np
import pytest
from correlate_support import DATA, dpkt_packets

import pcaptools.correlate.stream as stream
from pcaptools.cli import main
from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.fingerprint import LINK_SCOPED_ICMPV6, NOT_CORRELATED
from pcaptools.correlate.stream import correlate_files
from pcaptools.decode.registry import LINKTYPE
from pcaptools.io import read_records, summarize
from pcaptools.packets import read_packets

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
CALICO = SAMPLES / "calico-vxlan"
DECODE = ROOT / "tests" / "data" / "decode"
ODD = {  # real captures with ARP, IPv6 neighbour discovery / MLD, or link types other than Ethernet
    "arp": DATA / "community-id-spec/pcaps/arp.pcap",
    "icmp6": DATA / "community-id-spec/pcaps/icmp6.pcap",
    "combined": DATA / "community-id-spec/pcaps/combined.pcap",
    "sll_arp": DATA / "zeek/Traces/linuxsll-arp.pcap",
    "sll2": DATA / "zeek/Traces/linux_dlt_sll2.pcap",
    "null": DECODE / "null.pcap",
    "loop": DECODE / "loop.pcap",
    "any": ROOT / "tests" / "data" / "own" / "any_nano.pcap",  # tcpdump -i any: split into a point per ifindex
    "nflog": DATA / "tcpdump/tests/nflog.pcap",  # LINKTYPE_NFLOG (239), a link type the decoder does not know
    "ipv4_invalid": DATA / "tcpdump/tests/LINKTYPE_IPV4_invalid.pcap",  # an IPv6 packet under LINKTYPE_IPV4
}
DPKT_LINKTYPES = (1, 113, 276)  # what the independent dpkt decoder of correlate_support reads


def _point_specs(files: dict[str, Path]) -> list[str]:
    return [f"{name}:eth0={path}" for name, path in files.items()]


def _assert_every_row_accounted(corr) -> None:
    """rows == matched + unmatched + sum(not_correlated) at every point, every reason present, counts plain ints."""
    counts = corr.point_counts()
    assert [c["point"] for c in counts] == list(corr.matched)
    for c in counts:
        assert list(c["not_correlated"]) == list(NOT_CORRELATED)
        values = [c["rows"], c["matched"], c["unmatched"], *c["not_correlated"].values()]
        assert all(type(v) is int and v >= 0 for v in values), c
        assert c["rows"] == c["matched"] + c["unmatched"] + sum(c["not_correlated"].values()), c


def _independent_reasons(path: Path) -> dict[str, int]:
    """Rows without IP and link-scoped ICMPv6 rows of a capture, decoded with dpkt (correlate_support)."""
    pk = dpkt_packets(str(path))
    proto = pk["proto"].to_numpy()
    nd = (proto == 58) & np.isin(pk["icmp_type"].to_numpy(), LINK_SCOPED_ICMPV6)
    return {"no_ip": int((proto < 0).sum()), "link_scoped_icmpv6": int(nd.sum())}


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_every_point_of_a_lab_sample_accounts_for_every_decoded_row(sample):
    src = SAMPLES / sample
    cs = CaptureSet.load(src)
    corr = correlate(cs)
    _assert_every_row_accounted(corr)
    by_file: dict[str, int] = {}
    for p in cs.points:
        by_file[p.file] = by_file.get(p.file, 0) + corr.rows[p.name]
    for file, rows in by_file.items():
        assert rows == summarize(file)["records"] == len(read_packets(file))
    assert sum(corr.rows.values()) == len(cs)


def test_arp_frames_of_a_pod_veth_are_counted_as_no_ip():
    """calib25a49965b6.pcap: 216 records, every one decoded; its ARP frames (counted here with dpkt) were silent."""
    path = CALICO / "node-1" / "calib25a49965b6.pcap"
    with open(path, "rb") as f:
        frames = [dpkt.ethernet.Ethernet(buf) for _, buf in dpkt.pcap.Reader(f)]
    arp = sum(e.type == dpkt.ethernet.ETH_TYPE_ARP for e in frames)
    assert arp > 0
    corr = correlate(CaptureSet.load(CALICO))
    point = "node-1:calib25a49965b6"
    assert corr.not_correlated[point] == {"no_ip": arp, "link_scoped_icmpv6": 0, "no_timestamp": 0}
    assert corr.rows[point] == len(frames) == corr.matched[point] + corr.unmatched[point] + arp


@pytest.mark.parametrize("name", sorted(ODD))
def test_capture_with_arp_nd_or_another_link_type_accounts_for_every_row(name):
    path = ODD[name]
    corr = correlate(CaptureSet.load(points=[f"n1:eth0={path}"]))
    _assert_every_row_accounted(corr)
    rows = sum(corr.rows.values())
    assert rows == summarize(path)["records"] == len(read_packets(path))
    got = {r: sum(v[r] for v in corr.not_correlated.values()) for r in NOT_CORRELATED}
    linktype = int(read_records(path).linktype[0])
    if linktype in DPKT_LINKTYPES:
        assert {k: got[k] for k in ("no_ip", "link_scoped_icmpv6")} == _independent_reasons(path)
    if linktype not in LINKTYPE:  # nothing of an unknown link type is decoded: every row is left out as no IP
        assert got["no_ip"] == rows > 0


def test_odd_captures_have_rows_of_both_link_bound_reasons():
    """The set above holds what it is meant to test: rows without IP and IPv6 neighbour discovery / MLD."""
    corr = correlate(CaptureSet.load(points=_point_specs(ODD)))
    _assert_every_row_accounted(corr)
    total = {r: sum(v[r] for v in corr.not_correlated.values()) for r in NOT_CORRELATED}
    assert total["no_ip"] > 0 and total["link_scoped_icmpv6"] > 0


def _simple_blocks(src: Path, dst: Path, every: int = 3) -> np.ndarray:
    """``src`` (an Ethernet pcap) rewritten as pcapng with every ``every``-th record a Simple Packet Block (no timestamp)
    and the others Enhanced Packet Blocks; returns which records are simple."""
    rb = read_records(str(src))
    simple = np.arange(len(rb)) % every == 1
    out = [struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28),
           struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20)]  # fmt: skip
    for i in range(len(rb)):
        data = bytes(rb.packet(i))
        pad = b"\0" * (-len(data) % 4)
        if simple[i]:
            n = 16 + len(data) + len(pad)
            out.append(struct.pack("<III", 3, n, len(data)) + data + pad + struct.pack("<I", n))
        else:
            us = int(rb.ts_ns[i]) // 1000
            n = 32 + len(data) + len(pad)
            out.append(struct.pack("<IIIIIII", 6, n, 0, us >> 32, us & 0xFFFFFFFF, len(data), int(rb.wirelen[i]))
                       + data + pad + struct.pack("<I", n))  # fmt: skip
    dst.write_bytes(b"".join(out))
    return simple


def test_rows_without_a_timestamp_are_counted_after_no_ip_and_link_scoped(tmp_path):
    """A pcapng whose Simple Packet Blocks carry no timestamp (ts_ns -1): those rows are ``no_timestamp`` unless they
    have no IP or are neighbour discovery, which come first (one reason a row)."""
    src = ODD["combined"]
    dst = tmp_path / "simple.pcapng"
    simple = _simple_blocks(src, dst)
    pk = dpkt_packets(str(src))
    proto = pk["proto"].to_numpy()
    nd = (proto == 58) & np.isin(pk["icmp_type"].to_numpy(), LINK_SCOPED_ICMPV6)
    want = {"no_ip": int((proto < 0).sum()), "link_scoped_icmpv6": int(nd.sum()),
            "no_timestamp": int((simple & (proto >= 0) & ~nd).sum())}  # fmt: skip
    assert min(want.values()) > 0
    corr = correlate(CaptureSet.load(points=[f"n1:eth0={dst}"]))
    _assert_every_row_accounted(corr)
    assert corr.not_correlated["n1:eth0"] == want
    assert corr.rows["n1:eth0"] == len(pk)


def _counts(corr) -> tuple[dict, dict, dict, dict]:
    return corr.rows, corr.matched, corr.unmatched, corr.not_correlated


def test_streamed_in_small_windows_counts_every_row_once_like_the_in_memory_run(tmp_path):
    """The survey fingerprints every row too: only pass 2 counts them, so the streamed counts are the in-memory ones."""
    one, _ = correlate_files(CALICO, memory=1 << 40, out=tmp_path / "one.parquet")
    win, stats = correlate_files(CALICO, window_rows=300, out=tmp_path / "win.parquet")
    assert stats.windows >= 20 and stats.passes == 2
    assert _counts(win) == _counts(one)
    assert one.not_correlated["node-1:calib25a49965b6"]["no_ip"] > 0
    _assert_every_row_accounted(win)


def test_streamed_odd_captures_count_like_the_in_memory_run(tmp_path):
    pts = _point_specs(ODD)
    one, _ = correlate_files(points=pts, memory=1 << 40, out=tmp_path / "one.parquet")
    win, stats = correlate_files(points=pts, window_rows=64, out=tmp_path / "win.parquet")
    assert stats.passes == 2
    assert _counts(win) == _counts(one)
    assert one.to_dict()["not_correlated"] == win.to_dict()["not_correlated"]


def test_partitioned_run_counts_like_the_in_memory_run(monkeypatch, tmp_path):
    """A budget far below one window: windows spilled in fingerprint partitions, rows counted once as they are read."""
    monkeypatch.setattr(stream, "MIN_WINDOW_ROWS", 128)
    one, _ = correlate_files(CALICO, memory=1 << 40, out=tmp_path / "one.parquet")
    part, stats = correlate_files(CALICO, memory=16 << 20, out=tmp_path / "part.parquet")
    assert stats.partitions > 1 and stats.passes == 2
    assert _counts(part) == _counts(one)


def test_correlate_json_gives_each_point_its_rows_and_reasons_as_integers(capsys):
    from jsonschema import Draft202012Validator

    from pcaptools.render.records import json_schema

    assert main(["correlate", str(CALICO), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    schema = json_schema("correlate")
    Draft202012Validator(schema).validate(doc)
    reasons = schema["properties"]["points"]["items"]["properties"]["not_correlated"]
    assert reasons["required"] == list(reasons["properties"]) == list(NOT_CORRELATED)
    for p in doc["points"]:
        assert all(type(v) is int for v in (p["rows"], p["matched"], p["unmatched"], *p["not_correlated"].values()))
        assert p["rows"] == p["matched"] + p["unmatched"] + sum(p["not_correlated"].values())
    calib = next(p for p in doc["points"] if p["point"] == "node-1:calib25a49965b6")
    assert calib["rows"] == summarize(CALICO / "node-1" / "calib25a49965b6.pcap")["records"] and calib["not_correlated"]["no_ip"] > 0


def test_correlate_table_shows_rows_and_what_was_not_correlated(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["correlate", str(CALICO)]) == 0
    text = capsys.readouterr().out
    corr = correlate(CaptureSet.load(CALICO))
    arp = corr.not_correlated["node-1:calib25a49965b6"]["no_ip"]
    head = next(line for line in text.splitlines() if "not correlated" in line)
    assert all(c in head for c in ("point", "rows", "matched", "unmatched"))
    line = next(line for line in text.splitlines() if "node-1:calib25a49965b6" in line and "no IP" in line)
    assert f"{arp} (no IP: {arp})" in line and f"{corr.rows['node-1:calib25a49965b6']}" in line
