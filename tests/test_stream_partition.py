"""A correlation window larger than the memory budget leaves matched in fingerprint partitions spilled to disk
(pcaptools.correlate.partition): the same hops, ``correlate --json``, ``paths --json`` and ``why --json`` as the
in-memory run, and no floor note when the partitions hold the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scapy.all import IP, TCP, Ether, Raw, wrpcap
from stream_support import FLOOR, sigterm_correlate_leaves_nothing, without_floor_note

import pcaptools
import pcaptools.correlate.partition as partition
import pcaptools.correlate.stream as stream
from pcaptools.correlate.api import packet_fingerprints
from pcaptools.correlate.fingerprint import fingerprint_partition
from pcaptools.correlate.stream import correlate_files
from pcaptools.k8s.discover import manifest_drops
from pcaptools.k8s.paths_stream import diagnose_bounded
from tests.test_why_stream import _assert_same, _in_memory, _outputs

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
TINY = 16 << 20  # 16 MiB: below what any run holds, so every window is given the fewest rows a window gets


@pytest.fixture
def partitioned(monkeypatch):
    """Give windows at least ``rows`` rows under a tiny budget (instead of 16,384), so that the small sets here are
    denser than a window and get partitioned; returns a list that records, per partitioned step, the rows each
    partition holds."""
    steps: list[np.ndarray] = []
    step = partition.step_partitions

    def spy(m, spill, horizon, **kw):  # noqa: ANN001, ANN202
        spill.flush()
        steps.append(spill.rows.copy())
        yield from step(m, spill, horizon, **kw)

    monkeypatch.setattr(partition, "step_partitions", spy)

    def set_rows(rows: int) -> list[np.ndarray]:
        monkeypatch.setattr(stream, "MIN_WINDOW_ROWS", rows)
        return steps

    return set_rows


def _canonical(hops: pd.DataFrame) -> pd.DataFrame:
    return hops.astype({c: str for c in hops.columns if isinstance(hops[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def _assert_correlates_alike(source: Path, tmp_path: Path, *, window_ns: int = 2_000_000_000):
    """Correlate ``source`` in memory and under the tiny budget: same hops Parquet and ``correlate --json``."""
    one, one_stats = correlate_files(source, window_ns=window_ns, memory=1 << 40, out=tmp_path / "one.parquet")
    win, stats = correlate_files(source, window_ns=window_ns, memory=TINY, out=tmp_path / "part.parquet")
    assert one_stats.windows == 1 and one_stats.passes == 1 and stats.passes == 2
    h1, h2 = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "part.parquet")
    pd.testing.assert_frame_equal(_canonical(h1), _canonical(h2))
    assert one.to_dict() == without_floor_note(win.to_dict())
    assert one.point_counts() == win.point_counts()  # rows counted once as read, whatever partition they were spilled to
    return one, stats, h1


def _assert_every_window_split(steps: list[np.ndarray], stats) -> None:  # noqa: ANN001
    assert steps and stats.partitions > 1
    assert all((s > 0).sum() >= 2 for s in steps)  # every window's rows were spread over several partitions


def _assert_diagnoses_alike(source: Path) -> None:
    """``why --json``, ``why`` text and ``paths --json`` under the tiny budget are the in-memory ones."""
    whole = _in_memory(source)
    ps, d = diagnose_bounded(source, capture_drops=manifest_drops([source]), memory=TINY)
    _assert_same(whole, _outputs(ps, d))


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_lab_sample_partitioned_under_a_tiny_budget_gives_the_in_memory_outputs(sample, partitioned, tmp_path):
    steps = partitioned(128)
    one, stats, _ = _assert_correlates_alike(SAMPLES / sample, tmp_path)
    _assert_every_window_split(steps, stats)
    assert one.journeys > 500 and one.multi_point_journeys > 500
    steps.clear()
    _assert_diagnoses_alike(SAMPLES / sample)
    assert steps and all((s > 0).sum() >= 2 for s in steps)


def test_lab_sample_partitioned_in_many_windows_carries_journeys_across_them(partitioned, tmp_path):
    steps = partitioned(64)
    _, stats, _ = _assert_correlates_alike(SAMPLES / "calico-vxlan", tmp_path, window_ns=2_000_000)
    _assert_every_window_split(steps, stats)
    assert stats.windows >= 3 and stats.carried_journeys >= 1000  # the sample is bursty: 3 windows of 2 ms


def test_directory_without_manifest_partitioned_gives_the_in_memory_outputs(plain_dir, partitioned, tmp_path):
    steps = partitioned(128)
    whole = _in_memory(plain_dir)
    ps, d = diagnose_bounded(plain_dir, memory=TINY)
    _assert_same(whole, _outputs(ps, d))
    assert steps and all((s > 0).sum() >= 2 for s in steps)
    assert len(whole["why --json"]["connections"]) == 16


def test_generated_set_partitioned_gives_the_in_memory_outputs(generated, partitioned, tmp_path):
    steps = partitioned(2000)
    one, stats, h1 = _assert_correlates_alike(generated, tmp_path)
    _assert_every_window_split(steps, stats)
    assert stats.partitions >= 20 and one.ambiguous > 0 and len(one.losses) > 0  # retransmissions and drops
    steps.clear()
    _assert_diagnoses_alike(generated)
    assert steps


def test_generated_set_partitioned_in_windows_of_1ms_gives_the_one_window_hops(generated, partitioned, tmp_path):
    """Journeys carried from window to window inside their partition, retransmissions 200 ms later made ambiguous."""
    steps = partitioned(300)  # the densest 1 ms holds ~700 sightings
    one, stats, h1 = _assert_correlates_alike(generated, tmp_path, window_ns=1_000_000)
    _assert_every_window_split(steps, stats)
    assert stats.windows >= 5 and stats.carried_journeys >= 300 and stats.rewritten
    assert one.ambiguous > 0 and h1["ambiguous"].sum() > 0


def _repeating_set(d: Path) -> Path:
    """Two nodes' uplinks (node-2's clock 1 ms ahead, 80 us between them) seeing one TCP connection with its
    packets repeated: every 4th data segment retransmitted 30 ms later with the same IPv4 id (the same fingerprint),
    every 7th frame captured twice at node-1 10 us apart, duplicate pure ACKs with one id; node-2 misses every 11th
    segment and its retransmission."""
    t0 = 1_700_000_000.0
    rows: list[tuple[float, bytes, int]] = []  # (time at node-1, frame, 1: reaches node-2)
    for k in range(120):
        seg = Ether() / IP(src="10.0.1.5", dst="10.0.2.7", id=1000 + k) / TCP(sport=40000, dport=8080, seq=1 + 100 * k,
                                                                                ack=1, flags="PA") / Raw(bytes([k % 251]) * 100)
        t = t0 + k * 0.0004
        seen = int(k % 11 != 5)
        rows.append((t, bytes(seg), seen))
        if k % 4 == 0:
            rows.append((t + 0.03, bytes(seg), seen))
        if k % 7 == 0:
            rows.append((t + 0.00001, bytes(seg), 1))
        ack = Ether() / IP(src="10.0.2.7", dst="10.0.1.5", id=7) / TCP(sport=8080, dport=40000, seq=1, ack=1 + 100 * (k // 3 * 3),
                                                                          flags="A")
        rows.append((t + 0.0002, bytes(ack), 1))
    rows.sort(key=lambda r: r[0])
    for node, shift in (("node-1", 0.0), ("node-2", 0.001 + 0.00008)):
        (d / node).mkdir(parents=True, exist_ok=True)
        pkts = []
        for t, raw, seen in rows:
            if node == "node-2" and not seen:
                continue
            p = Ether(raw)
            p.time = t + shift
            pkts.append(p)
        wrpcap(str(d / node / "eth0.pcap"), pkts)
    man = {"captures": [{"file": f"{n}/eth0.pcap", "node": n, "interface": "eth0", "role": "node-uplink"}
                        for n in ("node-1", "node-2")]}  # fmt: skip
    (d / "manifest.json").write_text(json.dumps(man))
    return d


def test_duplicates_and_retransmissions_partitioned_give_the_in_memory_journeys(partitioned, tmp_path):
    steps = partitioned(16)
    src = _repeating_set(tmp_path / "set")
    for w in (2_000_000_000, 5_000_000):  # one window; and windows of 5 ms, the retransmissions 30 ms after
        one, stats, h1 = _assert_correlates_alike(src, tmp_path, window_ns=w)
        _assert_every_window_split(steps, stats)
        fp_journeys = h1.groupby("fingerprint")["journey"].nunique()
        assert (fp_journeys > 1).sum() >= 30 and one.ambiguous >= 60  # repeats: several journeys per fingerprint
        assert one.multi_point_journeys > 100 and len(one.losses) > 0
        steps.clear()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True)


def test_cli_correlate_far_below_the_dense_window_partitions_it_and_prints_the_same(generated, tmp_path):
    small = _cli("correlate", str(generated), "--memory", "16MiB", "--json", "-o", str(tmp_path / "a.parquet"))
    large = _cli("correlate", str(generated), "--json", "-o", str(tmp_path / "b.parquet"))
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    got, want = json.loads(small.stdout), json.loads(large.stdout)
    assert without_floor_note(got) == want
    pd.testing.assert_frame_equal(_canonical(pd.read_parquet(tmp_path / "a.parquet")),
                                  _canonical(pd.read_parquet(tmp_path / "b.parquet")))  # fmt: skip
    # 16 MiB is below what the run holds anyway (libraries, readers): the note says so, and that the densest window,
    # here every sighting at once, is not what sets it (matched in partitions, each within the budget's window)
    [note] = [n for n in got["notes"] if FLOOR in n]
    sightings = sum(p["matched"] + p["unmatched"] for p in want["points"])
    assert f"{sightings:,} packet sightings, matched in" in note and "partitions spilled to disk" in note
    assert f"pcaptools: {note}" in small.stderr


def test_floor_note_left_out_when_the_partitions_hold_the_budget(generated, monkeypatch, tmp_path):
    """With what a run holds before any window inside the budget (the libraries and readers counted as 1 MiB here),
    a window denser than the budget leaves no floor note once partitioned; unpartitioned, the same budget has one."""
    monkeypatch.setattr(stream, "_rss", lambda: 0)
    monkeypatch.setattr(stream, "BASE_MEMORY", 1 << 20)
    monkeypatch.setattr(stream, "FILE_WINDOW", 1 << 20)
    budget = 40 << 20  # leaves ~30k rows for a window; the 20k-packet set's densest 2 s hold ~80k sightings
    one, _ = correlate_files(generated, memory=1 << 40, out=tmp_path / "one.parquet")
    part, stats = correlate_files(generated, memory=budget, out=tmp_path / "part.parquet")
    assert stats.partitions > 1 and stats.window_rows < sum(one.matched.values()) + sum(one.unmatched.values())
    assert part.to_dict() == one.to_dict()  # no note, and the same answers
    monkeypatch.setattr(stream, "partitions_for", lambda dense, rows: 1)
    whole, stats = correlate_files(generated, memory=budget, out=tmp_path / "whole.parquet")
    [note] = [n for n in whole.to_dict()["notes"] if FLOOR in n]
    assert stats.partitions == 1 and "matched together" in note


def test_partitions_are_those_of_the_dask_shuffle_on_the_fingerprint():
    """Every sighting of one packet lands in one partition, the one Dask's shuffle on the fingerprint picks."""
    dd_shuffle = pytest.importorskip("dask.dataframe.shuffle")
    pk = pcaptools.read_packets(sorted((SAMPLES / "vpc").glob("node-1/*.pcap"))[0], payload_hash=True)
    fp = packet_fingerprints(pk)
    fp = fp[fp != 0]
    for parts in (2, 7, 97):
        want = np.asarray(dd_shuffle.partitioning_index(pd.Series(fp), parts))
        np.testing.assert_array_equal(fingerprint_partition(fp, parts), want)


