"""Long commands show a transient progress indicator on stderr; short ones stay quiet."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from pcaptools import cli
from pcaptools.io import read_records

SAMPLE = Path(__file__).parent.parent / "sample_pcaps" / "calico-vxlan"
CAPTURE = SAMPLE / "node-1" / "eth0.pcap"


def test_inputs_over_the_threshold_get_a_progress_indicator_on_a_terminal(monkeypatch):
    monkeypatch.setattr(cli, "_BUSY_BYTES", 1)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich takes stderr for a terminal
    assert isinstance(cli._busy([str(CAPTURE)], "decoding"), Progress)
    assert isinstance(cli._busy([str(SAMPLE)], "correlating"), Progress)  # directories are summed


def test_piped_stderr_gets_no_indicator(monkeypatch):
    monkeypatch.setattr(cli, "_BUSY_BYTES", 1)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # rich takes stderr for no terminal: a transient spinner would print nothing
    assert isinstance(cli._busy([str(CAPTURE)], "decoding"), contextlib.nullcontext)
    assert isinstance(cli._busy([str(SAMPLE)], "correlating"), contextlib.nullcontext)


def test_small_inputs_get_no_indicator():
    assert isinstance(cli._busy([str(CAPTURE)], "decoding"), contextlib.nullcontext)
    assert cli._input_bytes([str(SAMPLE)]) == sum(f.stat().st_size for f in SAMPLE.rglob("*") if f.is_file())


def test_decode_with_the_indicator_on_writes_the_same_table(monkeypatch, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    monkeypatch.setattr(cli, "_BUSY_BYTES", 1)
    assert cli.main(["decode", str(CAPTURE), "-o", str(out)]) == 0
    df = pd.read_parquet(out)
    assert len(df) == len(read_records(CAPTURE))  # one row per record, as without the indicator
    assert f"{len(df):,} packets from 1 input(s)" in capsys.readouterr().out
