"""One self-contained HTML report for one capture set, or a CNI comparison of several.

Gathers the tables (:func:`pcaptools.compare.compare` loads, correlates and names every set; per set the
hop-latency samples and each connection's sightings) and hands them to :mod:`pcaptools.render.html`.

Within a ``memory`` budget the sets exceed, compare streams them (the same tables) and the hops are read back from
its Parquet file a row group at a time: the hop samples (role-named hop and latency, what the figure draws) in one
pass, each connection's first ``max_packets`` packets chosen in another (:func:`pcaptools.k8s.sequence.first_journeys`,
at most that many kept a connection) and read in a third. The page is the in-memory run's; what differs from one run
to another is only its "generated" time (and a note, in the set's notes, when the budget is below the correlation's floor).

Example::

    from pcaptools.report import write_report
    write_report(["sample_pcaps/vpc", "sample_pcaps/calico-vxlan"], "report.html")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.compare import compare
from pcaptools.correlate.latency import hop_samples
from pcaptools.k8s.sequence import first_journeys, sequences
from pcaptools.render import drawing
from pcaptools.render.html import drawn_first, report_html

DEFAULT_MAX_PACKETS = 10
"""Packets drawn per connection in its sequence diagram (the first ones: handshake, first data, ...)."""

DEFAULT_MAX_DIAGRAMS = 200
"""Connections per set whose sequence diagram is drawn (the first ones, in the page's order): each costs ~40 ms of
matplotlib and ~30 kB of page, so a set of 30,000 connections drew for 20 minutes into a page no browser opens."""


def report(capture_sets: Mapping[str, object] | list, *, inventory=None, max_packets: int = DEFAULT_MAX_PACKETS,
           max_diagrams: int | None = DEFAULT_MAX_DIAGRAMS, window_ns: int | None = None, allow_outside: bool = False, memory: int | None = None,
           on_skipped: Callable[[list[dict]], None] | None = None, **forced: int) -> str:  # fmt: skip
    """The HTML text of the report on ``capture_sets`` (directories / manifests / CaptureSets, as for ``compare``).

    ``max_diagrams``: connections per set drawn as sequence diagrams (None: all). ``memory`` (bytes): sets whose captures exceed it are streamed (module doc), None reads them in memory;
    ``on_skipped`` is handed the capture files left out of every set (``Comparison.skipped_files``; the page's set
    notes say them too); ``forced``: compare's ``window_rows`` / ``bucket_rows`` / ``batch_records`` (tests)."""
    cmp = compare(capture_sets, inventory=inventory, window_ns=window_ns, allow_outside=allow_outside, memory=memory, **forced)
    if on_skipped is not None:
        on_skipped([f for lab in cmp.labels for f in cmp.skipped_files.get(lab, [])])
    # a drawing process for the first set with enough diagrams, started now: its start overlaps the sequences and samples
    ahead = drawing.ahead() if drawn_first(cmp, max_diagrams) is not None else None
    try:
        seqs, samples = {}, {}
        for label in cmp.labels:
            seqs[label] = _sequences(cmp, label, max_packets)
            samples[label] = _hop_samples(cmp, label)
        return report_html(cmp, seqs, samples, max_diagrams=max_diagrams, ahead=ahead)
    finally:
        if ahead is not None:
            ahead.close()


def _hop_samples(cmp, label: str) -> pd.DataFrame:  # noqa: ANN001
    """Every consecutive pair of sightings of ``label``'s journeys as (hop named by roles, latency_ns), part by part."""
    parts = []
    for h in cmp.hop_tables(label):
        s = by_role(hop_samples(h), cmp.capture_points[label])
        parts.append(pd.DataFrame({"hop": s["hop"].array, "latency_ns": s["latency_ns"].to_numpy(np.int64)}))
    if not parts:
        return pd.DataFrame({"hop": pd.Series([], dtype=object), "latency_ns": pd.Series([], dtype=np.int64)})
    return pd.concat(parts, ignore_index=True)


def _sequences(cmp, label: str, max_packets: int) -> pd.DataFrame:  # noqa: ANN001
    """Each connection's first ``max_packets`` packets across capture points (SEQUENCE_COLUMNS): from the whole hops
    table in memory, or from the streamed hops file the journeys of those packets only."""
    corr, paths, nat, inv = cmp.correlations[label], cmp.paths[label], cmp.nat[label], cmp.inventories.get(label)
    file = cmp.hops_files.get(label)
    if file is None or not file.exists():
        return sequences(corr, paths, nat, inv, max_packets=max_packets)
    from pcaptools.k8s.paths_stream import journey_connections, rows_of_journeys
    from pcaptools.process import release_freed_memory

    release_freed_memory()  # what compare's passes left in the allocators
    labels = journey_connections(file)  # as the streamed paths run labelled them, not a second label pass
    release_freed_memory()
    wanted = first_journeys(cmp.hop_tables(label), labels, inv, max_packets=max_packets)
    hops = rows_of_journeys(file, wanted)
    release_freed_memory()
    return sequences(replace(corr, hops=hops), paths, nat, inv, max_packets=max_packets, labels=labels)


def by_role(samples: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Hop samples with a ``hop`` column naming the hop by its points' roles ('pod-veth → overlay', ' (wire)' across
    nodes; '?' for a point without a role): a handful of distributions people can compare, where point pairs number
    in the dozens. The name is made once per distinct point pair; ``hop`` is categorical (its names sorted)."""
    role = dict(zip(points["point"], points["role"], strict=True))
    node = dict(zip(points["point"], points["node"], strict=True))
    f_code, f_name = pd.factorize(samples["from_point"])
    t_code, t_name = pd.factorize(samples["to_point"])
    width = max(len(t_name), 1)
    pairs, inverse = np.unique(f_code.astype(np.int64) * width + t_code, return_inverse=True)

    def name(a: str, b: str) -> str:
        na, nb = node.get(a), node.get(b)
        across = pd.isna(na) or pd.isna(nb) or na != nb  # a point without a node counts as another node's
        return f"{_role(role, a)} → {_role(role, b)}" + (" (wire)" if across else "")

    names = [name(f_name[q // width], t_name[q % width]) for q in pairs.tolist()]
    cats = sorted(set(names))
    at = {c: i for i, c in enumerate(cats)}
    codes = np.array([at[x] for x in names], np.int64)[inverse.reshape(-1)] if names else np.zeros(0, np.int64)
    return samples.assign(hop=pd.Categorical.from_codes(codes, categories=cats))


def _role(role: dict, point: str) -> str:
    r = role.get(point)
    return r if isinstance(r, str) else "?"


def write_report(capture_sets: Mapping[str, object] | list, out: str | os.PathLike, **kw) -> Path:
    """Write :func:`report` to ``out`` (UTF-8); returns its path."""
    path = Path(out)
    path.write_text(report(capture_sets, **kw), encoding="utf-8")
    return path
