"""Tables to JSON documents for programs: objects with ``schema_version``, numbers as numbers, ``null`` for absent.

One helper, :func:`records`, turns any table into plain records using the schema's declared absent
values (``Column.absent``, e.g. ``-1`` for a port-less packet's port), NaN/None/NA, and numpy
scalars to Python numbers. Each ``*_document`` function builds the ``--json`` output of one command;
its JSON Schema ships in ``pcaptools/schemas/<command>.schema.json``. pandas is imported by the functions
that take tables, so ``pcaptools info --json`` does without it.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring as _esc
from typing import TYPE_CHECKING, Any

import numpy as np

from pcaptools.fmt import PROTO_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from pcaptools.schema import Column

SCHEMA_VERSION = 1
"""Major version of every ``--json`` contract; bumped only when a field changes meaning or disappears."""

"""IP protocol numbers shown by name (others are shown as their number)."""


def plain(v: Any) -> Any:
    """One JSON-safe scalar: numpy numbers to Python numbers, NaN/NA/inf to None, lists element-wise."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [plain(x) for x in v]
    pd = sys.modules.get("pandas")  # not loaded: no value can be pandas' NA or NaT
    if v is None or (pd is not None and (v is pd.NA or v is pd.NaT)):
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def records(df: pd.DataFrame, columns: tuple[Column, ...] = ()) -> list[dict]:
    """Rows of ``df`` as JSON-ready dicts: absent values (declared by ``columns``, NaN, None) become None."""
    import pandas as pd

    declared = {c.name: c for c in columns}
    out: dict[str, list] = {}
    for name in df.columns:
        s = df[name]
        col = declared.get(name)
        if isinstance(s.dtype, pd.CategoricalDtype):  # each category made plain once, rows by code (-1: None)
            lut = np.empty(len(s.cat.categories) + 1, object)
            for i, v in enumerate(s.cat.categories.astype(object).tolist()):
                lut[i] = plain(v)
            vals = lut[np.asarray(s.cat.codes, np.int64)].tolist()
        elif isinstance(s.dtype, pd.StringDtype):  # str or None already: plain() keeps both
            vals = s.astype(object).where(s.notna(), None).tolist()
        elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            vals = [plain(v) for v in s.astype(object).where(s.notna(), None).tolist()]
        else:
            arr = s.to_numpy()
            vals = arr.tolist()
            bad = np.zeros(len(arr), bool)
            if arr.dtype.kind == "f":
                bad = ~np.isfinite(arr)
            if col is not None and col.absent is not None and arr.dtype.kind in "iu":
                bad |= arr == col.absent
            if bad.any():
                for i in np.flatnonzero(bad):
                    vals[i] = None
        out[str(name)] = vals
    keys = list(out)
    return [dict(zip(keys, row, strict=True)) for row in zip(*out.values(), strict=True)] if keys else [{}] * len(df)


def flat_table(df: pd.DataFrame) -> pd.DataFrame:
    """A table for CSV/Parquet files: list cells (VNIs, ports, MSS values, points) written as 'a, b', and a column
    mixing text and numbers (the comparison's value per set) as text, which Parquet can hold and CSV writes alike."""
    flat = df.copy()
    for c in flat.columns:
        if flat[c].dtype != object:
            continue
        if flat[c].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            flat[c] = flat[c].map(lambda v: ", ".join(map(str, v)) if isinstance(v, (list, np.ndarray)) else v)
        text = flat[c].map(lambda v: isinstance(v, str))
        if text.any() and not text[flat[c].notna()].all():
            flat[c] = flat[c].map(lambda v: str(v) if isinstance(v, (int, float, np.number, bool)) and v == v else v)  # v == v: not NaN
    return flat


