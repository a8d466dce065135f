"""Correlation with bounded memory: capture files read in windows of corrected time, matched window by window.

Two passes over the files (each streamed with :func:`pcaptools.packets.iter_packets`, a file's memory
bounded by its reader's windows):

1. **Survey**: every packet is fingerprinted; the rows of the bottom-k fingerprints are kept for the
   clock estimate (:mod:`.sample`, the same sample one table of everything gives), and each file's
   points (``-i any`` ifindexes), its disorder (how far a timestamp falls behind the largest one
   before it) and its matchable rows are counted. Clocks are estimated once, from that sample.
2. **Match**: the files' packet tables are merged by corrected time. After reading up to timestamp
   ``M`` a file can only hold rows from ``M - disorder`` on, so every row before the smallest such
   bound over the files (the horizon) is known; those rows form a window for
   :class:`.windows.Matcher`, which emits the journeys no later row can join and carries the others
   over. Hops are written as they are emitted (one Parquet row group per window). Each row read is counted here, once
   (:class:`~pcaptools.correlate.api.RowAccounts`: its point's rows and, if left out, why), not in the survey.

Trade-off: the survey decodes every file a second time instead of spilling the decoded columns to
disk: a spill of what matching needs is ~120 bytes a sighting written and read back (about a fifth of
a capture's bytes), the survey costs one more decode (read_packets speed). Memory is the window (about
:data:`ROW_COST` bytes a row) plus the clock sample, and of the spine only what does not grow with sightings (sums per
flow, point and point pair) and 1 byte a journey: its per-sighting parts (about 34 bytes a sighting with the
journey's) are written to ``TMPDIR`` as windows are emitted and summed up at the end a chunk at a time
(:class:`.spine.SpilledSpine`, :mod:`.summary`: the in-memory spine's results). When every file fits the budget at
once, :func:`correlate_files` takes the one-window run, one pass, its spine in memory.

Inputs are manifest entries: a manifest's, ``--point`` specs, those :func:`pcaptools.k8s.discover.infer_captures`
infers for plain files within the budget, and a dataset's (``DIR::FILE``, read in its Parquet parts). A window
holds ``window_ns`` of the densest traffic at once (the survey counts it); when the budget leaves less, windows are
spilled to disk in fingerprint partitions and matched one partition at a time (:mod:`.partition`). Floor: what the
run holds anyway (libraries, readers, the clock estimate, a byte a journey); when that exceeds the budget the run
says so in its notes and on stderr (:func:`floor_note`).

Results are those of the one-window run: the same journeys, numbers, hops, offsets, latency and
losses. Only ``ambiguous`` may need knowledge from a later window (a retransmission of a packet whose
journey was already written): when it does, the hops file is copied once at the end with the flag set.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.correlate.api import (
    DEFAULT_WINDOW_NS,
    Correlation,
    RowAccounts,
    check_options,
    clock_notes,
    correlate_tables,
    correlate_window,
    finish,
    matcher,
    packet_fingerprints,
)
from pcaptools.correlate.budget import default_memory
from pcaptools.correlate.capture_set import (
    CapturePoint,
    CaptureSet,
    capture_entries,
    decode_entries,
    frame_notes,
    name_points,
    point_tables,
    split_entry,
)
from pcaptools.correlate.clock import correct
from pcaptools.correlate.sample import ClockSample
from pcaptools.correlate.spine import SpilledSpine
from pcaptools.correlate.windows import ROW_BYTES, Categories, Part, rows_from
from pcaptools.fmt import add_skipped, shared_file_notes
from pcaptools.process import interrupts_deferred
from pcaptools.schema import HOPS_COLUMNS, empty

ROW_COST = 6 * ROW_BYTES
"""Bytes a row of a window costs at the peak of its step (its columns, the sort orders and the hops table built from it)."""

SPINE_COST = 1
"""Bytes a sighting keeps in memory until the end of the run: its journey's final ambiguity (1 byte a journey, at most
one a sighting). The rest of its spine (about 34 bytes) is on disk (:class:`.spine.SpilledSpine`); what the spine
holds per flow and per point pair does not grow with sightings, and summing it up takes a chunk (:func:`summary_rows`)."""

SUMMARY_ROW_COST = 128
"""Bytes a row of a chunk of the spilled spine costs while it is summed up (its columns read back and the
temporaries of the losses, latency and ambiguity passes: :mod:`.summary`)."""

FLOOR_ROWS = 1.0
"""Rows a window holds at its peak per row counted in the densest ``window_ns`` (:class:`_Density`, which counts up
to a quarter more): the carried journeys' rows and the new ones after them (see :func:`_windows`). Measured: 1.13 GiB
peak RSS for a 1.24M-row peak (benchmarks/gen_set.py --packets 400000, --memory 512MiB)."""

MIN_WINDOW_ROWS = 1 << 14
"""Rows a window (or one partition of it) is given however small the budget."""

SPAN_ROWS = 2.0
"""Rows a step of a partitioned run may hold per row of the densest ``window_ns`` (:class:`_Density`): carried journeys
reach up to ``window_ns`` back from the horizon and new rows up to ``window_ns`` past it (see :func:`partitions_for`)."""

MAX_PARTITIONS = 256
"""Most partitions a window is matched in (files in one directory, one open at a time; a denser window than
``MAX_PARTITIONS * window_rows / SPAN_ROWS`` rows gets larger partitions, and the floor note says so)."""

MARGIN = 0.9
"""Share of the budget planned for: the allocator's fragmentation and the Parquet writer's buffers take the rest."""

FILE_WINDOW = 40 << 20
"""What reading one file as a stream holds (the reader's windows and the decoded batch)."""

BASE_MEMORY = 200 << 20
"""What the interpreter, numpy, pandas, numba's kernels and pyarrow take before any packet is read."""

ROW_PEAK = 700
"""Peak memory of the one-window run per packet record (decoded table, fingerprints, sort orders, hops, summary):
550-680 bytes measured on benchmarks/gen_set.py sets of 0.8 and 4 M sightings."""

STORED_ROW_COST = 1024
"""Peak memory of the one-window run per row of a dataset (its packet table read back, fingerprints, hops)."""

BATCH_ROW_COST = 512
"""Bytes a record of a decoded batch costs while it is turned into window rows: its packet table (188 bytes a row
measured, 57 columns, benchmarks/gen_set.py set), the decoder's temporaries and its rows waiting for their window."""

MIN_BATCH_RECORDS = 1 << 14
"""Fewest records a file is read in per batch by a budgeted run: below a few thousand a batch's fixed cost (building
its table, numba dispatch, categories) dominates (a 198k-record file: 1.24-1.38 CPU s in 1,024-record batches, 0.13 s
in 65,536-record ones). 16,384 records take about 8 MiB a file, within what a run holds anyway (:data:`BASE_MEMORY`)."""

MAX_BATCH_RECORDS = 1 << 16
"""Most records a batch holds: larger batches save no measurable CPU, and the reader's windows of
``iter_packets``' ``batch_bytes`` (16 MiB) cut a batch of large records sooner (the bytes a record takes are the file's)."""

BATCH_SHARE = 32 << 20
"""Most of the budget one file's decoded batch is given (beyond the reader's windows, :data:`FILE_WINDOW`)."""

HEAD_RECORDS = 4096
"""Records read from the start of each file to estimate how many it holds (:func:`one_window_bytes`)."""

@dataclass
class StreamStats:
    """How a run was cut: windows, journeys and rows carried over window boundaries, files read twice or once."""

    windows: int
    carried_journeys: int
    carried_rows: int
    passes: int
    window_rows: int
    disorder_ns: int = 0  # most a file's timestamp fell behind an earlier one of the same file
    partitions: int = 1  # windows matched in this many fingerprint partitions spilled to disk (1: in memory)
    rewritten: bool = False  # the hops file was copied once to set ambiguity learnt in later windows


def correlate_files(source: str | os.PathLike | None = None, *, points: Iterable[str] = (), window_ns: int = DEFAULT_WINDOW_NS,
                    reference: str | None = None, memory: int | None = None, out: str | os.PathLike | None = None,
                    allow_outside: bool = False, window_rows: int | None = None,
                    observer=None) -> tuple[Correlation, StreamStats]:  # fmt: skip
    """Correlate a manifest's (and/or ``NODE:IFACE=FILE``) captures within ``memory`` bytes, writing hops to ``out``.

    In one window (one pass, hops kept in the result) when the files fit the budget, else streamed in
    windows (two passes; the result's ``hops`` is empty, the table is in ``out``). ``window_rows`` forces
    streaming with windows of about that many rows (tests, benchmarks). ``observer``: sees the packets as they
    are read (:func:`correlate_stream`; the one-window run hands it the whole set, ``observer.whole(cs, corr)``)."""
    entries, _ = capture_entries(source, points=points, allow_outside=allow_outside)
    memory = default_memory() if memory is None else int(memory)
    if window_rows is None and fits(entries, memory):
        frames = decode_entries(entries)
        writer = _HopsWriter(out)
        try:
            if observer is not None:  # the observer reads the capture set's one stacked table, as the in-memory run does
                cs = CaptureSet.from_frames(frames)
                del frames
                corr = correlate_window(cs, window_ns=window_ns, reference=reference, on_part=writer.add)
                observer.whole(cs, corr)
            else:
                notes = frame_notes(frames)
                pts, tables, _ = point_tables(frames)  # each point's table as decoded, not stacked
                del frames
                corr = correlate_tables(pts, tables, [np.full(len(t), k, np.int64) for k, t in enumerate(tables)], notes=notes,
                                        window_ns=window_ns, reference=reference, on_part=writer.add, release=True)  # fmt: skip
            writer.close(None)  # hops written while the correlation sums up
        except BaseException:  # an error, Ctrl-C or SIGTERM (signals_as_interrupt): out left as it was, nothing beside it
            writer.discard()
            raise
        return corr, StreamStats(
            windows=1, carried_journeys=0, carried_rows=0, passes=1, window_rows=len(corr.hops)
        )
    return correlate_stream(entries, window_ns=window_ns, reference=reference, memory=memory, window_rows=window_rows,
                            out=out, observer=observer)  # fmt: skip


def fits(entries: Iterable[dict], memory: int, *, row_bytes: int = ROW_PEAK) -> bool:
    """True when the one-window run of these manifest entries' files stays within ``memory`` bytes;
    ``row_bytes``: peak bytes per record of the caller's in-memory run (:func:`one_window_bytes`)."""
    return one_window_bytes([e["file"] for e in entries], row_bytes=row_bytes) <= memory


def one_window_bytes(files: Iterable[str], *, row_bytes: int = ROW_PEAK) -> int:
    """Estimated peak memory of the one-window run on capture files: the libraries, ``row_bytes`` per record
    and the largest file while it is mapped; a dataset's file (``DIR::FILE``) :data:`STORED_ROW_COST` per row.
    Records are estimated from the head of each file (:func:`estimated_records`): memory follows packets, not
    bytes (a set of small packets costs several times its size, one of full frames less than its size)."""
    from pcaptools.dataset import read_meta, split_member

    total, largest = BASE_MEMORY, 0
    for f in dict.fromkeys(files):  # several points may share one file
        member = split_member(f)
        if member is not None:
            rows = {m["path"]: int(m.get("rows") or 0) for m in read_meta(member[0])["files"]}
            total += STORED_ROW_COST * rows.get(member[1], 0)
            continue
        size = capture_bytes(f)
        largest = max(largest, size)
        total += row_bytes * estimated_records(f, size)
    return total + largest


def estimated_records(path: str | os.PathLike, size: int) -> int:
    """Records a capture of ``size`` capture bytes holds: all of them if its first window of 1 MiB holds all,
    else ``size`` over the mean size of the records in that window (at most :data:`HEAD_RECORDS`)."""
    from pcaptools.io import iter_records

    batches = iter_records(path, batch_records=HEAD_RECORDS, batch_bytes=1 << 20)
    head = next(batches, None)
    if head is None or next(batches, None) is None:
        return 0 if head is None else len(head)
    n = len(head)
    mean = float(head.offset[-1] - head.offset[0]) / (n - 1) if n > 1 else float(size)
    return int(size / max(mean, 1.0)) + 1


def capture_bytes(path: str | os.PathLike) -> int:
    """The bytes a capture file stands for in memory (:attr:`pcaptools.io.sniff.Opened.capture_bytes`)."""
    from pcaptools.io.sniff import open_capture

    return open_capture(path).capture_bytes


class _File:
    """One manifest entry's packet tables, in file order, with each row's point and input-order key."""

    def __init__(self, entry: dict, batch_records: int) -> None:
        self.entry = entry
        self.idb = int(entry["pcapng_interface"]) if entry.get("pcapng_interface") is not None else -1
        self.batch_records = batch_records
        self.ifx_pid: tuple[np.ndarray, np.ndarray] | None = (
            None  # sorted ifindexes and their points, if split
        )
        self.pid = 0  # the point of every row, if not split
        self.node = 0
        self.skipped: dict[str, dict] = {}  # the reader's skips by reason, of the last pass over the file

    def tables(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        """(packet table, row number in the file) per batch, rows of other pcapng interfaces left out."""
        self.skipped = {}
        for pk, idx in self._tables():
            add_skipped(self.skipped, pk.attrs)
            yield pk, idx

    def _tables(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        from pcaptools.packets import iter_packets

        row = 0
        for pk in iter_packets(self.entry["file"], batch_records=self.batch_records, payload_hash=True):
            idx = np.arange(row, row + len(pk), dtype=np.int64)
            row += len(pk)
            if self.idb >= 0:
                keep = pk["iface"].to_numpy(np.int64) == self.idb
                pk, idx = pk[keep], idx[keep]
            yield pk, idx

    def points_of(self, pk: pd.DataFrame) -> np.ndarray:
        """Point id per row."""
        if self.ifx_pid is None:
            return np.full(len(pk), self.pid, np.int64)
        ifx, pid = self.ifx_pid
        at = np.clip(np.searchsorted(ifx, pk["ifindex"].to_numpy(np.int64)), 0, ifx.shape[0] - 1)
        return pid[at]


def _rss() -> int:
    """Resident bytes of this process now (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _survey(files: list[_File], sample: ClockSample,
            window_ns: int = DEFAULT_WINDOW_NS) -> tuple[list[CapturePoint], np.ndarray, np.ndarray, int]:  # fmt: skip
    """Pass 1: the points, each file's disorder (ns) and matchable rows, and the most matchable rows of all files
    within ``window_ns`` (:class:`_Density`); the clock sample filled (in input order)."""
    seen: list[set] = []
    density = _Density(window_ns)
    late = np.zeros(len(files), np.int64)
    rows = np.zeros(len(files), np.int64)
    codes: dict[
        tuple[int, int], int
    ] = {}  # (file, ifindex) -> provisional point code while points are unknown
    for f, src in enumerate(files):
        pairs: set = set()
        top = np.iinfo(np.int64).min
        for pk, idx in src.tables():
            ts = pk["ts_ns"].to_numpy(np.int64)
            ifx = pk["ifindex"].to_numpy(np.int64)
            pairs.update(
                map(tuple, np.unique(np.stack([pk["iface"].to_numpy(np.int64), ifx], 1), axis=0).tolist())
            )
            ok = ts >= 0
            if ok.any():
                run = np.maximum.accumulate(np.maximum(ts[ok], top))
                late[f] = max(late[f], int((run - ts[ok]).max()))
                top = int(run[-1])
            fp = packet_fingerprints(pk)
            rows[f] += int((fp != 0).sum())
            density.add(ts[fp != 0])
            u, inv = np.unique(ifx, return_inverse=True)
            code = np.array([codes.setdefault((f, int(x)), len(codes)) for x in u], np.int64)[inv.reshape(-1)]
            sample.add(pk, fp, code, idx)
        seen.append(pairs)
    split = []
    owner = []
    for f, src in enumerate(files):
        pairs = sorted(seen[f])
        got = split_entry(src.entry, pd.DataFrame({"iface": [p[0] for p in pairs], "ifindex": [p[1] for p in pairs]},
                                                  dtype=np.int64))  # fmt: skip
        split.extend(pt for pt, _ in got)
        owner.extend([f] * len(got))
    pts = name_points(split)
    owner = np.array(owner, np.int64)
    base = {f: int(np.flatnonzero(owner == f)[0]) for f in range(len(files))}
    lut = np.zeros(max(len(codes), 1), np.int64)
    for f, src in enumerate(files):
        mine = pts[base[f] : base[f] + int((owner == f).sum())]
        if len(mine) > 1 or mine[0].ifindex >= 0:
            ifx = np.array([p.ifindex for p in mine], np.int64)
            src.ifx_pid = (ifx, base[f] + np.arange(len(mine), dtype=np.int64))
        src.pid = base[f]
    for (f, x), c in codes.items():
        src = files[f]
        lut[c] = src.pid if src.ifx_pid is None else int(src.ifx_pid[1][np.searchsorted(src.ifx_pid[0], x)])
    sample.relabel(lut)
    return pts, late, rows, density.peak()


class _Density:
    """Matchable rows per quarter of ``window_ns`` (timestamps as captured), summed over the files: the most rows any
    ``window_ns`` of traffic can hold is at most the densest five consecutive quarters."""

    QUARTERS = 4

    def __init__(self, window_ns: int) -> None:
        self.q = max(int(window_ns) // self.QUARTERS, 1)
        self.counts: dict[int, int] = {}

    def add(self, ts: np.ndarray) -> None:
        """Count rows at these timestamps."""
        u, c = np.unique(ts[ts >= 0] // self.q, return_counts=True)
        for k, n in zip(u.tolist(), c.tolist(), strict=True):
            self.counts[k] = self.counts.get(k, 0) + n

    def peak(self) -> int:
        """Most rows in ``QUARTERS + 1`` consecutive quarters."""
        if not self.counts:
            return 0
        k = np.array(sorted(self.counts), np.int64)
        run = np.concatenate([[0], np.cumsum([self.counts[x] for x in k.tolist()])])
        end = np.searchsorted(k, k + self.QUARTERS, side="right")
        return int((run[end] - run[: k.shape[0]]).max())


def correlate_stream(entries: list[dict], *, window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None,
                     memory: int | None = None, window_rows: int | None = None,
                     out: str | os.PathLike | None = None, observer=None) -> tuple[Correlation, StreamStats]:  # fmt: skip
    """Correlate manifest entries' files in windows (module doc) within ``memory`` bytes, or of about
    ``window_rows`` rows if given; hops to ``out``. ``observer`` (e.g. :class:`pcaptools.k8s.diagnose.PacketEvidence`)
    is told the points (``points(pts)``), each packet table read in the second pass (``batch(file, table, point ids,
    input keys, corrected times)``) and the journey of every row emitted (``emitted(keys, journeys)``)."""
    memory = default_memory() if memory is None else int(memory)
    nf = max(len(entries), 1)
    fixed = BASE_MEMORY + nf * FILE_WINDOW
    if window_rows is None:
        batch_records = batch_records_for(memory, nf)
    else:
        batch_records = int(np.clip(window_rows // (4 * nf), 1 << 8, 1 << 18))
    files = [_File(e, batch_records) for e in entries]
    check_options(
        list(dict.fromkeys(str(e.get("node") or Path(e["file"]).name.split(".")[0]) for e in entries)),
        window_ns,
        reference,
    )
    sample = ClockSample()
    pts, late, rows, dense = _survey(files, sample, window_ns)
    if observer is not None:
        observer.points(pts)
    skip_notes = shared_file_notes(src.skipped for src in files)  # as CaptureSet.from_frames says them
    if observer is not None:
        observer.reader_notes = list(skip_notes)
    floor = None
    parts = 1
    if window_rows is None:  # what is left once the libraries, the readers and the spine's byte a journey have theirs
        fixed = max(fixed, _rss() + nf * FILE_WINDOW)
        window_rows = max(int((memory * MARGIN - fixed - SPINE_COST * int(rows.sum())) // ROW_COST), MIN_WINDOW_ROWS)
        parts = partitions_for(dense, window_rows)
        floor = floor_note(memory, window_ns, dense, window_rows, fixed + SPINE_COST * int(rows.sum()), parts=parts)
        if floor is not None:  # said before the long part of the run, and kept in the result
            print(f"pcaptools: {floor}", file=sys.stderr, flush=True)
        if parts > 1:  # disk the user did not ask for (a tmpfs TMPDIR is memory): say where and about how much
            print(f"pcaptools: {spill_note(dense, parts)}", file=sys.stderr, flush=True)
    nodes = list(dict.fromkeys(p.node for p in pts))
    point_node = np.array([nodes.index(p.node) for p in pts], np.int64)
    offsets, params = sample.estimate(nodes, point_node, reference=reference)
    del sample
    for src in files:
        src.node = int(point_node[src.pid])
    m = matcher(pts, window_ns, Categories(), spine=SpilledSpine(len(pts), chunk_rows=summary_rows(window_rows)))
    accounts = RowAccounts(len(pts))  # counted in pass 2, where each row is read once (the survey reads them too)
    windows = _windows(files, m, params, late, window_rows, observer, parts=parts, accounts=accounts)
    writer = None
    try:
        writer = _HopsWriter(out)
        for part in windows:
            writer.add(part)
            if observer is not None:
                observer.emitted(part.key, part.journey)
        corr = finish(m, empty(HOPS_COLUMNS), offsets,
                      [*skip_notes, *clock_notes(offsets, params), *([floor] if floor else [])],
                      **accounts.fields([p.name for p in pts]))  # fmt: skip
        rewritten = writer.close(m)
    except BaseException:  # an error, Ctrl-C or SIGTERM (signals_as_interrupt): no partial hops file left beside out
        if writer is not None:
            writer.discard()
        raise
    finally:  # the partitions' and the spine's files, on success, on an error, on Ctrl-C and on SIGTERM
        try:
            windows.close()  # its spill removed now, not whenever the generator is collected
        finally:
            m.spine.close()
    stats = StreamStats(windows=m.windows, carried_journeys=m.carried_journeys, carried_rows=m.carried_rows, passes=2,
                        window_rows=int(window_rows), disorder_ns=int(late.max()) if late.size else 0, rewritten=rewritten,
                        partitions=parts)  # fmt: skip
    return corr, stats


def batch_records_for(memory: int, files: int) -> int:
    """Records each of ``files`` captures is read in per batch within ``memory`` bytes: an equal share of what the
    budget leaves beyond the libraries (:data:`BASE_MEMORY`), at most :data:`BATCH_SHARE`, at :data:`BATCH_ROW_COST`
    a record, between :data:`MIN_BATCH_RECORDS` (a batch's fixed cost) and :data:`MAX_BATCH_RECORDS`."""
    share = min(max(int(memory * MARGIN) - BASE_MEMORY, 0) // max(int(files), 1), BATCH_SHARE)
    return int(np.clip(share // BATCH_ROW_COST, MIN_BATCH_RECORDS, MAX_BATCH_RECORDS))


def summary_rows(window_rows: int) -> int:
    """Rows of the spilled spine summed up at a time: the memory of a window of ``window_rows`` (which is free by
    then) at :data:`SUMMARY_ROW_COST` a row."""
    return max(int(window_rows) * ROW_COST // SUMMARY_ROW_COST, 1)


def partitions_for(dense: int, window_rows: int) -> int:
    """Fingerprint partitions a window of the densest traffic (``dense`` rows in ``window_ns``) is matched in so that
    each holds about ``window_rows`` rows at a step (1: it fits, matched in memory)."""
    need = FLOOR_ROWS * dense
    return 1 if need <= window_rows else min(int(np.ceil(SPAN_ROWS * need / window_rows)), MAX_PARTITIONS)


def spill_note(dense: int, parts: int) -> str:
    """What a partitioned run writes to disk: the densest windows' sightings, in ``TMPDIR``, removed at the end."""
    import tempfile

    where = tempfile.gettempdir()
    return (f"windows denser than the memory budget are matched in {parts:,} fingerprint partitions spilled to {where} "
            f"(up to about {dense * ROW_BYTES / (1 << 20):,.0f} MiB at a time, removed at the end; set TMPDIR to move it)")


def floor_note(memory: int, window_ns: int, dense: int, window_rows: int, fixed: int, *, parts: int = 1) -> str | None:
    """What to do when what the run holds before any window (``fixed``: libraries, readers, a byte a journey) is over the
    budget, or when one matching window of the densest traffic (``dense`` rows, carried journeys and the rows that
    follow them: :data:`FLOOR_ROWS` times as many, split in ``parts`` partitions) needs more than the ``window_rows``
    the budget leaves; None when both fit. A partitioned window is matched a partition at a time, :data:`SPAN_ROWS`
    times its share of the densest rows at most (:func:`partitions_for`)."""
    need_rows = int(np.ceil(FLOOR_ROWS * dense if parts <= 1 else SPAN_ROWS * FLOOR_ROWS * dense / parts))
    if need_rows <= window_rows and fixed <= memory * MARGIN:
        return None
    mib = 1 << 20
    window, rest = ROW_COST * need_rows / mib, fixed / mib
    need = int(np.ceil((window + rest) / MARGIN))
    if parts > 1:
        return (f"the memory budget ({memory / mib:,.0f} MiB) is below this capture set's floor: the run holds up to about {rest:,.0f} MiB "
                f"whatever the budget (libraries, readers, the clock estimate, a byte per journey), besides about {window:,.1f} MiB for one "
                f"partition of its densest {window_ns / 1e6:,.0f} ms (--window-ms, {dense:,} packet sightings, matched in {parts:,} "
                f"partitions spilled to disk): up to about {need:,} MiB in all, whatever the budget; give --memory "
                f"{need}MiB or more (a smaller --window-ms does not lower this, and sightings of one packet further apart are "
                f"then not joined)")
    return (f"the memory budget ({memory / mib:,.0f} MiB) is below this capture set's floor: its densest {window_ns / 1e6:,.0f} ms "
            f"(--window-ms) hold {dense:,} packet sightings that are matched together (about {window:,.0f} MiB), besides "
            f"{rest:,.0f} MiB the run holds anyway (libraries, readers, a byte per journey): about {need:,} MiB in all, "
            f"which it takes whatever the budget; give --memory {need}MiB or more, or a smaller --window-ms (sightings of "
            f"one packet further apart are then not joined)")


def _windows(files: list[_File], m, params: dict, late: np.ndarray, window_rows: int, observer=None, *,
             parts: int = 1, accounts: RowAccounts | None = None) -> Iterator[Part]:  # fmt: skip
    """Pass 2: read the files merged by corrected time and step the matcher once per window (module doc); with
    ``parts`` > 1, windows of up to ``parts * window_rows`` rows spilled and matched in fingerprint partitions
    (:mod:`.partition`). ``accounts``: every row read is counted there, once."""
    if parts > 1:
        from pcaptools.correlate.partition import Partitions

        spill = Partitions(parts, flush_rows=window_rows)
        try:
            yield from _window_steps(files, m, params, late, window_rows, observer, spill, accounts)
        finally:
            spill.close()
        return
    yield from _window_steps(files, m, params, late, window_rows, observer, None, accounts)


def _window_steps(files: list[_File], m, params: dict, late: np.ndarray, window_rows: int, observer, spill,
                  accounts: RowAccounts | None) -> Iterator[Part]:  # fmt: skip
    """:func:`_windows`: in memory (``spill`` None: rows held per file and cut at the horizon) or partitioned (every
    row read goes to ``spill``; a step matches all of them, the rows at or past the horizon are carried)."""
    from pcaptools.correlate.partition import step_partitions

    n = len(files)
    cap = window_rows * (spill.parts if spill is not None else 1)
    its = [src.tables() for src in files]
    bound = np.full(n, np.iinfo(np.int64).min)  # corrected time every later row of the file reaches
    done = np.zeros(n, bool)
    top = np.full(n, np.iinfo(np.int64).min)
    pending: list[list[dict]] = [[] for _ in range(n)]
    held = 0
    while not done.all():
        f = int(np.argmin(np.where(done, np.iinfo(np.int64).max, bound)))
        got = next(its[f], None)
        if got is None:
            done[f] = True
            bound[f] = np.iinfo(np.int64).max
        else:
            pk, idx = got
            ts = pk["ts_ns"].to_numpy(np.int64)
            if (ts >= 0).any():
                top[f] = max(top[f], int(ts.max()))
                bound[f] = int(
                    correct(np.array([top[f] - late[f]], np.int64), np.array([files[f].node]), params)[0]
                )
            pid = files[f].points_of(pk)
            fp = packet_fingerprints(pk)
            if accounts is not None:
                accounts.add(pk, fp, pid)
            tc = correct(ts, np.full(ts.shape[0], files[f].node), params)
            rows = rows_from(pk, fp, tc, (pid << 40) | idx, pid, m.cats)
            if observer is not None:
                observer.batch(files[f].entry["file"], pk, pid, (pid << 40) | idx, tc)
            if spill is None:
                pending[f].append(rows)
            else:
                spill.add(rows)
            held += rows["fp"].shape[0]
        if spill is None:
            carry = m.carry["fp"].shape[0] if m.carry else 0
        else:
            carry = len(spill) - held
        if done.all() or held < max(cap - carry, carry // 2, cap // 4):  # a carry re-walked at most ~3 times
            continue
        horizon = int(bound[~done].min())
        if spill is None:
            new, held = _cut(pending, horizon)
            yield m.step(new, horizon)
        else:
            held = 0
            yield from step_partitions(m, spill, horizon, chunk_rows=window_rows)
    if spill is None:
        yield m.step(_cut(pending, None)[0], None)
    else:
        yield from step_partitions(m, spill, None, chunk_rows=window_rows)


def _cut(pending: list[list[dict]], horizon: int | None) -> tuple[dict, int]:
    """Pending rows before ``horizon`` (all if None), taken out of ``pending``; and how many stay."""
    from pcaptools.correlate.windows import concat_rows, take_rows

    take, held = [], 0
    for k, parts in enumerate(pending):
        rows = concat_rows(parts)
        if not rows:
            pending[k] = []
            continue
        if horizon is None:
            take.append(rows)
            pending[k] = []
            continue
        early = rows["tc"] < horizon
        take.append(take_rows(rows, np.flatnonzero(early)))
        rest = take_rows(rows, np.flatnonzero(~early))
        pending[k] = [rest] if rest["fp"].shape[0] else []
        held += rest["fp"].shape[0]
    return concat_rows(take), held


def hops_schema():
    """The hops table's Arrow schema: HOPS_COLUMNS, categories as int32-indexed string dictionaries (nullable: a
    missing value), numbers and flags declared non-null (they never are): Parquet then writes no definition levels
    for them, a sixth of the write; ``pd.read_parquet`` gives the same table."""
    import pyarrow as pa

    types = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "uint64": pa.uint64(), "bool": pa.bool_(),
             "category": pa.dictionary(pa.int32(), pa.string())}  # fmt: skip
    return pa.schema([pa.field(c.name, types[c.dtype], nullable=c.dtype == "category") for c in HOPS_COLUMNS])


def _arrow(hops: pd.DataFrame, codes: dict[str, np.ndarray] | None = None):
    """The hops as an Arrow table of :func:`hops_schema`; ``codes``: int32 codes of category columns, if at hand
    (:attr:`.windows.Part.codes`), taken as the dictionary indices instead of widening the columns' own."""
    import pyarrow as pa

    schema = hops_schema()
    given = codes or {}
    cols = []
    for fld in schema:
        s = hops[fld.name]
        if isinstance(s.dtype, pd.CategoricalDtype):  # codes as indices (-1: null), unchecked: a Categorical's are in range
            idx = given.get(fld.name, s.array.codes)
            cols.append(pa.DictionaryArray.from_arrays(idx.astype(np.int32, copy=False),
                                                       pa.array(s.cat.categories.astype(str).to_numpy(object), pa.string()),
                                                       from_pandas=bool(idx.size and idx.min() < 0), safe=False))  # fmt: skip
        else:
            cols.append(pa.array(s.to_numpy(), fld.type))
    return pa.Table.from_arrays(cols, schema=schema)


def write_hops(parts: Iterable[pd.DataFrame], out: str | os.PathLike) -> None:
    """Write hops tables to one Parquet file, a row group each."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(os.fspath(out), hops_schema(), **_PARQUET) as w:
        for hops in parts:
            w.write_table(_arrow(hops))


_PARQUET = {"use_dictionary": [c.name for c in HOPS_COLUMNS if c.dtype == "category"],
            "write_statistics": [c.name for c in HOPS_COLUMNS if c.dtype != "category"]}  # fmt: skip
"""Dictionary pages for the category columns only: trying them on fingerprints and times costs a third of the write.
Min/max statistics for the numeric columns only (journeys and times filter row groups): those of the text columns
cost a quarter of the write."""


class _HopsWriter:
    """Hops of each window appended, in a writer thread as they come, to a file staged beside ``out`` (``.OUT.partial``)
    that becomes ``out`` only once complete (renamed; copied into an ``out`` that is no regular file, such as a pipe
    or ``/dev/stdout``, staged in ``TMPDIR`` then): an error, Ctrl-C or SIGTERM leaves ``out`` as it was."""

    def __init__(self, out: str | os.PathLike | None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.out = None if out is None else Path(out)
        self.writer = None
        self.pool = ThreadPoolExecutor(1) if out is not None else None
        self.pending: list = []
        self.ambiguous = 0  # journeys written as ambiguous (ambiguous among their window's: so also in the end)
        self.staged: list[Path] = []  # files of ours to remove on an error (the partial one, a rewrite of it)
        self.tmp = None if out is None else self._stage("partial")
        if self.tmp is not None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(os.fspath(self.tmp), hops_schema(), **_PARQUET)

    def _stage(self, what: str) -> Path:
        """A new file for the hops on their way to ``out``: ``.OUT.WHAT`` beside it, or in ``TMPDIR`` when ``out`` is
        no regular file (nothing can be renamed onto a pipe)."""
        if self._pipe():
            import tempfile

            with interrupts_deferred():  # recorded as soon as it exists: removed whatever comes next
                fd, name = tempfile.mkstemp(prefix=f"pcaptools-hops-{what}-", suffix=".parquet")
                os.close(fd)
                self.staged.append(Path(name))
        else:
            self.staged.append(self.out.with_name(f".{self.out.name}.{what}"))
        return self.staged[-1]

    def _pipe(self) -> bool:
        """Whether ``out`` is a FIFO, a character device or a socket (written through, never replaced)."""
        import stat

        try:
            mode = os.stat(self.out).st_mode
        except OSError:
            return False
        return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)

    def _publish(self, path: Path) -> None:
        """Make the complete file at ``path`` ``out``."""
        if self._pipe():
            import shutil

            with open(path, "rb") as src, open(self.out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.remove(path)
        else:
            os.replace(path, self.out)

    def add(self, part: Part) -> None:
        """Queue one window's hops (Parquet writing releases the GIL: matching goes on meanwhile)."""
        h = part.hops
        if self.writer is None or not len(h):
            return
        self.pending = [f for f in self.pending if not f.done() or f.result()]
        if len(self.pending) > 1:  # at most one window waits: memory stays bounded
            self.pending.pop(0).result()
        codes = part.codes
        self.pending.append(self.pool.submit(lambda: self.writer.write_table(_arrow(h, codes))))  # converted there too
        first = np.ones(len(h), bool)
        j = h["journey"].to_numpy()
        first[1:] = j[1:] != j[:-1]
        self.ambiguous += int(h["ambiguous"].to_numpy()[first].sum())

    def close(self, m) -> bool:
        """Finish the file and make it ``out``; copied with ambiguity corrected when a later window changed it (``m``:
        the matcher, None for one window). True if copied."""
        if self.writer is None:
            return False
        for f in self.pending:
            f.result()
        self.pool.shutdown()
        self.writer.close()
        final = None if m is None else m.spine.ambiguous()
        if final is None or int(final.sum()) == self.ambiguous:  # as many ambiguous in the end means the same ones
            self._publish(self.tmp)
            return False
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = pq.ParquetFile(os.fspath(self.tmp))
        fixed = self._stage("rewrite")
        with pq.ParquetWriter(os.fspath(fixed), hops_schema(), **_PARQUET) as w:
            for g in range(src.num_row_groups):
                t = src.read_row_group(g)
                j = t.column("journey").to_numpy()
                k = t.schema.get_field_index("ambiguous")
                t = t.set_column(k, t.schema.field(k), pa.array(final[j], pa.bool_()))
                w.write_table(t)
        src.close()
        self._publish(fixed)
        os.remove(self.tmp)
        return True

    def discard(self) -> None:
        """After an error or an interrupt: the writer thread's last window finished (not reported: the caller's error
        is), the file closed and every staged file removed; ``out`` is left as it was."""
        if self.writer is None:
            return
        with interrupts_deferred():  # the thread still writes to the file: it is closed once, after that
            for f in self.pending:
                f.exception()
            self.pool.shutdown()
            with contextlib.suppress(Exception):  # the error that brought us here is the one to report
                self.writer.close()
            for path in self.staged:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
