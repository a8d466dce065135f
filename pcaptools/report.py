"""One self-contained HTML report for one capture set, or a CNI comparison of several.

Gathers the tables (:func:`pcaptools.compare.compare` loads, correlates and names every set; per set the
hop-latency samples and each connection's sightings) and hands them to :mod:`pcaptools.render.html`.

Example::

    from pcaptools.report import write_report
    write_report(["sample_pcaps/vpc", "sample_pcaps/calico-vxlan"], "report.html")
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.compare import compare
from pcaptools.correlate.latency import hop_samples
from pcaptools.k8s.sequence import sequences
from pcaptools.render.html import report_html

DEFAULT_MAX_PACKETS = 10
"""Packets drawn per connection in its sequence diagram (the first ones: handshake, first data, ...)."""


def report(capture_sets: Mapping[str, object] | list, *, inventory=None, max_packets: int = DEFAULT_MAX_PACKETS,
           window_ns: int | None = None) -> str:  # fmt: skip
    """The HTML text of the report on ``capture_sets`` (directories / manifests / CaptureSets, as for ``compare``)."""
    cmp = compare(capture_sets, inventory=inventory, window_ns=window_ns)
    seqs, samples = {}, {}
    for label in cmp.labels:
        corr = cmp.correlations[label]
        seqs[label] = sequences(corr, cmp.paths[label], cmp.nat[label], cmp.inventories.get(label), max_packets=max_packets)
        samples[label] = by_role(hop_samples(corr.hops), cmp.capture_points[label])
    return report_html(cmp, seqs, samples)


def by_role(samples: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Hop samples with a ``hop`` column naming the hop by its points' roles ('pod-veth → overlay', ' (wire)' across
    nodes): a handful of distributions people can compare, where point pairs number in the dozens."""
    role = dict(zip(points["point"], points["role"], strict=True))
    node = dict(zip(points["point"], points["node"], strict=True))
    fr, to = samples["from_point"].map(role).fillna("?"), samples["to_point"].map(role).fillna("?")
    across = (samples["from_point"].map(node) != samples["to_point"].map(node)).to_numpy()
    return samples.assign(hop=(fr + " → " + to).to_numpy(object) + np.where(across, " (wire)", ""))


def write_report(capture_sets: Mapping[str, object] | list, out: str | os.PathLike, **kw) -> Path:
    """Write :func:`report` to ``out`` (UTF-8); returns its path."""
    path = Path(out)
    path.write_text(report(capture_sets, **kw), encoding="utf-8")
    return path
