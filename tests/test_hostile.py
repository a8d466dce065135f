"""Hostile and broken input (issue 15): damaged compressed captures, inputs that could hang, hostile
manifests and inventories, timestamps beyond int64, and a seeded mutation fuzz of 3,000+ captures."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_io_pcapng_handmade import FRAME, epb, idb, options, shb, write

from pcaptools.cli import main
from pcaptools.correlate import CaptureSet
from pcaptools.correlate.manifest import read_manifest
from pcaptools.errors import CorruptBlock, FormatError, InventoryError, NotAFile, PcapError
from pcaptools.io import iter_records, read_records
from pcaptools.k8s.inventory import Inventory

DATA = Path(__file__).parent / "data"
REPO = str(Path(__file__).resolve().parent.parent)
ETH = DATA / "own" / "eth.pcap"  # 34 real records from tcpdump in a namespace (MANIFEST.md)


def _big_plain(copies: int = 40) -> bytes:
    """A real capture's records repeated (header once): large enough for several deflate blocks."""
    raw = ETH.read_bytes()
    return raw + raw[24:] * (copies - 1)


def _noisy_plain(copies: int = 40, seed: int = 7) -> bytes:
    """The real capture's records repeated, payloads after the 42 header bytes replaced by seeded noise.

    Noise keeps the compressed stream long (many deflate/xz/zstd blocks), so damage in its middle
    has a long undamaged prefix before it and is detected where it lies.
    """
    raw = ETH.read_bytes()
    rng = np.random.default_rng(seed)
    out = [raw[:24]]
    for _ in range(copies):
        pos = 24
        while pos < len(raw):
            caplen = struct.unpack_from("<I", raw, pos + 8)[0]
            rec = bytearray(raw[pos : pos + 16 + caplen])
            if caplen > 42:
                rec[16 + 42 :] = rng.integers(0, 256, caplen - 42, dtype=np.uint8).tobytes()
            out.append(bytes(rec))
            pos += 16 + caplen
    return b"".join(out)


def _records(path) -> list[tuple[int, bytes]]:
    b = read_records(path)
    return [(int(b.record[i]), b.packet(i)) for i in range(len(b))]


def _tshark_count(path: Path) -> int:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=120
    )
    return len(out.stdout.split())


def _gz_corrupt_at(gz: bytes, plain: bytes, frac: float) -> tuple[bytes, int]:
    """The gzip file with 32 bytes overwritten from about ``frac`` of its length, at a place where zlib
    rejects the damage before emitting any wrong byte (checked here with zlib, byte by byte)."""
    first = int(len(gz) * frac)
    run = zlib.decompressobj(31)  # the undamaged prefix, decompressed once and extended
    head = run.decompress(gz[:first])
    for start in range(first, len(gz) - 40, 11):
        if start > first:
            head += run.decompress(gz[start - 11 : start])
        bad = gz[:start] + b"\xff" * 32 + gz[start + 32 :]
        d, out = run.copy(), head
        for j in range(32):
            try:
                out += d.decompress(bad[start + j : start + j + 1])
            except zlib.error:
                if out == plain[: len(out)]:
                    return bad, start
                break
    raise AssertionError("no position made zlib reject the data cleanly")


def _prefix_records(plain: bytes, prefix_len: int) -> int:
    """How many records of a classic pcap lie wholly within its first ``prefix_len`` bytes."""
    pos, n = 24, 0
    while pos + 16 <= prefix_len:
        caplen = struct.unpack_from("<I", plain, pos + 8)[0]
        if pos + 16 + caplen > prefix_len:
            break
        pos += 16 + caplen
        n += 1
    return n


