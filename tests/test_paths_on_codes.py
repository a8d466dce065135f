"""The paths layer's shortcuts give what the direct computation gives: flows made from the connections' packets only
equal the whole files' flows (calico-vxlan sample), and the bisection behind "its receiver acknowledged it" finds what a
scan of every ACK and every other copy finds (seeded TCP segments, sequence numbers wrapping at 2^32)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.flows import concat_flows
from pcaptools.flows import flows as flow_table
from pcaptools.k8s.diagnose import _Acks, _Journey, _seglen
from pcaptools.k8s.paths import load_paths, paths_and_nat
from pcaptools.packets import read_packets

ROOT = Path(os.environ.get("PCAPTOOLS_SAMPLE_PCAPS", Path(__file__).parent.parent / "sample_pcaps"))
SAMPLE = ROOT / "calico-vxlan"


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_flows_of_the_connections_packets_only_join_as_the_whole_files_flows():
    ps = load_paths(SAMPLE)
    files = sorted(str(f) for f in SAMPLE.rglob("*.pcap*"))
    whole = concat_flows([flow_table(read_packets(f)) for f in files])
    want, _ = paths_and_nat(ps.correlation, ps.inventory, flows=whole)
    assert ps.paths["flow_state"].notna().sum() >= len(ps.paths) // 2  # the join found most connections' flows
    pd.testing.assert_frame_equal(ps.paths, want, check_exact=True)


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_a_build_on_two_threads_gives_the_one_threads_paths_nat_and_hops(monkeypatch):
    import pcaptools.k8s.paths as paths_module

    one = load_paths(SAMPLE)  # the sample is below PARALLEL_ROWS: one thread
    monkeypatch.setattr(paths_module, "PARALLEL_ROWS", 0)
    two = load_paths(SAMPLE)  # connections labelled on the unordered hops, flows read on the second thread
    assert one.paths["flow_state"].notna().any()
    for a, b in ((one.paths, two.paths), (one.shown_nat, two.shown_nat), (one.nat, two.nat), (one.hops, two.hops)):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_nat_made_on_first_read_is_the_whole_tables_and_the_shown_rows_are_its_representatives():
    ps = load_paths(SAMPLE)
    shown = ps.shown_nat  # made from the representative journeys' rows only
    js = np.concatenate([ps.paths["forward_journey"].to_numpy(np.int64), ps.paths["reply_journey"].to_numpy(np.int64)])
    paths, whole = paths_and_nat(ps.correlation, ps.inventory)
    assert len(shown) and len(whole) > len(shown)  # the sample has NAT steps outside the representative journeys
    pd.testing.assert_frame_equal(ps.nat, whole, check_exact=True)
    rep = whole.loc[whole["journey"].isin(js)].reset_index(drop=True)
    assert set(shown["journey"]) == set(rep["journey"])
    for c in shown.columns:  # categories may be fewer (only those shown): compare values
        assert shown[c].astype(object).tolist() == rep[c].astype(object).tolist(), c
    hops = ps.hops  # made on first read too
    assert hops["direction"].isin(["forward", "reverse"]).any() and len(hops) == len(ps.correlation.hops)


def _acked_by_scan(j: _Journey, js: list[_Journey], other: list[_Journey], lost: set[int]) -> bool:
    """The definition: the first later ACK at or beyond the segment's end, and no other copy of it passing before."""
    n = _seglen(j)
    if j.seq < 0 or j.flags < 0 or j.flags & 0x04 or n == 0:
        return False
    end = (j.seq + n) & 0xFFFFFFFF
    k = next((k for k in other if k.ack >= 0 and k.flags >= 0 and k.flags & 0x10 and k.ts[0] > j.ts[-1]
              and (k.ack - end) & 0xFFFFFFFF < 0x80000000), None)  # fmt: skip
    if k is None:
        return False
    return not any(p.jid != j.jid and p.jid not in lost and p.ts[0] < k.ts[0] and p.seq >= 0 and _seglen(p) > 0
                   and ((p.seq - j.seq) & 0xFFFFFFFF < n or (j.seq - p.seq) & 0xFFFFFFFF < _seglen(p)) for p in js)  # fmt: skip


def _segments(rng: np.random.Generator, n: int, base: int, jid0: int) -> list[_Journey]:
    ts = np.sort(rng.integers(0, 10_000, n))
    out = []
    for i in range(n):
        plen = int(rng.choice([0, 1, 100, 1448]))
        seq = int((base + rng.integers(-3000, 3000)) % (1 << 32)) if rng.random() > 0.05 else -1
        flags = int(rng.choice([0x10, 0x18, 0x02, 0x12, 0x11, 0x04, -1]))
        t = int(ts[i])
        out.append(_Journey(jid0 + i, ["a", "b"], ["n1", "n2"], [t, t + int(rng.integers(0, 50))], "10.0.0.2", 80,
                            "10.0.0.1", flags, 60 + max(plen, 0), i, 60, False, seq,
                            int((base + rng.integers(-3000, 3000)) % (1 << 32)), plen))  # fmt: skip
    return out


