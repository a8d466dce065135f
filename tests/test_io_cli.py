"""``pcaptools info``: the --json contract, the human table, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcaptools.cli import main
from pcaptools.io import read_records

DATA = Path(__file__).parent / "data"


def test_info_json_has_the_stable_keys_for_each_file(capsys: pytest.CaptureFixture[str]) -> None:
    files = [
        DATA / "own" / "two_sections.pcapng",
        DATA / "own" / "eth.pcap.gz",
        DATA / "own" / "truncated_last.pcap",
    ]
    assert main(["info", "--json", *map(str, files)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 1
    out = doc["files"]
    assert [o["path"] for o in out] == [str(f) for f in files]
    for o, f in zip(out, files, strict=True):
        assert {
            "path",
            "format",
            "records",
            "skipped",
            "link_types",
            "first_ts_ns",
            "last_ts_ns",
            "interfaces",
        } <= set(o)
        b = read_records(f)
        assert o["records"] == len(b) and o["skipped"] == b.skipped
        assert o["first_ts_ns"] == int(b.ts_ns.min()) and o["last_ts_ns"] == int(b.ts_ns.max())
        for i in o["interfaces"]:
            assert {"name", "description", "link_type", "snaplen"} <= set(i)
    assert [o["format"] for o in out] == ["pcapng", "pcap", "pcap"]
    assert out[0]["link_types"] == ["EN10MB", "LINUX_SLL2"]
    assert out[1]["compression"] == "gzip"
    assert (
        out[2]["skipped"] == {"truncated_record": 1} and out[2]["stopped_at"]["reason"] == "truncated_record"
    )


def test_info_table_names_link_type_and_interface(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DATA / "own" / "dumpcap.pcapng")]) == 0
    out = capsys.readouterr().out
    assert "EN10MB" in out and "ptio-va" in out and "interface_statistics_block 1" in out


def test_info_on_a_non_capture_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DATA / "MANIFEST.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pcaptools: ") and "is not a pcap or pcapng file (unknown magic number)" in err
    assert "Traceback" not in err


def test_info_on_a_missing_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path / "nope.pcap")]) == 2
    assert capsys.readouterr().err.strip().endswith("No such file or directory")


def test_info_help_shows_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--help"]) == 0
    assert "Example: pcaptools info" in capsys.readouterr().out
