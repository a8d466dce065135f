"""Thin wrappers over ``ip``/``iptables``/``sysctl`` in named network namespaces, with cleanup.

Every command the lab runs goes through :func:`run` (or :func:`spawn` for long-lived ones), so a
failure becomes one :class:`LabError` naming the command, the namespace and the tool's own message,
and every child dies with the lab: each command starts under ``setpriv --pdeathsig``, which sets
``PR_SET_PDEATHSIG`` and execs (``ip netns exec``, ``nice`` and the tools exec in place, so the
setting reaches tcpdump itself).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pcaptools.errors import LabError

TOOLS = ("ip", "iptables-restore", "tcpdump", "conntrack", "ss", "bridge", "setpriv")


def die_with_lab(sig: int = signal.SIGKILL) -> list[str]:
    """argv prefix: the command gets ``sig`` when the lab thread that started it dies (SIGKILL included).

    ``setpriv --pdeathsig`` sets ``PR_SET_PDEATHSIG`` and execs, so no Python runs between fork and
    exec (a ``preexec_fn`` would run the interpreter's fork hooks, which swallow a SIGTERM that
    arrives during them); ``nice``, ``ip netns exec`` and the tools exec in place and keep it.
    """
    return ["setpriv", f"--pdeathsig={signal.Signals(sig).name.removeprefix('SIG')}", "--"]


def spawn(argv: Sequence[str], *, ns: str | None = None, die_sig: int = signal.SIGKILL,
          **kw: Any) -> subprocess.Popen[str]:
    """Start a long-lived command (inside ``ns`` if given) that receives ``die_sig`` if the lab dies."""
    try:
        return subprocess.Popen([*die_with_lab(die_sig), *ns_prefix(ns), *argv], text=True, **kw)
    except FileNotFoundError as exc:
        raise _not_found(argv[0]) from exc


def _not_found(tool: str) -> LabError:
    missing = next((t for t in ("setpriv", tool) if shutil.which(t) is None), tool)
    return LabError(f"{missing}: not found; install it (needed by the lab)")


def check_host() -> None:
    """Fail with one actionable LabError unless we are root and the tools the lab needs exist."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it creates network namespaces; found uid "
                       f"{os.geteuid()}; run it with sudo or as root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs {', '.join(TOOLS)}; missing: {', '.join(missing)}; "
                       "install iproute2, iptables, tcpdump, conntrack and util-linux (setpriv)")
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"'ip netns' is unavailable: {res.stderr.strip() or res.returncode}; "
                       "the kernel or container must allow network namespaces")


def ns_prefix(ns: str | None) -> list[str]:
    """The argv prefix that runs a command inside ``ns`` (nothing for the current namespace)."""
    return ["ip", "netns", "exec", ns] if ns else []


def run(argv: Sequence[str], *, ns: str | None = None, stdin: str | None = None,
        check: bool = True, timeout: float = 30.0) -> str:
    """Run one command (inside ``ns`` if given) and return its stdout; failures raise LabError."""
    full = [*ns_prefix(ns), *argv]
    try:
        res = subprocess.run([*die_with_lab(), *full], input=stdin, capture_output=True, text=True,
                             timeout=timeout)
    except FileNotFoundError as exc:
        raise _not_found(argv[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(full)}: no answer after {timeout:.0f} s") from exc
    if check and res.returncode != 0:
        where = f" in namespace {ns}" if ns else ""
        raise LabError(f"{' '.join(argv)}{where} failed (exit {res.returncode}): "
                       f"{res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def ip_batch(ns: str | None, commands: Iterable[str]) -> None:
    """Run many ``ip`` commands in one process (``ip -batch -``), in order, stopping at the first error."""
    lines = [c for c in commands if c]
    if not lines:
        return
    argv = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    run(argv, stdin="\n".join(lines) + "\n")


def sysctl(ns: str, settings: dict[str, str | int]) -> None:
    """Set sysctls inside ``ns`` in one call."""
    run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())], ns=ns)