@pytest.mark.parametrize("base", [5_000_000, 0xFFFFFFFF - 1000, 500])  # plain, wrapping, near zero
def test_acknowledged_segments_found_by_bisection_are_those_a_scan_finds(base: int):
    rng = np.random.default_rng(base % 1000)
    js, other = _segments(rng, 300, base, 0), _segments(rng, 300, base, 1000)
    lost = {j.jid for j in js if rng.random() < 0.3}
    ax = _Acks(js, other)
    got = [ax.acked(j, lost) for j in js]
    assert got == [_acked_by_scan(j, js, other, lost) for j in js]
    assert 0 < sum(got) < len(js)  # both answers occur


@pytest.mark.parametrize("steps", [0, 1, 8])  # every ACK found one by one, one step then one by one, mostly at once
@pytest.mark.parametrize("base", [5_000_000, 0xFFFFFFFF - 1000, 500])  # plain, wrapping, near zero
def test_acknowledged_segments_answered_all_at_once_are_those_a_scan_finds(base: int, steps: int):
    rng = np.random.default_rng(base % 1000 + 7)
    js, other = _segments(rng, 300, base, 0), _segments(rng, 300, base, 1000)
    lost = {j.jid for j in js if rng.random() < 0.3}
    got = _Acks(js, other).acked_all(js, lost, steps)
    assert got == [_acked_by_scan(j, js, other, lost) for j in js]
    assert 0 < sum(got) < len(js)  # both answers occur


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_routing_evidence_on_codes_counts_what_the_rows_strings_count():
    """point_addresses / routing_flags work on category codes: the same counts and flags as per-row strings give."""
    from pcaptools.k8s.inventory import point_addresses, single_address_points

    ps = load_paths(SAMPLE)
    h = ps.correlation.hops
    pt = h["point"].astype(object).to_numpy()
    rows = pd.DataFrame({"p": np.concatenate([pt, pt]),
                         "a": np.concatenate([h["src"].astype(object).to_numpy(), h["dst"].astype(object).to_numpy()])})  # fmt: skip
    want = rows.dropna().groupby(["p", "a"]).size()
    pairs, per_point = point_addresses(h)
    assert pairs.sort_index().to_dict() == want.to_dict()
    assert per_point.to_dict() == pd.Series(pt).value_counts().to_dict()
    single = single_address_points(pairs, per_point)
    assert single == {p for p in set(pt) if want.loc[p].max() == (pt == p).sum()}
    assert single and len(single) < len(set(pt))  # pod veths are single-address points, uplinks are not
    inv = ps.inventory
    ents = {a: inv.entity(a) for a in set(rows["a"].dropna())}
    s, d = ([ents.get(a, ("", "", "")) for a in h[c].astype(object)] for c in ("src", "dst"))
    cross = np.array([x[0] == "pod" == y[0] and x[2] != y[2] for x, y in zip(s, d, strict=True)])
    tun = h["tunnel"].notna().to_numpy()
    shared = np.array([p not in single for p in pt])
    want_flags = pd.DataFrame({"tun": cross & tun, "bare": cross & ~tun & shared}).groupby(h["journey"].to_numpy()).any()
    got = inv.routing_flags(h, single)
    pd.testing.assert_frame_equal(got, want_flags, check_index_type=False)
    assert got["tun"].sum() > 0 and inv.pod_network(h)["routing"] == "overlay"


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_pathset_pickles_with_its_nat_and_hops_made_on_read():
    import pickle

    ps = load_paths(SAMPLE)
    back = pickle.loads(pickle.dumps(load_paths(SAMPLE)))
    pd.testing.assert_frame_equal(back.nat, ps.nat)
    pd.testing.assert_frame_equal(back.hops, ps.hops)
    assert len(back.nat) > len(ps.shown_nat) > 0  # the whole NAT table, not only the shown rows


@pytest.mark.skipif(not (SAMPLE / "manifest.json").exists(), reason="no calico-vxlan sample")
def test_hops_made_on_read_ignore_the_correlation_table_reordered_in_place_before():
    want = load_paths(SAMPLE).hops
    ps = load_paths(SAMPLE)
    ps.correlation.hops.sort_values("ts_ns", ascending=False, inplace=True, ignore_index=True)
    pd.testing.assert_frame_equal(ps.hops, want)
