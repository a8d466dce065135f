"""Parquet datasets of packet tables: decode a capture set once, read it back identically many times.

Layout of a dataset directory (``pcaptools convert`` writes it, :func:`read_dataset` reads it)::

    DIR/_pcaptools.json                                  what the set is (see below)
    DIR/packets/point=<POINT>/window=<START_NS>/part-<F>-<N>.parquet
    DIR/flows/part-<F>.parquet                           with --flows: each file's flow table
    DIR/inventory.json                                   the inventory the points were named with, if any

``POINT`` is the capture point's name (``node-1:eth0``) URI-escaped (``node-1%3Aeth0``), as pyarrow's
hive partitioning reads it; rows no capture point holds (a pcapng interface no manifest entry names)
are under ``point=__HIVE_DEFAULT_PARTITION__``. ``START_NS`` is the start of the time window (a
multiple of ``window_ns``, ns since the epoch) holding the rows' ``ts_ns``; ``F`` is the capture
file's index in ``files`` below, ``N`` a running number. Every part has the packet table's columns
(schema.PACKET_COLUMNS, then ``payload_hash``) as Parquet types (categories as dictionaries), each
field carrying its ``dtype``, ``unit`` and ``doc`` and the file carrying ``pcaptools.schema`` (all
of them, JSON) in its key-value metadata.

``_pcaptools.json`` (``format`` ``pcaptools-dataset/1``) holds ``files`` (per capture file: its
name as decoded, ``records`` read, ``rows``, the reader's ``skipped`` counts by reason, ``notes``,
``stopped_at`` and each category column's categories in the decoder's order, so the table reads back
equal to ``read_packets`` of the file), ``entries`` (manifest entries of the capture points:
``file`` is a file name of ``files``), ``points`` (name, node, interface, role, pod, file, ifindex,
pcapng_interface), ``inference`` (the evidence of each inferred field and the warnings), ``cni``,
``capture_drops`` (packets each capture reported dropped), ``decode`` (the decoder's options) and
``window_ns``.

A capture file of a dataset is addressed as ``DIR::FILE`` (:func:`member`); ``read_packets`` reads
such a name, or the whole ``DIR``, from the dataset. Limits: category lists are stored per file in
``_pcaptools.json`` (its size grows with the distinct addresses of each file); the raw packet bytes
are not stored, so ``merge`` and ``show`` still need the captures themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.errors import FormatError
from pcaptools.schema import PACKET_COLUMNS, Column

META = "_pcaptools.json"
FORMAT = "pcaptools-dataset/1"
DEFAULT_WINDOW_NS = 60 * 10**9
NO_POINT = "__HIVE_DEFAULT_PARTITION__"
SEP = "::"
COLUMNS: tuple[Column, ...] = (
    *PACKET_COLUMNS,
    Column("payload_hash", "uint64", "", "hash of the first 16 L4 payload bytes (the correlator's fingerprint reads it)"),
)
"""Columns of every part: the packet table's, then the payload-prefix hash."""
_CATEGORIES = [c.name for c in COLUMNS if c.dtype == "category"]
_FORMAT_HINT = "expected a directory `pcaptools convert` wrote; convert the captures again"


class DatasetError(FormatError):
    """A dataset directory is not one pcaptools wrote, or its files are damaged."""


def arrow_schema(columns: tuple[Column, ...] = COLUMNS, *, table: str = "packets"):
    """The Parquet schema of a table: categories as int32-indexed string dictionaries, each field's
    dtype, unit and doc in its metadata and the whole schema as JSON under ``pcaptools.schema``."""
    import pyarrow as pa

    types = {"category": pa.dictionary(pa.int32(), pa.string()), "bool": pa.bool_(), "str": pa.string(),
             "object": pa.string(), "float64": pa.float64()}  # fmt: skip
    fields = [
        pa.field(c.name, types.get(c.dtype) or pa.from_numpy_dtype(np.dtype(c.dtype)),
                 metadata={"dtype": c.dtype, "unit": c.unit, "doc": c.doc})
        for c in columns
    ]  # fmt: skip
    doc = [{"name": c.name, "dtype": c.dtype, "unit": c.unit, "doc": c.doc} for c in columns]
    return pa.schema(fields, metadata={"pcaptools.schema": json.dumps(doc), "pcaptools.table": table})


