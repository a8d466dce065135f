"""A directory holding one capture that cannot be read at all beside good ones: every command that walks a directory
analyses the good captures (the answer is the run's without the broken file), says on stderr which file it left out and
why, and names it in ``--json`` as ``skipped_files: [{path, reason, detail}]``; exit code 0. A file named on the command
line is still one clear error (exit 2)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest
from test_report_stream import _page
from test_unseen_sweep import _json_without_budget_notes, _without_budget_notes, run

from pcaptools.k8s.discover import SKIP_REASONS, skipped_files, unreadable

ROOT = Path(__file__).resolve().parents[1]
VPC = ROOT / "sample_pcaps" / "vpc"
BUDGET = "16MiB"


def _broken_files(good: bytes) -> dict[str, tuple[str, bytes]]:
    """Each kind of capture no packet can be read from, made from a real one: name -> (reason, bytes)."""
    linktype = bytearray(good)
    struct.pack_into("<I", linktype, 20, 4242)  # the pcap header's link type: one no decoder reads
    return {
        "garbage.pcap": ("not_a_capture", b"garbage" * 40),
        "zero.pcap": ("empty", b""),
        "cut_header.pcap": ("truncated_header", good[:13]),  # cut inside the 24-byte file header
        "linktype.pcap": ("unknown_linktype", bytes(linktype)),
    }


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The vpc lab sample without its manifest (points inferred), clean and with every kind of broken file in it (one
    per node directory); both directories are named ``vpc`` so their labels (compare, report) are the same."""
    tmp = tmp_path_factory.mktemp("skip")
    out = {}
    for name in ("clean", "broken"):
        d = tmp / name / "vpc"
        shutil.copytree(VPC, d)
        (d / "manifest.json").unlink()
        (d / "truth.json").unlink()
        out[name] = d
    good = (VPC / "node-1" / "eth0.pcap").read_bytes()
    expected = {}
    for (fname, (reason, raw)), node in zip(_broken_files(good).items(), ("node-1", "node-2", "node-3", "client"), strict=True):
        (out["broken"] / node / fname).write_bytes(raw)
        expected[str(out["broken"] / node / fname)] = reason
    out["expected"] = expected
    return out


def _same(text: str, sets: dict) -> str:
    """Output of the clean run with its directory written as the broken one's (the only other difference)."""
    return text.replace(str(sets["clean"]), str(sets["broken"]))


def _said(err: str, sets: dict) -> None:
    for path, reason in sets["expected"].items():
        assert f"pcaptools: skipped {path} ({reason}), the other captures are analysed: {path}" in err, (path, err)


def _listed(doc_skipped: list[dict], sets: dict) -> None:
    assert {s["path"]: s["reason"] for s in doc_skipped} == sets["expected"]
    assert all(s["detail"].startswith(s["path"]) for s in doc_skipped)


def test_each_broken_kind_is_told_by_its_reason_and_a_good_capture_is_not(tmp_path):
    good = (VPC / "node-1" / "eth0.pcap").read_bytes()
    for fname, (reason, raw) in _broken_files(good).items():
        (tmp_path / fname).write_bytes(raw)
        assert unreadable(tmp_path / fname)[0] == reason
    assert set(SKIP_REASONS) == {r for r, _ in _broken_files(good).values()} | {"corrupt_header"}
    assert unreadable(VPC / "node-1" / "eth0.pcap") is None
    assert unreadable(ROOT / "tests" / "data" / "peer" / "tcpdump" / "tests" / "empty.pcapng") is None  # no packet, but readable


@pytest.mark.parametrize("extra", [[], ["--memory", BUDGET]], ids=["memory", "streamed"])
def test_correlate_paths_and_why_answer_as_without_the_broken_files_and_name_them(sets, extra, capsys):
    clean, broken = str(sets["clean"]), str(sets["broken"])
    for argv in (["correlate", "--json"], ["paths", "--json"], ["why", "--json"]):
        code, a, _ = run(capsys, *argv, *extra, clean)
        assert code == 0
        code, b, err = run(capsys, *argv, *extra, broken)
        assert code == 0, err
        _said(err, sets)
        da, db = json.loads(_same(a, sets)), json.loads(b)
        assert da.pop("skipped_files") == []
        _listed(db.pop("skipped_files"), sets)
        assert _json_without_budget_notes(db) == _json_without_budget_notes(da), argv
    code, a, _ = run(capsys, "paths", *extra, clean)
    code, b, err = run(capsys, "paths", *extra, broken)
    assert code == 0 and _without_budget_notes(b) == _without_budget_notes(_same(a, sets))
    _said(err, sets)


