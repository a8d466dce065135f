"""A streamed correlation keeps its spine on disk (pcaptools.correlate.spine.SpilledSpine) and sums it up a chunk at a
time: the in-memory run's latency quantiles, losses, ambiguity, hops and ``correlate --json``, and no file left in
TMPDIR after success, an error or SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from stream_support import sigterm_correlate_leaves_nothing, without_floor_note

import pcaptools.correlate.stream as stream
import pcaptools.correlate.summary as summary
from pcaptools.correlate.spine import SpilledSpine
from pcaptools.correlate.stream import correlate_files
from pcaptools.io import read_records

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"


class _Seen:
    """What the spilled spines of the runs under :func:`_small_chunks` did."""

    def __init__(self) -> None:
        self.spines: list[SpilledSpine] = []
        self.chunks = 0  # chunks of whole journeys read back (losses)
        self.passes = 0  # passes over the pairs file (latency quantiles)
        self.files: list[list[str]] = []  # the spine's files, as close found them


@contextmanager
def _small_chunks(rows: int):
    """Streamed runs whose spilled spine is summed up ``rows`` rows at a time (instead of a window's worth)."""
    seen = _Seen()

    class Spy(SpilledSpine):
        def __init__(self, npts: int, *, chunk_rows: int) -> None:  # noqa: ARG002
            super().__init__(npts, chunk_rows=rows)
            seen.spines.append(self)

        def chunks(self, rows: int):  # noqa: ANN202
            for c in super().chunks(rows):
                seen.chunks += 1
                yield c

        def pair_chunks(self, rows: int):  # noqa: ANN202
            seen.passes += 1
            yield from super().pair_chunks(rows)

        def close(self) -> None:
            seen.files.append(sorted(os.listdir(self.disk.dir.name)))
            super().close()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "SpilledSpine", Spy)
        yield seen