def is_dataset(path: str | os.PathLike) -> bool:
    """True for a directory holding ``_pcaptools.json`` (a dataset, sound or not)."""
    return (Path(path) / META).is_file()


def member(directory: str | os.PathLike, file: str) -> str:
    """The name ``read_packets`` reads one capture file of a dataset by: ``DIR::FILE``."""
    return f"{os.fspath(directory)}{SEP}{file}"


def split_member(path: str | os.PathLike) -> tuple[str, str] | None:
    """(dataset directory, file) of a ``DIR::FILE`` name, else None."""
    text = os.fspath(path)
    at = text.find(SEP)
    while at > 0:
        if is_dataset(text[:at]):
            return text[:at], text[at + len(SEP) :]
        at = text.find(SEP, at + 1)
    return None


def read_meta(directory: str | os.PathLike) -> dict:
    """``_pcaptools.json`` of a dataset, checked; DatasetError in one line when it is not one pcaptools wrote."""
    from pcaptools.jsonfile import load_json

    d = os.fspath(directory)
    doc = load_json(Path(d) / META, what="dataset description", expected=_FORMAT_HINT, error=DatasetError)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DatasetError(f"{d}: {META} is not a pcaptools dataset description (format {found!r}, expected {FORMAT!r}); {_FORMAT_HINT}", path=d)
    shapes = {"files": list, "entries": list, "points": list, "decode": dict, "window_ns": int, "capture_drops": dict}
    for key, kind in shapes.items():
        if not isinstance(doc.get(key), kind):
            raise DatasetError(f"{d}: {META} field {key!r} is {type(doc.get(key)).__name__}, expected {kind.__name__}; {_FORMAT_HINT}", path=d)
    for i, f in enumerate(doc["files"]):
        if not (isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("categories"), dict)
                and all(isinstance(f["categories"].get(c), list) for c in _CATEGORIES)):  # fmt: skip
            raise DatasetError(f"{d}: {META} files[{i}] lacks its path or categories; {_FORMAT_HINT}", path=d)
    return doc


