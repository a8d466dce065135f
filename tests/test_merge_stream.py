"""merge with bounded memory: capture files read in windows and k-way merged give the same pcapng byte for byte."""

from __future__ import annotations

import pytest
from stream_support import ROOT

from pcaptools.cli import main
from pcaptools.correlate.api import correlate
from pcaptools.correlate.merge import merge
from pcaptools.io import read_records
from pcaptools.k8s.discover import load_captures


@pytest.fixture(scope="module", params=["calico-vxlan", "vpc"])
def capture_set(request):
    cs = load_captures([str(ROOT / "sample_pcaps" / request.param)])
    return cs, correlate(cs)


@pytest.mark.parametrize("dedup", [False, True], ids=["all", "dedup"])
@pytest.mark.parametrize("batch_records", [1, 3, 64])
def test_merge_in_windows_writes_the_same_bytes_as_the_whole_merge(capture_set, dedup, batch_records, tmp_path):
    cs, corr = capture_set
    whole, windowed = tmp_path / "whole.pcapng", tmp_path / "windowed.pcapng"
    n = merge(cs, whole, correlation=corr, dedup=dedup)
    assert merge(cs, windowed, correlation=corr, dedup=dedup, batch_records=batch_records) == n
    assert windowed.read_bytes() == whole.read_bytes()
    assert len(read_records(windowed)) == n


def test_cli_merge_with_a_memory_cap_writes_the_same_file(tmp_path):
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    src = str(ROOT / "sample_pcaps" / "vpc")
    assert main(["merge", src, "-o", str(a), "--dedup"]) == 0
    assert main(["merge", src, "-o", str(b), "--dedup", "--memory", "64MiB"]) == 0
    assert a.read_bytes() == b.read_bytes()
