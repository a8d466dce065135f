"""Parquet datasets (`pcaptools convert`): read back equal to the captures, same answers from every command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from stream_support import without_floor_note

import pcaptools
from pcaptools.convert import convert
from pcaptools.dataset import read_dataset, read_meta
from pcaptools.errors import DecodeError, PcapError
from pcaptools.k8s.discover import load_captures
from pcaptools.schema import PACKET_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
OWN = ROOT / "tests" / "data" / "own"
PEER = ROOT / "tests" / "data" / "peer"


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def calico(tmp_path_factory) -> Path:
    """sample_pcaps/calico-vxlan converted once (with flows), as the CLI does."""
    out = tmp_path_factory.mktemp("ds") / "calico.ds"
    r = _cli("convert", str(SAMPLES / "calico-vxlan"), "-o", str(out), "--flows")
    assert r.returncode == 0, r.stderr
    return out


def _files(ds: Path) -> list[str]:
    return [f["path"] for f in read_meta(ds)["files"]]


def _assert_same_table(ds: Path) -> None:
    """read_packets of the dataset equals read_packets of its captures: columns, dtypes, categories, rows, attrs."""
    want = pcaptools.read_packets(_files(ds), payload_hash=True)
    got = pcaptools.read_packets(str(ds), payload_hash=True)
    pd.testing.assert_frame_equal(got, want)
    assert got.attrs == want.attrs
    plain = pcaptools.read_packets(str(ds))
    assert "payload_hash" not in plain.columns and list(plain.columns) == [c.name for c in PACKET_COLUMNS]


def test_lab_sample_reads_back_equal_to_its_captures(calico):
    _assert_same_table(calico)
    one = _files(calico)[3]
    pd.testing.assert_frame_equal(pcaptools.read_packets(f"{calico}::{one}"), pcaptools.read_packets(one))


def test_vpc_sample_reads_back_equal_to_its_captures(tmp_path):
    convert(SAMPLES / "vpc", tmp_path / "vpc.ds")
    _assert_same_table(tmp_path / "vpc.ds")


@pytest.mark.parametrize("capture", [
    OWN / "truncated_last.pcap",  # truncated_record skip
    OWN / "dumpcap.pcapng",  # interface_statistics_block skip
    OWN / "eth.pcap.gz",
    OWN / "any_nano.pcapng",
    PEER / "tcpdump/tests/dhcp-option-108.pcapng",
    PEER / "tcpdump/tests/vxlan.pcap",
    PEER / "tcpdump/tests/geneve.pcap",
    PEER / "zeek/Traces/linux_dlt_sll2.pcap",
])  # fmt: skip
def test_damaged_and_peer_captures_read_back_with_their_skip_accounting(tmp_path, capture):
    out = tmp_path / "one.ds"
    convert([], out, points=[f"n1:eth0={capture}"])
    _assert_same_table(out)
    (f,) = read_meta(out)["files"]
    assert f["records"] == f["rows"] + sum(f["skipped"].values())
    assert f["skipped"] == pcaptools.read_packets(str(capture)).attrs["skipped"][str(capture)]


def test_a_file_at_two_points_and_unnamed_pcapng_interfaces_keep_every_row(tmp_path):
    """One -i any file named whole and split per ifindex, and a pcapng whose second interface no entry names."""
    shutil.copy(PEER / "zeek/Traces/linux_dlt_sll2.pcap", tmp_path / "any.pcap")
    shutil.copy(OWN / "two_sections.pcapng", tmp_path / "two.pcapng")
    man = {"cni": "test", "captures": [
        {"file": "any.pcap", "node": "n1", "interface": "eth0", "role": "node-uplink"},
        {"file": "any.pcap", "node": "n1", "role": "any", "interfaces": [{"ifindex": 1, "interface": "eth0"}]},
        {"file": "two.pcapng", "node": "n2", "interface": "eth0", "pcapng_interface": 0},
    ]}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    convert(tmp_path, tmp_path / "set.ds")
    _assert_same_table(tmp_path / "set.ds")
    a, b = load_captures([tmp_path]), load_captures([tmp_path / "set.ds"])
    assert [p.name for p in b.points] == [p.name for p in a.points]
    assert any(p.name.endswith("@any") for p in b.points)
    pd.testing.assert_frame_equal(b.packets, a.packets)
    assert (tmp_path / "set.ds" / "packets" / "point=__HIVE_DEFAULT_PARTITION__").is_dir()


def test_parquet_parts_carry_the_schema_units_and_docs(calico):
    parts = sorted((calico / "packets").glob("point=*/window=*/part-*.parquet"))
    assert parts
    schema = pq.read_schema(parts[0])
    declared = {c.name: c for c in PACKET_COLUMNS}
    for name, col in declared.items():
        meta = schema.field(name).metadata
        assert meta[b"unit"].decode() == col.unit and meta[b"doc"].decode() == col.doc and meta[b"dtype"].decode() == col.dtype
    doc = json.loads(schema.metadata[b"pcaptools.schema"])
    assert [d["name"] for d in doc] == [*declared, "payload_hash"]
    assert all(d["unit"] == declared[d["name"]].unit and d["doc"] == declared[d["name"]].doc for d in doc if d["name"] in declared)
    flows = pq.read_schema(next((calico / "flows").glob("part-*.parquet")))
    assert flows.metadata[b"pcaptools.table"] == b"flows"


def test_hive_layout_reads_with_plain_pyarrow(calico):
    """Other tools (pandas, Dask, DuckDB) see point and window as partition columns."""
    t = pq.read_table(calico / "packets", columns=["point", "window", "ts_ns"])
    points = {p["name"] for p in read_meta(calico)["points"]}
    assert set(t.column("point").to_pylist()) <= points
    ts, win = t.column("ts_ns").to_numpy(), t.column("window").to_numpy().astype("int64")
    assert ((ts >= win) & (ts < win + read_meta(calico)["window_ns"])).all()


def test_filters_select_points_and_a_time_range(calico):
    whole = read_dataset(calico)
    cs = load_captures([calico])
    point = cs.points[2]
    got = read_dataset(calico, points=[point.name])
    assert len(got) == int((cs.packets["point"] == point.name).sum())
    assert list(got["file"].cat.categories) == [str(whole["file"].cat.categories[2])]
    ts = whole["ts_ns"].to_numpy()
    lo, hi = int(ts.min() + (ts.max() - ts.min()) // 3), int(ts.max() - (ts.max() - ts.min()) // 3)
    part = read_dataset(calico, start_ns=lo, end_ns=hi)
    assert len(part) == int(((ts >= lo) & (ts < hi)).sum()) > 0
    assert ((part["ts_ns"] >= lo) & (part["ts_ns"] < hi)).all()
    with pytest.raises(PcapError, match="no capture point"):
        read_dataset(calico, points=["nowhere:eth9"])


@pytest.mark.parametrize("command", ["paths", "correlate", "why"])
def test_commands_give_the_same_json_on_the_dataset(calico, command):
    on_pcaps = _cli(command, str(SAMPLES / "calico-vxlan"), "--json")
    on_dataset = _cli(command, str(calico), "--json")
    assert on_pcaps.returncode == 0 and on_dataset.returncode == 0, on_dataset.stderr
    assert json.loads(on_dataset.stdout) == json.loads(on_pcaps.stdout)


def test_compare_and_flows_give_the_same_json_on_the_dataset(calico):
    """The same comparison apart from the set's label and source (the directory names)."""
    sample = SAMPLES / "calico-vxlan"
    a = _cli("compare", str(sample), "--json").stdout
    b = _cli("compare", str(calico), "--json").stdout.replace(str(calico), str(sample)).replace(calico.name, sample.name)
    assert json.loads(b) == json.loads(a)
    f_a = json.loads(_cli("flows", *_files(calico), "--json").stdout)
    f_b = json.loads(_cli("flows", str(calico), "--json").stdout)
    assert f_b == f_a and f_a["flows"]


