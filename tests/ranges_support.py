"""What the byte-range walk tests of both formats share: reading one file ranged and sequentially."""

from __future__ import annotations

from pathlib import Path

from pcaptools.io import read_records, split, threads

SEC = 1_600_000_000
"""The captures' first second (2020-09-13), within the range walkers' plausible-timestamp window."""


def read_both(path: Path, monkeypatch, cores: int = 2, split_min: int = 4096, **kw):
    """(ranged, sequential) batches of one file; ranges from ``split_min`` bytes up, on ``cores`` threads, mapped
    8 KiB at a time (so records cross a step's end)."""
    monkeypatch.setattr(split, "SPLIT_MIN_BYTES", split_min)
    monkeypatch.setattr(split, "STEP_BYTES", 8192)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    ranged = read_records(path, **kw)
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    return ranged, read_records(path, **kw)