def dataset_entries(directory: str | os.PathLike) -> tuple[list[dict], dict]:
    """Manifest entries of a dataset's capture points (``file`` as ``DIR::FILE``) and its description."""
    meta = read_meta(directory)
    return [{**e, "file": member(directory, e["file"])} for e in meta["entries"]], meta


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Each dataset directory replaced by its capture files (``DIR::FILE``), other paths as given."""
    out: list[str] = []
    for p in paths:
        out += [member(p, f["path"]) for f in read_meta(p)["files"]] if is_dataset(p) else [os.fspath(p)]
    return out


def read_dataset(
    directory: str | os.PathLike,
    *,
    files: Iterable[str] | None = None,
    points: Iterable[str] | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    payload_hash: bool = True,
) -> pd.DataFrame:
    """The packet table of a dataset: equal (columns, dtypes, categories, rows in order, attrs) to
    ``read_packets`` of the captures it was converted from, with the ``payload_hash`` column.

    ``files``, ``points`` (capture point names) and ``[start_ns, end_ns)`` select rows; points and
    windows prune whole directories, the time range is pushed down to the Parquet row groups.
    """
    import pyarrow.dataset as ds

    d = os.fspath(directory)
    meta = read_meta(d)
    known = [f["path"] for f in meta["files"]]
    chosen = known if files is None else list(files)
    unknown = [f for f in chosen if f not in known]
    if unknown:
        raise DatasetError(f"{d}: holds no capture file {unknown[0]!r}; it holds {known}", path=d)
    names = {p["name"] for p in meta["points"]}
    wanted = None if points is None else {urllib.parse.quote(p, safe="") for p in points}
    if points is not None and not set(points) <= names:
        raise DatasetError(f"{d}: no capture point {sorted(set(points) - names)[0]!r}; its points are {sorted(names)}", path=d)
    w = int(meta["window_ns"])
    expr = None
    if start_ns is not None:
        expr = ds.field("ts_ns") >= int(start_ns)
    if end_ns is not None:
        expr = (ds.field("ts_ns") < int(end_ns)) if expr is None else expr & (ds.field("ts_ns") < int(end_ns))
    frames = []
    for f in chosen:
        i = known.index(f)
        parts = []
        for part in sorted((Path(d) / "packets").glob(f"point=*/window=*/part-{i:05d}-*.parquet")):
            point, window = part.parent.parent.name[6:], int(part.parent.name[7:])
            if (wanted is not None and point not in wanted) or (start_ns is not None and window + w <= start_ns) \
                    or (end_ns is not None and window >= end_ns):  # fmt: skip
                continue
            parts.append(str(part))
        frames.append(_file_frame(d, meta["files"][i], parts, expr, payload_hash))
    out = frames[0] if len(frames) == 1 else _stack(frames)
    out.attrs = {"skipped": {f["path"]: dict(f.get("skipped") or {}) for f in meta["files"] if f["path"] in chosen},
                 "notes": [n for f in meta["files"] if f["path"] in chosen for n in f.get("notes") or []],
                 "stopped_at": {f["path"]: f.get("stopped_at") for f in meta["files"] if f["path"] in chosen}}  # fmt: skip
    return out


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    from pcaptools.decode.table import concat

    return concat(frames)


def _file_frame(d: str, info: dict, parts: list[str], expr, payload_hash: bool) -> pd.DataFrame:
    """One capture file's rows from its parts: record order, duplicates (a file at two points) once."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    schema = arrow_schema()
    names = [c.name for c in COLUMNS]
    try:
        t = ds.dataset(parts, schema=schema, format="parquet").to_table(columns=names, filter=expr) if parts else schema.empty_table()
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{d}: a Parquet part of capture {info['path']!r} is unreadable ({str(exc).splitlines()[0]}); "
                           f"{_FORMAT_HINT}", path=d) from None  # fmt: skip
    rec = t.column("record").to_numpy()
    order = np.argsort(rec, kind="stable")
    keep = order[np.r_[True, rec[order][1:] != rec[order][:-1]]] if len(order) else order
    cols: dict[str, object] = {}
    for c in COLUMNS:
        if c.name == "payload_hash" and not payload_hash:
            continue
        arr = t.column(c.name)
        if c.dtype == "category":
            cats = pd.Index(info["categories"][c.name], dtype=object)
            arr = arr.unify_dictionaries().combine_chunks() if arr.num_chunks else pa.array([], arr.type)
            lut = np.append(cats.get_indexer(arr.dictionary.to_pylist()), -1).astype(np.int64)
            if (lut[:-1] < 0).any():
                raise DatasetError(f"{d}: column {c.name} of capture {info['path']!r} holds values its categories lack; {_FORMAT_HINT}", path=d)
            codes = lut[arr.indices.fill_null(-1).to_numpy()] if len(arr) else np.zeros(0, np.int64)
            cols[c.name] = pd.Categorical.from_codes(codes[keep], categories=cats, validate=False)
        else:
            cols[c.name] = arr.to_numpy()[keep].astype(c.dtype, copy=False)
    return pd.DataFrame(cols, copy=False)


