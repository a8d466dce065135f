"""Cross-capture correlation on synthetic multi-point splits of real captures (NAT, VXLAN, clock shift, drops)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from correlate_support import DATA, POINTS, dpkt_packets, pair_scores, source_packets, split_path

from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet, parse_point_spec
from pcaptools.correlate.fingerprint import fingerprint, link_scoped, prefix_hash
from pcaptools.errors import CorrelationError, InventoryError
from pcaptools.schema import HOPS_COLUMNS, validate

SHIFT_NS = 3_700_000


def _decoder():
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]

        return read_packets
    except ImportError:
        return dpkt_packets


@pytest.fixture(scope="module")
def source() -> pd.DataFrame:
    return source_packets()


@pytest.fixture(scope="module")
def split(source):
    frames, truth = split_path(source, offset_ns=SHIFT_NS)
    cs = CaptureSet.from_frames(frames)
    return cs, truth, correlate(cs), frames


def _unique_truth_rows(hops: pd.DataFrame, truth: pd.DataFrame, source: pd.DataFrame) -> np.ndarray:
    """Rows of hops whose true journey has a fingerprint no other true journey shares (no retransmitted copy)."""
    fp = fingerprint(source, np.zeros(len(source), np.uint64))  # fields only: stricter than with the payload hash
    uniq = pd.Series(fp).value_counts().reindex(fp).to_numpy() == 1
    uniq[truth["copy_of"][truth["copy_of"] >= 0].to_numpy()] = False
    tj = hops["record"].to_numpy()
    ok = tj < len(source)
    ok[ok] = uniq[tj[ok]]
    return np.flatnonzero(ok)


def test_fingerprint_ignores_what_nat_and_tunnels_rewrite(source):
    ph = np.arange(len(source), dtype=np.uint64)
    a = fingerprint(source, ph)
    b_df = source.copy()
    b_df["src"] = pd.Categorical(["10.96.0.1"] * len(b_df))
    b_df["dport"] = (b_df["dport"] + 1).astype(np.int32)
    b_df["ttl"] = (b_df["ttl"] - 1).astype(np.int16)
    b_df["tunnel"] = pd.Categorical(["vxlan"] * len(b_df))
    b = fingerprint(b_df, ph)
    assert (a == b).all()
    c_df = source.copy()
    c_df["tcp_seq"] = np.where(c_df["tcp_seq"] >= 0, c_df["tcp_seq"] + 1, -1)
    tcp = source["proto"].to_numpy() == 6
    assert tcp.any() and (fingerprint(c_df, ph)[tcp] != a[tcp]).all()


def test_payload_prefix_hash_depends_on_bytes_and_length():
    data = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz" * 2, np.uint8)
    h = prefix_hash(data, np.array([0, 26, 1, 0, 0]), np.array([16, 16, 16, 3, 0]))
    assert h[0] == h[1]  # same bytes at another place
    assert len(set(h[[0, 2, 3, 4]].tolist())) == 4


def test_split_capture_journeys_match_with_high_precision_and_recall(split, source):
    cs, truth, corr, _ = split
    hops = corr.hops
    rows = _unique_truth_rows(hops, truth, source)
    assert rows.size > 500
    p, r = pair_scores(hops["journey"].to_numpy()[rows], hops["record"].to_numpy()[rows])
    assert p >= 0.99 and r >= 0.99


def test_clock_offset_of_shifted_node_is_found_within_100us(split):
    corr = split[2]
    off = corr.offsets.set_index("node")
    assert off.loc["node-1", "offset_ns"] == 0
    assert abs(off.loc["node-2", "offset_ns"] - SHIFT_NS) < 100_000
    assert off.loc["node-2", "uncertainty_ns"] > 0


def test_reference_node_can_be_chosen(split):
    cs = split[0]
    off = correlate(cs, reference="node-2").offsets.set_index("node")
    assert off.loc["node-2", "offset_ns"] == 0
    assert abs(off.loc["node-1", "offset_ns"] + SHIFT_NS) < 100_000


def test_negative_shift_is_found_too(source):
    frames, _ = split_path(source, offset_ns=-52_000_000, seed=3)
    off = correlate(CaptureSet.from_frames(frames)).offsets.set_index("node")
    assert abs(off.loc["node-2", "offset_ns"] + 52_000_000) < 100_000


def test_hops_table_follows_schema_and_shows_nat_and_tunnel_between_rows(split):
    hops = split[2].hops
    validate(hops, HOPS_COLUMNS, table="hops")
    full = hops[hops["hops"] == 4]
    first, second = full[full["hop"] == 0], full[full["hop"] == 1]
    fwd = first["point"].astype(str).to_numpy() == POINTS[0]
    assert fwd.any() and (~fwd).any()
    # forward: client-side veth sees the service VIP, the next hop the DNATed backend
    assert set(first["dst"][fwd].astype(str)) <= {"10.96.0.10", "fd00:96::a"}
    assert not set(second["dst"].to_numpy()[fwd].astype(str)) & {"10.96.0.10", "fd00:96::a"}
    # uplink sightings carry the tunnel; veth ones do not
    eth = hops["interface"].astype(str) == "eth0"
    assert (hops.loc[eth, "tunnel"].astype(str) == "vxlan").all()
    assert hops.loc[~eth, "tunnel"].isna().all()
    # path order in corrected time follows the injected path
    seq = full.groupby("journey")["point"].agg(lambda s: tuple(s.astype(str)))
    assert set(seq) <= {POINTS, POINTS[::-1]}


def test_hop_latency_reflects_injected_delays(split):
    lat = split[2].hop_latency.set_index(["from_point", "to_point"])
    v = lat.loc[("node-1:veth1", "node-1:eth0")]
    assert 20_000 <= v["median_ns"] <= 30_000 and v["count"] > 300
    u = lat.loc[("node-1:eth0", "node-2:eth0")]
    assert u["min_ns"] > 0  # causality holds after clock correction
    assert 90_000 <= u["median_ns"] <= 160_000


def test_drops_are_counted_at_the_point_where_the_packet_went_missing(split):
    cs, truth, corr, frames = split
    seen = {}
    for entry, df in frames:
        seen[f"{entry['node']}:{entry['interface']}"] = set(df["record"].tolist())
    losses = corr.losses
    assert len(losses) > 0
    really_missing = [r.record not in seen[str(r.missing_at)] for r in
                      losses.merge(corr.hops[["journey", "record"]].drop_duplicates("journey"), on="journey").itertuples()]  # fmt: skip
    assert np.mean(really_missing) >= 0.95
    summary = corr.loss_summary()
    assert summary["lost"].sum() == len(losses)


def test_retransmissions_become_separate_journeys(split, source):
    hops = split[2].hops
    n_src = len(source)
    copies = hops[hops["record"] >= n_src]
    assert len(copies) > 0
    # a journey never mixes an original sighting with a retransmitted copy (unless a drop forced it)
    mixed = hops.groupby("journey")["record"].agg(lambda r: (r >= n_src).any() and (r < n_src).any())
    assert mixed.mean() < 0.01
    assert split[2].ambiguous >= copies["journey"].nunique()


def test_matched_and_unmatched_counts_cover_every_sighting(split):
    cs, _, corr, _ = split
    d = corr.to_dict()
    total = sum(d["matched"].values()) + sum(d["unmatched"].values())
    assert total == ((cs.packets["proto"] >= 0) & ~link_scoped(cs.packets)).sum()  # ARP, ND and MLD stay on their link
    left = sum(sum(r.values()) for r in d["not_correlated"].values())
    assert sum(d["rows"].values()) == total + left == len(cs.packets)  # and they are counted, by reason
    assert set(d["clock_offsets"]) == {"node-1", "node-2"}
    assert {"journeys", "hop_latency", "matched", "unmatched"} <= set(d)


def test_editcap_shifted_copy_of_a_real_capture_gives_the_shift(tmp_path):
    src = str(DATA / "tcpdump/tests/mptcp-v0.pcap")
    shifted = tmp_path / "shifted.pcap"
    subprocess.run(["editcap", "-t", "0.0037", src, str(shifted)], check=True, capture_output=True)
    cs = CaptureSet.load(points=[f"node-a:eth0={src}", f"node-b:eth0={shifted}"], decoder=_decoder())
    corr = correlate(cs)
    off = corr.offsets.set_index("node")
    assert abs(off.loc["node-b", "offset_ns"] - 3_700_000) < 100_000
    assert corr.unmatched == {"node-a:eth0": 0, "node-b:eth0": 0}


def test_any_capture_is_split_by_ifindex_with_manifest_names(tmp_path):
    import json
    import shutil

    shutil.copy(DATA / "zeek/Traces/linux_dlt_sll2.pcap", tmp_path / "any.pcap")
    df = dpkt_packets(str(tmp_path / "any.pcap"))
    idx = sorted(set(df["ifindex"].tolist()))
    man = {"cni": "test", "captures": [{"file": "any.pcap", "node": "n1", "role": "any",
           "interfaces": [{"ifindex": idx[0], "interface": "eth0", "role": "node-uplink"}]}]}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    cs = CaptureSet.load(tmp_path, decoder=_decoder())
    names = [p.name for p in cs.points]
    assert names[0] == "n1:eth0" and cs.points[0].role == "node-uplink"
    assert all(n == f"n1:if{i}" for n, i in zip(names[1:], idx[1:], strict=True))
    assert "direction" in cs.packets and cs.packets["direction"].notna().all()


def test_point_specs_and_bad_sources_raise_documented_errors(tmp_path):
    assert parse_point_spec("node-1:eth0=a.pcap") == {"file": "a.pcap", "node": "node-1", "interface": "eth0", "role": "any"}
    assert parse_point_spec("dir/b.pcap.gz")["node"] == "b"
    with pytest.raises(CorrelationError):
        parse_point_spec(":eth0=")
    with pytest.raises(InventoryError):
        CaptureSet.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InventoryError):
        CaptureSet.load(tmp_path)
    (tmp_path / "manifest.json").write_text('{"captures": [{"file": "missing.pcap", "node": "x"}]}')
    with pytest.raises(CorrelationError):
        CaptureSet.load(tmp_path, decoder=_decoder())
    with pytest.raises(CorrelationError):
        CaptureSet.load()


def test_clock_skew_is_estimated_and_corrected_when_it_matters(source):
    frames, _ = split_path(source, offset_ns=SHIFT_NS, skew_ppm=50.0, seed=11)
    corr = correlate(CaptureSet.from_frames(frames))
    n2 = corr.offsets.set_index("node").loc["node-2"]
    assert abs(n2["skew_ppm"] - 50.0) < 5.0
    assert bool(n2["skew_matters"])  # 50 ppm over the ~2 min capture is far more than the offset bound
    lat = corr.hop_latency.set_index(["from_point", "to_point"])
    for pair in [("node-1:eth0", "node-2:eth0"), ("node-2:eth0", "node-1:eth0")]:
        # injected: 100-150 us; after skew correction every one stays causal and near it
        assert lat.loc[pair, "min_ns"] > 0
        assert 0 < lat.loc[pair, "median_ns"] < 250_000


def test_no_skew_is_reported_as_not_mattering(split):
    n2 = split[2].offsets.set_index("node").loc["node-2"]
    assert abs(n2["skew_ppm"]) < 1.0 and not bool(n2["skew_matters"])


def test_any_capture_beside_per_interface_captures_gets_distinct_point_names():
    """A node captured with -i any and per interface: the any capture's points are NODE:IFACE@any."""
    from pcaptools import read_packets

    own = Path(__file__).parent / "data" / "own"
    anyp = read_packets(str(own / "any_nano.pcap"))
    ifx = sorted(int(i) for i in anyp["ifindex"].unique())
    entry_any = {"file": str(own / "any_nano.pcap"), "node": "n1", "role": "any",
                 "interfaces": [{"ifindex": k, "interface": f"veth{k}"} for k in ifx]}  # fmt: skip
    entry_one = {"file": str(own / "any_nano.pcap"), "node": "n1", "interface": f"veth{ifx[0]}", "role": "node-uplink"}
    one = anyp[anyp["ifindex"] == ifx[0]].assign(ifindex=-1)
    cs = CaptureSet.from_frames([(entry_one, one), (entry_any, anyp)])
    names = [p.name for p in cs.points]
    assert names[0] == f"n1:veth{ifx[0]}"
    assert f"n1:veth{ifx[0]}@any" in names
    assert len(names) == len(set(names)) == 1 + len(ifx)
