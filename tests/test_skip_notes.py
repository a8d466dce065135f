"""The readers' skip notes: one helper (fmt.shared_file_notes) for the in-memory capture set and the streamed
correlation, so an -i any capture split into several points says its skipped records once, alike in and out of memory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pcaptools.cli import main
from pcaptools.fmt import reader_notes, shared_file_notes

ROOT = Path(__file__).resolve().parents[1]
SLL2 = ROOT / "tests" / "data" / "peer" / "zeek" / "Traces" / "linux_dlt_sll2.pcap"  # 6 records on ifindexes 1 and 26
ETH = ROOT / "tests" / "data" / "own" / "eth.pcap"


def _set_with_a_cut_any_capture(tmp: Path) -> Path:
    (tmp / "node-1").mkdir()
    (tmp / "node-2").mkdir()
    (tmp / "node-1" / "any.pcap").write_bytes(SLL2.read_bytes()[:-5])  # the last record cut: truncated_record 1
    shutil.copy(ETH, tmp / "node-2" / "eth0.pcap")
    return tmp


def test_a_file_two_points_share_says_its_skips_once():
    one = {"a.pcap": {"truncated_record": 1}}
    assert shared_file_notes([one, dict(one), {"b.pcap": {}}, None]) == reader_notes(one)
    assert len(shared_file_notes([one, one])) == 1


def test_an_any_capture_split_into_points_notes_its_skip_once_in_memory_and_streamed(tmp_path, capsys):
    src = _set_with_a_cut_any_capture(tmp_path)
    cut = str(src / "node-1" / "any.pcap")
    note = f"{cut}: 1 record(s) skipped by the reader (truncated_record 1); `pcaptools info {cut}` says where and why"
    docs = []
    for extra in ([], ["--memory", "16MiB"]):
        assert main(["correlate", "--json", *extra, str(src)]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert sum(p["point"].startswith("node-1:") for p in doc["points"]) == 2  # the file is two capture points
        docs.append([n for n in doc["notes"] if "skipped by the reader" in n])
    assert docs[0] == docs[1] == [note]
