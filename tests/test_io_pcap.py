"""Classic pcap variants, damaged files and the errors users see, built with struct where no capture has them."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pcaptools.errors import BadMagic, CorruptBlock, PcapError, TruncatedRecord
from pcaptools.io import iter_records, read_records

DATA = Path(__file__).parent / "data"
REPO = str(Path(__file__).resolve().parent.parent)
SEC = 1_600_000_000


def pcap(
    records: list[tuple[int, int, bytes, int]], *, o: str = "<", magic: int = 0xA1B2C3D4, snaplen=65535, lt=1
):
    """A classic pcap file from (ts_sec, ts_frac, data, wirelen) records."""
    out = struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, snaplen, lt)
    for sec, frac, data, wire in records:
        out += struct.pack(o + "IIII", sec, frac, len(data), wire)
        if magic == 0xA1B2CD34:
            out += struct.pack(o + "IHBB", 7, 2, 1, 0)  # Kuznetsov: ifindex, protocol, pkt_type, pad
        out += data
    return out


RECS = [(SEC, 1, bytes(60), 60), (SEC, 999_999, bytes(range(100)), 1514), (SEC + 1, 0, b"\xff" * 42, 42)]


def _write(tmp_path: Path, content: bytes, name: str = "t.pcap") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("o", ["<", ">"], ids=["little-endian", "big-endian"])
def test_both_byte_orders_read_the_same(tmp_path: Path, o: str) -> None:
    b = read_records(_write(tmp_path, pcap(RECS, o=o)))
    assert b.format == "pcap"
    assert b.ts_ns.tolist() == [SEC * 10**9 + 1000, SEC * 10**9 + 999_999_000, (SEC + 1) * 10**9]
    assert b.caplen.tolist() == [60, 100, 42] and b.wirelen.tolist() == [60, 1514, 42]
    assert b.packet(1) == bytes(range(100))
    assert b.flags is None and b.iface.tolist() == [0, 0, 0]


@pytest.mark.parametrize("o", ["<", ">"])
def test_nanosecond_magic_keeps_nanoseconds(tmp_path: Path, o: str) -> None:
    b = read_records(_write(tmp_path, pcap([(SEC, 123_456_789, bytes(20), 20)], o=o, magic=0xA1B23C4D)))
    assert b.ts_ns.tolist() == [SEC * 10**9 + 123_456_789]
    assert b.interfaces[0].tsresol_ns == 1.0


def test_kuznetsov_variant_skips_its_longer_record_headers(tmp_path: Path) -> None:
    b = read_records(_write(tmp_path, pcap(RECS, magic=0xA1B2CD34)))
    assert b.caplen.tolist() == [60, 100, 42]
    assert b.packet(2) == b"\xff" * 42


@pytest.mark.parametrize("lt", [0, 1, 101, 147, 228, 276, 0xFFFF])
def test_every_link_type_number_is_passed_through(tmp_path: Path, lt: int) -> None:
    b = read_records(_write(tmp_path, pcap(RECS, lt=lt)))
    assert b.linktype.tolist() == [lt] * 3 and b.interfaces[0].linktype == lt


def test_fcs_bits_above_the_link_type_are_not_part_of_it(tmp_path: Path) -> None:
    b = read_records(_write(tmp_path, pcap(RECS, lt=(0b1001 << 28) | 1)))  # FCS present, 4 bytes
    assert b.linktype.tolist() == [1, 1, 1]


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    b = read_records(_write(tmp_path, pcap([])))
    assert len(b) == 0 and b.records_total == 0 and b.skipped == {} and b.stopped_at is None


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadMagic, match=r"empty \(0 bytes\)"):
        read_records(_write(tmp_path, b""))


def test_text_file_is_not_a_capture_and_its_bytes_are_not_echoed(tmp_path: Path) -> None:
    p = _write(tmp_path, b"hello world\n", "notes.txt")
    with pytest.raises(BadMagic, match=r"notes.txt is not a pcap or pcapng file \(unknown magic number\)") as err:
        read_records(p)
    assert "68656c6c" not in str(err.value) and "hello" not in str(err.value)
    assert "capinfos" in str(err.value)


def test_compressed_with_another_tool_says_so(tmp_path: Path) -> None:
    with pytest.raises(BadMagic, match="bzip2"):
        read_records(_write(tmp_path, b"BZh9" + bytes(20)))


def test_file_header_cut_short_is_truncated(tmp_path: Path) -> None:
    with pytest.raises(TruncatedRecord, match="needs 24 bytes, 10 present"):
        read_records(_write(tmp_path, pcap([])[:10]))


def test_truncated_last_record_message_says_what_to_try(tmp_path: Path) -> None:
    content = pcap(RECS)
    p = _write(tmp_path, content[:-10])
    start = len(content) - 16 - 42
    with pytest.raises(TruncatedRecord) as err:
        read_records(p, on_error="raise")
    assert str(err.value) == (
        f"{p}: record 2 at byte {start} needs 42 bytes, 32 remain; capture ends mid-packet, "
        "on_error='skip' keeps the 2 records before it"
    )
    assert (err.value.record, err.value.offset, err.value.path) == (2, start, str(p))
    b = read_records(p)
    assert len(b) == 2 and b.skipped == {"truncated_record": 1} and b.records_total == 3


def test_cut_inside_a_record_header_is_truncated_too(tmp_path: Path) -> None:
    b = read_records(_write(tmp_path, pcap(RECS) + b"\x01\x02\x03"))
    assert len(b) == 3 and b.skipped == {"truncated_record": 1}
    assert "needs a 16-byte record header, 3 bytes remain" in b.notes[0]


def test_absurd_caplen_is_skipped_and_reading_resynchronises(tmp_path: Path) -> None:
    good = pcap(RECS[:2])
    garbage = struct.pack("<IIII", 0xDEADBEEF, 0xDEADBEEF, 0x7FFFFFFF, 0x7FFFFFFF) + b"\xee" * 37
    tail = pcap(RECS[2:] + RECS[:1])[24:]
    b = read_records(_write(tmp_path, good + garbage + tail))
    assert b.caplen.tolist() == [60, 100, 42, 60]
    assert b.record.tolist() == [0, 1, 3, 4]
    assert b.skipped == {"caplen_absurd": 1} and b.records_total == 5
    assert b.stopped_at is None
    assert (
        f"resynchronised at byte {len(good) + len(garbage)} after skipping {len(garbage)} bytes" in b.notes[0]
    )
    with pytest.raises(CorruptBlock, match=rf"record 2 at byte {len(good)} claims caplen 2147483647"):
        read_records(_write(tmp_path, good + garbage + tail), on_error="raise")


def test_absurd_caplen_with_nothing_believable_after_it_stops(tmp_path: Path) -> None:
    good = pcap(RECS)
    b = read_records(_write(tmp_path, good + struct.pack("<IIII", 1, 2, 1 << 30, 5) + bytes(64)))
    assert len(b) == 3
    assert b.stopped_at == {"reason": "caplen_absurd", "offset": len(good), "record": 3, "bytes_left": 80}
    assert b.records_total == 4


def test_caplen_above_snaplen_is_kept_and_noted(tmp_path: Path) -> None:
    b = read_records(_write(tmp_path, pcap(RECS, snaplen=64)))
    assert b.caplen.tolist() == [60, 100, 42]
    assert b.skipped == {}
    assert any("1 records in this batch have caplen > their interface's snaplen" in n for n in b.notes)


def test_truncated_gzip_gives_what_was_decompressed(tmp_path: Path) -> None:
    plain = pcap(RECS * 200)
    gz = gzip.compress(plain, mtime=0)
    p = _write(tmp_path, gz[: len(gz) // 2], "cut.pcap.gz")
    b = read_records(p)
    assert 0 < len(b) < 600
    assert len(b) + sum(b.skipped.values()) == b.records_total
    assert any("gzip data ends before its end-of-stream marker at compressed byte" in n for n in b.notes)
    with pytest.raises(TruncatedRecord, match="ends before its end-of-stream marker"):
        read_records(p, on_error="raise")
    streamed = list(iter_records(p, batch_bytes=1000))
    assert sum(len(x) for x in streamed) == len(b)


def test_corrupt_gzip_is_a_corrupt_block(tmp_path: Path) -> None:
    gz = bytearray(gzip.compress(pcap(RECS * 50), mtime=0))
    gz[30:60] = b"\x00" * 30
    with pytest.raises(CorruptBlock, match="gzip data is corrupt"):
        read_records(_write(tmp_path, bytes(gz), "bad.gz"))


def test_concatenated_gzip_members_are_one_stream(tmp_path: Path) -> None:
    plain = pcap(RECS)
    half = len(plain) // 2
    p = _write(tmp_path, gzip.compress(plain[:half]) + gzip.compress(plain[half:]), "two.gz")
    assert read_records(p).caplen.tolist() == [60, 100, 42]


def test_unknown_on_error_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PcapError, match="on_error must be 'skip' or 'raise'"):
        read_records(_write(tmp_path, pcap(RECS)), on_error="ignore")  # type: ignore[arg-type]


def test_uncompressed_data_is_a_read_only_view_of_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, pcap(RECS))
    b = read_records(p)
    assert not b.data.flags.writeable
    assert b.data.tobytes() == p.read_bytes()


def test_record_windows_cut_mid_record_carry_over(tmp_path: Path) -> None:
    p = _write(tmp_path, pcap(RECS * 30))
    batches = list(iter_records(p, batch_bytes=100))
    assert sum(len(b) for b in batches) == 90
    assert [b.packet(i) for b in batches for i in range(len(b))] == [r[2] for r in RECS * 30]
    assert all(
        b.data_base + int(b.offset[0]) - 16
        == 24 + sum(16 + len(r[2]) for r in (RECS * 30)[: int(b.record[0])])
        for b in batches
        if len(b)
    )


def test_numba_walkers_load_from_the_cache_in_a_fresh_process(tmp_path: Path) -> None:
    # first process may compile and write the cache; the second must load every kernel from it
    script = textwrap.dedent(
        f"""
        from pcaptools.io import read_records
        from pcaptools.io import pcap, pcapng
        assert pcap.__file__.startswith({REPO!r}), pcap.__file__
        read_records({str(DATA / "own" / "eth.pcap")!r}); read_records({str(DATA / "own" / "eth.pcapng")!r})
        print(sum(pcap.walk.stats.cache_hits.values()), sum(pcapng.walk.stats.cache_hits.values()),
              sum(pcap.walk.stats.cache_misses.values()) + sum(pcapng.walk.stats.cache_misses.values()))
        """
    )
    env = dict(os.environ, PYTHONPATH=REPO)  # this checkout, not another installed copy
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, check=True
        )
    hits_pcap, hits_ng, misses = map(int, out.stdout.split())
    assert hits_pcap >= 1 and hits_ng >= 1 and misses == 0


@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap is not installed")
def test_editcap_modified_pcap_reads_like_the_original(tmp_path: Path) -> None:
    src = DATA / "own" / "eth.pcap"
    dst = tmp_path / "mod.pcap"
    subprocess.run(["editcap", "-F", "modpcap", str(src), str(dst)], check=True, capture_output=True)
    assert dst.read_bytes()[:4] == b"\x34\xcd\xb2\xa1"
    a, b = read_records(src), read_records(dst)
    assert b.ts_ns.tolist() == a.ts_ns.tolist() and b.caplen.tolist() == a.caplen.tolist()
    assert [b.packet(i) for i in range(len(b))] == [a.packet(i) for i in range(len(a))]
