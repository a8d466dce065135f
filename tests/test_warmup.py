"""First run: numba compiles are announced on stderr, cached runs are silent, ``pcaptools warmup`` pays the compile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream_support import generated_capture
from typer.testing import CliRunner

from pcaptools.cli import app
from pcaptools.warmup import warmup

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


_COUNT_COMPILES = (
    "import numba.core.event as ev\n"
    "from pcaptools.packets import read_packets\n"
    "seen = []\n"
    "class L(ev.Listener):\n"
    "    def on_start(self, e): seen.append(e)\n"
    "    def on_end(self, e): pass\n"
    "ev.register('numba:compile', L())\n"
)
"""Prologue of a child process's code: ``seen`` collects every numba compile that starts."""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, cwd=ROOT, check=True)


def test_a_numba_compile_is_announced_on_stderr_and_closed_with_its_duration() -> None:
    code = (
        "import pcaptools.decode.compiling as c\n"
        "c.GRACE_S = 0.0; c.TICK_S = 0.01\n"
        "c.announce_compiles()\n"
        "import numba, numpy as np\n"
        "@numba.njit\n"
        "def f(a):\n"
        "    s = 0.0\n"
        "    for x in np.sort(a):\n"
        "        s += np.sqrt(x)\n"
        "    return s\n"
        "print(f(np.arange(5.0)))\n"
    )
    res = _run(code)
    assert res.stdout.strip() == str(sum(x**0.5 for x in range(5)))
    lines = res.stderr.splitlines()
    assert lines[0] == "pcaptools: compiling the decoder, first run only…"
    assert lines[-1].startswith("pcaptools: compiled 1 kernels in ")


def test_warmup_decodes_and_correlates_its_two_point_set() -> None:
    r = warmup()
    # 8 TCP packets, each sent natively and inside VXLAN, captured at 2 points: 16 rows per point
    assert r["packets"] == 32
    assert r["journeys"] == 8
    assert r["seconds"] > 0


def test_after_warmup_a_fresh_process_reads_without_compiling_or_announcing() -> None:
    res = CliRunner().invoke(app, ["warmup"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("ready: ")
    code = (
        _COUNT_COMPILES +
        "print(len(read_packets(['tests/data/own/eth.pcap', 'tests/data/own/eth.pcapng'])), len(seen))\n"
    )
    res = _run(code)
    rows, compiles = map(int, res.stdout.split())
    assert rows > 0 and compiles == 0
    assert "compiling" not in res.stderr


def test_warmup_compiles_the_int16_and_int32_codes_of_the_category_factorize_kernel() -> None:
    # a fresh process: the signatures are what warmup() itself compiled or loaded, not other tests
    code = (
        "from pcaptools.warmup import warmup\n"
        "from pcaptools.decode.table import _codes_kernel\n"
        "warmup()\n"
        "print(' '.join(sorted(str(sig[-1].dtype) for sig in _codes_kernel.signatures)))\n"
    )
    assert _run(code).stdout.split() == ["int16", "int32", "int8"]


def test_after_warmup_a_capture_of_hundreds_of_addresses_reads_without_compiling(tmp_path: Path) -> None:
    cap = generated_capture(tmp_path / "gen.pcap", packets=3_000, flows=300, seed=11)
    res = CliRunner().invoke(app, ["warmup"])
    assert res.exit_code == 0, res.output
    code = (
        _COUNT_COMPILES +
        f"df = read_packets({str(cap)!r})\n"
        "print(df['src'].cat.codes.dtype, df['src'].nunique(), len(seen))\n"
    )
    dtype, addresses, compiles = _run(code).stdout.split()
    assert dtype == "int16" and int(addresses) >= 128
    assert int(compiles) == 0
