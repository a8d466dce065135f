"""``pcaptools paths`` and ``pcaptools why`` within a memory budget: the path table of a capture set larger than
memory, identical to :func:`pcaptools.k8s.paths.load_paths`' (the in-memory run), and its diagnosis, identical to
:func:`pcaptools.k8s.diagnose.diagnose`'s (:func:`diagnose_bounded`: ``why``, text and ``--json``, and ``paths --json``).

When the captures fit the budget (the test :func:`pcaptools.correlate.stream.fits` makes for correlation)
this is :func:`load_paths` (and ``diagnose``). Otherwise, in a temporary directory:

1. **Correlate** in windows of corrected time (:func:`pcaptools.k8s.discover.correlate_inputs`): hops into a Parquet
   file. Every input ``correlate`` takes streams: a manifest, ``--point`` specs, plain files and directories (their
   points, roles and inference evidence from a bounded summary of their packets, :func:`~pcaptools.k8s.discover.infer_captures`)
   and a dataset (its stored points and evidence); the result's ``captures`` is that CaptureSet, without packets.
   For a diagnosis, a :class:`~pcaptools.k8s.diagnose.PacketEvidence` sees every packet table the correlation reads
   and every journey it emits: per point its capture span and Statistics Block counters, the ICMP errors (one row
   each) and which journeys they are, per TCP journey its sequence, acknowledgement and payload length (spilled to
   disk as the journeys are emitted: :mod:`pcaptools.k8s.tcp_bounded`).
2. **Label** (one pass over the hops file, a row group at a time, 9 of its columns; a journey a row-group boundary cuts
   is carried to the next, :func:`~pcaptools.k8s.labels_bounded.whole_journeys`): journey -> connection as
   :func:`pcaptools.k8s.paths._connections` numbers it, kept per use of a 5-tuple, not per journey
   (:mod:`pcaptools.k8s.labels_bounded`: each journey's (journey, tuple) elements spilled by tuple, cut into uses,
   linked by the journeys of two tuples). The same pass counts rows per (point, address) for the pod network's
   routing evidence.
3. **Spill** (a second pass): each hops row to the bucket of its connection (its journey's first element's use,
   :meth:`~pcaptools.k8s.labels_bounded.Labels.rows`), buckets being runs of consecutive connections holding at most
   ``bucket_rows`` rows (from the budget), one Parquet file each, and each row's connection beside it; the routing
   evidence's journeys counted per row group. Per bucket the
   existing ``_build`` runs with the precomputed connection ids; buckets in order give the paths in connection
   order. A bucket holding a connection of more rows than a bucket is read in pieces of whole journeys of about
   ``bucket_rows`` rows (:func:`build_in_pieces`): the same steps of ``_build``
   (:class:`~pcaptools.k8s.paths.Journeys`, ``_journey_times``, ``forward_journeys``, ``reply_journeys``,
   ``path_rows``) run on each piece, with what a connection decides over all its journeys (the node whose clock
   times them, its first packet, its reply) reduced over the pieces first, in three passes. Client-side flows come from
   the same files (:mod:`pcaptools.k8s.flows_bounded`): spilled before this pass, a file and a group of flow keys at a
   time, each row's key tagged by this pass with its bucket, and each bucket sent the first flow of every key its rows
   hold, which it reads back when it is built. For a diagnosis the pass tags each row's journey with its bucket the
   same way, and each bucket is sent the TCP numbers of its journeys (:mod:`pcaptools.k8s.tcp_bounded`), which it reads
   back when it is diagnosed; and each bucket's hops in causal order (``_build``'s, :data:`DETAIL_COLUMNS`) are written back and tallied
   (:class:`~pcaptools.k8s.diagnose.HopTallies`: where each address lives, which point follows which).
4. Each bucket's path rows, NAT rows and the hops of its connections' representative journeys (what the terminal
   shows) are spilled as it is built (:class:`PathParts`) and printed or written from there a bucket at a time.
5. **Diagnose** (for ``why`` / ``paths --json``): with every bucket tallied, each bucket's hops are read back a piece
   (detail file) at a time and given, with its paths and NAT steps, to the one
   :class:`~pcaptools.k8s.diagnose.Diagnoser` the in-memory ``diagnose`` uses for the whole set as one group: each
   piece is reduced to its journeys' columns (:class:`~pcaptools.k8s.diagnose_journeys.JourneyTable`) and 5-tuples as
   it is read, so a connection larger than a piece is never held whole as hops rows; every connection lies whole in
   one bucket, and what a connection's verdict reads beyond it (homes, next points, capture spans and drops, ICMP
   errors, TCP numbers) is the whole set's. Each bucket's diagnosis (its connection and loss rows and timeline
   attempts as columns, with ``--iptables`` its NAT steps' rules) is spilled beside its paths as it is made
   (:class:`DiagnosisParts`) and printed from there a bucket at a time: ``why`` counts statuses and sums its kinds of
   loss (:class:`~pcaptools.k8s.groups.LossGroups`) over the parts, then lists its connections from them.

Memory: the correlation's (see :mod:`pcaptools.correlate.stream`), then the labels, nothing per journey
(:mod:`pcaptools.k8s.labels_bounded`): 40 bytes per use of a 5-tuple kept (a connection has a use per tuple, two
through NAT), and while labelled one row group and one partition of (journey, tuple) elements, about 120 bytes each
(one tuple's elements lie in one partition, so a connection of many journeys is held whole: 134,701 elements in the
largest partition of gen_set.py's 1.58M-sighting set). Measured on gen_set.py's sets of 396k, 792k and 1.58M
sightings under ``--memory 300MiB``: the label pass peaks 50, 68 and 93 MiB above the RSS it starts from (was 78, 145
and 274 with a row per (journey, tuple) in pandas), the spill pass 86, 88 and 103 MiB (a row group and the held
rows). Then one bucket (or one piece of a bucket) at a time, about :data:`BUILD_ROW_COST` bytes a hops row while
its paths are built, and for a bucket built in pieces about 40 bytes per journey of it and its connections' first
packets' rows (its diagnosis takes less: its journeys as columns, about 30 numbers a journey and 3 a sighting,
:class:`~pcaptools.k8s.diagnose_journeys.JourneyTable`), plus the client flows of its rows' keys, read back from its
file when its build asks (about 90 bytes a flow: 1.5 MiB at most per bucket of gen_set.py's 29,288-connection set
under ``--memory 300MiB``). Nothing is held per flow between the steps (:mod:`pcaptools.k8s.flows_bounded`: the
run's dictionaries of file names and addresses, 690 bytes there; was 12.9 MiB, 460 bytes a connection, 119 a flow
key with its index's hash table, and the flow tables, about 280 bytes a flow, while it was made); while a file's
flows are computed, :func:`~pcaptools.flow_stream.iter_flows`' window and group (86 MiB traced there, 101 before);
while the flows are sent to the buckets, one hash partition of them and of the rows' keys within an eighth of the
budget (two partitions of 119,041 flows and 201,500 keys there, 16 MiB traced). Not held, each bucket's spilled to
``TMPDIR`` as it is built and read back a bucket at a time
(:class:`PathParts`): the path table (about 860 bytes a connection, most of it its text columns: route, hop latencies,
points, NAT and encapsulation as strings) and the NAT table (one row per NAT step, about 65 bytes; the buckets' tables
are joined as category codes, :func:`_concat`), and the representative journeys' hops (about 620 bytes a connection,
measured on gen_set.py's 100,000 packets in 29,288 short connections). A diagnosis keeps besides, while the
correlation runs, 32 bytes per TCP row read but not yet emitted (the windows' rows); nothing per TCP journey: its
first sighting's (sequence, acknowledgement, payload length) is spilled as it is emitted, sent to its bucket by the
flows' partitioned join (one partition within an eighth of the budget) and read back a bucket at a time
(:mod:`pcaptools.k8s.tcp_bounded`; 32 bytes a journey were held for the run, 2.6 MB for that set's 80,125 TCP
journeys and 4.6 MB for the 145,119 of gen_set.py's 200k set; now the bucket being diagnosed's, at most 6,777 and
9,055 journeys there, 217 and 290 KB; nothing after the run); per capture point its span, row count and counters; one row per ICMP error; the tallies (a row per
(point, address) and per (point, destination, next point) seen); and one bucket's output, spilled once the bucket
is diagnosed (:meth:`~pcaptools.k8s.diagnose.Diagnoser.take`, :class:`DiagnosisParts`): what the Diagnosis then holds
is each bucket's first and last connection (3.5 KB for the 29,288 connections of gen_set.py's 100,000 packets in short
connections; its tables were 246 bytes a connection, 7.2 MB; RSS held after the run, from 2,000 to 29,288
connections, 730 bytes a connection before, about 150 now: the paths' own, within the noise). ``why``'s text holds a row per kind of loss, not per connection, ``--json`` and
``paths --json`` one bucket's diagnosis at a time. Measured on gen_set.py's 1.58M-sighting set, whose
largest connection has 419,938 hops rows, under ``--memory 300MiB``: ``paths -o`` peaks at 459 MiB (626 when that
connection was built whole), ``why --json`` at 500 (623). Limits: a connection is diagnosed as one JourneyTable (its hops' :data:`DETAIL_COLUMNS`, written a piece at a
time, are read back a piece at a time into it): per sighting its point, node and time (24 bytes), per journey about
170 bytes, 27 MiB for that connection's 419,938 sightings in 100,296 journeys; its diagnosis peaks 37 MiB above its
start (tracemalloc; 55 MiB before, besides the bucket's hops read back whole as one table). The process's peak is
then set by other steps at about the same height (sampled every 5 ms: the representative journeys' hops read back
from every row group, the Diagnosis's timeline table (before it was spilled), ``--json``'s records; 535-585 MiB for ``why --json`` and
``paths --json`` either way), pyarrow's mimalloc pool keeping 50-70 MiB of it (480-495 MiB with
``ARROW_DEFAULT_MEMORY_POOL=system``); ``why`` text makes each listed connection's record whole (``--json`` writes a
timeline from its columns a piece at a time): that connection's retransmission timeline as objects took about 150 MiB.
A library caller reading a streamed Diagnosis' ``connections``, ``losses``, ``timeline`` or ``nat_rules`` reads that
table back whole (the in-memory run's table, every dtype), as ``PathSet.paths`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.k8s.flows_bounded import ClientFlows
from pcaptools.k8s.journeys import grouped, journey_index
from pcaptools.k8s.labels_bounded import LABEL_COLUMNS, LabelBuilder, Labels, whole_journeys
from pcaptools.k8s.nat import nat_table
from pcaptools.k8s.paths import (
    Journeys,
    PathSet,
    _build,
    _empty,
    _journey_times,
    as_inventory,
    best_nodes,
    directions_of,
    forward_journeys,
    journey_nodes,
    kept_hops,
    load_paths,
    node_codes,
    path_rows,
    reply_journeys,
)
from pcaptools.process import release_freed_memory, temporary_directory

if TYPE_CHECKING:
    from pcaptools.k8s.diagnose import Diagnosis

BUILD_ROW_COST = 1000
"""Bytes one hops row takes at the peak of building its bucket's paths (the bucket's table, its causal order, NAT table
and per-row arrays; measured 540 on gen_set.py's 79,223 sightings: 97 the table, 440 the build), with a margin."""

