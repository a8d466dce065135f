"""Modules that can be called like their main function, so ``pcaptools.flows(packets)`` keeps working.

``pcaptools.flows``, ``pcaptools.correlate`` and ``pcaptools.compare`` are modules (so
``pcaptools.correlate.CaptureSet`` works and an ``import pcaptools.flows`` never rebinds a name);
calling one calls its main function, named in ``__call_target__``. New code should use the
unambiguous names ``pcaptools.flow_table``, ``pcaptools.correlate_captures`` and
``pcaptools.compare_captures``.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call forwards to one of its functions (``__call_target__``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__call_target__)(*args, **kwargs)


def make_callable(module_name: str, target: str) -> None:
    """Let ``module_name`` be called as ``module_name.target(...)``; its attributes are unchanged."""
    mod = sys.modules[module_name]
    mod.__call_target__ = target
    mod.__class__ = CallableModule
