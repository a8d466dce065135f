"""Run registry: what each lab run created, so cleanup removes exactly that and nothing else.

Every run takes a unique id (``<prefix><6 hex digits>``; its namespaces are ``<id>-<name>``) and
keeps two files in :data:`RUN_DIR`: ``<id>.lock``, flock-ed by the owner for as long as it lives
(the kernel releases it however the owner dies, SIGKILL included, and a reused PID cannot fake it),
and ``<id>.json``, replaced atomically, listing the owner PID, the namespaces (written *before* they
are created), the veths and the PIDs (with their start times, so a reused PID is never signalled).
A run whose lock nobody holds is stale: :func:`reap` stops its processes and deletes its namespaces.
Namespaces no registry lists are never touched, whatever their name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pcaptools.errors import LabError
from pcaptools.lab import netns

RUN_DIR = Path("/run/pcaptools-lab")
FORMAT = "pcaptools-lab-run/1"
# a letter, then letters, digits, '-' or '_'; no whitespace, '/', '.' (so no '..'), nothing a shell,
# `ip netns` or a file name treats specially. 16 at most: `<prefix><6 hex>-pod-backend-0` stays short.
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,15}")


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a safe namespace-name prefix, else raise one LabError saying what is allowed."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise LabError(f"--prefix {prefix!r} is not a safe namespace prefix: expected 2-16 characters, a letter "
                       "then letters, digits, '-' or '_' (no whitespace, '/', '.'); try --prefix ptlab-")
    return prefix


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:
        return int(raw[raw.rindex(b")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def _run_dir(base: Path) -> Path:
    """``base``, created 0700 if missing; refused unless it is a real directory owned by us and not group/world-writable."""
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700, parents=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise LabError(f"{base}: the lab's run registry must be a directory owned by uid {os.geteuid()} and "
                       f"writable only by it; found mode {stat.filemode(st.st_mode)} uid {st.st_uid}; "
                       "remove it and run again")
    return base


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a crash leaves the old or the new registry, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


@dataclass
class Run:
    """The registry entry of the run this process owns; :meth:`close` removes it once its namespaces are gone."""

    run_id: str
    prefix: str
    base: Path
    data: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None

    @property
    def ns_prefix(self) -> str:
        """What every namespace name of this run starts with."""
        return f"{self.run_id}-"

    @property
    def path(self) -> Path:
        return self.base / f"{self.run_id}.json"

    def add_namespaces(self, names: list[str]) -> None:
        """Record namespaces before they are created (a crash in between leaves nothing unlisted)."""
        bad = [n for n in names if not n.startswith(self.ns_prefix)]
        if bad:
            raise LabError(f"namespace {bad[0]!r} does not carry the run id {self.run_id}")
        self.data["namespaces"] = sorted({*self.data["namespaces"], *names})
        self._save()

    def add_veths(self, veths: list[dict[str, str]]) -> None:
        """Record the veths the run created ({ns, name}); they go with their namespaces."""
        self.data["veths"] = [*self.data["veths"], *veths]
        self._save()

    def add_pid(self, pid: int, what: str) -> None:
        """Record a child process with its start time, so cleanup never signals a reused PID."""
        self.data["pids"].append({"pid": pid, "start": _start_time(pid), "what": what})
        self._save()

    def set_state(self, state: str) -> None:
        """Record the run's phase ("building", "capturing", "stopping"): readiness others can watch."""
        self.data["state"] = state
        self._save()

    def _save(self) -> None:
        _write_json(self.path, self.data)

    def close(self) -> None:
        """Remove the registry and release the lock (call once the run's namespaces are deleted)."""
        if self._lock_fd is None:
            return
        for p in (self.path, self.base / f"{self.run_id}.lock"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        self.release()

    def release(self) -> None:
        """Release the lock but keep the registry: the run is stale at once and :func:`reap` finishes it."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def open_run(prefix: str, *, out: str | None = None, base: Path | None = None) -> Run:
    """Claim a new run id under ``prefix``: lock file first (so the run is never seen unlocked), then registry."""
    validate_prefix(prefix)
    base = _run_dir(base or RUN_DIR)
    existing = netns.list_namespaces(prefix)
    for _attempt in range(32):
        run_id = f"{prefix}{secrets.token_hex(3)}"
        if any(n.startswith(run_id + "-") for n in existing):
            continue
        tmp = base / f".{run_id}.{os.getpid()}.lock"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.link(tmp, base / f"{run_id}.lock")  # fails if the id is taken: the claim is atomic
        except FileExistsError:
            os.close(fd)
            tmp.unlink()
            continue
        tmp.unlink()
        run = Run(run_id, prefix, base, _lock_fd=fd)
        run.data = {"format": FORMAT, "run_id": run_id, "prefix": prefix, "owner_pid": os.getpid(),
                    "owner_start": _start_time(os.getpid()), "state": "building",
                    "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "out": out,
                    "namespaces": [], "veths": [], "pids": []}
        run._save()
        return run
    raise LabError(f"could not find a free run id under prefix {prefix!r} after 32 tries; "
                   f"run `pcaptools lab clean --prefix {prefix}`")


@dataclass
class Cleaned:
    """What :func:`reap` did: namespaces removed, stale runs reaped, live runs and unlisted namespaces left alone."""

    removed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)


def read_runs(base: Path | None = None) -> list[dict[str, Any]]:
    """Every registry in ``base`` (live or stale) as recorded; unreadable ones are skipped."""
    base = base or RUN_DIR
    out = []
    for p in sorted(base.glob("*.json")) if base.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            d = json.loads(p.read_text())
            if isinstance(d, dict) and d.get("format") == FORMAT:
                out.append(d)
    return out


@contextlib.contextmanager
def _stale_lock(path: Path) -> Iterator[bool]:
    """Yield True while we hold the lock of a run whose owner is gone; False if the owner still holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                yield False
                return
            raise
        try:  # another cleaner may have finished this run and unlinked the file we opened
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        yield same
    finally:
        os.close(fd)


def _kill(pids: list[dict[str, Any]]) -> None:
    """SIGKILL the recorded processes that are still the same processes (PID and start time agree)."""
    for p in pids:
        pid, start = p.get("pid"), p.get("start")
        if isinstance(pid, int) and pid > 1 and start is not None and _start_time(pid) == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def reap(prefix: str | None = None, *, base: Path | None = None) -> Cleaned:
    """Remove what stale runs (owner gone) under ``prefix`` created; live runs and unlisted namespaces are left alone."""
    if prefix is not None:
        validate_prefix(prefix)
    base = base or RUN_DIR
    done = Cleaned()
    listed: set[str] = set()
    for lock in sorted(base.glob("*.lock")) if base.is_dir() else []:
        run_id = lock.name[:-len(".lock")]
        if run_id.startswith(".") or (prefix is not None and not run_id.startswith(prefix)):  # "." : being claimed
            continue
        reg = base / f"{run_id}.json"
        with _stale_lock(lock) as stale:
            try:
                data = json.loads(reg.read_text())
            except (OSError, ValueError):
                data = {}
            names = [n for n in data.get("namespaces", []) if isinstance(n, str) and n.startswith(run_id + "-")]
            listed.update(names)
            if not stale:
                done.live.append(run_id)
                continue
            _kill([p for p in data.get("pids", []) if isinstance(p, dict)])
            present = set(netns.list_namespaces(run_id + "-"))
            for name in names:
                if name in present:
                    netns.delete(name)
                    done.removed.append(name)
            for p in (reg, lock):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            done.runs.append(run_id)
    if prefix is not None:
        done.unlisted = [n for n in netns.list_namespaces(prefix) if n not in listed and n not in done.removed]
    return done
