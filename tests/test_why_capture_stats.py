"""pcapng Interface Statistics Blocks: the reader keeps their counters per interface, ``info`` shows them, and
``why`` takes a capture's own drop count as capture-loss evidence (dumpcap's files, one written in a lab namespace
here, and a sample capture point rewritten as pcapng with one record removed and an ISB owning up to it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import sys
import time
from pathlib import Path

import jsonschema
import pytest

import pcaptools
from pcaptools.cli import main
from pcaptools.io import read_records
from pcaptools.render.records import json_schema
from tests.lab_support import REASON

HERE = Path(__file__).resolve().parent
DUMPCAP = HERE / "data" / "own" / "dumpcap.pcapng"
ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", HERE.parent / "sample_pcaps"))
CALICO = ROOT / "calico-vxlan"


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _as_pcapng(src: Path, dst: Path, *, drop: set[int], isb: dict[int, int]) -> int:
    """Rewrite the classic pcap ``src`` as a pcapng without the records ``drop``, ending with an ISB of ``isb``
    (option code -> u64 counter); returns the records written."""
    b = read_records(src)
    snap = int(b.interfaces[0].snaplen)
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           _block(1, struct.pack("<HHI", int(b.linktype[0]), 0, snap) + _opt(2, b"eth0") + _opt(9, b"\x09")
                  + _opt(0, b""))]  # fmt: skip
    kept = 0
    for i in range(len(b)):
        if int(b.record[i]) in drop:
            continue
        ts, data = int(b.ts_ns[i]), b.packet(i)
        out.append(_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), int(b.wirelen[i])) + data))
        kept += 1
    ts = int(b.ts_ns[-1])
    opts = b"".join(_opt(code, struct.pack("<Q", v)) for code, v in isb.items()) + _opt(0, b"")
    out.append(_block(5, struct.pack("<III", 0, ts >> 32, ts & 0xFFFFFFFF) + opts))
    dst.write_bytes(b"".join(out))
    return kept


def test_dumpcap_statistics_block_counters_are_read_and_shown_by_info(capsys):
    b = read_records(DUMPCAP)
    st = b.interfaces[0].stats
    assert st is not None and st.ifrecv == len(b) == 34 and st.ifdrop == 0 and st.dropped() == 0
    assert b.skipped == {"interface_statistics_block": 1} and b.records_total == len(b) + 1
    assert main(["info", str(DUMPCAP), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(json_schema("info")).validate(doc)
    assert doc["files"][0]["interfaces"][0]["stats"] == {"ifrecv": 34, "ifdrop": 0, "filteraccept": None,
                                                         "osdrop": None, "usrdeliv": None, "dropped": 0}  # fmt: skip
    assert main(["info", str(DUMPCAP)]) == 0
    assert "statistics: ifrecv 34, ifdrop 0 (0 dropped)" in capsys.readouterr().out


def _wait(ready, what: str, limit: float = 20.0) -> None:
    """Poll ``ready()`` until it holds (a readiness wait, not a fixed sleep); fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.lab
