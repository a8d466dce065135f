"""``report`` within a memory budget: the sets compared streamed, hop samples read a hops row group at a time, each
connection's first packets chosen in a bounded pass; the same page as the in-memory run but for its time stamp."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pcaptools.report as report_module
from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.paths import _connections, paths_and_nat
from pcaptools.k8s.sequence import first_journeys, sequences
from pcaptools.report import report

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"

GENERATED = re.compile(r" · generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")
"""The one run-dependent part of a page: when it was written."""


@pytest.fixture
def bounded_passes(monkeypatch) -> list[int]:
    """Records how many journeys each bounded choice of first packets kept (one entry per streamed set)."""
    kept: list[int] = []

    def spy(*args, **kw):
        got = first_journeys(*args, **kw)
        kept.append(len(got))
        return got

    monkeypatch.setattr(report_module, "first_journeys", spy)
    return kept


def _page(html: str) -> str:
    stamp = GENERATED.findall(html)
    assert len(stamp) == 1
    return GENERATED.sub("", html)


def _connections_drawn(html: str) -> list[str]:
    return re.findall(r'<details id="(s\d+-conn-c\d+)"', html)


def test_comparison_report_in_windows_and_buckets_is_the_in_memory_page(bounded_passes):
    sets = [SAMPLES / "vpc", SAMPLES / "calico-vxlan"]
    whole = report(sets)
    bounded = report(sets, window_rows=300, bucket_rows=50, batch_records=500)
    assert len(bounded_passes) == 2 and all(n > 16 for n in bounded_passes)  # one bounded pass per set
    assert len(_connections_drawn(whole)) >= 32 and "CNI comparison" in whole
    assert _page(whole) == _page(bounded)


def test_generated_set_report_with_few_packets_per_diagram_is_the_in_memory_page(generated, bounded_passes):
    whole = report([generated], max_packets=3)
    bounded = report([generated], max_packets=3, window_rows=2000, bucket_rows=3000, batch_records=1500)
    conns = _connections_drawn(whole)
    assert len(conns) > 150
    assert bounded_passes == [3 * len(conns)]  # three packets of each connection read back, no more
    assert _page(whole) == _page(bounded)


def test_report_on_a_directory_without_manifest_streamed_is_the_in_memory_page(plain_dir, bounded_passes):
    whole = report([plain_dir])
    bounded = report([plain_dir], window_rows=300, bucket_rows=50, batch_records=400)
    assert len(bounded_passes) == 1 and "inferred 14 capture points" in whole
    assert _page(whole) == _page(bounded)


@pytest.mark.parametrize("max_packets", [1, 2, 5])
def test_first_journeys_from_parts_give_the_sequences_of_the_whole_table(max_packets):
    """Each connection's first packets, chosen from the hops table cut into parts of whole journeys, draw what the
    whole table draws."""
    corr = correlate(CaptureSet.load(SAMPLES / "calico-vxlan"))
    inv = SAMPLES / "calico-vxlan" / "inventory.json"
    paths, nat = paths_and_nat(corr, inv)
    h = corr.hops
    j = h["journey"].to_numpy(np.int64)
    cuts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])[::7]  # a part every 7 journeys
    parts = [h.iloc[a:b] for a, b in zip(cuts, [*cuts[1:], len(h)], strict=True)]
    keep = (h["proto"].to_numpy() >= 0) & h["src"].notna().to_numpy() & h["dst"].notna().to_numpy()
    from pcaptools.k8s.nat import order_hops

    labels = _connections(order_hops(h.loc[keep].reset_index(drop=True)))
    wanted = first_journeys(parts, labels, inv, max_packets=max_packets)
    assert len(parts) > 50 and len(wanted) <= max_packets * len(paths)
    sub = corr.hops.loc[np.isin(j, wanted)].reset_index(drop=True)
    from dataclasses import replace

    whole = sequences(corr, paths, nat, inv, max_packets=max_packets)
    chosen = sequences(replace(corr, hops=sub), paths, nat, inv, max_packets=max_packets, labels=labels)
    assert whole["packet"].max() == max_packets - 1
    pd.testing.assert_frame_equal(whole, chosen)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_cli_report_under_a_memory_cap_writes_the_same_page(tmp_path):
    small = _cli("report", str(SAMPLES / "vpc"), "--memory", "16MiB", "-o", "small.html", cwd=tmp_path)
    large = _cli("report", str(SAMPLES / "vpc"), "-o", "large.html", cwd=tmp_path)
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    assert "written to small.html" in small.stdout and "written to large.html" in large.stdout
    a, b = (tmp_path / "small.html").read_text(), (tmp_path / "large.html").read_text()
    # 16 MiB is below any run's floor: the streamed set's notes say so (once; the set has no other note, so the Notes
    # heading comes with it), and nothing else differs
    floor = re.compile(r'<h3>Notes</h3><div class="note">the memory budget \(16 MiB\) is below this capture set[^<]*</div>')
    assert "<h3>Notes</h3>" not in b
    assert len(floor.findall(a)) == 1
    assert _page(floor.sub("", a)) == _page(b)