class DatasetWriter:
    """Writes a dataset into a fresh directory beside ``out`` and moves it into place on :meth:`close`.

    ``out`` must not exist or be empty; an existing dataset is replaced only with ``overwrite``, any
    other non-empty directory never.
    """

    def __init__(self, out: str | os.PathLike, *, window_ns: int = DEFAULT_WINDOW_NS, overwrite: bool = False) -> None:
        self.out = Path(out)
        if self.out.exists() and not (self.out.is_dir() and not any(self.out.iterdir())):
            if not self.out.is_dir() or not is_dataset(self.out):
                raise DatasetError(f"{self.out}: exists and is not an empty directory or a pcaptools dataset; "
                                   "convert into a new or empty directory", path=str(self.out))  # fmt: skip
            if not overwrite:
                raise DatasetError(f"{self.out}: a dataset is already there; pass --overwrite to replace it, "
                                   "or convert into a new directory", path=str(self.out))  # fmt: skip
        if int(window_ns) <= 0:
            raise DatasetError(f"window_ns: expected a positive number of nanoseconds, found {window_ns}")
        self.window_ns = int(window_ns)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        self.files: list[dict] = []
        self._parts = 0
        self._schema = arrow_schema()

    def add_file(self, table: pd.DataFrame, *, path: str) -> int:
        """Register one capture file (its decoded table gives attrs and categories); its index in ``files``."""
        attrs = table.attrs
        skipped = {k: int(v) for k, v in (attrs.get("skipped", {}).get(path) or {}).items()}
        self.files.append({
            "path": path, "records": len(table) + sum(skipped.values()), "rows": len(table), "skipped": skipped,
            "notes": list(attrs.get("notes", [])), "stopped_at": _plain(attrs.get("stopped_at", {}).get(path)),
            "categories": {c: [str(x) for x in table[c].cat.categories] for c in _CATEGORIES},
        })  # fmt: skip
        return len(self.files) - 1

    def write(self, file_index: int, point: str | None, rows: pd.DataFrame) -> None:
        """Rows of one file at one capture point (None: no point holds them), one part per time window."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(rows):
            return
        ts = rows["ts_ns"].to_numpy(np.int64)
        win = ts - ts % self.window_ns
        key = urllib.parse.quote(point, safe="") if point is not None else NO_POINT
        for w in np.unique(win):
            sub = rows[win == w] if len(np.unique(win)) > 1 else rows
            t = pa.Table.from_pandas(sub[[c.name for c in COLUMNS]], schema=self._schema, preserve_index=False)
            t = t.replace_schema_metadata(self._schema.metadata)
            where = self.tmp / "packets" / f"point={key}" / f"window={int(w)}"
            where.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, where / f"part-{file_index:05d}-{self._parts:05d}.parquet")
            self._parts += 1

    def write_flows(self, file_index: int, flows: pd.DataFrame) -> None:
        """The flow table of one capture file, under flows/."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pcaptools.schema import FLOW_COLUMNS

        schema = arrow_schema(FLOW_COLUMNS, table="flows")
        (self.tmp / "flows").mkdir(exist_ok=True)
        t = pa.Table.from_pandas(flows[[c.name for c in FLOW_COLUMNS]], schema=schema, preserve_index=False)
        pq.write_table(t.replace_schema_metadata(schema.metadata), self.tmp / "flows" / f"part-{file_index:05d}.parquet")

    def close(self, description: dict, *, inventory: str | os.PathLike | None = None) -> Path:
        """Write ``_pcaptools.json`` (``description`` plus files and layout), copy the inventory, move into place."""
        doc = {"format": FORMAT, "layout": "packets/point=<point>/window=<start_ns>/part-<file>-<n>.parquet",
               "window_ns": self.window_ns, **description, "files": self.files}  # fmt: skip
        if inventory is not None:
            shutil.copyfile(inventory, self.tmp / "inventory.json")
        (self.tmp / META).write_text(json.dumps(doc, indent=1) + "\n")
        if self.out.exists():
            shutil.rmtree(self.out) if any(self.out.iterdir()) else self.out.rmdir()
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        """Remove what was written (the destination is untouched)."""
        shutil.rmtree(self.tmp, ignore_errors=True)


def _plain(value):
    """JSON-ready copy of reader metadata (numpy integers become ints)."""
    return json.loads(json.dumps(value, default=int))
