"""A directory holding one capture that cannot be read at all beside good ones: every command that walks a directory
analyses the good captures (the answer is the run's without the broken file), says on stderr which file it left out and
why, and names it in ``--json`` as ``skipped_files: [{path, reason, detail}]``; exit code 0. A file named on the command
line is still one clear error (exit 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest
from test_report_stream import _page
from test_unseen_sweep import _json_without_budget_notes, _without_budget_notes, run

import pcaptools
from pcaptools.io.probe import probe
from pcaptools.k8s.discover import SKIP_REASONS, skipped_files

ROOT = Path(__file__).resolve().parents[1]
VPC = ROOT / "sample_pcaps" / "vpc"
BUDGET = "16MiB"


def _broken_files(good: bytes) -> dict[str, tuple[str, bytes]]:
    """Each kind of capture no packet can be read from, made from a real one: name -> (reason, bytes)."""
    shb = struct.pack("<II", 0x0A0D0D0A, 28) + struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    return {
        "garbage.pcap": ("not_a_capture", b"garbage" * 40),
        "zero.pcap": ("empty", b""),
        "cut_header.pcap": ("truncated_header", good[:13]),  # cut inside the 24-byte file header
        "shb_cut.pcapng": ("truncated_header", shb[:20]),  # cut inside the pcapng's Section Header Block
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
    text = text.replace(str(sets["clean"]), str(sets["broken"]))
    return text.replace(os.path.relpath(sets["clean"]), os.path.relpath(sets["broken"]))  # manifest: relative to the cwd


def _said(err: str, sets: dict) -> None:
    for path, reason in sets["expected"].items():
        line = next(ln for ln in err.splitlines()  # merge says it among its notes (the files left out, records skipped)
                    if ln.startswith((f"pcaptools: skipped {path} ({reason}), the other captures are analysed: ",
                                      f"pcaptools: note: skipped {path} ({reason}): ")))  # fmt: skip
        assert line.count(path) == 1, line  # the path said once


def _listed(doc_skipped: list[dict], sets: dict) -> None:
    assert {s["path"]: s["reason"] for s in doc_skipped} == sets["expected"]
    assert all(s["detail"] and s["path"] not in s["detail"] for s in doc_skipped)


def _noted(notes: list[str], sets: dict) -> list[str]:
    """The notes without the one line per skipped file (checked: each file said once, with its reason)."""
    said = [n for n in notes if n.startswith("skipped ")]
    assert sorted(said) == sorted(n for n in said if any(n.startswith(f"skipped {p} ({r}): ") for p, r in sets["expected"].items()))
    assert len(said) in (0, len(sets["expected"]))
    return [n for n in notes if not n.startswith("skipped ")]


def test_each_broken_kind_is_told_by_its_reason_and_a_good_capture_is_not(tmp_path):
    good = (VPC / "node-1" / "eth0.pcap").read_bytes()
    for fname, (reason, raw) in _broken_files(good).items():
        (tmp_path / fname).write_bytes(raw)
        assert probe(tmp_path / fname)[0] == reason
    assert set(SKIP_REASONS) == {r for r, _ in _broken_files(good).values()} | {"corrupt_header", "permission_denied", "not_a_file"}
    assert probe(VPC / "node-1" / "eth0.pcap") is None
    assert probe(ROOT / "tests" / "data" / "peer" / "tcpdump" / "tests" / "empty.pcapng") is None  # no packet, but readable
    linktype = bytearray(good)
    struct.pack_into("<I", linktype, 20, 4242)  # the pcap header's link type: one no decoder reads, yet readable
    (tmp_path / "linktype.pcap").write_bytes(bytes(linktype))
    assert probe(tmp_path / "linktype.pcap") is None
    bad_len = bytearray(struct.pack("<II", 0x0A0D0D0A, 30) + b"\0" * 24)
    struct.pack_into("<I", bad_len, 8, 0x1A2B3C4D)
    (tmp_path / "bad_len.pcapng").write_bytes(bytes(bad_len))
    assert probe(tmp_path / "bad_len.pcapng")[0] == "corrupt_header"


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
        if "notes" in db:  # the result's notes say each file left out, once
            db["notes"] = _noted(db["notes"], sets)
        assert _json_without_budget_notes(db) == _json_without_budget_notes(da), argv
    code, a, _ = run(capsys, "paths", *extra, clean)
    code, b, err = run(capsys, "paths", *extra, broken)
    clean_text = _without_budget_notes(_same(a, sets)).rstrip()
    assert code == 0 and _without_budget_notes(b).startswith(clean_text)  # then a note per file left out
    assert _without_budget_notes(b)[len(clean_text):].count("note: skipped ") == len(sets["expected"])
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
    db["capture_sets"][0]["notes"] = _noted(db["capture_sets"][0]["notes"], sets)
    for d in (da, db):
        d["capture_sets"][0]["notes"] = _json_without_budget_notes(d["capture_sets"][0])["notes"]
    assert db == da


def test_report_convert_and_manifest_answer_as_without_the_broken_files(sets, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # manifest --json writes paths relative to the working directory
    clean, broken = str(sets["clean"]), str(sets["broken"])
    for argv in (["manifest", "--json"],):
        code, a, _ = run(capsys, *argv, clean)
        code, b, err = run(capsys, *argv, broken)
        doc = json.loads(b)
        assert {os.path.abspath(f["path"]): f["reason"] for f in doc.pop("skipped_files")} == sets["expected"]
        assert code == 0 and doc == json.loads(_same(a, sets))
        _said(err, sets)
    assert run(capsys, "manifest", broken, "-o", str(sets["broken"] / "manifest.json"))[0] == 0
    try:  # a later run on the manifest says the files left out when it was written
        cs = pcaptools.load_captures(sets["broken"] / "manifest.json")
        assert {f["path"]: f["reason"] for f in cs.skipped_files} == sets["expected"]
        assert len(_noted(cs.notes, sets)) == len(cs.notes) - len(sets["expected"])
    finally:
        (sets["broken"] / "manifest.json").unlink()
    for name, src in (("a", clean), ("b", broken)):
        code, _, err = run(capsys, "report", src, "-o", str(tmp_path / f"{name}.html"))
        assert code == 0
    _said(err, sets)
    ha, hb = (_page(_same((tmp_path / "a.html").read_text(), sets)), _page((tmp_path / "b.html").read_text()))
    said = re.findall(r'<div class="note">skipped (\S+) \((\w+)\): ', hb)  # the page's set notes say the files left out
    assert dict(said) == sets["expected"]
    assert re.sub(r'<div class="note">skipped [^<]*</div>', "", hb) == ha
    for name, src in (("a", clean), ("b", broken)):
        code, _, err = run(capsys, "convert", src, "-o", str(tmp_path / f"{name}.ds"))
        assert code == 0
    _said(err, sets)
    from pcaptools.dataset import read_meta

    assert read_meta(tmp_path / "a.ds")["skipped_files"] == []
    _listed(read_meta(tmp_path / "b.ds")["skipped_files"], sets)  # later runs on the dataset say them
    import jsonschema

    schema = json.loads((Path(pcaptools.__file__).parent / "schemas" / "dataset.schema.json").read_text())
    jsonschema.validate(read_meta(tmp_path / "b.ds"), schema)
    assert _noted(pcaptools.load_captures(tmp_path / "b.ds").notes, sets) == pcaptools.load_captures(tmp_path / "a.ds").notes
    pa, pb = pcaptools.read_dataset(tmp_path / "a.ds"), pcaptools.read_dataset(tmp_path / "b.ds")
    pa["file"] = pa["file"].astype(str).map(lambda s: _same(s, sets))
    pb["file"] = pb["file"].astype(str)
    pd.testing.assert_frame_equal(pa.reset_index(drop=True), pb.reset_index(drop=True))


def test_a_broken_file_named_on_the_command_line_is_still_one_error(sets, tmp_path, capsys):
    for path in sets["expected"]:
        good = str(sets["broken"] / "node-1" / "eth0.pcap")
        for argv in (["correlate", "--json", good, path], ["merge", good, path, "-o", str(tmp_path / "m.pcapng")],
                     ["info", path], ["decode", path, "-o", str(tmp_path / "p.parquet")], ["flows", "--json", path]):
            code, _, err = run(capsys, *argv)
            if path.endswith("shb_cut.pcapng"):  # named, the pcapng reader keeps it (no packet, note truncated_record)
                assert code == 0, (argv, err)
                continue
            assert code == 2 and err.splitlines()[-1].startswith(f"pcaptools: {path}"), (argv, err)


def test_a_directory_of_only_broken_files_is_one_error_naming_the_first(sets, tmp_path, capsys):
    d = tmp_path / "node-1"
    d.mkdir()
    for fname, (_, raw) in _broken_files((VPC / "node-1" / "eth0.pcap").read_bytes()).items():
        (d / fname).write_bytes(raw)
    code, _, err = run(capsys, "correlate", "--json", str(tmp_path))
    assert code == 2 and f"pcaptools: none of the 4 capture file(s) found in {tmp_path} can be read ({d / 'cut_header.pcap'}: " in err
    assert skipped_files([str(VPC)]) == []  # a directory with a manifest names its files: not walked


def test_a_pcapng_whose_first_records_are_on_an_undecodable_interface_is_kept(tmp_path, capsys):
    """The reviewer's mk2.py set: node-2/eth0 as a pcapng with an nflog interface (1,100 records first) and eth0 (the
    real packets): found by walking it is analysed, its eth0 point matched as in the pcap (rows of nflog counted)."""
    from pcaptools.io import read_records

    clean, mixed = tmp_path / "clean" / "vpc", tmp_path / "mixed" / "vpc"
    for d in (clean, mixed):
        shutil.copytree(VPC, d)
        (d / "manifest.json").unlink()
        (d / "truth.json").unlink()
    rr = read_records(str(VPC / "node-2" / "eth0.pcap"))
    pkts = [(int(rr.ts_ns[i]), rr.packet(i)) for i in range(len(rr))]

    def blk(t: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", t, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    def opt(code: int, val: bytes) -> bytes:
        return struct.pack("<HH", code, len(val)) + val + b"\0" * (-len(val) % 4)

    def idb(lt: int, name: bytes) -> bytes:
        return blk(1, struct.pack("<HHI", lt, 0, 262144) + opt(2, name) + opt(9, b"\x09") + opt(0, b""))

    def epb(ifid: int, ts: int, data: bytes) -> bytes:
        return blk(6, struct.pack("<IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)

    t0 = pkts[0][0] - 10**9
    raw = blk(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)) + idb(239, b"nflog:5") + idb(1, b"eth0")
    raw += b"".join(epb(0, t0 + i * 1000, b"\x02\x00\x00\x05" + b"x" * 20) for i in range(1100))
    raw += b"".join(epb(1, ts, d) for ts, d in pkts)
    (mixed / "node-2" / "eth0.pcap").unlink()
    (mixed / "node-2" / "eth0.pcapng").write_bytes(raw)
    assert skipped_files([str(mixed)]) == []
    code, a, _ = run(capsys, "correlate", "--json", str(clean))
    code, b, err = run(capsys, "correlate", "--json", str(mixed))
    assert code == 0, err
    da, db = json.loads(a), json.loads(b)
    assert db["skipped_files"] == []
    ma, mb = ({p["point"]: p["matched"] for p in d["points"]} for d in (da, db))
    assert mb["node-2:eth0"] == ma["node-2:eth0"] > 500


def test_the_python_api_carries_and_notes_the_files_left_out(sets, tmp_path):
    from pcaptools.k8s.paths import load_paths

    broken = str(sets["broken"])
    cs = pcaptools.load_captures(broken)
    _listed(cs.skipped_files, sets)
    assert len(_noted(cs.notes, sets)) == len(cs.notes) - len(sets["expected"])
    corr = pcaptools.correlate_captures(cs)
    _listed(corr.skipped_files, sets)
    assert corr.notes[: len(sets["expected"])] == cs.notes[: len(sets["expected"])]
    _listed(load_paths(broken).skipped_files, sets)
    for memory in (None, 16 << 20):
        done = pcaptools.merge_inputs([broken], tmp_path / "m.pcapng", memory=memory, window_rows=None if memory is None else 4096)
        _listed(done.skipped_files, sets)
        assert done.packets > 0 and len(_noted(done.notes, sets)) == len(done.notes) - len(sets["expected"])


def test_a_file_found_by_walking_that_may_not_be_read_is_skipped_as_permission_denied(sets, monkeypatch, capsys):
    """Simulated (the tests run as root, who may read anything): stat of one capture fails with EACCES, as for a
    non-root user on a 0600 root file."""
    import errno
    import os as real_os

    import pcaptools.io.sniff as sniff

    bad = str(sets["clean"] / "node-3" / "eth0.pcap")

    class _Os:
        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(real_os, name)

        def stat(self, p, *a, **k):  # noqa: ANN001, ANN202
            if real_os.fspath(p) == bad:
                raise PermissionError(errno.EACCES, "Permission denied", bad)
            return real_os.stat(p, *a, **k)

    monkeypatch.setattr(sniff, "os", _Os())
    assert probe(bad)[0] == "permission_denied"
    code, out, err = run(capsys, "correlate", "--json", str(sets["clean"]))
    assert code == 0, err
    assert [(s["path"], s["reason"]) for s in json.loads(out)["skipped_files"]] == [(bad, "permission_denied")]
    import jsonschema

    jsonschema.validate(json.loads(out), json.loads((Path(pcaptools.__file__).parent / "schemas" / "correlate.schema.json").read_text()))
    assert f"pcaptools: skipped {bad} (permission_denied), the other captures are analysed: permission denied" in err


def test_several_directories_fail_only_when_every_capture_is_unreadable(sets, tmp_path, capsys):
    only_broken = tmp_path / "only" / "node-9"
    only_broken.mkdir(parents=True)
    (only_broken / "eth0.pcap").write_bytes(b"garbage" * 40)
    code, out, err = run(capsys, "correlate", "--json", str(tmp_path / "only"), str(sets["clean"]))
    assert code == 0, err
    assert [s["reason"] for s in json.loads(out)["skipped_files"]] == ["not_a_capture"]
    code, _, err = run(capsys, "correlate", "--json", str(tmp_path / "only"))
    assert code == 2 and "pcaptools: none of the 1 capture file(s) found in" in err
