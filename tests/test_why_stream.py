"""``why`` and ``paths --json`` within a memory budget (pcaptools.k8s.paths_stream.diagnose_bounded): the packets'
evidence gathered while the correlation reads them in windows, the diagnosis run a bucket of connections at a time;
the same ``why --json``, ``why`` text and ``paths --json`` as the in-memory run."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, wrpcap

import pcaptools
from pcaptools.k8s.diagnose import diagnose
from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths import load_paths
from pcaptools.k8s.paths_stream import diagnose_bounded
from tests.test_why_capture_stats import _as_pcapng

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"


def _why_text(d, *, all_connections: bool) -> str:
    """What ``pcaptools why`` prints for a Diagnosis, 120 columns wide."""
    from rich.console import Console

    from pcaptools.render.terminal import print_why

    buf = io.StringIO()
    print_why(d, Console(file=buf, width=120, markup=False, highlight=False, emoji=False, soft_wrap=False),
              all_connections=all_connections)  # fmt: skip
    return buf.getvalue()


def _outputs(ps, d) -> dict:
    """``why --json``, ``why`` and ``why --all`` text, and ``paths --json`` of a PathSet and its Diagnosis."""
    from pcaptools.render.records import paths_document

    return {"why --json": d.to_dict(), "why": _why_text(d, all_connections=False), "why --all": _why_text(d, all_connections=True),
            "paths --json": paths_document(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d)}  # fmt: skip


def _in_memory(src, **kw) -> dict:
    """The outputs of the in-memory run: load_paths, then diagnose, as the CLI did before it streamed."""
    points = kw.pop("points", ())
    ps = load_paths(src if src is not None else [], points=points)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=manifest_drops([src] if src else []),
                 detail=ps.detail(), **kw)  # fmt: skip
    return _outputs(ps, d)


def _streamed(src, *, window_rows: int, bucket_rows: int, **kw) -> tuple[dict, dict]:
    """The outputs of the run forced to stream, and how it was cut."""
    ps, d = diagnose_bounded(src, capture_drops=manifest_drops([src] if src else []), window_rows=window_rows,
                             bucket_rows=bucket_rows, **kw)  # fmt: skip
    return _outputs(ps, d), ps.streamed


def _assert_same(whole: dict, bounded: dict) -> None:
    for k in whole:
        assert whole[k] == bounded[k], k


def _statuses(doc: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in doc["connections"]:
        out[c["status"]] = out.get(c["status"], 0) + 1
    return out


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_lab_sample_diagnosed_in_windows_and_buckets_gives_the_in_memory_why_and_paths_json(sample):
    rules = []
    if sample == "calico-vxlan":  # with the kube-proxy rules the lab installed: each translation's chains
        from pcaptools.k8s.iptables import parse
        from pcaptools.lab import kubeproxy, topology

        topo = topology.plan("calico-vxlan")
        rules = [parse(kubeproxy.node_rules(topo, n), n.name) for n in topo.nodes]
    whole = _in_memory(SAMPLES / sample, iptables=rules)
    bounded, cut = _streamed(SAMPLES / sample, window_rows=300, bucket_rows=50, iptables=rules)
    assert cut["windows"] >= 20 and cut["carried_journeys"] >= 500 and cut["buckets"] >= 10
    assert _statuses(whole["why --json"]) == {"ok": 16}  # the healthy lab run: 16 connections, nothing lost
    if rules:
        steps = [s for c in whole["why --json"]["connections"] for s in c["nat"]]
        assert steps and all(s["explained"] and s["chains"] for s in steps)
    _assert_same(whole, bounded)


def test_directory_without_manifest_diagnosed_in_windows_and_buckets_gives_the_in_memory_output(plain_dir):
    whole = _in_memory(plain_dir)
    bounded, cut = _streamed(plain_dir, window_rows=300, bucket_rows=50)
    assert cut["windows"] >= 20 and cut["buckets"] >= 10
    assert len(whole["why --json"]["connections"]) == 16
    _assert_same(whole, bounded)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory) -> tuple[Path, dict]:
    """The calico-vxlan sample with two faults written into its captures: one cross-node connection's packets never
    reach the backend pod's veth and it never answers (a drop inside the backend node), and one packet of another
    cross-node connection is missing at the backend node's uplink, whose capture is rewritten as pcapng with an
    Interface Statistics Block reporting that drop. Returns the directory and the truth of the two connections."""
    d = tmp_path_factory.mktemp("lossy") / "set"
    shutil.copytree(SAMPLES / "calico-vxlan", d)
    truth = json.loads((d / "truth.json").read_text())
    man = json.loads((d / "manifest.json").read_text())
    key = lambda c: tuple(sorted(c["server_tuple"].items()))  # noqa: E731
    ok = [c for c in truth["connections"] if c.get("ok")]
    cross = [c for c in ok if c["kind"] == "pod-direct-cross-node" and sum(key(o) == key(c) for o in ok) == 1]
    dropped, gap = cross[0], next(c for c in ok if c["kind"] == "pod-direct-cross-node" and c is not cross[0])
    last = dropped["path"]["forward"][-1]
    mid = next(x for x in gap["path"]["forward"][1:-1] if x["interface"] == "eth0" and x["node"] == gap["backend"]["node"])
    drop: dict[str, set[int]] = {}
    for e in man["captures"]:
        pk = pcaptools.read_packets(d / e["file"])
        t = dropped["client_tuple"]
        gone = (pk["dst"].astype(str) == t["src"]) & (pk["dport"] == t["sport"])  # no answer anywhere
        if (e["node"], e["interface"]) == (last["node"], last["interface"]):
            gone |= (pk["src"].astype(str) == last["tuple"]["src"]) & (pk["sport"] == last["tuple"]["sport"])
        if (e["node"], e["interface"]) == (mid["node"], mid["interface"]):
            m = mid["tuple"]
            rows = pk[(pk["src"].astype(str) == m["src"]) & (pk["sport"] == m["sport"]) & (pk["dport"] == m["dport"])]
            gone |= pk["record"] == int(rows["record"].iloc[2])
        drop[e["file"]] = set(pk.loc[gone, "record"].astype(int).tolist())
    for e in man["captures"]:
        if not drop[e["file"]]:
            continue
        src = d / e["file"]
        n = len(pcaptools.read_packets(src))
        isb = {4: n, 5: 0, 7: 1, 8: n - 1} if (e["node"], e["interface"]) == (mid["node"], mid["interface"]) else {}
        _as_pcapng(src, src.with_suffix(".pcapng"), drop=drop[e["file"]], isb=isb)
        src.unlink()
        e["file"] = str(Path(e["file"]).with_suffix(".pcapng"))
        e.pop("tcpdump", None)
    (d / "manifest.json").write_text(json.dumps(man))
    return d, {"dropped": dropped, "gap": gap, "gap_point": f"{mid['node']}:{mid['interface']}"}


def test_losses_and_failed_connections_diagnosed_in_windows_and_buckets_give_the_in_memory_output(lossy):
    d, truth = lossy
    whole = _in_memory(d)
    bounded, cut = _streamed(d, window_rows=300, bucket_rows=50)
    assert cut["windows"] >= 20 and cut["buckets"] >= 10
    conns = {(c["client"]["addr"], c["client"]["port"]): c for c in whole["why --json"]["connections"]}
    t = truth["dropped"]["client_tuple"]
    failed = conns[(t["src"], t["sport"])]
    assert failed["status"] == "failed" and {x["cause"] for x in failed["losses"]} == {"policy-drop"}
    t = truth["gap"]["client_tuple"]
    (gap,) = conns[(t["src"], t["sport"])]["losses"]
    assert (gap["cause"], gap["first_missed"]) == ("capture-loss", truth["gap_point"])
    assert "reports 1 packet(s) dropped" in gap["evidence"]  # the pcapng Statistics Block, read while streaming
    _assert_same(whole, bounded)


def _crafted(tmp_path: Path) -> list[str]:
    """Two capture points (node-1:eth0 client side, node-2:eth0 server side) written with scapy: a client port used
    by two connections in turn (the first with a retried SYN), a SYN-ACK answered by RST, a UDP request lost between
    the points and answered by an ICMP administratively-prohibited from the router, a large TCP segment lost there
    with an ICMP frag-needed (MTU 1200), the same flows again after, so both clocks span the faults."""
    c, s, r = "10.244.1.5", "10.244.2.7", "10.244.2.1"
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    n1: list = []
    n2: list = []
    t0 = 1_700_000_000.0

    def fwd(t: float, p, *, lost: bool = False) -> None:  # client -> server: node-1 first
        n1.append((t, p))
        if not lost:
            n2.append((t + 0.0003, p))

    def rev(t: float, p) -> None:  # server -> client: node-2 first
        n2.append((t, p))
        n1.append((t + 0.0003, p))

    def handshake(t: float, sport: int, dport: int, isn: int, ipid: int, *, retry: bool = False) -> float:
        fwd(t, e / IP(src=c, dst=s, id=ipid) / TCP(sport=sport, dport=dport, flags="S", seq=isn))
        if retry:
            t += 1.0
            fwd(t, e / IP(src=c, dst=s, id=ipid + 1) / TCP(sport=sport, dport=dport, flags="S", seq=isn))
        rev(t + 0.001, e / IP(src=s, dst=c, id=ipid + 50) / TCP(sport=dport, dport=sport, flags="SA", seq=9000, ack=isn + 1))
        fwd(t + 0.002, e / IP(src=c, dst=s, id=ipid + 2) / TCP(sport=sport, dport=dport, flags="A", seq=isn + 1, ack=9001))
        return t + 0.002

    def exchange(t: float, sport: int, isn: int, ipid: int, body: bytes, *, retry: bool = False) -> None:
        t = handshake(t, sport, 80, isn, ipid, retry=retry)
        fwd(t + 0.001, e / IP(src=c, dst=s, id=ipid + 3) / TCP(sport=sport, dport=80, flags="PA", seq=isn + 1, ack=9001) / Raw(body))
        rev(t + 0.002, e / IP(src=s, dst=c, id=ipid + 51) / TCP(sport=80, dport=sport, flags="FA", seq=9001, ack=isn + 1 + len(body)))
        fwd(t + 0.003, e / IP(src=c, dst=s, id=ipid + 4) / TCP(sport=sport, dport=80, flags="FA", seq=isn + 1 + len(body), ack=9002))
        rev(t + 0.004, e / IP(src=s, dst=c, id=ipid + 52) / TCP(sport=80, dport=sport, flags="A", seq=9002, ack=isn + 2 + len(body)))

    exchange(t0, 41234, 1000, 100, b"GET /a HTTP/1.0\r\n\r\n", retry=True)
    # a SYN-ACK the client answers with RST
    fwd(t0 + 2.0, e / IP(src=c, dst=s, id=200) / TCP(sport=41300, dport=80, flags="S", seq=100))
    rev(t0 + 2.001, e / IP(src=s, dst=c, id=250) / TCP(sport=80, dport=41300, flags="SA", seq=7000, ack=101))
    fwd(t0 + 2.002, e / IP(src=c, dst=s, id=201) / TCP(sport=41300, dport=80, flags="R", seq=101))
    # a DNS request dropped by a filter on the way, which says so
    q = IP(src=c, dst=s, id=300) / UDP(sport=41400, dport=53) / Raw(b"\x12\x34" + b"\x00" * 10)
    fwd(t0 + 2.5, e / q, lost=True)
    n1.append((t0 + 2.501, e / IP(src=r, dst=c, id=350) / ICMP(type=3, code=13) / bytes(q)[:28]))
    # a segment too large for the next hop, and the router's frag-needed
    t = handshake(t0 + 3.0, 41500, 8080, 5000, 400)
    big = IP(src=c, dst=s, id=403, flags="DF") / TCP(sport=41500, dport=8080, flags="PA", seq=5001, ack=9001) / Raw(b"x" * 1400)
    fwd(t + 0.001, e / big, lost=True)
    n1.append((t + 0.0012, e / IP(src=r, dst=c, id=450) / ICMP(type=3, code=4, nexthopmtu=1200) / bytes(big)[:48]))
    exchange(t0 + 4.5, 41234, 500_000, 500, b"GET /bb HTTP/1.0\r\n\r\n")  # the client port again: a second connection
    specs = []
    for name, pk in (("node-1", n1), ("node-2", n2)):
        out = []
        for ts, p in sorted(pk, key=lambda x: x[0]):
            p = p.copy()
            p.time = ts
            out.append(p)
        f = tmp_path / f"{name}.pcap"
        wrpcap(str(f), out)
        specs.append(f"{name}:eth0={f}")
    return specs


def test_crafted_resets_icmp_errors_and_a_reused_port_diagnosed_in_windows_give_the_in_memory_output(tmp_path):
    specs = _crafted(tmp_path)
    whole = _in_memory(None, points=specs)
    bounded, cut = _streamed([], points=specs, window_rows=8, bucket_rows=4)
    assert cut["windows"] >= 2 and cut["buckets"] >= 3
    doc = whole["why --json"]
    reused = [c for c in doc["connections"] if c["client"]["port"] == 41234 and c["proto"] == "tcp"]
    assert len(reused) == 2 and all(c["status"] == "ok" for c in reused)  # two connections, the retried SYN in the first
    causes = {(c["client"]["port"], x["cause"]) for c in doc["connections"] for x in c["losses"]}
    assert {(41300, "conntrack"), (41400, "policy-drop"), (41500, "mtu-blackhole")} <= causes
    icmp = [x for c in doc["connections"] for x in c["losses"] if x["cause"] in ("policy-drop", "mtu-blackhole")]
    assert all("ICMP" in x["evidence"] for x in icmp) and len(icmp) == 2
    _assert_same(whole, bounded)


def test_generated_set_diagnosed_in_windows_and_buckets_gives_the_in_memory_output(generated):
    whole = _in_memory(generated)
    bounded, cut = _streamed(generated, window_rows=2000, bucket_rows=3000)
    assert cut["windows"] >= 10 and cut["carried_journeys"] >= 500 and cut["buckets"] >= 20
    doc = whole["why --json"]
    assert len(doc["connections"]) > 150
    assert sum(len(c["losses"]) for c in doc["connections"]) > 100  # the generator's drops, located
    assert sum(len(c["timeline"]) for c in doc["connections"]) > 100  # and its retransmissions
    _assert_same(whole, bounded)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("argv", [["why"], ["why", "--json"], ["paths", "--json"]])
def test_cli_diagnosis_under_a_memory_cap_prints_the_same(generated, tmp_path, argv):
    small = _cli(argv[0], str(generated), *argv[1:], "--memory", "16MiB", cwd=tmp_path)
    large = _cli(argv[0], str(generated), *argv[1:], cwd=tmp_path)
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    assert small.stdout == large.stdout and len(large.stdout) > 10_000
    # 16 MiB is below any run's floor: the streamed run says so on stderr, once, and is otherwise the same
    floor = re.compile(r"pcaptools: the memory budget \(16 MiB\) is below this capture set's floor.*not joined\)\n")
    assert len(floor.findall(small.stderr)) == 1 and not floor.search(large.stderr)
    if "--json" in argv:
        doc = json.loads(small.stdout)
        assert doc["schema_version"] == 1 and doc["command"] == argv[0]


def test_dataset_of_a_lossy_set_diagnosed_in_windows_gives_the_in_memory_output(lossy, tmp_path):
    """A dataset streams per file from its Parquet parts, which carry the pcapng Statistics Block counters."""
    from pcaptools.convert import convert

    d, truth = lossy
    ds = convert([str(d)], tmp_path / "set.ds")
    whole = _in_memory(ds)
    bounded, cut = _streamed(ds, window_rows=300, bucket_rows=50)
    assert cut["windows"] >= 20 and cut["buckets"] >= 10
    gap = [x for c in whole["why --json"]["connections"] for x in c["losses"] if x["first_missed"] == truth["gap_point"]]
    assert len(gap) == 1 and "reports 1 packet(s) dropped" in gap[0]["evidence"]
    _assert_same(whole, bounded)


def test_json_printed_a_connection_at_a_time_is_the_whole_documents_text(tmp_path):
    """`why --json` and `paths --json` print their connections one at a time (render.records.write_document): the
    text is dumps() of the whole document, byte for byte."""
    from pcaptools.render.records import dumps, path_records, paths_document, write_document

    ps, d = diagnose_bounded([], points=_crafted(tmp_path))
    docs = [(d.to_dict(), d.head(), "connections", d.records()),
            (paths_document(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d), {"schema_version": 1, "command": "paths",
             "connections": len(ps.paths), "paths": []}, "paths", path_records(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d))]  # fmt: skip
    for whole, head, key, items in docs:
        buf = io.StringIO()
        write_document(head, key, items, buf.write)
        assert len(whole[key]) >= 5 and buf.getvalue() == dumps(whole)
    empty = io.StringIO()
    write_document(d.head(), "connections", iter(()), empty.write)
    assert empty.getvalue() == dumps(d.head()) and json.loads(empty.getvalue())["connections"] == []


def test_budget_that_streams_the_paths_but_fits_one_correlation_window_gives_the_in_memory_why():
    """Between the two thresholds (paths streams at ROW_PEAK a record, the correlation fits one window at its own
    700 bytes) the correlation runs in one window and hands its stacked capture set to the diagnosis' evidence."""
    from pcaptools.correlate.stream import one_window_bytes
    from pcaptools.k8s.discover import input_files
    from pcaptools.k8s.paths_stream import ROW_PEAK, streams

    src = SAMPLES / "calico-vxlan"
    files = [e["file"] for e in input_files([src], [])]
    fits_correlation, fits_paths = one_window_bytes(files), one_window_bytes(files, row_bytes=ROW_PEAK)
    memory = (fits_correlation + fits_paths) // 2
    assert fits_correlation < memory < fits_paths and streams([src], [], memory)
    ps, d = diagnose_bounded(src, capture_drops=manifest_drops([src]), memory=memory)
    assert ps.streamed is not None and ps.streamed["windows"] == 1  # streamed paths on a one-window correlation
    _assert_same(_in_memory(src), _outputs(ps, d))



