"""The block walk of a large pcapng in byte ranges on several threads finds exactly the records of one sequential walk:
sections in both byte orders, interfaces described mid-file, wrong guesses of a range's first block, damage, cut-off
ends and every pcapng in tests/data included; decoded tables identical column by column."""

from __future__ import annotations

import hashlib
import random
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.errors import CorruptBlock, PcapError
from pcaptools.io import read_records, split, split_pcapng, threads
from pcaptools.packets import read_packets
from tests.ranges_support import SEC, read_both

DATA = Path(__file__).parent / "data"


def _block(o: str, btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def _shb(o: str) -> bytes:
    return _block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(o: str, linktype: int = 1, tsresol: int | None = None) -> bytes:
    opts = b"" if tsresol is None else struct.pack(o + "HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + bytes(4)
    return _block(o, 1, struct.pack(o + "HHI", linktype, 0, 65535) + opts)


def _epb(o: str, iface: int, t_us: int, data: bytes, flags: int | None = None) -> bytes:
    opts = b"" if flags is None else struct.pack(o + "HHI", 2, 4, flags) + bytes(4)
    pad = data + bytes(-len(data) % 4)
    return _block(o, 6, struct.pack(o + "IIIII", iface, t_us >> 32, t_us & 0xFFFFFFFF, len(data), len(data) + 4) + pad + opts)


def _packets(o: str, n: int, seed: int, n_if: int = 2) -> list[bytes]:
    """``n`` packet blocks (Enhanced, now and then Simple) of 40-1514 random bytes, 10 µs apart, with name
    resolution, decryption secrets and custom blocks between them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.choice((40, 60, 66, 300, 1514, rng.randrange(40, 1515)))
        data = rng.randbytes(size)
        if rng.random() < 0.05:
            out.append(_block(o, 3, struct.pack(o + "I", size) + data))  # Simple Packet Block
        else:
            out.append(_epb(o, rng.randrange(n_if), SEC * 10**6 + 10 * i, data, rng.choice((None, 1, 2))))
        if rng.random() < 0.02:
            out.append(_block(o, rng.choice((4, 10, 0x00000BAD)), rng.randbytes(rng.randrange(4, 64))))
    return out


def _read_both(path: Path, monkeypatch, cores: int = 2, **kw):
    """(ranged, sequential) batches of one file; ranges from 0 bytes up (small pcapng files split too)."""
    return read_both(path, monkeypatch, cores, split_min=0, **kw)


def _same(a, b) -> None:
    for f in ("offset", "caplen", "wirelen", "ts_ns", "record", "iface", "linktype", "flags"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert (a.skipped, a.notes, a.stopped_at, a.records_total) == (b.skipped, b.notes, b.stopped_at, b.records_total)
    assert a.interfaces == b.interfaces
    assert len(a) + sum(a.skipped.values()) == a.records_total


def _spy(monkeypatch) -> tuple[list, list]:
    """Record each range's (start, stop) and each walk_ranges result's resume offset."""
    calls, resumes = [], []
    walk_range, walk_ranges = split_pcapng._walk_range, split_pcapng.walk_ranges
    monkeypatch.setattr(split_pcapng, "_walk_range", lambda *a: calls.append(a[1:3]) or walk_range(*a))

    def spied(*a, **k):
        out = walk_ranges(*a, **k)
        resumes.append(out[3])
        return out

    monkeypatch.setattr(split_pcapng, "walk_ranges", spied)
    return calls, resumes


@pytest.mark.parametrize("cores", [2, 3, 8])
@pytest.mark.parametrize("o", ["<", ">"], ids=["little-endian", "big-endian"])
def test_ranges_that_join_give_every_block_of_the_sequential_walk(tmp_path: Path, monkeypatch, cores: int, o: str) -> None:
    p = tmp_path / "t.pcapng"
    p.write_bytes(_shb(o) + _idb(o) + _idb(o, 113, tsresol=9) + b"".join(_packets(o, 3000, cores)))
    calls, resumes = _spy(monkeypatch)
    ranged, one = _read_both(p, monkeypatch, cores)
    _same(ranged, one)
    assert len(one) == 3000 and set(one.linktype.tolist()) == {1, 113}
    assert len(calls) == cores and calls[-1][1] == p.stat().st_size
    assert resumes[0] == p.stat().st_size  # every range joined the one before: nothing left to the sequential walk


def test_sections_in_both_byte_orders_and_interfaces_described_mid_file_read_as_sequentially(tmp_path: Path,
                                                                                            monkeypatch) -> None:  # fmt: skip
    first = _shb("<") + _idb("<") + b"".join(_packets("<", 1500, 1, 1))
    second = _shb(">") + _idb(">", 113) + b"".join(_packets(">", 700, 2, 1)) + _idb(">", 1, tsresol=9)
    second += b"".join(_packets(">", 800, 3, 2))
    p = tmp_path / "sections.pcapng"
    p.write_bytes(first + second)
    calls, resumes = _spy(monkeypatch)
    for cores in (2, 4):
        ranged, one = _read_both(p, monkeypatch, cores)
        _same(ranged, one)
        assert len(one) == 3000 and [i.section for i in one.interfaces] == [0, 1, 1]
        assert resumes[-1] == len(first)  # the ranges stop at the second section: the sequential walk reads the rest


def test_a_wrong_guess_inside_a_packet_is_caught_and_walked_sequentially(tmp_path: Path, monkeypatch) -> None:
    head = _shb("<") + _idb("<")
    recs = _packets("<", 1000, 7, 1)
    decoy = b"".join(_epb("<", 0, SEC * 10**6, bytes(8)) for _ in range(split.CHAIN + 1))
    before = len(head) + sum(map(len, recs[:500]))
    big_len = 60_000  # one large packet spans the middle of the file: its data holds a chain of fake blocks
    total = before + 12 + 20 + big_len + 4 + sum(map(len, recs[500:]))
    first = len(head) + len(recs[0])  # the ranges start after the first packet (the reader walks up to it itself)
    cut = first + (total - first) // 2
    at = (cut - (before + 28) + 3) // 4 * 4
    assert 0 <= at < big_len - len(decoy)
    big = _epb("<", 0, SEC * 10**6 + 1, bytes(at) + decoy + bytes(big_len - at - len(decoy)))
    p = tmp_path / "decoy.pcapng"
    p.write_bytes(head + b"".join(recs[:500]) + big + b"".join(recs[500:]))
    buf = np.fromfile(p, np.uint8)
    st = np.array([0, 0, 1, 0], np.int64)
    assert split_pcapng.first_block_after(buf, cut, first, st) == before + 28 + at  # the guess is the decoy
    ranged, one = _read_both(p, monkeypatch)
    _same(ranged, one)
    assert len(one) == 1001 and int(one.caplen.max()) == big_len


def _damaged(o: str = "<") -> bytes:
    """Packets, then a packet of an interface the section lacks and one with an absurd caplen (skipped), then a block
    whose trailer does not match its length (reading stops there)."""
    recs = _packets(o, 2000, 3, 1)
    unknown = _epb(o, 5, SEC * 10**6, bytes(60))
    absurd = bytearray(_epb(o, 0, SEC * 10**6, bytes(60)))
    absurd[20:24] = struct.pack(o + "I", 1 << 20)
    bad = bytearray(_epb(o, 0, SEC * 10**6, bytes(80)))
    bad[-4:] = struct.pack(o + "I", 12)
    return _shb(o) + _idb(o) + b"".join([*recs[:700], unknown, *recs[700:1200], bytes(absurd), *recs[1200:1700],
                                         bytes(bad), *recs[1700:]])  # fmt: skip


def test_damage_and_a_cut_off_end_read_as_sequentially(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "damaged.pcapng"
    p.write_bytes(_damaged())
    ranged, one = _read_both(p, monkeypatch)
    _same(ranged, one)
    damage = ("packet_for_unknown_interface", "caplen_absurd", "block_trailer_mismatch")
    assert {k: one.skipped[k] for k in damage} == dict.fromkeys(damage, 1)
    assert one.stopped_at["reason"] == "block_trailer_mismatch" and one.stopped_at["record"] == len(one) + 2
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(_damaged()[: len(_damaged()) // 2 + 5])
    ranged, one = _read_both(cut, monkeypatch)
    _same(ranged, one)
    assert one.skipped["truncated_record"] == 1
    messages = []
    for path in (p, cut):
        for cores in (2, 1):
            monkeypatch.setattr(threads, "usable_cores", lambda c=cores: c)
            with pytest.raises(CorruptBlock if path == p else PcapError) as e:
                read_records(path, on_error="raise")
            messages.append(str(e.value))
    assert messages[0] == messages[1] and messages[2] == messages[3]
    assert re.search(r"packet record \d+ at byte \d+ names interface 5", messages[0])


def _pcapngs() -> list[Path]:
    return sorted(DATA.rglob("*.pcapng"))


def _variants(raw: bytes, seed: int) -> list[tuple[str, bytes]]:
    """The file, cut at several points, with garbage written over a few places and with an absurd block length."""
    rng = random.Random(seed)
    out = [("whole", raw)]
    out += [(f"cut at {n}", raw[:n]) for n in sorted(rng.sample(range(1, len(raw)), 6))]
    for _ in range(4):
        b = bytearray(raw)
        at = rng.randrange(len(raw) - 16)
        b[at : at + 16] = rng.randbytes(16)
        out.append((f"garbage at {at}", bytes(b)))
    b = bytearray(raw)
    b[len(raw) // 2 // 4 * 4 : len(raw) // 2 // 4 * 4 + 4] = b"\xff\xff\xff\x7f"
    out.append(("absurd word mid-file", bytes(b)))
    return out


@pytest.mark.parametrize("path", _pcapngs(), ids=lambda p: p.name)
def test_every_pcapng_in_tests_data_reads_as_sequentially_whole_cut_and_damaged(tmp_path: Path, monkeypatch,
                                                                                path: Path) -> None:  # fmt: skip
    for name, raw in _variants(path.read_bytes(), len(path.name)):
        p = tmp_path / "v.pcapng"
        p.write_bytes(raw)
        for cores in (2, 5):
            try:
                ranged, one = _read_both(p, monkeypatch, cores)
            except PcapError:  # a section header lost to the damage: both walks refuse the file alike
                monkeypatch.setattr(threads, "usable_cores", lambda: 1)
                with pytest.raises(PcapError):
                    read_records(p)
                continue
            try:
                _same(ranged, one)
            except AssertionError as exc:
                raise AssertionError(f"{path.name}, {name}, {cores} cores: {exc}") from None


def _table_digest(df: pd.DataFrame) -> dict[str, str]:
    """SHA-256 of every column's values (category columns as their labels)."""
    out = {}
    for name in df.columns:
        col = df[name]
        raw = col.astype(object).to_numpy().astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col.to_numpy()
        out[name] = hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest()
    return out


def test_decoded_tables_of_ranged_and_sequential_walks_are_identical(tmp_path: Path, monkeypatch) -> None:
    """Real packets (the decoder's test captures: VXLAN, Geneve, GRE, SLL, ICMP errors, IPv6 fragments) written as
    a pcapng with two interfaces of different link types, many times over."""
    from pcaptools.io import read_records as rr

    blocks, linktypes = [], []
    for f in ("tunnels.pcap", "icmp_errors.pcap", "ipv6_frags.pcap", "sll_vxlan.pcap", "null.pcap"):
        b = rr(DATA / "decode" / f)
        lt = int(b.linktype[0])
        if lt not in linktypes:
            linktypes.append(lt)
        blocks += [_epb("<", linktypes.index(lt), SEC * 10**6 + i, b.packet(i)) for i in range(len(b))]
    assert len(blocks) > 20 and len(linktypes) >= 2
    p = tmp_path / "decode.pcapng"
    idbs = b"".join(_idb("<", lt) for lt in linktypes)
    p.write_bytes(_shb("<") + idbs + b"".join(blocks * (6000 // len(blocks) + 1)))
    calls, resumes = _spy(monkeypatch)
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", 0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    ranged = read_packets(p, payload_hash=True)
    assert resumes[0] == p.stat().st_size
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    one = read_packets(p, payload_hash=True)
    assert len(one) >= 6000 and (one["tunnel"] == "vxlan").any() and (one["link"].nunique() == len(linktypes))
    assert _table_digest(ranged) == _table_digest(one)
    assert ranged.attrs == one.attrs