# --- damaged compressed captures ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["crc", "length"])
def test_gzip_bad_trailer_alone_loses_no_record(tmp_path: Path, field: str) -> None:
    plain = _big_plain()
    gz = bytearray(gzip.compress(plain, mtime=0))
    gz[-8 if field == "crc" else -4] ^= 0x5A
    p = tmp_path / "trailer.pcap.gz"
    p.write_bytes(bytes(gz))
    whole = read_records(p)
    expect = read_records(_write(tmp_path, plain, "plain.pcap"))
    n = len(expect)
    assert n == 34 * 40 and len(whole) == n and whole.skipped == {} and whole.stopped_at is None
    assert [whole.packet(i) for i in (0, n // 2, n - 1)] == [expect.packet(i) for i in (0, n // 2, n - 1)]
    assert any("trailer" in n and f"compressed byte {len(gz) - 8}" in n for n in whole.notes)
    streamed = list(iter_records(p, batch_bytes=4096))
    assert sum(len(b) for b in streamed) == n and sum(b.records_total for b in streamed) == n
    if shutil.which("tshark"):
        assert _tshark_count(p) == len(whole)


def _write(tmp_path: Path, content: bytes, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("frac", [0.5, 0.9])
def test_gzip_damage_keeps_every_record_before_it_and_names_its_compressed_byte(
    tmp_path: Path, frac: float
) -> None:
    plain = _noisy_plain()
    gz = gzip.compress(plain, mtime=0)
    bad, start = _gz_corrupt_at(gz, plain, frac)
    p = _write(tmp_path, bad, "damaged.pcap.gz")
    # what gzip itself can decompress from the undamaged prefix: those records must all come back
    before = zlib.decompressobj(31).decompress(gz[:start])
    n_before = _prefix_records(plain, len(before))
    assert n_before > 34 * 40 * frac - 100
    b = read_records(p)
    good = read_records(_write(tmp_path, plain, "plain.pcap"))
    assert len(b) >= n_before
    assert [b.packet(i) for i in range(n_before)] == [good.packet(i) for i in range(n_before)]
    assert b.skipped == {"compressed_data_corrupt": 1}
    assert len(b) + 1 == b.records_total
    assert b.stopped_at["reason"] == "compressed_data_corrupt"
    assert start <= b.stopped_at["compressed_offset"] < start + 32
    assert f"at compressed byte {b.stopped_at['compressed_offset']} of {len(bad)}" in b.notes[-1]
    streamed = list(iter_records(p, batch_records=97, batch_bytes=5000))
    assert np.concatenate([x.record for x in streamed]).tolist() == b.record.tolist()
    assert sum(x.records_total for x in streamed) == b.records_total
    assert streamed[-1].stopped_at == b.stopped_at
    with pytest.raises(CorruptBlock, match=f"at compressed byte {b.stopped_at['compressed_offset']}"):
        read_records(p, on_error="raise")
    if shutil.which("tshark"):
        assert len(b) >= _tshark_count(p)


def test_gzip_info_json_reports_the_damage_with_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _noisy_plain()
    bad, start = _gz_corrupt_at(gzip.compress(plain, mtime=0), plain, 0.5)
    p = _write(tmp_path, bad, "damaged.pcap.gz")
    assert main(["info", "--json", str(p)]) == 0
    out = json.loads(capsys.readouterr().out)["files"][0]
    assert out["compression"] == "gzip"
    assert out["skipped"] == {"compressed_data_corrupt": 1}
    assert out["records"] + 1 == out["records_total"]
    assert isinstance(out["stopped_at"]["compressed_offset"], int) and out["stopped_at"]["compressed_offset"] >= start


def test_compressed_capture_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # 80,000 records of 1,514 bytes (122 MB) compress to about 0.2 MB; neither info's stream nor
    # read_records' whole-file batch may hold them in the heap
    rec = struct.pack("<IIII", 1_600_000_000, 0, 1514, 1514) + bytes(1514)
    p = tmp_path / "big.pcap.gz"
    with gzip.open(p, "wb", compresslevel=1) as f:
        f.write(ETH.read_bytes()[:24])
        for _ in range(80):
            f.write(rec * 1000)
    code = (
        "import resource, sys\nfrom pcaptools.io import read_records, summarize\n"
        "s = summarize(sys.argv[1])\n"
        "print(s['records'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "b = read_records(sys.argv[1])\n"  # decompressed into a memory-mapped temporary file, not the heap
        "anon = [ln for ln in open('/proc/self/status') if ln.startswith('RssAnon:')][0].split()[1]\n"
        "print(len(b), anon)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    big = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env, timeout=300)
    small = subprocess.run([sys.executable, "-c", code, str(ETH)], capture_output=True, text=True, env=env, timeout=300)
    n, rss_big, n_whole, anon_big = map(int, big.stdout.split())
    _, rss_small, _, anon_small = map(int, small.stdout.split())
    assert n == n_whole == 80_000
    # two 16 MiB windows and their record columns, well below the 122 MB decompressed (was 345 MB more)
    assert (rss_big - rss_small) * 1024 < 100 << 20, (rss_big, rss_small)  # ru_maxrss is in KiB
    assert (anon_big - anon_small) * 1024 < 64 << 20, (anon_big, anon_small)  # RssAnon too (was 334 MB more)


def test_xz_and_zstd_read_like_the_plain_capture(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    plain = _big_plain(5)
    want = _records(_write(tmp_path, plain, "plain.pcap"))
    xz = _write(tmp_path, lzma.compress(plain), "c.pcap.xz")
    zst = _write(tmp_path, zstandard.ZstdCompressor(write_checksum=True).compress(plain), "c.pcap.zst")
    for p, kind in ((xz, "xz"), (zst, "zstd")):
        assert _records(p) == want
        s = read_records(p)
        assert s.skipped == {} and s.notes == []
        streamed = list(iter_records(p, batch_bytes=3000))
        assert sum(len(x) for x in streamed) == len(want)
        from pcaptools.io import summarize

        assert summarize(p)["compression"] == kind


@pytest.mark.parametrize("kind", ["xz", "zstd"])
def test_damaged_xz_and_zstd_keep_every_record_before_the_damage(tmp_path: Path, kind: str) -> None:
    plain = _noisy_plain(20)
    if kind == "xz":
        comp, tool = lzma.compress(plain), "xz"
    else:
        zstandard = pytest.importorskip("zstandard")
        comp, tool = zstandard.ZstdCompressor(write_checksum=True).compress(plain), "zstd"
    cut = len(comp) // 2
    p = _write(tmp_path, comp[:cut] + b"\x00" * 64 + comp[cut + 64 :], f"d.pcap.{kind}")
    b = read_records(p)
    assert len(b) + sum(b.skipped.values()) == b.records_total
    if shutil.which(tool):  # the tool's own output before the damage is the reference
        out = subprocess.run([tool, "-dc", str(p)], capture_output=True, timeout=60).stdout
        n = _prefix_records(plain, len(out))
        good = read_records(_write(tmp_path, plain, "plain.pcap"))
        assert n > 0 and len(b) >= n
        assert [b.packet(i) for i in range(0, n, 97)] == [good.packet(i) for i in range(0, n, 97)]


def test_zstd_without_its_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    p = _write(tmp_path, b"\x28\xb5\x2f\xfd" + bytes(40), "c.pcap.zst")
    with pytest.raises(FormatError, match=r"zstandard is not installed; install it \(pip install zstandard\)"):
        read_records(p)


# --- inputs that could hang ----------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    code = "import sys\nfrom pcaptools.cli import main\nraise SystemExit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=REPO),
        stdin=subprocess.DEVNULL,
    )


def test_fifo_char_device_and_socket_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    sock_path = tmp_path / "capture.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    try:
        cases = {str(fifo): "a FIFO", "/dev/zero": "a character device", str(sock_path): "a socket"}
        r = _cli("info", "--json", *cases)
    finally:
        sock.close()
    assert r.returncode == 2
    err = r.stderr
    assert err.count("\n") == 1 and "Traceback" not in err
    first = next(iter(cases))
    assert err.startswith(f"pcaptools: {first} is a FIFO (named pipe), not a regular file")
    for path, what in cases.items():
        r = _cli("info", path) if path != first else r
        assert r.returncode == 2 and f"{path} is {what}" in r.stderr and "save the stream to a file" in r.stderr


def test_fifo_in_a_manifest_is_refused_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "eth0.pcap")
    (tmp_path / "manifest.json").write_text(json.dumps({"captures": [{"file": "eth0.pcap", "node": "n1"}]}))
    r = _cli("correlate", str(tmp_path))
    assert r.returncode == 2 and "is a FIFO (named pipe)" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["info", "correlate", "paths"])
def test_a_file_name_too_long_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "a" * 300]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcaptools: ") and err.count("\n") == 1 and "too long" in err


def test_directory_given_as_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotAFile, match="is a directory, not a capture file"):
        read_records(tmp_path)


