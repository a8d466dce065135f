"""The default memory budget of a streamed correlation: a share of the memory available when it starts.

Sizes given by people (``--memory 2GiB``) are read by :func:`pcaptools.units.parse_bytes`.
"""

from __future__ import annotations

import os

MEMORY_FRACTION = 0.25
"""Default budget: this share of the memory available when the run starts (at least :data:`DEFAULT_FLOOR`)."""

DEFAULT_FLOOR = 256 << 20
"""The default budget is never below this."""


def default_memory() -> int:
    """:data:`MEMORY_FRACTION` of the memory available now (``MemAvailable``), at least :data:`DEFAULT_FLOOR`."""
    avail = 0
    try:
        with open("/proc/meminfo") as f:
            avail = next((int(line.split()[1]) << 10 for line in f if line.startswith("MemAvailable:")), 0)
    except OSError:
        pass
    if not avail:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 << 30
    return max(int(avail * MEMORY_FRACTION), DEFAULT_FLOOR)
