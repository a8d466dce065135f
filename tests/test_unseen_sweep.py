"""Captures never seen, on every command (issue: robustness sweep): the peer projects' captures, our own, and
hostile variants this module makes from real captures, through info, show, decode, flows, manifest, correlate,
paths, why, merge, convert, compare and report, with and without ``--memory`` / ``--json``.

The contract checked on every run: exit 0 or 2, never a traceback, an exit 2 is ``pcaptools: ...`` lines (a
usage error adds its usage line), ``--json`` is one object that validates against the shipped schema, the reader
accounts for every record (decoded + skipped = records) and ``--memory`` gives the output the in-memory run gives
where the command promises it (decode -o, flows, correlate --json, paths text and -o, merge).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from pcaptools.cli import main
from pcaptools.render.records import json_schema

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
OWN = DATA / "own"
PEER = DATA / "peer"
VPC = ROOT / "sample_pcaps" / "vpc"
BUDGET = "16MiB"  # the smallest budget --memory takes (units.MIN_MEMORY): every multi-capture input streams under it
SCHEMAS = {"info", "flows", "correlate", "compare", "paths", "why"}

# Peer and own captures: every capture in tests/data (MANIFEST.md gives source, licence and SHA-256 of each).
ALL_CAPTURES = sorted(p for p in DATA.rglob("*") if p.is_file() and ".pcap" in p.name and not p.name.endswith((".py", ".out")))
# The ones every command runs on: each link type and container we read (SLL, SLL2, NFLOG, RAW, IPV4, pcapng of
# several interfaces and sections, gzip), empty files, and the peers' deliberately malformed captures.
# (snaplen-cut and truncated plain captures are among the hostile variants below; every capture of tests/data goes
# through info --json in test_every_test_capture_is_read_with_every_record_accounted_for)
EVERY_COMMAND = [
    "own/any_nano.pcapng", "own/dumpcap.pcapng", "own/two_sections.pcapng", "own/eth.pcap.gz",
    "peer/zeek/Traces/linux_dlt_sll2.pcap", "peer/zeek/Traces/linuxsll-arp.pcap",
    "peer/zeek/Traces/tunnels/geneve-truncated.pcapng", "peer/tcpdump/tests/nflog.pcap", "peer/tcpdump/tests/empty.pcapng",
    "peer/tcpdump/tests/empty.pcap", "peer/tcpdump/tests/LINKTYPE_IPV4_invalid.pcap",
    "peer/tcpdump/tests/erspan-type-iii-pb-1.pcap", "peer/tcpdump/tests/gre-heapoverflow-1.pcap",
    "peer/tcpdump/tests/ipv6_jumbogram_1.pcap", "peer/community-id-spec/pcaps/combined.pcap.gz",
]  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """One command in this process, checked against the contract every command keeps; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    where = " ".join(argv)
    assert code in (0, 2), f"{where}: exit {code}\n{err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, f"{where}:\n{err[-3000:]}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("pcaptools: ") and not line.startswith(("pcaptools: warning", "pcaptools: note"))]
        assert errors and lines[-1] in errors, f"{where}: exit 2 must end with one pcaptools: line\n{err}"
        assert all(line.startswith(("pcaptools: ", "Usage: ")) for line in lines), f"{where}: stray stderr\n{err}"
    if "--json" in argv and code == 0:
        doc = json.loads(out)
        assert isinstance(doc, dict), where
        if argv[0] in SCHEMAS:
            jsonschema.Draft202012Validator(json_schema(argv[0])).validate(doc)
            assert not _minus_ones(doc), f"{where}: -1 where null is meant at {_minus_ones(doc)[:5]}"
    return code, out, err


def _minus_ones(obj, where: str = "") -> list[str]:  # noqa: ANN001
    """Where a -1 sits in a --json document (absent values are null, never -1)."""
    if isinstance(obj, dict):
        return [w for k, v in obj.items() for w in _minus_ones(v, f"{where}.{k}")]
    if isinstance(obj, list):
        return [w for i, v in enumerate(obj) for w in _minus_ones(v, f"{where}[{i}]")]
    return [where] if obj == -1 and not isinstance(obj, bool) else []


