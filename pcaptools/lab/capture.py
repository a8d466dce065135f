"""tcpdump inside a namespace: start, wait for "listening on", stop with SIGINT and check the counts.

tcpdump writes to its stdout (``-w -``), a file the lab opened itself without following links
(:func:`pcaptools.lab.outdir.open_new`), and gets SIGTERM if the lab process dies, however it dies.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pcaptools.errors import LabError
from pcaptools.lab import netns, outdir

BLOCK_TIMEOUT = 1.0  # tcpdump's pcap timeout: TPACKET_V3 retires a partly filled block after it
_COUNT = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass
class Capture:
    """One tcpdump writing ``path`` from ``interface`` in namespace ``ns``."""

    ns: str
    interface: str
    path: Path
    nano: bool = False
    any_sll2: bool = False
    # TPACKET_V3 blocks pack packets densely, so a small ring rides out a starved tcpdump; the
    # kernel hands a partly filled block over after BLOCK_TIMEOUT: call drain() before stop().
    # (immediate mode uses one ~64 KiB frame per packet on offloading veths and drops under load.)
    buffer_kib: int = 8192  # kernel ring (-B); the 2 MiB default overflowed on '-i any' during 200 KB bursts
    immediate: bool = False
    root: Path | None = None  # the --out directory ``path`` lies in: no link below it is followed
    counts: dict[str, int] = field(default_factory=dict)
    _proc: subprocess.Popen[str] | None = None
    _err: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _stderr: list[str] = field(default_factory=list)

    def start(self, timeout: float = 15.0) -> None:
        """Start tcpdump and return once it reports "listening on"."""
        root = self.root if self.root is not None else self.path.parent
        fd = outdir.open_new(root, self.path.relative_to(root))
        argv = ["nice", "-n", "-5", "ip", "netns", "exec", self.ns, "tcpdump", "-i", self.interface, "-n", "-U",
                "-B", str(self.buffer_kib), "-Z", "root", "-w", "-"]
        if self.immediate:
            argv.append("--immediate-mode")
        if self.nano:
            argv.append("--time-stamp-precision=nano")
        if self.any_sll2:
            argv += ["-y", "LINUX_SLL2"]
        try:  # SIGTERM, not SIGKILL, if the lab dies: tcpdump then ends its file cleanly
            self._proc = netns.spawn(argv, stdout=fd, stderr=subprocess.PIPE, die_sig=signal.SIGTERM)
        finally:
            os.close(fd)
        threading.Thread(target=self._pump, daemon=True).start()
        while True:
            try:
                line = self._err.get(timeout=timeout)
            except queue.Empty:
                line = None
            if line is None:
                self._proc.kill()
                self._proc.wait()
                raise LabError(f"tcpdump -i {self.interface} in {self.ns} did not start listening within "
                               f"{timeout:.0f} s: {' | '.join(self._stderr[-3:]) or 'no output'}")
            if "listening on" in line:
                return

    @property
    def pid(self) -> int | None:
        """tcpdump's PID while it runs (``ip netns exec`` and ``nice`` exec in place)."""
        return self._proc.pid if self._proc is not None else None

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.strip())
            self._err.put(line.strip())
        self._err.put(None)

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """SIGINT, wait for exit, and return tcpdump's packet counts (captured/received/dropped)."""
        if self._proc is None:
            return self.counts
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        while True:  # the pump ends with None once stderr closes
            try:
                if self._err.get(timeout=timeout) is None:
                    break
            except queue.Empty:
                break
        self._proc = None
        for line in self._stderr:
            m = _COUNT.match(line)
            if m:
                self.counts[m.group(2).split()[0]] = int(m.group(1))
        if "captured" not in self.counts:
            raise LabError(f"tcpdump -i {self.interface} in {self.ns} exited without a 'packets captured' "
                           f"summary: {' | '.join(self._stderr[-3:])}; {self.path} may be incomplete")
        return self.counts


def drain(captures: list[Capture], quiet: float = BLOCK_TIMEOUT * 2.5, limit: float = 20.0) -> None:
    """Wait until no file has grown for longer than the kernel takes to hand over a partly filled block.

    The kernel retires a block once it has stayed current for a whole timer period, so its packets
    reach tcpdump between one and two block timeouts after the block opened; we wait 2.5.
    """
    if not captures:
        return
    deadline = time.monotonic() + limit
    sizes: list[int] = [-1] * len(captures)
    since = time.monotonic()
    while time.monotonic() < deadline:
        now = [c.path.stat().st_size if c.path.exists() else 0 for c in captures]
        if now != sizes:
            sizes, since = now, time.monotonic()
        elif time.monotonic() - since > quiet:
            return
        time.sleep(0.05)  # polling the files for the kernel's block hand-over
