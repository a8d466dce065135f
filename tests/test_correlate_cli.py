"""`pcaptools correlate` / `pcaptools merge` on the lab samples and real captures; merged pcapng read back by tshark."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from correlate_support import DATA, dpkt_packets

from pcaptools.cli import main
from pcaptools.correlate import capture_set
from pcaptools.io import read_records

SAMPLE = next(iter(sorted(Path(__file__).parent.parent.glob("sample_pcaps/*/manifest.json"))), None)


@pytest.fixture(autouse=True)
def _decoder(monkeypatch):
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:  # until the decoder lands, the dpkt test decoder stands in
        monkeypatch.setattr(capture_set, "_default_decoder", lambda: dpkt_packets)


def _points(tmp_path) -> list[str]:
    src = str(DATA / "tcpdump/tests/mptcp-v0.pcap")
    shifted = tmp_path / "b.pcap"
    subprocess.run(["editcap", "-t", "-0.25", src, str(shifted)], check=True, capture_output=True)
    return ["--point", f"node-a:eth0={src}", "--point", f"node-b:eth0={shifted}"]


def test_correlate_json_reports_offsets_matches_and_latency(tmp_path, capsys):
    out = tmp_path / "hops.parquet"
    assert main(["correlate", *_points(tmp_path), "--json", "-o", str(out)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert abs(d["clock_offsets"]["node-b"]["offset_ns"] + 250_000_000) < 100_000
    points = {p["point"]: p for p in d["points"]}
    assert points["node-a:eth0"]["matched"] == points["node-b:eth0"]["matched"] > 0
    assert points["node-a:eth0"]["unmatched"] == points["node-b:eth0"]["unmatched"] == 0
    assert d["hop_latency"] and all(isinstance(v["p99_ns"], int) for v in d["hop_latency"])
    hops = pd.read_parquet(out)
    assert hops["journey"].nunique() == d["journeys"]


def test_correlate_table_output_names_every_point(tmp_path, capsys):
    assert main(["correlate", *_points(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "node-a:eth0" in text and "node-b:eth0" in text and "clock offsets" in text


def test_correlate_help_has_an_example(capsys):
    assert main(["correlate", "--help"]) == 0
    assert "Example: pcaptools correlate" in capsys.readouterr().out


def test_bad_manifest_is_one_line_error(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("[1, 2]")
    assert main(["correlate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcaptools: ") and err.count("\n") == 1


@pytest.mark.skipif(SAMPLE is None, reason="no lab samples under sample_pcaps/")
def test_merge_writes_time_ordered_pcapng_with_one_interface_per_point(tmp_path, capsys):
    out = tmp_path / "merged.pcapng"
    assert main(["merge", str(SAMPLE.parent), "-o", str(out)]) == 0
    man = json.loads(SAMPLE.read_text())
    total = sum(len(read_records(SAMPLE.parent / c["file"])) for c in man["captures"])
    info = subprocess.run(["capinfos", "-c", "-I", "-o", str(out)], capture_output=True, text=True, check=True).stdout
    assert f"Number of packets:   {total}" in info or str(total) in info.split("Number of packets:")[1].split("\n")[0]
    assert "Strict time order:   True" in info
    rb = read_records(out)
    assert len(rb) == total
    names = {i.name for i in rb.interfaces}
    assert {f"{c['node']}:{c['interface']}" for c in man["captures"]} == names
    assert all(i.description.startswith("k8s.node=") and i.tsresol_ns == 1.0 for i in rb.interfaces)
    assert (rb.ts_ns[1:] >= rb.ts_ns[:-1]).all()


@pytest.mark.skipif(SAMPLE is None, reason="no lab samples under sample_pcaps/")
def test_merge_dedup_keeps_each_journey_once_with_comments(tmp_path):
    full, dedup = tmp_path / "full.pcapng", tmp_path / "dedup.pcapng"
    assert main(["merge", str(SAMPLE.parent), "-o", str(full)]) == 0
    assert main(["merge", str(SAMPLE.parent), "-o", str(dedup), "--dedup"]) == 0
    n_full, n_dedup = len(read_records(full)), len(read_records(dedup))
    assert 0 < n_dedup < n_full
    res = subprocess.run(["tshark", "-r", str(dedup), "-T", "fields", "-e", "frame.comment"], capture_output=True, text=True, check=True)
    comments = [x for x in res.stdout.splitlines() if x.strip()]
    assert comments and all(c.startswith("also at ") for c in comments)
    # every dropped sighting is named in a comment of its kept packet
    assert sum(c.count("also at ") for c in comments) == n_full - n_dedup
