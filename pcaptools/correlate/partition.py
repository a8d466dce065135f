"""A window too large for the memory budget, matched a partition at a time: its rows spilled to disk by fingerprint.

Journeys are made per fingerprint (:mod:`.match` walks each fingerprint's sightings alone), and the fingerprint is
what NAT and tunnels leave alone: split by :func:`.fingerprint.fingerprint_partition` (the hash Dask's shuffle uses),
every sighting of one packet, whatever point saw it, lands in one partition, so matching one partition alone gives
its fingerprints the journeys of one walk over everything. Rows are spilled as they are read (fixed-size records,
one file per partition, appended a buffer at a time), and a journey still open at the window's end is written back
to its partition for the next window, as :class:`.windows.Matcher` carries it; so duplicates, retransmissions and
journeys spanning windows are walked with every sighting of their fingerprint.

What spans fingerprints is the numbering and the summary. Each partition's complete journeys are written to disk in
the order one window gives them (first corrected time, then fingerprint, then walk order) with those keys kept in
memory; the keys of all partitions are merged (a stable sort on time and fingerprint: equal keys share a fingerprint,
hence a partition and its order) and the journeys emitted in that order in chunks of about ``chunk_rows`` sightings,
each chunk read back from where the last one stopped in each partition's file (opened and closed per read, so
the open-file limit does not bound the partitions). The spine, the hops file and the observers see the
rows one window's emission gives, numbered on; ambiguity is per fingerprint, and corrected at the end as in any
run.

Memory: one partition's rows (carried and new) while it is matched, the keys of the window's complete journeys (32
bytes each), one chunk while it is emitted, and the spill buffer. Disk: :data:`.windows.ROW_BYTES` and a little
more per row, each row written once when read, once per window it is carried over and once when complete.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from pcaptools.correlate.fingerprint import fingerprint_partition
from pcaptools.correlate.windows import Matcher, Part, concat_rows, take_rows
from pcaptools.process import SpillDir


class Partitions:
    """Window rows on disk, split by fingerprint into ``parts`` files (in ``TMPDIR``), buffered ``flush_rows`` at a time.

    Also the files of :class:`.spine.SpilledSpine` (``prefix``): any columns, one record layout per ``kind`` of file."""

    def __init__(self, parts: int, *, flush_rows: int, prefix: str = "pcaptools-partitions-") -> None:
        self.parts = int(parts)
        self.flush_rows = max(int(flush_rows), 1)
        self.dir = SpillDir(prefix=prefix)
        self.dtypes: dict[str, np.dtype] = {}  # per kind of file, one record per row: the columns first put there
        self.rows = np.zeros(self.parts, np.int64)  # rows on disk per partition, waiting for the next step
        self.buffer: list[dict[str, np.ndarray]] = []
        self.buffered = 0

    def __len__(self) -> int:
        """Rows held (on disk and buffered)."""
        return int(self.rows.sum()) + self.buffered

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Take window rows (spilled once ``flush_rows`` are buffered)."""
        if not rows or not rows["fp"].shape[0]:
            return
        self.buffer.append(rows)
        self.buffered += rows["fp"].shape[0]
        if self.buffered >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to their partitions' files."""
        rows = concat_rows(self.buffer)
        self.buffer, self.buffered = [], 0
        if rows:
            self.put(rows, fingerprint_partition(rows["fp"], self.parts))

    def put(self, rows: dict[str, np.ndarray], part: np.ndarray | int, *, kind: str = "rows") -> None:
        """Append ``rows`` to the files of partitions ``part`` (one for all, or one per row), in their order."""
        rec = self._records(rows, kind)
        if np.ndim(part) == 0:
            self._append(int(part), rec, kind)
            return
        order = np.argsort(part, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(part))])  # any number of partitions (the spine's: its own)
        rec = rec[order]
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            self._append(p, rec[bounds[p] : bounds[p + 1]], kind)

    def take(self, p: int) -> dict[str, np.ndarray]:
        """Partition ``p``'s rows, removed from disk (empty dict if none)."""
        if not self.rows[p]:
            return {}
        path = self._path(p, "rows")
        rec = np.fromfile(path, self.dtypes["rows"])
        os.remove(path)
        self.rows[p] = 0
        return {c: np.ascontiguousarray(rec[c]) for c in rec.dtype.names}

    def read(self, p: int, kind: str, start: int, count: int) -> dict[str, np.ndarray]:
        """Records ``start`` to ``start + count`` of partition ``p``'s ``kind`` file as window rows (the file is opened
        and closed here: one open file at a time, however many partitions, whatever ``ulimit -n`` allows)."""
        dtype = self.dtypes["rows" if kind == "done" else kind]  # a complete journey's rows are window rows
        with open(self._path(p, kind), "rb") as f:
            f.seek(start * dtype.itemsize)
            rec = np.fromfile(f, dtype, count=count)
        return {c: np.ascontiguousarray(rec[c]) for c in dtype.names}

    def size(self, p: int, kind: str) -> int:
        """Records in partition ``p``'s ``kind`` file (0 if there is none)."""
        path = self._path(p, kind)
        dtype = self.dtypes.get("rows" if kind == "done" else kind)
        return os.path.getsize(path) // dtype.itemsize if dtype is not None and os.path.exists(path) else 0

    def remove(self, p: int, kind: str) -> None:
        """Delete partition ``p``'s ``kind`` file."""
        path = self._path(p, kind)
        if os.path.exists(path):
            os.remove(path)

    def close(self) -> None:
        """Remove the spill directory, whole even when Ctrl-C or SIGTERM comes meanwhile (:class:`SpillDir`)."""
        self.dir.cleanup()

    def _records(self, rows: dict[str, np.ndarray], kind: str) -> np.ndarray:
        kind = "rows" if kind == "done" else kind
        dtype = self.dtypes.get(kind)
        if dtype is None:
            dtype = self.dtypes[kind] = np.dtype([(c, v.dtype) for c, v in rows.items()])
        rec = np.empty(next(iter(rows.values())).shape[0], dtype)
        for c in dtype.names:
            rec[c] = rows[c]
        return rec

    def _append(self, p: int, rec: np.ndarray, kind: str) -> None:
        with open(self._path(p, kind), "ab") as f:
            rec.tofile(f)
        if kind == "rows":
            self.rows[p] += rec.shape[0]

    def _path(self, p: int, kind: str) -> str:
        return os.path.join(self.dir.name, f"{kind}-{p}.bin")


