"""numba kernels that import numba only when first run compiled, and can run as plain Python on small inputs.

``@njit(cache=True)`` from here wraps a kernel in a :class:`Kernel`: defining it costs nothing, the
first compiled call imports numba and compiles (or loads from numba's cache) the kernel, and inside
other numba kernels it is an ordinary dispatcher (numba types it through ``_numba_type_``). Within
:func:`interpreted` the same source runs as Python on numpy scalars: about 10 µs per record instead
of a fixed second or more of importing numba and loading machine code, so ``pcaptools info`` on a
small capture answers at once with output identical to the compiled walk (one source, two modes).
Only worth it for small inputs: the interpreted walk is hundreds of times slower per record, so an
interpreted block has a time budget; a kernel call past it raises :class:`Overtime` and the caller
redoes the work compiled (damage can make even a small file long to walk: a resync scans byte by byte).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("pcaptools_interpreted", default=None)


class Overtime(Exception):
    """An interpreted block ran past its time budget; redo the work compiled (outputs so far are partial)."""


def _boxed(value: Any) -> Any:
    """What numba returns to Python: numpy scalars become Python numbers (tuples element-wise)."""
    if isinstance(value, tuple):
        return tuple(_boxed(v) for v in value)
    import numpy as np  # here, not at the top: the CLI imports this module before it knows it needs numpy

    if isinstance(value, np.generic):
        return value.item()
    return value


class Kernel:
    """A kernel compiled with ``numba.njit(**options)`` on its first compiled call; ``py_func`` is its source."""

    def __init__(self, func: Callable, options: dict) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self.options = options
        self._dispatcher = None

    def dispatcher(self):
        """The numba dispatcher (numba is imported here, on first use)."""
        if self._dispatcher is None:
            import numba

            self._dispatcher = numba.njit(**self.options)(self.py_func)
        return self._dispatcher

    @property
    def _numba_type_(self):
        """How numba types this kernel when another kernel calls it: as its dispatcher."""
        from numba.core import types

        return types.Dispatcher(self.dispatcher())

    def __call__(self, *args: Any) -> Any:
        deadline = _DEADLINE.get()
        if deadline is not None:
            if time.monotonic() >= deadline:
                raise Overtime(f"interpreted {self.__name__} ran past its time budget")
            return _boxed(self.py_func(*args))
        return self.dispatcher()(*args)

    def __getattr__(self, name: str) -> Any:  # signatures, inspect_types, ...: the dispatcher's
        if name.startswith("__") or name in ("py_func", "options", "_dispatcher"):
            raise AttributeError(name)
        return getattr(self.dispatcher(), name)


def njit(*args: Any, **options: Any) -> Any:
    """Like ``numba.njit`` (with or without options) but lazy: see :class:`Kernel`."""
    if args and callable(args[0]):
        return Kernel(args[0], options)
    return lambda func: Kernel(func, options)


@contextlib.contextmanager
def interpreted(enabled: bool = True, *, budget_s: float = math.inf) -> Iterator[None]:
    """Within this block (this thread or task), :class:`Kernel` calls run their Python source, uncompiled,
    until ``budget_s`` seconds have passed (then they raise :class:`Overtime`); ``enabled=False``: compiled."""
    token = _DEADLINE.set(time.monotonic() + budget_s if enabled else None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class _NoBlasProbe:
    """Import hook: numba's numpy registry, loaded with the first kernel, probes for BLAS by importing
    ``scipy.linalg`` (0.35-0.5 s, the whole of scipy's linalg); this finder answers that one probe with
    ImportError. numba then gives ``np.correlate``/``np.convolve`` of floats its own inner product instead
    of BLAS's (no pcaptools kernel calls them); ``np.dot`` and ``np.linalg`` still import scipy when compiled."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        """Refuse ``scipy.linalg`` (the package of ``cython_blas``) while ``numba.np.arraymath`` runs its import-time probe."""
        if name not in ("scipy.linalg", "scipy.linalg.cython_blas"):
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == "_check_blas" and frame.f_globals.get("__name__") == "numba.np.arraymath":
                sys.meta_path.remove(self)  # the probe runs once per process
                raise ImportError("pcaptools: BLAS probe skipped (see pcaptools.jit.skip_blas_probe)")
            frame = frame.f_back
        return None


def skip_blas_probe() -> None:
    """For a whole process that runs only pcaptools kernels (the CLI): let numba load without importing scipy."""
    if "numba.np.arraymath" in sys.modules or any(isinstance(f, _NoBlasProbe) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _NoBlasProbe())
