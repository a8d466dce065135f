"""Read and validate a capture set's ``manifest.json``: types of every field, and files kept inside its directory.

A manifest is ``{"cni": str, "inventory": str, "captures": [{"file", "node", "interface", "role", "pod", "interfaces":
[{"ifindex", "interface", "role", "pod"}]}], "lab": {"inventory": str}}`` (sample_pcaps/README.md).
Only ``file`` is required. Every path in it is relative to the manifest's directory and must stay
inside it (after ``..`` and symbolic links are resolved) unless the caller allows outside paths:
a manifest from someone else cannot make pcaptools open ``/etc/passwd``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pcaptools.errors import InventoryError
from pcaptools.jsonfile import load_json

EXPECTED = "an object {'cni': ..., 'captures': [{'file': 'node-1/eth0.pcap', 'node': ..., 'interface': ...}]}"
_TEXT = ("node", "interface", "role", "pod")


def _fail(path: Path, where: str, want: str, found: Any) -> InventoryError:
    kind = "null" if found is None else type(found).__name__
    return InventoryError(f"{path}: {where} should be {want}, found {kind}; expected {EXPECTED}", path=str(path))


def inside(base: Path, rel: str, *, manifest: Path, where: str, allow_outside: bool) -> str:
    """``rel`` resolved against ``base``; InventoryError if it leaves ``base`` and outside paths are not allowed."""
    if "\0" in rel:
        raise InventoryError(f"{manifest}: {where} contains a NUL character; expected a file name", path=str(manifest))
    full = base / rel
    if not allow_outside:
        real, root = os.path.realpath(full), os.path.realpath(base)
        if os.path.commonpath([real, root]) != root:
            raise InventoryError(
                f"{manifest}: {where} points outside the manifest's directory {root}; "
                "paths in a manifest are relative to it (pass --allow-outside, or allow_outside=True, "
                "if you trust this manifest)",
                path=str(manifest),
            )
    return str(full)


def read_manifest(path: str | os.PathLike, *, allow_outside: bool = False) -> dict:
    """The validated manifest, each capture's ``file`` resolved against the manifest's directory."""
    man = Path(path)
    doc = load_json(man, what="manifest", expected=EXPECTED, error=InventoryError)
    if not isinstance(doc, dict):
        raise _fail(man, "the document", "an object", doc)
    caps = doc.get("captures")
    if not isinstance(caps, list):
        raise _fail(man, "'captures'", "a list", caps)
    if not isinstance(doc.get("cni", ""), str):
        raise _fail(man, "'cni'", "a string", doc.get("cni"))
    if not isinstance(doc.get("inventory", ""), (str, type(None))):
        raise _fail(man, "'inventory'", "an inventory file name", doc.get("inventory"))
    lab = doc.get("lab")
    if lab is not None and (not isinstance(lab, dict) or not isinstance(lab.get("inventory", ""), (str, type(None)))):
        raise _fail(man, "'lab'", "an object with an 'inventory' file name", lab)
    out = []
    for i, c in enumerate(caps):
        if not isinstance(c, dict):
            raise _fail(man, f"captures[{i}]", "an object with at least a 'file'", c)
        if not isinstance(c.get("file"), str) or not c["file"]:
            raise _fail(man, f"captures[{i}].file", "a file name", c.get("file"))
        for k in _TEXT:
            if not isinstance(c.get(k, ""), (str, type(None))):
                raise _fail(man, f"captures[{i}].{k}", "a string", c.get(k))
        ifs = c.get("interfaces")
        if ifs is not None and not isinstance(ifs, list):
            raise _fail(man, f"captures[{i}].interfaces", "a list", ifs)
        for j, x in enumerate(ifs or []):
            at = f"captures[{i}].interfaces[{j}]"
            if not isinstance(x, dict):
                raise _fail(man, at, "an object with 'ifindex' and 'interface'", x)
            if "ifindex" in x and (type(x["ifindex"]) is not int or not 0 <= x["ifindex"] < 1 << 32):
                raise _fail(man, f"{at}.ifindex", "an interface index (0 to 2^32-1)", x["ifindex"])
            for k in ("interface", "role", "pod"):
                if not isinstance(x.get(k, ""), (str, type(None))):
                    raise _fail(man, f"{at}.{k}", "a string", x.get(k))
        e = dict(c)
        e["file"] = inside(
            man.parent, c["file"], manifest=man, where=f"captures[{i}].file", allow_outside=allow_outside
        )
        out.append(e)
    return {**doc, "captures": out}


def inventory_beside(source: str | os.PathLike, *, allow_outside: bool = False) -> str | None:
    """The inventory a manifest names (``inventory``, or the lab's ``lab.inventory``), else ``inventory.json``
    beside it, if it exists."""
    src = Path(source)
    man = src / "manifest.json" if os.path.isdir(src) else src  # os.path: False, never OSError
    name = "inventory.json"
    if os.path.isfile(man):
        try:
            doc = read_manifest(man, allow_outside=True)
        except InventoryError:
            doc = {}  # a bad manifest is reported by whoever reads its captures
        name = doc.get("inventory") or (doc.get("lab") or {}).get("inventory") or name
    cand = inside(man.parent, name, manifest=man, where="lab.inventory", allow_outside=allow_outside)
    return cand if os.path.exists(cand) else None