def step_partitions(m: Matcher, spill: Partitions, horizon: int | None, *, chunk_rows: int) -> Iterator[Part]:
    """One window of ``m`` over every row ``spill`` holds, matched a partition at a time (module doc): the journeys
    complete before ``horizon`` (None: all) emitted in chunks of about ``chunk_rows`` sightings, the others' rows
    written back to their partitions."""
    spill.flush()
    m.windows += 1
    keys: list[tuple[np.ndarray, ...]] = []  # per partition: first time, fingerprint, size, ambiguity of complete journeys
    for p in range(spill.parts):
        rows = spill.take(p)
        if not rows:
            keys.append(())
            continue
        rows = take_rows(rows, np.argsort(rows["key"], kind="stable"))  # input order, as one window holds its rows
        w = m.walk(rows, horizon)
        if w.carry.size:
            spill.put(take_rows(rows, w.carry), p)
        rank = np.argsort(w.first_t, kind="stable")  # as Matcher.emit numbers them
        size = w.size[rank]
        first = np.cumsum(w.size) - w.size
        at = np.repeat(first[rank] - (np.cumsum(size) - size), size) + np.arange(w.order.shape[0])
        if at.size:
            spill.put(take_rows(rows, w.order[at]), p, kind="done")
        keys.append((w.first_t[rank], w.fps[rank], size, w.amb[rank]))
        del rows, w
    yield from _emit_merged(m, spill, keys, chunk_rows)


def _emit_merged(m: Matcher, spill: Partitions, keys: list[tuple[np.ndarray, ...]], chunk_rows: int) -> Iterator[Part]:
    """The complete journeys of every partition, merged into one window's order and emitted a chunk at a time."""
    done = [p for p, k in enumerate(keys) if k and k[0].shape[0]]
    if not done:
        return
    first_t = np.concatenate([keys[p][0] for p in done])
    fps = np.concatenate([keys[p][1] for p in done])
    size = np.concatenate([keys[p][2] for p in done]).astype(np.int64)
    amb = np.concatenate([keys[p][3] for p in done])
    part = np.repeat(np.array(done, np.int64), [keys[p][0].shape[0] for p in done])
    del keys
    order = np.lexsort((fps, first_t))  # stable: equal keys share a fingerprint, so a partition, in its own order
    end_row = np.cumsum(size[order])
    read = np.zeros(spill.parts, np.int64)  # records of each partition's file emitted so far
    try:
        lo = 0
        while lo < order.shape[0]:
            base = int(end_row[lo - 1]) if lo else 0
            hi = max(int(np.searchsorted(end_row, base + chunk_rows, side="right")), lo + 1)
            sel = order[lo:hi]
            yield m.emit(_chunk_rows(spill, read, part[sel], size[sel]), np.arange(int(size[sel].sum())), first_t[sel],
                         size[sel], amb[sel], fps[sel])  # fmt: skip
            lo = hi
    finally:
        for p in done:
            spill.remove(p, "done")


def _chunk_rows(spill: Partitions, read: np.ndarray, part: np.ndarray, size: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of the journeys ``part``/``size`` (in emission order; each partition's are the next in its file, from
    ``read[p]`` on, which is moved past them), in that order: read partition by partition, then laid out journey by
    journey."""
    by_part = np.argsort(part, kind="stable")
    ps = np.unique(part)
    rows_of = np.bincount(part, weights=size).astype(np.int64)
    parts = []
    for p in ps.tolist():
        parts.append(spill.read(p, "done", int(read[p]), int(rows_of[p])))
        read[p] += rows_of[p]
    rows = concat_rows(parts)
    sz = size[by_part]
    start = np.empty(size.shape[0], np.int64)
    start[by_part] = np.cumsum(sz) - sz  # where each journey's rows begin in what was read
    n = int(size.sum())
    at = np.repeat(start - (np.cumsum(size) - size), size) + np.arange(n)
    return take_rows(rows, at)
