"""Ctrl-C or SIGTERM landing at the worst point of an open or a cleanup: the interrupt is what the caller gets, each
descriptor is closed once, and a spill directory is removed whole (CI18's EBADF in the partitioned SIGTERM test).

The signal is raised at the exact point (``signal.raise_signal`` right after the wrapped call returns: as a signal
arriving during that system call is handled), under :func:`pcaptools.process.signals_as_interrupt` as the CLI runs.
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import pcaptools
from pcaptools.correlate.api import packet_fingerprints
from pcaptools.correlate.fingerprint import fingerprint_partition
from pcaptools.correlate.partition import Partitions
from pcaptools.io.sniff import open_regular
from pcaptools.process import interrupts_deferred, signals_as_interrupt, temporary_directory

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
CAPTURE = sorted((SAMPLES / "vpc").glob("node-1/*.pcap"))[0]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="descriptors named through /proc/self/fd")


def _named(fd: int) -> str | None:
    """What the descriptor ``fd`` of this process is open on (None if it is not open)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _open_on(path: str | os.PathLike) -> list[int]:
    """This process's descriptors open on ``path``."""
    want = os.path.realpath(path)
    return [int(fd) for fd in os.listdir("/proc/self/fd") if _named(int(fd)) == want]


def test_a_sigterm_inside_interrupts_deferred_comes_once_the_block_has_run():
    """SIGTERM (and Ctrl-C) during the block is held: the block runs to its end, then the interrupt is raised by the
    handler it would have met; the handlers are as before afterwards. Ctrl-C's handler is Python's own, as in a run
    from a terminal (a suite started as a background job inherits SIGINT ignored, which Python then leaves alone)."""
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _sigterm_and_ctrl_c_are_held()
    finally:
        signal.signal(signal.SIGINT, ignored)


def _sigterm_and_ctrl_c_are_held() -> None:
    before = signal.getsignal(signal.SIGTERM)
    ran = []
    with signals_as_interrupt() as got:
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            signal.raise_signal(signal.SIGTERM)
            ran.append("after the signal")
        assert got["signal"] == signal.SIGTERM
    assert ran == ["after the signal"]
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():  # Ctrl-C: Python's own handler, held the same way
        signal.raise_signal(signal.SIGINT)
        ran.append("after Ctrl-C")
    assert ran == ["after the signal", "after Ctrl-C"]
    assert signal.getsignal(signal.SIGTERM) == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_as_a_capture_file_is_opened_is_the_interrupt_and_closes_the_file_once(monkeypatch):
    """A SIGTERM handled as the file object for a capture comes into being (the object then dropped, which closes
    its descriptor) raises KeyboardInterrupt, not EBADF from closing that descriptor a second time, and leaves the
    file closed. (Handing ``os.fdopen`` a descriptor and closing it on any exception did that.)"""
    held = _open_on(CAPTURE)  # descriptors earlier tests of the session may keep on the same sample
    real_open = io.open
    fired: list[str] = []

    def opened(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        f = real_open(file, *args, **kwargs)
        name = _named(file) if isinstance(file, int) else os.path.realpath(file)
        if not fired and name == os.path.realpath(CAPTURE):
            fired.append(name)
            try:
                signal.raise_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                del f  # as the interrupt unwinds the stack the object was on: dropped, its descriptor closed
                raise
        return f

    monkeypatch.setattr(io, "open", opened)
    monkeypatch.setattr(builtins, "open", opened)
    with pytest.raises(KeyboardInterrupt), signals_as_interrupt():
        open_regular(CAPTURE)
    monkeypatch.undo()
    assert fired == [os.path.realpath(CAPTURE)]
    assert _open_on(CAPTURE) == held
    with open_regular(CAPTURE) as f:  # and the next open is an ordinary one
        assert len(f.read(4)) == 4


def test_a_sigterm_as_the_spill_directory_is_removed_removes_it_whole_then_interrupts(monkeypatch):
    """SIGTERM right after ``rmtree`` closed the spill directory's descriptor (before it records that it did) does
    not make it close the descriptor again (EBADF) nor stop before the directory is gone: the removal ends, then
    the interrupt comes."""
    pk = pcaptools.read_packets(CAPTURE, payload_hash=True)
    fp = packet_fingerprints(pk)
    spill = Partitions(4, flush_rows=1 << 20)
    spill.put({"fp": fp, "key": np.arange(fp.shape[0], dtype=np.int64)}, fingerprint_partition(fp, 4))
    where = spill.dir.name
    assert len(os.listdir(where)) == 4
    fired = _sigterm_after_closing(monkeypatch, where)
    with pytest.raises(KeyboardInterrupt), signals_as_interrupt():
        spill.close()
    monkeypatch.undo()
    assert len(fired) == 1
    assert not os.path.exists(where)


def test_a_sigterm_as_a_temporary_directory_is_removed_removes_it_whole_then_interrupts(monkeypatch, tmp_path):
    """:func:`pcaptools.process.temporary_directory` (the bounded paths, flows and merge runs' spills): the same."""
    fired: list[int] = []
    with pytest.raises(KeyboardInterrupt), signals_as_interrupt():
        with temporary_directory(prefix="pcaptools-test-", dir=str(tmp_path)) as where:
            for name in ("a.bin", "b.bin"):
                (Path(where) / name).write_bytes(CAPTURE.read_bytes()[:4096])
            fired = _sigterm_after_closing(monkeypatch, where)
    monkeypatch.undo()
    assert len(fired) == 1
    assert list(tmp_path.iterdir()) == []


def _sigterm_after_closing(monkeypatch, where: str) -> list[int]:  # noqa: ANN001
    """Make ``os.close`` of a descriptor open on the directory ``where`` raise SIGTERM right after it closed it (once);
    the descriptors it did that for."""
    real_close = os.close
    fired: list[int] = []

    def close(fd: int) -> None:
        target = _named(fd) == os.path.realpath(where)
        real_close(fd)
        if target and not fired:
            fired.append(fd)
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(os, "close", close)
    return fired
