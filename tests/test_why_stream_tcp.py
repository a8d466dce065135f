"""The TCP numbers a streamed diagnosis reads per journey (pcaptools.k8s.tcp_bounded): spilled as the correlation
emits the journeys, sent to the buckets of connections that hold them through several partitions and read back a
bucket at a time; the diagnosis is the in-memory run's, the evidence holds nothing per journey for the run, and the
spill is removed with the run, on an interrupt too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcaptools.k8s import flows_bounded
from pcaptools.k8s.diagnose import Diagnoser, PacketEvidence
from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths_stream import diagnose_bounded
from pcaptools.k8s.tcp_bounded import TcpNumbers
from tests.test_why_stream import _assert_same, _in_memory, _outputs, _spill_dir

BUCKET_ROWS = 1000
"""Hops rows of a bucket: the 20,000-packet generated set in about 80 buckets."""


class _Watch:
    """The run's PacketEvidence, its TCP numbers' partitions and what each bucket's diagnosis held of them."""

    def __init__(self, monkeypatch, partitions: int) -> None:  # noqa: ANN001
        self.ev: PacketEvidence | None = None
        self.partition_rows: list[int] = []  # numbers per partition assigned
        self.held: list[int] = []  # journeys whose numbers were held, per bucket diagnosed
        self.spill_files: set[str] = set()
        monkeypatch.setattr(
            flows_bounded, "SHARE", 1e-12
        )  # as if the budget were tiny: every partition allowed
        monkeypatch.setattr(flows_bounded, "MAX_PARTITIONS", partitions)
        finish, assign_part, for_bucket = (
            PacketEvidence.finish,
            TcpNumbers._assign_partition,
            PacketEvidence.for_bucket,
        )

        def finished(ev):  # noqa: ANN001, ANN202
            self.ev = finish(ev)
            return self.ev

        def assign_partition(spill, numbers, tags):  # noqa: ANN001, ANN202
            self.partition_rows.append(len(numbers["journey"]))
            return assign_part(spill, numbers, tags)

        def bucket(ev, b):  # noqa: ANN001, ANN202
            for_bucket(ev, b)
            if b is not None:
                self.held.append(len(ev._sj))
                self.spill_files |= {p.name for p in ev.spill.dir.iterdir()}

        monkeypatch.setattr(PacketEvidence, "finish", finished)
        monkeypatch.setattr(TcpNumbers, "_assign_partition", assign_partition)
        monkeypatch.setattr(PacketEvidence, "for_bucket", bucket)


def _streamed(src: Path, **kw) -> dict:  # noqa: ANN003
    ps, d = diagnose_bounded(
        src, capture_drops=manifest_drops([src]), window_rows=2000, bucket_rows=BUCKET_ROWS, **kw
    )
    return _outputs(ps, d)


@pytest.fixture(scope="module")
def whole(generated) -> dict:  # noqa: ANN001
    return _in_memory(generated)


def test_tcp_numbers_in_several_partitions_give_the_in_memory_why_and_paths_json(
    generated, whole, monkeypatch
):
    watch = _Watch(monkeypatch, partitions=5)
    bounded = _streamed(generated)
    spill = watch.ev.spill
    assert (
        spill.partitions == 5
        and len(watch.partition_rows) == 5
        and sum(watch.partition_rows) == spill.journeys
    )
    assert max(watch.partition_rows) < spill.journeys / 3  # a share of the journeys at a time
    assert len(watch.held) >= 50  # each bucket's TCP journeys read back when it is diagnosed, none twice
    assert 0 < sum(watch.held) <= min(spill.tags, spill.journeys)
    _assert_same(whole, bounded)


def test_streamed_evidence_holds_no_tcp_numbers_per_journey_for_the_run(generated, monkeypatch):
    watch = _Watch(monkeypatch, partitions=3)
    _streamed(generated)
    ev = watch.ev
    assert ev.spill.journeys > 5000  # the set's TCP journeys, spilled as emitted
    assert not ev._seq and not ev._pending  # nothing gathered in memory once the correlation is done
    assert len(ev._sj) == len(ev._sv) == 0  # after the run: none held
    assert max(watch.held) < ev.spill.journeys / 20  # while a bucket is diagnosed: its own journeys'


def test_tcp_number_spill_is_on_disk_during_the_run_and_removed_after(generated, tmp_path, monkeypatch):
    spill = _spill_dir(tmp_path, monkeypatch)
    watch = _Watch(monkeypatch, partitions=3)
    ps, _ = diagnose_bounded(generated, window_rows=2000, bucket_rows=BUCKET_ROWS)
    assert watch.ev.spill.dir.is_relative_to(spill)
    assert {"bucket-0", "bucket-1"} <= watch.spill_files  # the buckets' numbers were on disk while diagnosed
    assert not watch.ev.spill.dir.exists()
    assert [p.name for p in spill.iterdir()] == [
        ps.spilled.dir.name
    ]  # only the output, the command's to close
    ps.close()
    assert not any(spill.iterdir())


