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
import sys
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
    # kernel hands a partly filled block over after BLOCK_TIMEOUT: call finish() before stop().
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


END_ETHERTYPE = 0x88B5  # IEEE 802 "local experimental": no stack parses it, nothing answers
END_DST = "0180c200000e"  # a link-local group address: bridges never forward it to other ports

_SEND_END = """
import ctypes, os, socket, sys
setns = ctypes.CDLL(None, use_errno=True).setns
dst, etype, token = bytes.fromhex(sys.argv[1]), int(sys.argv[2]).to_bytes(2, "big"), sys.argv[3]
for item in sys.argv[4:]:
    ns, iface = item.split(":", 1)
    fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)  # where `ip netns` keeps them
    if setns(fd, 0x40000000) != 0:
        sys.exit(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((iface, 0))
        src = s.getsockname()[4].ljust(6, b"\\0")[:6]
        s.send((dst + src + etype + f"{token} {iface}".encode()).ljust(60, b"\\0"))
"""


def end_markers(captures: list[Capture], token: str) -> dict[int, list[bytes]]:
    """The payloads each capture must show at its end: its own interface's, or every marked interface of an ``any``."""
    marked: dict[str, list[str]] = {}
    for c in captures:
        if c.interface != "any":
            marked.setdefault(c.ns, []).append(c.interface)
    return {id(c): [f"{token} {i}".encode() for i in (marked.get(c.ns, []) if c.interface == "any"
                                                       else [c.interface])] for c in captures}


def finish(captures: list[Capture], token: str, limit: float = 20.0) -> bool:
    """Send one end-marker frame out of every captured interface and wait until each file holds its markers.

    A quiesced stop: once a capture has written its marker, every packet the kernel queued for it
    before the marker is in the file, so stopping tcpdump right then loses nothing (with nothing
    sending, tcpdump's "received" equals "captured"). The marker is an Ethernet frame to
    01:80:c2:00:00:0e, ethertype 0x88B5, payload ``<token> <interface>``: no stack answers it and no
    bridge forwards it, so it appears in its own capture (and the node's ``any``) only. Returns
    False if some marker was not written within ``limit`` seconds (the counts will then say so).
    """
    if not captures:
        return True
    want = end_markers(captures, token)
    items = sorted({f"{c.ns}:{c.interface}" for c in captures if c.interface != "any"})
    netns.run([sys.executable, "-c", _SEND_END, END_DST, str(END_ETHERTYPE), token, *items])
    pending = [c for c in captures if want[id(c)]]
    deadline = time.monotonic() + limit
    while pending and time.monotonic() < deadline:
        pending = [c for c in pending if not _holds(c.path, want[id(c)])]
        if pending:
            time.sleep(0.05)  # polling the files for the kernel's block hand-over
    return not pending


def _holds(path: Path, markers: list[bytes], tail: int = 1 << 16) -> bool:
    """Whether the last ``tail`` bytes of ``path`` contain every marker payload."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - tail))
            data = f.read()
    except OSError:
        return False
    return all(m in data for m in markers)