def _without_budget_notes(text: str) -> str:
    """Terminal output less the note a budget below the run's floor adds (wrapped over several lines)."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("note:"):
            skipping = line.startswith("note: the memory budget")
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def _json_without_budget_notes(doc: dict) -> dict:
    return {**doc, "notes": [n for n in doc.get("notes", []) if "below this capture set's floor" not in n]}


# --- hostile variants, made from real captures --------------------------------------------------------------


def _pcap_records(raw: bytes) -> list[tuple[int, int]]:
    """(offset, caplen) of each record of a little-endian classic pcap."""
    pos, out = 24, []
    while pos + 16 <= len(raw):
        caplen = struct.unpack_from("<I", raw, pos + 8)[0]
        out.append((pos, caplen))
        pos += 16 + caplen
    return out


def _variants(tmp: Path) -> dict[str, Path]:
    """Broken copies of tests/data/own/eth.pcap (34 records tcpdump wrote in a namespace) and of its pcapng twin."""
    raw = (OWN / "eth.pcap").read_bytes()
    recs = _pcap_records(raw)
    made: dict[str, bytes] = {
        "truncated_mid_record.pcap": raw[: recs[20][0] + 16 + recs[20][1] // 2],
        "cut_record_header.pcap": raw[: recs[20][0] + 7],
        "cut_file_header.pcap": raw[:12],
        "zero_bytes.pcap": b"",
        "garbage_appended.pcap": raw + bytes(range(256)) * 3,
        "text_not_a_capture.pcap": b"This is not a capture at all, only text.\n" * 10,
    }
    absurd = bytearray(raw)
    struct.pack_into("<I", absurd, recs[10][0] + 8, 0x7FFFFFF0)  # caplen of record 10
    made["absurd_caplen.pcap"] = bytes(absurd)
    origlen = bytearray(raw)
    struct.pack_into("<I", origlen, recs[10][0] + 12, 0xFFFFFFFF)  # original length of record 10
    made["absurd_origlen.pcap"] = bytes(origlen)
    link = bytearray(raw)
    struct.pack_into("<I", link, 20, 0xBEEF)  # a link type nobody assigned
    made["unknown_linktype.pcap"] = bytes(link)
    snap = [bytearray(raw[:24])]
    struct.pack_into("<I", snap[0], 16, 54)
    for pos, caplen in recs:  # every record cut to 54 bytes, original length kept: tcpdump -s 54
        head = bytearray(raw[pos : pos + 16])
        struct.pack_into("<I", head, 8, min(caplen, 54))
        snap.append(head + raw[pos + 16 : pos + 16 + min(caplen, 54)])
    made["snaplen54.pcap"] = b"".join(map(bytes, snap))
    ng = (OWN / "eth.pcapng").read_bytes()
    first = struct.unpack_from("<I", ng, 4)[0]
    first += struct.unpack_from("<I", ng, first + 4)[0]  # after the section header and interface blocks
    unknown = struct.pack("<II", 0x0BADB10C, 20) + bytes(range(1, 9)) + struct.pack("<I", 20)
    made["unknown_block.pcapng"] = ng[:first] + unknown + ng[first:]
    trailer = bytearray(ng)
    struct.pack_into("<I", trailer, first + struct.unpack_from("<I", ng, first + 4)[0] - 4, 12345)
    made["bad_block_trailer.pcapng"] = bytes(trailer)
    made["truncated.pcapng"] = ng[: len(ng) * 2 // 3]
    made["truncated.pcap.gz"] = (OWN / "eth.pcap.gz").read_bytes()[:600]
    for name, data in made.items():
        (tmp / name).write_bytes(data)
    return {name: tmp / name for name in made}


VARIANTS = [
    "truncated_mid_record.pcap", "cut_record_header.pcap", "cut_file_header.pcap", "zero_bytes.pcap",
    "garbage_appended.pcap", "text_not_a_capture.pcap", "absurd_caplen.pcap", "absurd_origlen.pcap",
    "unknown_linktype.pcap", "snaplen54.pcap", "unknown_block.pcapng", "bad_block_trailer.pcapng", "truncated.pcapng",
    "truncated.pcap.gz",
]  # fmt: skip


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _variants(tmp_path_factory.mktemp("variants"))


def _single_file_commands(f: Path, out: Path) -> list[list[str]]:
    s = str(f)
    return [
        ["info", s], ["manifest", "--json", s], ["correlate", "--json", s], ["correlate", "--json", "--memory", BUDGET, s],
        ["paths", s], ["paths", "--memory", BUDGET, s], ["paths", "--json", s], ["why", "--json", s],
        ["merge", s, "-o", str(out / "merged.pcapng")], ["convert", s, "-o", str(out / "ds")], ["compare", "--json", s],
        ["report", s, "-o", str(out / "report.html")],
    ]  # fmt: skip


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Category columns as plain values: the one documented difference of decode --memory -o is that a category
    with no value in the whole input reads back as an empty category, not as object (README, Bounded memory)."""
    return pd.DataFrame({k: c.astype(object).where(c.notna(), None) if c.dtype.name in ("category", "object") else c
                         for k, c in df.items()})


