"""Say on stderr when numba compiles (the first run after an install or upgrade), so a long first call does not look hung.

Numba emits a ``numba:compile`` event only when it really compiles (a signature missing from its
on-disk cache), never when it loads cached code. :func:`announce_compiles` listens for it: once a
compile has run for :data:`GRACE_S` it prints "compiling the decoder, first run only…" and, on a
terminal, keeps one line updated with the seconds spent and kernels done; when compiling stops the
line ends with the total. Short compiles of small helpers stay silent. ``pcaptools warmup`` pays the
whole cost up front.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time

from numba.core import event

MESSAGE = "compiling the decoder, first run only…"
GRACE_S = 1.0  # compiles shorter than this are not announced
TICK_S = 0.25
_SPIN = "|/-\\"


class _Notice(event.Listener):
    """Counts nested numba compiles; a ticker thread prints while any is running."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.depth = 0
        self.done = 0  # top-level compiles finished
        self.burst_start: float | None = None
        self.ticker: threading.Thread | None = None
        self.shown = False

    def on_start(self, ev: event.Event) -> None:
        with self.lock:
            self.depth += 1
            if self.burst_start is None:
                self.burst_start = time.monotonic()
                self.done = 0
                self.ticker = threading.Thread(target=self._tick, name="pcaptools-compile-notice", daemon=True)
                self.ticker.start()

    def on_end(self, ev: event.Event) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                self.done += 1

    def _tick(self) -> None:
        out = self.stream or sys.stderr
        tty = bool(getattr(out, "isatty", lambda: False)())
        idle_since: float | None = None
        k = 0
        while True:
            time.sleep(TICK_S)
            with self.lock:
                now = time.monotonic()
                elapsed = now - (self.burst_start or now)
                busy = self.depth > 0
                if busy:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                # a burst ends when nothing has compiled for two ticks (the next kernel may follow at once)
                ending = idle_since is not None and now - idle_since >= 2 * TICK_S
                if not self.shown and busy and elapsed >= GRACE_S:
                    self.shown = True
                    out.write(f"pcaptools: {MESSAGE}" + ("" if tty else "\n"))
                if self.shown and tty and not ending:
                    k += 1
                    out.write(f"\rpcaptools: {MESSAGE} {_SPIN[k % 4]} {elapsed:4.0f} s, {self.done} kernels done ")
                out.flush()
                if ending:
                    self._finish(out, tty, elapsed)
                    return

    def _finish(self, out, tty: bool, elapsed: float) -> None:
        """End the burst (lock held): the closing line if it was announced."""
        if self.shown:
            lead = "\r" if tty else ""
            out.write(f"{lead}pcaptools: compiled {self.done} kernels in {elapsed:.0f} s; later runs load them from numba's cache\n")
            out.flush()
        self.shown = False
        self.burst_start = None
        self.ticker = None

    def close(self) -> None:
        """At exit: close an announced line the ticker had no time to close."""
        with self.lock:
            if self.burst_start is not None and self.shown:
                out = self.stream or sys.stderr
                self._finish(out, bool(getattr(out, "isatty", lambda: False)()), time.monotonic() - self.burst_start)


_NOTICE = _Notice()
_INSTALLED = False
_INSTALL_LOCK = threading.Lock()


def announce_compiles() -> None:
    """From now on, announce numba compiles longer than GRACE_S on stderr (idempotent, process-wide)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if not _INSTALLED:
            event.register("numba:compile", _NOTICE)
            atexit.register(_NOTICE.close)
            _INSTALLED = True
