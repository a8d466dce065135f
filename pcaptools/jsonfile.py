"""Read a JSON document a user handed us (manifest, inventory) with one-line errors instead of Python ones.

Only regular files are read (a FIFO could block forever), at most ``MAX_BYTES``; the text must be
UTF-8 (a BOM is allowed) and nested at most ``MAX_DEPTH`` levels. Errors name the file, what was
expected and what was found, and never quote the file's content.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pcaptools.errors import PcapError

MAX_BYTES = 1 << 30
MAX_DEPTH = 100  # kubectl output nests about 15 levels (managedFields); deeper is no inventory or manifest


def depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), without recursion."""
    best, stack = 0, [(doc, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            best = max(best, d + 1)
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return best


def load_json(path: str | os.PathLike, *, what: str, expected: str, error: type[PcapError]) -> Any:
    """Parsed JSON of ``path``; ``error`` (a PcapError class) says what is wrong in one line otherwise.

    ``what`` names the document ("manifest", "inventory") and ``expected`` says what to try.
    """
    from pcaptools.io.sniff import open_regular

    where = os.fspath(path)
    try:
        with open_regular(where) as f:
            raw = f.read(MAX_BYTES + 1)
    except PcapError as exc:
        raise error(f"{exc}; expected a {what} JSON file", path=where) from None
    except OSError as exc:
        raise error(f"{where}: cannot read the {what} ({exc.strerror or exc}); expected {expected}", path=where) from None
    if len(raw) > MAX_BYTES:
        raise error(f"{where}: {what} is larger than {MAX_BYTES} bytes; expected {expected}", path=where)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{where}: {what} is not UTF-8 text (invalid byte at offset {exc.start}); expected {expected}",
            path=where,
            offset=exc.start,
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{where}: {what} is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); expected {expected}",
            path=where,
            offset=exc.pos,
        ) from None
    except RecursionError:
        raise error(
            f"{where}: {what} is nested too deeply for a {what}; expected {expected}", path=where
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise error(f"{where}: {what} holds a value JSON readers refuse ({exc}); expected {expected}", path=where) from None
    n = depth(doc)
    if n > MAX_DEPTH:
        raise error(
            f"{where}: {what} is nested {n} levels deep (at most {MAX_DEPTH} expected); expected {expected}",
            path=where,
        )
    return doc
