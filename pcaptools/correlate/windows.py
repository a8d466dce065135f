"""Journeys matched window by window in corrected time: the one matching engine of every correlation run.

Rows (sightings) arrive in windows of corrected time: every row of window ``k`` lies before its
``horizon`` and every later row at or after it. A journey accepts sightings until ``window_ns`` after
its first one (:mod:`.match`), so once ``horizon - first > window_ns`` it is complete: it is numbered
and emitted. Journeys that may still continue are carried over, all their rows, and walked again with
the next window's rows; walking a journey's rows again gives it the same sightings (the walk joins a
sighting to the oldest open journey lacking its place whose TTL allows it, which depends on that journey's
own rows only, and closed journeys are older than any open one), so the journeys, their numbers (by first corrected time, then fingerprint) and their hops are
those of one walk over everything. The in-memory run is the case of one window with no horizon.

Per emitted sighting a compact spine is kept (:mod:`.spine`: about 34 bytes with its share of the journey's, in
memory or, in a streamed run, on disk): hop latency percentiles, losses and ambiguity (a fingerprint owning more
than one journey, possibly in another window) are exact functions of it, computed once at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pcaptools.addr import to_u128
from pcaptools.correlate.fingerprint import combine8
from pcaptools.correlate.match import by_fingerprint, journeys
from pcaptools.correlate.spine import Spine, repeated
from pcaptools.schema import HOPS_COLUMNS, validate

CARRY = ("file", "record", "direction", "src", "dst", "sport", "dport", "proto", "tunnel", "vni",
         "outer_src", "outer_dst", "ttl", "wirelen", "ip_id", "tcp_flags")  # fmt: skip
"""Packet-table columns a hops row carries over as seen at its point."""

CATEGORIES = ("file", "direction", "src", "dst", "tunnel", "outer_src", "outer_dst")
"""Carried columns held as codes into one growing category list each (:class:`Categories`)."""

ROW_BYTES = 8 * 5 + 4 + 8 * 3 + 4 * 9 + 2 * 3
"""Bytes one sighting takes in a window (fingerprint, times, key, look, point, carried columns)."""

AHEAD = ("slot", "flow")
"""Window-row columns :meth:`Matcher.ahead` adds before the clocks are known (16 bytes a row, the one-window run
only); never carried to another window."""


class Categories:
    """One category list per column, grown in first-seen order; tables' codes are remapped into it."""

    def __init__(self, initial: dict[str, pd.Index | list[pd.Index]] | None = None) -> None:
        self.values: dict[str, list] = {c: [] for c in CATEGORIES}
        self.index: dict[str, dict] = {c: {} for c in CATEGORIES}
        self.kind: dict[str, object] = {}  # dtype of the categories the first table gave (object or str)
        for c, cats in (initial or {}).items():  # one table's categories, or several tables' in order
            for one in cats if isinstance(cats, list) else [cats]:
                self.codes_of(c, one)
        self._ids: dict[str, dict[tuple[int, int], int]] = {}  # per address column: (hi, lo) -> its id, for the run
        self._ids_of: dict[str, tuple[int, np.ndarray]] = {}  # per address column: (categories, id of each code)

    def codes_of(self, col: str, cats) -> np.ndarray:
        """Global code of each of ``cats`` (a table's categories), with -1 appended for missing values."""
        idx, vals = self.index[col], self.values[col]
        self.kind.setdefault(col, getattr(cats, "dtype", None))
        lut = np.empty(len(cats) + 1, np.int32)
        for k, v in enumerate(cats):
            code = idx.get(v)
            if code is None:
                code = idx[v] = len(vals)
                vals.append(v)
            lut[k] = code
        lut[-1] = -1
        return lut

    def encode(self, col: str, series: pd.Series) -> np.ndarray:
        """int32 global codes of a categorical column (-1 where missing)."""
        return self.codes_of(col, series.cat.categories)[series.cat.codes.to_numpy()]

    def dtype(self, col: str) -> pd.CategoricalDtype:
        """The category dtype of ``col`` as the list stands now."""
        return pd.CategoricalDtype(pd.Index(self.values[col], dtype=self.kind.get(col)))

    def address_id(self, col: str, codes: np.ndarray) -> np.ndarray:
        """One int64 per address of an address column's codes, numbered once for the run: equal where the parsed
        128-bit addresses are (text spellings of one address; a missing value counts as the address 0)."""
        n = len(self.values[col])
        got = self._ids_of.get(col)
        if got is None or got[0] != n:  # categories parsed once per growth, not per row
            hi, lo, _ = to_u128(pd.Categorical.from_codes(np.arange(n), dtype=self.dtype(col)))
            hi, lo = np.append(hi, np.uint64(0)), np.append(lo, np.uint64(0))  # code -1 (missing): 0, 0
            ids = self._ids.setdefault(col, {})
            aid = np.array([ids.setdefault(a, len(ids)) for a in zip(hi.tolist(), lo.tolist(), strict=True)], np.int64)
            got = self._ids_of[col] = (n, aid)
        return got[1][codes]


