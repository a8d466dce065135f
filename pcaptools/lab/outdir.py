"""The lab's output directory, written as root without following links planted in it.

:func:`check` refuses an ``--out`` that is a symbolic link or holds one anywhere inside; every
file is then created through :func:`open_new`: each directory component opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent, the file itself ``O_CREAT | O_EXCL |
O_NOFOLLOW`` after removing an old regular file, so a link planted between the check and the
write is refused too, and its target is never opened.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from pcaptools.errors import LabError


def _link_error(path: Path) -> LabError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return LabError(f"--out: {path} is a symbolic link (to {target}); the lab runs as root and does not follow "
                    "links in its output directory; remove the link or pass another --out")


def check(out: str | Path) -> Path:
    """Create ``out`` if needed and refuse it if it, or anything inside it, is a symbolic link."""
    out = Path(out)
    if out.is_symlink():
        raise _link_error(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise LabError(f"--out {out} exists and is not a directory; pass a directory") from exc
    except OSError as exc:
        raise LabError(f"--out {out}: cannot create it ({exc.strerror}); pass a writable directory") from exc
    if not stat.S_ISDIR(out.lstat().st_mode):
        raise LabError(f"--out {out} is not a directory; pass a directory")
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in sorted([*dirs, *files]):
            if os.path.islink(os.path.join(root, name)):
                raise _link_error(Path(root, name))
    return out


def _open_dir(name: str, dir_fd: int | None) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, name) from exc


def open_new(out: str | Path, rel: str | Path, mode: int = 0o644) -> int:
    """A new file ``out/rel`` opened for writing (fd), creating parent directories, following no link."""
    rel = Path(rel)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise LabError(f"{rel}: an output file must be a relative path inside --out")
    where = Path(out)
    try:
        fd = _open_dir(str(out), None)
    except OSError as exc:
        raise _link_error(where) if Path(out).is_symlink() else LabError(
            f"--out {out}: cannot open it ({exc.strerror})") from exc
    try:
        for part in rel.parts[:-1]:
            where = where / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                sub = _open_dir(part, fd)
            except OSError as exc:
                raise (_link_error(where) if where.is_symlink() else
                       LabError(f"{where}: cannot open it as a directory ({exc.strerror})")) from exc
            os.close(fd)
            fd = sub
        name = rel.parts[-1]
        where = where / name
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise _link_error(where)
            if not stat.S_ISREG(st.st_mode):
                raise LabError(f"{where} exists and is not a regular file; remove it or pass another --out")
            os.unlink(name, dir_fd=fd)
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                           dir_fd=fd)
        except OSError as exc:
            raise (_link_error(where) if where.is_symlink() else
                   LabError(f"{where}: cannot create it ({exc.strerror})")) from exc
    finally:
        os.close(fd)


def write_text(out: str | Path, rel: str | Path, text: str) -> Path:
    """Write ``text`` to a new file ``out/rel`` through :func:`open_new`; returns its path."""
    with os.fdopen(open_new(out, rel), "w") as f:
        f.write(text)
    return Path(out) / rel
