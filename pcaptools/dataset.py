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
``stopped_at``, ``interface_stats`` (per pcapng interface its Interface Statistics Block counters or null, as
``read_packets`` puts them in ``attrs``) and each category column's categories in the decoder's order, so the table reads back
equal to ``read_packets`` of the file), ``entries`` (manifest entries of the capture points:
``file`` is a file name of ``files``), ``points`` (name, node, interface, role, pod, file, ifindex,
pcapng_interface), ``inference`` (the evidence of each inferred field and the warnings), ``cni``,
``capture_drops`` (packets each capture reported dropped), ``pcapng_drops`` (the drops and counters of the
captures' pcapng Interface Statistics Blocks, which ``why`` weighs), ``decode`` (the decoder's options) and
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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.errors import FormatError
from pcaptools.schema import PACKET_COLUMNS, PAYLOAD_HASH_COLUMN, Column

META = "_pcaptools.json"
FORMAT = "pcaptools-dataset/1"
DEFAULT_WINDOW_NS = 60 * 10**9
NO_POINT = "__HIVE_DEFAULT_PARTITION__"
SEP = "::"
COLUMNS: tuple[Column, ...] = (*PACKET_COLUMNS, PAYLOAD_HASH_COLUMN)
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


def original_files(inputs: Iterable[str | os.PathLike]) -> dict[str, str]:
    """Where the capture files of the dataset inputs were when converted: ``file`` column value -> absolute path
    (the column keeps the path as given, relative to the directory ``convert`` ran in)."""
    return {f["path"]: f.get("source") or f["path"] for p in inputs if is_dataset(p) for f in read_meta(p)["files"]}


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
    names = {p["name"]: p.get("file") for p in meta["points"]}
    points = None if points is None else list(points)
    if points is not None and not set(points) <= set(names):
        raise DatasetError(f"{d}: no capture point {sorted(set(points) - set(names))[0]!r}; its points are {sorted(names)}", path=d)
    chosen = list(files) if files is not None else known if points is None else [f for f in known if f in {names[p] for p in points}]
    unknown = [f for f in chosen if f not in known]
    if unknown:
        raise DatasetError(f"{d}: holds no capture file {unknown[0]!r}; it holds {known}", path=d)
    wanted = None if points is None else {urllib.parse.quote(p, safe="") for p in points}
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
        frame = _file_frame(d, meta["files"][i], parts, expr, payload_hash)
        if points is None and expr is None and len(frame) != meta["files"][i].get("rows"):
            raise DatasetError(f"{d}: capture {f!r} has {len(frame)} of its {meta['files'][i].get('rows')} rows; "
                               f"Parquet parts are missing, {_FORMAT_HINT}", path=d)  # fmt: skip
        frames.append(frame)
    out = frames[0] if len(frames) == 1 else _stack(frames)
    out.attrs = file_attrs([f for f in meta["files"] if f["path"] in chosen])
    return out