def rows_from(pk: pd.DataFrame, fp: np.ndarray, tc: np.ndarray, key: np.ndarray, point_id: np.ndarray,
              cats: Categories) -> dict[str, np.ndarray]:  # fmt: skip
    """The matchable rows (``fp != 0``) of a packet table as window rows: plain arrays, categories as global codes."""
    return rows_of([pk], [fp], tc, key, point_id, cats)


AHEAD_NEEDS = ("src", "dst", "sport", "dport", "proto", "ttl", "tunnel")
"""Carried columns :meth:`Matcher.ahead` and a row's look read: gathered first when the rest is gathered beside them."""


def rows_of(tables: list[pd.DataFrame], fps: list[np.ndarray], tc: np.ndarray | None, key: np.ndarray, point_id: np.ndarray,
            cats: Categories, *, ts_ns: np.ndarray | None = None, share: bool = False, columns: tuple[str, ...] = CARRY,
            base: bool = True, keep: np.ndarray | None = None,
            buffers: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`rows_from` of packet tables taken as one stacked table (``fps``: each one's fingerprints; ``tc``,
    ``key``, ``point_id`` and ``ts_ns``, if given: of the stacked rows; ``tc`` None: filled in by the caller):
    each column gathered once, straight into its window array, whole tables copied without an index. ``share``: a column of one table whose rows
    are all kept is its own array, not a copy (for a caller that keeps the table anyway). ``columns`` and ``base``:
    only those carried columns, and without the fingerprint, times, key, point and look (``base`` False), so that
    two threads can gather a window's rows in two parts (the look needs ``ttl`` and ``tunnel``). ``keep``: the
    stacked rows whose fingerprint is not 0, if known; ``buffers``: the window arrays to gather into, by column
    (:func:`row_buffers`; a column without one gets a new array)."""
    fp = fps[0] if len(fps) == 1 else np.concatenate(fps) if keep is None or base else None
    if keep is None:
        keep = np.flatnonzero(fp != 0)
    everything = keep.shape[0] == sum(len(t) for t in tables)
    out: dict[str, np.ndarray] = {}
    if base:
        if ts_ns is None:
            ts_ns = tables[0]["ts_ns"].to_numpy(np.int64) if len(tables) == 1 else np.concatenate([t["ts_ns"].to_numpy(np.int64) for t in tables])
        kept = (lambda a: a) if everything else (lambda a: a[keep])
        out = {"fp": kept(fp), "tc": None if tc is None else kept(tc), "key": kept(key), "point_id": kept(point_id).astype(np.int32), "ts_ns": kept(ts_ns)}
    bounds = np.cumsum([0, *(len(t) for t in tables)])
    cut = np.searchsorted(keep, bounds)  # kept rows of table i: keep[cut[i]:cut[i + 1]]
    for c in columns:
        coded = c in cats.values
        cols = [cats.codes_of(c, t[c].cat.categories) if coded else t[c].to_numpy() for t in tables]
        if share and not coded and everything and len(tables) == 1:
            out[c] = cols[0]  # the table's own array, read only
            continue
        col = (buffers or {}).get(c)
        if col is None:
            col = np.empty(keep.shape[0], np.int32 if coded else np.result_type(*cols))
        for i, t in enumerate(tables):
            lo, hi = int(cut[i]), int(cut[i + 1])
            src = t[c].cat.codes.to_numpy() if coded else cols[i]
            if hi - lo != len(t):  # not every row of the table kept
                src = src[keep[lo:hi] - bounds[i]]
            if coded:
                # code -1 (missing) picks the lookup's trailing -1; mode "wrap" (as "raise" for these indices) does not
                # make numpy gather into a temporary copy of ``out`` first
                np.take(cols[i], src, out=col[lo:hi], mode="wrap")
            else:
                col[lo:hi] = src
        out[c] = col
    if not base:
        return out
    # what a sighting looks like at its point (point, TTL, tunnelled): exact, in one int64 (the walk only compares them)
    out["look"] = (out["point_id"].astype(np.int64) << 17) | ((out["ttl"].astype(np.int64) & 0xFFFF) << 1) | (out["tunnel"] >= 0)
    return out


def row_buffers(tables: list[pd.DataFrame], cats: Categories, rows: int, columns: tuple[str, ...] = CARRY, *,
                share: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """Uninitialised window arrays of ``rows`` rows for the carried ``columns`` :func:`rows_of` copies (with the same
    ``share``), as it would allocate them. Allocated by the calling thread: glibc gives each thread an arena of its
    own, so arrays a worker thread allocates cannot reuse what the main thread freed (the packet tables' unread
    columns) and each costs new pages, zeroed by the kernel on first touch (the most expensive part of a copy here)."""
    everything = rows == sum(len(t) for t in tables)
    out = {}
    for c in columns:
        coded = c in cats.values
        if share and not coded and everything and len(tables) == 1:
            continue
        out[c] = np.empty(rows, np.int32 if coded else np.result_type(*(t[c].dtype for t in tables)))
    return out


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Window rows stacked (a missing part is skipped)."""
    parts = [p for p in parts if p and p["fp"].shape[0]]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return {}
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def take_rows(rows: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``idx`` of window rows."""
    return {c: v[idx] for c, v in rows.items()}


@dataclass
class Walk:
    """Journeys of a window's rows (:meth:`Matcher.walk`): the complete ones' rows by (journey, time, key) and per
    complete journey its first corrected time, size, ambiguity among these rows and fingerprint; the other rows."""

    order: np.ndarray
    first_t: np.ndarray
    size: np.ndarray
    amb: np.ndarray
    fps: np.ndarray
    carry: np.ndarray  # rows of the journeys that may go on, ascending


@dataclass
class Part:
    """Journeys one window completed: their hops rows, and the key (input row) and journey of each."""

    hops: pd.DataFrame
    key: np.ndarray
    journey: np.ndarray
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    """The category columns' codes as gathered (int32; the one-window run only): what a Parquet writer takes as dictionary
    indices, so that it does not widen pandas' narrower codes (``hops[c].cat.codes``, the same values) again."""


_FLOW_COLUMNS = ("src", "dst", "sport", "dport", "proto")
"""What the spine keeps of each flow, as first seen (the losses table's addresses and ports)."""


class Matcher:
    """Windowed journey matching (module doc): ``step`` per window, ``carried`` journeys between them."""

    def __init__(self, *, window_ns: int, point_names: list[str], point_node: list[str], point_iface: list[str],
                 cats: Categories, spine: Spine | None = None) -> None:  # fmt: skip
        self.window_ns = int(window_ns)
        self.cats = cats
        self.point_names = list(point_names)
        nodes = sorted(set(point_node))
        ifaces = sorted(set(point_iface))
        self.node_code = np.array([nodes.index(x) for x in point_node], np.int32)
        self.iface_code = np.array([ifaces.index(x) for x in point_iface], np.int32)
        self.dtypes = {"point": pd.CategoricalDtype(pd.Index(self.point_names)), "node": pd.CategoricalDtype(pd.Index(nodes)),
                       "interface": pd.CategoricalDtype(pd.Index(ifaces))}  # fmt: skip
        self.carry: dict[str, np.ndarray] = {}
        self.next_journey = 0
        self.windows = 0
        self.carried_journeys = 0  # journeys carried over a window boundary, summed over boundaries
        self.carried_rows = 0
        self.spine = Spine(len(self.point_names)) if spine is None else spine  # in memory, or given (spilled)
        self.deferred: list[Callable[[], None]] = []  # spine keeping deferred by emit (defer_spine), run by settle

    def step(self, new: dict[str, np.ndarray], horizon: int | None, *, order: np.ndarray | None = None,
             on_part: Callable[[Part], None] | None = None, defer_spine: bool = False, consume: bool = False) -> Part:  # fmt: skip
        """Match the carried rows with ``new`` (every row before ``horizon``; None: the last window) and emit
        the journeys no later row can join. ``order``: :func:`.match.by_fingerprint` of ``new``, if known;
        ``on_part``: given the part as soon as its hops are built (a writer starts while the spine is kept);
        ``defer_spine``: see :meth:`emit`; ``consume``: the caller gives ``new`` up (the one-window run): when
        nothing is carried, its arrays are taken out of it as the hops are gathered (:meth:`emit`)."""
        self.windows += 1
        if self.carry and new:  # what was computed ahead holds for one window's rows only
            new = {c: v for c, v in new.items() if c not in AHEAD}
        rows = concat_rows([self.carry, new])
        if not rows:
            self.carry = {}
            part = self._part({}, None, None, None)
            if on_part is not None:
                on_part(part)
            return part
        if self.carry and new and new["fp"].shape[0]:  # rows in input order: carried and new keys interleave
            rows = take_rows(rows, np.argsort(rows["key"], kind="stable"))
            order = None
        consume = consume and rows is new and horizon is None  # nothing carried: no later window reads these rows
        w = self.walk(rows, horizon, order=order)
        self.carry = take_rows({c: v for c, v in rows.items() if c not in AHEAD}, w.carry) if w.carry.size else {}
        return self.emit(rows, w.order, w.first_t, w.size, w.amb, w.fps, on_part=on_part, defer_spine=defer_spine,
                         consume=consume)  # fmt: skip

    def ahead(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``rows`` with what matching them needs before their corrected times (:data:`AHEAD`): each one's look as a
        dense slot and its flow hash, the same values :meth:`step` computes without them. The one-window run computes
        the two halves (:meth:`flow`, :func:`slots`) on two threads while the clocks are estimated."""
        return {**rows, "slot": slots(rows["look"]), "flow": self.flow(rows)}

    def flow(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """The flow hash of every row (:meth:`ahead`'s ``flow``): the heavier half of :meth:`ahead`, which a caller with
        two threads computes beside the other (:func:`slots`)."""
        return self._flow(rows, slice(None))

    def _flow(self, rows: dict[str, np.ndarray], at) -> np.ndarray:
        """The flow hash (point, protocol, addresses, ports) of rows ``at``."""
        i64 = np.int64
        pid = rows["point_id"][at].astype(i64)
        src = self.cats.address_id("src", rows["src"][at])  # addresses as ids: flows are only told apart, never read
        dst = self.cats.address_id("dst", rows["dst"][at])
        return combine8(pid, rows["proto"][at].astype(i64), src, src, dst, dst, rows["sport"][at].astype(i64),
                        rows["dport"][at].astype(i64))  # fmt: skip

    def walk(self, rows: dict[str, np.ndarray], horizon: int | None, *, order: np.ndarray | None = None) -> Walk:
        """Journeys of ``rows`` (in input order), split into those complete before ``horizon`` (None: all) and the
        rows of the others, which are counted as carried. ``order``: :func:`.match.by_fingerprint` of the rows, if known."""
        fp, tc = rows["fp"], rows["tc"]
        slot = rows["slot"] if "slot" in rows else slots(rows["look"])
        order, j = journeys(fp, tc, slot, rows["ttl"], window_ns=self.window_ns, npoints=int(slot.max()) + 1,
                            order=by_fingerprint(fp) if order is None else order)  # rows by (journey, time, key)
        n = j.shape[0]
        start = np.ones(n, bool)
        start[1:] = j[1:] != j[:-1]
        first = np.flatnonzero(start)
        first_t = tc[order[first]]
        fps = fp[order[first]]
        amb = repeated(fps)  # a fingerprint owning several journeys among these rows (the end corrects across windows)
        done = np.ones(first.shape[0], bool) if horizon is None else first_t < horizon - self.window_ns
        size = np.diff(np.append(first, n))
        if horizon is None:  # the last window: every journey is complete, nothing is carried
            return Walk(order, first_t, size, amb, fps, np.zeros(0, np.int64))
        run_done = np.repeat(done, size)
        keep = order[~run_done]
        if keep.size:
            self.carried_journeys += int((~done).sum())
            self.carried_rows += int(keep.size)
        return Walk(order[run_done], first_t[done], size[done], amb[done], fps[done], np.sort(keep))

    def emit(self, rows: dict[str, np.ndarray], order: np.ndarray, first_t: np.ndarray, size: np.ndarray, amb: np.ndarray,
             fps: np.ndarray, *, on_part: Callable[[Part], None] | None = None, defer_spine: bool = False,
             consume: bool = False) -> Part:  # fmt: skip
        """Hops of complete journeys (``order``: their rows by journey and time; per journey its first corrected time,
        size, ambiguity and fingerprint), numbered on by first corrected time (ties in the order given); ``on_part``
        is given them before the spine is kept. ``defer_spine``: keep the spine from the part's own columns when
        :meth:`settle` is called (the last window only: later windows read the spine), not now. ``consume``: each
        column is taken out of ``rows`` as it is gathered and the spine is read from the part's columns, so that
        the hops reuse the rows' memory (none is read afterwards)."""
        nj = first_t.shape[0]
        n = order.shape[0]
        first = np.cumsum(size) - size
        by_rank = np.argsort(first_t, kind="stable")
        size_r = size[by_rank]
        perm = np.repeat(first[by_rank] - (np.cumsum(size_r) - size_r), size_r) + np.arange(n)
        final = order[perm]
        journey = np.repeat(np.arange(self.next_journey, self.next_journey + nj, dtype=np.int64), size_r)
        hop = (np.arange(n) - np.repeat(np.cumsum(size_r) - size_r, size_r)).astype(np.int16)
        self.next_journey += nj
        tcf = rows["tc"][final] if n else np.zeros(0, np.int64)
        cols = {
            "journey": journey, "hop": hop, "hops": np.repeat(size_r, size_r).astype(np.int16),
            "since_first_ns": tcf - np.repeat(first_t[by_rank], size_r), "ambiguous": np.repeat(amb[by_rank], size_r),
        }  # fmt: skip
        if consume and n:  # what the spine reads of the rows, before they are given up; the rest is not read
            flow = rows.pop("flow")[final] if "flow" in rows else self._flow(rows, final)
            for c in ("slot", "look", "tc"):
                rows.pop(c, None)
        part = self._part(rows, final, cols, tcf, consume=consume, codes=consume)
        if on_part is not None:
            on_part(part)
        if not n:
            return part
        if not consume:
            flow = rows["flow"][final] if "flow" in rows else self._flow(rows, final)
        if defer_spine or consume:  # the part's columns hold the same values (codes of the same categories) as the rows
            h = part.hops
            at_final = {c: (h[c].array.codes if c in ("src", "dst") else h[c].to_numpy()) for c in _FLOW_COLUMNS}
            pid = h["point"].array.codes.astype(np.int64)

            def keep() -> None:
                self._keep_spine(pid, tcf, flow, fps[by_rank], size_r, lambda c, at: at_final[c][at])

            if defer_spine:
                self.deferred.append(keep)
            else:
                keep()
        else:
            self._keep_spine(rows["point_id"][final], tcf, flow, fps[by_rank], size_r, lambda c, at: rows[c][final[at]])
        return part

    def settle(self) -> None:
        """Keep the spine of the parts whose keeping :meth:`emit` deferred."""
        while self.deferred:
            self.deferred.pop(0)()

    def _keep_spine(self, pid: np.ndarray, tcf: np.ndarray, flow: np.ndarray, fps: np.ndarray, size: np.ndarray,
                    column: Callable[[str, np.ndarray], np.ndarray]) -> None:  # fmt: skip
        """Add a part's sightings (``pid``, ``tcf``, ``flow`` per hops row; ``fps``, ``size`` per journey) to the
        spine, and its flows' addresses and ports (``column(name, at)``: that column at hops rows ``at``)."""
        self.spine.add(pid, tcf, flow, fps, size)
        first = pd.Series(flow).drop_duplicates().index.to_numpy()  # hashing, not sorting
        self.spine.add_flows({"flow": flow[first], **{c: column(c, first) for c in _FLOW_COLUMNS}})

    def _part(self, rows, final, cols, tcf, *, consume: bool = False, codes: bool = False) -> Part:
        """The hops table of rows ``final`` (``cols``: the journey columns; None: nothing emitted); ``consume``: each
        row column is taken out of ``rows`` once gathered (the key stays); ``codes``: the part keeps its category
        columns' int32 codes as gathered (:attr:`Part.codes`)."""
        take = rows.pop if consume else rows.__getitem__
        pool = ThreadPoolExecutor(1) if final is not None and final.shape[0] >= GATHER_SPLIT else None
        try:
            return self._part_columns(rows, final, cols, tcf, take, pool, codes)
        finally:
            if pool is not None:
                pool.shutdown()

    def _part_columns(self, rows, final, cols, tcf, take, pool, keep_codes: bool) -> Part:
        if cols is None:  # nothing emitted
            final = np.zeros(0, np.int64)
            cols = {"journey": final, "hop": final.astype(np.int16), "hops": final.astype(np.int16), "since_first_ns": final,
                    "ambiguous": np.zeros(0, bool)}  # fmt: skip
            tcf = final
            rows = rows or {c: np.zeros(0, np.int64) for c in ("point_id", "ts_ns", "fp", "key", *CARRY)}
            take = rows.__getitem__
        pid = gathered(take("point_id"), final, pool)
        out: dict[str, object] = dict(cols)
        codes = {"point": pid, "node": self.node_code[pid], "interface": self.iface_code[pid]}
        for c in ("point", "node", "interface"):
            out[c] = pd.Categorical.from_codes(codes[c], dtype=self.dtypes[c], validate=False)
        if not keep_codes:  # each column's gathered codes freed once pandas has its own (narrower) copy
            codes = {}
        out["ts_ns"] = gathered(take("ts_ns"), final, pool)
        out["ts_corrected_ns"] = tcf
        out["fingerprint"] = gathered(take("fp"), final, pool).astype(np.uint64, copy=False)
        want = {c.name: c.dtype for c in HOPS_COLUMNS}
        for c in CARRY:
            v = gathered(take(c), final, pool)
            if c in self.cats.values:
                v = v.astype(np.int32, copy=False)
                out[c] = pd.Categorical.from_codes(v, dtype=self.cats.dtype(c), validate=False)
                if keep_codes:
                    codes[c] = v
            else:
                out[c] = v.astype(want[c], copy=False)
        hops = pd.DataFrame({c.name: out[c.name] for c in HOPS_COLUMNS}, copy=False)
        return Part(validate(hops, HOPS_COLUMNS, table="hops"), gathered(rows["key"], final, pool), cols["journey"], codes)


def slots(look: np.ndarray) -> np.ndarray:
    """Dense slot per row of its look (point, TTL, tunnelled: :func:`rows_of`): :func:`.match.journeys` only asks
    whether a journey already holds a row's slot, so any numbering of the distinct looks does."""
    return pd.factorize(look)[0].astype(np.int64)


GATHER_SPLIT = 1 << 17
"""Hops rows from which a part's columns are gathered on two threads (half each; numpy's take releases the GIL)."""


def gathered(src: np.ndarray, idx: np.ndarray, pool: ThreadPoolExecutor | None) -> np.ndarray:
    """``src[idx]`` (``idx``: valid positions), its second half gathered by ``pool``'s thread if given, into an array
    this thread allocates (in the memory it freed: see :func:`row_buffers`)."""
    if pool is None:
        return src[idx]
    out = np.empty(idx.shape[0], src.dtype)
    h = idx.shape[0] // 2
    other = pool.submit(np.take, src, idx[h:], out=out[h:], mode="wrap")  # "wrap": not gathered into a copy first
    np.take(src, idx[:h], out=out[:h], mode="wrap")
    other.result()
    return out
