"""Every capture under tests/data read by pcaptools agrees with tshark and capinfos, record for record."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from pcaptools.io import iter_records, read_records

DATA = Path(__file__).parent / "data"
CAPTURES = sorted(
    p for p in DATA.rglob("*") if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz", ".cap"))
)
TSHARK = shutil.which("tshark")
CAPINFOS = shutil.which("capinfos")


def _tshark(path: Path) -> tuple[list[int], list[int], list[int]]:
    out = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.cap_len",
            "-e",
            "frame.len",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    # time_epoch has 9 decimals: Decimal keeps it exact down to the nanosecond
    return (
        [int(Decimal(r[0]) * 1_000_000_000) for r in rows],
        [int(r[1]) for r in rows],
        [int(r[2]) for r in rows],
    )


@pytest.fixture(scope="session")
def tshark_fields() -> dict[Path, tuple[list[int], list[int], list[int]]]:
    """tshark's (ts_ns, caplen, wirelen) per capture, run once per session, two files at a time."""
    if not TSHARK:
        pytest.skip("tshark is not installed; the differential tests need it as the reference reader")
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CAPTURES, pool.map(_tshark, CAPTURES), strict=True))


def test_there_are_captures_of_every_kind_to_compare() -> None:
    names = [p.name for p in CAPTURES]
    assert any(n.endswith(".pcapng") for n in names)
    assert any(n.endswith(".gz") for n in names)
    assert any(p.parent.name == "own" for p in CAPTURES)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_records_match_tshark(path: Path, tshark_fields) -> None:
    ts, caplen, wirelen = tshark_fields[path]
    batch = read_records(path)
    assert len(batch) == len(ts)
    assert batch.ts_ns.tolist() == ts
    assert batch.caplen.tolist() == caplen
    assert batch.wirelen.tolist() == wirelen
    assert len(batch) + sum(batch.skipped.values()) == batch.records_total


@pytest.mark.skipif(not CAPINFOS, reason="capinfos is not installed")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_record_count_matches_capinfos(path: Path) -> None:
    out = subprocess.run(["capinfos", "-T", "-r", "-c", str(path)], capture_output=True, text=True).stdout
    assert len(read_records(path)) == int(out.strip().split("\t")[-1])


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(DATA)))
def test_streaming_in_tiny_windows_gives_the_same_records(path: Path) -> None:
    whole = read_records(path)
    batches = list(iter_records(path, batch_records=5, batch_bytes=256))
    assert batches, "the iterator yields at least one batch, even for an empty capture"
    assert all(len(b) <= 5 for b in batches)
    got = {
        "record": np.concatenate([b.record for b in batches]),
        "ts_ns": np.concatenate([b.ts_ns for b in batches]),
        "caplen": np.concatenate([b.caplen for b in batches]),
        "wirelen": np.concatenate([b.wirelen for b in batches]),
        "linktype": np.concatenate([b.linktype for b in batches]),
    }
    for name, col in got.items():
        np.testing.assert_array_equal(col, getattr(whole, name), err_msg=name)
    assert [b.packet(i) for b in batches for i in range(len(b))] == [
        whole.packet(i) for i in range(len(whole))
    ]
    skipped: dict[str, int] = {}
    for b in batches:
        assert len(b) + sum(b.skipped.values()) == b.records_total
        for k, v in b.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    assert skipped == whole.skipped
    assert batches[-1].stopped_at == whole.stopped_at


def test_own_any_capture_is_linux_sll2_with_nanosecond_stamps() -> None:
    batch = read_records(DATA / "own" / "any_nano.pcap")
    assert {int(x) for x in batch.linktype} == {276}
    assert batch.interfaces[0].tsresol_ns == 1.0
    assert (batch.ts_ns % 1000 != 0).any(), "nanosecond capture should have sub-microsecond digits"


def test_snaplen_cut_capture_keeps_wire_length() -> None:
    batch = read_records(DATA / "own" / "snaplen96.pcap")
    assert batch.interfaces[0].snaplen == 96
    assert int(batch.caplen.max()) <= 96
    assert (batch.wirelen > batch.caplen).any()


def test_two_section_pcapng_numbers_interfaces_across_sections() -> None:
    batch = read_records(DATA / "own" / "two_sections.pcapng")
    eth = read_records(DATA / "own" / "eth.pcap")
    assert [(i.id, i.section, i.linktype) for i in batch.interfaces] == [(0, 0, 1), (1, 1, 276)]
    n = len(eth)
    assert batch.iface[:n].tolist() == [0] * n and set(batch.iface[n:].tolist()) == {1}
    np.testing.assert_array_equal(batch.ts_ns[:n], eth.ts_ns)
    assert batch.record.tolist() == list(range(len(batch)))


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    renamed = tmp_path / "capture.bin"
    renamed.write_bytes((DATA / "own" / "eth.pcap.gz").read_bytes())
    gz = read_records(renamed)
    plain = read_records(DATA / "own" / "eth.pcap")
    np.testing.assert_array_equal(gz.ts_ns, plain.ts_ns)
    assert [gz.packet(i) for i in range(len(gz))] == [plain.packet(i) for i in range(len(plain))]


def test_dumpcap_interface_name_and_statistics_block_are_accounted() -> None:
    batch = read_records(DATA / "own" / "dumpcap.pcapng")
    assert batch.interfaces[0].name == "ptio-va"
    assert batch.skipped == {"interface_statistics_block": 1}
    assert batch.records_total == len(batch) + 1


def test_truncated_last_record_is_reported() -> None:
    path = DATA / "own" / "truncated_last.pcap"
    full = read_records(DATA / "own" / "eth.pcap")
    batch = read_records(path)
    assert len(batch) == len(full) - 1
    assert batch.skipped == {"truncated_record": 1}
    assert batch.stopped_at["reason"] == "truncated_record"
    assert batch.stopped_at["offset"] == int(full.offset[-1]) - 16
    assert batch.stopped_at["record"] == len(full) - 1