def test_file_name_with_a_nul_character_or_too_long_is_a_clear_error() -> None:
    with pytest.raises(NotAFile, match="contains a NUL character"):
        read_records("a\0b.pcap")
    with pytest.raises(InventoryError, match="contains a NUL character"):
        Inventory.load("\0")
    with pytest.raises(NotAFile, match="cannot be opened"):
        read_records("x" * 5000)
    with pytest.raises(InventoryError, match="File name too long"):
        Inventory.load("x" * 5000)


# --- manifests and inventories ---------------------------------------------------------------------------


def _manifest(tmp_path: Path, doc, raw: bytes | None = None) -> Path:
    d = tmp_path / "set"
    d.mkdir(exist_ok=True)
    m = d / "manifest.json"
    m.write_bytes(raw if raw is not None else json.dumps(doc).encode())
    return m


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"captures": [{"file": 7}]}, "captures[0].file should be a file name, found int"),
        ({"captures": [{"file": ["a"]}]}, "captures[0].file should be a file name, found list"),
        ({"captures": {"file": "a"}}, "'captures' should be a list, found dict"),
        ({"captures": [{"file": "a", "node": {"x": 1}}]}, "captures[0].node should be a string, found dict"),
        ({"captures": [{"file": "a", "interfaces": [{"ifindex": "2"}]}]}, "interfaces[0].ifindex should be"),
        ({"captures": [{"file": "a\u0000b"}]}, "contains a NUL character"),
        ([1, 2], "the document should be an object, found list"),
    ],
)
def test_manifest_with_wrong_types_is_one_clear_error(tmp_path: Path, doc, message: str) -> None:
    m = _manifest(tmp_path, doc)
    with pytest.raises(InventoryError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        CaptureSet.load(m)
    assert main(["correlate", str(m)]) == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"captures": [{"file": "\xff\xfe.pcap"}]}', "is not UTF-8 text (invalid byte at offset 24)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"captures": ' + b"[" * 500 + b"]" * 500 + b"}", "nested 501 levels deep"),
        (b'{"captures": [', "is not JSON (line 1 column 15"),
    ],
)
def test_manifest_that_is_not_usable_json_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes, message: str
) -> None:
    m = _manifest(tmp_path, None, raw)
    with pytest.raises(InventoryError, match=re.escape(message)):
        read_manifest(m)
    assert main(["correlate", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd", "../outside.pcap"])
def test_manifest_paths_stay_inside_its_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    (tmp_path / "outside.pcap").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    m = _manifest(tmp_path, {"captures": [{"file": target, "node": "n1"}]})
    with pytest.raises(InventoryError, match=r"captures\[0\].file points outside the manifest's directory"):
        CaptureSet.load(m)
    assert main(["correlate", str(m)]) == 2
    err = capsys.readouterr().err
    assert "--allow-outside" in err and "root:" not in err
    # allowed: the file is opened, and the error about it never quotes its bytes
    assert main(["correlate", "--allow-outside", str(m)]) == 2
    err = capsys.readouterr().err
    assert "not a pcap or pcapng file (unknown magic number)" in err
    assert "root" not in err.replace(str(tmp_path), "") and "726f6f74" not in err


def test_symlink_inside_the_manifest_directory_cannot_escape_it(tmp_path: Path) -> None:
    m = _manifest(tmp_path, {"captures": [{"file": "eth0.pcap"}]})
    (m.parent / "eth0.pcap").symlink_to(ETH)
    with pytest.raises(InventoryError, match="points outside"):
        CaptureSet.load(m)
    shutil.copy(ETH, tmp_path / "set" / "real.pcap")
    m.write_text(json.dumps({"captures": [{"file": "./sub/../real.pcap", "node": "n1"}]}))
    (m.parent / "sub").mkdir()
    assert len(CaptureSet.load(m).points) == 1


def test_manifest_inventory_outside_its_directory_is_refused(tmp_path: Path) -> None:
    from pcaptools.correlate.manifest import inventory_beside

    (tmp_path / "inventory.json").write_text('{"items": []}')
    m = _manifest(tmp_path, {"captures": [], "lab": {"inventory": "../inventory.json"}})
    with pytest.raises(InventoryError, match="lab.inventory points outside"):
        inventory_beside(m)
    assert inventory_beside(m, allow_outside=True) == str(m.parent / "../inventory.json")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": "Node", "metadata": {"name": "n"}, "spec": {"podCIDRs": 5}}, "items[0].spec.podCIDRs should be a list"),
        ({"kind": "Node", "status": {"addresses": [{"type": ["InternalIP"]}]}}, "status.addresses[0].type should be a string"),
        ({"kind": "Service", "spec": {"ports": [{"port": 80, "nodePort": "x"}]}}, "spec.ports[0].nodePort should be a port"),
        ({"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": None}]}}, "targetPort should be a port number or a port name"),
        ({"kind": "Service", "spec": {"ports": [{"port": 1e400}]}}, "spec.ports[0].port should be a port number"),
        ({"kind": "Service", "spec": {"ports": [{"port": 2**70}]}}, "spec.ports[0].port should be a port number"),
        ({"kind": "Pod", "metadata": {"name": ["p"]}}, "items[0].metadata.name should be a string, found list"),
        ({"kind": {"a": 1}}, "items[0].kind should be a string, found dict"),
        ({"kind": "EndpointSlice", "endpoints": [{"addresses": 3}]}, "endpoints[0].addresses should be a list"),
    ],
)
def test_inventory_with_wrong_types_is_one_clear_error(tmp_path: Path, item: dict, message: str) -> None:
    p = tmp_path / "inventory.json"
    p.write_text(json.dumps({"kind": "List", "items": [item]}))
    with pytest.raises(InventoryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Inventory.load(p)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"items": [{"kind": "Pod", "metadata": {"name": "\xc3"}}]}', "inventory is not UTF-8 text"),
        (b'{"items": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
        (b'{"items": [' + b"9" * 5000 + b"]}", "holds a value JSON readers refuse"),
    ],
)
def test_inventory_that_is_not_usable_json_is_one_clear_error(tmp_path: Path, raw: bytes, message: str) -> None:
    p = tmp_path / "inventory.json"
    p.write_bytes(raw)
    with pytest.raises(InventoryError, match=message):
        Inventory.load(p)