ROW_PEAK = 1200
"""Peak bytes per packet record of the in-memory ``paths`` run (correlation, flows, paths and their inputs, with
``--json`` the diagnosis): what decides that a set is streamed. Measured 2026-12-02 (peak RSS less the libraries and
the largest file, over the records): 460-570 bytes on gen_set.py's 1M-packet set (3.96 M records, 148 connections:
``paths`` 2.6 GiB, ``paths --json`` 3.1), 630 on its 200k set, 1,190 on a 100k set of 32,000 short connections
(408k records: what each connection holds adds up); was 1,500 from older measurements."""

MIN_BUCKET_ROWS = 1 << 15
"""Fewest hops rows a bucket is given however small the budget (about 32 MiB at :data:`BUILD_ROW_COST`): each bucket
is read back, labelled, built and diagnosed on its own, and at 4,096 rows that fixed cost was most of a streamed
``paths`` run (146 buckets of the 792k-sighting benchmark set under 300 MiB, issue #11)."""

SPILL_SHARE = 0.25
"""Share of the budget the spill may hold before writing its buckets (fewer, larger row groups)."""

SPILL_ROW_BYTES = 400
"""Bytes a held hops row takes in Arrow (its ~30 columns, dictionary-encoded labels)."""

MAX_BUCKETS = 256
"""At most this many bucket files are written at once (open files); a set of more than this many budgets' rows takes
larger buckets than the budget."""

_LABEL_COLUMNS = ["journey", "proto", "src", "dst", "sport", "dport", "ts_corrected_ns", "tcp_flags", "point"]


def streams(sources: Sequence[str | os.PathLike], points: Sequence[str], memory: int, *, allow_outside: bool = False) -> bool:
    """Whether :func:`load_paths_bounded` would stream these inputs (a manifest, ``--point`` specs, plain files and
    directories, a dataset): their captures do not fit ``memory`` in one in-memory run (:data:`ROW_PEAK` a record)."""
    from pcaptools.correlate.stream import fits
    from pcaptools.k8s.discover import input_files

    return not fits(input_files(list(sources), list(points), allow_outside=allow_outside), memory, row_bytes=ROW_PEAK)


def load_paths_bounded(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    links: Iterable[str] = (),
    inventory=None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
    memory: int | None = None,
    window_rows: int | None = None,
    bucket_rows: int | None = None,
    hops_out: str | os.PathLike | None = None,
) -> PathSet:
    """:func:`load_paths` within ``memory`` bytes (default a quarter of the memory available): the same paths, NAT
    table and texts. ``window_rows`` / ``bucket_rows`` force streaming with correlation windows / path buckets of
    about that many rows (tests). The result's ``correlation.hops`` holds only the representative journeys' hops,
    ``network`` the pod network (:meth:`Inventory.pod_network`) and ``captures`` the inferred or stored points with
    their evidence but no packets (None for a manifest / ``--point`` set) when streamed. ``hops_out``: when streamed,
    the whole hops table is kept in this Parquet file (for callers that read every hop in a later pass: compare, report)."""
    return _bounded(sources, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                    with_flows=with_flows, allow_outside=allow_outside, memory=memory, window_rows=window_rows,
                    bucket_rows=bucket_rows, diagnosis=None, hops_out=hops_out)[0]  # fmt: skip