_GENERATED_RULES = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-WEB0 - [0:0]
:KUBE-POSTROUTING - [0:0]
-A KUBE-SVC-WEB -j KUBE-SEP-WEB0
-A KUBE-SEP-WEB0 -p tcp -m tcp -j DNAT --to-destination 10.244.1.10:80
-A KUBE-POSTROUTING -j MASQUERADE
COMMIT
"""
"""node-1's kube-proxy rules for gen_set.py's ClusterIP (web, 10.100.0.20:8080 -> backend-0 10.244.1.10:80) without
its frontend rule: its SNATs explained, its DNATs flagged, so ``why`` lists connections for a loss and connections
without one for their DNAT."""

MANY_BUCKET_ROWS = 1000
"""Hops rows of a bucket in the many-bucket runs: the 20,000-packet set in about 80 buckets."""

_TABLES = ("connections", "losses", "timeline", "nat_rules")


def _spill_dir(tmp_path: Path, monkeypatch) -> Path:  # noqa: ANN001
    """An empty directory every temporary file and directory of the process is made in (``tempfile.tempdir``)."""
    import tempfile

    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    return spill


def _paths_json_by_parts(ps, d, rules: list) -> str:
    """``paths --json`` as the CLI writes it (cli._print_paths): a part (a streamed run's bucket) at a time, each
    part's NAT steps explained as they are written."""
    from functools import partial

    from pcaptools.k8s.iptables import explain
    from pcaptools.render.records import document, path_records, write_document

    buf = io.StringIO()
    items = (r for p, nat, hops in ps.parts()
             for r in path_records(p, nat, hops, diagnosis=d, nat_rules=partial(explain, rulesets=rules), columns=True))  # fmt: skip
    write_document(document("paths", connections=ps.n_connections, paths=[]), "paths", items, buf.write)
    return buf.getvalue()


@pytest.fixture(scope="module")
def many_buckets(generated, tmp_path_factory):
    """The 20,000-packet generated set diagnosed in memory and streamed in buckets of :data:`MANY_BUCKET_ROWS` rows,
    with node-1's rules: a namespace of the in-memory PathSet and Diagnosis (``ps``, ``whole``), the streamed ones
    (``bps``, ``bd``), the ``rules``, the rows the Diagnoser held after each bucket it was given and after each take
    (``held``), which of the streamed Diagnosis' tables were held as tables when it was returned (``made``)."""
    from types import SimpleNamespace

    from pcaptools.k8s.diagnose import Diagnoser
    from pcaptools.k8s.iptables import parse

    rules = [parse(_GENERATED_RULES, "node-1")]
    ps = load_paths(generated)
    whole = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=manifest_drops([generated]), detail=ps.detail(),
                     iptables=rules)  # fmt: skip
    held: dict[str, list[int]] = {"added": [], "taken": []}
    add, take = Diagnoser.add, Diagnoser.take

    def added(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        add(self, *a, **kw)
        held["added"].append(self.held_rows)

    def taken(self):  # noqa: ANN001, ANN202
        out = take(self)
        held["taken"].append(self.held_rows)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Diagnoser, "add", added)
        mp.setattr(Diagnoser, "take", taken)
        bps, bd = diagnose_bounded(generated, capture_drops=manifest_drops([generated]), window_rows=2000,
                                   bucket_rows=MANY_BUCKET_ROWS, iptables=rules)  # fmt: skip
    made = {k: isinstance(bd.__dict__.get(f"_{k}_value"), pd.DataFrame) for k in _TABLES}
    yield SimpleNamespace(ps=ps, whole=whole, bps=bps, bd=bd, rules=rules, held=held, made=made)
    bps.close()