_WORDS = st.sampled_from(
    ["kind", "items", "metadata", "name", "namespace", "spec", "status", "addresses", "type", "address",
     "podCIDR", "podCIDRs", "podIP", "podIPs", "ip", "nodeName", "hostNetwork", "ports", "port", "targetPort",
     "nodePort", "protocol", "clusterIP", "clusterIPs", "externalIPs", "loadBalancer", "ingress", "hostname",
     "endpoints", "targetRef", "conditions", "ready", "labels", "kubernetes.io/service-name", "selector",
     "externalTrafficPolicy", "captures", "file", "node", "interface", "role", "pod", "interfaces", "ifindex",
     "cni", "lab", "inventory"]
)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["Node", "Pod", "Service", "EndpointSlice", "List", "TCP", "80", "http", "10.0.0.1",
                       "10.0.0.0/24", "", "\u0663", "../x", "/etc/passwd", "\x1b[31m", "\x00", "a" * 5000])  # fmt: skip
)
_JSON = st.recursive(
    _SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(_WORDS | st.text(max_size=3), c, max_size=5),
    max_leaves=40,
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=_JSON)
def test_any_json_gives_an_inventory_a_manifest_or_a_documented_error(tmp_path: Path, doc) -> None:
    p = tmp_path / "doc.json"
    p.write_text(json.dumps(doc))
    for load in (Inventory.load, read_manifest, lambda q: Inventory.load(json.loads(Path(q).read_text()))):
        try:
            load(p)
        except (InventoryError, NotAFile):
            pass


