"""A dataclass field that may be given a function making its value, called on the first read.

For results whose parts most callers never read: ``PathSet.nat`` and ``.hops`` (a plain ``paths`` run reads
neither whole), a diagnosis' timeline, a correlation's summary (``paths`` reads the hops, not the latency table).
"""

from __future__ import annotations

import dataclasses


class MadeOnRead:
    """A dataclass field that may be given a function instead of its value: called on the first read, its result
    kept. Without ``default`` the field is required, as a plain annotation is (reading it from the class raises
    AttributeError, which dataclasses take for no default)."""

    def __init__(self, default: object = dataclasses.MISSING) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_value"

    def __get__(self, obj: object, owner: type | None = None) -> object:
        if obj is None:
            if self.default is dataclasses.MISSING:
                raise AttributeError(self.slot)
            return self.default
        v = obj.__dict__.get(self.slot)
        if callable(v):
            v = obj.__dict__[self.slot] = v()
        return v

    def __set__(self, obj: object, value: object) -> None:
        obj.__dict__[self.slot] = value
