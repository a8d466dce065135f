"""Decode captures into one Parquet or CSV file window by window, so memory stays bounded by a cap.

The file read back equals ``read_packets(paths)`` written whole (``pd.read_parquet``: same rows,
columns, dtypes and categories; CSV: the same text): windows come file after file in record order,
each one Parquet row group (category columns as dictionaries, so the reader's union of them is
the first-seen order ``read_packets`` has), and the reader's accounting (``skipped``, ``notes``,
``stopped_at``, ``interface_stats``) is summed over the windows into the file's pandas attrs, as ``to_parquet`` stores them.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

BASE_BYTES = 160 << 20
"""Memory the interpreter, numpy, pandas and the compiled decoder take before any packet."""
RECORD_BYTES = 2 << 10
"""Memory per record of a decoded window: its bytes, its row and the decoder's temporaries."""


def window_records(memory: int) -> int:
    """Records per decoded window for a memory cap of ``memory`` bytes (at least 1,024)."""
    return max(1024, (memory - BASE_BYTES) // (2 * RECORD_BYTES))


def window_bytes(memory: int) -> int:
    """Capture bytes per read window for a memory cap of ``memory`` bytes: half a window's per-record budget (at least 1 MiB)."""
    return window_records(memory) * (RECORD_BYTES // 2)


@dataclass
class Written:
    """What :func:`write_packets` wrote: rows, rows with a decode error, and the reader's accounting per file."""

    packets: int = 0
    errors: int = 0
    skipped: dict[str, Counter] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped_at: dict[str, dict | None] = field(default_factory=dict)
    interface_stats: dict[str, list] = field(default_factory=dict)  # per file: its last window's (the final) counters

    def add(self, window: pd.DataFrame) -> None:
        """Count one decoded window."""
        self.packets += len(window)
        self.errors += int(window["error"].notna().sum())
        for path, reasons in window.attrs.get("skipped", {}).items():
            self.skipped.setdefault(path, Counter()).update(reasons)
        self.notes.extend(n for n in window.attrs.get("notes", []) if n not in self.notes)
        self.stopped_at.update(window.attrs.get("stopped_at", {}))
        self.interface_stats.update(window.attrs.get("interface_stats", {}))

    def attrs(self) -> dict:
        """The accounting as ``read_packets`` puts it in ``DataFrame.attrs``."""
        return {"skipped": {k: dict(v) for k, v in self.skipped.items()}, "notes": list(self.notes),
                "stopped_at": dict(self.stopped_at), "interface_stats": dict(self.interface_stats)}  # fmt: skip


def write_packets(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    memory: int,
    batch_records: int | None = None,
    **decode_options,  # noqa: ANN003 - read_packets' options (vxlan_ports, max_tunnel_depth...)
) -> Written:
    """Decode ``paths`` into ``out`` (.parquet or .csv) one window at a time, memory bounded by ``memory`` bytes.

    ``batch_records`` overrides the window size derived from ``memory``.
    """
    from pcaptools.packets import iter_packets

    paths = [os.fspath(p) for p in paths]
    out = os.fspath(out)
    records = batch_records or window_records(memory)
    done = Written()
    sink = _ParquetSink(out) if out.endswith(".parquet") else _CsvSink(out)
    try:
        for path in paths:
            for window in iter_packets(path, batch_records=records, **decode_options):
                done.add(window)
                sink.write(window)
        if sink.empty():  # no records at all: the empty table read_packets gives, with its columns
            from pcaptools.packets import read_packets

            whole = read_packets(paths, **decode_options)
            done.add(whole)
            sink.write(whole)
        sink.close(done.attrs())
    except BaseException:
        sink.abort()
        raise
    return done


class _ParquetSink:
    """A ParquetWriter taking packet tables: one row group each, every category a dictionary<int32, string>."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writer = None
        self.schema = None

    def write(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self.writer is None:
            fields = [pa.field(f.name, pa.dictionary(pa.int32(), pa.large_string())) if pa.types.is_dictionary(f.type)
                      else f for f in table.schema]  # fmt: skip
            self.meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"PANDAS_ATTRS"}
            self.schema = pa.schema(fields, metadata=self.meta)
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(table.cast(self.schema), row_group_size=max(1, table.num_rows))

    def empty(self) -> bool:
        return self.writer is None

    def close(self, attrs: dict) -> None:
        pandas_meta = json.loads(self.meta[b"pandas"])  # the accounting of every window, not the first's
        pandas_meta["attributes"] = attrs
        meta = {b"pandas": json.dumps(pandas_meta).encode(), b"PANDAS_ATTRS": json.dumps(attrs).encode()}
        # readers take pandas metadata from the stored Arrow schema: store it again with the final values
        stored = base64.b64encode(self.schema.with_metadata({**self.meta, **meta}).serialize()).decode()
        self.writer.add_key_value_metadata({**{k.decode(): v.decode() for k, v in meta.items()}, "ARROW:schema": stored})
        self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


class _CsvSink:
    """CSV text of packet tables appended one after the other, the header once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.header = True

    def write(self, df: pd.DataFrame) -> None:
        df.to_csv(self.path, index=False, header=self.header, mode="w" if self.header else "a")
        self.header = False

    def empty(self) -> bool:
        return self.header

    def close(self, attrs: dict) -> None:  # noqa: ARG002 - CSV has no place for them
        return

    def abort(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
