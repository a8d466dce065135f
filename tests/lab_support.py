"""Whether this host can build the lab (root, the tools, network namespaces), for the lab tests' skip marks."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None when it can (probes by creating and deleting a namespace)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "tcpdump", "conntrack", "iptables-restore", "bridge"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    name = f"ptl{secrets.token_hex(2)}-probe"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        return f"cannot create network namespaces: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


REASON = lab_unavailable()
needs_lab = pytest.mark.skipif(REASON is not None, reason=REASON or "")
