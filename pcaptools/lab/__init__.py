"""The emulated Kubernetes data-plane lab: namespaces as nodes and pods, kube-proxy NAT, tcpdump captures.

``run_lab`` is imported lazily so ``python -m pcaptools.lab.traffic`` (run inside every pod) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_lab", "clean"]


def __getattr__(name: str) -> Any:
    if name == "run_lab":
        from pcaptools.lab.run import run_lab

        return run_lab
    if name == "clean":
        from pcaptools.lab.run import clean

        return clean
    raise AttributeError(name)