def write_table_parts(parts: Iterable[pd.DataFrame], out: str) -> None:
    """Tables of one schema (a table's consecutive rows, typed alike) written as one ``.parquet`` file, a row group
    (or more) a part, or one ``.csv`` file (:func:`flat_table` of each): read back, the file is their concatenation."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, first = None, True
    try:
        for part in parts:
            flat = flat_table(part)
            if not out.endswith(".parquet"):
                flat.to_csv(out, index=False, header=first, mode="w" if first else "a")
            elif writer is None:
                t = pa.Table.from_pandas(flat, preserve_index=False)
                writer = pq.ParquetWriter(out, t.schema)
                writer.write_table(t)
            else:
                writer.write_table(pa.Table.from_pandas(flat, schema=writer.schema, preserve_index=False))
            first = False
    finally:
        if writer is not None:
            writer.close()


def json_schema(command: str) -> dict:
    """The shipped JSON Schema of ``pcaptools <command> --json`` (``pcaptools/schemas/<command>.schema.json``)."""
    from importlib.resources import files

    return json.loads(files("pcaptools").joinpath("schemas", f"{command}.schema.json").read_text(encoding="utf-8"))


def document(command: str, **body: Any) -> dict:
    """A ``--json`` document: ``schema_version`` and ``command`` first, then the command's fields."""
    return {"schema_version": SCHEMA_VERSION, "command": command, **body}


def dumps(doc: dict) -> str:
    """JSON text of a document (UTF-8 kept readable; a NaN that slipped through is a bug, so it raises): exactly
    ``json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)``, about 2.4x faster for the plain dicts, lists,
    strings and numbers documents hold (the standard library's indenting encoder is Python generators; its C encoder
    does not indent); anything else (a tuple, a non-string key, NaN, numpy scalars, deep nesting) is left to it."""
    out: list = []
    try:
        _encode(doc, 0, out)
    except (_Unusual, IndexError, RecursionError):
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=_objects)
    return "".join(p if type(p) is str else "".join(p) for p in out)


def _objects(o: Any) -> list:
    """json.dumps' ``default`` for what :func:`_encode` writes itself: a timeline given as columns, as its objects."""
    if hasattr(o, "timeline_columns"):
        return o.objects()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


class _Unusual(Exception):
    """A value :func:`_encode` leaves to the standard library's encoder (which writes it, or raises its own error)."""


_KEYS: dict[str, str] = {}
"""Each key's JSON text and ': ', escaped once: documents repeat the same few field names in every object."""
_KEYS_MAX = 1 << 14  # keys that are data (a hop pair's name) are many: past this many, escaped each time

_NEWLINE = ["\n" + "  " * i for i in range(100)]  # line break and indent per depth; deeper documents take json.dumps