def _canonical(hops: pd.DataFrame) -> pd.DataFrame:
    return hops.astype({c: str for c in hops.columns if isinstance(hops[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def _runs(source: Path, out: Path, *, chunk: int, window_rows: int, window_ns: int = 2_000_000_000) -> dict:
    """The in-memory run and a streamed one (windows of ``window_rows``, spine summed ``chunk`` rows at a time)."""
    out.mkdir(parents=True, exist_ok=True)
    one, _ = correlate_files(source, window_ns=window_ns, memory=1 << 40, out=out / "one.parquet")
    with _small_chunks(chunk) as seen:
        win, stats = correlate_files(source, window_ns=window_ns, window_rows=window_rows, out=out / "win.parquet")
    return {"one": one, "win": win, "stats": stats, "seen": seen, "h1": pd.read_parquet(out / "one.parquet"),
            "h2": pd.read_parquet(out / "win.parquet"), "hops_file": out / "win.parquet"}  # fmt: skip


def _assert_same(r: dict) -> None:
    one, win = r["one"], r["win"]
    pd.testing.assert_frame_equal(_canonical(r["h1"]), _canonical(r["h2"]))
    pd.testing.assert_frame_equal(one.hop_latency, win.hop_latency)
    pd.testing.assert_frame_equal(_canonical(one.losses), _canonical(win.losses))
    pd.testing.assert_frame_equal(one.loss_summary(), win.loss_summary())
    assert one.to_dict() == win.to_dict()  # correlate --json's document
    assert (one.journeys, one.ambiguous, one.multi_point_journeys) == (win.journeys, win.ambiguous, win.multi_point_journeys)


def _latencies(hops: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """Every consecutive pair of sightings' latency per (from point, to point), sorted: from the hops table."""
    h = hops.sort_values(["journey", "hop"])
    j, pt, t = h["journey"].to_numpy(), h["point"].astype(str).to_numpy(), h["ts_corrected_ns"].to_numpy()
    same = np.flatnonzero(j[1:] == j[:-1])
    df = pd.DataFrame({"a": pt[same], "b": pt[same + 1], "lat": t[same + 1] - t[same]})
    return {k: np.sort(g["lat"].to_numpy()) for k, g in df.groupby(["a", "b"])}


@pytest.fixture(scope="module")
def cut_sample(tmp_path_factory) -> Path:
    """The calico-vxlan sample with node-2's DNS pod veth capture cut after its 7th record (real bytes): one of its
    point pairs then holds two latencies and the other one."""
    d = tmp_path_factory.mktemp("cut") / "calico-vxlan"
    shutil.copytree(SAMPLES / "calico-vxlan", d)
    p = d / "node-2" / "cali004edf698fc.pcap"
    rb = read_records(str(p))
    p.write_bytes(p.read_bytes()[: int(rb.offset[6]) + int(rb.caplen[6])])
    return d


@pytest.fixture(scope="module")
def cut_runs(cut_sample, tmp_path_factory) -> dict:
    return _runs(cut_sample, tmp_path_factory.mktemp("cut-runs"), chunk=5, window_rows=300)


@pytest.fixture(scope="module")
def generated_runs(generated, tmp_path_factory) -> dict:
    """The 20,000-packet generated set in windows of 1 ms (its retransmissions come 200 ms later: in other windows),
    the spine summed 64 rows at a time."""
    return _runs(generated, tmp_path_factory.mktemp("gen-runs"), chunk=64, window_rows=3000, window_ns=1_000_000)


def test_pairs_of_one_and_two_latencies_and_tied_ranks_give_the_in_memory_quantiles(cut_runs):
    one, seen = cut_runs["one"], cut_runs["seen"]
    lat = _latencies(cut_runs["h1"])
    counts = {len(x) for x in lat.values()}
    assert {1, 2} <= counts and max(counts) > 5 * 50  # pairs of 1 and 2 latencies, and pairs of many 5-row chunks
    # the in-memory quantiles are numpy's linear ones of the hops' latencies (pandas' definition)
    hl = one.hop_latency.set_index(["from_point", "to_point"])
    for key, x in lat.items():
        row = hl.loc[key]
        assert (row["count"], row["min_ns"], row["max_ns"]) == (len(x), x[0], x[-1])
        assert [row["median_ns"], row["p90_ns"], row["p99_ns"]] == [round(float(np.quantile(x, q))) for q in (0.5, 0.9, 0.99)]
    tied = [k for k, x in lat.items() if len(x) > 5 and any(x[r] in (x[r - 1], x[r + 1]) for r in (int((len(x) - 1) * 0.5), int((len(x) - 1) * 0.9)))]
    assert len(tied) >= 5  # microsecond timestamps: quantile ranks fall among equal latencies
    assert len(seen.spines) == 1 and seen.passes >= 2  # the spilled search narrowed value ranges in passes
    _assert_same(cut_runs)


def test_spilled_spine_of_the_lab_samples_read_in_small_chunks_gives_the_in_memory_totals(tmp_path):
    for sample in ("vpc", "calico-vxlan"):
        r = _runs(SAMPLES / sample, tmp_path / sample, chunk=7, window_rows=300)
        assert r["stats"].windows >= 20 and r["stats"].carried_journeys >= 500
        assert r["seen"].chunks >= r["one"].journeys * 2 // 7  # read back a few journeys at a time
        _assert_same(r)


def test_fingerprint_repeated_in_later_windows_is_ambiguous_as_in_memory(generated_runs):
    h2, one, stats = generated_runs["h2"], generated_runs["one"], generated_runs["stats"]
    spine = generated_runs["seen"].spines[0]
    assert stats.windows >= 10 and stats.rewritten  # ambiguity learnt after the journey's window was written
    assert spine.journeys > 10 * spine.chunk_rows  # the fingerprints were split into many partitions
    group = _row_groups(generated_runs["hops_file"])
    first = h2.drop_duplicates("journey")
    amb = first[first["ambiguous"]]
    windows_of = amb.assign(window=group[amb["journey"].to_numpy()]).groupby("fingerprint")["window"].nunique()
    assert (windows_of > 1).sum() >= 20  # fingerprints owning journeys of different windows
    assert one.ambiguous == len(amb) > 0
    _assert_same(generated_runs)


def _row_groups(path: Path) -> np.ndarray:
    """Per journey number: the row group (window) of the hops file that holds it."""
    f = pq.ParquetFile(path)
    parts = [np.full(f.metadata.row_group(g).num_rows, g) for g in range(f.num_row_groups)]
    j = f.read(columns=["journey"])["journey"].to_numpy()
    out = np.zeros(int(j.max()) + 1, np.int64)
    out[j] = np.concatenate(parts)
    return out


def test_losses_at_window_boundaries_are_the_in_memory_ones(generated_runs):
    one, win = generated_runs["one"], generated_runs["win"]
    group = _row_groups(generated_runs["hops_file"])
    edge = np.flatnonzero(np.diff(group)) + 1  # first journey of each window after the first
    lost = np.unique(win.losses["journey"].to_numpy())
    near = np.abs(lost[:, None] - edge[None, :]).min(axis=1)
    assert len(np.unique(group[lost])) >= 5 and (near <= 3).sum() >= 3  # lost journeys in many windows, some at their edges
    assert len(one.losses) > 100
    _assert_same(generated_runs)


def test_spilled_spine_holds_no_sighting_in_memory(generated_runs):
    spine = generated_runs["seen"].spines[0]
    assert all(not v for v in spine.cols.values())  # per sighting, pair and journey: on disk only
    assert spine.sightings == len(generated_runs["h2"]) and spine.pairs == int(generated_runs["one"].hop_latency["count"].sum())
    assert {"sightings-0.bin", "journeys-0.bin", "pairs-0.bin"} <= set(generated_runs["seen"].files[0])


class _StopAfter:
    """A correlation observer that raises in the second window that emits journeys, after checking the spine is on disk."""

    reader_notes: list = []

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.windows, self.spilled = tmp, 0, False

    def points(self, pts) -> None:  # noqa: ANN001
        pass

    def batch(self, *args) -> None:  # noqa: ANN002
        pass

    def emitted(self, keys, journeys) -> None:  # noqa: ANN001
        self.windows += int(len(journeys) > 0)
        if self.windows == 2:
            self.spilled = any(p.stat().st_size for p in self.tmp.glob("pcaptools-spine-*/sightings-0.bin"))
            raise RuntimeError("stopped by the test")


@pytest.mark.parametrize("when", ["success", "error while matching", "error while summing up"])
def test_spine_files_are_removed_after_success_and_after_an_error(when, generated, tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    seen: list[list[str]] = []
    close = SpilledSpine.close

    def spy(self) -> None:  # noqa: ANN001
        seen.append(sorted(os.listdir(self.disk.dir.name)))
        close(self)

    monkeypatch.setattr(SpilledSpine, "close", spy)
    out = tmp_path / "h.parquet"
    if when == "success":
        correlate_files(generated, window_rows=3000, out=out)
    elif when == "error while matching":
        stop = _StopAfter(tmp)
        with pytest.raises(RuntimeError, match="stopped by the test"):
            correlate_files(generated, window_rows=3000, window_ns=1_000_000, out=out, observer=stop)
        assert stop.spilled
    else:
        def disk_full(*args, **kw):  # noqa: ANN002, ANN003, ANN202
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(summary, "_lost_rows", disk_full)
        with pytest.raises(OSError, match="No space left"):
            correlate_files(generated, window_rows=3000, out=out)
    assert seen and "sightings-0.bin" in seen[0]
    assert not list(tmp.glob("pcaptools-*"))


def test_sigterm_while_the_spine_is_spilled_removes_it_and_exits_130(generated, tmp_path):
    sigterm_correlate_leaves_nothing(generated, tmp_path, "pcaptools-spine-*/sightings-0.bin")


def test_cli_correlate_under_a_small_budget_prints_the_in_memory_json_and_hops(cut_sample, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pcaptools.cli", "correlate", str(cut_sample), "--json", *args],
                              capture_output=True, text=True)  # fmt: skip

    small = cli("--memory", "16MiB", "-o", str(tmp_path / "a.parquet"))
    large = cli("-o", str(tmp_path / "b.parquet"))
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    doc = json.loads(large.stdout)
    assert without_floor_note(json.loads(small.stdout)) == doc
    assert {v["count"] for v in doc["hop_latency"]} >= {1, 2}
    pd.testing.assert_frame_equal(_canonical(pd.read_parquet(tmp_path / "a.parquet")), _canonical(pd.read_parquet(tmp_path / "b.parquet")))
