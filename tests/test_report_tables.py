"""The tables behind the report and the comparison are declared in schema.py and built to it, rows or not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pcaptools import schema
from pcaptools.compare import compare
from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.latency import hop_latency, hop_samples, loss_summary, losses
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.k8s.sequence import sequences

ROOT = Path(__file__).parent.parent
CALICO = ROOT / "sample_pcaps" / "calico-vxlan"
VPC = ROOT / "sample_pcaps" / "vpc"


@pytest.fixture(scope="module")
def cmp():
    return compare([VPC, CALICO])


def test_comparison_tables_follow_their_declared_schemas(cmp):
    pairs = {"summary": schema.COMPARISON_SUMMARY_COLUMNS, "mode": schema.COMPARISON_MODE_COLUMNS,
             "wire_bytes": schema.COMPARISON_WIRE_BYTES_COLUMNS, "points": schema.COMPARISON_POINTS_COLUMNS,
             "latency": schema.COMPARISON_LATENCY_COLUMNS, "hop_latency": schema.COMPARISON_HOP_LATENCY_COLUMNS,
             "cross_node": schema.COMPARISON_CROSS_NODE_COLUMNS, "hop_samples": schema.COMPARISON_HOP_SAMPLE_COLUMNS}  # fmt: skip
    for name, cols in pairs.items():
        df = getattr(cmp, name)
        assert len(df), name
        schema.validate(df, cols, table=name)
        extra = set(df.columns) - {c.name for c in cols}
        assert extra == (set(cmp.labels) if name == "summary" else set()), name  # nothing undeclared
        assert all(c.doc for c in cols)


def test_per_hop_samples_agree_with_the_hop_latency_table(cmp):
    hl = cmp.hop_latency.set_index(["label", "hop"])
    s = cmp.hop_samples
    counts = s.loc[s["hop"] != "pod → pod (total)"].groupby(["label", "hop"]).size()
    assert (counts.reindex(hl.index) == hl["count"]).all()
    med = s.groupby(["label", "hop"])["latency_ns"].median()
    assert (med.reindex(hl.index) == hl["median_ns"]).all()
    # the total is one sample per cross-node pod-to-pod packet: as many as the first hop has
    first = cmp.hop_latency.drop_duplicates("label").set_index("label")["count"]
    total = s.loc[s["hop"] == "pod → pod (total)"].groupby("label").size()
    assert (total.reindex(first.index) == first).all()


def test_correlation_tables_without_rows_keep_their_schema():
    hops = correlate(CaptureSet.load(CALICO)).hops
    none = hops.iloc[:0]
    schema.validate(hop_latency(none), schema.HOP_LATENCY_COLUMNS, table="hop_latency")
    schema.validate(hop_samples(none), schema.HOP_SAMPLE_COLUMNS, table="hop_samples")
    schema.validate(losses(none), schema.LOSS_COLUMNS, table="losses")
    schema.validate(loss_summary(losses(none), none), schema.LOSS_SUMMARY_COLUMNS, table="loss_summary")
    assert len(hop_latency(none)) == len(losses(none)) == 0


def test_sequences_follow_each_connection_from_its_client(cmp):
    corr, paths, nat = cmp.correlations["calico-vxlan"], cmp.paths["calico-vxlan"], cmp.nat["calico-vxlan"]
    seq = sequences(corr, paths, nat, CALICO / "inventory.json")
    schema.validate(seq, schema.SEQUENCE_COLUMNS, table="sequences")
    assert set(seq["connection"]) == set(paths["connection"])
    first = seq.loc[(seq["packet"] == 0) & (seq["hop"] == 0)].set_index("connection")
    p = paths.set_index("connection")
    # every connection's first packet is seen first at its first forward point, travelling client -> server
    assert (~first["reply"]).all()
    assert (first["point"] == p["forward_points"].str.split(" → ").str[0].reindex(first.index)).all()
    # the packets of a connection in the sequences are the journeys the paths table counts
    assert (seq.groupby("connection")["journey"].nunique() == p["journeys"]).all()
    # a NAT step is annotated on the sighting just after it: as many annotated sightings as NAT rows' sightings
    assert (seq["nat"] != "").sum() == nat.drop_duplicates(["journey", "to_point", "ts_corrected_ns"]).shape[0]


def test_sequences_without_an_inventory_keep_the_first_packets_of_each_connection():
    corr = correlate(CaptureSet.load(CALICO))
    paths, nat = paths_and_nat(corr, None)
    seq = sequences(corr, paths, nat, None, max_packets=2)
    assert len(seq) and seq["packet"].max() == 1
    first = seq.loc[(seq["packet"] == 0) & (seq["hop"] == 0)]
    assert len(first) == len(paths) and not first["reply"].any()


@pytest.mark.parametrize("max_packets", [1, 3])
def test_sequences_of_the_first_packets_are_the_whole_sequences_cut_there(cmp, max_packets):
    corr, paths, nat = cmp.correlations["calico-vxlan"], cmp.paths["calico-vxlan"], cmp.nat["calico-vxlan"]
    whole = sequences(corr, paths, nat, CALICO / "inventory.json")
    first = sequences(corr, paths, nat, CALICO / "inventory.json", max_packets=max_packets)
    want = whole.loc[whole["packet"] < max_packets].reset_index(drop=True)
    assert len(first) < len(whole) and (first["nat"] != "").any() and (first["encap"] != "").any()
    pd.testing.assert_frame_equal(first, want)


def test_sequences_mark_where_a_packet_went_missing(tmp_path):
    import shutil

    from test_report import _drop_records

    work = tmp_path / "set"
    shutil.copytree(CALICO, work)
    _drop_records(work / "node-2" / "eth0.pcap", lambda i: not 200 <= i < 240)
    corr = correlate(CaptureSet.load(work))
    assert len(corr.losses)
    paths, nat = paths_and_nat(corr, work / "inventory.json")
    seq = sequences(corr, paths, nat, work / "inventory.json")
    marked = seq.loc[seq["missing_at"] != "", ["journey", "point", "missing_at"]]
    want = corr.losses.loc[corr.losses["journey"].isin(seq["journey"]), ["journey", "point", "missing_at"]].astype({"point": str, "missing_at": str})
    assert sorted(map(tuple, marked.to_numpy().tolist())) == sorted(map(tuple, want.to_numpy().tolist()))
    assert set(marked["missing_at"]) == {"node-2:eth0"}


def test_hops_are_named_by_their_points_roles_wire_across_nodes_and_a_question_mark_without_a_role():
    from pcaptools.report import by_role

    points = pd.DataFrame({"point": ["n1:cali1", "n1:eth0", "n2:eth0", "n2:cali2"], "node": ["n1", "n1", "n2", "n2"],
                           "role": ["pod-veth", "uplink", "uplink", None]})  # fmt: skip
    samples = pd.DataFrame({"from_point": ["n1:cali1", "n1:eth0", "n2:eth0", "n1:eth0", "gone:x"],
                            "to_point": ["n1:eth0", "n2:eth0", "n2:cali2", "n2:eth0", "n1:eth0"]})  # fmt: skip
    hop = by_role(samples, points)["hop"]
    assert hop.tolist() == ["pod-veth → uplink", "uplink → uplink (wire)", "uplink → ?", "uplink → uplink (wire)", "? → uplink (wire)"]
    assert list(hop.cat.categories) == sorted(set(hop.tolist()))
