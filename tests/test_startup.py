"""Startup stays light: --help and info import only what they need (python -X importtime, as issue #12 asks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"pandas", "numba", "numpy", "matplotlib", "pyarrow", "scapy", "pydantic"}


def _imported(*args: str) -> set[str]:
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcaptools.cli", *args],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}


def test_help_imports_no_data_library():
    mods = _imported("--help")
    assert "typer" in mods
    assert not HEAVY & mods


@pytest.mark.parametrize("args", [(), ("--json",)], ids=["table", "json"])
@pytest.mark.parametrize("name", ["eth.pcap", "two_sections.pcapng", "eth.pcap.gz"])
def test_info_on_a_small_capture_imports_neither_numba_nor_pandas(name: str, args: tuple[str, ...]):
    mods = _imported("info", str(ROOT / "tests" / "data" / "own" / name), *args)
    assert "pcaptools.io.summary" in mods
    assert not {"numba", "pandas", "matplotlib", "pyarrow", "scapy", "pydantic"} & mods


def test_numeric_options_written_plainly_are_read_without_pydantic(tmp_path):
    """typer's pydantic coercion is left for values that need it (errors keep its messages, tests/test_cli_usage.py)."""
    mods = _imported("correlate", str(ROOT / "sample_pcaps" / "vpc"), "--window-ms", "1500", "--json", "-o", str(tmp_path / "h.parquet"))
    assert "pcaptools.correlate.windows" in mods
    assert "pydantic" not in mods