def _check_reader_and_streams(capsys, f: Path, out: Path) -> dict | None:
    """info --json accounts for every record; decode -o and flows give the same with --memory; show answers."""
    code, text, _ = run(capsys, "info", "--json", str(f))
    if code:
        return None
    info = json.loads(text)["files"][0]
    assert info["records"] + sum(info["skipped"].values()) == info["records_total"], info
    assert run(capsys, "decode", str(f), "-o", str(out / "a.parquet"))[0] == 0
    assert run(capsys, "decode", str(f), "--memory", BUDGET, "-o", str(out / "b.parquet"))[0] == 0
    a, b = pd.read_parquet(out / "a.parquet"), pd.read_parquet(out / "b.parquet")
    assert len(a) == len(b) == info["records"], "decode drops no row"
    pd.testing.assert_frame_equal(_plain(a), _plain(b))
    flows = run(capsys, "flows", "--json", str(f))
    assert flows[0] == 0 and run(capsys, "flows", "--json", "--memory", BUDGET, str(f))[1] == flows[1]
    first = int(a["record"].iloc[0]) if "record" in a and len(a) else 0
    run(capsys, "show", str(f), str(first))
    return info


@pytest.mark.parametrize("name", VARIANTS)
def test_hostile_variant_gives_a_clean_answer_or_one_error_on_every_command(name, variants, tmp_path, capsys):
    f = variants[name]
    info = _check_reader_and_streams(capsys, f, tmp_path)
    codes = {" ".join(argv[:2]): run(capsys, *argv)[0] for argv in _single_file_commands(f, tmp_path)}
    if info is None:  # not readable at all: every command says so
        assert set(codes.values()) == {2}, codes
    else:
        assert set(codes.values()) == {0}, codes


def test_each_damage_is_counted_by_its_reason(variants, capsys):
    """Records the damage touches are skipped by reason; the records before it (and after a resync) are kept."""
    total = len(_pcap_records((OWN / "eth.pcap").read_bytes()))
    expect = {  # name: (reason, records kept, records in all)
        "truncated_mid_record.pcap": ("truncated_record", 20, 21),
        "absurd_caplen.pcap": ("caplen_absurd", total - 1, total),
        "bad_block_trailer.pcapng": ("block_trailer_mismatch", 0, 1),
    }
    for name, (reason, kept, seen) in expect.items():
        doc = json.loads(run(capsys, "info", "--json", str(variants[name]))[1])["files"][0]
        assert doc["skipped"] == {reason: 1} and (doc["records"], doc["records_total"]) == (kept, seen), (name, doc)


@pytest.mark.parametrize("name", EVERY_COMMAND)
def test_peer_and_own_capture_on_every_command(name, tmp_path, capsys):
    f = DATA / name
    info = _check_reader_and_streams(capsys, f, tmp_path)
    for argv in _single_file_commands(f, tmp_path):
        code = run(capsys, *argv)[0]
        assert code == 0 or info is None or info["records"] == 0, argv


def test_every_test_capture_is_read_with_every_record_accounted_for(capsys):
    """All captures in tests/data at once: info --json validates and decoded + skipped = records per file."""
    code, out, _ = run(capsys, "info", "--json", *map(str, ALL_CAPTURES))
    assert code == 0
    files = json.loads(out)["files"]
    assert len(files) == len(ALL_CAPTURES) > 100
    for f in files:
        assert f["records"] + sum(f["skipped"].values()) == f["records_total"], f["path"]


