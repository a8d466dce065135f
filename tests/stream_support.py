"""Shared by the bounded-memory tests: a seeded generated capture (benchmarks/gen.py), window arithmetic, and the
floor note a budget below what any run holds brings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generated_capture(path: Path, *, packets: int, flows: int, seed: int) -> Path:
    """Write benchmarks/gen.py's seeded capture (TCP and UDP flows, a third VXLAN) to ``path``."""
    spec = importlib.util.spec_from_file_location("pcaptools_bench_gen", ROOT / "benchmarks" / "gen.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    path.write_bytes(gen.generate(packets, flows=flows, seed=seed).tobytes())
    return path


def flows_spanning_windows(ts_ns: np.ndarray, flows, batch_records: int) -> int:  # noqa: ANN001
    """Flows whose first and last packets fall in different windows of ``batch_records`` rows (time-ordered rows)."""
    starts = np.asarray(ts_ns)[::batch_records]
    first = np.searchsorted(starts, flows["first_ts_ns"].to_numpy(), side="right")
    last = np.searchsorted(starts, flows["last_ts_ns"].to_numpy(), side="right")
    return int((first != last).sum())


FLOOR = "below this capture set's floor"
"""In the one note a streamed run gives when its budget is below what it holds anyway (``stream.floor_note``)."""


def without_floor_note(doc: dict) -> dict:
    """``correlate --json`` of a run under a budget below its floor, less that one note (asserted to be there)."""
    notes = [n for n in doc["notes"] if FLOOR not in n]
    assert len(notes) == len(doc["notes"]) - 1, doc["notes"]
    return {**doc, "notes": notes}


def sigterm_once_spilled(args: list[str], tmp: Path, spill_glob: str, what: str) -> tuple[int, str]:
    """Run ``python -m pcaptools.cli ARGS`` with ``TMPDIR=tmp``, send it SIGTERM as soon as a file matching
    ``spill_glob`` exists there (readiness, not a sleep), and return its exit code and stderr."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "pcaptools.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip
    deadline = time.monotonic() + 300
    while not any(tmp.glob(spill_glob)):
        assert proc.poll() is None, f"the {what} ended before it spilled"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def sigterm_correlate_leaves_nothing(generated: Path, tmp_path: Path, spill_glob: str) -> None:
    """``pcaptools correlate --memory 16MiB`` of ``generated`` killed (SIGTERM) once a file matching ``spill_glob``
    exists in its TMPDIR ends as Ctrl-C does: exit 130, no traceback, nothing left in TMPDIR nor a partial hops file
    beside the output."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code, err = sigterm_once_spilled(["correlate", str(generated), "--memory", "16MiB", "--json", "-o", str(tmp_path / "h.parquet")],
                                     tmp, spill_glob, "run")  # fmt: skip
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "pcaptools: interrupted", err  # the user is told why it stopped
    assert not any(tmp.iterdir())
    assert not (tmp_path / ".h.parquet.partial").exists()
