"""``pcaptools info`` walks a small capture with the record kernels' Python source: the same summary as the
numba walk, for every shipped capture and damaged ones, and it falls back to numba when that takes too long."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from pcaptools.errors import PcapError
from pcaptools.io import summary
from pcaptools.io.sniff import open_capture
from pcaptools.render.records import dumps, info_document
from tests.test_io_corruption import DATA, damaged

ROOT = Path(__file__).resolve().parents[1]


def _captures() -> list[Path]:
    """Every file under sample_pcaps and tests/data that opens as a capture (pcap, pcapng, compressed)."""
    out = []
    for p in sorted([*(ROOT / "sample_pcaps").rglob("*"), *DATA.rglob("*")]):
        if p.is_file():
            try:
                open_capture(p)
            except PcapError:
                continue
            out.append(p)
    return out


CAPTURES = _captures()


def _info_json(path: str | os.PathLike, *, compiled: bool) -> str:
    """``pcaptools info --json`` text of one file walked one way, or the error's class and message."""
    try:
        return dumps(info_document([summary.summarize(path, compiled=compiled)]))
    except PcapError as exc:
        return f"{type(exc).__name__}: {exc}"


def test_every_shipped_capture_is_small_enough_to_walk_interpreted() -> None:
    assert len(CAPTURES) > 50
    assert all(summary.walks_interpreted(open_capture(p)) for p in CAPTURES)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_interpreted_walk_gives_the_same_info_json_as_the_compiled_one(path: Path) -> None:
    assert _info_json(path, compiled=False) == _info_json(path, compiled=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_capture_gives_the_same_info_json_both_ways(content: bytes) -> None:
    fd, name = tempfile.mkstemp(suffix=".cap")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        assert _info_json(name, compiled=False) == _info_json(name, compiled=True)
    finally:
        os.unlink(name)


def test_interpreted_walk_past_its_budget_is_redone_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    path = DATA / "own" / "two_sections.pcapng"
    expected = summary.summarize(path, compiled=True)
    monkeypatch.setattr(summary, "INTERPRETED_BUDGET_S", 0.0)  # the first kernel call is already over time
    assert summary.summarize(path) == expected
