"""The client-side flows of a streamed ``paths`` run (pcaptools.k8s.flows_bounded): spilled to the run's temporary
directory, hash-partitioned, sent to the buckets whose hops rows hold their keys and read back a bucket at a time;
the paths' client-flow columns are the in-memory run's, the spill is removed with the run, and the lookup never holds
the whole flow table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.k8s import flows_bounded, paths_stream
from pcaptools.k8s.flows_bounded import ClientFlows
from pcaptools.k8s.paths import load_paths
from pcaptools.k8s.paths_stream import load_paths_bounded

ROOT = Path(__file__).resolve().parents[1]
FLOW_COLUMNS = ["flow_state", "orig_bytes", "resp_bytes", "handshake_ns", "retransmissions"]


@pytest.fixture(scope="module")
def short_connections(tmp_path_factory) -> Path:
    """4,000 packets in 400 short connections (each its own client port, SYN to FIN): a flow per connection and point."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # gen_set imports its sibling gen
    try:
        import gen_set
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path_factory.mktemp("short") / "set"
    assert gen_set.generate(4000, out, flows=400, flow_span=0.02, seed=3)["connections"] == 400
    return out


class _Watch:
    """The run's ClientFlows and what it read: rows per partition assigned, rows per bucket file read back."""

    def __init__(self, monkeypatch, partitions: int) -> None:
        self.flows: ClientFlows | None = None
        self.partition_rows: list[int] = []
        self.bucket_rows: list[int] = []
        self.spill_files: set[str] = set()
        monkeypatch.setattr(
            flows_bounded, "SHARE", 1e-12
        )  # as if the budget were tiny: every partition allowed
        monkeypatch.setattr(flows_bounded, "MAX_PARTITIONS", partitions)
        made, assign_part, rows_of = (
            paths_stream._client_flows,
            ClientFlows._assign_partition,
            ClientFlows.rows_of,
        )

        def client_flows(*args, **kwargs):
            self.flows = made(*args, **kwargs)
            return self.flows

        def assign_partition(flows_self, flows, tags):
            self.partition_rows.append(len(flows["hash"]))
            return assign_part(flows_self, flows, tags)

        def read(flows_self, b, wanted):
            self.spill_files |= {p.name for p in flows_self.dir.iterdir()}
            got = rows_of(flows_self, b, wanted)
            self.bucket_rows.append(
                sum(len(c["hash"]) for c in flows_bounded._chunks(flows_self.dir / f"bucket-{b}"))
            )
            return got

        monkeypatch.setattr(paths_stream, "_client_flows", client_flows)
        monkeypatch.setattr(ClientFlows, "_assign_partition", assign_partition)
        monkeypatch.setattr(ClientFlows, "rows_of", read)


def test_flows_spilled_in_several_partitions_give_the_in_memory_client_flow_columns(
    short_connections, monkeypatch
):
    whole = load_paths(short_connections)
    assert (
        len(whole.paths) == 408 and (whole.paths["orig_bytes"] > 0).all()
    )  # every connection joined to its flow
    states = whole.paths["flow_state"].astype(str).value_counts().to_dict()
    assert states == {"half-closed": 324, "bidirectional": 74, "half-open": 5, "established": 4, "attempt": 1}
    assert (whole.paths["retransmissions"] > 0).sum() == 5 and (whole.paths["handshake_ns"] > 0).sum() == 281
    watch = _Watch(monkeypatch, partitions=4)
    bounded = load_paths_bounded(short_connections, window_rows=500, bucket_rows=300)
    assert watch.flows.partitions == 4 and len(watch.partition_rows) == 4
    assert bounded.streamed["buckets"] >= 40 and len(watch.bucket_rows) == bounded.streamed["buckets"]
    pd.testing.assert_frame_equal(whole.paths, bounded.paths)  # every column, dtype and category
    pd.testing.assert_frame_equal(whole.paths[FLOW_COLUMNS], bounded.paths[FLOW_COLUMNS])