# --- timestamps beyond int64 nanoseconds ---------------------------------------------------------------


def test_tsoffset_beyond_int64_nanoseconds_is_a_counted_skip(tmp_path: Path) -> None:
    far = options((14, struct.pack("<q", 10**10)))  # 10^10 s = year 2286: past int64 ns
    p = write(tmp_path, shb(), idb(), idb(opts=far), epb(0, 5, FRAME), epb(1, 6, FRAME), epb(0, 7, FRAME))
    b = read_records(p)
    assert b.record.tolist() == [0, 2] and b.ts_ns.tolist() == [5000, 7000]
    assert b.skipped == {"timestamp_overflow": 1} and b.records_total == 3
    assert any("beyond the int64 nanosecond range" in n for n in b.notes)


def test_nanosecond_timestamp_beyond_int64_is_skipped_not_wrapped(tmp_path: Path) -> None:
    ns = options((9, bytes([9])))
    p = write(tmp_path, shb(), idb(opts=ns), epb(0, 2**63 + 5, FRAME), epb(0, 2**63 - 1, FRAME))
    b = read_records(p)
    assert b.ts_ns.tolist() == [2**63 - 1] and b.skipped == {"timestamp_overflow": 1}
    streamed = list(iter_records(p, batch_records=1))
    assert sum(x.skipped.get("timestamp_overflow", 0) for x in streamed) == 1
    assert [int(t) for x in streamed for t in x.ts_ns] == [2**63 - 1]