def test_many_buckets_with_losses_in_several_give_the_in_memory_why_text_and_json_and_paths_json(many_buckets):
    m = many_buckets
    assert m.bps.streamed["buckets"] >= 50 and len(m.bd.spilled) == m.bps.streamed["buckets"]
    lossy = [k for k, part in enumerate(m.bd.parts()) if len(part.losses)]
    assert len(lossy) >= 20 and lossy[-1] - lossy[0] >= 40  # losses spread over the buckets, not in one
    flagged = m.whole.nat_rules.loc[~m.whole.nat_rules["explained"].astype(bool)]
    assert set(flagged["op"]) == {"DNAT"} and m.whole.nat_rules["explained"].any()  # SNATs explained, DNATs flagged
    streamed = _outputs(m.bps, m.bd)
    _assert_same(_outputs(m.ps, m.whole), streamed)
    assert "by kind" in streamed["why"] and "no loss (NAT not explained)" in streamed["why"]  # kinds summed over buckets
    assert _paths_json_by_parts(m.bps, m.bd, m.rules) == _paths_json_by_parts(m.ps, m.whole, m.rules)


def test_streamed_diagnosis_read_whole_gives_the_in_memory_tables(many_buckets):
    m = many_buckets
    for name in _TABLES:
        pd.testing.assert_frame_equal(getattr(m.bd, name), getattr(m.whole, name), obj=name)
    assert len(m.bd.losses) > 300 and len(m.bd.timeline) > 10_000 and len(m.bd.nat_rules) > 10_000