def test_flow_spill_is_removed_after_the_run(short_connections, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    watch = _Watch(monkeypatch, partitions=3)
    ps = load_paths_bounded(short_connections, window_rows=500, bucket_rows=300)
    assert watch.flows.dir.is_relative_to(tmp_path)
    assert {
        "bucket-0",
        "bucket-1",
    } <= watch.spill_files  # the buckets' flows were on disk while they were built
    assert not watch.flows.dir.exists()
    assert [p.name for p in tmp_path.iterdir()] == [
        ps.spilled.dir.name
    ]  # only the output, the command's to close
    ps.close()
    assert not any(tmp_path.iterdir())


def test_flow_lookup_holds_a_bucket_of_flows_not_the_whole_table(short_connections, monkeypatch):
    """Nothing is kept per flow between the steps: a partition is assigned, a bucket's file read back, one at a time;
    each holds a share of the flows (the file's 1,600 flows, four points a connection), not all of them."""
    watch = _Watch(monkeypatch, partitions=4)
    load_paths_bounded(short_connections, window_rows=500, bucket_rows=300)
    flows = watch.flows
    assert flows.flows >= 1600 and sum(watch.partition_rows) == flows.flows
    assert max(watch.partition_rows) < flows.flows / 2
    assert max(watch.bucket_rows) <= 100 < flows.flows / 16  # ~10 connections a bucket, a flow per point each
    kept = [v for v in vars(flows).values() if isinstance(v, (np.ndarray, pd.DataFrame, list)) and len(v)]
    assert (
        kept == [] and len(flows.files) == 4 and len(flows.addresses) <= 8
    )  # the dictionaries: per file, address


def _flow_table(rows: list[tuple]) -> pd.DataFrame:
    cols = ["file", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "state", "orig_bytes", "first_ts_ns"]
    t = pd.DataFrame(rows, columns=cols)
    for c in ("file", "orig_h", "resp_h"):
        t[c] = t[c].astype("category")
    t["state"] = pd.Categorical(t["state"], categories=["closed", "reset", "attempt"])
    return t.assign(resp_bytes=7, handshake_ns=-1, retransmissions=0)


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_keys_first_flow_by_time_is_given_to_each_bucket_holding_its_key_and_exactly_that_key(
    tmp_path, monkeypatch, partitions
):
    """Two flows of one key (a reused client port) in two parts: the bucket gets the earlier one, as the in-memory join
    keeps it, and of two at the same time the first in the flow table's order (b.pcap's); with every hash colliding
    (three values), the exact key comparison still gives each key its own flow."""
    monkeypatch.setattr(flows_bounded, "combine", lambda fields: fields[3].astype(np.uint64) % np.uint64(3))
    flows = ClientFlows(tmp_path / "flows", memory=1 << 30)
    flows.add_flows(_flow_table([("a.pcap", 6, "10.0.0.1", 40000, "10.0.0.2", 80, "reset", 50, 2_000),
                                 ("a.pcap", 6, "10.0.0.1", 40001, "10.0.0.2", 80, "closed", 60, 1_500)]))  # fmt: skip
    flows.add_flows(_flow_table([("a.pcap", 6, "10.0.0.1", 40000, "10.0.0.2", 80, "closed", 40, 1_000),
                                 ("b.pcap", 6, "10.0.0.1", 40000, "10.0.0.2", 80, "attempt", 30, 900),
                                 ("b.pcap", 6, "10.0.0.1", 40000, "10.0.0.2", 80, "closed", 518, 900)]))  # fmt: skip
    hops = pd.DataFrame({"file": ["a.pcap", "a.pcap", "b.pcap", "a.pcap"], "proto": [6, 6, 6, 17],
                         "src": ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1"], "sport": [40000, 80, 40000, 40000],
                         "dst": ["10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.2"], "dport": [80, 40000, 80, 80]})  # fmt: skip
    flows.tag(hops, np.array([0, 0, 1, 0]))
    flows.assign(partitions=partitions)
    wanted = pd.DataFrame({"file": ["a.pcap", "a.pcap"], "proto": [6, 17], "orig_h": ["10.0.0.1"] * 2,
                           "orig_p": [40000, 40000], "resp_h": ["10.0.0.2"] * 2, "resp_p": [80, 80]})  # fmt: skip
    got = flows.of_bucket(0)(wanted)
    kept = got[["file", "orig_p", "state", "orig_bytes", "first_ts_ns"]].astype({"file": str, "state": str})
    # the UDP key has no flow; port 40001's flow and b.pcap's, sent by colliding hashes, were not asked for
    assert kept.values.tolist() == [["a.pcap", 40000, "closed", 40, 1_000]]
    assert got.dtypes.astype(str).tolist() == ["category", "int16", "category", "int32", "category", "int32", "category",
                                               "int64", "int64", "int64", "int64", "int64"]  # fmt: skip
    b1 = flows.of_bucket(1)(wanted.assign(file="b.pcap", proto=6))
    assert b1[["file", "state", "orig_bytes"]].astype(str).values.tolist() == [["b.pcap", "attempt", "30"]]
