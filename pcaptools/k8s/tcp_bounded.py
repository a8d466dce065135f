"""The TCP numbers a streamed diagnosis reads per journey, spilled to disk and read back a bucket of connections at a
time: each TCP journey's first sighting's (sequence number, acknowledgement, payload length), what
:class:`~pcaptools.k8s.diagnose.PacketEvidence` finds as the correlation emits the journey (``_first_rows``) and
:class:`~pcaptools.k8s.diagnose_journeys.JourneyTable` reads (to group retransmissions, to tell a segment its receiver
acknowledged), with nothing held per journey for the run.

The same external join as the client flows' (:mod:`pcaptools.k8s.flows_bounded`, whose helpers it uses), keyed by the
journey number itself (exact: no hash, no collision), in three steps (:class:`TcpNumbers`):

1. :meth:`~TcpNumbers.add` (the evidence, as the correlation emits journeys): their numbers appended to a spill file.
2. :meth:`~TcpNumbers.tag` (called by the hops spill pass with each row's bucket): each row group's distinct
   (journey, bucket) pairs appended to a tags file (a journey lies in one bucket: its connection's).
3. :meth:`~TcpNumbers.assign`: numbers and tags partitioned by journey number modulo as many partitions as make one
   fit :data:`~pcaptools.k8s.flows_bounded.SHARE` of the budget; per partition, each journey's first numbers in spill
   order (a journey is emitted once: one row each) matched to its tag; each bucket's appended to a file of its own.

:meth:`~TcpNumbers.of_bucket` reads a bucket's file back, sorted by journey, when its diagnosis starts.

Memory: held for the run, three counts. Transient: while assigned, one partition (about :data:`ROW_BYTES` a journey
and :data:`~pcaptools.k8s.flows_bounded.TAG_BYTES` a tag); while a bucket is diagnosed, its journeys' numbers (32
bytes each). Limit: past :data:`~pcaptools.k8s.flows_bounded.MAX_PARTITIONS` partitions (about 240 million TCP
journeys under ``--memory 300MiB``) a partition outgrows its share. Disk: 32 bytes a TCP journey (the spill) and 16 a
tagged journey (the tags), then 32 bytes a tagged TCP journey in the buckets' files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.k8s.flows_bounded import (
    TAG_BYTES,
    _append,
    _chunks,
    _concat,
    _take,
    append_buckets,
    partition_count,
    partitioned,
)

ROW_BYTES = 120
"""Bytes a journey's numbers take while their partition is assigned (32 bytes, their sort order and copies); its tag
takes :data:`~pcaptools.k8s.flows_bounded.TAG_BYTES`."""

_NUMBERS = ("journey", "seq", "ack", "plen")
_TAGS = ("journey", "bucket")
_DTYPES = dict.fromkeys(_NUMBERS + _TAGS, np.dtype(np.int64))


class TcpNumbers:
    """The TCP numbers of a streamed run's journeys, spilled under ``tmp`` and assigned to the buckets of connections
    that hold them (module doc). ``memory``: the run's budget (sizes the partitions)."""

    def __init__(self, tmp: str | os.PathLike, memory: int) -> None:
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.memory = int(memory)
        self.journeys = 0  # numbers spilled (one per TCP journey emitted)
        self.tags = 0  # (journey, bucket) tags spilled
        self.partitions = 0  # chosen by assign

    def add(self, rows: np.ndarray) -> None:
        """Spill (journey, seq, ack, payload length) rows (shape (n, 4), ``_first_rows``')."""
        if len(rows):
            _append(
                self.dir / "numbers", {c: np.ascontiguousarray(rows[:, k]) for k, c in enumerate(_NUMBERS)}
            )
            self.journeys += len(rows)

    def tag(self, hops, bucket: np.ndarray) -> None:
        """Note that bucket ``bucket[i]`` diagnoses the journey of hops row ``i`` (rows of bucket -1 ignored): ``hops``
        an Arrow table or DataFrame with a ``journey`` column."""
        j = hops["journey"] if isinstance(hops, pd.DataFrame) else hops.column("journey")
        b = np.asarray(bucket, np.int64)
        ok = b >= 0
        j, b = np.asarray(j.to_numpy(), np.int64)[ok], b[ok]
        if not len(j):
            return
        o = np.lexsort((b, j))
        j, b = j[o], b[o]
        first = np.r_[True, (j[1:] != j[:-1]) | (b[1:] != b[:-1])]
        _append(self.dir / "tags", {"journey": j[first], "bucket": b[first]})
        self.tags += int(first.sum())

    def assign(self, *, partitions: int | None = None) -> None:
        """Send each bucket the numbers of the journeys its tags name (module doc), through ``partitions`` partitions
        (default: as many as make one fit a share of the budget). Once every row is tagged."""
        if partitions is None:
            partitions = partition_count(self.journeys * ROW_BYTES + self.tags * TAG_BYTES, self.memory)
        self.partitions = int(partitions)
        for numbers, tags in partitioned(
            self.dir, {"numbers": _NUMBERS, "tags": _TAGS}, _DTYPES, self.partitions, "journey"
        ):
            self._assign_partition(numbers, tags)

    def _assign_partition(self, numbers: dict[str, np.ndarray], tags: dict[str, np.ndarray]) -> None:
        """One partition's numbers (the first spilled of each journey) matched to its tags; per bucket, appended."""
        if not len(numbers["journey"]) or not len(tags["journey"]):
            return
        o = np.argsort(numbers["journey"], kind="stable")  # spill order kept: a journey's first comes first
        numbers = _take(numbers, o)
        j = numbers["journey"]
        numbers = _take(numbers, np.flatnonzero(np.r_[True, j[1:] != j[:-1]]))
        del o, j
        tj = tags["journey"]
        at = np.clip(np.searchsorted(numbers["journey"], tj), 0, len(numbers["journey"]) - 1)
        hit = numbers["journey"][at] == tj  # a tagged journey that is not TCP has no numbers
        b, at = tags["bucket"][hit], at[hit]
        o = np.lexsort((at, b))  # by bucket, then journey
        if len(o):
            append_buckets(self.dir, b[o], at[o], numbers)

    def of_bucket(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Bucket ``b``'s (journeys ascending, their (seq, ack, payload length) as rows), read from its file."""
        f = _concat(_chunks(self.dir / f"bucket-{b}"), _NUMBERS, _DTYPES)
        o = np.argsort(f["journey"], kind="stable")  # each partition's chunk is sorted, not their sequence
        return f["journey"][o], np.stack([f["seq"][o], f["ack"][o], f["plen"][o]], 1)
