"""Journey -> connection labels of a hops file larger than memory, kept per use of a 5-tuple instead of per journey.

:func:`pcaptools.k8s.paths._connections` labels a hops table in memory: each journey's rows reduced to one element
per unordered 5-tuple (its earliest time, whether it holds a SYN / a SYN or SYN-ACK), each tuple's elements in (time,
journey) order cut into *uses* (:func:`pcaptools.k8s.paths._epochs`: a new SYN, or a tuple idle for ``IDLE_NS``), the
connections the components of the journey - use graph, numbered by (earliest time, least journey). The same labels,
from a hops Parquet file read a row group at a time (:func:`whole_journeys` carries a journey cut by a row-group
boundary to the next one):

1. :meth:`LabelBuilder.add`: each journey's elements (:func:`~pcaptools.k8s.journeys.run_distinct`, as
   ``_connections``), appended to files partitioned by a hash of the tuple; the elements of journeys with two tuples
   or more (NAT: the only journeys that link uses) to a links file too, in journey order.
2. :meth:`LabelBuilder.finish`: per partition, its elements by (tuple, time, journey) cut into uses as ``_epochs``
   cuts them; per use its first (time, journey), least journey and hops rows. Each links-file element is looked up to
   its use; consecutive uses of one journey are an edge (each distinct edge once); the components of the uses are the
   connections, numbered by (earliest time, least journey) as ``_connections`` ranks its components.
3. :meth:`Labels.rows`: the connection of each row of a frame of whole journeys: its journey's first element's use
   (the last use of its tuple starting at or before the element's (time, journey)).

Memory: per use of a tuple (a connection has one per tuple, two through NAT) 40 bytes kept, 64 while labelled; per
distinct address its id; per distinct link edge 8 bytes. Transient: one row group and one partition's elements (37
bytes each and their sort: every element of one tuple lies in one partition, so a connection of many journeys is held
whole while its uses are cut); the elements and links buffered before they are written (:data:`BUFFER_ELEMENTS`).
Disk: 37 bytes a (journey, tuple) element, 32 more for a journey of two tuples or more. Nothing is kept per journey.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.k8s.journeys import grouped, journey_index, run_distinct
from pcaptools.k8s.paths import _epochs

ELEMENT = np.dtype([("k1", "<i8"), ("k2", "<i8"), ("t", "<i8"), ("j", "<i8"), ("n", "<i4"), ("f", "u1")])
"""A (journey, unordered 5-tuple) element on disk: the tuple as two numbers (``proto << 56 | lower endpoint``, higher
endpoint; an endpoint is ``address id * 65538 + port + 1``), its earliest corrected time, the journey, the journey's
hops rows on its first element (0 on the others) and flags (1: a SYN without ACK, 2: a SYN or SYN-ACK)."""

LINK = np.dtype([("k1", "<i8"), ("k2", "<i8"), ("t", "<i8"), ("j", "<i8")])
"""An element of a journey of two tuples or more, in the links file (journey order)."""

ELEMENT_PEAK = 120
"""Bytes one element takes while its partition is cut into uses (the records, their sort order and sorted copies)."""

BUFFER_ELEMENTS = 1 << 17
"""Elements (and links) held before they are appended to their files (about 5 MiB)."""

MAX_PARTITIONS = 1024
"""At most this many element partitions (files appended to a buffer at a time, opened and closed per write)."""

LABEL_COLUMNS = ["journey", "proto", "src", "dst", "sport", "dport", "ts_corrected_ns", "tcp_flags"]
"""The hops columns the labels read."""


def whole_journeys(pf, columns: list[str] | None = None) -> Iterator:
    """The row groups of a hops Parquet file (``columns`` of them) as Arrow tables in which every journey is whole:
    the rows of a journey a row-group boundary cuts are carried to the next table. The correlation writes each
    journey's rows together and journeys in ascending order (:mod:`pcaptools.correlate.windows`); a file that is not
    so raises RuntimeError."""
    import pyarrow as pa

    carry = None
    last = None  # the greatest journey yielded so far
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=columns)
        if carry is not None:
            t = pa.concat_tables([carry, t])
            carry = None
        j = t.column("journey").to_numpy()
        if not len(j):
            continue
        if not grouped(j) or (last is not None and j[0] <= last):
            raise RuntimeError(f"{pf.metadata.num_rows:,}-row hops file: row group {g} is not in journey order (a "
                               "journey's rows together, journeys ascending), which the bounded labels need")  # fmt: skip
        if g + 1 < pf.num_row_groups and not _starts_after(pf, g + 1, int(j[-1])):
            cut = int(np.searchsorted(j, j[-1]))  # the last journey may go on in the next row group
            carry = t.slice(cut)
            t = t.slice(0, cut)
            if not cut:
                continue
        last = int(j[len(t) - 1])
        yield t
    if carry is not None and len(carry):
        yield carry


def _starts_after(pf, g: int, journey: int) -> bool:
    """Whether row group ``g``'s journeys are all after ``journey`` by its statistics (False when it has none): then
    the table before it is yielded whole, not cut and concatenated (chunked columns take and write slower)."""
    md = pf.metadata.row_group(g)
    at = [md.column(i).path_in_schema for i in range(md.num_columns)].index("journey")
    st = md.column(at).statistics
    return bool(st is not None and st.has_min_max and st.min > journey)


def _elements(f: pd.DataFrame, addr: dict[str, int]) -> dict[str, np.ndarray]:
    """Each journey's (journey, unordered 5-tuple) elements of a frame of whole journeys (:data:`LABEL_COLUMNS`), as
    ``_connections`` reduces them, in journey order: ``k1``, ``k2`` (the tuple), ``t``, ``j``, ``n``, ``f``
    (:data:`ELEMENT`); ``addr`` gives each address its id (grown as new addresses come)."""
    keep = (f["proto"].to_numpy() >= 0) & f["src"].notna().to_numpy() & f["dst"].notna().to_numpy()  # as _build
    f = f.loc[keep] if not keep.all() else f
    j = f["journey"].to_numpy(np.int64)
    proto = f["proto"].to_numpy(np.int64)
    e1 = _addr_ids(f["src"], addr) * 65538 + f["sport"].to_numpy(np.int64) + 1
    e2 = _addr_ids(f["dst"], addr) * 65538 + f["dport"].to_numpy(np.int64) + 1
    flags = f["tcp_flags"].to_numpy(np.int64)
    tcp = (proto == 6) & (flags >= 0)
    syn = tcp & ((flags & 0x12) == 0x02)
    hs = tcp & ((flags & 0x02) != 0)
    lo, hi = np.minimum(e1, e2), np.maximum(e1, e2)
    if int(hi.max(initial=0)) >= 1 << 56:
        raise RuntimeError(f"{len(addr):,} addresses: more than the bounded labels number (2^39)")
    first, tmin, any_syn, any_hs = run_distinct(j, proto, lo, hi, f["ts_corrected_ns"].to_numpy(np.int64), syn, hs)
    ej = j[first]
    n = np.zeros(len(first), np.int32)
    if len(first):
        uj, ji = journey_index(j)
        head = np.r_[True, ej[1:] != ej[:-1]]  # a journey's elements are one run, in row order
        n[head] = np.bincount(ji, minlength=len(uj))
    return {"k1": proto[first] << 56 | lo[first], "k2": hi[first], "t": tmin, "j": ej, "n": n,
            "f": any_syn.astype(np.uint8) | (any_hs.astype(np.uint8) << 1)}  # fmt: skip


def _addr_ids(col: pd.Series, addr: dict[str, int]) -> np.ndarray:
    """Ids of a categorical address column's values in ``addr`` (grown as new addresses come)."""
    cats = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else None
    if cats is None:
        col = col.astype("category")
        cats = col.cat.categories
    lut = np.array([addr.setdefault(str(c), len(addr)) for c in cats] + [-1], np.int64)
    return lut[col.cat.codes.to_numpy(np.int64)]


