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


def sequence_svgs(parts: list[pd.DataFrame], roles: dict[str, str] | None = None) -> list[str]:
    """The SVG text of :func:`.figures.sequence_diagram` of each connection's rows in ``parts``, in order."""
    n = len(parts)
    if n < PARALLEL_FROM or (os.cpu_count() or 1) < 2 or os.name != "posix":
        return _svgs(parts, roles)
    chunks = [range(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    out: list[str | None] = [None] * n
    with _Other(parts, roles) as other:
        for k, c in enumerate(chunks):
            if k >= other.lowest:  # the other process has drawn this chunk and those after it
                break
            for i, svg in zip(c, _svgs([parts[i] for i in c], roles), strict=True):
                out[i] = svg
    for k, drawn in other.drawn.items():
        for i, svg in zip(chunks[k], drawn, strict=True):
            out[i] = svg if out[i] is None else out[i]
    return [svg if svg is not None else _svgs([parts[i]], roles)[0] for i, svg in enumerate(out)]


def _svgs(parts: list[pd.DataFrame], roles: dict[str, str] | None) -> list[str]:
    return [figures.to_svg(figures.sequence_diagram(p, roles=roles)) for p in parts]


class _Other:
    """The drawing subprocess: started with the job, its chunks read back on a thread (``drawn``, ``lowest``)."""

    def __init__(self, parts: list[pd.DataFrame], roles: dict[str, str] | None) -> None:
        import matplotlib

        self.drawn: dict[int, list[str]] = {}
        self.lowest = (len(parts) + CHUNK - 1) // CHUNK  # the first chunk it has sent back (none yet)
        rc = {k: v for k, v in matplotlib.rcParams.items() if not k.startswith("backend")}
        root = Path(__file__).resolve().parents[2]  # run from there, `-m` imports this pcaptools first
        self.proc: subprocess.Popen | None = None
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "pcaptools.render.drawing"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root)  # fmt: skip
            pickle.dump((rc, roles, parts, CHUNK), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
        except (OSError, pickle.PicklingError):
            self._end()
            self.proc = None
            return
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while True:
                k, svgs = pickle.load(self.proc.stdout)
                self.drawn[k] = svgs
                self.lowest = min(self.lowest, k)
        except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError):
            return

    def __enter__(self) -> _Other:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if exc[0] is None:
            try:  # no more wanted: it stops after the chunk it is drawing
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            self.reader.join(timeout=5)
        self._end()

    def _end(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _serve() -> None:
    """The other process: read the job, draw its chunks from the last, send each back; stop once stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    rc, roles, parts, chunk = pickle.load(sys.stdin.buffer)
    import matplotlib

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
