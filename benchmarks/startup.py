"""Startup section of benchmarks/run.py: how long a short command takes as a fresh process, and what it imports.

Times, each a fresh process started as a user starts it (best of ``repeat`` runs, wall and CPU
seconds): ``python -c pass`` (the interpreter alone, the floor), ``pcaptools --help``,
``pcaptools info small.pcap`` (the table and ``--json``; tests/data/own/eth.pcap, 34 records, walked
interpreted: see pcaptools/jit.py) and, for comparison, the same summary through the numba walk
(``summarize(..., compiled=True)``: numba imported, kernels loaded from its cache). Warm: bytecode
caches written (into a temporary PYTHONPYCACHEPREFIX, so the environment's PYTHONDONTWRITEBYTECODE does
not make every run recompile the sources), numba's cache filled, the files in the page cache. Then the
largest top-level entries of ``python -X importtime`` for ``pcaptools info small.pcap``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SMALL = REPO / "tests" / "data" / "own" / "eth.pcap"

_WRAP = """
import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status))
"""


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process (started from a small launcher, output discarded)."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, env=env)
    wall, cpu, rc = out.stdout.split()
    if out.returncode or int(rc):
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}): {out.stderr[-2000:]}")
    return float(wall), float(cpu)


def importtime(args: list[str], env: dict, top: int = 12) -> list[tuple[str, float]]:
    """(module, cumulative ms) of the ``top`` slowest top-level imports of ``pcaptools ARGS``."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pcaptools.cli", *args], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line.split("|")
            if not name.startswith("  ") and cum.strip().isdigit():  # top level: one space after the bar
                rows.append((name.strip(), int(cum) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def user_env(pyc: str) -> dict[str, str]:
    """The environment a user's command runs in: this checkout importable, bytecode cached (in ``pyc``, even where
    the environment says PYTHONDONTWRITEBYTECODE, which would recompile pcaptools' sources on every run)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=pyc, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return env


def run(repeat: int) -> tuple[list[dict], list[tuple[str, float]]]:
    """Time every command; one result dict per row of the table, and the import-time entries."""
    py = [sys.executable]
    cli = [*py, "-m", "pcaptools.cli"]
    compiled = [*py, "-c", f"from pcaptools.io.summary import summarize; summarize({str(SMALL)!r}, compiled=True)"]
    commands = [
        ("python -c pass", [*py, "-c", "pass"]),
        ("pcaptools --help", [*cli, "--help"]),
        ("pcaptools info small.pcap", [*cli, "info", str(SMALL)]),
        ("pcaptools info small.pcap --json", [*cli, "info", str(SMALL), "--json"]),
        ("summarize(small.pcap, compiled=True)", compiled),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcaptools-pyc-") as pyc:
        env = user_env(pyc)
        for name, cmd in commands:
            _timed(cmd, env)  # warm-up: bytecode caches, numba's cache, page cache
            runs = [_timed(cmd, env) for _ in range(repeat)]
            rows.append({"section": f"startup {name}", "seconds": min(r[0] for r in runs),
                         "cpu_seconds": min(r[1] for r in runs), "seconds_all": [round(r[0], 3) for r in runs]})  # fmt: skip
        imports = importtime(["info", str(SMALL)], env)
    return rows, imports


def print_table(rows: list[dict], imports: list[tuple[str, float]]) -> None:
    """The startup rows (best wall and CPU seconds) and the largest imports of ``info small.pcap``."""
    print(f"\nstartup: fresh processes, warm (bytecode and numba caches written), best of {len(rows[0]['seconds_all'])}")
    print(f"{'command':<40}{'wall s':>9}{'CPU s':>9}")
    for r in rows:
        print(f"{r['section'][8:]:<40}{r['seconds']:>9.3f}{r['cpu_seconds']:>9.3f}")
    print("\npython -X importtime -m pcaptools.cli info small.pcap: largest top-level imports (cumulative)")
    for name, ms in imports:
        print(f"  {name:<40}{ms:>8.1f} ms")
