"""A capture set's points' tables are stacked into one only when something reads ``packets``: the one-window
correlation reads them as they are, with the same answers as on the stacked table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.paths import load_paths

ROOT = Path(__file__).resolve().parent.parent
SETS = [ROOT / "sample_pcaps" / "calico-vxlan", ROOT / "sample_pcaps" / "vpc"]


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.name)
def test_correlation_of_unstacked_points_equals_the_correlation_of_the_stacked_table(path: Path) -> None:
    unstacked = CaptureSet.load(path)
    stacked = CaptureSet.load(path)
    pk = stacked.packets  # read first: the correlation then takes the one stacked table
    assert len(stacked.tables()[0]) == 1 and len(unstacked.tables()[0]) == len(unstacked.points) > 1
    a, b = correlate(unstacked), correlate(stacked)
    pd.testing.assert_frame_equal(a.hops, b.hops)  # category dtypes included
    pd.testing.assert_frame_equal(a.hop_latency, b.hop_latency)
    pd.testing.assert_frame_equal(a.losses, b.losses)
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.row_journey, b.row_journey)
    np.testing.assert_array_equal(a.row_ts_corrected, b.row_ts_corrected)
    assert len(unstacked) == len(pk) == len(a.row_journey)


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.name)
def test_stacked_packets_hold_every_point_in_order_with_its_point_columns(path: Path) -> None:
    cs = CaptureSet.load(path)
    tables, point_ids = cs.tables()
    pk = cs.packets
    assert list(pk["point"].cat.categories) == [p.name for p in cs.points]
    np.testing.assert_array_equal(pk["point_id"].to_numpy(), np.concatenate(point_ids))
    np.testing.assert_array_equal(pk["ts_ns"].to_numpy(), np.concatenate([t["ts_ns"].to_numpy() for t in tables]))
    nodes = [cs.points[k].node for k in pk["point_id"].to_numpy()[[0, -1]]]
    assert pk["node"].astype(str).iloc[[0, -1]].tolist() == nodes
    assert cs.tables()[0][0] is pk  # stacked once, then kept


def test_paths_never_stack_the_capture_set() -> None:
    ps = load_paths(SETS[0])
    assert len(ps.captures.tables()[0]) == len(ps.captures.points) > 1


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.name)
def test_some_columns_stacked_alone_are_the_stacked_tables_columns(path: Path) -> None:
    cs = CaptureSet.load(path)
    cols = ["point_id", "src", "ts_ns", "node", "tcp_seq", "no_such_column"]
    part = cs.packets_of(cols)  # before packets is read: only these are stacked
    assert "_packets" in cs.__dict__ and not isinstance(cs.__dict__["_packets"], pd.DataFrame)
    whole = cs.packets
    pd.testing.assert_frame_equal(part, whole[[c for c in cols if c in whole.columns]], check_like=True)
    pd.testing.assert_frame_equal(cs.packets_of(cols), part, check_like=True)  # and from the stacked table, once read