def _partition(k1: np.ndarray, k2: np.ndarray, parts: int) -> np.ndarray:
    """Each tuple's partition (a hash of it modulo ``parts``)."""
    h = (k1.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (k2.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
    return ((h >> np.uint64(29)) % np.uint64(parts)).astype(np.int64)


class LabelBuilder:
    """Pass 1 of the labels (module doc): :meth:`add` each frame of whole journeys, then :meth:`finish`."""

    def __init__(self, tmp: Path, *, rows: int, memory: int) -> None:
        """``rows``: the hops file's rows (an upper bound of its elements), ``memory``: the budget in bytes (a tenth
        of it for one partition's elements)."""
        self.tmp = Path(tmp)
        self.parts = int(min(max(-(-rows * ELEMENT_PEAK // max(memory // 10, 1)), 1), MAX_PARTITIONS))
        self.addr: dict[str, int] = {}
        self.held: list[dict] = []
        self.n_held = 0
        self.links: list[np.ndarray] = []
        self.written = np.zeros(self.parts, np.int64)

    def add(self, f: pd.DataFrame) -> None:
        """Take the elements of a frame of whole journeys (:data:`LABEL_COLUMNS`)."""
        e = _elements(f, self.addr)
        if not len(e["j"]):
            return
        self.held.append(e)
        self.n_held += len(e["j"])
        j = e["j"]
        new = np.r_[True, j[1:] != j[:-1]]
        size = np.diff(np.r_[np.flatnonzero(new), len(j)])
        multi = np.repeat(size > 1, size)  # elements of journeys of two tuples or more
        if multi.any():
            rec = np.empty(int(multi.sum()), LINK)
            for c in LINK.names:
                rec[c] = e[c][multi]
            self.links.append(rec)
        if self.n_held >= BUFFER_ELEMENTS:
            self._flush()

    def _flush(self) -> None:
        """Append the held elements to their partitions' files, the links to the links file."""
        if self.held:
            rec = np.empty(self.n_held, ELEMENT)
            for c in ELEMENT.names:
                rec[c] = np.concatenate([e[c] for e in self.held])
            self.held, self.n_held = [], 0
            p = _partition(rec["k1"], rec["k2"], self.parts)
            order = np.argsort(p, kind="stable")
            bounds = np.searchsorted(p[order], np.arange(self.parts + 1))
            for k in np.flatnonzero(np.diff(bounds)).tolist():
                with open(self.tmp / f"elements-{k}.bin", "ab") as fh:
                    rec[order[bounds[k]:bounds[k + 1]]].tofile(fh)
                self.written[k] += bounds[k + 1] - bounds[k]
        if self.links:
            with open(self.tmp / "links.bin", "ab") as fh:
                np.concatenate(self.links).tofile(fh)
            self.links = []

    def finish(self) -> Labels:
        """The labels (module doc, 2.): uses cut per partition, linked, numbered as ``_connections`` numbers them."""
        self._flush()
        cols: dict[str, list] = {c: [] for c in ("k1", "k2", "t", "j", "jmin", "rows")}
        for k in np.flatnonzero(self.written).tolist():
            path = self.tmp / f"elements-{k}.bin"
            for c, v in _uses(np.fromfile(path, ELEMENT)).items():
                cols[c].append(v)
            path.unlink()
        u = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in cols.items()}
        del cols
        order = np.lexsort((u["j"], u["t"], u["k2"], u["k1"]))
        u = {c: v[order] for c, v in u.items()}
        labels = Labels(u["k1"], u["k2"], u["t"], u["j"], np.zeros(len(order), np.int64))
        del order
        root = _components(len(u["j"]), self._edges(labels))
        # per component its earliest time and least journey; components ranked by both (as _connections ranks them)
        ct = np.full(len(root), np.iinfo(np.int64).max, np.int64)
        cj = np.full(len(root), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(ct, root, u["t"])
        np.minimum.at(cj, root, u["jmin"])
        roots = np.flatnonzero(root == np.arange(len(root)))
        rank = np.empty(len(root), np.int64)
        rank[roots[np.lexsort((cj[roots], ct[roots]))]] = np.arange(len(roots))
        labels.conn = rank[root]
        labels.addr = self.addr
        labels.rows_c = np.bincount(labels.conn, weights=u["rows"], minlength=len(roots)).astype(np.int64)
        return labels

    def _edges(self, labels: Labels) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (use, use) edges of the links file: consecutive elements of one journey, by their uses."""
        path = self.tmp / "links.bin"
        if not path.exists():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        nu = max(len(labels.k1), 1)
        found: list[np.ndarray] = []
        held = 0
        prev = None  # the last link of the previous chunk: its journey may go on
        with open(path, "rb") as fh:
            while True:
                rec = np.fromfile(fh, LINK, count=BUFFER_ELEMENTS)
                if not len(rec):
                    break
                use = labels.use_of(rec["k1"], rec["k2"], rec["t"], rec["j"])
                j = rec["j"]
                if prev is not None:
                    use, j = np.r_[prev[0], use], np.r_[prev[1], j]
                same = j[1:] == j[:-1]
                a, b = use[:-1][same], use[1:][same]
                found.append(np.unique(np.minimum(a, b) * nu + np.maximum(a, b)))
                held += len(found[-1])
                if held > BUFFER_ELEMENTS:
                    found = [np.unique(np.concatenate(found))]
                    held = len(found[0])
                prev = (use[-1:], j[-1:])
        path.unlink()
        e = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
        return e // nu, e % nu


def _uses(rec: np.ndarray) -> dict[str, np.ndarray]:
    """The uses of one partition's elements (module doc, 2.): each tuple's elements by (time, journey), cut where
    :func:`pcaptools.k8s.paths._epochs` cuts them (a SYN after anything but a SYN or SYN-ACK, ``IDLE_NS`` idle); per
    use its tuple, first time and journey, least journey and hops rows."""
    o = np.lexsort((rec["j"], rec["t"], rec["k2"], rec["k1"]))
    k1, k2, t, j, f = rec["k1"][o], rec["k2"][o], rec["t"][o], rec["j"][o], rec["f"][o]
    n = rec["n"][o].astype(np.int64)
    del rec, o
    if not len(j):
        return {c: np.zeros(0, np.int64) for c in ("k1", "k2", "t", "j", "jmin", "rows")}
    new = np.r_[True, (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])]
    epoch = _epochs(np.cumsum(new) - 1, j, t, (f & 1) != 0, (f & 2) != 0)  # elements are already in its order
    s = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
    return {"k1": k1[s], "k2": k2[s], "t": t[s], "j": j[s], "jmin": np.minimum.reduceat(j, s),
            "rows": np.add.reduceat(n, s)}  # fmt: skip


def _components(n: int, edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per node ``0 <= i < n``, the least node of its component in the graph of ``edges`` (label propagation with
    pointer jumping: a few rounds over the edges, which are few, one per distinct pair of linked uses)."""
    lab = np.arange(n)
    a, b = edges
    while len(a):
        m = np.minimum(lab[a], lab[b])
        new = lab.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        new = new[new]
        if np.array_equal(new, lab):
            break
        lab = new
    return lab


class Labels:
    """Journey -> connection of a hops file (module doc), kept per use of a tuple: the uses sorted by (tuple, first
    time, first journey), each one's connection, and the hops rows per connection."""

    def __init__(self, k1: np.ndarray, k2: np.ndarray, t: np.ndarray, j: np.ndarray, conn: np.ndarray) -> None:
        self.k1, self.k2, self.t, self.j, self.conn = k1, k2, t, j, conn
        self.rows_c = np.zeros(0, np.int64)
        self.addr: dict[str, int] = {}

    def use_of(self, k1: np.ndarray, k2: np.ndarray, t: np.ndarray, j: np.ndarray) -> np.ndarray:
        """The use of each element (``k1``, ``k2``, ``t``, ``j``): the last of its tuple's uses whose first (time,
        journey) is at or before the element's; a bisection over the uses sharing its ``k1``, for all elements at once."""
        lo = np.searchsorted(self.k1, k1, side="left")
        hi = np.searchsorted(self.k1, k1, side="right")
        one = hi - lo == 1  # a k1 of one use: that use
        lo[one] = hi[one]
        act = np.flatnonzero(lo < hi)
        while len(act):
            mid = (lo[act] + hi[act]) >> 1
            uk2, ut, uj = self.k2[mid], self.t[mid], self.j[mid]
            qk2, qt, qj = k2[act], t[act], j[act]
            le = (uk2 < qk2) | ((uk2 == qk2) & ((ut < qt) | ((ut == qt) & (uj <= qj))))
            lo[act] = np.where(le, mid + 1, lo[act])
            hi[act] = np.where(le, hi[act], mid)
            act = act[lo[act] < hi[act]]
        use = lo - 1
        if len(use) and ((use < 0).any() or not (np.array_equal(self.k1[use], k1) and np.array_equal(self.k2[use], k2))):
            raise RuntimeError("an element of the hops file has no use of its 5-tuple: the file changed since it was labelled")
        return use

    def rows(self, f: pd.DataFrame) -> np.ndarray:
        """The connection of each row of a frame of whole journeys (:data:`LABEL_COLUMNS`; addresses numbered as when
        labelled): its journey's first element's; -1 for a journey without a 5-tuple (it has no connection)."""
        e = _elements(f, self.addr)
        j = f["journey"].to_numpy(np.int64)
        if not len(e["j"]):
            return np.full(len(j), -1, np.int64)
        head = np.r_[True, e["j"][1:] != e["j"][:-1]]
        ej = e["j"][head]
        cj = self.conn[self.use_of(e["k1"][head], e["k2"][head], e["t"][head], ej)]
        at = np.clip(np.searchsorted(ej, j), 0, len(ej) - 1)
        return np.where(ej[at] == j, cj[at], -1)