def test_partitions_beyond_the_open_file_limit_give_the_in_memory_hops(generated, tmp_path):
    """A run with more partitions than ``ulimit -n`` allows open files (here 200 partitions under a limit of 64)
    completes with the in-memory hops: a partition's file is opened per read, not held open while journeys are
    emitted."""
    script = f"""
import resource, sys
import pcaptools.correlate.stream as stream
from pcaptools.correlate.stream import correlate_files
stream.partitions_for = lambda dense, window_rows: 200
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
corr, stats = correlate_files({str(generated)!r}, memory={TINY}, out={str(tmp_path / "p.parquet")!r})
print(stats.partitions)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "200"
    assert "200 fingerprint partitions spilled to" in run.stderr
    whole, _ = correlate_files(generated, memory=1 << 40, out=tmp_path / "m.parquet")
    pd.testing.assert_frame_equal(_canonical(pd.read_parquet(tmp_path / "p.parquet")),
                                  _canonical(pd.read_parquet(tmp_path / "m.parquet")))  # fmt: skip


def test_sigterm_during_a_partitioned_run_removes_the_spill_and_exits_130(generated, tmp_path):
    """``kill`` (SIGTERM) while windows are spilled in partitions ends the command as Ctrl-C does: exit 130 and no
    partition files left in TMPDIR."""

    sigterm_correlate_leaves_nothing(generated, tmp_path, "pcaptools-partitions-*/*.bin")


def test_signals_as_interrupt_raises_on_sigterm_and_leaves_an_ignored_sighup_ignored():
    """SIGTERM inside the block is a KeyboardInterrupt; a SIGHUP ignored before (``nohup``) stays ignored, and the
    handlers are as before afterwards."""
    import os
    import signal

    from pcaptools.process import signals_as_interrupt

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), signals_as_interrupt() as got:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0) if hasattr(signal, "sigtimedwait") else None
            for _ in range(1000):  # the handler runs between bytecodes of the main thread
                pass
        assert got["signal"] == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


_SIGTERM_AT = r'''
import io, os, signal, sys
point, marker, *argv = sys.argv[1:]
tmp = os.environ["TMPDIR"]
real_open, real_close = io.open, os.close


def spilled():
    return any(n.startswith("pcaptools-partitions-") for n in os.listdir(tmp))


def first_time():
    if os.path.exists(marker):
        return False
    real_close(os.open(marker, os.O_CREAT | os.O_WRONLY))
    return True


def opened(file, *args, **kwargs):  # the first capture opened once the partitions' directory exists
    f = real_open(file, *args, **kwargs)
    name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
    if name.endswith(".pcap") and spilled() and first_time():
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            del f  # dropped as the interrupt unwinds the caller's stack
            raise
    return f


def closed(fd):  # rmtree closing the descriptor of the directory named by ``point``
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        name = ""
    real_close(fd)
    if os.path.basename(name).startswith(point) and first_time():
        signal.raise_signal(signal.SIGTERM)


if point == "capture-open":
    import builtins
    io.open = builtins.open = opened
else:
    os.close = closed
from pcaptools.cli import main
sys.argv = ["pcaptools", *argv]
raise SystemExit(main())
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="descriptors named through /proc/self/fd")
@pytest.mark.parametrize("point", ["capture-open", "pcaptools-partitions-", "pcaptools-spine-"])
def test_sigterm_at_a_capture_open_or_a_spill_removal_exits_130_and_leaves_nothing(generated, tmp_path, point):
    """SIGTERM handled at the points where the partitioned run of ``correlate --memory 16MiB`` once closed a
    descriptor twice (CI18: EBADF, exit 2): as a capture file is opened once the partitions spill exists, and right
    after ``rmtree`` closes the partitions' or the spine's directory. Exit 130, no error line, TMPDIR empty, no
    partial hops file beside the output."""
    import os

    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    marker = tmp_path / "reached"
    run = subprocess.run([sys.executable, "-c", _SIGTERM_AT, point, str(marker), "correlate", str(generated),
                          "--memory", "16MiB", "--json", "-o", str(out / "h.parquet")],
                         capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip
    assert marker.exists(), f"the run never reached {point}"
    assert run.returncode == 130, run.stderr[-2000:]
    assert "Bad file descriptor" not in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not any(tmp.iterdir())
    assert [p.name for p in out.iterdir() if p.name.endswith(".partial")] == []
