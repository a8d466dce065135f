"""pcapng edge cases built byte by byte with struct, each with the value the spec says it must give."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pcaptools.errors import CorruptBlock, TruncatedRecord
from pcaptools.io import iter_records, read_records

SEC = 1_600_000_000  # 2020-09-13, an arbitrary capture time


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def block(btype: int, body: bytes, o: str = "<", trailer: int | None = None) -> bytes:
    total = 12 + len(_pad(body))
    return (
        struct.pack(o + "II", btype, total)
        + _pad(body)
        + struct.pack(o + "I", total if trailer is None else trailer)
    )


def options(*pairs: tuple[int, bytes], o: str = "<") -> bytes:
    out = b"".join(struct.pack(o + "HH", code, len(v)) + _pad(v) for code, v in pairs)
    return out + struct.pack(o + "HH", 0, 0)


def shb(o: str = "<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1), o)


def idb(linktype: int = 1, snaplen: int = 65535, o: str = "<", opts: bytes = b"") -> bytes:
    return block(1, struct.pack(o + "HHI", linktype, 0, snaplen) + opts, o)


def epb(iface: int, ts: int, data: bytes, wire: int | None = None, o: str = "<", opts: bytes = b"") -> bytes:
    head = struct.pack(
        o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data) if wire is None else wire
    )
    return block(6, head + _pad(data) + opts, o)


def write(tmp_path: Path, *blocks: bytes, name: str = "t.pcapng") -> Path:
    p = tmp_path / name
    p.write_bytes(b"".join(blocks))
    return p


FRAME = bytes(range(60))


def test_big_endian_section_keeps_interface_text_and_direction_flags(tmp_path: Path) -> None:
    o = ">"
    desc = b"k8s.node=worker-1;k8s.podName=web-7d4f"
    opts = options((2, b"eth0"), (3, desc), o=o)
    p = write(
        tmp_path,
        shb(o),
        idb(1, 262144, o, opts),
        epb(0, SEC * 10**6 + 123456, FRAME, 1514, o, options((2, struct.pack(o + "I", 0x1)), o=o)),
        epb(0, SEC * 10**6 + 123457, FRAME, o=o, opts=options((2, struct.pack(o + "I", 0x2)), o=o)),
    )
    b = read_records(p)
    assert b.format == "pcapng"
    assert b.interfaces[0].name == "eth0" and b.interfaces[0].description == desc.decode()
    assert b.interfaces[0].snaplen == 262144 and b.linktype.tolist() == [1, 1]
    assert b.ts_ns.tolist() == [SEC * 10**9 + 123456000, SEC * 10**9 + 123457000]
    assert b.caplen.tolist() == [60, 60] and b.wirelen.tolist() == [1514, 60]
    assert b.flags.tolist() == [1, 2]  # epb_flags bits 0-1: 01 inbound, 10 outbound
    assert b.packet(0) == FRAME


def test_power_of_ten_resolution_is_exact_to_the_nanosecond(tmp_path: Path) -> None:
    raw = SEC * 10**9 + 123_456_789
    p = write(tmp_path, shb(), idb(opts=options((9, bytes([9])))), epb(0, raw, FRAME))
    b = read_records(p)
    assert b.ts_ns.tolist() == [raw]
    assert b.interfaces[0].tsresol_ns == 1.0


def test_picosecond_resolution_truncates_below_a_nanosecond(tmp_path: Path) -> None:
    sec = 10_000_000  # picoseconds since the epoch overflow 64 bits after 1970-07-04
    raw = (sec * 10**9 + 5) * 1000 + 999
    p = write(tmp_path, shb(), idb(opts=options((9, bytes([12])))), epb(0, raw, FRAME))
    assert read_records(p).ts_ns.tolist() == [sec * 10**9 + 5]


def test_power_of_two_resolution_converts_fractions_exactly(tmp_path: Path) -> None:
    # 0x94: 2^-20 s per unit. Half a second is 2^19 units; one unit is 953.67 ns, truncated to 953.
    units = [(SEC << 20) + (1 << 19), (SEC << 20) + 1, (SEC << 20) + (1 << 20) - 1]
    p = write(tmp_path, shb(), idb(opts=options((9, b"\x94"))), *(epb(0, u, FRAME) for u in units))
    b = read_records(p)
    expected = [SEC * 10**9 + 500_000_000, SEC * 10**9 + 953, SEC * 10**9 + (10**9 * ((1 << 20) - 1) >> 20)]
    assert b.ts_ns.tolist() == expected
    assert b.interfaces[0].tsresol_ns == pytest.approx(1e9 / 2**20)


def test_tsoffset_adds_whole_seconds(tmp_path: Path) -> None:
    p = write(tmp_path, shb(), idb(opts=options((14, struct.pack("<q", 3600)))), epb(0, 7 * 10**6 + 5, FRAME))
    b = read_records(p)
    assert b.ts_ns.tolist() == [(3600 + 7) * 10**9 + 5000]
    assert b.interfaces[0].tsoffset_s == 3600


def test_simple_packet_block_takes_interface_zero_and_min_of_wire_and_block(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        shb(),
        idb(snaplen=60),
        block(3, struct.pack("<I", 1000) + FRAME),  # cut at the snaplen: 60 of 1000 bytes
        block(3, struct.pack("<I", 62) + bytes(62)),  # 62 bytes padded to 64: the padding is not data
    )
    b = read_records(p)
    assert b.caplen.tolist() == [60, 62]
    assert b.wirelen.tolist() == [1000, 62]
    assert b.iface.tolist() == [0, 0]
    assert b.ts_ns.tolist() == [-1, -1]  # a Simple Packet Block has no timestamp


def test_obsolete_packet_block_is_read_with_its_flags(tmp_path: Path) -> None:
    ts = SEC * 10**6 + 1
    body = struct.pack("<HHIIII", 0, 0, ts >> 32, ts & 0xFFFFFFFF, len(FRAME), 70) + FRAME
    body += options((2, struct.pack("<I", 1)))
    p = write(tmp_path, shb(), idb(), block(2, body))
    b = read_records(p)
    assert (b.ts_ns.tolist(), b.caplen.tolist(), b.wirelen.tolist(), b.flags.tolist()) == (
        [ts * 1000],
        [60],
        [70],
        [1],
    )


def test_non_packet_blocks_are_skipped_and_counted(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        shb(),
        idb(),
        block(4, struct.pack("<HH", 0, 0)),  # Name Resolution
        epb(0, 1, FRAME),
        block(5, struct.pack("<III", 0, 0, 0)),  # Interface Statistics
        block(10, struct.pack("<II", 0x544C534B, 0)),  # Decryption Secrets (TLS key log, empty)
        block(0x00000BAD, struct.pack("<I", 32473) + b"hello"),  # custom, copyable
        block(0x40000BAD, struct.pack("<I", 32473) + b"hi"),  # custom, do not copy
        block(0x12345678, b"who knows"),
        epb(0, 2, FRAME),
    )
    b = read_records(p)
    assert len(b) == 2
    assert b.record.tolist() == [0, 1]  # record numbers count packet blocks only
    assert b.skipped == {
        "name_resolution_block": 1,
        "interface_statistics_block": 1,
        "decryption_secrets_block": 1,
        "custom_block": 2,
        "unknown_block": 1,
    }
    assert b.records_total == 8


def test_two_sections_of_opposite_byte_order_number_interfaces_on(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        shb("<"),
        idb(1, o="<"),
        epb(0, 1, FRAME, o="<"),
        shb(">"),
        idb(276, o=">"),
        idb(101, o=">"),
        epb(1, 2, FRAME, o=">"),
        epb(0, 3, FRAME, o=">"),
    )
    b = read_records(p)
    assert [(i.id, i.section, i.linktype) for i in b.interfaces] == [(0, 0, 1), (1, 1, 276), (2, 1, 101)]
    assert b.iface.tolist() == [0, 2, 1]
    assert b.linktype.tolist() == [1, 101, 276]
    assert b.ts_ns.tolist() == [1000, 2000, 3000]


def test_packet_for_unknown_interface_is_skipped_or_raised(tmp_path: Path) -> None:
    p = write(tmp_path, shb(), idb(), epb(0, 1, FRAME), epb(3, 2, FRAME), epb(0, 3, FRAME))
    b = read_records(p)
    assert b.record.tolist() == [0, 2]
    assert b.skipped == {"packet_for_unknown_interface": 1}
    with pytest.raises(CorruptBlock, match=r"packet record 1 at byte \d+ names interface 3"):
        read_records(p, on_error="raise")


def test_caplen_beyond_its_block_is_skipped_and_reading_goes_on(tmp_path: Path) -> None:
    bad = bytearray(epb(0, 2, FRAME))
    struct.pack_into("<I", bad, 20, 200)  # caplen 200 in a block holding 60 bytes
    p = write(tmp_path, shb(), idb(), epb(0, 1, FRAME), bytes(bad), epb(0, 3, FRAME))
    b = read_records(p)
    assert b.ts_ns.tolist() == [1000, 3000]
    assert b.skipped == {"packet_exceeds_block": 1}


def test_block_trailer_mismatch_stops_reading(tmp_path: Path) -> None:
    good = shb() + idb() + epb(0, 1, FRAME)
    bad = block(6, epb(0, 2, FRAME)[8:-4], trailer=999)
    p = write(tmp_path, good, bad, epb(0, 3, FRAME))
    b = read_records(p)
    assert len(b) == 1
    assert b.skipped == {"block_trailer_mismatch": 1}
    assert b.stopped_at["reason"] == "block_trailer_mismatch"
    assert b.stopped_at["offset"] == len(good)
    assert b.records_total == 2
    with pytest.raises(
        CorruptBlock, match=rf"at byte {len(good)} says length \d+ at its start and 999 at its end"
    ):
        read_records(p, on_error="raise")


def test_absurd_block_length_mid_file_stops_with_its_offset(tmp_path: Path) -> None:
    good = shb() + idb() + epb(0, 1, FRAME)
    p = write(tmp_path, good, struct.pack("<II", 6, 0x7FFFFFF0), bytes(100))
    b = read_records(p)
    assert len(b) == 1
    assert b.stopped_at == {
        "reason": "block_length_invalid",
        "offset": len(good),
        "record": 1,
        "bytes_left": 108,
    }
    with pytest.raises(CorruptBlock, match="cannot be trusted"):
        read_records(p, on_error="raise")
    # the streaming reader gives up at once instead of reading 2 GiB looking for the block's end
    assert list(iter_records(p, batch_bytes=64))[-1].stopped_at["reason"] == "block_length_invalid"


def test_truncated_last_block_is_counted(tmp_path: Path) -> None:
    full = shb() + idb() + epb(0, 1, FRAME) + epb(0, 2, FRAME)
    p = write(tmp_path, full[:-30])
    b = read_records(p)
    assert len(b) == 1 and b.skipped == {"truncated_record": 1}
    with pytest.raises(TruncatedRecord, match=r"needs 92 bytes, 62 remain; capture ends mid-block"):
        read_records(p, on_error="raise")


def test_bad_byte_order_magic_in_a_later_section_stops_there(tmp_path: Path) -> None:
    good = shb() + idb() + epb(0, 1, FRAME)
    broken = bytearray(shb())
    broken[8:12] = b"\xde\xad\xbe\xef"
    p = write(tmp_path, good, bytes(broken), idb(), epb(0, 2, FRAME))
    b = read_records(p)
    assert len(b) == 1
    assert b.stopped_at["reason"] == "corrupt_section_header"
