"""Many short connections (gen_set.py ``flow_span``): a capture set where the connections, not the packets, are what
grows. Streamed in windows and buckets of a few connections, ``paths`` (table, NAT, text, ``--json``) and ``why``
are the in-memory run's, also when their objects are made a few connections at a time; and gen_set.py's default
sets are those of before the option."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from pcaptools.k8s.paths import load_paths
from tests.test_paths_stream import _assert_same as _assert_same_paths
from tests.test_why_stream import _assert_same, _in_memory, _streamed

ROOT = Path(__file__).resolve().parents[1]


def _gen_set():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # gen_set imports its sibling gen
    try:
        import gen_set
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return gen_set


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """4,000 packets in 400 short connections (each within 2% of the stream, its own port, SYN to FIN)."""
    out = tmp_path_factory.mktemp("many") / "set"
    info = _gen_set().generate(4000, out, flows=400, flow_span=0.02, seed=3)
    assert info["connections"] == 400
    return out


def test_many_short_connections_in_windows_and_buckets_give_the_in_memory_paths(many, monkeypatch):
    import pcaptools.render.records as records
    from pcaptools.k8s.paths_stream import load_paths_bounded

    whole = load_paths(many)
    assert len(whole.paths) >= 350 and (whole.paths["orig_bytes"] >= 0).all()  # each joined to its client flow
    bounded = load_paths_bounded(many, window_rows=500, bucket_rows=300)
    assert bounded.streamed["windows"] >= 10 and bounded.streamed["buckets"] >= 40
    monkeypatch.setattr(records, "RECORD_CHUNK", 7)  # routes and --json objects made 7 connections at a time
    _assert_same_paths(whole, bounded)


def test_many_short_connections_diagnosed_in_buckets_give_the_in_memory_why_and_paths_json(many, monkeypatch):
    import pcaptools.render.records as records

    whole = _in_memory(many)
    monkeypatch.setattr(records, "RECORD_CHUNK", 7)
    bounded, cut = _streamed(many, window_rows=500, bucket_rows=300)
    assert cut["buckets"] >= 40
    assert len(whole["paths --json"]["paths"]) >= 350
    _assert_same(whole, bounded)


def test_paths_json_made_in_chunks_is_the_document_made_at_once(many, monkeypatch):
    import pcaptools.render.records as records
    from pcaptools.k8s.diagnose import diagnose
    from pcaptools.k8s.discover import manifest_drops

    ps = load_paths(many)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=manifest_drops([many]), detail=ps.detail())
    texts = []
    for chunk in (len(ps.paths) + 1, 1, 64):
        monkeypatch.setattr(records, "RECORD_CHUNK", chunk)
        buf = io.StringIO()
        records.write_document({"paths": []}, "paths", records.path_records(ps.paths, ps.nat, ps.correlation.hops, diagnosis=d), buf.write)
        texts.append(buf.getvalue())
    assert texts[0] == texts[1] == texts[2]
    doc = json.loads(texts[0])
    assert [p["connection"] for p in doc["paths"]] == list(range(len(ps.paths)))
    assert all(p["hops"] for p in doc["paths"])


def _md5s(d: Path) -> dict[str, str]:
    return {str(f.relative_to(d)): hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(d.rglob("*")) if f.is_file()}


def test_gen_set_defaults_write_the_files_of_before_the_flow_options(tmp_path):
    gen_set = _gen_set()
    gen_set.generate(2000, tmp_path / "a", seed=0)
    gen_set.generate(2000, tmp_path / "b", seed=0, flows=200, flow_span=None)
    # md5s of gen_set.py's 2,000-packet seed-0 set written before --flows / --flow-span existed (585a0df)
    assert _md5s(tmp_path / "a") == _md5s(tmp_path / "b") == BEFORE_OPTIONS


def test_gen_set_flow_span_makes_short_connections_on_their_own_ports(tmp_path):
    from pcaptools.flows import read_flows

    info = _gen_set().generate(3000, tmp_path, flows=300, flow_span=0.01, seed=1)
    fl = read_flows(str(tmp_path / "node-1" / "cali-client0.pcap"))
    tcp = fl[fl["proto"] == 6]
    assert info["connections"] == 300 and fl["orig_p"].nunique() == 300  # no port is reused
    span = (fl["last_ts_ns"] - fl["first_ts_ns"]).median()
    stream = fl["last_ts_ns"].max() - fl["first_ts_ns"].min()
    assert span < 0.05 * stream  # within a short part of the stream (a retransmission comes 200 ms later)
    history = pd.Series(tcp["history"].astype(str))
    assert history.str.contains("S").all() and history.str.contains("F", case=False).mean() > 0.9  # SYN ... FIN


BEFORE_OPTIONS = {
    "inventory.json": "095312fba1dad1f9b62eec420ea5ca58", "manifest.json": "f17f38964640ea60bf07d7b787a2dd5c",
    "node-1/cali-client0.pcap": "0e6c5def770f615e66cab060b26ce224", "node-1/eth0.pcap": "df4a7801b49e6c1b476d50c3a33f9bd4",
    "node-2/cali-backend0.pcap": "633929524ef4d9879187fe517cbb9840", "node-2/eth0.pcap": "f8db4c15b321d25d75868c2aea772873",
}  # fmt: skip


def test_paths_on_hundreds_of_connections_prints_their_routes_not_a_block_each(many, capsys, monkeypatch):
    from pcaptools.cli import main
    from pcaptools.k8s.groups import route_groups

    monkeypatch.setenv("COLUMNS", "200")
    ps = load_paths(many)
    routes = route_groups(ps.paths, ps.shown_nat if ps.shown_nat is not None else ps.nat)
    assert main(["paths", str(many)]) == 0
    out = capsys.readouterr().out
    assert f"{len(ps.paths)} connections on {len(routes)} routes" in out
    assert out.count("\n\n#") == min(len(routes), 50)  # a route block per route shown, not per connection
    assert main(["paths", str(many), "--all"]) == 0
    assert capsys.readouterr().out.count("\n\n#") == len(ps.paths)


def test_why_on_hundreds_of_connections_groups_their_losses_by_kind(many, capsys, monkeypatch):
    from pcaptools.cli import main
    from pcaptools.k8s.diagnose import diagnose
    from pcaptools.k8s.discover import manifest_drops
    from pcaptools.k8s.groups import loss_groups

    monkeypatch.setenv("COLUMNS", "200")
    ps = load_paths(many)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, capture_drops=manifest_drops([many]), detail=ps.detail())
    want: dict[tuple, set] = {}  # independently: each listed connection's own record, as `why --json` gives it
    for c in d.connections["connection"].tolist():
        rec = d.connection_record(int(c))
        for loss in rec["losses"]:
            key = (rec["status"], loss["direction"], loss["cause"], loss["last_seen"], loss["first_missed"] or "")
            want.setdefault(key, set()).add(int(c))
    listed = sorted(set().union(*want.values()))
    assert len(listed) > 50  # more than a listing shows: grouped
    kinds = loss_groups(d.connections, d.losses, listed)
    got = {tuple(r[k] for k in ("status", "direction", "cause", "last_seen", "first_missed")): r for r in kinds.to_dict("records")}
    assert got.keys() == want.keys()
    for key, members in want.items():
        assert got[key]["connections"] == len(members) and got[key]["first_connection"] == min(members)
    assert main(["why", str(many)]) == 0
    out = capsys.readouterr().out
    assert f"{len(listed)} connections with a loss or unexplained NAT, by kind" in out
    assert out.count("\n\n#") == len(dict.fromkeys(kinds["first_connection"].iloc[:50]))  # the first of each kind
    assert main(["why", str(many), "--all"]) == 0
    assert capsys.readouterr().out.count("\n\n#") == len(d.connections)
