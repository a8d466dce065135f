"""How many threads the nogil kernels (record walks, decode walk, category building) may use."""

from __future__ import annotations

import os

MAX_THREADS = 8


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask), at most MAX_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))
