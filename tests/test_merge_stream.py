"""merge with bounded memory: capture files read in windows and k-way merged give the same pcapng byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
from stream_support import FLOOR, ROOT, sigterm_once_spilled

from pcaptools.cli import main
from pcaptools.correlate.api import correlate
from pcaptools.correlate.merge import MergeRows, merge
from pcaptools.io import read_records
from pcaptools.k8s.discover import correlate_inputs, load_captures


@pytest.fixture(scope="module", params=["calico-vxlan", "vpc"])
def capture_set(request):
    cs = load_captures([str(ROOT / "sample_pcaps" / request.param)])
    return cs, correlate(cs)


@pytest.mark.parametrize("dedup", [False, True], ids=["all", "dedup"])
@pytest.mark.parametrize("batch_records", [1, 3, 64])
def test_merge_in_windows_writes_the_same_bytes_as_the_whole_merge(capture_set, dedup, batch_records, tmp_path):
    cs, corr = capture_set
    whole, windowed = tmp_path / "whole.pcapng", tmp_path / "windowed.pcapng"
    n = merge(cs, whole, correlation=corr, dedup=dedup)
    assert merge(cs, windowed, correlation=corr, dedup=dedup, batch_records=batch_records) == n
    assert windowed.read_bytes() == whole.read_bytes()
    assert len(read_records(windowed)) == n


def test_cli_merge_with_a_memory_cap_writes_the_same_file(tmp_path):
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    src = str(ROOT / "sample_pcaps" / "vpc")
    assert main(["merge", src, "-o", str(a), "--dedup"]) == 0
    assert main(["merge", src, "-o", str(b), "--dedup", "--memory", "64MiB"]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_cli_merge_without_memory_takes_the_default_budget_and_writes_the_in_memory_bytes(tmp_path, monkeypatch):
    """Like every other command, merge bounds its memory by default (a quarter of what is available): a set that fits
    it is merged in memory, a larger one read in windows (here the default made 16 MiB), never loaded whole; the
    file is the one the in-memory merge writes either way."""
    import pcaptools.correlate.budget as budget
    import pcaptools.k8s.discover as discover
    from pcaptools.k8s.discover import merge_inputs

    src = str(ROOT / "sample_pcaps" / "calico-vxlan")
    whole, fits, small = tmp_path / "whole.pcapng", tmp_path / "fits.pcapng", tmp_path / "small.pcapng"
    merge_inputs(src, whole, dedup=True)  # the library without memory: loaded and merged in memory
    loads = []
    real = discover.load_captures
    monkeypatch.setattr(discover, "load_captures", lambda *a, **k: loads.append(1) or real(*a, **k))
    assert main(["merge", src, "-o", str(fits), "--dedup"]) == 0
    assert loads == [1]  # the sample fits a quarter of this machine's memory: merged in memory
    monkeypatch.setattr(budget, "default_memory", lambda: 16 << 20)
    assert main(["merge", src, "-o", str(small), "--dedup"]) == 0
    assert loads == [1]  # not loaded whole again: read in windows
    assert fits.read_bytes() == small.read_bytes() == whole.read_bytes()


def _streamed_merge(source: str, out, window_rows: int, batch_records: int, dedup: bool, tmp_path,
                    dedup_rows: int | None = None) -> tuple[int, MergeRows]:  # fmt: skip
    rows, hops = MergeRows(), tmp_path / "hops.parquet"
    correlate_inputs([source], window_rows=window_rows, observer=rows, out=hops)
    return rows.write(out, dedup=dedup, hops=hops, batch_records=batch_records, dedup_rows=dedup_rows), rows


@pytest.mark.parametrize("dedup", [False, True], ids=["all", "dedup"])
@pytest.mark.parametrize("window_rows", [64, 4096])
@pytest.mark.parametrize("which", ["calico-vxlan", "plain", "generated"])
def test_streamed_correlation_and_windowed_merge_write_the_in_memory_bytes(which, window_rows, dedup, request, tmp_path):
    source = {"calico-vxlan": ROOT / "sample_pcaps" / "calico-vxlan", "plain": None, "generated": None}[which]
    source = str(source or request.getfixturevalue({"plain": "plain_dir", "generated": "generated"}[which]))
    whole, streamed = tmp_path / "whole.pcapng", tmp_path / "streamed.pcapng"
    cs = load_captures([source])
    corr = correlate(cs)
    n = merge(cs, whole, correlation=corr, dedup=dedup)
    got, rows = _streamed_merge(source, streamed, window_rows, 7, dedup, tmp_path)
    assert rows.whole_run is None  # the correlation was streamed: no packet table was held
    assert got == n
    # without dedup every packet; with it one per journey plus the packets of none
    assert n == len(cs.packets) - (int((corr.row_journey >= 0).sum()) - corr.hops["journey"].nunique() if dedup else 0)
    assert streamed.read_bytes() == whole.read_bytes()
    assert rows.point_count == len(cs.points)


@pytest.mark.parametrize(("which", "dedup_rows", "batch_records"), [("calico-vxlan", 3, 7), ("generated", 97, 61)])
def test_streamed_dedup_decided_in_tiny_runs_writes_the_in_memory_bytes(which, dedup_rows, batch_records, request, tmp_path):
    """merge --dedup --memory holds no row per packet: the hops are read ``dedup_rows`` at a time (journeys cut across
    reads wait for their next rows), the decisions sorted in runs of about that many, the captures' rows read
    ``batch_records`` at a time beside them. With hundreds of journeys cut across reads, the file is the in-memory
    merge's byte for byte and every spill file is gone after writing."""
    import os

    import numpy as np
    import pyarrow.parquet as pq

    source = str(ROOT / "sample_pcaps" / "calico-vxlan") if which == "calico-vxlan" else str(request.getfixturevalue("generated"))
    whole, streamed = tmp_path / "whole.pcapng", tmp_path / "streamed.pcapng"
    cs = load_captures([source])
    corr = correlate(cs)
    n = merge(cs, whole, correlation=corr, dedup=True)
    rows, hops = MergeRows(), tmp_path / "hops.parquet"
    correlate_inputs([source], window_rows=64, observer=rows, out=hops)
    j = pq.read_table(hops, columns=["journey"]).column("journey").to_numpy()
    cut = int((j[dedup_rows::dedup_rows] == j[dedup_rows - 1 : -1 : dedup_rows]).sum())  # reads that end mid-journey
    assert cut >= 100
    spill_dir = rows.spill.dir.name
    assert rows.write(streamed, dedup=True, hops=hops, batch_records=batch_records, dedup_rows=dedup_rows) == n
    assert n == len(cs.packets) - (int((corr.row_journey >= 0).sum()) - corr.hops["journey"].nunique())
    assert streamed.read_bytes() == whole.read_bytes()
    assert not os.path.exists(spill_dir) and rows.spill is None
    assert np.array_equal(np.unique(j), np.unique(corr.hops["journey"].to_numpy()))


