"""Module plumbing: names a package imports on first use, and modules that can be called like their main
function, so ``pcaptools.flows(packets)`` keeps working.

``pcaptools.flows``, ``pcaptools.correlate`` and ``pcaptools.compare`` are modules (so
``pcaptools.correlate.CaptureSet`` works and an ``import pcaptools.flows`` never rebinds a name);
calling one calls its main function, named in ``__call_target__``. New code should use the
unambiguous names ``pcaptools.flow_table``, ``pcaptools.correlate_captures`` and
``pcaptools.compare_captures``.
"""

from __future__ import annotations

import importlib
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


def lazy_getattr(package: str, exports: dict[str, tuple[str, str | None]]):
    """A PEP 562 ``__getattr__`` for ``package``: ``name -> (module, attribute or None for the module)``,
    imported on first use so importing the package stays light."""

    def __getattr__(name: str) -> Any:
        try:
            module, attr = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)

    return __getattr__