def iptables_restore(ns: str, rules: str, family: str = "ipv4") -> None:
    """Load a whole ruleset (iptables-save format) of ``family`` ('ipv4' or 'ipv6') inside ``ns`` atomically."""
    run(["ip6tables-restore" if family == "ipv6" else "iptables-restore"], ns=ns, stdin=rules)


def list_namespaces(prefix: str) -> list[str]:
    """Names of existing namespaces that start with ``prefix`` (for reporting: only registries say what is ours)."""
    out = run(["ip", "netns", "list"])
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def veths(ns: str) -> list[str]:
    """Names of the veth devices inside ``ns`` (what a run registry lists beside its namespaces)."""
    return sorted(link["ifname"] for link in json.loads(run(["ip", "-j", "-n", ns, "link", "show", "type", "veth"])
                                                         or "[]"))


def create(name: str, *, ipv6: bool = False) -> None:
    """Create a namespace with loopback up; IPv6 off (keeps captures free of RS/MLD chatter) unless ``ipv6``.

    With ``ipv6``, duplicate address detection, router solicitations and router advertisements are
    off for every interface created later (the lab assigns every address itself and knows it is unique).
    """
    run(["ip", "netns", "add", name])
    if ipv6:
        settings: dict[str, str | int] = {f"net.ipv6.conf.{d}.{k}": v for d in ("all", "default") for k, v in (
            ("accept_dad", 0), ("dad_transmits", 0), ("accept_ra", 0), ("router_solicitations", 0), ("disable_ipv6", 0))}
        settings["net.ipv6.conf.default.addr_gen_mode"] = 0  # EUI-64 link-locals: the pods' gateway is derived from a MAC
        sysctl(name, settings)
    else:
        sysctl(name, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def wait_addresses(ns: str, limit: float = 10.0) -> None:
    """Return once no IPv6 address in ``ns`` is tentative (duplicate address detection over); LabError if one failed."""
    deadline = time.monotonic() + limit
    while True:
        links = json.loads(run(["ip", "-j", "-6", "addr", "show"], ns=ns) or "[]")
        addrs = [(link.get("ifname"), a) for link in links for a in link.get("addr_info", [])]
        failed = [f"{a.get('local')} on {i}" for i, a in addrs if a.get("dadfailed")]
        if failed:
            raise LabError(f"duplicate address detection failed in namespace {ns}: {', '.join(failed)}")
        pending = [f"{a.get('local')} on {i}" for i, a in addrs if a.get("tentative")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"IPv6 addresses still tentative in namespace {ns} after {limit:.0f} s: {', '.join(pending)}")
        time.sleep(0.02)  # polling the addresses' state, not waiting for a fixed time


def _kill_pids(ns: str) -> None:
    """Stop the processes still running inside ``ns`` (only lab namespaces are passed here)."""
    res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    pids = [int(p) for p in res.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + 2.0
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _exists(p)]
            if alive:
                time.sleep(0.02)  # polling process exit, not waiting for readiness
        pids = alive


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def delete(name: str) -> None:
    """Stop what runs inside ``name`` and delete it (callers pass only namespaces a run registry lists)."""
    _kill_pids(name)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)


_GRO_OFF = """
import ctypes, fcntl, socket, struct, sys
SIOCETHTOOL, ETHTOOL_GGRO, ETHTOOL_SGRO = 0x8946, 0x2b, 0x2c
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for name in sys.argv[1:]:
    for cmd in (ETHTOOL_SGRO, ETHTOOL_GGRO):
        val = ctypes.create_string_buffer(struct.pack("II", cmd, 0), 8)
        fcntl.ioctl(s, SIOCETHTOOL, struct.pack("16sP", name.encode(), ctypes.addressof(val)) + bytes(16))
    if struct.unpack("II", val.raw)[1]:
        sys.exit(f"{name}: GRO still on")
"""


def gro_off(ns: str, interfaces: Sequence[str]) -> None:
    """Turn generic receive offload off (the SIOCETHTOOL ioctl; no ethtool binary needed) inside ``ns``."""
    run([sys.executable, "-c", _GRO_OFF, *interfaces], ns=ns)