def test_show_of_a_skipped_record_or_an_empty_file_says_so(variants, capsys):
    code, _, err = run(capsys, "show", str(variants["absurd_caplen.pcap"]), "10")
    assert code == 2 and "record 10 was skipped by the reader (caplen_absurd 1" in err and "numbered 0-33" in err
    code, _, err = run(capsys, "show", str(variants["absurd_caplen.pcap"]), "34")
    assert code == 2 and "expected a record number 0-33, found 34" in err
    code, _, err = run(capsys, "show", str(PEER / "tcpdump" / "tests" / "empty.pcap"), "0")
    assert code == 2 and "expected a packet to show, found no records" in err and "0--1" not in err
    code, _, err = run(capsys, "show", str(variants["bad_block_trailer.pcapng"]), "0")
    assert code == 2 and "found 1 record(s), all skipped (block_trailer_mismatch 1)" in err


def test_memory_below_the_minimum_is_a_usage_error(capsys):
    code, _, err = run(capsys, "flows", "--memory", "8MiB", str(OWN / "eth.pcap"))
    assert code == 2 and "16" in err.splitlines()[-1]


# --- capture sets: directories and manifests ---------------------------------------------------------------


@pytest.fixture(scope="module")
def vpc_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The vpc lab sample four ways: no manifest and clocks that disagree (node-2 3 ms ahead and 60 ppm fast, node-3
    7.5 ms behind), no manifest and one bad file, a manifest naming a missing file, and a manifest whose node-1
    uplink capture lost its last 37 bytes."""
    tmp = tmp_path_factory.mktemp("sets")
    sets = {}
    for name in ("plain", "bad_file", "missing", "cut"):
        shutil.copytree(VPC, tmp / name)
        sets[name] = tmp / name
    for name in ("plain", "bad_file"):
        (sets[name] / "manifest.json").unlink()
        (sets[name] / "truth.json").unlink()
    (sets["bad_file"] / "node-1" / "broken.pcap").write_bytes(b"garbage" * 40)
    (sets["missing"] / "node-2" / "eth0.pcap").unlink()
    cut = sets["cut"] / "node-1" / "eth0.pcap"
    cut.write_bytes(cut.read_bytes()[:-37])
    for node, offset_ns, ppm in CLOCKS:
        for f in (sets["plain"] / node).glob("*.pcap"):
            _retime(f, offset_ns, ppm, T0)
    return sets


CLOCKS = [("node-2", 3_000_000, 60.0), ("node-3", -7_500_000, 0.0)]
T0 = 1_795_430_684_000_000_000  # when the retimed clocks were right (under a second before the vpc sample's first packet)


def _retime(capture: Path, offset_ns: int, ppm: float, t0: int) -> None:
    """Rewrite a microsecond pcap's timestamps as read by a clock ``offset_ns`` off that runs ``ppm`` fast since ``t0``."""
    raw = bytearray(capture.read_bytes())
    for pos, _ in _pcap_records(bytes(raw)):
        sec, usec = struct.unpack_from("<II", raw, pos)
        t = sec * 1_000_000_000 + usec * 1000
        t += offset_ns + round((t - t0) * ppm * 1e-6)
        struct.pack_into("<II", raw, pos, t // 1_000_000_000, t % 1_000_000_000 // 1000)
    capture.write_bytes(bytes(raw))


MULTI = ["correlate", "paths", "why", "manifest", "merge", "convert", "compare", "report"]


def _multi_argv(command: str, src: Path, out: Path, *extra: str) -> list[str]:
    if command in ("merge", "report"):
        return [command, str(src), "-o", str(out / f"{command}{len(extra)}.{'pcapng' if command == 'merge' else 'html'}"), *extra]
    if command == "convert":
        return [command, str(src), "-o", str(out / f"ds{len(extra)}"), *extra]
    return [command, str(src), *extra]


def test_a_manifest_naming_a_missing_file_is_one_error_naming_it(vpc_sets, tmp_path, capsys):
    needle = "eth0.pcap: capture listed for node 'node-2' does not exist"
    for command in MULTI:
        for extra in ([], ["--memory", BUDGET]) if command in ("correlate", "paths", "merge") else ([],):
            code, _, err = run(capsys, *_multi_argv(command, vpc_sets["missing"], tmp_path, *extra))
            assert code == 2 and needle in err.splitlines()[-1], (command, extra, err)


def test_a_set_with_one_unreadable_file_found_in_its_directory_is_analysed_without_it(vpc_sets, tmp_path, capsys):
    """Was one error for the whole set; now the good captures are analysed and the file is said on stderr (and in
    --json's skipped_files: tests/test_skipped_files.py checks the answers against the set without it)."""
    broken = vpc_sets["bad_file"] / "node-1" / "broken.pcap"
    needle = f"pcaptools: skipped {broken} (not_a_capture), the other captures are analysed: it is not a pcap or pcapng file"
    for command in MULTI:
        for extra in ([], ["--memory", BUDGET]) if command in ("correlate", "paths", "merge") else ([],):
            code, _, err = run(capsys, *_multi_argv(command, vpc_sets["bad_file"], tmp_path, *extra))
            said = needle if command != "merge" else f"pcaptools: note: skipped {broken} (not_a_capture): it is not a pcap"
            assert code == 0 and said in err, (command, extra, err)  # merge says it among its notes


@pytest.mark.slow
def test_manifest_free_set_streams_to_the_in_memory_answers(vpc_sets, tmp_path, capsys):
    src = vpc_sets["plain"]
    whole = json.loads(run(capsys, "correlate", "--json", str(src))[1])
    streamed = json.loads(run(capsys, "correlate", "--json", "--memory", BUDGET, str(src))[1])
    assert whole["journeys"] > 500 and _json_without_budget_notes(streamed) == _json_without_budget_notes(whole)
    for node, offset_ns, ppm in CLOCKS:  # the clocks put back (microsecond timestamps: 100 µs is loose)
        clock = whole["clock_offsets"][node]
        assert abs(clock["offset_ns"] - (offset_ns + ppm * 1e-6 * (clock["at_ns"] - T0))) < 100_000, (node, clock)
    text = run(capsys, "paths", str(src))[1]
    assert _without_budget_notes(run(capsys, "paths", "--memory", BUDGET, str(src))[1]) == _without_budget_notes(text)
    run(capsys, "paths", str(src), "-o", str(tmp_path / "a.csv"))
    run(capsys, "paths", str(src), "--memory", BUDGET, "-o", str(tmp_path / "b.csv"))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    run(capsys, "merge", str(src), "-o", str(tmp_path / "a.pcapng"))
    run(capsys, "merge", str(src), "--memory", BUDGET, "-o", str(tmp_path / "b.pcapng"))
    assert (tmp_path / "a.pcapng").read_bytes() == (tmp_path / "b.pcapng").read_bytes()
    for argv in (["why", "--json", str(src)], ["manifest", "--json", str(src)], ["convert", str(src), "-o", str(tmp_path / "ds")]):
        assert run(capsys, *argv)[0] == 0, argv
    on_dataset = json.loads(run(capsys, "correlate", "--json", "--memory", BUDGET, str(tmp_path / "ds"))[1])
    assert _json_without_budget_notes(on_dataset) == _json_without_budget_notes(whole)


def test_records_a_reader_skipped_are_noted_by_correlate_paths_why_merge_and_compare(vpc_sets, tmp_path, capsys):
    """A capture of the set cut mid-record: the skip reaches every multi-capture result, in memory and streamed,
    from the captures and from their dataset (was said by `info` and `decode` only: a silent loss elsewhere)."""
    src = vpc_sets["cut"]
    cut = str(src / "node-1" / "eth0.pcap")
    note = f"{cut}: 1 record(s) skipped by the reader (truncated_record 1); `pcaptools info {cut}` says where and why"
    for extra in ([], ["--memory", BUDGET]):
        assert json.loads(run(capsys, "correlate", "--json", *extra, str(src))[1])["notes"][0] == note
        assert f"note: {cut}: 1 record(s) skipped by the reader" in run(capsys, "paths", *extra, str(src))[1]
    assert json.loads(run(capsys, "why", "--json", str(src))[1])["notes"][0] == note
    assert f"pcaptools: note: {note}" in run(capsys, "merge", str(src), "-o", str(tmp_path / "m.pcapng"))[2]
    assert json.loads(run(capsys, "compare", "--json", str(src))[1])["capture_sets"][0]["notes"][0] == note
    run(capsys, "convert", str(src), "-o", str(tmp_path / "ds"))
    for extra in ([], ["--memory", BUDGET]):
        assert json.loads(run(capsys, "correlate", "--json", *extra, str(tmp_path / "ds"))[1])["notes"][0] == note


# --- options and side files that were found to crash or mislead (each fixed where the value is first read) ----


@pytest.mark.parametrize(("argv", "option"), [
    (["correlate", "--window-ms", "1e300"], "--window-ms"), (["paths", "--window-ms", "1e300"], "--window-ms"),
    (["why", "--window-ms", "1e-300"], "--window-ms"), (["flows", "--idle-timeout", "1e300"], "--idle-timeout"),
    (["flows", "--idle-timeout", "1e300", "--memory", BUDGET], "--idle-timeout"),
    (["convert", "-o", "DS", "--window-seconds", "1e300"], "--window-seconds"),
])  # fmt: skip
def test_a_duration_beyond_int64_nanoseconds_or_below_one_is_a_usage_error(argv, option, tmp_path, capsys):
    """1e300 s overflowed int64 ns (a traceback, or for --idle-timeout a negative timeout that cut every flow after
    one packet); 1e-300 ms rounded to a window of 0 ns."""
    argv = [a.replace("DS", str(tmp_path / "ds")) for a in argv]
    code, _, err = run(capsys, *argv, str(OWN / "eth.pcap"))
    assert code == 2 and f"'{option}': expected a duration from 1 ns to" in err.splitlines()[-1]


@pytest.mark.parametrize(("doc", "found"), [
    ([{"ifindex": "x", "ifname": "eth0"}], "item 0 with ifindex str"),
    ([{"ifindex": None, "ifname": "eth0"}], "item 0 with ifindex NoneType and ifname str"),
    ([{"ifindex": True, "ifname": "eth0"}], "item 0 with ifindex bool and ifname str"),
    ([{"ifindex": 2, "ifname": "eth0"}, 5], "item 1 a JSON int;"),
    ({"ifindex": 2}, "a JSON dict;"),
])  # fmt: skip
def test_links_file_of_the_wrong_shape_is_one_error_naming_the_item(doc, found, tmp_path, capsys):
    """ifindex "x" or null raised ValueError / TypeError out of read_links (a traceback)."""
    links = tmp_path / "node-1.links.json"
    links.write_text(json.dumps(doc))
    code, _, err = run(capsys, "paths", "--links", f"node-1={links}", str(OWN / "any_nano.pcap"))
    assert code == 2 and err.splitlines()[-1].startswith(f"pcaptools: {links}: expected the output of `ip -j link`")
    assert f"found {found}" in err.splitlines()[-1]


def test_links_file_nested_too_deep_or_not_utf8_is_one_error(tmp_path, capsys):
    deep, binary = tmp_path / "deep.links.json", tmp_path / "bin.links.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)  # was a RecursionError traceback
    binary.write_bytes(b"\xff\xfe[")
    for f, needle in ((deep, "nested too deeply"), (binary, "not UTF-8 text (invalid byte at offset 0)")):
        code, _, err = run(capsys, "manifest", "--links", f"node-1={f}", str(OWN / "any_nano.pcap"))
        assert code == 2 and needle in err.splitlines()[-1], err


def test_a_links_file_no_capture_needs_is_still_checked(tmp_path, capsys):
    """--links bad.json beside captures that never look it up was ignored unread: a file given is checked."""
    bad = tmp_path / "node-9.links.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "paths", "--links", str(bad), str(OWN / "eth.pcap"))
    assert code == 2 and f"pcaptools: {bad}: ip -j link output is not JSON (line 1 column 2" in err.splitlines()[-1]


def test_an_os_error_that_names_no_file_says_what_to_check(capsys):
    """Writing the merged pcapng to /proc/version fails with EIO and no file name: the line said 'None: ...'."""
    code, _, err = run(capsys, "merge", str(OWN / "eth.pcap"), "-o", "/proc/version")
    assert code == 2 and "None" not in err
    assert err.splitlines()[-1].startswith("pcaptools: Input/output error (errno 5) while reading the inputs or writing")


def test_manifest_output_into_a_missing_directory_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(capsys, "manifest", str(OWN / "eth.pcap"), "-o", str(tmp_path / "nodir" / "manifest.json"))
    assert code == 2 and err.splitlines()[0].startswith("Usage: pcaptools manifest")
    assert f"directory '{tmp_path / 'nodir'}' does not exist; create it first" in err.splitlines()[-1]


# --- paths on the peer captures against their published expected outputs ------------------------------------

_OUTER = re.compile(r"(\d+\.\d+\.\d+\.\d+)\.\d+ > (\d+\.\d+\.\d+\.\d+)\.\d+: (?:\[[^]]*\] )?(?:VXLAN|Geneve).*?vni (0x[0-9a-f]+|\d+)")
_INNER = re.compile(r"(\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > (\d+\.\d+\.\d+\.\d+)(?:\.\d+)?: ")


def _tcpdump_tunnels(out: Path) -> set[tuple]:
    """(vni, outer src, outer dst, inner src, inner dst) of every tunnelled IPv4 packet tcpdump printed in ``out``."""
    found, outer = set(), None
    for line in out.read_text().splitlines():
        m = _OUTER.search(line)
        if m:
            outer = (int(m[3], 0), m[1], m[2])
            continue
        m = _INNER.search(line)
        if outer is not None and m:
            found.add((*outer, m[1], m[2]))
            outer = None
        elif outer is not None and "ARP" in line:
            outer = None
    return found


@pytest.mark.parametrize(("capture", "expected"), [
    ("vxlan.pcap", "vxlan.out"), ("vxlan_port_8472.pcap", "vxlan_port_8472.out"), ("geneve.pcap", "geneve-vv.out"),
])  # fmt: skip
def test_paths_tunnel_facts_match_tcpdumps_published_output(capture, expected, capsys):
    """Every hop of every connection `paths --json` builds from a peer tunnel capture carries the VNI, outer and
    inner addresses tcpdump's expected output (tcpdump master, INDEX.md) prints for that packet."""
    tests = PEER / "tcpdump" / "tests"
    truth = _tcpdump_tunnels(tests / expected)
    doc = json.loads(run(capsys, "paths", "--json", str(tests / capture))[1])
    hops = [h for p in doc["paths"] for h in p["hops"] + p["reply_hops"] if h["tunnel"] is not None]
    assert hops and len(truth) >= 2
    for h in hops:
        assert h["tunnel"] == ("geneve" if "geneve" in capture else "vxlan")
        assert (h["vni"], h["outer_src"], h["outer_dst"], h["src"], h["dst"]) in truth, h


@pytest.mark.parametrize("extra", [[], ["--memory", BUDGET]])
def test_flows_say_the_records_a_reader_skipped(extra, variants, capsys):
    """flows of a capture with a corrupt record header said nothing of it (its flows silently lacked the record)."""
    f = variants["absurd_caplen.pcap"]
    for fmt in ([], ["--json"]):
        code, _, err = run(capsys, "flows", *fmt, *extra, str(f))
        assert code == 0 and f"pcaptools: note: {f}: 1 record(s) skipped by the reader (caplen_absurd 1)" in err
    from pcaptools.flows import read_flows

    assert read_flows([str(f), str(OWN / "eth.pcap")], memory=BUDGET if extra else None).attrs["skipped"] == {str(f): {"caplen_absurd": 1}}


def test_compare_json_gives_null_not_minus_one_for_a_point_without_ip_packets(capsys):
    """An ARP-only capture (Zeek's linuxsll-arp.pcap) has no IP packet: its largest IP packet is absent, null in JSON
    (compare --json printed the table's -1: the declared absent values were not applied to the detail tables)."""
    doc = json.loads(run(capsys, "compare", "--json", str(PEER / "zeek" / "Traces" / "linuxsll-arp.pcap"))[1])
    (point,) = doc["points"]
    assert point["largest_ip"] is None and point["largest_wire_ip"] is None
    assert point["packets"] == 12 and point["largest_frame"] == 62  # tshark: 12 frames, sll:ethertype:arp, frame.len max 62


def test_a_capture_whose_name_is_not_utf8_is_one_error_on_every_command(tmp_path, capsys):
    """A capture named with byte 0xff (and an escape sequence) in a directory of captures: every command but info
    raised UnicodeEncodeError (file and point names are text in tables, JSON and Parquet); now one line, exit 2."""
    (tmp_path / "node-1").mkdir()
    shutil.copy(OWN / "eth.pcap", tmp_path / "node-1" / "eth0.pcap")
    bad = os.fsdecode(os.fsencode(tmp_path / "node-1") + b"/\xff\x1b[31mred.pcap")
    shutil.copy(OWN / "eth.pcap", bad)
    shown = f"{tmp_path / 'node-1'}/\\xff\\x1b[31mred.pcap: the file name is not UTF-8 text (byte 0xff at"
    out = tmp_path.parent / f"{tmp_path.name}-out"
    out.mkdir()
    for argv in (["info", bad], ["flows", "--json", bad], ["show", bad, "0"], ["decode", bad, "-o", str(out / "p.csv")],
                 *_single_file_commands(tmp_path, out)[1:]):  # the capture set's commands on its directory  # fmt: skip
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.splitlines()[-1].startswith(f"pcaptools: {shown}"), (argv, err)


@pytest.mark.parametrize("spec", ["garbage", "n1:eth0=nofile.pcap"])
def test_a_point_naming_a_missing_file_is_said_as_the_option(spec, tmp_path, capsys):
    """--point with a missing file said "capture listed for node ... check the manifest's 'file'" with no manifest."""
    for extra in ([], ["--memory", BUDGET]):
        code, _, err = run(capsys, "correlate", "--point", spec, *extra)
        assert code == 2 and err.splitlines()[-1].startswith(f"pcaptools: --point {spec}: ") and "manifest" not in err


def test_a_dataset_file_with_no_decodable_record_keeps_its_skips_when_streamed(variants, tmp_path, capsys):
    """A converted set holding a capture whose only record is skipped: streamed correlate read no batch of it, so its
    skip note was missing and --memory gave other JSON than the in-memory run."""
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    shutil.copy(OWN / "eth.pcap", tmp_path / "n1" / "eth0.pcap")
    shutil.copy(variants["bad_block_trailer.pcapng"], tmp_path / "n2" / "eth0.pcapng")
    ds = tmp_path.parent / f"{tmp_path.name}.ds"
    run(capsys, "convert", str(tmp_path), "-o", str(ds))
    whole = json.loads(run(capsys, "correlate", "--json", str(ds))[1])
    streamed = json.loads(run(capsys, "correlate", "--json", "--memory", BUDGET, str(ds))[1])
    assert "eth0.pcapng: 1 record(s) skipped by the reader (block_trailer_mismatch 1)" in whole["notes"][0]
    assert _json_without_budget_notes(streamed) == _json_without_budget_notes(whole)


def test_comparison_to_dict_gives_none_not_minus_one_for_a_point_without_ip_packets():
    """The Python API's ``Comparison.to_dict`` applies the same declared absent values as ``compare --json``."""
    from pcaptools.compare import compare

    cmp = compare([str(PEER / "zeek" / "Traces" / "linuxsll-arp.pcap")])
    (point,) = cmp.to_dict()["points"]
    assert point["largest_ip"] is None and point["largest_wire_ip"] is None and point["largest_frame"] == 62
    assert json.loads(cmp.to_json())["points"][0]["largest_ip"] is None


def test_pcapng_blocks_that_hold_no_packet_bring_no_skipped_records_note(capsys):
    """dumpcap ends every capture with an Interface Statistics Block: info counts it, but nothing was lost, so
    correlate says no 'skipped by the reader' note (every dumpcap capture had one); a damaged record still does."""
    from pcaptools import read_packets
    from pcaptools.fmt import reader_notes

    f = OWN / "dumpcap.pcapng"
    assert read_packets(str(f)).attrs["skipped"] == {str(f): {"interface_statistics_block": 1}}
    code, out, err = run(capsys, "correlate", "--json", "--point", f"n1:eth0={f}")
    assert code == 0 and "skipped by the reader" not in out + err
    assert reader_notes({"x.pcapng": {"interface_statistics_block": 1, "caplen_absurd": 2}}) == [
        "x.pcapng: 2 record(s) skipped by the reader (caplen_absurd 2); `pcaptools info x.pcapng` says where and why"]


def test_flows_of_a_file_given_twice_count_its_skipped_records_twice_in_memory_and_streamed(variants):
    """Both runs read the file twice (its flows are doubled in both): the skips are summed alike, not last-wins."""
    from pcaptools.flows import read_flows

    f = str(variants["absurd_caplen.pcap"])
    for memory in (None, BUDGET):
        assert read_flows([f, f], memory=memory).attrs["skipped"] == {f: {"caplen_absurd": 2}}, memory
