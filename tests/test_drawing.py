"""The report's sequence diagrams drawn on a second process are the ones drawn in this one, in order."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.k8s.sequence import sequences
from pcaptools.render import drawing

CALICO = Path(__file__).resolve().parents[1] / "sample_pcaps" / "calico-vxlan"


@pytest.fixture(scope="module")
def parts():
    """Every connection's sequence rows of the calico sample, repeated past the two-process threshold."""
    corr = correlate(CaptureSet.load(CALICO))
    paths, nat = paths_and_nat(corr, CALICO / "inventory.json")
    seq = sequences(corr, paths, nat, CALICO / "inventory.json", max_packets=10)
    one = [g for _, g in seq.groupby("connection", sort=False)]
    assert len(one) >= 3
    return (one * (drawing.PARALLEL_FROM // len(one) + 2))[: drawing.PARALLEL_FROM + 5]


def test_diagrams_drawn_on_two_processes_equal_those_drawn_in_one(parts):
    both = drawing.sequence_svgs(parts, {"node-1:eth0": "uplink"})
    here = drawing._svgs(parts, {"node-1:eth0": "uplink"})
    assert len(both) == len(parts) and both == here
    assert len(set(both)) > 1 and all(s.startswith("<svg") for s in both)


def test_the_other_process_draws_every_chunk_as_this_one_would_with_its_settings(parts):
    with matplotlib.rc_context({"text.color": "#123456"}):
        other = drawing.Drawer()
        other.send(parts, {"node-1:eth0": "uplink"})  # left alone, it draws every chunk, last first
        assert other.proc.wait(timeout=300) == 0
        other.reader.join(timeout=30)
        styled = {k: drawing._svgs(parts[k * drawing.CHUNK:(k + 1) * drawing.CHUNK], {"node-1:eth0": "uplink"}) for k in other.drawn}
    assert sorted(other.drawn) == list(range(-(-len(parts) // drawing.CHUNK))) and other.lowest == 0
    assert other.drawn == styled
    assert styled[0] != drawing._svgs(parts[: drawing.CHUNK], {"node-1:eth0": "uplink"})  # the setting shows


def test_diagrams_are_all_drawn_here_when_the_other_process_cannot_start(parts, monkeypatch):
    def fail(*a, **k):
        raise OSError("no processes left")

    monkeypatch.setattr(drawing.subprocess, "Popen", fail)
    assert drawing.sequence_svgs(parts) == drawing._svgs(parts, None)


def test_a_drawing_process_started_ahead_is_used_or_stopped(parts):
    ahead = drawing.ahead()
    assert drawing.sequence_svgs(parts, None, ahead) == drawing._svgs(parts, None)
    assert ahead.proc.poll() is not None  # done with
    unused = drawing.ahead()
    assert drawing.sequence_svgs(parts[:3], None, unused) == drawing._svgs(parts[:3], None)  # too few: drawn here
    assert unused.proc.poll() is not None
