"""glibc's hold on freed memory: kept for reuse by a command's process, or given back between phases.

glibc's malloc gives every block of 128 KiB or more (up to 32 MiB as its threshold adapts) its own
``mmap`` and returns it to the kernel on ``free``; the next array of that size is then faulted in and
zeroed page by page again. A command builds and drops many such per-packet arrays: in a fresh process
that is 0.3-0.5 CPU s of page faults on a 800k-sighting correlation. :func:`keep_freed_memory` keeps
freed blocks in the process for reuse instead. Peak memory is about the same (the blocks are reused,
not added to), but memory is not given back before the process exits, so a library, whose caller may
live on, does not do it; nor does a command given ``--memory``, where fragmentation could push the peak
past the budget. The other way, :func:`release_freed_memory` hands freed heap pages back to the kernel
when a phase of a bounded run ends, so they do not count against the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30
"""Blocks below this come from the heap, and up to this much free heap is kept (glibc's ``mallopt``)."""


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (module doc); False where the C library has no ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without it)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))


def arrow_gives_back() -> None:
    """Make pyarrow allocate from glibc's heap (``ARROW_DEFAULT_MEMORY_POOL=system``, unless the user chose a pool)
    rather than its own mimalloc, which keeps freed segments: a command given ``--memory`` then gives back what
    pyarrow frees as it gives back its own (:func:`release_freed_memory`). Measured on ``paths --memory 300MiB
    --json`` of 30,655 connections: peak RSS 493 -> 418 MiB, the same output. Call it before pyarrow is imported;
    once it is, its pool is switched for later allocations."""
    import sys

    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    pa = sys.modules.get("pyarrow")
    if pa is None:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    else:
        pa.set_memory_pool(pa.system_memory_pool())


COLLECT_EVERY = 100_000
"""Net container allocations between two young-generation collections in a command's process (Python's default: 700)."""


def fewer_collections() -> tuple[int, ...]:
    """Run the cyclic garbage collector about :data:`COLLECT_EVERY` allocations apart instead of 700 (and the older
    generations rarer still), returning the thresholds it had. A command builds hundreds of thousands of small
    objects that live until it ends (a diagnosis: a Python object per journey, a dict per row of its output); at
    the default thresholds every 700 of them set off a collection that walks all the survivors again, 0.4 CPU s of
    ``paths`` and 2 s of ``paths --json`` on an 800k-sighting set. Cycles are still collected, later; a library
    leaves the collector alone (its caller may live on), so only the command line calls this."""
    import gc

    old = gc.get_threshold()
    gc.set_threshold(COLLECT_EVERY, 50, 100)
    return old


