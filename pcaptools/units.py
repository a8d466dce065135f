"""Byte quantities given by people (``--memory 2GiB``): one parser, so every command reads them alike.

Suffixes follow Kubernetes resource quantities, which our users already write: ``Ki``/``Mi``/``Gi``/``Ti``
(with or without a trailing ``B``) are powers of 1024, ``K``/``M``/``G``/``T`` (or ``KB``...) powers of
1000, no suffix or ``B`` is bytes. Case does not matter; a decimal number is allowed (``1.5G``).
"""

from __future__ import annotations

import math
import re

_SCALE = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20, "gi": 1 << 30, "gib": 1 << 30,
    "ti": 1 << 40, "tib": 1 << 40,
}  # fmt: skip
_QUANTITY = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")
MIN_MEMORY = 16 << 20
"""Smallest memory cap accepted: below it the interpreter and libraries alone do not fit."""


def parse_bytes(text: str, *, minimum: int = 1) -> int:
    """Bytes in ``text`` (``512MiB``, ``2GiB``, ``1.5G``, ``1048576``); ValueError saying what is accepted."""
    m = _QUANTITY.fullmatch(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SCALE:
        raise ValueError(f"expected a size such as 512MiB, 2GiB or 1.5G, found {text!r}")
    value = float(m.group(1)) * _SCALE[unit]
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"expected a size of at least {format_bytes(minimum)}, found {text!r}")
    return int(value)


def format_bytes(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps a short number (``2 GiB``, ``512 MiB``)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"