def iter_member(directory: str | os.PathLike, file: str, *, batch_records: int = 1 << 20,
                payload_hash: bool = True) -> Iterator[pd.DataFrame]:  # fmt: skip
    """The packet table of one capture file of a dataset in batches of at most ``batch_records`` rows, in record
    order, concatenating to what ``read_dataset(directory, files=[file])`` gives (the first batch carries its
    ``attrs``). Memory: the parts whose record ranges overlap (one ``convert`` batch at most) at a time.

    Parts are read in the order they were written; a run of them is complete once every later part starts after
    its last record (the Parquet statistics of ``record`` say so without reading the rows)."""
    import pyarrow.parquet as pq

    d = os.fspath(directory)
    meta = read_meta(d)
    known = [f["path"] for f in meta["files"]]
    if file not in known:
        raise DatasetError(f"{d}: holds no capture file {file!r}; it holds {known}", path=d)
    i = known.index(file)
    info = meta["files"][i]
    by_name: dict[str, Path] = {}  # a part linked under several points is read once
    for part in (Path(d) / "packets").glob(f"point=*/window=*/part-{i:05d}-*.parquet"):
        by_name.setdefault(part.name, part)
    names = sorted(by_name, key=lambda n: int(n.rsplit("-", 1)[1].split(".")[0]))
    lo, hi = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64)
    for k, n in enumerate(names):
        try:
            md = pq.ParquetFile(by_name[n]).metadata
            col = md.schema.names.index("record")
            stats = [md.row_group(g).column(col).statistics for g in range(md.num_row_groups)]
            lo[k], hi[k] = min(st.min for st in stats), max(st.max for st in stats)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise DatasetError(f"{d}: a Parquet part of capture {file!r} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                               f"{_FORMAT_HINT}", path=d) from None  # fmt: skip
    later = np.minimum.accumulate(lo[::-1])[::-1]  # the smallest record of this part and every later one
    attrs = file_attrs([info])
    start, top, rows = 0, np.iinfo(np.int64).min, 0
    for k in range(len(names)):
        top = max(top, int(hi[k]))
        if k + 1 < len(names) and top >= later[k + 1]:
            continue
        frame = _file_frame(d, info, [str(by_name[n]) for n in names[start : k + 1]], None, payload_hash)
        start = k + 1
        for at in range(0, len(frame), batch_records):
            batch = frame.iloc[at : at + batch_records].reset_index(drop=True)
            batch.attrs = attrs if rows == 0 else {}
            rows += len(batch)
            yield batch
    if rows == 0 and not info.get("rows"):  # no decodable record: one empty batch still carries the reader's skips
        empty = _file_frame(d, info, [], None, payload_hash)
        empty.attrs = attrs
        yield empty
    if rows != info.get("rows"):
        raise DatasetError(f"{d}: capture {file!r} has {rows} of its {info.get('rows')} rows; Parquet parts are missing, "
                           f"{_FORMAT_HINT}", path=d)  # fmt: skip


def file_attrs(files: list[dict]) -> dict:
    """The ``attrs`` ``read_packets`` gives a table of these files, from their ``_pcaptools.json`` records."""
    return {"skipped": {f["path"]: dict(f.get("skipped") or {}) for f in files},
            "notes": [n for f in files for n in f.get("notes") or []],
            "stopped_at": {f["path"]: f.get("stopped_at") for f in files},
            "interface_stats": {f["path"]: f.get("interface_stats") for f in files}}  # fmt: skip


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
    """Writes a dataset batch by batch into a fresh directory beside ``out``; :meth:`close` moves it into place.

    Batches are staged per capture unit (file, pcapng interface, ifindex) and time window, so a file can
    be written before its capture points are known; :meth:`close` links each unit's parts under every
    point holding it. ``out`` must not exist or be empty; an existing dataset is replaced only with
    ``overwrite``, any other non-empty directory never.
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
        self.files: dict[str, dict] = {}
        self._samples: dict[str, list[pd.DataFrame]] = {}
        self._parts: dict[str, list[tuple[int, int, int, str]]] = {}  # file -> (iface, ifindex, window, part path)
        self._schema = arrow_schema()
        self._count = 0

    def add_batch(self, path: str, batch: pd.DataFrame) -> None:
        """One decoded batch of capture file ``path`` (a file's batches in order, with ``payload_hash``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        info = self.files.setdefault(path, {"path": path, "source": os.path.abspath(path), "records": 0, "rows": 0, "skipped": {}, "notes": [],
                                            "stopped_at": None, "interface_stats": None,
                                            "categories": {c: [] for c in _CATEGORIES}})  # fmt: skip
        i = list(self.files).index(path)
        skipped = batch.attrs.get("skipped", {}).get(path) or {}
        for k, v in skipped.items():
            info["skipped"][k] = info["skipped"].get(k, 0) + int(v)
        info["records"] += len(batch) + sum(int(v) for v in skipped.values())
        info["rows"] += len(batch)
        info["notes"] += list(batch.attrs.get("notes", []))
        info["stopped_at"] = _plain(batch.attrs.get("stopped_at", {}).get(path)) or info["stopped_at"]
        stats = batch.attrs.get("interface_stats", {}).get(path)
        if stats is not None:  # the reader's interfaces as of this batch: the last batch has the file's final counts
            info["interface_stats"] = _plain(stats)
        for c in _CATEGORIES:  # the union in first-seen order, as concatenating the batches gives
            info["categories"][c] = list(dict.fromkeys([*info["categories"][c], *map(str, batch[c].cat.categories)]))
        if not len(batch):
            self._samples.setdefault(path, []).append(batch)
            return
        iface, ifindex = batch["iface"].to_numpy(np.int64), batch["ifindex"].to_numpy(np.int64) + 1
        win = batch["ts_ns"].to_numpy(np.int64) // self.window_ns
        key = ((iface * (int(ifindex.max()) + 1) + ifindex) * (int(win.max() - win.min()) + 1)) + (win - win.min())
        uniq, first, group, count = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        self._samples.setdefault(path, []).append(batch.iloc[np.sort(first)])
        order = np.argsort(group, kind="stable")  # rows of each (interface, ifindex, window), in record order
        for j, end in enumerate(np.cumsum(count).tolist()):
            rows = order[end - int(count[j]) : end]
            sub = batch.iloc[rows] if len(uniq) > 1 else batch
            t = pa.Table.from_pandas(sub[[c.name for c in COLUMNS]], schema=self._schema, preserve_index=False)
            where = self.tmp / "staged" / f"part-{i:05d}-{self._count:05d}.parquet"
            self._count += 1
            where.parent.mkdir(exist_ok=True)
            pq.write_table(t.replace_schema_metadata(self._schema.metadata), where)
            r = int(rows[0])
            unit = (int(iface[r]), int(ifindex[r]) - 1, int(win[r]) * self.window_ns, str(where))
            self._parts.setdefault(path, []).append(unit)

    def sample(self, path: str) -> pd.DataFrame:
        """Rows of ``path`` standing for all: the first of each (pcapng interface, ifindex) in each window."""
        from pcaptools.decode.table import concat

        parts = self._samples[path]
        out = concat(parts) if len(parts) > 1 else parts[0].copy()
        out.attrs = file_attrs([self.files[path]])
        return out

    def file_table(self, path: str) -> pd.DataFrame:
        """The whole table of one written file, read back from its parts (e.g. for its flows)."""
        parts = [p for *_, p in self._parts.get(path, [])]
        return _file_frame(str(self.tmp), self.files[path], parts, None, True)

    def write_flows(self, path: str, flows: pd.DataFrame) -> None:
        """The flow table of one capture file, under flows/."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pcaptools.schema import FLOW_COLUMNS

        schema = arrow_schema(FLOW_COLUMNS, table="flows")
        (self.tmp / "flows").mkdir(exist_ok=True)
        t = pa.Table.from_pandas(flows[[c.name for c in FLOW_COLUMNS]], schema=schema, preserve_index=False)
        i = list(self.files).index(path)
        pq.write_table(t.replace_schema_metadata(schema.metadata), self.tmp / "flows" / f"part-{i:05d}.parquet")

    def close(self, description: dict, points: list, *, inventory: str | os.PathLike | None = None) -> Path:
        """Link each staged part under every capture point holding it (``points``: objects with ``name``,
        ``file``, ``pcapng_interface``, ``ifindex``), write ``_pcaptools.json``, copy the inventory, move into place."""
        for path, parts in self._parts.items():
            mine = [p for p in points if p.file == path]
            for iface, ifindex, w, part in parts:
                held = [p.name for p in mine if p.pcapng_interface in (-1, iface) and p.ifindex in (-1, ifindex)]
                for key in [urllib.parse.quote(n, safe="") for n in held] or [NO_POINT]:
                    where = self.tmp / "packets" / f"point={key}" / f"window={w}"
                    where.mkdir(parents=True, exist_ok=True)
                    os.link(part, where / Path(part).name)
        shutil.rmtree(self.tmp / "staged", ignore_errors=True)
        doc = {"schema_version": 1, "format": FORMAT, "layout": "packets/point=<point>/window=<start_ns>/part-<file>-<n>.parquet",
               "window_ns": self.window_ns, **description, "files": list(self.files.values())}  # fmt: skip
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
