"""The record walk of a large pcap in byte ranges on several threads finds exactly the records of one sequential walk:
wrong guesses of a range's first record, damage, cut-off ends and compression included."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from pcaptools.errors import CorruptBlock
from pcaptools.io import pcap as pcap_mod
from pcaptools.io import read_records, reader, split, threads
from tests.ranges_support import SEC
from tests.ranges_support import read_both as _read_both


def _records(n: int, seed: int, o: str = "<") -> list[bytes]:
    """``n`` records of 40-1514 bytes with random payload, 10 µs apart."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice((40, 60, 66, 300, 1514, rng.randrange(40, 1515)))
        t = SEC * 10**6 + 10 * i
        out.append(struct.pack(o + "IIII", t // 10**6, t % 10**6, size, size + rng.choice((0, 0, 4))) + rng.randbytes(size))
    return out


def _file(records: list[bytes], o: str = "<", magic: int = 0xA1B2C3D4) -> bytes:
    return struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1) + b"".join(records)


def _same(a, b) -> None:
    for f in ("offset", "caplen", "wirelen", "ts_ns", "record", "iface", "linktype"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.skipped, a.notes, a.stopped_at, a.records_total) == (b.skipped, b.notes, b.stopped_at, b.records_total)


@pytest.mark.parametrize("cores", [2, 3, 8])
@pytest.mark.parametrize("o", ["<", ">"], ids=["little-endian", "big-endian"])
def test_ranges_that_join_give_every_record_of_the_sequential_walk(tmp_path: Path, monkeypatch, cores: int, o: str) -> None:
    p = tmp_path / "t.pcap"
    p.write_bytes(_file(_records(3000, cores, o), o))
    joined = []
    walk_ranges = split.walk_ranges
    monkeypatch.setattr(split, "walk_ranges", lambda *a, **k: joined.append(walk_ranges(*a, **k)) or joined[-1])
    calls = []
    walk_range = split._walk_range
    monkeypatch.setattr(split, "_walk_range", lambda *a: calls.append(a[1:3]) or walk_range(*a))
    ranged, one = _read_both(p, monkeypatch, cores)
    assert len(calls) == cores and calls[0][0] == 24 and calls[-1][1] == p.stat().st_size
    _same(ranged, one)
    assert len(one) == 3000
    (offset, *_), resume = joined[0]
    assert len(offset) == 3000 and resume == p.stat().st_size  # every range joined the one before: nothing left over


def test_a_wrong_guess_inside_a_payload_is_caught_and_walked_sequentially(tmp_path: Path, monkeypatch) -> None:
    recs = _records(1000, 7)
    decoy = b"".join(struct.pack("<IIII", SEC, 5, 10, 10) + bytes(10) for _ in range(split.CHAIN + 1))
    head = sum(map(len, recs[:500]))
    body_len = 60_000  # one large record spans the middle of the file: its payload holds a chain of fake headers
    total = 24 + head + 16 + body_len + sum(map(len, recs[500:]))
    cut = 24 + (total - 24) // 2
    at = cut - (24 + head + 16)
    assert 0 <= at < body_len - len(decoy)
    body = bytes(at) + decoy + bytes(body_len - at - len(decoy))
    big = struct.pack("<IIII", SEC + 1, 0, body_len, body_len) + body
    p = tmp_path / "decoy.pcap"
    p.write_bytes(_file([*recs[:500], big, *recs[500:]]))
    assert split.first_record_after(np.fromfile(p, np.uint8), cut, pcap_mod.parse_header(str(p), p.read_bytes()[:24])[0],
                                    SEC - 10, SEC + 10) == cut  # the guess is the decoy  # fmt: skip
    ranged, one = _read_both(p, monkeypatch)
    _same(ranged, one)
    assert len(one) == 1001 and one.caplen[500] == body_len


def test_damage_and_a_cut_off_end_in_a_later_range_read_as_sequentially(tmp_path: Path, monkeypatch) -> None:
    recs = _records(2000, 3)
    garbage = struct.pack("<IIII", 0xDEADBEEF, 0xDEADBEEF, 0x7FFFFFFF, 0x7FFFFFFF) + b"\xee" * 37
    p = tmp_path / "damaged.pcap"
    p.write_bytes(_file([*recs[:1500], garbage, *recs[1500:]])[:-7])
    ranged, one = _read_both(p, monkeypatch)
    _same(ranged, one)
    assert one.skipped == {"caplen_absurd": 1, "truncated_record": 1} and len(one) == 1999
    with pytest.raises(CorruptBlock, match="record 1500 at byte"):
        _read_both(p, monkeypatch, on_error="raise")


def test_a_compressed_capture_is_walked_in_ranges_too(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "t.pcap.gz"
    p.write_bytes(gzip.compress(_file(_records(2000, 5, ">"), ">", 0xA1B23C4D)))
    calls = []
    walk_range = split._walk_range
    monkeypatch.setattr(split, "_walk_range", lambda *a: calls.append(a[1:3]) or walk_range(*a))
    ranged, one = _read_both(p, monkeypatch)
    _same(ranged, one)
    assert len(calls) == 2 and len(one) == 2000 and one.ts_ns[0] == SEC * 10**9


@pytest.mark.parametrize("cores", [1, 2])
def test_unmapped_pages_are_read_again_when_touched(tmp_path: Path, monkeypatch, cores: int) -> None:
    p = tmp_path / "t.pcap"
    content = _file(_records(2000, 11))
    p.write_bytes(content)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 4096)
    monkeypatch.setattr(split, "STEP_BYTES", 8192)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    kept, unmapped = read_records(p), read_records(p, unmap=True)
    _same(unmapped, kept)
    assert split.is_mapped(unmapped.data)
    for i in (0, 999, 1999):  # the bytes come back from the page cache
        assert unmapped.packet(i) == kept.packet(i) == content[int(kept.offset[i]) : int(kept.offset[i]) + int(kept.caplen[i])]


def test_pcapng_and_small_files_keep_the_sequential_walk(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    calls = []
    monkeypatch.setattr(reader, "_ranged_prefix", lambda *a: calls.append(a))
    small = tmp_path / "small.pcap"
    small.write_bytes(_file(_records(10, 1)))
    assert len(read_records(small)) == 10
    assert len(read_records(Path(__file__).parent / "data" / "own" / "any_nano.pcapng")) > 0
    assert calls == []
