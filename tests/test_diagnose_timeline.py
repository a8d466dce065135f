"""A diagnosis's timeline kept as attempt columns gives each connection the timeline its table gives: the table made
when read (calico-vxlan sample), and attempts sharing a (direction, packet, attempt number) taken as one, as the
table's rows of one key are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcaptools.k8s.diagnose import Diagnosis, _Attempts, diagnose
from pcaptools.k8s.paths import load_paths

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "calico-vxlan"


def _records(d: Diagnosis) -> dict[int, dict]:
    return {c: d.connection_record(c) for c in d.connections["connection"].tolist()}


def _from_table(d: Diagnosis) -> Diagnosis:
    """The same diagnosis given as tables only (a Diagnosis made by hand: its timeline read from the table)."""
    return Diagnosis(connections=d.connections, losses=d.losses, timeline=d.timeline.copy(), paths=d.paths, notes=d.notes)


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample_pcaps/calico-vxlan is not checked out")
def test_timeline_from_attempt_columns_is_the_one_its_table_gives():
    ps = load_paths(SAMPLE)
    d = diagnose(ps.captures, ps.correlation, ps.inventory, detail=ps.detail())
    assert d._attempts is not None and "_timeline_value" in d.__dict__  # the table not made yet
    got = _records(d)
    assert sum(len(r["timeline"]) for r in got.values()) > 10  # the sample has retransmitted / lost packets
    table = d.timeline  # made now
    assert len(table) == sum(len(a["sightings"]) for r in got.values() for a in r["timeline"])
    assert table["direction"].dtype == pd.Series(["x"]).dtype  # strings as pandas makes them
    assert _records(_from_table(d)) == got


def test_attempts_of_one_key_are_one_attempt_with_their_sightings_in_order():
    # connection 7: attempts 0 and 2 share (forward, "SYN 74B #0001", 1); attempt 1 is another packet
    cols = {"connection": np.array([7, 7, 7]), "direction": np.array(["forward"] * 3, object), "dir": np.zeros(3, np.int64),
            "packet": np.array(["SYN 74B #0001", "ACK 66B #0002", "SYN 74B #0001"], object),
            "packet_id": np.array([0, 1, 0]), "attempt": np.array([1, 1, 1]), "reached": np.array([False, True, True]),
            "sightings": np.array([2, 1, 2]), "point": np.array(["a", "b", "a", "c", "d"], object),
            "ts_corrected_ns": np.array([10, 11, 20, 30, 31])}  # fmt: skip
    att = _Attempts(cols)
    d = Diagnosis(connections=pd.DataFrame({"connection": [7], "status": ["degraded"]}),
                  losses=pd.DataFrame(columns=["connection", "direction", "last_seen", "first_missed", "node", "packets",
                                               "cause", "confidence", "evidence"]),
                  timeline=att.table, paths=pd.DataFrame())  # fmt: skip
    d._attempts = att
    tl = d.connection_record(7)["timeline"]
    assert [(a["packet"], a["reached"], [s["ts_ns"] for s in a["sightings"]]) for a in tl] == [
        ("SYN 74B #0001", False, [10, 11, 30, 31]), ("ACK 66B #0002", True, [20])]
    assert _records(_from_table(d)) == _records(d)
