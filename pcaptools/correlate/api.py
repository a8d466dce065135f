"""``pcaptools.correlate``: find each packet at every capture point, align clocks, measure hops and losses.

Two steps: fingerprints of a bounded sample seen at most once per point are paired without looking at
time, which is enough to estimate the nodes' clock offsets (:mod:`.sample`); then every sighting is
matched on corrected time within ``window_ns`` (:mod:`.windows`, :mod:`.match`) and laid out as a hops
table (:data:`~pcaptools.schema.HOPS_COLUMNS`). :func:`correlate` is the one-window case of
:mod:`.stream`, which reads capture files in windows of corrected time with bounded memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from pcaptools.correlate.capture_set import CapturePoint, CaptureSet
from pcaptools.correlate.clock import correct
from pcaptools.correlate.fingerprint import NOT_CORRELATED, fingerprint, not_correlated
from pcaptools.correlate.latency import loss_summary
from pcaptools.correlate.match import by_fingerprint, clock_sample, compact_order
from pcaptools.correlate.sample import ClockSample
from pcaptools.correlate.spine import Spine
from pcaptools.correlate.summary import totals
from pcaptools.correlate.windows import (
    AHEAD,
    AHEAD_NEEDS,
    CARRY,
    CATEGORIES,
    Categories,
    Matcher,
    Part,
    row_buffers,
    rows_of,
    slots,
)
from pcaptools.decode.table import as_text, category_union
from pcaptools.errors import CorrelationError
from pcaptools.lazy import MadeOnRead

DEFAULT_WINDOW_NS = 2_000_000_000
"""Default matching window: sightings of one packet more than 2 s apart (after clock correction) are separate."""


@dataclass
class Correlation:
    """Result of :func:`correlate`: hops, clock offsets, hop latency, losses and per-point match counts."""

    hops: pd.DataFrame = MadeOnRead()  # a function making it when a streamed paths run reads it back (made on first read)
    offsets: pd.DataFrame
    hop_latency: pd.DataFrame = MadeOnRead()  # the summary's fields may be given as functions making them (made on
    losses: pd.DataFrame = MadeOnRead()  # first read: a caller of the in-memory run that reads only the hops never
    matched: dict[str, int] = MadeOnRead()  # pays for them, see finish)
    unmatched: dict[str, int] = MadeOnRead()
    journeys: int
    ambiguous: int = MadeOnRead()
    window_ns: int
    notes: list[str] = field(default_factory=list)
    row_ts_corrected: np.ndarray = field(default=None, repr=False)  # per capture-set row, reference clock
    row_journey: np.ndarray = field(default=None, repr=False)  # per capture-set row, -1 if not matchable
    multi_point_journeys: int = 0  # journeys seen at more than one point
    seen_at_point: pd.Series = MadeOnRead(None)  # sightings per point (index: point names)
    skipped_files: list[dict] = field(default_factory=list)  # the capture set's files left out (CaptureSet.skipped_files)
    rows: dict[str, int] = field(default_factory=dict)  # packet-table rows per point given to the run: matched + unmatched + not correlated
    not_correlated: dict[str, dict[str, int]] = field(default_factory=dict)  # per point, rows left out by reason (NOT_CORRELATED)

    def __getstate__(self) -> dict:
        """Pickled with the hops and the summary made (a function making them is not picklable)."""
        self.hops, self.hop_latency, self.losses, self.matched, self.unmatched, self.ambiguous, self.seen_at_point  # noqa: B018
        return dict(self.__dict__)

    def loss_summary(self) -> pd.DataFrame:
        """Lost packets per (point, missing_at)."""
        return loss_summary(self.losses, self.hops if self.seen_at_point is None else self.seen_at_point)

    def point_counts(self) -> list[dict]:
        """Per point, what became of its rows: ``{point, rows, matched, unmatched, not_correlated: {reason: count}}``
        with every reason of :data:`~pcaptools.correlate.fingerprint.NOT_CORRELATED` (0 when none), so that
        ``rows == matched + unmatched + sum(not_correlated)``: every row read is accounted for."""
        out = []
        for p, matched in self.matched.items():
            left = self.not_correlated.get(p, {})
            out.append({"point": p, "rows": int(self.rows[p]), "matched": int(matched), "unmatched": int(self.unmatched.get(p, 0)),
                        "not_correlated": {r: int(left.get(r, 0)) for r in NOT_CORRELATED}})  # fmt: skip
        return out

    def to_dict(self) -> dict:
        """Plain summary: clock offsets per node, journeys, rows, matched, unmatched and not correlated (by reason) per point,
        latency per hop pair."""
        offs = {}
        for r in self.offsets.itertuples(index=False):
            solved = not pd.isna(r.uncertainty_ns)  # an unsolved node's clock is left as captured: its values are absent
            offs[r.node] = {
                "offset_ns": int(r.offset_ns) if solved else None,
                "uncertainty_ns": round(float(r.uncertainty_ns), 1) if solved else None,
                "at_ns": int(r.at_ns) if solved else None,
                "skew_ppm": round(float(r.skew_ppm), 4) if solved else None,
                "skew_uncertainty_ppm": None if not np.isfinite(r.skew_uncertainty_ppm) else round(float(r.skew_uncertainty_ppm), 4),
                "skew_matters": bool(r.skew_matters),
                "reference": bool(r.reference),
            }
        lat = {
            f"{r.from_point} -> {r.to_point}": {
                "count": int(r.count), "median_ns": int(r.median_ns), "p90_ns": int(r.p90_ns),
                "p99_ns": int(r.p99_ns), "min_ns": int(r.min_ns), "max_ns": int(r.max_ns),
            }  # fmt: skip
            for r in self.hop_latency.itertuples(index=False)
        }
        ls = self.loss_summary()
        return {
            "clock_offsets": offs,
            "journeys": int(self.journeys),
            "multi_point_journeys": int(self.multi_point_journeys),
            "ambiguous_journeys": int(self.ambiguous),
            "window_ns": int(self.window_ns),
            "matched": self.matched,
            "unmatched": self.unmatched,
            "rows": self.rows,
            "not_correlated": self.not_correlated,
            "hop_latency": lat,
            "losses": [
                {"point": str(r.point), "missing_at": str(r.missing_at), "lost": int(r.lost), "seen_at_point": int(r.seen_at_point)}
                for r in ls.itertuples(index=False)
            ],
            "notes": list(self.notes),
        }

    def to_json(self, **kw) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), **kw)


def correlate(capture_set: CaptureSet, *, window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None) -> Correlation:
    """Match packets across the capture set's points, estimate clock offsets, and build hops/latency/loss tables.

    The in-memory run of the windowed pipeline (:mod:`.stream`): one window holding every row."""
    return correlate_window(capture_set, window_ns=window_ns, reference=reference)


def correlate_window(capture_set: CaptureSet, *, window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None,
                     on_part: Callable[[Part], None] | None = None) -> Correlation:  # fmt: skip
    """:func:`correlate`, handing the hops to ``on_part`` (a writer) before the summary is computed."""
    tables, point_ids = capture_set.tables()
    corr = correlate_tables(capture_set.points, tables, point_ids, notes=capture_set.notes,
                            window_ns=window_ns, reference=reference, on_part=on_part)  # fmt: skip
    corr.skipped_files = list(capture_set.skipped_files)
    return corr


def correlate_tables(points: list[CapturePoint], tables: list[pd.DataFrame], point_ids: list[np.ndarray], *,
                     notes: list[str] = (), window_ns: int = DEFAULT_WINDOW_NS, reference: str | None = None,
                     on_part: Callable[[Part], None] | None = None, release: bool = False) -> Correlation:  # fmt: skip
    """The one-window run on packet tables taken as one table stacked in their order (``point_ids``: each row's
    point): a capture set's table, or each point's table as decoded, which is not stacked (the rows matching
    needs are gathered once, straight from them). Categories are those stacking gives (first-seen order).
    ``release``: empty the ``tables`` list once their rows are gathered, so that a caller with no other use for
    them does not hold them through matching."""
    nodes = list(dict.fromkeys(p.node for p in points))
    check_options(nodes, window_ns, reference)
    point_node = np.array([nodes.index(p.node) for p in points], np.int64)
    fps = [packet_fingerprints(t) for t in tables]
    accounts = RowAccounts.of(tables, fps, point_ids, len(points))  # before the columns it reads are let go
    if release:  # the columns read from here on only: the others (two thirds of a table) freed now, not after gathering
        _keep_read_columns(tables)
    fp, pid = _stacked(fps), _stacked([np.asarray(p, np.int64) for p in point_ids])
    ts = _stacked([t["ts_ns"].to_numpy(np.int64) for t in tables])
    key = np.arange(fp.shape[0], dtype=np.int64)
    text = len(tables) > 1  # stacking several tables turns their categories into text (decode.table.concat)
    cats = Categories({c: _text([t[c].cat.categories for t in tables], text) for c in CATEGORIES})
    m = matcher(points, window_ns, cats)
    rest = tuple(c for c in CARRY if c not in AHEAD_NEEDS)
    keep = np.flatnonzero(fp != 0)
    buffers = row_buffers(tables, cats, keep.shape[0], share=True)  # here: in the memory the unread columns left
    with ThreadPoolExecutor(2) as pool:  # the rows' columns are gathered in two parts (numpy copies, GIL released) and
        # what matching needs of them before their times computed (Matcher.ahead) while the clock sample is taken
        # and the clocks estimated: the flow hash by the thread that gathered the smaller part (it is free first),
        # the slots by the other, side by side (in one thread they were the longest path of this block)
        gathered = pool.submit(rows_of, tables, fps, None, key, pid, cats, ts_ns=ts, share=True, columns=AHEAD_NEEDS,
                               keep=keep, buffers=buffers)  # fmt: skip
        others = pool.submit(rows_of, tables, fps, None, key, pid, cats, share=True, columns=rest, base=False, keep=keep, buffers=buffers)
        flow = pool.submit(lambda g: m.flow(g.result()), gathered)
        slot = pool.submit(lambda g: slots(g.result()["look"]), gathered)
        by_fp = by_fingerprint(fp)  # one sort: the clock sample and the matcher both start from it
        sample = ClockSample()
        sample.add_tables(tables, np.where(clock_sample(fp, order=by_fp), fp, np.uint64(0)), ts, pid, key, order=by_fp)
        offsets, params = sample.estimate(nodes, point_node, reference=reference)
        tc = correct(ts, point_node[pid], params)
        first, second = {**gathered.result(), "flow": flow.result(), "slot": slot.result()}, others.result()
        # the look is read only to number the slots (Matcher.ahead): not kept through matching
        rows = {c: first[c] if c in first else second[c] for c in ("fp", "tc", "key", "point_id", "ts_ns", *CARRY, *AHEAD)}
        del first, second, buffers, gathered, others, flow, slot  # the futures hold their results
    if release:
        del fps
        tables.clear()
    rows["tc"] = tc if rows["fp"].shape[0] == tc.shape[0] else tc[keep]
    notes = [*notes, *clock_notes(offsets, params)]
    order, n = compact_order(fp != 0, by_fp), fp.shape[0]
    del fp, ts, pid, key, by_fp, keep  # the rows hold what matching reads: given up to it (consume), the hops reuse their memory
    # the writer starts before the spine is kept; without one, the spine is kept when the summary is first read
    part = m.step(rows, None, order=order, on_part=on_part, defer_spine=on_part is None, consume=True)
    row_journey = np.full(n, -1, np.int64)
    row_journey[part.key] = part.journey
    return finish(m, part.hops, offsets, notes, row_ts_corrected=tc, row_journey=row_journey,
                  **accounts.fields([p.name for p in points]))  # fmt: skip


_READ = frozenset(("ts_ns", *CARRY))
"""Packet-table columns the one-window run reads once the fingerprints are computed (the clock sample's 5-tuple,
the categories and the window rows: all carried)."""


def _keep_read_columns(tables: list[pd.DataFrame]) -> None:
    """Each table as its :data:`_READ` columns only, in place, so that the others' memory is freed. The decoder
    allocates columns of one dtype as rows of one block (:mod:`pcaptools.decode.walk`), which lives while any of
    its columns does: a kept column that is part of a larger array is copied out of it, so that the block is freed."""
    for i, t in enumerate(tables):
        tables[i] = t[[c for c in t.columns if c in _READ]]
    for t in tables:
        for c in t.columns:
            if isinstance(t[c].dtype, pd.CategoricalDtype):
                continue
            a = t[c].to_numpy()
            root = a
            while isinstance(root.base, np.ndarray):
                root = root.base
            if root.nbytes > a.nbytes:
                t[c] = a.copy()


def _stacked(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _text(indexes: list[pd.Index], text: bool) -> list[pd.Index]:
    """Each table's categories of one column, as text when several tables are stacked, of the dtype stacking gives
    them (:func:`~pcaptools.decode.table.concat`: the one-window run's hops are the stacked table's, category dtypes included)."""
    if not text:
        return indexes
    texts = as_text(indexes)
    kind = category_union(texts).categories.dtype
    return [c.astype(kind) for c in texts]


def check_options(nodes: list[str], window_ns: int, reference: str | None) -> None:
    """Raise CorrelationError for a window that is not positive or a reference that is not a node."""
    if window_ns <= 0:
        raise CorrelationError(f"window_ns must be positive, got {window_ns}")
    if reference is not None and reference not in nodes:
        raise CorrelationError(f"reference node {reference!r} is not in the capture set; nodes are {nodes}")


def packet_fingerprints(pk: pd.DataFrame) -> np.ndarray:
    """Fingerprint per row, 0 where not matchable (no IP protocol, link-scoped ICMPv6, or no timestamp to place it
    in time: :data:`~pcaptools.correlate.fingerprint.NOT_CORRELATED`, counted by :class:`RowAccounts`)."""
    fp = fingerprint(pk, pk["payload_hash"].to_numpy(np.uint64))
    fp[pk["ts_ns"].to_numpy(np.int64) < 0] = 0
    return fp


class RowAccounts:
    """Packet-table rows given to a correlation per point, and of those the rows it leaves out (fingerprint 0) per
    reason (:data:`~pcaptools.correlate.fingerprint.NOT_CORRELATED`), so that every row read is accounted for:
    ``rows == matched + unmatched + sum(not_correlated)`` at every point. Each row is to be added once, however the
    run reads it (one table, batches of a stream, a cluster's partitions)."""

    def __init__(self, points: int) -> None:
        self.rows = np.zeros(points, np.int64)
        self.left_out = np.zeros((points, len(NOT_CORRELATED)), np.int64)

    def add(self, packets: pd.DataFrame, fp: np.ndarray, point_id: np.ndarray | int) -> None:
        """Count a packet table's rows, with their fingerprints (:func:`packet_fingerprints`) and points."""
        pid = np.asarray(point_id, np.int64)
        n = self.rows.shape[0]
        if pid.ndim:
            self.rows += np.bincount(pid, minlength=n)
        else:
            self.rows[int(pid)] += len(packets)
        self.left_out += not_correlated(packets, fp, pid, n)

    @classmethod
    def of(cls, tables: list[pd.DataFrame], fps: list[np.ndarray], point_ids: list[np.ndarray], points: int) -> RowAccounts:
        """The count of packet tables with their fingerprints and each row's point (a function of its own: no table
        stays referenced from the caller's frame once counted, so a caller releasing them frees them)."""
        acc = cls(points)
        for t, f, p in zip(tables, fps, point_ids, strict=True):
            acc.add(t, f, p)
        return acc

    def merge(self, other: RowAccounts) -> None:
        """Add another count of other rows (a partition's) of the same points."""
        self.rows += other.rows
        self.left_out += other.left_out

    def fields(self, names: list[str]) -> dict[str, dict]:
        """The Correlation's ``rows`` and ``not_correlated`` for points named ``names`` (every reason present, 0 if none)."""
        return {
            "rows": {name: int(self.rows[k]) for k, name in enumerate(names)},
            "not_correlated": {name: dict(zip(NOT_CORRELATED, self.left_out[k].tolist(), strict=True)) for k, name in enumerate(names)},
        }


def clock_notes(offsets: pd.DataFrame, params: dict) -> list[str]:
    """Notes for nodes whose clock could not be solved and for matches no clock line allows."""
    notes = []
    for r in offsets.itertuples(index=False):
        if pd.isna(r.uncertainty_ns):
            notes.append(
                f"node {r.node}: no packets matched in both directions with the reference's clock domain; its clock is left uncorrected"
            )
    for a, b, n in params["dropped"]:
        notes.append(f"nodes {a} and {b}: no clock line gives every matched packet a non-negative delay (wrong matches?); {n} were left out of the clock estimate")
    return notes + params.get("notes", [])


def matcher(points: list, window_ns: int, cats: Categories, *, spine: Spine | None = None) -> Matcher:
    """The windowed matcher for a capture set's points (``spine``: where it keeps its spine, default in memory)."""
    return Matcher(window_ns=window_ns, point_names=[p.name for p in points], point_node=[p.node for p in points],
                   point_iface=[p.interface for p in points], cats=cats, spine=spine)  # fmt: skip


def finish(m: Matcher, hops: pd.DataFrame, offsets: pd.DataFrame, notes: list[str], **fields) -> Correlation:
    """The Correlation of a matcher after its last window (``hops``: the table, or an empty one when written out;
    ``fields``: the Correlation's others, such as ``rows`` and ``not_correlated``).
    When the matcher deferred keeping its spine (one window, no writer), the summary's fields are made on first read
    from it; the journey counts come from ``hops`` (every journey is in it)."""
    notes = list(notes)
    if m.deferred:
        summary: list = []

        def made(name: str):
            def make():
                if not summary:
                    m.settle()
                    summary.append(totals(m))
                return getattr(summary[0], name)

            return make

        journeys, multi = int(m.next_journey), int((hops["hop"].to_numpy() == 1).sum())  # journeys with a second sighting
        t = SimpleNamespace(**{k: made(k) for k in ("hop_latency", "losses", "matched", "unmatched", "ambiguous", "seen_at_point")},
                            journeys=journeys, multi_point_journeys=multi)  # fmt: skip
    else:
        t = totals(m)
    if t.journeys and not t.multi_point_journeys:
        notes.append("no packet was seen at more than one capture point; check that the captures overlap in time and path")
    return Correlation(
        hops=hops, offsets=offsets, hop_latency=t.hop_latency, losses=t.losses, matched=t.matched, unmatched=t.unmatched,
        journeys=t.journeys, ambiguous=t.ambiguous, window_ns=int(m.window_ns), notes=notes,
        multi_point_journeys=t.multi_point_journeys, seen_at_point=t.seen_at_point, **fields,
    )  # fmt: skip
