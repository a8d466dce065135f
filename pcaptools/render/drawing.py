"""Many sequence diagrams as SVG text, drawn by two processes: a report draws up to hundreds (~40 ms each in
matplotlib, most of its time), and on a machine with a second core half of that wait can go.

The second process is ``python -m pcaptools.render.drawing`` (a plain subprocess: neither a fork of a process that
holds pyarrow's and numba's threads nor multiprocessing's spawn, which re-runs the caller's script). It is sent the
connections' rows, draws chunks from the end of the list and sends each back as it is done, while this process
draws from the front until it meets them; at most the chunk the other is drawing when they meet is drawn twice.
Each SVG is the one this process would draw: the other draws with its rcParams and the same fixed hash salt
(:func:`.figures.to_svg`). What the other did not send (it could not start, or died) is drawn here.
"""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pandas as pd

from pcaptools.render import figures

PARALLEL_FROM = 48
"""Diagrams below which a second process costs more (its start, ~1 s) than it saves."""

CHUNK = 8
"""Diagrams handed back at a time: small enough to share the work evenly, large enough to keep the hand-offs few."""


def ahead() -> Drawer | None:
    """A drawing process started now, so that its start (~1 s of imports) overlaps the caller's work until it hands
    it to :func:`sequence_svgs`; None where a second process would not help. Close it if it goes unused."""
    return Drawer() if _two_processes() else None


def sequence_svgs(parts: list[pd.DataFrame], roles: dict[str, str] | None = None, other: Drawer | None = None) -> list[str]:
    """The SVG text of :func:`.figures.sequence_diagram` of each connection's rows in ``parts``, in order (``other``:
    a drawing process from :func:`ahead`, else one is started if there are enough of them)."""
    n = len(parts)
    if n < PARALLEL_FROM or not _two_processes():
        if other is not None:
            other.close()
        return _svgs(parts, roles)
    chunks = [range(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    out: list[str | None] = [None] * n
    with other or Drawer() as other:
        other.send(parts, roles)
        for k, c in enumerate(chunks):
            if k >= other.lowest:  # the other process has drawn this chunk and those after it
                break
            for i, svg in zip(c, _svgs([parts[i] for i in c], roles), strict=True):
                out[i] = svg
    for k, drawn in other.drawn.items():
        for i, svg in zip(chunks[k], drawn, strict=True):
            out[i] = svg if out[i] is None else out[i]
    return [svg if svg is not None else _svgs([parts[i]], roles)[0] for i, svg in enumerate(out)]


def _two_processes() -> bool:
    return (os.cpu_count() or 1) > 1 and os.name == "posix"


def _svgs(parts: list[pd.DataFrame], roles: dict[str, str] | None) -> list[str]:
    return [figures.to_svg(figures.sequence_diagram(p, roles=roles)) for p in parts]


class Drawer:
    """The drawing subprocess: started (it imports what drawing needs, then waits), sent its job, its chunks read
    back on a thread (``drawn``, ``lowest``); closing it stops it after the chunk it is drawing."""

    def __init__(self) -> None:
        self.drawn: dict[int, list[str]] = {}
        self.lowest = 0  # the first chunk it has sent back: none until it has a job
        self.reader: threading.Thread | None = None
        root = Path(__file__).resolve().parents[2]  # run from there, `-m` imports this pcaptools first
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-m", "pcaptools.render.drawing"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, cwd=root)  # fmt: skip
        except OSError:
            self.proc = None

    def send(self, parts: list[pd.DataFrame], roles: dict[str, str] | None) -> None:
        """Hand over the job (with this process's matplotlib settings) and start reading its chunks back."""
        import matplotlib

        self.lowest = (len(parts) + CHUNK - 1) // CHUNK
        if self.proc is None:
            return
        rc = {k: v for k, v in matplotlib.rcParams.items() if not k.startswith("backend")}
        job = (rc, roles, parts, CHUNK)  # written on the thread: a pipe holds 64 KiB, and the process may still be importing
        self.reader = threading.Thread(target=self._exchange, args=(job,), daemon=True)
        self.reader.start()

    def _exchange(self, job: tuple) -> None:
        """Write the job, then read the chunks back until the process ends (any failure: what it sent is all)."""
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            while True:
                k, svgs = pickle.load(self.proc.stdout)
                self.drawn[k] = svgs
                self.lowest = min(self.lowest, k)
        except (EOFError, OSError, pickle.PicklingError, pickle.UnpicklingError, ValueError, TypeError):
            return

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.proc is not None and self.reader is not None:
            try:  # no more wanted: it stops after the chunk it is drawing and sends that
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.reader.join(timeout=5)
        self.close()

    def close(self) -> None:
        """Stop the process now (what it has sent stays in ``drawn``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass


def _serve() -> None:
    """The other process: read the job, draw its chunks from the last, send each back; stop once stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    import matplotlib
    import matplotlib.figure  # noqa: F401  (imported while the caller still computes)

    try:
        rc, roles, parts, chunk = pickle.load(sys.stdin.buffer)
    except EOFError:  # closed unused
        return

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matplotlib.rcParams.update(rc)
    for k in reversed(range((len(parts) + chunk - 1) // chunk)):
        if select.select([sys.stdin], [], [], 0)[0]:  # closed: the caller has drawn the rest
            break
        pickle.dump((k, _svgs(parts[k * chunk:(k + 1) * chunk], roles)), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    _serve()
