"""How many records a budgeted streamed run reads a capture in at once (issue #11): large enough that a batch's fixed
cost (table building, numba dispatch, categories) does not dominate, bounded however small the budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from stream_support import without_floor_note

from pcaptools.correlate.stream import MAX_BATCH_RECORDS, batch_records_for, correlate_files
from pcaptools.io import read_records

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MIB = 1 << 20


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A seeded 4-point set (benchmarks/gen_set.py), 5,000 packets: each capture a few thousand records."""
    from gen_set import generate

    out = tmp_path_factory.mktemp("set5k")
    generate(5000, out, seed=7)
    return out


def test_a_300_mib_budget_over_four_files_reads_batches_of_at_least_32k_records():
    """300 MiB over 4 captures (the 200k benchmark set) gave 1,024-record batches before: now at least 32,768."""
    assert batch_records_for(300 * MIB, 4) >= 32_768
    assert batch_records_for(1024 * MIB, 4) == MAX_BATCH_RECORDS


def test_a_budget_below_what_the_run_holds_still_reads_bounded_batches():
    """16 MiB is below the libraries alone: batches keep their floor (16,384 records, ~8 MiB a file), not more."""
    for files in (1, 4, 64):
        assert batch_records_for(16 * MIB, files) == 16_384
    assert batch_records_for(0, 4) == 16_384


def test_more_files_open_at_once_never_get_larger_batches():
    """The budget left beyond the libraries is shared by the files read at once."""
    for memory in (64 * MIB, 300 * MIB, 512 * MIB, 1024 * MIB, 4096 * MIB):
        sizes = [batch_records_for(memory, n) for n in (1, 2, 4, 8, 16, 64, 256)]
        assert sizes == sorted(sizes, reverse=True)
        assert all(16_384 <= s <= 65_536 for s in sizes)


class _Batches:
    """Observer of a streamed correlation: the rows of each packet table read, per file."""

    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.reader_notes: list[str] = []

    def points(self, pts) -> None:  # noqa: ANN001
        pass

    def batch(self, file, table, pid, keys, tc) -> None:  # noqa: ANN001
        self.rows.setdefault(str(file), []).append(len(table))

    def emitted(self, keys, journeys) -> None:  # noqa: ANN001
        pass


def test_a_small_budget_streams_each_small_capture_in_one_batch_with_the_in_memory_answers(generated, tmp_path):
    """Under 16 MiB the set is streamed (two passes) yet each capture (fewer records than the floor) is read in one
    batch, where the old rule read 1,024 records at a time; hops and correlation equal the in-memory run's."""
    seen = _Batches()
    win, stats = correlate_files(generated, memory=16 * MIB, out=tmp_path / "win.parquet", observer=seen)
    one, _ = correlate_files(generated, memory=1 << 40, out=tmp_path / "one.parquet")
    assert stats.passes == 2
    files = [str(generated / e["file"]) for e in json.loads((generated / "manifest.json").read_text())["captures"]]
    assert sorted(seen.rows) == sorted(files)
    for f in files:
        assert seen.rows[f] == [len(read_records(f))] and len(read_records(f)) > 1024
    assert one.to_dict() == without_floor_note(win.to_dict())
    h1, h2 = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "win.parquet")
    assert len(h1) > 0
    pd.testing.assert_frame_equal(_canonical(h1), _canonical(h2))


def _canonical(hops: pd.DataFrame) -> pd.DataFrame:
    return hops.astype({c: str for c in hops.columns if isinstance(hops[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def test_a_small_budget_builds_a_small_sets_paths_in_one_bucket_with_the_in_memory_paths(generated):
    """Under 16 MiB the paths are streamed, but buckets keep a floor of 32,768 hops rows (the old floor, 4,096, cut
    this set's hops in several): one bucket here, and the same paths as the in-memory run."""
    from pcaptools.k8s.paths import load_paths
    from pcaptools.k8s.paths_stream import MIN_BUCKET_ROWS, load_paths_bounded

    bounded = load_paths_bounded(generated, memory=16 * MIB)
    whole = load_paths(generated)
    hops = len(whole.correlation.hops)
    assert bounded.streamed["windows"] >= 1 and bounded.streamed["buckets"] == 1
    assert MIN_BUCKET_ROWS == 32_768 and 4096 < hops <= MIN_BUCKET_ROWS
    pd.testing.assert_frame_equal(whole.paths, bounded.paths)
    pd.testing.assert_frame_equal(_canonical(whole.nat), _canonical(bounded.nat))