@pytest.mark.parametrize("extra", [[], ["--memory", BUDGET]], ids=["memory", "streamed"])
def test_merge_writes_the_bytes_of_the_set_without_the_broken_files(sets, extra, tmp_path, capsys):
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    assert run(capsys, "merge", str(sets["clean"]), "-o", str(a), "--dedup", *extra)[0] == 0
    code, _, err = run(capsys, "merge", str(sets["broken"]), "-o", str(b), "--dedup", *extra)
    assert code == 0 and a.read_bytes() == b.read_bytes()
    _said(err, sets)


@pytest.mark.parametrize("extra", [[], ["--memory", BUDGET]], ids=["memory", "streamed"])
def test_compare_answers_as_without_the_broken_files_and_names_them_per_set(sets, extra, capsys):
    code, a, _ = run(capsys, "compare", "--json", *extra, str(sets["clean"]))
    code, b, err = run(capsys, "compare", "--json", *extra, str(sets["broken"]))
    assert code == 0
    _said(err, sets)
    da, db = json.loads(_same(a, sets)), json.loads(b)
    assert da["capture_sets"][0].pop("skipped_files") == []
    _listed(db["capture_sets"][0].pop("skipped_files"), sets)
    for d in (da, db):
        d["capture_sets"][0]["notes"] = _json_without_budget_notes(d["capture_sets"][0])["notes"]
    assert db == da


def test_report_convert_and_manifest_answer_as_without_the_broken_files(sets, tmp_path, capsys):
    clean, broken = str(sets["clean"]), str(sets["broken"])
    for argv in (["manifest", "--json"],):
        code, a, _ = run(capsys, *argv, clean)
        code, b, err = run(capsys, *argv, broken)
        assert code == 0 and json.loads(b) == json.loads(_same(a, sets))
        _said(err, sets)
    for name, src in (("a", clean), ("b", broken)):
        code, _, err = run(capsys, "report", src, "-o", str(tmp_path / f"{name}.html"))
        assert code == 0
    _said(err, sets)
    ha, hb = (_page(_same((tmp_path / "a.html").read_text(), sets)), _page((tmp_path / "b.html").read_text()))
    assert hb == ha
    for name, src in (("a", clean), ("b", broken)):
        code, _, err = run(capsys, "convert", src, "-o", str(tmp_path / f"{name}.ds"))
        assert code == 0
    _said(err, sets)
    import pcaptools

    pa, pb = pcaptools.read_dataset(tmp_path / "a.ds"), pcaptools.read_dataset(tmp_path / "b.ds")
    pa["file"] = pa["file"].astype(str).map(lambda s: _same(s, sets))
    pb["file"] = pb["file"].astype(str)
    pd.testing.assert_frame_equal(pa.reset_index(drop=True), pb.reset_index(drop=True))


def test_a_broken_file_named_on_the_command_line_is_still_one_error(sets, tmp_path, capsys):
    for path, reason in sets["expected"].items():
        good = str(sets["broken"] / "node-1" / "eth0.pcap")
        for argv in (["correlate", "--json", good, path], ["merge", good, path, "-o", str(tmp_path / "m.pcapng")],
                     ["info", path], ["decode", path, "-o", str(tmp_path / "p.parquet")], ["flows", "--json", path]):
            code, _, err = run(capsys, *argv)
            if reason == "unknown_linktype":  # readable: its rows are kept with error unknown_linktype, as before
                assert code == 0, (argv, err)
                continue
            assert code == 2 and err.splitlines()[-1].startswith(f"pcaptools: {path}"), (argv, err)


def test_a_directory_of_only_broken_files_is_one_error_naming_the_first(sets, tmp_path, capsys):
    d = tmp_path / "node-1"
    d.mkdir()
    for fname, (_, raw) in _broken_files((VPC / "node-1" / "eth0.pcap").read_bytes()).items():
        (d / fname).write_bytes(raw)
    code, _, err = run(capsys, "correlate", "--json", str(tmp_path))
    assert code == 2 and f"pcaptools: {tmp_path}: none of its 4 capture file(s) can be read ({d / 'cut_header.pcap'}" in err
    assert skipped_files([str(VPC)]) == []  # a directory with a manifest names its files: not walked