def test_streamed_dedup_refuses_the_hops_of_another_run(tmp_path):
    """The decisions pair each hops row with the journey the correlation emitted for it: a hops file of another run
    (here one window's, journeys numbered otherwise) is refused with a CorrelationError naming it, not merged."""
    from pcaptools.errors import CorrelationError

    source = str(ROOT / "sample_pcaps" / "calico-vxlan")
    other = tmp_path / "other.parquet"
    correlate_inputs([source], window_rows=64, out=other, observer=MergeRows())
    rows, hops = MergeRows(), tmp_path / "hops.parquet"
    correlate_inputs([source], window_rows=4096, observer=rows, out=hops)
    import pyarrow.parquet as pq

    t = pq.read_table(other)
    pq.write_table(t.slice(0, t.num_rows - 1), other)  # one row fewer than the run emitted
    with pytest.raises(CorrelationError, match="other.parquet"):
        rows.write(tmp_path / "m.pcapng", dedup=True, hops=other)


@pytest.mark.parametrize("dedup", [[], ["--dedup"]], ids=["all", "dedup"])
def test_cli_merge_under_16mib_streams_and_writes_the_same_file(generated, dedup, tmp_path, capsys):
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    assert main(["merge", str(generated), "-o", str(a), *dedup]) == 0
    capsys.readouterr()
    assert main(["merge", str(generated), "-o", str(b), "--memory", "16MiB", *dedup]) == 0
    assert FLOOR in capsys.readouterr().err  # the streamed correlation ran (and said the budget is below its floor)
    assert a.read_bytes() == b.read_bytes()
    assert len(read_records(b)) == len(read_records(a)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pcapng", "b.pcapng"]  # the hops file was removed


def test_cli_merge_of_a_dataset_under_16mib_copies_the_original_captures_bytes(tmp_path, capsys):
    ds, a, b = tmp_path / "ds", tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    assert main(["convert", str(ROOT / "sample_pcaps" / "calico-vxlan"), "-o", str(ds)]) == 0
    assert main(["merge", str(ds), "-o", str(a), "--dedup"]) == 0
    capsys.readouterr()
    assert main(["merge", str(ds), "-o", str(b), "--dedup", "--memory", "16MiB"]) == 0
    assert FLOOR in capsys.readouterr().err  # streamed: the dataset's parts read in windows
    assert a.read_bytes() == b.read_bytes()
    assert len(read_records(b)) == len(read_records(a)) > 0


@pytest.mark.parametrize("dedup", [False, True], ids=["all", "dedup"])
def test_merge_captures_of_inputs_under_16mib_streams_and_writes_the_in_memory_bytes(generated, dedup, tmp_path, capsys):
    """The Python API takes the CLI's bounded path: merge_captures(paths, memory=...) is merge --memory."""
    import pcaptools

    a, b, c = tmp_path / "a.pcapng", tmp_path / "b.pcapng", tmp_path / "c.pcapng"
    cs = load_captures([str(generated)])
    n = pcaptools.merge_captures(cs, a, dedup=dedup)  # a CaptureSet, as before: in memory
    capsys.readouterr()
    assert pcaptools.merge_captures([str(generated)], b, dedup=dedup, memory=16 << 20) == n
    assert FLOOR in capsys.readouterr().err  # the streamed correlation ran, as merge --memory 16MiB does
    assert b.read_bytes() == a.read_bytes()
    assert main(["merge", str(generated), "-o", str(c), "--memory", "16MiB", *(["--dedup"] if dedup else [])]) == 0
    assert c.read_bytes() == a.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pcapng", "b.pcapng", "c.pcapng"]  # no hops file left


def test_merge_inputs_streamed_says_the_points_and_notes_of_the_in_memory_run(tmp_path):
    from pcaptools.k8s.discover import merge_inputs

    src = str(ROOT / "sample_pcaps" / "calico-vxlan")
    whole = merge_inputs([src], tmp_path / "a.pcapng", dedup=True)
    streamed = merge_inputs([src], tmp_path / "b.pcapng", dedup=True, memory=16 << 20, window_rows=64, batch_records=7)
    assert whole.captures is not None and streamed.captures is None  # a manifest's set: nothing inferred when streamed
    assert (streamed.packets, streamed.points, streamed.notes) == (whole.packets, whole.points, whole.notes)
    assert whole.points == len(whole.captures.points) > 1
    assert (tmp_path / "a.pcapng").read_bytes() == (tmp_path / "b.pcapng").read_bytes()


def test_merge_inputs_streamed_says_the_reader_notes_of_the_in_memory_run(tmp_path):
    """A set whose -i any capture is cut in its last record (test_skip_notes.py's): both runs note the skip, once."""
    from test_skip_notes import _set_with_a_cut_any_capture

    from pcaptools.k8s.discover import merge_inputs

    (tmp_path / "set").mkdir()
    src = _set_with_a_cut_any_capture(tmp_path / "set")
    cut = str(src / "node-1" / "any.pcap")
    whole = merge_inputs([str(src)], tmp_path / "a.pcapng")
    streamed = merge_inputs([str(src)], tmp_path / "b.pcapng", memory=16 << 20, window_rows=4, batch_records=2)
    assert [n for n in whole.notes if "skipped by the reader" in n] == [
        f"{cut}: 1 record(s) skipped by the reader (truncated_record 1); `pcaptools info {cut}` says where and why"]
    assert (streamed.packets, streamed.points, streamed.notes) == (whole.packets, whole.points, whole.notes)
    assert whole.packets > 0 and (tmp_path / "a.pcapng").read_bytes() == (tmp_path / "b.pcapng").read_bytes()


@pytest.mark.parametrize("order", ["file order", "batches reversed"])
def test_merge_rows_spilled_in_many_batches_write_the_in_memory_bytes_and_leave_no_spill(order, tmp_path):
    """MergeRows keeps its rows on disk (one spill per capture file): fed 37-row batches, in file order or with each
    file's batches reversed (a file read out of record order is sorted back), the windowed writer reading 5 records and
    5 spilled rows at a time gives the whole merge's bytes; the spill directory is gone after writing."""
    import os

    import numpy as np

    cs = load_captures([str(ROOT / "sample_pcaps" / "calico-vxlan")])
    corr = correlate(cs)
    whole, spilled = tmp_path / "whole.pcapng", tmp_path / "spilled.pcapng"
    n = merge(cs, whole, correlation=corr)
    pk, tc = cs.packets, np.asarray(corr.row_ts_corrected, np.int64)
    pid = pk["point_id"].to_numpy(np.int64)
    rows = MergeRows(journeys=False)
    rows.points(cs.points)
    batches = []
    for p in np.unique(pid).tolist():
        at = np.flatnonzero(pid == p)
        cuts = [at[i : i + 37] for i in range(0, len(at), 37)]
        batches += cuts[::-1] if order == "batches reversed" else cuts
    for sel in batches:
        keys = (pid[sel] << 40) | (sel - np.flatnonzero(pid == pid[sel[0]])[0])
        rows.batch(str(pk["file"].iloc[sel[0]]), pk.iloc[sel], pid[sel], keys, tc[sel])
    assert sum(rows.spill.rows.values()) == len(pk)  # every row on disk, none held
    assert bool(rows.spill.unsorted) == (order == "batches reversed")
    spill_dir = rows.spill.dir.name
    assert rows.write(spilled, batch_records=5) == n
    assert spilled.read_bytes() == whole.read_bytes()
    assert not os.path.exists(spill_dir) and rows.spill is None


def test_byte_ranges_are_copied_as_a_per_byte_gather_copies_them():
    """The compiled range copy that writes every packet's bytes puts each range where numpy's per-byte gather does,
    with empty ranges, ranges at both ends and a read-only source (a mapped capture file)."""
    from pcaptools.correlate.merge import _gather

    rng = np.random.default_rng(7)
    src = rng.integers(0, 256, 10_000, dtype=np.uint8)
    src.flags.writeable = False
    length = rng.integers(0, 300, 200)
    length[[0, 5, -1]] = 0
    src_start = rng.integers(0, len(src) - 300, 200)
    src_start[1], length[1] = len(src) - 17, 17
    dst_start = np.cumsum(length) - length + np.arange(200)  # a gap of one byte after each range
    got = np.zeros(int(dst_start[-1] + length[-1]) + 1, np.uint8)
    _gather(got, dst_start, src, src_start, length)
    want = np.zeros_like(got)
    rep = np.repeat(np.arange(200), length)
    within = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
    want[dst_start[rep] + within] = src[src_start[rep] + within]
    np.testing.assert_array_equal(got, want)
    assert got.any()


def test_sigterm_during_a_streamed_merge_removes_its_row_spill_and_exits_130(generated, tmp_path):
    """``kill`` (SIGTERM) once merge --memory has spilled rows to TMPDIR ends it as Ctrl-C does: exit 130, no
    traceback, nothing left in TMPDIR nor beside the output."""
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    code, err = sigterm_once_spilled(["merge", str(generated), "--memory", "16MiB", "-o", str(out / "m.pcapng")], tmp,
                                     "pcaptools-merge-*/rows-*.bin", "merge")  # fmt: skip
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "pcaptools: interrupted", err
    assert "Traceback" not in err
    assert not any(tmp.iterdir())
    assert not any(p.name.startswith(".merge-") for p in out.iterdir())
