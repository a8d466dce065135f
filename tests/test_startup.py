"""Startup stays light: --help and info import only what they need (python -X importtime, as issue #12 asks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"pandas", "numba", "numpy", "matplotlib", "pyarrow", "scapy"}


def _imported(*args: str) -> set[str]:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcaptools.cli", *args],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}


def test_help_imports_no_data_library():
    mods = _imported("--help")
    assert "typer" in mods
    assert not HEAVY & mods


def test_info_reads_a_capture_without_pandas_matplotlib_pyarrow_or_scapy():
    mods = _imported("info", str(ROOT / "tests" / "data" / "own" / "eth.pcap"))
    assert "pcaptools.io.summary" in mods
    assert not {"pandas", "matplotlib", "pyarrow", "scapy"} & mods