def test_report_reads_the_dataset(calico, tmp_path):
    r = _cli("report", str(calico), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    assert "node-1" in (tmp_path / "r.html").read_text()


def test_convert_refuses_a_taken_directory_unless_told(calico, tmp_path):
    taken = tmp_path / "notes"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # not a dataset: never replaced
        r = _cli("convert", str(SAMPLES / "vpc"), "-o", str(taken), *extra)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.startswith("pcaptools: ") and len(r.stderr.strip().splitlines()) == 1
    assert (taken / "mine.txt").read_text() == "keep me"
    copy = tmp_path / "copy.ds"
    shutil.copytree(calico, copy)
    r = _cli("convert", str(SAMPLES / "vpc"), "-o", str(copy))
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("convert", str(SAMPLES / "vpc"), "-o", str(copy), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert read_meta(copy)["cni"] == "vpc"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _one_line_error(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("pcaptools: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_corrupt_or_foreign_parquet_directory_is_a_one_line_error(calico, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(foreign / "data.parquet")
    _one_line_error(_cli("paths", str(foreign)))
    bad_meta = tmp_path / "bad-meta"
    shutil.copytree(calico, bad_meta)
    (bad_meta / "_pcaptools.json").write_text('{"format": "something-else"}')
    _one_line_error(_cli("paths", str(bad_meta)))
    (bad_meta / "_pcaptools.json").write_text("{not json")
    _one_line_error(_cli("correlate", str(bad_meta)))
    cut = tmp_path / "cut"
    shutil.copytree(calico, cut)
    part = sorted((cut / "packets").glob("point=*/window=*/part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: os.path.getsize(part) // 2])
    r = _cli("paths", str(cut))
    _one_line_error(r)
    assert "unreadable" in r.stderr
    part.unlink()  # a part gone: counted against the rows the description promises, never a silent loss
    r = _cli("paths", str(cut))
    _one_line_error(r)
    assert "parts are missing" in r.stderr


def test_a_dataset_decoded_with_other_options_is_not_read_as_if_it_were_not(calico):
    with pytest.raises(DecodeError, match="convert the captures again"):
        pcaptools.read_packets(str(calico), vxlan_ports=(4789, 8472, 4790))


def test_batched_conversion_keeps_every_row_value_and_count(tmp_path):
    """Written 64 records at a time (bounded memory): the same rows and values; categories list values in batch order."""
    convert(SAMPLES / "calico-vxlan", tmp_path / "b.ds", batch_records=64)
    files = _files(tmp_path / "b.ds")
    want = pcaptools.read_packets(files, payload_hash=True)
    got = pcaptools.read_packets(str(tmp_path / "b.ds"), payload_hash=True)
    assert got.attrs["skipped"] == want.attrs["skipped"]
    cats = [c for c in got.columns if isinstance(got[c].dtype, pd.CategoricalDtype)]
    pd.testing.assert_frame_equal(got.astype(dict.fromkeys(cats, object)), want.astype(dict.fromkeys(cats, object)))
    assert [p.name for p in load_captures([tmp_path / "b.ds"]).points] == [p.name for p in load_captures([SAMPLES / "calico-vxlan"]).points]


def test_inferred_points_and_their_evidence_survive_conversion(tmp_path):
    """Plain captures (no manifest): the dataset keeps the inferred points, the evidence line and the answers."""
    plain = tmp_path / "vpc"
    shutil.copytree(SAMPLES / "vpc", plain)
    (plain / "manifest.json").unlink()
    ds = tmp_path / "vpc.ds"
    r = _cli("convert", str(plain), "-o", str(ds))
    assert r.returncode == 0, r.stderr
    shutil.rmtree(plain / "node-1")  # the analysis needs the dataset only
    on_dataset = _cli("paths", str(ds), "--json")
    assert on_dataset.returncode == 0, on_dataset.stderr
    shutil.copytree(SAMPLES / "vpc" / "node-1", plain / "node-1")
    on_pcaps = _cli("paths", str(plain), "--json")
    assert json.loads(on_dataset.stdout) == json.loads(on_pcaps.stdout)
    assert on_dataset.stderr == on_pcaps.stderr and "inferred 11 capture points" in on_pcaps.stderr
    stored, inferred = load_captures([ds]).inference, load_captures([plain], inventory=plain / "inventory.json").inference
    pd.testing.assert_frame_equal(stored.drop(columns="file"), inferred.drop(columns="file"))
    assert stored.attrs["warnings"] == inferred.attrs["warnings"]


def test_plain_captures_convert_in_batches_without_a_whole_packet_table(tmp_path, monkeypatch):
    """Points inferred from bounded summaries and files written in batches: nothing reads a capture whole, and the
    dataset holds every row, the inferred points and their evidence."""
    import pcaptools.k8s.discover
    import pcaptools.packets

    plain = tmp_path / "vpc"
    shutil.copytree(SAMPLES / "vpc", plain, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    want = load_captures([plain], inventory=plain / "inventory.json")
    files = list(dict.fromkeys(p.file for p in want.points))

    def whole(*args, **kwargs):
        raise AssertionError("a capture was read whole")

    with monkeypatch.context() as m:
        m.setattr(pcaptools.packets, "read_packets", whole)
        m.setattr(pcaptools.k8s.discover, "load_captures", whole)
        convert(plain, tmp_path / "vpc.ds", batch_records=64)
    got = load_captures([tmp_path / "vpc.ds"])
    assert [p.name for p in got.points] == [p.name for p in want.points]
    pd.testing.assert_frame_equal(got.inference.drop(columns="file"), want.inference.drop(columns="file"))
    assert got.inference.attrs["warnings"] == want.inference.attrs["warnings"]
    assert sorted(_files(tmp_path / "vpc.ds")) == sorted(files)
    assert len(pcaptools.read_packets(str(tmp_path / "vpc.ds"))) == len(pcaptools.read_packets(files))


def test_a_dataset_mixes_with_plain_captures_and_is_not_converted_twice(calico, tmp_path):
    cs = load_captures([calico, OWN / "eth.pcap"])
    alone = load_captures([calico])
    assert [p.name for p in cs.points] == [p.name for p in alone.points] + ["eth"]
    assert len(cs.packets) == len(alone.packets) + len(pcaptools.read_packets(str(OWN / "eth.pcap")))
    with pytest.raises(PcapError, match="is a dataset already"):
        convert(calico, tmp_path / "again.ds")


def test_dataset_description_follows_its_shipped_schema(calico, tmp_path):
    import jsonschema

    from pcaptools.render.records import json_schema

    shutil.copy(PEER / "zeek/Traces/linux_dlt_sll2.pcap", tmp_path / "any.pcap")
    convert([], tmp_path / "any.ds", points=[f"n1:any={tmp_path / 'any.pcap'}"])
    for ds in (calico, tmp_path / "any.ds"):
        doc = json.loads((ds / "_pcaptools.json").read_text())
        jsonschema.Draft202012Validator(json_schema("dataset")).validate(doc)
        assert all(f["records"] == f["rows"] + sum(f["skipped"].values()) for f in doc["files"])
    assert any(p["ifindex"] is not None for p in json.loads((tmp_path / "any.ds" / "_pcaptools.json").read_text())["points"])


@pytest.fixture(scope="module")
def vpc_parts(tmp_path_factory) -> Path:
    """sample_pcaps/vpc converted in batches of 50 records and 20 ms windows: every file in many Parquet parts."""
    return convert(SAMPLES / "vpc", tmp_path_factory.mktemp("parts") / "vpc.ds", batch_records=50, window_ns=20_000_000)


def test_a_dataset_file_read_in_batches_concatenates_to_the_whole_file(vpc_parts):
    from pcaptools.decode.table import concat
    from pcaptools.packets import iter_packets

    for f in _files(vpc_parts):
        name = f"{vpc_parts}::{f}"
        whole = pcaptools.read_packets(name, payload_hash=True)
        parts = list(iter_packets(name, batch_records=64, payload_hash=True))
        assert len(parts) >= 2 and all(len(p) <= 64 for p in parts)
        assert parts[0].attrs == whole.attrs
        got = concat(parts)
        got.attrs = whole.attrs
        pd.testing.assert_frame_equal(got, whole)


def test_a_dataset_streams_per_point_and_window_like_the_in_memory_run(vpc_parts, tmp_path):
    from pcaptools.k8s.discover import correlate_inputs

    one, cs1 = correlate_inputs([vpc_parts], memory=1 << 40, out=tmp_path / "one.parquet")
    win, cs2 = correlate_inputs([vpc_parts], window_rows=300, out=tmp_path / "win.parquet")
    assert cs1.points == cs2.points == load_captures([vpc_parts]).points
    pd.testing.assert_frame_equal(cs1.inference, cs2.inference)
    assert one.to_dict() == win.to_dict() and len(win.hops) == 0 and one.journeys > 500
    h1, h2 = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "win.parquet")
    pd.testing.assert_frame_equal(h1.astype(str), h2.astype(str))
    pd.testing.assert_frame_equal(one.offsets, win.offsets)
    pd.testing.assert_frame_equal(one.hop_latency, win.hop_latency)
    small = _cli("correlate", str(vpc_parts), "--memory", "16MiB", "--json")
    assert small.returncode == 0, small.stderr
    assert without_floor_note(json.loads(small.stdout)) == json.loads(_cli("correlate", str(SAMPLES / "vpc"), "--json").stdout)


def test_memory_bounded_reading_of_a_dataset_streams_its_files_and_a_whole_one_says_how(calico):
    """--memory on a dataset reads each of its files in parts (same flows); iter_packets of the whole directory, or
    decode -o, which streams one input at a time, get one line naming DIR::FILE and read_dataset, not a file error."""
    from pcaptools.flows import read_flows
    from pcaptools.packets import iter_packets

    pd.testing.assert_frame_equal(read_flows(str(calico), memory="64MiB"), read_flows(str(calico)))
    with pytest.raises(DecodeError, match="dataset .*DIR::FILE.*read_dataset"):
        next(iter_packets(str(calico)))
    r = _cli("decode", str(calico), "-o", str(calico.parent / "p.parquet"), "--memory", "64MiB")
    assert r.returncode == 2 and "dataset" in r.stderr and "Traceback" not in r.stderr


def test_merge_of_a_dataset_converted_from_relative_paths_works_from_any_directory(tmp_path):
    """convert keeps the file column as given (relative to where it ran); merge finds the bytes from elsewhere."""
    ds = tmp_path / "rel.ds"
    r = _cli("convert", "sample_pcaps/vpc", "-o", str(ds), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert all(not os.path.isabs(f) for f in _files(ds))
    via_dataset, direct = tmp_path / "ds.pcapng", tmp_path / "direct.pcapng"
    r = _cli("merge", str(ds), "-o", str(via_dataset), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("merge", str(SAMPLES / "vpc"), "-o", str(direct), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert via_dataset.read_bytes() == direct.read_bytes()