def _scalar(v: Any) -> str | None:
    """JSON text of a str, int, float, bool or None (exact types, as json writes them), None for a container."""
    t = type(v)
    if t is str:
        return _esc(v)
    if t is int:
        return int.__repr__(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if t is float:
        if not math.isfinite(v):
            raise _Unusual
        return float.__repr__(v)
    return None


def _encode(o: Any, level: int, out: list) -> None:
    """Append the indented JSON text of ``o`` to ``out`` (json.dumps' layout with indent=2); raises _Unusual for
    anything but exact dicts with str keys, lists and :func:`_scalar` values. A timeline given as columns (an object
    with ``timeline_columns``, :class:`pcaptools.k8s.diagnose.Timeline`) is appended as an iterator of its text's
    pieces (:func:`_timeline_pieces`), made when they are written."""
    t = type(o)
    if t is dict:
        if not o:
            out.append("{}")
            return
        nl = _NEWLINE[level + 1]
        sep = "{" + nl
        for k, v in o.items():
            key = _KEYS.get(k)
            if key is None:
                if type(k) is not str:
                    raise _Unusual
                key = _esc(k) + ": "
                if len(_KEYS) < _KEYS_MAX:
                    _KEYS[k] = key
            tv = type(v)
            if tv is str:
                out.append(sep + key + _esc(v))
            elif tv is int:
                out.append(sep + key + int.__repr__(v))
            elif (text := _scalar(v)) is not None:
                out.append(sep + key + text)
            else:
                out.append(sep + key)
                _encode(v, level + 1, out)
            sep = "," + nl
        out.append(_NEWLINE[level] + "}")
    elif t is list:
        if not o:
            out.append("[]")
            return
        nl = _NEWLINE[level + 1]
        sep = "[" + nl
        for v in o:
            tv = type(v)
            if tv is str:
                out.append(sep + _esc(v))
            elif tv is int:
                out.append(sep + int.__repr__(v))
            elif (text := _scalar(v)) is not None:
                out.append(sep + text)
            else:
                out.append(sep)
                _encode(v, level + 1, out)
            sep = "," + nl
        out.append(_NEWLINE[level] + "]")
    else:
        text = _scalar(o)
        if text is None:
            if not hasattr(o, "timeline_columns"):
                raise _Unusual
            out.append(_timeline_pieces(o, level))
            return
        out.append(text)


TIMELINE_PIECE = 4096
"""Sightings in one piece of a timeline's text (:func:`_timeline_pieces`): a few hundred KiB of text at a time."""


def _timeline_pieces(tl: Any, level: int) -> Iterator[str]:
    """The indented JSON text of a diagnosis timeline given as columns (``tl.timeline_columns``, a
    :class:`pcaptools.k8s.diagnose.Timeline`) as pieces of about :data:`TIMELINE_PIECE` sightings, each made when it is
    asked for: what :func:`_encode` writes for ``tl.objects()`` (a list of ``{direction, packet, attempt, reached,
    sightings: [{point, ts_ns}]}``), without an object or a string per sighting held beyond its piece."""
    cut = tl.timeline_columns[4]
    n = len(cut) - 1
    nls = tuple(_NEWLINE[level + i] for i in range(5))  # (IndexError here: too deep, the caller's fallback)

    def pieces() -> Iterator[str]:
        if n <= 0:
            yield "[]"
            return
        lo = 0
        while lo < n:
            hi = int(np.searchsorted(cut, cut[lo] + TIMELINE_PIECE, "right")) - 1  # attempts ending within a piece
            hi = min(max(hi, lo + 1), n, lo + TIMELINE_PIECE)
            yield ("[" if lo == 0 else ",") + nls[1] + _attempts(tl, lo, hi, nls)
            lo = hi
        yield nls[0] + "]"

    return pieces()


def _attempts(tl: Any, lo: int, hi: int, nls: tuple[str, ...]) -> str:
    """The text of attempts ``lo`` to ``hi`` of a timeline given as columns, each indented as an item of the list
    whose line breaks are ``nls`` (its own, then each level deeper) and separated as there; a sighting is a string
    concatenation. Values but str points, directions and packets, int numbers and times are left to json.dumps."""
    direction, packet, number, reached, cut, points, ts = tl.timeline_columns
    n1, n2, n3, n4 = nls[1:]  # attempts, their fields, sightings, their fields
    cut = cut[lo:hi + 1].tolist()
    d, k, a, ok = (x[lo:hi].tolist() for x in (direction, packet, number, reached))
    p, t = points[cut[0]:cut[-1]].tolist(), ts[cut[0]:cut[-1]].tolist()
    names = (*set(d), *set(k))  # two directions and a label per packet
    if any(type(x) is not str for x in (*set(p), *names)) or (ts.dtype.kind not in "iu" and any(type(x) is not int for x in t)):
        return ("," + n1).join(json.dumps(o, indent=2, ensure_ascii=False, allow_nan=False).replace("\n", n1)
                               for o in tl.objects(lo, hi))  # fmt: skip
    head = {x: "{" + n4 + '"point": ' + _esc(x) + "," + n4 + '"ts_ns": ' for x in set(p)}
    tail = n3 + "}"
    seen = [f"{head[x]}{y}{tail}" for x, y in zip(p, t, strict=True)]  # one string built per sighting, no partial sums
    sep = "," + n3
    base = cut[0]
    esc = {x: _esc(x) for x in names}  # escaped once each
    f1, f2, f3, f4 = ("," + n2 + f'"{x}": ' for x in ("packet", "attempt", "reached", "sightings"))
    open_, close = "[" + n3, n2 + "]" + n1 + "}"
    head0 = "{" + n2 + '"direction": '
    empty = "[]" + n1 + "}"
    items = [
        f"{head0}{esc[di]}{f1}{esc[ki]}{f2}{ai}{f3}{'true' if oi else 'false'}{f4}"
        f"{open_ + sep.join(seen[s0 - base:s1 - base]) + close if s1 > s0 else empty}"
        for di, ki, ai, oi, s0, s1 in zip(d, k, a, ok, cut[:-1], cut[1:], strict=True)
    ]  # fmt: skip
    return ("," + n1).join(items)


_ITEMS = "\x00pcaptools-items\x00"


def write_document(doc: dict, key: str, items: Iterable[Any], write: Callable[[str], object]) -> None:
    """Write :func:`dumps` of ``doc`` with ``doc[key]`` the list of ``items`` through ``write``, an item at a time: the
    same text, without the whole list (or its text) in memory at once. ``doc[key]`` is a placeholder; JSON's indented
    layout is a prefix per line, so an item dumped alone and indented to its depth reads as it does inside the list."""
    head, sep, tail = dumps({**doc, key: _ITEMS}).partition(json.dumps(_ITEMS))
    if not sep:  # pragma: no cover - the placeholder is always written
        raise ValueError(f"document has no {key!r}")
    line = head.rpartition("\n")[2]  # '  "connections": '
    pad = " " * (len(line) - len(line.lstrip(" ")) + 2)  # the items' indent: the key's and one level
    write(head)
    first = True
    collecting = gc.isenabled()
    gc.disable()  # items are trees of dicts, lists and scalars, made and dropped here: a collection would only walk them
    try:
        for item in items:
            text: list[str] = [("[\n" if first else ",\n") + pad]
            for part in _parts_at(item, len(pad) // 2):
                if type(part) is str:
                    text.append(part)
                    continue
                write("".join(text))  # a timeline's pieces: the text before it, then each piece as it is made
                text = []
                for piece in part:
                    write(piece)
            write("".join(text))
            first = False
    finally:
        if collecting:
            gc.enable()
    write("[]" if first else "\n" + pad[:-2] + "]")
    write(tail)


def _parts_at(item: Any, level: int) -> list:
    """:func:`dumps` of ``item`` with every line after the first indented ``level`` steps, as it reads at that depth of
    a document (written there directly, not re-indented), as :func:`_encode`'s parts: strings, and a timeline's
    pieces as an iterator."""
    out: list = []
    try:
        _encode(item, level, out)
    except (_Unusual, IndexError, RecursionError):
        return [dumps(item).replace("\n", _NEWLINE[0] + "  " * level)]
    return out


# --- per command ----------------------------------------------------------------------------------
def info_document(summaries: list[dict]) -> dict:
    """``pcaptools info --json``: one summary object per file (:func:`pcaptools.io.summarize`)."""
    return document("info", files=[{k: plain(v) if not isinstance(v, (dict, list)) else v for k, v in s.items()} for s in summaries])


def flows_document(fl: pd.DataFrame) -> dict:
    """``pcaptools flows --json``: one object per flow, FLOW_COLUMNS plus ``proto_name``."""
    from pcaptools.schema import FLOW_COLUMNS

    recs = records(fl, FLOW_COLUMNS)
    for r in recs:
        r["proto_name"] = PROTO_NAMES.get(r.get("proto"))
    return document("flows", flows=recs)


def correlation_document(corr, *, skipped_files: list[dict] | None = None) -> dict:
    """``pcaptools correlate --json``: clock model per node, per-point rows (matched, unmatched, not correlated by
    reason), hop latency and losses as objects."""
    offs = corr.offsets
    ref = offs.loc[offs["reference"].to_numpy(bool), "node"]
    # the clock model per node is the correlate layer's own plain summary (null where a node is unsolved)
    clock = {str(node): {k: plain(v) for k, v in model.items()} for node, model in corr.to_dict()["clock_offsets"].items()}
    multi = int(corr.multi_point_journeys)
    ls = corr.loss_summary()
    return document(
        "correlate",
        reference=str(ref.iloc[0]) if len(ref) else None,
        window_ns=int(corr.window_ns),
        journeys=int(corr.journeys),
        multi_point_journeys=multi,
        ambiguous_journeys=int(corr.ambiguous),
        clock_offsets=clock,
        points=corr.point_counts(),
        hop_latency=records(corr.hop_latency),
        losses=records(ls.loc[:, ["point", "missing_at", "lost", "seen_at_point"]]) if len(ls) else [],
        notes=[str(n) for n in corr.notes],
        skipped_files=list(skipped_files or []),
    )


def comparison_document(cmp) -> dict:
    """``pcaptools compare --json``: the metric x capture-set summary (values per label, null = n/a) and detail tables."""
    return document(
        "compare",
        capture_sets=[{"label": lab, "source": cmp.sources.get(lab, ""), "notes": list(cmp.notes.get(lab, [])),
                       "skipped_files": list(cmp.skipped_files.get(lab, []))} for lab in cmp.labels],  # fmt: skip
        summary=[
            {"section": r["section"], "metric": r["metric"], "unit": r["unit"] or None, "doc": r["doc"],
             "values": {lab: plain(r[lab]) for lab in cmp.labels}}
            for r in cmp.summary.to_dict(orient="records")
        ],  # fmt: skip
        **comparison_details(cmp),
    )


def comparison_details(cmp) -> dict[str, list[dict]]:
    """A Comparison's detail tables as records, their declared absent values (-1) as None (``compare --json`` and
    ``Comparison.to_dict``)."""
    from pcaptools import schema

    return {k: records(getattr(cmp, k), getattr(schema, f"COMPARISON_{k.upper()}_COLUMNS"))
            for k in ("mode", "wire_bytes", "points", "latency", "hop_latency", "cross_node")}  # fmt: skip


_HOP_FIELDS = ("point", "node", "interface", "direction", "ts_ns", "ts_corrected_ns", "src", "sport", "dst", "dport",
               "tunnel", "vni", "outer_src", "outer_dst")  # fmt: skip


def _endpoint(proto, src, sport, dst, dport) -> dict:
    """A NAT step's packet before or after it, of values :func:`records` made plain already."""
    return {"proto": proto, "src": src, "sport": sport, "dst": dst, "dport": dport}


def _in_journeys(j: np.ndarray, journeys: np.ndarray) -> np.ndarray:
    """``np.isin(j, journeys)`` for journey ids: one lookup per row in a table of the ids when they are few and
    non-negative (a million-row hops table: 1 ms instead of isin's 10 ms of sorting), else ``np.isin``."""
    journeys = np.asarray(journeys, np.int64)
    if not len(j) or int(j.min()) < 0 or int(j.max()) > 4 * len(j) + 1024:
        return np.isin(j, journeys)
    table = np.zeros(int(j.max()) + 1, bool)
    table[journeys[(journeys >= 0) & (journeys < len(table))]] = True  # ids no row has (-1: no reply journey) match nothing
    return table[j]


def _hops_by_journey(hops: pd.DataFrame, journeys: np.ndarray) -> dict[int, list[dict]]:
    """Sightings of the given journeys as hop objects, in causal order, with the latency from the previous hop."""
    from pcaptools.schema import HOPS_COLUMNS

    sub = hops.loc[_in_journeys(hops["journey"].to_numpy(np.int64), journeys), ["journey", *_HOP_FIELDS]]
    out: dict[int, list[dict]] = {}
    for r in records(sub, HOPS_COLUMNS):
        lst = out.setdefault(int(r.pop("journey")), [])
        r["latency_ns"] = r["ts_corrected_ns"] - lst[-1]["ts_corrected_ns"] if lst else None
        lst.append(r)
    return out


def nat_rule_objects(nat_rules: pd.DataFrame | None) -> dict[tuple[int, int], dict]:
    """(journey, step) -> ``{chains, explained, problem}`` of :func:`pcaptools.k8s.iptables.explain`'s rows."""
    from pcaptools.k8s.iptables import rule_object

    if nat_rules is None:
        return {}
    return {(int(x.journey), int(x.step)): rule_object(x) for x in nat_rules.itertuples(index=False)}


def _nat_by_journey(nat: pd.DataFrame, journeys: np.ndarray, nat_rules: pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> dict[int, list[dict]]:
    """NAT rows of the given journeys as step objects ``{op, kind, node, service, before, after, rules, text}``;
    ``rules`` the kube-proxy chains behind the step (``nat_rules``: :func:`pcaptools.k8s.iptables.explain`'s table, or
    a function giving it for NAT rows, called on those journeys' only), else null."""
    from pcaptools.schema import NAT_COLUMNS

    sub = nat.loc[_in_journeys(nat["journey"].to_numpy(np.int64), journeys)].sort_values(["journey", "step"], kind="stable")
    if callable(nat_rules):
        nat_rules = nat_rules(sub)
    if nat_rules is not None:  # only these journeys' rule objects
        nat_rules = nat_rules.loc[_in_journeys(nat_rules["journey"].to_numpy(np.int64), journeys)]
    rules = nat_rule_objects(nat_rules)
    out: dict[int, list[dict]] = {}
    for r in records(sub, NAT_COLUMNS):
        step = {
            "op": r["op"], "kind": r["nat_kind"], "node": r["node"], "service": r["service"],
            "from_point": r["from_point"], "to_point": r["to_point"], "ts_corrected_ns": r["ts_corrected_ns"],
            "before": _endpoint(r["proto"], r["src_before"], r["sport_before"], r["dst_before"], r["dport_before"]),
            "after": _endpoint(r["proto"], r["src_after"], r["sport_after"], r["dst_after"], r["dport_after"]),
            "rules": rules.get((int(r["journey"]), int(r["step"]))),
        }  # fmt: skip
        step["text"] = nat_text(step, r)
        out.setdefault(int(r["journey"]), []).append(step)
    return out


def _ep(addr: Any, port: Any) -> str:
    if port is None:
        return str(addr)
    return f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}"


def nat_text(step: dict, row: dict) -> str:
    """One NAT step for people: ``DNAT 10.96.0.10:80→10.244.1.5:8080 @node-1 (clusterip default/web)``."""
    what = f"{step['kind']} {step['service']}" if step["service"] else str(step["kind"])
    at = f" @{step['node']}" if step["node"] else ""
    return f"{step['op']} {_ep(row['addr_before'], row['port_before'])}→{_ep(row['addr_after'], row['port_after'])}{at} ({what})"


_PATH_TEXT = ("nat", "nat_reply", "forward_points", "reverse_points", "hop_latency")


def paths_document(paths: pd.DataFrame, nat: pd.DataFrame, hops: pd.DataFrame, *, diagnosis=None,
                   nat_rules: pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> dict:
    """``pcaptools paths --json``: one object per connection; NAT steps and hops as objects, points as lists;
    with a :class:`pcaptools.k8s.diagnose.Diagnosis`, each connection's ``status``, ``losses`` and ``timeline``;
    with ``nat_rules`` (:func:`pcaptools.k8s.iptables.explain`), each NAT step's kube-proxy chains in ``rules``."""
    return document("paths", connections=len(paths), paths=list(path_records(paths, nat, hops, diagnosis=diagnosis,
                                                                             nat_rules=nat_rules)))  # fmt: skip


def path_records(paths: pd.DataFrame, nat: pd.DataFrame, hops: pd.DataFrame, *, diagnosis=None,
                 nat_rules: pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame] | None = None, columns: bool = False) -> Iterator[dict]:
    """The ``paths`` of :func:`paths_document`, one connection's object at a time, made :data:`RECORD_CHUNK`
    connections at a time (their hops, NAT steps and rows as objects: a few KiB a connection, never all of them;
    ``columns``: each diagnosis timeline a :class:`pcaptools.k8s.diagnose.Timeline`, which :func:`write_document`
    writes a piece at a time). ``nat_rules``: :func:`pcaptools.k8s.iptables.explain`'s table, or a function giving it
    for NAT rows, called on each chunk's (``partial(explain, rulesets=...)``: the steps explained as they are written,
    never the whole NAT table)."""
    hops, nat = ByJourney(hops), ByJourney(nat)
    for lo in range(0, len(paths), RECORD_CHUNK):
        yield from _path_records(paths.iloc[lo:lo + RECORD_CHUNK], nat, hops, diagnosis, nat_rules, columns)


RECORD_CHUNK = 512
"""Connections whose ``--json`` objects (and ``paths`` routes) are made at once: about 16 KiB a connection while its
chunk is written (the text's routes; measured on gen_set.py's short connections), each chunk's rows found by
:class:`ByJourney`, not by a pass over the tables."""


class ByJourney:
    """A table's rows of some journeys, in the table's order, found through one stable sort by journey (a lookup per
    chunk of connections costs the rows found, not a pass over the table)."""

    def __init__(self, table: pd.DataFrame) -> None:
        j = table["journey"].to_numpy(np.int64)
        self.table = table
        self._order = np.argsort(j, kind="stable")
        self._sorted = j[self._order]

    def rows(self, journeys: np.ndarray) -> pd.DataFrame:
        """The rows whose journey is one of ``journeys``, as ``table.loc[np.isin(table.journey, journeys)]``."""
        w = np.unique(np.asarray(journeys, np.int64))
        lo, hi = np.searchsorted(self._sorted, w), np.searchsorted(self._sorted, w, side="right")
        n = hi - lo
        at = np.repeat(lo, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return self.table.iloc[np.sort(self._order[at])]


def _path_records(paths: pd.DataFrame, nat: ByJourney, hops: ByJourney, diagnosis,
                  nat_rules: pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame] | None, columns: bool) -> Iterator[dict]:  # fmt: skip
    """:func:`path_records` of some consecutive connections."""
    from pcaptools.schema import PATH_COLUMNS

    fwd = paths["forward_journey"].to_numpy(np.int64)
    rep = paths["reply_journey"].to_numpy(np.int64)
    wanted = np.concatenate([fwd, rep[rep >= 0]])
    hop_of = _hops_by_journey(hops.rows(wanted), wanted)
    nat_of = _nat_by_journey(nat.rows(wanted), wanted, nat_rules)
    for r in records(paths.drop(columns=[c for c in _PATH_TEXT if c in paths.columns]), PATH_COLUMNS):
        f, b = r["forward_journey"], r["reply_journey"]
        r["proto_name"] = PROTO_NAMES.get(r["proto"])
        r["nat"] = [s for s in nat_of.get(f, [])]
        r["nat_reply"] = nat_of.get(b, []) if b is not None else []
        r["hops"] = hop_of.get(f, [])
        r["reply_hops"] = hop_of.get(b, []) if b is not None else []
        r["forward_points"] = [h["point"] for h in r["hops"]]
        r["reverse_points"] = [h["point"] for h in r["reply_hops"]]
        if diagnosis is not None:
            rec = diagnosis.connection_record(int(r["connection"]), columns=columns)
            rec.pop("nat", None)  # why's per-connection rule list: here the rules sit on each NAT step
            r.update(rec)
        yield r