def diagnose_bounded(
    sources: str | os.PathLike | Sequence[str | os.PathLike] = (),
    *,
    points: Iterable[str] = (),
    links: Iterable[str] = (),
    inventory=None,
    window_ns: int | None = None,
    reference: str | None = None,
    with_flows: bool = True,
    allow_outside: bool = False,
    memory: int | None = None,
    window_rows: int | None = None,
    bucket_rows: int | None = None,
    iptables: list | None = None,
    capture_drops: dict[str, int] | None = None,
) -> tuple[PathSet, Diagnosis]:
    """:func:`load_paths_bounded` and the :func:`~pcaptools.k8s.diagnose.diagnose` of the same set within ``memory``
    bytes: (the PathSet, the Diagnosis), both the in-memory run's (``iptables``, ``capture_drops`` as for
    ``diagnose``). Streamed, the packets' evidence is gathered while the correlation reads them and the diagnosis
    runs a bucket of connections at a time (module doc)."""
    return _bounded(sources, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                    with_flows=with_flows, allow_outside=allow_outside, memory=memory, window_rows=window_rows,
                    bucket_rows=bucket_rows, diagnosis={"iptables": iptables, "capture_drops": capture_drops}, hops_out=None)  # fmt: skip


def _bounded(sources, *, points, links, inventory, window_ns, reference, with_flows, allow_outside, memory, window_rows,
             bucket_rows, diagnosis: dict | None, hops_out=None) -> tuple[PathSet, Diagnosis | None]:  # fmt: skip
    """The paths (and with ``diagnosis``, the options of :func:`diagnose`, the Diagnosis) within ``memory``."""
    from pcaptools.correlate.api import DEFAULT_WINDOW_NS
    from pcaptools.correlate.budget import default_memory
    from pcaptools.k8s.discover import find_inventory

    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    points = list(points)
    memory = default_memory() if memory is None else int(memory)
    forced = window_rows is not None or bucket_rows is not None
    if not forced and not streams(srcs, points, memory, allow_outside=allow_outside):
        ps = load_paths(srcs, points=points, links=links, inventory=inventory, window_ns=window_ns, reference=reference,
                        with_flows=with_flows, allow_outside=allow_outside)  # fmt: skip
        if diagnosis is None:
            return ps, None
        # only `paths --json` and `why` diagnose: `paths` does not import the diagnosis (~30 ms of a fresh process)
        from pcaptools.k8s.diagnose import diagnose

        return ps, diagnose(ps.captures, ps.correlation, ps.inventory, detail=ps.detail(), **diagnosis)
    inv = as_inventory(inventory if inventory is not None else find_inventory(srcs, allow_outside=allow_outside))
    window_ns = window_ns or DEFAULT_WINDOW_NS
    if diagnosis is not None:
        from pcaptools.k8s.diagnose import PacketEvidence
    ev = PacketEvidence() if diagnosis is not None else None
    with temporary_directory(prefix="pcaptools-paths-") as tmp:
        if ev is not None:  # the TCP numbers per journey: spilled, read back a bucket at a time (none held)
            ev.spill_to(Path(tmp) / "tcp", memory)
        hops_path = Path(hops_out) if hops_out is not None else Path(tmp) / "hops.parquet"
        corr, cs, files, stats = _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows,
                                            hops_path, ev)  # fmt: skip
        release_freed_memory()
        flows = _client_flows(files, memory, Path(tmp)) if with_flows else None  # spilled, none held
        release_freed_memory()
        ps, d = _paths_of_file(hops_path, corr, inv, flows, memory, bucket_rows, Path(tmp),
                               connections_file(hops_out) if hops_out is not None else None,
                               None if ev is None else (ev.finish(), diagnosis))  # fmt: skip
    ps.captures = cs  # its points and inference evidence (no packets when streamed)
    ps.streamed = {"windows": stats.windows if stats else None, "carried_journeys": stats.carried_journeys if stats else None,
                   "buckets": (ps.streamed or {}).get("buckets", 0), "pieces": (ps.streamed or {}).get("pieces", 0)}  # fmt: skip
    return ps, d


def _correlate(srcs, points, links, inv, window_ns, reference, allow_outside, memory, window_rows, out, observer=None):
    """Streamed correlation into ``out``; (Correlation, the CaptureSet of inferred or stored points or None, the capture
    files in the order :func:`load_paths` decodes them, StreamStats or None). ``observer`` sees the packets read
    (:class:`pcaptools.k8s.diagnose.PacketEvidence`)."""
    from pcaptools.k8s.discover import _correlate_inputs, input_files

    corr, cs, stats = _correlate_inputs(srcs, points=points, inventory=inv, links=links, allow_outside=allow_outside,
                                        window_ns=window_ns, reference=reference, memory=memory, out=out,
                                        window_rows=window_rows, observer=observer)  # fmt: skip
    files = [e["file"] for e in input_files(srcs, points, allow_outside=allow_outside)]
    return corr, cs, list(dict.fromkeys(files)), stats


def _client_flows(files: list[str], memory: int, tmp: Path) -> ClientFlows:
    """The client-side flows of ``files`` (load_paths joins them from the same files' packets), spilled under ``tmp``
    a file and a group of flow keys at a time, each file's computed within ``memory``: held per bucket, not per flow
    (:mod:`pcaptools.k8s.flows_bounded`). Per bucket the join once copied, stringified and sorted the whole flow
    table, then a lookup of every flow key (about 100 bytes each) was held for the run (issue #11)."""
    flows = ClientFlows(tmp / "flows", memory)
    for f in files:
        flows.add_file(f)
        release_freed_memory(collect=False)
    return flows