def test_dumpcap_in_a_lab_namespace_writes_statistics_the_reader_keeps(tmp_path, capsys):
    if REASON or shutil.which("dumpcap") is None:
        pytest.skip(REASON or "dumpcap is not installed")
    from pcaptools.lab import netns, registry

    run = registry.open_run("ptisb")
    a, b = f"{run.ns_prefix}a", f"{run.ns_prefix}b"
    run.add_namespaces([a, b])
    out, proc, err = tmp_path / "va.pcapng", None, tmp_path / "dumpcap.err"
    try:
        for ns in (a, b):
            netns.create(ns)
        netns.run(["ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b])
        netns.ip_batch(a, ["addr add 198.51.100.1/24 dev va", "link set va up"])
        netns.ip_batch(b, ["addr add 198.51.100.2/24 dev vb", "link set vb up"])
        with err.open("w") as fh:
            proc = netns.spawn(["dumpcap", "-q", "-i", "va", "-w", str(out)], ns=a, stderr=fh, die_sig=signal.SIGTERM)
        run.add_pid(proc.pid, "dumpcap va")
        _wait(lambda: "Capturing on" in err.read_text(), "dumpcap to start")
        send = "import socket; s = socket.socket(2, 2)\nfor i in range(20): s.sendto(b'x' * 100 + b'%d' % i, ('198.51.100.2', 9))"
        netns.run([sys.executable, "-c", send + "\ns.sendto(b'ptisb-end', ('198.51.100.2', 9))"], ns=a)
        _wait(lambda: out.exists() and b"ptisb-end" in out.read_bytes(), "the last datagram in the file")
        proc.send_signal(signal.SIGINT)  # dumpcap writes its Interface Statistics Block as it closes the file
        proc.wait(timeout=20)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for ns in (a, b):
            netns.delete(ns)
        run.close()
    batch = read_records(out)
    st = batch.interfaces[0].stats
    assert batch.interfaces[0].name == "va" and st is not None
    assert st.ifrecv is not None and st.ifrecv >= len(batch) >= 21 and st.ifdrop == 0 and st.dropped() == 0
    assert batch.skipped.get("interface_statistics_block", 0) >= 1
    assert main(["info", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(json_schema("info")).validate(doc)
    assert doc["files"][0]["interfaces"][0]["stats"]["ifrecv"] == st.ifrecv


def test_an_interface_without_a_statistics_block_has_no_stats(capsys):
    assert read_records(HERE / "data" / "own" / "eth.pcapng").interfaces[0].stats is None
    assert main(["info", str(HERE / "data" / "own" / "eth.pcapng"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["interfaces"][0]["stats"] is None


@pytest.fixture(scope="module")
def dropped_at_uplink(tmp_path_factory):
    """The calico-vxlan sample with one packet of a cross-node connection removed from the backend node's uplink,
    that capture rewritten as pcapng whose ISB reports the drop: (directory, truth connection, point, record)."""
    if not (CALICO / "truth.json").exists():
        pytest.skip("no calico-vxlan sample")
    d = tmp_path_factory.mktemp("isb") / "set"
    shutil.copytree(CALICO, d)
    truth = json.loads((d / "truth.json").read_text())
    c = next(c for c in truth["connections"] if c.get("ok") and c["kind"] == "pod-direct-cross-node")
    mid = next(x for x in c["path"]["forward"][1:-1] if x["interface"] == "eth0" and x["node"] == c["backend"]["node"])
    src = d / mid["file"]
    pk = pcaptools.read_packets(src)
    t = mid["tuple"]
    rows = pk[(pk["src"].astype(str) == t["src"]) & (pk["sport"] == t["sport"]) & (pk["dport"] == t["dport"])]
    record = int(rows["record"].iloc[2])
    n = len(pk)
    _as_pcapng(src, src.with_suffix(".pcapng"), drop={record}, isb={4: n, 5: 0, 7: 1, 8: n - 1})
    src.unlink()
    man = json.loads((d / "manifest.json").read_text())
    entry = next(e for e in man["captures"] if e["file"] == mid["file"])
    entry["file"] = str(Path(mid["file"]).with_suffix(".pcapng"))
    entry.pop("tcpdump", None)  # only the pcapng's own counters speak for this capture
    (d / "manifest.json").write_text(json.dumps(man))
    return d, c, f"{mid['node']}:{mid['interface']}", entry["file"]


def test_a_gap_at_a_capture_whose_statistics_block_reports_drops_is_capture_loss_with_its_counters(dropped_at_uplink, capsys):
    d, c, point, file = dropped_at_uplink
    assert main(["why", str(d), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, json_schema("why"))
    t = c["client_tuple"]
    conn = next(x for x in doc["connections"] if x["client"]["addr"] == t["src"] and x["client"]["port"] == t["sport"])
    assert conn["status"] == "ok"
    (loss,) = conn["losses"]
    assert (loss["cause"], loss["first_missed"], loss["packets"]) == ("capture-loss", point, 1)
    assert loss["confidence"] >= 0.95
    ev = loss["evidence"]
    assert "reports 1 packet(s) dropped" in ev and f"pcapng statistics of {Path(file).name}" in ev
    assert all(f"isb_{k}" in ev for k in ("ifrecv", "ifdrop", "osdrop", "usrdeliv"))
    others = [x for x in doc["connections"] if x is not conn]
    assert all(x["status"] == "ok" and not x["losses"] for x in others)


def test_a_segment_missing_at_its_last_point_that_its_receiver_acknowledged_is_capture_loss():
    if not (CALICO / "truth.json").exists():
        pytest.skip("no calico-vxlan sample")
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.k8s.diagnose import diagnose

    truth = json.loads((CALICO / "truth.json").read_text())
    c = next(c for c in truth["connections"] if c.get("ok") and c["kind"] == "egress")
    last = c["path"]["forward"][-1]  # the server's own capture: nothing comes after it
    t = last["tuple"]
    frames, removed = [], 0
    for e in json.loads((CALICO / "manifest.json").read_text())["captures"]:
        df = pcaptools.read_packets(CALICO / e["file"])
        if e["file"] == last["file"]:
            mine = (df["src"].astype(str) == t["src"]) & (df["sport"] == t["sport"]) & (df["payload_len"] > 0)
            first_data = df.index[mine][:1]
            removed, df = len(first_data), df.drop(first_data)
        frames.append((dict(e, file=str(CALICO / e["file"])), df))
    assert removed == 1
    dg = diagnose(CaptureSet.from_frames(frames), None, CALICO / "inventory.json")
    conn = dg.connections[(dg.connections["client_port"] == c["client_tuple"]["sport"])
                          & (dg.connections["client_addr"] == c["client_tuple"]["src"])].iloc[0]  # fmt: skip
    assert conn["status"] == "ok"
    (loss,) = dg.connection_record(int(conn["connection"]))["losses"]
    assert (loss["cause"], loss["first_missed"], loss["packets"]) == ("capture-loss", f"{last['node']}:{last['interface']}", 1)
    assert "acknowledgement beyond its last byte" in loss["evidence"]


def test_a_dataset_keeps_the_statistics_block_drops_so_why_gives_the_same_losses(dropped_at_uplink, tmp_path, capsys):
    """`convert` stores the pcapng counters: `why DIR` weighs them as `why` on the captures does."""
    from pcaptools.convert import convert
    from pcaptools.dataset import read_meta

    d, _, point, _ = dropped_at_uplink
    assert main(["why", str(d), "--json"]) == 0
    on_captures = json.loads(capsys.readouterr().out)
    ds = convert([str(d)], tmp_path / "set.ds")
    jsonschema.validate(read_meta(ds), json.loads((Path(pcaptools.__file__).parent / "schemas" / "dataset.schema.json").read_text()))
    assert read_meta(ds)["pcapng_drops"][point][0] == 1
    assert main(["why", str(ds), "--json"]) == 0
    on_dataset = json.loads(capsys.readouterr().out)
    assert [x["losses"] for x in on_dataset["connections"]] == [x["losses"] for x in on_captures["connections"]]


def test_the_decoded_table_carries_each_files_statistics_block_counters_in_attrs():
    """read_packets and iter_packets put the ISB counters in attrs as plain data; a file without one has None."""
    df = pcaptools.read_packets(DUMPCAP)
    assert df.attrs["interface_stats"] == {str(DUMPCAP): [{"interface": 0, "ifrecv": 34, "ifdrop": 0, "filteraccept": None,
                                                            "osdrop": None, "usrdeliv": None, "dropped": 0}]}  # fmt: skip
    last = list(pcaptools.iter_packets(DUMPCAP, batch_records=10))[-1]
    assert last.attrs["interface_stats"] == df.attrs["interface_stats"]
    eth = HERE / "data" / "own" / "eth.pcapng"
    both = pcaptools.read_packets([DUMPCAP, eth])
    assert both.attrs["interface_stats"] == {**df.attrs["interface_stats"], str(eth): [None]}


def test_the_capture_set_keeps_the_counters_per_point_and_a_dataset_reads_back_the_same_attrs(dropped_at_uplink, tmp_path):
    """The point whose pcapng reports the drop holds its counters; a dataset's tables carry attrs equal to decoding."""
    from pcaptools.convert import convert
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.k8s.diagnose import pcapng_drops

    d, _, point, file = dropped_at_uplink
    cs = CaptureSet.load(d / "manifest.json")
    (counters,) = cs.interface_stats[point]["interfaces"]
    assert (counters["ifdrop"], counters["osdrop"], counters["dropped"]) == (0, 1, 1)
    assert set(cs.interface_stats) == {point}  # the classic pcap points have no Statistics Block
    assert pcapng_drops(cs)[point][0] == 1
    ds = convert([str(d)], tmp_path / "set.ds")
    on_dataset, decoded = pcaptools.read_packets(ds), pcaptools.read_packets(d / file)
    assert on_dataset.attrs["interface_stats"][str(d / file)] == decoded.attrs["interface_stats"][str(d / file)]
    assert pcapng_drops(CaptureSet.load(ds)) == pcapng_drops(cs)