def release_freed_memory(*, collect: bool = True) -> None:
    """Give the heap's freed pages back to the system (glibc's ``malloc_trim``; nothing elsewhere): a finished phase's
    tables are freed but glibc keeps their pages, which would count against the next phase (0.8 GiB after a
    streamed correlation of 4 M sightings). ``collect`` first frees what only reference cycles keep. pyarrow's own
    allocator (mimalloc or jemalloc), once pyarrow is loaded, gives back what it keeps too (160 MiB after a streamed
    ``paths`` of 0.8 M sightings)."""
    import gc
    import sys

    if collect:
        gc.collect()
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[dict[str, int]]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt so the caller's ``finally`` runs (a lab's namespaces torn down,
    a temporary spill directory removed) as it does on Ctrl-C; a signal already ignored (``nohup``) stays ignored.

    The signal is also recorded in the yielded dict: Python prints and drops an exception raised
    inside a destructor or callback, so a long run can check it between steps (the lab does) too.
    """
    got: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    signals = (signal.SIGTERM, signal.SIGHUP)

    def _raise(signum: int, frame: object) -> None:
        for s in signals:  # a second signal must not cut the teardown short
            signal.signal(s, signal.SIG_IGN)
        got["signal"] = signum
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, _raise) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield got
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals a command turns into KeyboardInterrupt (Ctrl-C, and :func:`signals_as_interrupt`'s)."""


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while the block runs, then deliver the first that came: a cleanup runs to
    its end. A KeyboardInterrupt raised by a signal handler lands between any two bytecodes, and code that owns a
    raw descriptor is not safe against that: ``shutil.rmtree`` (so ``TemporaryDirectory.cleanup``) closes its
    directory's descriptor, then records that it did; an interrupt in between makes its ``finally`` close it again
    (EBADF, or another thread's newly opened file) and leaves the directory behind.

    Only the main thread runs Python's signal handlers, so elsewhere the block runs as it is. A signal handled while
    the handlers are being swapped interrupts before the block starts (which then does not run: a
    ``TemporaryDirectory`` is still removed by its finalizer at exit); one handled during the block is re-raised once
    it has ended, to the handler it would have met."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def _hold(signum: int, frame: object) -> None:
        came.append(signum)

    held: dict[int, object] = {}
    try:
        for s in INTERRUPTS:
            handler = signal.getsignal(s)
            if callable(handler):  # SIG_IGN, SIG_DFL and handlers set outside Python stay as they are
                held[s] = handler  # before it is replaced: an interrupt at any point leaves the handlers as they were
                signal.signal(s, _hold)
        yield
    finally:
        for s, handler in held.items():
            if signal.getsignal(s) is _hold:  # not one a handler changed meanwhile (SIG_IGN after a first SIGTERM)
                signal.signal(s, handler)
        if came:
            signal.raise_signal(came[0])  # its handler runs now, in this thread (a KeyboardInterrupt from here)



class SpillDir:
    """A temporary directory (``tempfile.TemporaryDirectory``, in ``TMPDIR`` unless ``dir``) made and removed with
    interrupts deferred (:func:`interrupts_deferred`): Ctrl-C or SIGTERM meanwhile neither leaves it behind nor makes
    its removal close a descriptor twice. ``name`` is its path; :meth:`cleanup` removes it (again: nothing), as does
    leaving a ``with`` block (which yields the path) and, failing both, ``TemporaryDirectory``'s finalizer at exit."""

    def __init__(self, *, prefix: str, dir: str | os.PathLike | None = None) -> None:  # noqa: A002 - tempfile's name
        import tempfile

        with interrupts_deferred():  # an interrupt between its mkdir and its finalizer would leave it for good
            self._dir = tempfile.TemporaryDirectory(prefix=prefix, dir=dir)
        self.name = self._dir.name

    def cleanup(self) -> None:
        """Remove the directory and what it holds, whole, even when an interrupt comes meanwhile (it follows)."""
        with interrupts_deferred():
            self._dir.cleanup()

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def temporary_directory(*, prefix: str, dir: str | None = None) -> SpillDir:  # noqa: A002 - tempfile's name
    """A :class:`SpillDir`, for ``with temporary_directory(prefix=...) as tmp:`` (``tmp`` its path)."""
    return SpillDir(prefix=prefix, dir=dir)


def end_process(code: int) -> None:
    """End a command's process now with ``code`` once its output is flushed and its exit handlers have run, skipping
    the interpreter's teardown: freeing every module and numba's and LLVM's objects one by one costs ~0.5 s after the
    work is done (0.5-0.7 s measured after a ``read_packets`` or a ``correlate``), time a user waits for nothing.
    Returns (and the process exits the normal way) while another non-daemon thread is alive (its work must finish) or
    under a profiler or tracer (``python -m cProfile -m pcaptools ...`` writes its stats after the command returns).
    Files a command wrote are closed by then (every output is written in a ``with`` block); only the command line
    calls this, never a library."""
    import atexit
    import os
    import sys

    main = threading.main_thread()
    if any(t.is_alive() and not t.daemon and t is not main for t in threading.enumerate()):
        return
    if sys.getprofile() is not None or sys.gettrace() is not None:  # cProfile, a debugger, coverage: they write on return
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # the descriptor was closed when the process started (`>&-`): nothing to flush
            continue
        try:
            stream.flush()
        except BrokenPipeError:  # a reader that went away (`| head`): nothing to keep, as the command itself treats it
            pass
        except (OSError, ValueError):  # a full disk, a stream closed by the caller: the normal exit reports it (120)
            return
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; without it the normal exit runs them
    if run_exit_handlers is None:
        return
    run_exit_handlers()
    os._exit(code)