def test_streamed_diagnoser_holds_one_buckets_output_at_most(many_buckets):
    m = many_buckets
    n = m.bps.streamed["buckets"]
    assert len(m.held["added"]) == len(m.held["taken"]) == n and set(m.held["taken"]) == {0}  # dropped as spilled
    per_bucket = max(m.held["added"])  # a bucket's connections, losses and timeline attempts
    everything = len(m.whole.connections) + len(m.whole.losses) + int(m.whole._attempts.cols["connection"].size)
    assert 0 < per_bucket < everything / 10
    assert m.made == dict.fromkeys(_TABLES, False)  # the Diagnosis returned holds none of its tables


def test_closing_a_streamed_run_removes_its_paths_and_diagnosis_parts(tmp_path, monkeypatch):
    from pcaptools.k8s.iptables import parse
    from pcaptools.lab import kubeproxy, topology

    spill = _spill_dir(tmp_path, monkeypatch)
    topo = topology.plan("calico-vxlan")
    rules = [parse(kubeproxy.node_rules(topo, n), n.name) for n in topo.nodes]
    ps, d = diagnose_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=50, iptables=rules)
    (out,) = spill.iterdir()  # the run's spilled output, its paths and its diagnosis: one directory
    names = {f.name.rsplit("-", 1)[0] for f in out.iterdir()}
    assert names == {"paths", "nat", "hops", "diagnosis"} and len(list(out.glob("diagnosis-*.pkl"))) == ps.streamed["buckets"]
    assert len(d.to_dict()["connections"]) == 16
    ps.close()
    assert list(spill.iterdir()) == []
    d.close()  # the same directory: nothing left to remove
    assert list(spill.iterdir()) == []


