"""``paths`` within a memory budget (pcaptools.k8s.paths_stream): correlation in windows, connections labelled over the
hops file, paths built per bucket of connections; the same table, NAT steps and terminal text as the in-memory run."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.k8s.paths import load_paths
from pcaptools.k8s.paths_stream import load_paths_bounded

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
OWN = ROOT / "tests" / "data" / "own"


def _text(ps) -> str:
    """What ``pcaptools paths`` and ``paths --all`` print for a PathSet (routes included), 120 columns wide."""
    from rich.console import Console

    from pcaptools.render.terminal import print_paths

    buf = io.StringIO()
    for every in (False, True):
        print_paths(ps, Console(file=buf, width=120, markup=False, highlight=False, emoji=False, soft_wrap=False),
                    all_connections=every)  # fmt: skip
    return buf.getvalue()


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype({c: str for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def _assert_same(whole, bounded) -> None:
    pd.testing.assert_frame_equal(whole.paths, bounded.paths)  # every column, dtype and category
    pd.testing.assert_frame_equal(_canonical(whole.nat), _canonical(bounded.nat))
    assert _text(whole) == _text(bounded)


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_lab_sample_in_windows_and_buckets_gives_the_in_memory_paths(sample):
    whole = load_paths(SAMPLES / sample)
    bounded = load_paths_bounded(SAMPLES / sample, window_rows=300, bucket_rows=50)
    assert bounded.streamed["windows"] >= 20 and bounded.streamed["carried_journeys"] >= 500
    assert bounded.streamed["buckets"] >= 10  # 16 connections, most in a bucket of their own
    assert len(bounded.correlation.hops) < len(whole.correlation.hops)  # only the routes' journeys are kept
    _assert_same(whole, bounded)


def _assert_same_inference(whole, bounded) -> None:
    from pcaptools.k8s.discover import summary_lines

    pd.testing.assert_frame_equal(whole.captures.inference, bounded.captures.inference)
    assert whole.captures.inference.attrs == bounded.captures.inference.attrs
    assert summary_lines(whole.captures) == summary_lines(bounded.captures) != []
    assert len(bounded.captures.packets) == 0  # the points came without a packet table


def test_directory_without_manifest_in_windows_and_buckets_gives_the_in_memory_paths(plain_dir):
    whole = load_paths(plain_dir)
    bounded = load_paths_bounded(plain_dir, window_rows=300, bucket_rows=50)
    assert bounded.streamed["windows"] >= 20 and bounded.streamed["buckets"] >= 10
    assert len(whole.paths) >= 16 and (whole.paths["orig_bytes"] >= 0).any()  # client flows joined
    _assert_same(whole, bounded)
    _assert_same_inference(whole, bounded)


def test_any_capture_named_by_its_links_in_windows_gives_the_in_memory_paths(tmp_path):
    (tmp_path / "host-a.links.json").write_text(json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]))
    shutil.copy(OWN / "any_nano.pcap", tmp_path / "host-a.pcap")
    whole = load_paths(tmp_path)
    bounded = load_paths_bounded(tmp_path, window_rows=5, bucket_rows=5)
    assert bounded.streamed["windows"] >= 2 and bounded.streamed["buckets"] >= 2
    assert bounded.captures.inference["interface_from"].tolist() == ["links: host-a.links.json ifindex 2"]
    assert len(whole.paths) >= 4
    _assert_same(whole, bounded)
    _assert_same_inference(whole, bounded)


def test_dataset_in_windows_and_buckets_gives_the_in_memory_paths(plain_dir, tmp_path):
    from pcaptools.convert import convert

    ds = convert(plain_dir, tmp_path / "calico.ds")
    whole = load_paths(ds)
    bounded = load_paths_bounded(ds, window_rows=300, bucket_rows=50)
    assert bounded.streamed["windows"] >= 20 and bounded.streamed["buckets"] >= 10
    assert (whole.paths["orig_bytes"] >= 0).any()
    _assert_same(whole, bounded)
    _assert_same_inference(whole, bounded)


def test_generated_set_in_windows_and_buckets_gives_the_in_memory_paths(generated):
    whole = load_paths(generated)
    bounded = load_paths_bounded(generated, window_rows=2000, bucket_rows=3000)
    assert bounded.streamed["windows"] >= 10 and bounded.streamed["carried_journeys"] >= 500
    assert bounded.streamed["buckets"] >= 20
    assert len(whole.paths) > 150
    _assert_same(whole, bounded)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("inputs", ["manifest", "plain-files"])
def test_cli_paths_under_a_memory_cap_prints_and_writes_the_same(generated, tmp_path, inputs):
    given = generated
    if inputs == "plain-files":  # the generated set without its manifest: points inferred
        given = tmp_path / "set"
        shutil.copytree(generated, given, ignore=shutil.ignore_patterns("manifest.json"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small = _cli("paths", str(given), "--memory", "16MiB", "-o", "paths.parquet", cwd=tmp_path / "a")
    large = _cli("paths", str(given), "-o", "paths.parquet", cwd=tmp_path / "b")
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    # 16 MiB is below any run's floor: the streamed run says so (correlate's note) and is otherwise the same
    floor = re.compile(r"note: the memory budget \(16 MiB\) is below .*?not joined\)\n", re.DOTALL)
    assert len(floor.findall(small.stdout)) == 1 and not floor.search(large.stdout)
    assert floor.sub("", small.stdout) == large.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "paths.parquet"), pd.read_parquet(tmp_path / "b" / "paths.parquet"))

    def evidence(r: subprocess.CompletedProcess) -> list[str]:  # what cli._inferred printed
        return [line for line in r.stderr.splitlines() if line.startswith(("pcaptools: inferred ", "pcaptools: warning: "))]

    assert evidence(small) == evidence(large)
    assert bool(evidence(large)) == (inputs == "plain-files")
    if inputs == "plain-files":
        assert evidence(large)[0].startswith("pcaptools: inferred 4 capture points")


def test_bucket_tables_joined_from_many_parts_equal_the_whole_table():
    """Joining the buckets' tables recodes category columns to their union (never one object per cell): 7-row parts
    of a NAT table, each with only the categories it uses, join into the whole table, a column whose parts all have
    the same categories keeping them and any other taking the sorted values (as ``astype("category")`` gives)."""
    from pcaptools.k8s.paths_stream import _concat

    whole = load_paths(SAMPLES / "calico-vxlan").nat
    cat_cols = [c for c in whole.columns if isinstance(whole[c].dtype, pd.CategoricalDtype)]
    narrowed = [c for c in cat_cols if c not in ("op", "nat_kind")]  # closed vocabularies keep every category per part
    parts = []
    for lo in range(0, len(whole), 7):
        p = whole.iloc[lo : lo + 7].copy()
        for c in narrowed:
            p[c] = p[c].cat.remove_unused_categories()
        parts.append(p)
    assert len(parts) >= 20
    expect = whole.copy()
    for c in cat_cols:
        same = all(p[c].cat.categories.equals(parts[0][c].cat.categories) for p in parts)
        cats = parts[0][c].cat.categories if same else whole[c].astype(object).astype("category").cat.categories
        expect[c] = pd.Categorical(whole[c].astype(object), categories=cats)
    assert any(not all(p[c].cat.categories.equals(parts[0][c].cat.categories) for p in parts) for c in narrowed)
    pd.testing.assert_frame_equal(_concat(parts), expect.reset_index(drop=True))


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_streamed_paths_leave_each_journeys_connection_beside_the_hops_file_as_a_label_pass_gives_it(sample, tmp_path):
    """``hops_out`` (compare, report): the spill pass writes every journey's connection beside the hops file, so the
    report's sequence diagrams read it instead of labelling the journeys a second time; the same pairs as that
    second pass and as :func:`_connections` on the whole table."""
    import pyarrow.parquet as pq

    from pcaptools.k8s.paths import _connections
    from pcaptools.k8s.paths_stream import _label, connections_file, journey_connections

    hops = tmp_path / "hops.parquet"
    load_paths_bounded(SAMPLES / sample, window_rows=300, bucket_rows=50, hops_out=hops)
    assert connections_file(hops).exists()
    uj, conn = journey_connections(hops)
    again = _label(pq.ParquetFile(hops))
    np.testing.assert_array_equal(uj, again[0])
    np.testing.assert_array_equal(conn, again[1])
    whole = pd.read_parquet(hops).sort_values(["journey", "hop"], kind="stable").reset_index(drop=True)
    wj, wc = _connections(whole)
    assert len(uj) == len(wj) > 100
    np.testing.assert_array_equal(uj, wj)
    np.testing.assert_array_equal(conn, wc)
    connections_file(hops).unlink()  # without it (a file another run wrote): labelled again, the same pairs
    np.testing.assert_array_equal(journey_connections(hops)[1], conn)
