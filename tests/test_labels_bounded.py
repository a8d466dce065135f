"""Connection labels of a hops file kept per use of a 5-tuple (pcaptools/k8s/labels_bounded.py) are the in-memory
labels (``paths._connections``), connection numbers included: NAT (the lab sample's services), a reused client port and
an idle UDP tuple (crafted with scapy), the generated set; row groups that cut journeys, many partitions, tiny buffers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scapy.all import IP, UDP, Ether, Raw, wrpcap

import pcaptools
from pcaptools.k8s import labels_bounded
from pcaptools.k8s.labels_bounded import LABEL_COLUMNS, LabelBuilder, whole_journeys
from pcaptools.k8s.paths import _connections
from tests.conftest import SAMPLES
from tests.test_why_reuse import SPORT, C, S, _conn


def _hops_file(hops, path, group_rows: int) -> pq.ParquetFile:
    pq.write_table(pa.Table.from_pandas(hops, preserve_index=False), path, row_group_size=group_rows)
    return pq.ParquetFile(path)


def _bounded_labels(pf, tmp, memory: int) -> np.ndarray:
    """Each row's connection by the bounded labels (-1: its journey has no 5-tuple)."""
    lb = LabelBuilder(tmp, rows=pf.metadata.num_rows, memory=memory)
    for t in whole_journeys(pf, columns=LABEL_COLUMNS):
        lb.add(t.to_pandas())
    labels = lb.finish()
    assert not list(tmp.glob("*.bin"))  # the elements and links files are gone once labelled
    return np.concatenate([labels.rows(t.to_pandas()) for t in whole_journeys(pf, columns=LABEL_COLUMNS)])


def _in_memory_labels(hops) -> np.ndarray:
    keep = (hops["proto"].to_numpy() >= 0) & hops["src"].notna().to_numpy() & hops["dst"].notna().to_numpy()
    uj, conn = _connections(hops.loc[keep].reset_index(drop=True))
    j = hops["journey"].to_numpy(np.int64)
    at = np.clip(np.searchsorted(uj, j), 0, len(uj) - 1)
    return np.where(uj[at] == j, conn[at], -1)


def _tuples_per_journey(hops) -> np.ndarray:
    lo = np.minimum(hops["src"].astype(str) + ":" + hops["sport"].astype(str), hops["dst"].astype(str) + ":" + hops["dport"].astype(str))
    hi = np.maximum(hops["src"].astype(str) + ":" + hops["sport"].astype(str), hops["dst"].astype(str) + ":" + hops["dport"].astype(str))
    return hops.assign(t=lo + "-" + hi).groupby("journey")["t"].nunique().to_numpy()


@pytest.fixture
def tiny_buffers(monkeypatch):
    """Elements and links written a few at a time: many appends, and journeys cut by the links file's chunks."""
    monkeypatch.setattr(labels_bounded, "BUFFER_ELEMENTS", 5)


@pytest.mark.parametrize("group_rows", [3, 64, 100_000])
def test_lab_sample_through_nat_labelled_per_tuple_use_gives_the_in_memory_connections(tmp_path, tiny_buffers, group_rows):
    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(SAMPLES / "calico-vxlan")).hops
    assert (_tuples_per_journey(hops) > 1).sum() > 100  # journeys through DNAT/SNAT link two tuples
    got = _bounded_labels(_hops_file(hops, tmp_path / "hops.parquet", group_rows), tmp_path, memory=1 << 12)
    want = _in_memory_labels(hops)
    assert len(np.unique(want[want >= 0])) > 10
    assert np.array_equal(got, want)


def test_reused_port_and_idle_udp_tuple_labelled_per_tuple_use_give_the_in_memory_connections(tmp_path, tiny_buffers):
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    t0 = 1_700_000_000.0
    pk = _conn(t0, 1000, True, b"GET /a HTTP/1.0\r\n\r\n") + _conn(t0 + 2.5, 500_000, False, b"GET /bb HTTP/1.0\r\n\r\n")
    for i, dt in enumerate((0.2, 0.3, 80.0, 80.1)):  # one UDP tuple, idle 79.7 s (more than IDLE_NS) in between
        p = e / IP(src=C, dst=S, id=100 + i) / UDP(sport=5353, dport=53) / Raw(bytes([i]) * 12)
        p.time = t0 + dt
        pk.append(p)
    f = tmp_path / "eth0.pcap"
    wrpcap(str(f), sorted(pk, key=lambda p: p.time))
    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(points=[f"node-1:eth0={f}"])).hops
    got = _bounded_labels(_hops_file(hops, tmp_path / "hops.parquet", 2), tmp_path, memory=1 << 10)
    assert np.array_equal(got, _in_memory_labels(hops))
    tcp = hops["sport"].isin([SPORT]) | hops["dport"].isin([SPORT])
    udp = hops["sport"].isin([5353]) | hops["dport"].isin([5353])
    assert len(np.unique(got[tcp.to_numpy()])) == 2  # the reused client port: two connections, the retried SYN in the first
    assert len(np.unique(got[udp.to_numpy()])) == 2  # the idle UDP tuple: two connections
    assert len(np.unique(got)) == 4


def test_generated_set_labelled_in_many_partitions_gives_the_in_memory_connections(generated, tmp_path, tiny_buffers):
    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(generated)).hops
    pf = _hops_file(hops, tmp_path / "hops.parquet", 1000)
    assert LabelBuilder(tmp_path, rows=pf.metadata.num_rows, memory=1 << 20).parts >= 8
    got = _bounded_labels(pf, tmp_path, memory=1 << 20)
    want = _in_memory_labels(hops)
    assert len(np.unique(want)) > 150
    assert np.array_equal(got, want)


def test_journeys_cut_by_row_groups_are_read_whole_and_in_order(tmp_path):
    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(SAMPLES / "vpc")).hops
    pf = _hops_file(hops, tmp_path / "hops.parquet", 3)
    parts = [t.column("journey").to_numpy() for t in whole_journeys(pf, columns=["journey"])]
    assert 1 < len(parts) < pf.num_row_groups  # row groups of 3 rows cut journeys of 4 sightings
    assert np.array_equal(np.concatenate(parts), hops["journey"].to_numpy())
    seen = [set(p.tolist()) for p in parts]
    assert all(not (a & b) for a, b in zip(seen[:-1], seen[1:], strict=True))


def test_hops_file_out_of_journey_order_is_refused(tmp_path):
    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(SAMPLES / "vpc")).hops
    back = hops.iloc[::-1].reset_index(drop=True)
    pf = _hops_file(back, tmp_path / "hops.parquet", 50)
    with pytest.raises(RuntimeError, match="not in journey order"):
        list(whole_journeys(pf, columns=LABEL_COLUMNS))


def test_per_journey_labels_of_a_hops_file_are_the_in_memory_ones(generated, tmp_path):
    from pcaptools.k8s.paths_stream import _label

    hops = pcaptools.correlate_captures(pcaptools.CaptureSet.load(generated)).hops
    uj, conn = _label(_hops_file(hops, tmp_path / "hops.parquet", 1000), memory=1 << 20)
    keep = (hops["proto"].to_numpy() >= 0) & hops["src"].notna().to_numpy() & hops["dst"].notna().to_numpy()
    want_j, want_c = _connections(hops.loc[keep].reset_index(drop=True))
    assert len(uj) > 1000
    assert np.array_equal(uj, want_j) and np.array_equal(conn, want_c)