@pytest.mark.parametrize("argv", [["why"], ["why", "--all"], ["why", "--json"], ["paths", "--json"]])
def test_cli_diagnosis_in_many_buckets_with_rules_prints_the_in_memory_output_and_leaves_no_files(generated, tmp_path,
                                                                                                  monkeypatch, argv):  # fmt: skip
    from typer.testing import CliRunner

    from pcaptools.cli import app
    from pcaptools.k8s import paths_stream

    rules = tmp_path / "node-1.txt"
    rules.write_text(_GENERATED_RULES)
    args = [argv[0], str(generated), *argv[1:], "--iptables", f"node-1={rules}"]
    whole = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    spill = _spill_dir(tmp_path, monkeypatch)
    monkeypatch.setattr(paths_stream, "MIN_BUCKET_ROWS", MANY_BUCKET_ROWS)  # buckets under a budget below the floor
    parts = []
    monkeypatch.setattr(paths_stream.DiagnosisParts, "add", lambda self, c, cols, nr, add=paths_stream.DiagnosisParts.add:
                        (parts.append(len(cols["losses"]["connection"])), add(self, c, cols, nr)))  # fmt: skip
    small = CliRunner().invoke(app, [*args, "--memory", "16MiB"], env={"COLUMNS": "120"})
    assert small.exit_code == whole.exit_code == 0, small.output + whole.output
    assert len(parts) >= 50 and sum(n > 0 for n in parts) >= 20  # many buckets, losses in many of them
    assert small.stdout == whole.stdout and len(whole.stdout) > 10_000
    assert list(spill.iterdir()) == []