def _paths_of_file(hops_path: Path, corr, inv, flows, memory: int, bucket_rows: int | None, tmp: Path,
                   labels_out: Path | None = None, diagnosis: tuple | None = None) -> tuple[PathSet, Diagnosis | None]:  # fmt: skip
    """Label, spill and build (module doc) from a hops Parquet file; with ``labels_out``, each journey's connection
    written there as the spill pass labels it (:func:`journey_connections`); with ``diagnosis`` (the finished
    PacketEvidence and :func:`diagnose`'s options), diagnose the buckets too."""
    import pyarrow.parquet as pq

    from pcaptools.k8s.diagnose import Diagnoser, HopTallies

    if not hops_path.exists():  # defensive: the correlation writes the file even when nothing matched (0 rows)
        ps = PathSet(paths=_empty(), nat=_build(_empty_hops(), inv, None)[1], correlation=corr, inventory=inv,
                     network=inv.pod_network(_empty_hops()) if inv is not None else None)  # fmt: skip
        if diagnosis is None:
            return ps, None
        ev, opts = diagnosis
        dg = Diagnoser(inv, ev, HopTallies.of(_empty_hops()), opts["capture_drops"])
        return ps, dg.result(ps.paths, ps.nat, opts["iptables"])
    pf = pq.ParquetFile(hops_path)
    labels, pairs, point_rows = _label_pass(pf, tmp, memory)
    release_freed_memory()
    rows_c = labels.rows_c
    if bucket_rows is None:
        from pcaptools.correlate.stream import _rss

        bucket_rows = max(int((memory * 0.9 - _rss()) // BUILD_ROW_COST), MIN_BUCKET_ROWS, -(-int(rows_c.sum()) // MAX_BUCKETS))
    bucket_c = np.unique((np.cumsum(rows_c) - rows_c) // max(int(bucket_rows), 1), return_inverse=True)[1].reshape(-1)
    nb = int(bucket_c.max()) + 1 if len(bucket_c) else 0
    single = set()
    if inv is not None:
        from pcaptools.k8s.inventory import single_address_points

        single = single_address_points(pairs, point_rows)
    numbers = diagnosis[0].spill if diagnosis is not None else None  # the TCP numbers per journey (tcp_bounded)
    taggers = [x.tag for x in (flows, numbers) if x is not None]
    routing = _spill(pf, labels, bucket_c, nb, tmp, inv, single, hold_rows=max(int(bucket_rows), int(memory * SPILL_SHARE // SPILL_ROW_BYTES)), piece_rows=max(int(bucket_rows), 1), labels_out=labels_out,
                    on_rows=(lambda t, b: [tag(t, b) for tag in taggers]) if taggers else None)  # fmt: skip
    del labels
    for x in (flows, numbers):  # each bucket's flows, by the keys its rows hold; its journeys' TCP numbers
        if x is not None:
            x.assign()
            release_freed_memory(collect=False)
    out = PathParts(inv)
    try:
        pieces, tallies = _build_buckets(tmp, out, rows_c, bucket_c, nb, inv, flows, int(bucket_rows), diagnosis is not None)
        d = _diagnose_buckets(out, tallies, inv, tmp, *diagnosis) if diagnosis is not None else None
    except BaseException:
        out.close()
        raise
    corr.hops = out.hops  # made when read: the printing reads them a bucket at a time (PathSet.parts)
    network = None
    if inv is not None:
        from pcaptools.k8s.inventory import routing_verdict

        network = inv.pod_network(None)
        network["routing"], ev = routing_verdict(*routing)
        network["evidence"].append(ev)
    return PathSet(paths=out.paths, nat=out.nat, correlation=corr, inventory=inv, network=network, spilled=out,
                   streamed={"buckets": nb, "pieces": pieces}), d  # fmt: skip


def _build_buckets(tmp: Path, out: PathParts, rows_c: np.ndarray, bucket_c: np.ndarray, nb: int, inv, flows,
                   bucket_rows: int, diagnose: bool) -> tuple[int, list]:  # fmt: skip
    """Pass 3: each spilled bucket's paths built and added to ``out`` (its path and NAT rows, its representative
    journeys' hops, its connections' client-side flows from ``flows``' file of it) before the next is read; with
    ``diagnose``, its hops in causal order written back beside it and tallied. (Buckets built in pieces, the tallies.)"""
    import pyarrow.parquet as pq

    from pcaptools.k8s.diagnose import HopTallies

    tallies: list = []
    pieces = 0  # of buckets built in pieces
    first_c = np.searchsorted(bucket_c, np.arange(nb))  # first connection of each bucket (connections run in order)
    ends_c = np.r_[first_c[1:], len(bucket_c)]
    for b in range(nb):
        path = tmp / f"bucket-{b}.parquet"
        lookup = flows.of_bucket(b) if flows is not None else None  # its connections' flows, read when asked
        details: list[pd.DataFrame] = []

        def detail(dh: pd.DataFrame, b: int = b, details: list = details) -> None:  # a piece's hops in causal order
            dh["connection"] += first_c[b]
            tallies.append(HopTallies.of(dh))
            dh.loc[:, list(DETAIL_COLUMNS)].to_parquet(tmp / f"detail-{b}-{len(details)}.parquet")
            details.append(None)

        on_detail = detail if diagnose else None
        if int(rows_c[first_c[b]:ends_c[b]].max()) > bucket_rows:  # a connection larger than a bucket: in pieces
            j = pq.read_table(path, columns=["journey"]).column("journey").to_numpy()
            bj, at = _first_rows(j)
            bc = np.fromfile(tmp / f"connections-{b}.bin", np.int64)[at] - first_c[b]
            del j, at
            p, nat, n = build_in_pieces(path, (bj, bc), inv, lookup, bucket_rows, on_detail)
            pieces += n
        else:
            h = pd.read_parquet(path)
            # the bucket's journeys (each has a 5-tuple: rows of the others are not spilled) and their connections
            bj, at = _first_rows(h["journey"].to_numpy(np.int64))
            bc = np.fromfile(tmp / f"connections-{b}.bin", np.int64)[at] - first_c[b]
            side: dict | None = {} if diagnose else None
            p, nat = _build(h, inv, lookup, side, (bj, bc))
            del h
            if side is not None:  # the bucket's hops in causal order, for its diagnosis once every bucket is counted
                detail(side.pop("hops_of")())
        p["connection"] += first_c[b]
        nat["connection"] += first_c[b]
        reps = np.concatenate([p["forward_journey"].to_numpy(np.int64), p["reply_journey"].to_numpy(np.int64)])
        out.add(p, nat.sort_values(["journey", "step"], kind="stable", ignore_index=True), rows_of_journeys(path, reps))
        del p, nat
        release_freed_memory(collect=False)  # a bucket's tables hold no reference cycles; a full collection per bucket costs ~0.1 s
    return pieces, tallies


DETAIL_COLUMNS = ("journey", "connection", "direction", "point", "node", "ts_corrected_ns", "src", "dst", "sport", "dport",
                  "proto", "tunnel", "wirelen", "tcp_flags", "fingerprint")  # fmt: skip
"""Columns of a bucket's hops in causal order that its diagnosis reads (:class:`pcaptools.k8s.diagnose.Diagnoser`)."""


def _diagnose_buckets(out: PathParts, tallies: list, inv, tmp: Path, ev, opts: dict) -> Diagnosis:
    """Pass 4: each bucket's hops (written by the build) diagnosed in connection order with its path and NAT rows (read
    back from ``out``), with what every bucket's hops add up to (:class:`~pcaptools.k8s.diagnose.HopTallies`) and the
    packets' evidence; each bucket's diagnosis (with ``iptables``, its NAT steps' rules) spilled beside ``out``'s
    files as it is made (:class:`DiagnosisParts`), not held."""
    from pcaptools.k8s.diagnose import Diagnoser, HopTallies

    iptables = opts["iptables"]
    if iptables:
        from pcaptools.k8s.iptables import explain
    dg = Diagnoser(inv, ev, HopTallies.merged(tallies), opts["capture_drops"])
    parts = DiagnosisParts(out, rules=bool(iptables))
    for b in range(out.buckets):
        paths, nat, _ = out.part(b)
        files = sorted(tmp.glob(f"detail-{b}-*.parquet"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))
        # the bucket's pieces one at a time: a connection larger than a piece is never read back whole
        ev.for_bucket(b)  # its journeys' TCP numbers, read back (a streamed run's, spilled)
        dg.add((pd.read_parquet(f) for f in files), paths, nat)
        parts.add(paths["connection"].to_numpy(np.int64), dg.take(), explain(nat, iptables) if iptables else None)
        del paths, nat
        release_freed_memory(collect=False)
    ev.for_bucket(None)
    return parts.diagnosis(paths=out.paths, notes=dg.notes())  # every table made when read


def build_in_pieces(path: Path, connections: tuple[np.ndarray, np.ndarray], inv, flows, piece_rows: int,
                    on_detail=None) -> tuple[pd.DataFrame, pd.DataFrame, int]:  # fmt: skip
    """(paths, NAT, pieces) of a bucket's hops file as :func:`~pcaptools.k8s.paths._build` gives them on the whole file, its
    rows read in pieces of whole journeys of about ``piece_rows`` rows (a connection larger than a bucket is never held
    whole): pass 1 counts each connection's journeys per node (the clock :func:`~pcaptools.k8s.paths._journey_times`
    reads); pass 2 keeps per journey its time, SYN / SYN-ACK and sightings, and so each connection's first packet's
    journey (:func:`~pcaptools.k8s.paths.forward_journeys`), whose rows are read back; pass 3 gives every journey its
    direction against those rows and makes its NAT steps, then each connection's reply journey is picked
    (:func:`~pcaptools.k8s.paths.reply_journeys`) and the two journeys' rows are read back for its row
    (:func:`~pcaptools.k8s.paths.path_rows`). ``connections``: (the file's journeys ascending, connection of each, from
    0). ``on_detail``: called with each piece's hops in causal order with ``connection`` and ``direction`` (a diagnosis).
    Kept per journey: about 40 bytes; per connection: its first packet's rows."""
    import pyarrow.parquet as pq

    bj, bc = connections
    nconn = int(bc.max()) + 1 if len(bc) else 0
    pf = pq.ParquetFile(path)
    # pass 1: journeys per (connection, node), nodes ranked as the file's node categories (a tie goes to the first)
    ranks: dict = {None: -1}
    pair_c, pair_r = [], []
    npieces = 0
    for piece in _pieces(pf, piece_rows, ["journey", "node", "proto", "src", "dst"]):
        npieces += 1
        hk = kept_hops(piece)
        uj, ji = journey_index(hk["journey"].to_numpy(np.int64))
        sj, sn, _ = journey_nodes(ji, node_codes(hk), len(uj))
        pair_c.append(bc[np.searchsorted(bj, uj[sj])])
        pair_r.append(_node_ranks(hk["node"], ranks)[sn + 1])
    cr = np.concatenate(pair_c) * (len(ranks) + 1) + np.concatenate(pair_r) + 1 if pair_c else np.zeros(0, np.int64)
    cn, k = np.unique(cr, return_counts=True)
    best_rank = best_nodes(cn // (len(ranks) + 1), cn % (len(ranks) + 1) - 1, k, nconn)
    del pair_c, pair_r, cr
    # pass 2: per journey its time on that node's clock, SYN / SYN-ACK and sightings
    syn, synack, nhops, t = (np.zeros(len(bj), bool), np.zeros(len(bj), bool), np.zeros(len(bj), np.int64),
                             np.full(len(bj), np.iinfo(np.int64).max, np.int64))  # fmt: skip
    for lo, uj, tab in _piece_tables(pf, piece_rows, bj, inv):
        at = slice(lo, lo + len(uj))
        node_rank = _node_ranks(tab.h["node"], ranks)  # code + 1 -> rank
        code_of = np.full(len(ranks) + 1, -2, np.int64)  # rank + 1 -> this piece's code (-2: no row has it)
        code_of[node_rank + 1] = np.arange(-1, len(node_rank) - 1)
        best = np.where(best_rank >= -1, code_of[np.maximum(best_rank, -1) + 1], -2)
        syn[at], synack[at], nhops[at] = tab.syn, tab.synack, tab.nhops
        t[at] = _journey_times(tab.h, tab.ji, bc[at], len(uj), best)
    fwd_j = forward_journeys(bc, syn, nhops, t, nconn)
    # the first packet's rows of every connection, by connection
    f = rows_of_journeys(pf, bj[fwd_j[fwd_j >= 0]], ["journey", "proto", "src", "dst", "sport", "dport"])
    fc = bc[np.searchsorted(bj, f["journey"].to_numpy(np.int64))]
    fo = np.argsort(fc, kind="stable")
    fc = fc[fo]
    f_src, f_dst = f["src"].astype(str).to_numpy()[fo], f["dst"].astype(str).to_numpy()[fo]
    f_sp, f_dp = f["sport"].to_numpy(np.int64)[fo], f["dport"].to_numpy(np.int64)[fo]
    fa0, fb0 = np.searchsorted(fc, np.arange(nconn)), np.searchsorted(fc, np.arange(nconn), side="right")
    del f
    # pass 3: directions against those rows, NAT steps, the pieces' hops for a diagnosis
    reply = np.zeros(len(bj), bool)
    nat_parts = []
    for lo, uj, tab in _piece_tables(pf, piece_rows, bj, inv):
        conn = bc[lo:lo + len(uj)]
        n = len(tab.h)
        vocab = tab.codes[0]
        es, ed = _codes_beside(vocab, f_src), _codes_beside(vocab, f_dst)
        has = fb0 > fa0
        fwd, rev = tab.directions(conn[tab.ji], np.where(has, n + fa0, 0), np.where(has, n + fb0, 0), (es, f_sp, ed, f_dp))
        rp = rev & ~fwd
        reply[lo:lo + len(uj)] = rp
        if on_detail is not None:
            on_detail(tab.ordered_hops().assign(connection=conn[tab.ji], direction=directions_of(fwd, rp, tab.ji)))
        nt = nat_table(tab.h, inv, reply=pd.Series(rp, index=uj), ordered=True, codes=tab.codes)
        nt["connection"] = conn[np.searchsorted(uj, nt["journey"].to_numpy(np.int64))]
        nat_parts.append(nt)
        del tab, nt
    rep_j = reply_journeys(bc, reply, synack, nhops, t, nconn)
    nat = _concat(nat_parts) if nat_parts else nat_table(_empty_hops(), inv, ordered=True)
    del nat_parts
    reps = np.concatenate([fwd_j[fwd_j >= 0], rep_j[rep_j >= 0]])
    tab = Journeys(kept_hops(rows_of_journeys(pf, bj[reps])), inv)
    tab.index(bj)
    return path_rows(tab, bj, fwd_j, rep_j, np.bincount(bc, minlength=nconn), nat, inv, flows), nat, npieces


def _node_ranks(col: pd.Series, ranks: dict) -> np.ndarray:
    """Per :func:`~pcaptools.k8s.paths.node_codes` code + 1 of ``col`` (-1, missing, first), the node's rank in
    ``ranks`` (name -> rank, names not seen before appended): the order of the whole file's node categories."""
    names = col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else pd.factorize(col)[1]
    return np.array([-1] + [ranks.setdefault(str(x), len(ranks) - 1) for x in names], np.int64)


def _codes_beside(vocab: pd.Index, values: np.ndarray) -> np.ndarray:
    """Codes of address strings in ``vocab``, those not in it given codes below -1 (equal exactly when the values are),
    so they match no row of a table coded in ``vocab`` but each other."""
    codes = vocab.get_indexer(values).astype(np.int64)
    out = codes < 0
    if out.any():
        codes[out] = -2 - pd.factorize(values[out])[0]
    return codes


def _pieces(pf, rows: int, columns: list[str] | None = None):
    """Tables (pandas) of a hops file grouped by journey, ascending (a bucket's), each of whole journeys and about
    ``rows`` rows (more when one journey is longer)."""
    import pyarrow as pa

    carry = None
    for batch in pf.iter_batches(batch_size=max(int(rows), 1), columns=columns):
        t = pa.Table.from_batches([batch])
        if carry is not None:
            t = pa.concat_tables([carry, t])
            carry = None
        if len(t) < rows:
            carry = t
            continue
        j = t.column("journey").to_numpy()
        cut = int(np.searchsorted(j, j[-1]))  # the last journey may go on in the next batch
        if not cut:
            carry = t
            continue
        carry = t.slice(cut)
        yield t.slice(0, cut).to_pandas()
    if carry is not None and len(carry):
        yield carry.to_pandas()


def _piece_tables(pf, rows: int, bj: np.ndarray, inv):
    """(index of the piece's first journey in ``bj``, the piece's journeys, its :class:`~pcaptools.k8s.paths.Journeys`
    indexed by them) per piece of whole journeys (:func:`_pieces`)."""
    for piece in _pieces(pf, rows):
        uj = journey_index(piece["journey"].to_numpy(np.int64))[0]
        hk = kept_hops(piece)
        del piece
        tab = Journeys(hk if len(hk) else hk.iloc[:0], inv)
        tab.index(uj)
        yield int(np.searchsorted(bj, uj[0])) if len(uj) else 0, uj, tab


def _first_rows(j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct journeys of ``j`` ascending, the row of each one's first), read off the runs when grouped."""
    if grouped(j):
        at = np.flatnonzero(np.r_[True, j[1:] != j[:-1]]) if len(j) else np.zeros(0, np.int64)
        return j[at], at
    return np.unique(j, return_index=True)


def _empty_hops() -> pd.DataFrame:
    from pcaptools.schema import HOPS_COLUMNS, empty

    return empty(HOPS_COLUMNS)


def _label(pf, memory: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(journey ids, connection id per journey) of a hops Parquet file, as :func:`_connections` gives them on the
    whole table, for a caller that keeps them per journey (the report's sequence diagrams): the bounded labels
    (:func:`_label_pass`, spilled to a temporary directory; ``memory`` sizes its partitions) read out per journey."""
    from pcaptools.correlate.budget import default_memory

    uj, conn = [], []
    with temporary_directory(prefix="pcaptools-labels-") as tmp:
        labels = _label_pass(pf, Path(tmp), default_memory() if memory is None else int(memory))[0]
        for t in whole_journeys(pf, columns=LABEL_COLUMNS):
            f = t.to_pandas()
            pairs = _journey_heads(f["journey"].to_numpy(np.int64), labels.rows(f))
            uj.append(pairs[:, 0])
            conn.append(pairs[:, 1])
    if not uj:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(uj), np.concatenate(conn)


def _journey_heads(j: np.ndarray, conn: np.ndarray) -> np.ndarray:
    """(journey, connection) rows, int64, of each labelled journey of rows grouped by journey (a journey's rows share
    its connection; -1, unlabelled, left out)."""
    j = np.asarray(j, np.int64)
    head = np.r_[True, j[1:] != j[:-1]] & (conn >= 0) if len(j) else np.zeros(0, bool)
    return np.stack([j[head], np.asarray(conn, np.int64)[head]], axis=1)


def connections_file(hops_file: str | os.PathLike) -> Path:
    """Where a streamed paths run given ``hops_out`` writes each journey's connection: beside that hops file."""
    p = Path(hops_file)
    return p.with_name(p.name + ".connections")


def journey_connections(hops_file: str | os.PathLike, memory: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(journey ids, connection id per journey) of a streamed hops file, as :func:`_label` gives them: read from what
    the paths run that wrote it left beside it (:func:`connections_file`, 16 bytes a journey), else labelled again."""
    f = connections_file(hops_file)
    if f.exists():
        pairs = np.fromfile(f, np.int64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()
    import pyarrow.parquet as pq

    return _label(pq.ParquetFile(hops_file), memory)


def _label_pass(pf, tmp: Path, memory: int) -> tuple[Labels, pd.Series, pd.Series]:
    """Pass 1: journey -> connection as :func:`_connections` gives it on the whole table, kept per use of a 5-tuple
    (:mod:`pcaptools.k8s.labels_bounded`), and the (point, address) / point row counts of the routing evidence."""
    from pcaptools.k8s.inventory import point_addresses

    lb = LabelBuilder(tmp, rows=pf.metadata.num_rows, memory=memory)
    pairs, point_rows = pd.Series(dtype=np.int64), pd.Series(dtype=np.int64)
    pair_parts, point_parts = [], []
    for t in whole_journeys(pf, columns=_LABEL_COLUMNS):
        t = t.to_pandas()
        pp, rows = point_addresses(t)
        pair_parts.append(pp)
        point_parts.append(rows)
        lb.add(t)
        if len(pair_parts) >= 64:  # sums over tables add up: folded as they come, not kept per row group
            pairs, point_rows = _sums([pairs, *pair_parts], [point_rows, *point_parts])
            pair_parts, point_parts = [], []
    pairs, point_rows = _sums([pairs, *pair_parts], [point_rows, *point_parts])
    return lb.finish(), pairs, point_rows


def _sums(pair_parts: list[pd.Series], point_parts: list[pd.Series]) -> tuple[pd.Series, pd.Series]:
    """Rows per (point, address) and per point summed over tables (:func:`~pcaptools.k8s.inventory.point_addresses`)."""
    pair_parts = [p for p in pair_parts if len(p)]
    point_parts = [p for p in point_parts if len(p)]
    pairs = pd.concat(pair_parts).groupby(level=[0, 1]).sum() if pair_parts else pd.Series(dtype=np.int64)
    point_rows = pd.concat(point_parts).groupby(level=0).sum() if point_parts else pd.Series(dtype=np.int64)
    return pairs, point_rows


def _spill(pf, labels: Labels, bucket_c: np.ndarray, nb: int, tmp: Path, inv, single: set[str], *,
           hold_rows: int, piece_rows: int, labels_out: Path | None = None, on_rows=None) -> tuple[int, int]:  # fmt: skip
    """Pass 2: each labelled hops row appended to its bucket's Parquet file (rows in file order) and its connection to
    the bucket's ``connections-B.bin``, up to ``hold_rows`` rows held and then written one row group per bucket (a row
    group per window and bucket made thousands of tiny writes and reads); returns the journeys' routing counts
    (:func:`~pcaptools.k8s.inventory.routing_counts`, zeros without an inventory). ``labels_out``: (journey,
    connection) of every labelled journey written there, as :func:`_label` gives them. ``on_rows``: called with each
    table of whole journeys and its rows' buckets (-1: unlabelled), :meth:`ClientFlows.tag`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pcaptools.k8s.inventory import routing_counts

    writers: dict[int, pq.ParquetWriter] = {}
    held: dict[int, list] = {}
    n_held = 0

    def flush() -> None:
        for k, subs in held.items():
            w = writers.get(k)
            if w is None:
                w = writers[k] = pq.ParquetWriter(tmp / f"bucket-{k}.parquet", pf.schema_arrow)
            w.write_table(pa.concat_tables([x for x, _ in subs]), row_group_size=piece_rows)  # pieces read one at a time
            with open(tmp / f"connections-{k}.bin", "ab") as fh:
                np.concatenate([c for _, c in subs]).tofile(fh)
        held.clear()

    n_tun = n_bare = 0
    out = open(labels_out, "wb") if labels_out is not None else None  # closed in the finally below
    try:
        for t in whole_journeys(pf):
            if inv is not None:  # every journey is whole in t: its flags are final
                tun, bare = routing_counts(inv.routing_flags(t.select(["journey", "src", "dst", "tunnel", "point"]).to_pandas(), single))
                n_tun, n_bare = n_tun + tun, n_bare + bare
            conn = labels.rows(t.select(LABEL_COLUMNS).to_pandas())
            if out is not None:
                _journey_heads(t.column("journey").to_numpy(), conn).tofile(out)
            b = np.where(conn >= 0, bucket_c[np.maximum(conn, 0)] if len(bucket_c) else -1, -1)
            if on_rows is not None:
                on_rows(t, b)
            order = np.argsort(b, kind="stable")
            bs = b[order]
            cut = np.flatnonzero(np.r_[True, bs[1:] != bs[:-1]]) if len(bs) else np.zeros(0, np.int64)
            for k, start in enumerate(cut.tolist()):
                if bs[start] < 0:
                    continue
                end = cut[k + 1] if k + 1 < len(cut) else len(bs)
                rows = order[start:end]
                held.setdefault(int(bs[start]), []).append((t.take(pa.array(rows)), conn[rows]))
                n_held += int(end - start)
            if n_held >= hold_rows:
                flush()
                n_held = 0
        flush()
    finally:
        for w in writers.values():
            w.close()
        if out is not None:
            out.close()
    for b in range(nb):  # a bucket is never empty (its connections have rows), but be safe
        if b not in writers:
            pq.write_table(pf.schema_arrow.empty_table(), tmp / f"bucket-{b}.parquet")
            (tmp / f"connections-{b}.bin").write_bytes(b"")
    return n_tun, n_bare


def rows_of_journeys(pf, journeys: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """The hops rows of ``journeys`` (-1s ignored) in a hops Parquet file (a ``ParquetFile`` or its path), in the
    file's order (the correlation's), read a row group at a time: pass 3, a piece's representative journeys, the
    report's sequence diagrams."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not isinstance(pf, pq.ParquetFile):
        pf = pq.ParquetFile(pf)
    want = pa.array(np.unique(journeys[journeys >= 0]), pa.int64())
    parts = []
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=columns)
        parts.append(t.filter(pc.is_in(t.column("journey"), value_set=want)))
    return pa.concat_tables(parts).to_pandas() if parts else _empty_hops().loc[:, columns or slice(None)]


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Tables of consecutive buckets as one: a category column keeps its categories where every part has the same
    (a closed vocabulary), else takes the sorted values, as ``astype("category")`` of the whole column would. The
    parts' category columns are recoded to their union in place (the parts are the caller's, dropped after): codes
    are concatenated, never a Python object per cell (+147 MiB for the NAT table of 400k journeys as objects)."""
    union: dict[str, pd.Index] = {}
    mixed: list[str] = []
    for c in parts[0].columns:
        cats = [p[c].cat.categories for p in parts if isinstance(p[c].dtype, pd.CategoricalDtype)]
        if len(cats) == len(parts):
            if not all(x.equals(cats[0]) for x in cats):
                union[c] = cats[0].append(cats[1:]).unique() if len(cats) > 1 else cats[0]
        elif cats:
            mixed.append(c)  # categorical in some parts only: values as objects, as before
    for p in parts:
        for c, u in union.items():
            p[c] = p[c].cat.set_categories(u)
        for c in mixed:
            p[c] = p[c].astype(object)
    out = pd.concat(parts, ignore_index=True)
    for c in union:
        used = out[c].cat.remove_unused_categories()
        out[c] = used.cat.reorder_categories(used.cat.categories.sort_values())
    return out


class PathParts:
    """A streamed run's output a bucket of connections at a time: each bucket's path rows, NAT rows (sorted by journey
    and step) and the hops of its representative journeys, pickled to a temporary directory of their own (removed by
    :meth:`close`, by ``TemporaryDirectory``'s finalizer when dropped or at exit) as the buckets are built, and read back
    one bucket at a time in connection order (:meth:`parts`: what ``paths`` prints and writes) or whole (:meth:`paths`,
    :meth:`nat`, :meth:`hops`: what a library caller reads). A path table part is typed as the whole table types it
    (:meth:`typed`): categories unioned across the buckets as :func:`_concat` unions them. Held: per category column the
    first bucket's categories and the values used so far (the vocabulary, not a row per connection)."""

    def __init__(self, inv, dir: str | os.PathLike | None = None) -> None:  # noqa: A002 - tempfile's name
        from pcaptools.process import SpillDir

        self.inv = inv  # the empty NAT table's
        self.spill = SpillDir(prefix="pcaptools-paths-out-", dir=dir)
        self.dir = Path(self.spill.name)
        self.buckets = 0
        self.connections = 0
        self._first: dict[str, pd.Index] = {}  # category column -> the first bucket's categories
        self._same: dict[str, bool] = {}  # every bucket had those categories (so far)
        self._used: dict[str, pd.Index] = {}  # values of the column seen in any bucket
        self._object = False  # a category column was not categorical in some bucket: values as objects, as _concat

    def add(self, paths: pd.DataFrame, nat: pd.DataFrame, hops: pd.DataFrame) -> None:
        """Spill the next bucket's path rows, NAT rows and representative journeys' hops."""
        from pcaptools.schema import PATH_COLUMNS

        for col in (c.name for c in PATH_COLUMNS if c.dtype == "category"):
            self._tally(col, paths[col])
        k = self.buckets
        for name, table in (("paths", paths), ("nat", nat), ("hops", hops)):
            table.to_pickle(self.dir / f"{name}-{k}.pkl")
        self.buckets += 1
        self.connections += len(paths)

    def _tally(self, col: str, v: pd.Series) -> None:
        """Note a bucket's categories and values of category column ``col``."""
        cat = isinstance(v.dtype, pd.CategoricalDtype)
        used = pd.Index(v.dropna().unique().astype(object) if cat else pd.unique(v.dropna()))
        self._used[col] = used if col not in self._used else self._used[col].append(used).unique()
        if not cat:
            self._same[col] = False
            self._object = True
        elif col not in self._first:
            self._first[col], self._same[col] = v.cat.categories, True
        elif self._same[col]:
            self._same[col] = v.cat.categories.equals(self._first[col])

    def categories(self, col: str) -> pd.Index:
        """Category column ``col``'s categories in the whole table: the buckets' when all had the same, else the sorted
        values used (what :func:`_concat` then ``astype("category")`` give)."""
        if self._same.get(col) and col in self._first:
            return self._first[col]
        return self._used.get(col, pd.Index([], dtype=object)).sort_values()

    def typed(self, paths: pd.DataFrame) -> pd.DataFrame:
        """A bucket's path rows with the whole table's dtypes (:meth:`categories`)."""
        from pcaptools.k8s.paths import _typed
        from pcaptools.schema import PATH_COLUMNS

        out = _typed(paths)
        for col in (c.name for c in PATH_COLUMNS if c.dtype == "category"):
            out[col] = out[col].cat.set_categories(self.categories(col))
        return out

    def part(self, k: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Bucket ``k``'s (path rows typed as the whole table, NAT rows, representative journeys' hops)."""
        p, nat, hops = (pd.read_pickle(self.dir / f"{name}-{k}.pkl") for name in ("paths", "nat", "hops"))
        return self.typed(p), nat, hops

    def parts(self):
        """Every bucket's :meth:`part` in connection order, one read at a time (the empty tables when no bucket)."""
        if not self.buckets:
            yield _empty(), self.nat(), _empty_hops()
        for k in range(self.buckets):
            yield self.part(k)

    def paths(self) -> pd.DataFrame:
        """The whole path table: the buckets' parts, typed alike, one after the other."""
        from pcaptools.schema import PATH_COLUMNS, validate

        if not self.buckets:
            return _empty()
        return validate(pd.concat([p for p, _, _ in self.parts()], ignore_index=True), PATH_COLUMNS, table="paths")

    def nat(self) -> pd.DataFrame:
        """The whole NAT table sorted by journey and step, as the buckets' tables joined by :func:`_concat`."""
        if not self.buckets:
            return _build(_empty_hops(), self.inv, None)[1]
        parts = [pd.read_pickle(self.dir / f"nat-{k}.pkl") for k in range(self.buckets)]
        return _concat(parts).sort_values(["journey", "step"], kind="stable", ignore_index=True)

    def hops(self) -> pd.DataFrame:
        """The hops of every connection's representative journeys, bucket after bucket."""
        parts = [pd.read_pickle(self.dir / f"hops-{k}.pkl") for k in range(self.buckets)]
        return _concat(parts) if parts else _empty_hops()

    def route_groups(self) -> pd.DataFrame:
        """:func:`~pcaptools.k8s.groups.route_groups` of the whole table, a bucket read at a time: of each only the
        route's columns (text ones as categories), its latency and connection and its NAT operations are kept, joined as
        category codes (about 30 bytes a connection)."""
        from pcaptools.k8s.groups import ROUTE_KEY, nat_ops, route_groups

        keys = [c for c in ROUTE_KEY if c != "nat_ops"]
        parts = []
        for p, nat, _ in self.parts():
            q = p.loc[:, [*keys, "latency_ns", "connection"]]
            q["encap"] = q["encap"].astype("category")
            q["nat_ops"] = pd.Categorical(nat_ops(p, nat))
            parts.append(q)
        if not parts:
            return route_groups(_empty(), None)
        t = _concat(parts)
        return route_groups(t, None, ops=t.pop("nat_ops").astype(object).to_numpy())

    def select(self, connections: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(path rows of ``connections`` in that order, their journeys' NAT rows, their representative journeys' hops),
        a bucket read at a time: the connections a grouped listing shows."""
        want = np.asarray(connections, np.int64)
        picked = []
        for p, nat, hops in self.parts():
            sel = p.loc[np.isin(p["connection"].to_numpy(np.int64), want)]
            if len(sel):
                js = np.concatenate([sel["forward_journey"].to_numpy(np.int64), sel["reply_journey"].to_numpy(np.int64)])
                picked.append((sel, *(t.loc[np.isin(t["journey"].to_numpy(np.int64), js)].copy() for t in (nat, hops))))
        if not picked:
            return _empty(), self.nat(), _empty_hops()
        paths = pd.concat([x[0] for x in picked], ignore_index=True)
        return paths.iloc[pd.Index(paths["connection"]).get_indexer(want)], _concat([x[1] for x in picked]), _concat([x[2] for x in picked])

    def close(self) -> None:
        """Remove the spilled files."""
        self.spill.cleanup()


class DiagnosisParts:
    """A streamed run's diagnosis a bucket of connections at a time: each bucket's connection and loss rows and
    timeline attempts as columns (:meth:`~pcaptools.k8s.diagnose.Diagnoser.take`) and, with ``--iptables``, its NAT
    steps' rules (:func:`pcaptools.k8s.iptables.explain` of the bucket's NAT rows), pickled into the directory of the
    run's :class:`PathParts` as each bucket is diagnosed (removed with it: :meth:`PathParts.close`, or its finalizer
    when dropped or at exit), read back one bucket at a time (:meth:`part`: what ``why`` and ``paths --json`` print,
    through :meth:`Diagnosis.parts() <pcaptools.k8s.diagnose.Diagnosis.parts>` and ``connection_record``) or whole
    (:meth:`connections`, :meth:`losses`, :meth:`timeline`, :meth:`nat_rules`: what a library caller reads, the
    tables the in-memory run gives). Held: each bucket's first and last connection."""

    def __init__(self, out: PathParts, *, rules: bool) -> None:
        self.out = out  # its directory (kept while this is)
        self.dir = out.dir
        self.rules = rules
        self._bounds: list[tuple[int, int, int]] = []  # per part holding connections: its first and last connection, k
        self._lo = np.zeros(0, np.int64)  # the parts' first connections (buckets run in order), made when looked up
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, connections: np.ndarray, columns: dict, nat_rules: pd.DataFrame | None) -> None:
        """Spill the next bucket's diagnosis: ``columns`` (``Diagnoser.take()``) of its path rows' ``connections`` and
        its NAT steps' rules (None without ``--iptables``)."""
        pd.to_pickle({**columns, "nat_rules": nat_rules}, self.dir / f"diagnosis-{self._n}.pkl")
        if len(connections):
            self._bounds.append((int(connections.min()), int(connections.max()), self._n))
        self._n += 1

    def _read(self, k: int) -> dict:
        return pd.read_pickle(self.dir / f"diagnosis-{k}.pkl")

    def part_of(self, c: int) -> int:
        """The part whose bucket holds connection ``c`` (-1: none)."""
        if len(self._lo) != len(self._bounds):
            self._lo = np.array([lo for lo, _, _ in self._bounds], np.int64)
        i = int(np.searchsorted(self._lo, c, side="right")) - 1
        return self._bounds[i][2] if i >= 0 and c <= self._bounds[i][1] else -1

    def part(self, k: int) -> Diagnosis:
        """Part ``k``'s diagnosis, a Diagnosis of its bucket's connections (-1: of none)."""
        from pcaptools.k8s.diagnose import diagnosis_of

        cols = self._read(k) if k >= 0 else self._empty()
        return diagnosis_of(cols, paths=None, notes=[], nat_rules=cols["nat_rules"])

    def _empty(self) -> dict:
        """A part of no connection."""
        from pcaptools.k8s.diagnose import output_columns

        return {**output_columns(), "nat_rules": self._explained([]) if self.rules else None}

    def _columns(self, name: str) -> dict[str, np.ndarray]:
        """Every part's ``name`` columns (``connections``, ``losses``, ``attempts``), one after the other."""
        from pcaptools.k8s.diagnose import _concat_columns

        parts = [self._read(k)[name] for k in range(self._n)] or [self._empty()[name]]
        return _concat_columns(parts, {k: v.dtype for k, v in parts[0].items()})

    def connections(self) -> pd.DataFrame:
        """The whole connection table: the parts' rows one after the other."""
        from pcaptools.k8s.diagnose import CONNECTION_COLUMNS, table_of

        return table_of(self._columns("connections"), CONNECTION_COLUMNS)

    def losses(self) -> pd.DataFrame:
        """The whole loss table: the parts' rows one after the other."""
        from pcaptools.k8s.diagnose import LOSS_COLUMNS, table_of

        return table_of(self._columns("losses"), LOSS_COLUMNS)

    def timeline(self) -> pd.DataFrame:
        """The whole timeline table (a row per sighting): the parts' attempts one after the other."""
        from pcaptools.k8s.diagnose import _Attempts

        return _Attempts(self._columns("attempts")).table()

    def nat_rules(self) -> pd.DataFrame:
        """The whole NAT-rule table, as :func:`~pcaptools.k8s.iptables.explain` gives it on the whole NAT table (sorted
        by journey and step): the parts' rows, typed as one table of all of them."""
        return self._explained([self._read(k)["nat_rules"] for k in range(self._n)])

    @staticmethod
    def _explained(parts: list[pd.DataFrame]) -> pd.DataFrame:
        """Tables of :func:`~pcaptools.k8s.iptables.explain` as one, in (journey, step) order: columns of objects
        joined and typed once, as ``explain`` types its rows (a part's column of None alone would not be text)."""
        from pcaptools.k8s.iptables import EXPLAIN_COLUMNS

        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame([], columns=list(EXPLAIN_COLUMNS))
        cols = {k: np.concatenate([p[k].to_numpy(object) for p in parts]) for k in EXPLAIN_COLUMNS}
        whole = pd.DataFrame({k: v.tolist() for k, v in cols.items()}, columns=list(EXPLAIN_COLUMNS))
        return whole.sort_values(["journey", "step"], kind="stable", ignore_index=True)

    def diagnosis(self, *, paths, notes: list[str]) -> Diagnosis:
        """The Diagnosis of every part: its tables made when read, its records read a part at a time."""
        from pcaptools.k8s.diagnose import Diagnosis

        return Diagnosis(connections=self.connections, losses=self.losses, timeline=self.timeline, paths=paths, notes=notes,
                         nat_rules=self.nat_rules if self.rules else None, spilled=self)  # fmt: skip

    def close(self) -> None:
        """Remove the spilled files (the run's PathParts' too: one directory)."""
        self.out.close()