def test_negative_tsoffset_before_1677_is_skipped(tmp_path: Path) -> None:
    p = write(tmp_path, shb(), idb(opts=options((14, struct.pack("<q", -(2**62))))), epb(0, 1, FRAME))
    b = read_records(p)
    assert len(b) == 0 and b.skipped == {"timestamp_overflow": 1}


# --- seeded mutation fuzz ------------------------------------------------------------------------------

def _seeds() -> dict[str, bytes]:
    eth = (DATA / "own" / "eth.pcap").read_bytes()
    pos = 24
    for _ in range(12):  # the first 12 real records keep each mutant small and fast
        pos += 16 + struct.unpack_from("<I", eth, pos + 8)[0]
    small = eth[:pos]
    out = {
        "eth.pcap": small,
        "tunnels.pcap": (DATA / "decode" / "tunnels.pcap").read_bytes(),
        "any_nano.pcap": (DATA / "own" / "any_nano.pcap").read_bytes()[:3000],
        "dumpcap.pcapng": (DATA / "own" / "dumpcap.pcapng").read_bytes()[:3000],
        "two_sections.pcapng": (DATA / "own" / "two_sections.pcapng").read_bytes()[:2500],
        "eth.pcap.gz": gzip.compress(small, mtime=0),
        "eth.pcap.xz": lzma.compress(small),
    }
    try:
        import zstandard

        out["eth.pcap.zst"] = zstandard.ZstdCompressor(write_checksum=True).compress(small)
    except ImportError:
        pass
    return out


def _mutate(rng: np.random.Generator, data: bytes) -> tuple[bytes, int]:
    """One to three flips, overwrites with absurd lengths, insertions or a truncation; the first changed byte."""
    b = bytearray(data)
    first = len(b)
    for _ in range(int(rng.integers(1, 4))):
        if not b:
            break
        i = int(rng.integers(0, len(b)))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            b[i] ^= int(rng.integers(1, 256))
        elif kind == 1 and i + 4 <= len(b):
            b[i : i + 4] = struct.pack("<I", int(rng.choice([0, 1, 13, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])))
        elif kind == 2:
            b[i:i] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            del b[i:]
        first = min(first, i)
    return bytes(b), first


MUTANTS_PER_SEED = 440  # 7 or 8 seeds: 3,080-3,520 mutants


@pytest.mark.parametrize("name", list(_seeds()))
def test_mutated_captures_keep_the_accounting_identity(tmp_path: Path, name: str) -> None:
    seed = _seeds()[name]
    rng = np.random.default_rng(sum(name.encode()))
    compressed = name.endswith((".gz", ".xz", ".zst"))
    plain_name = name.rsplit(".", 1)[0] if compressed else name
    plain = _seeds()[plain_name] if compressed else seed
    clean = read_records(_write(tmp_path, plain, "clean.cap"))
    p = tmp_path / "m.cap"
    errors = checked = 0
    for _ in range(MUTANTS_PER_SEED):
        content, first = _mutate(rng, seed)
        p.write_bytes(content)
        try:
            b = read_records(p)
        except PcapError:
            errors += 1
            continue
        checked += 1
        assert len(b) + sum(b.skipped.values()) == b.records_total
        assert all(v > 0 for v in b.skipped.values())
        if len(b):
            end = b.offset.astype(np.int64) + b.caplen.astype(np.int64)
            assert int(b.offset.min()) >= 0 and int(end.max()) <= len(b.data)
        streamed = list(iter_records(p, batch_records=7, batch_bytes=333))
        assert sum(x.records_total for x in streamed) == b.records_total
        got = np.concatenate([x.record for x in streamed]) if streamed else np.empty(0, np.int64)
        assert got.tolist() == b.record.tolist()
        if name.endswith(".gz") and first > 10:
            # every record wholly inside what the undamaged prefix decompresses to comes back unchanged
            n = _prefix_records(plain, len(zlib.decompressobj(31).decompress(seed[:first])))
            assert b.record[:n].tolist() == list(range(n))
            assert [b.packet(i) for i in range(n)] == [clean.packet(i) for i in range(n)]
    # a zstd seed this small is one block: damage anywhere in it leaves nothing to read (a PcapError)
    assert checked + errors == MUTANTS_PER_SEED and checked >= (10 if compressed else MUTANTS_PER_SEED // 4)
