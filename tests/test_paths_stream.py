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


def _cli(*args: str, cwd: Path, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("inputs", ["manifest", "plain-files"])
def test_cli_paths_under_a_memory_cap_prints_and_writes_the_same(generated, tmp_path, inputs):
    given = generated
    if inputs == "plain-files":  # the generated set without its manifest: points inferred
        given = tmp_path / "set"
        shutil.copytree(generated, given, ignore=shutil.ignore_patterns("manifest.json"))
    for d in ("a", "b", "spills"):
        (tmp_path / d).mkdir()
    small = _cli("paths", str(given), "--memory", "16MiB", "-o", "paths.parquet", cwd=tmp_path / "a", tmpdir=tmp_path / "spills")
    large = _cli("paths", str(given), "-o", "paths.parquet", cwd=tmp_path / "b")
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    # 16 MiB is below any run's floor: the streamed run says so (correlate's note) and is otherwise the same
    floor = re.compile(r"note: the memory budget \(16 MiB\) is below .*?not joined\)\n", re.DOTALL)
    assert len(floor.findall(small.stdout)) == 1 and not floor.search(large.stdout)
    assert floor.sub("", small.stdout) == large.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "paths.parquet"), pd.read_parquet(tmp_path / "b" / "paths.parquet"))
    assert not any((tmp_path / "spills").iterdir())  # the streamed run's spills, its output's too, removed

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


def test_streamed_paths_are_read_a_bucket_at_a_time_and_written_as_the_whole_table(tmp_path):
    """A streamed run's output is spilled a bucket at a time (PathSet.parts): written from its buckets, the Parquet file
    (a row group a bucket) reads back as the in-memory run's table, every dtype and category (categories that differ
    between buckets unioned as the whole table's), and the CSV file is the same bytes."""
    import pyarrow.parquet as pq

    from pcaptools.render.records import flat_table, write_table_parts

    whole = load_paths(SAMPLES / "calico-vxlan")
    bounded = load_paths_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=50)
    nb = bounded.streamed["buckets"]
    assert len(list(bounded.parts())) == nb >= 10 and bounded.n_connections == len(whole.paths)
    assert not all(bounded.spilled._same.values())  # some category column differs between buckets
    for ext in ("parquet", "csv"):
        write_table_parts((p for p, _, _ in bounded.parts()), str(tmp_path / f"bounded.{ext}"))
        write_table_parts((p for p, _, _ in whole.parts()), str(tmp_path / f"whole.{ext}"))
    flat_table(whole.paths).to_parquet(tmp_path / "before.parquet", index=False)  # as `paths -o` wrote it before
    assert pq.ParquetFile(tmp_path / "bounded.parquet").num_row_groups == nb
    back = pd.read_parquet(tmp_path / "bounded.parquet")
    for other in ("whole.parquet", "before.parquet"):
        pd.testing.assert_frame_equal(back, pd.read_parquet(tmp_path / other))
    assert back.equals(pd.read_parquet(tmp_path / "before.parquet"))
    assert (tmp_path / "bounded.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_spilled_output_is_removed_after_a_run_when_dropped_and_after_an_error(tmp_path, monkeypatch):
    """The buckets' spilled output lives in TMPDIR until the PathSet is closed (the command does it once printed) or
    dropped; an error while the buckets are built removes it, and the run's own spills, before it is raised."""
    import gc
    import tempfile

    from pcaptools.k8s import paths_stream

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ps = load_paths_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=50)
    assert [p.name for p in tmp_path.iterdir()] == [ps.spilled.dir.name]  # the run's own directory is gone
    _text(ps)
    ps.close()
    assert not any(tmp_path.iterdir())
    ps = load_paths_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=50)
    del ps
    gc.collect()
    assert not any(tmp_path.iterdir())
    real, calls = paths_stream.rows_of_journeys, []

    def fails_later(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(paths_stream, "rows_of_journeys", fails_later)
    with pytest.raises(OSError, match="No space left"):
        load_paths_bounded(SAMPLES / "calico-vxlan", window_rows=300, bucket_rows=50)
    assert len(calls) > 3 and not any(tmp_path.iterdir())
