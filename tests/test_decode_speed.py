"""The decoder's speed features change no value: parallel row ranges, the in-walk payload hash, table stacking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.api.types import union_categoricals

from pcaptools.correlate.capture_set import payload_hashes
from pcaptools.decode.api import decode_options
from pcaptools.decode.table import concat
from pcaptools.decode.walk import Walk
from pcaptools.io import read_records
from pcaptools.packets import read_packets

ROOT = Path(__file__).resolve().parent.parent
DECODE = ROOT / "tests" / "data" / "decode"
CAPTURES = [
    ROOT / "sample_pcaps" / "calico-vxlan" / "node-1" / "eth0.pcap",  # VXLAN between nodes
    ROOT / "sample_pcaps" / "calico-vxlan" / "node-1" / "vxlan.calico.pcap",
    DECODE / "tunnels.pcap",
    DECODE / "tunnels_snap60.pcap",  # payloads cut by the snaplen
    DECODE / "icmp_errors.pcap",
    DECODE / "sll_vxlan.pcap",
    ROOT / "tests" / "data" / "own" / "any_nano.pcapng",
]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_payload_hash_from_the_decode_walk_equals_hashing_the_file_again(path: Path) -> None:
    walked = read_packets(path, payload_hash=True)
    plain = read_packets(path)
    again = payload_hashes(plain)
    assert walked["payload_hash"].dtype == np.uint64
    np.testing.assert_array_equal(walked["payload_hash"].to_numpy(), again)
    # packets with payload get distinct hashes from those without
    has = (plain["payload_len"] > 0).to_numpy()
    if has.any() and (~has).any():
        assert not np.isin(again[has], again[~has]).all()
    pd.testing.assert_frame_equal(walked.drop(columns="payload_hash"), plain)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_walk_in_parallel_row_ranges_fills_the_same_columns_as_one_pass(path: Path) -> None:
    batch = read_records(path)
    tables, depth = decode_options()
    one = Walk(batch, tables, depth, payload_hash=True)
    one.run(threads=1)
    three = Walk(batch, tables, depth, payload_hash=True)
    three.run(threads=3)
    assert len(batch) >= 2  # at least two ranges really ran
    for name, col in one.c.items():
        np.testing.assert_array_equal(three.c[name], col, err_msg=name)
    for name in ("depth", "trunc", "err", "phash"):
        np.testing.assert_array_equal(getattr(three, name), getattr(one, name), err_msg=name)
    np.testing.assert_array_equal(three.outer_len(), one.outer_len())


def test_stacked_tables_keep_categories_in_first_seen_order_like_union_categoricals() -> None:
    a = read_packets(CAPTURES[0])
    b = read_packets(CAPTURES[2])
    out = concat([a, b])
    assert len(out) == len(a) + len(b)
    for name in a.columns:
        if isinstance(a[name].dtype, pd.CategoricalDtype):
            ref = union_categoricals([a[name], b[name]], ignore_order=True)
            assert list(out[name].cat.categories) == list(ref.categories), name
            assert out[name].astype(object).tolist() == list(ref.astype(object)), name
        else:
            np.testing.assert_array_equal(out[name].to_numpy(), np.concatenate([a[name].to_numpy(), b[name].to_numpy()]))


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_threaded_walk_and_category_building_give_the_one_thread_table(path: Path, monkeypatch) -> None:
    from pcaptools.decode import table, walk

    one = read_packets(path, payload_hash=True)
    monkeypatch.setattr(walk, "PARALLEL_MIN", 1)  # every batch, however small, on several threads
    monkeypatch.setattr(table, "PARALLEL_MIN", 1)
    monkeypatch.setattr(walk, "usable_cores", lambda: 3)
    monkeypatch.setattr(table, "usable_cores", lambda: 3)
    pd.testing.assert_frame_equal(read_packets(path, payload_hash=True), one)


@pytest.mark.parametrize("k", [1, 127, 128, 40_000])
def test_two_pass_factorize_gives_pandas_codes_in_the_narrowest_dtype(k: int) -> None:
    from pcaptools.decode.table import _factorize_masked

    rng = np.random.default_rng(k)
    v = rng.integers(0, 2**64 - 1, k, dtype=np.uint64, endpoint=True)[rng.integers(0, k, 3 * k + 50)]
    v[::7] = v[0]  # runs of one value (the kernels' last-value shortcut)
    ok = rng.random(len(v)) < 0.9
    codes, uniq, any_hi = _factorize_masked(v, ok)
    ref_codes, ref_uniq = pd.factorize(np.where(ok, v, 0)[ok])
    assert codes.dtype == pd.Categorical.from_codes([], categories=range(len(uniq))).codes.dtype
    np.testing.assert_array_equal(uniq, ref_uniq)
    np.testing.assert_array_equal(codes[ok], ref_codes)
    assert (codes[~ok] == -1).all()
    assert any_hi == bool((v[ok] != 0).any())


def test_hundreds_of_addresses_get_int16_codes_and_the_same_labels(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from gen import generate  # the benchmark's generator: 400 flows, about 800 inner addresses

    path = tmp_path / "many.pcap"
    generate(5000, flows=400, seed=3).tofile(path)
    pk = read_packets(path)
    plain = read_packets(path, payload_hash=True).drop(columns="payload_hash")
    pd.testing.assert_frame_equal(pk, plain)
    for name in ("src", "dst"):
        col = pk[name]
        assert len(col.cat.categories) >= 128, name
        assert col.cat.codes.dtype == np.int16, name
        labels = col.astype(object)
        seen = pd.unique(labels[labels.notna()])  # categories in first-appearance order, as pd.factorize
        assert list(col.cat.categories) == list(seen), name


@pytest.mark.parametrize(
    "path",
    [CAPTURES[0], ROOT / "tests" / "data" / "own" / "two_sections.pcapng", ROOT / "tests" / "data" / "own" / "eth.pcap.gz",
     ROOT / "tests" / "data" / "own" / "truncated_last.pcap"],
    ids=lambda p: p.name,
)  # fmt: skip
def test_reused_windows_give_the_batches_and_tables_of_fresh_windows(path: Path) -> None:
    from pcaptools.decode.api import decode_with
    from pcaptools.io import iter_records

    tables, depth = decode_options()
    fresh, reused = [], []
    for out, reuse in ((fresh, False), (reused, True)):
        for b in iter_records(path, batch_bytes=2048, reuse_windows=reuse):  # many windows, two buffers
            out.append(([b.packet(i) for i in range(len(b))], b.skipped, b.notes, decode_with(b, tables, depth, payload_hash=True)))
    assert len(fresh) > 2 and len(reused) == len(fresh)
    for (pa, sa, na, ta), (pb, sb, nb, tb) in zip(fresh, reused, strict=True):
        assert pa == pb and sa == sb and na == nb
        pd.testing.assert_frame_equal(tb, ta)


@pytest.mark.parametrize("threads", [1, 3])
def test_several_files_walked_into_one_table_equal_their_stacked_tables(threads: int, monkeypatch) -> None:
    from pcaptools.decode import table, walk

    files = [*CAPTURES, CAPTURES[0]]  # link types Ethernet, SLL, SLL2 (pcapng), IPv6, GRE; one file named twice
    each = [read_packets(p, payload_hash=True) for p in files]
    stacked = concat(each)
    monkeypatch.setattr(walk, "PARALLEL_MIN", 1)  # row ranges that cross from one file into the next
    monkeypatch.setattr(table, "PARALLEL_MIN", 1)
    monkeypatch.setattr(walk, "usable_cores", lambda: threads)
    monkeypatch.setattr(table, "usable_cores", lambda: threads)
    whole = read_packets(files, payload_hash=True)
    pd.testing.assert_frame_equal(whole, stacked)
    for name in whole.columns:
        if isinstance(whole[name].dtype, pd.CategoricalDtype):  # same categories, order and code width
            assert list(whole[name].cat.categories) == list(stacked[name].cat.categories), name
            assert whole[name].cat.codes.dtype == stacked[name].cat.codes.dtype, name
    assert list(whole["file"].cat.categories) == [str(p) for p in CAPTURES]
    assert whole.attrs["skipped"] == {str(p): e.attrs["skipped"][str(p)] for p, e in zip(files, each, strict=True)}
    assert whole.attrs["notes"] == [n for e in each for n in e.attrs["notes"]]