def test_tcp_number_spill_is_removed_when_the_diagnosis_is_interrupted(generated, tmp_path, monkeypatch):
    spill = _spill_dir(tmp_path, monkeypatch)
    watch = _Watch(monkeypatch, partitions=3)
    add, seen = Diagnoser.add, []

    def interrupted(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the fourth bucket is diagnosed
        seen.append(add(self, *a, **kw))

    monkeypatch.setattr(Diagnoser, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        diagnose_bounded(generated, window_rows=2000, bucket_rows=BUCKET_ROWS)
    assert len(watch.held) == 4 and watch.ev.spill.journeys > 0
    assert not any(spill.iterdir())  # the numbers' spill with the rest of the run's directory


def test_retransmissions_are_grouped_by_the_spilled_tcp_numbers(generated, whole, monkeypatch):
    """The generated set's retransmissions (a segment sent again after a drop) are told apart by the numbers the
    spill gives each bucket: without them (every bucket given none) the streamed timeline and verdicts differ."""
    timeline = [a for c in whole["why --json"]["connections"] for a in c["timeline"]]
    retried = [a for a in timeline if a["attempt"] > 1]
    assert len(timeline) > 100 and retried
    assert _streamed(generated) == whole  # the numbers spilled and read back: the in-memory output
    monkeypatch.setattr(PacketEvidence, "for_bucket", lambda ev, b: None)  # noqa: ARG005 - none read back
    without = _streamed(generated)
    assert without["why --json"] != whole["why --json"]


@pytest.mark.parametrize("partitions", [1, 4])
def test_each_bucket_reads_back_the_first_numbers_of_its_tagged_tcp_journeys(tmp_path, partitions):
    """As ``finish`` indexes them in memory: a journey's first numbers spilled (a journey given twice keeps its
    first), only the journeys a bucket's rows tagged, none of an untagged or non-TCP journey."""
    import pandas as pd

    rng = np.random.default_rng(1)
    j = rng.permutation(np.arange(0, 3000, 3, dtype=np.int64))  # TCP journeys, emitted in no order
    rows = np.column_stack([j, rng.integers(0, 2**32, (len(j), 2)), rng.integers(0, 1500, len(j))])
    again = rows[:50].copy()
    again[:, 1:] += 1  # the same journeys given again later: not theirs
    spill = TcpNumbers(tmp_path / "tcp", 1 << 20)
    for part in (rows[:400], rows[400:], again):
        spill.add(part)
    hj = np.arange(0, 3000, dtype=np.int64)  # hops rows' journeys: every third TCP, a tenth unlabelled
    bucket = np.where(hj % 10 == 9, -1, hj // 500)
    for lo in range(0, len(hj), 700):  # a row group at a time
        spill.tag(
            pd.DataFrame({"journey": np.repeat(hj[lo : lo + 700], 2)}), np.repeat(bucket[lo : lo + 700], 2)
        )
    spill.assign(partitions=partitions)
    first = {int(r[0]): tuple(int(x) for x in r[1:]) for r in rows}
    for b in range(6):
        sj, sv = spill.of_bucket(b)
        want = [x for x in range(b * 500, b * 500 + 500) if x % 3 == 0 and x % 10 != 9]
        assert sj.tolist() == want
        assert [tuple(v) for v in sv.tolist()] == [first[x] for x in want]
    assert spill.of_bucket(6)[0].size == 0


def test_a_lab_capture_s_repeated_tcp_segments_are_grouped_by_the_spilled_numbers(monkeypatch):
    """sample_pcaps/calico-vxlan (a real lab run): its timelines group repeated segments (duplicate ACKs) by their
    TCP numbers; streamed with many partitions it is the in-memory output, and not without the numbers."""
    src = Path(__file__).resolve().parents[1] / "sample_pcaps" / "calico-vxlan"
    whole = _in_memory(src)
    repeated = [a for c in whole["why --json"]["connections"] for a in c["timeline"] if a["attempt"] > 1]
    assert len(repeated) > 100
    _Watch(monkeypatch, partitions=4)
    ps, d = diagnose_bounded(src, capture_drops=manifest_drops([src]), window_rows=300, bucket_rows=50)
    _assert_same(whole, _outputs(ps, d))
    monkeypatch.setattr(PacketEvidence, "for_bucket", lambda ev, b: None)  # noqa: ARG005 - none read back
    ps, d = diagnose_bounded(src, capture_drops=manifest_drops([src]), window_rows=300, bucket_rows=50)
    assert _outputs(ps, d)["why --json"] != whole["why --json"]
