"""Memory budgets: sizes as people write them (``512MiB``, ``2GiB``, ``1.5G``) and the default share of free memory.

Kept free of numpy and pandas so the command line can check ``--memory`` before loading them.
"""

from __future__ import annotations

import os
import re

MEMORY_FRACTION = 0.25
"""Default budget: this share of the memory available when the run starts (at least :data:`MIN_MEMORY`)."""

MIN_MEMORY = 256 << 20

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes in ``512MiB``, ``2GiB``, ``1.5G``, ``800M``, ``65536`` (K, M, G, T are powers of 1024, with or without ``iB``/``B``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"expected a size such as 512MiB, 2GiB or 1.5G, found {text!r}")
    n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if n < 1:
        raise ValueError(f"expected a positive size such as 512MiB, 2GiB or 1.5G, found {text!r}")
    return int(n)


def default_memory() -> int:
    """:data:`MEMORY_FRACTION` of the memory available now (``MemAvailable``), at least :data:`MIN_MEMORY`."""
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
    return max(int(avail * MEMORY_FRACTION), MIN_MEMORY)
