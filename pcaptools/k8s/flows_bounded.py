"""The client-side flows a streamed ``paths`` run joins to its connections, spilled to disk and read back a bucket of
connections at a time: what :func:`~pcaptools.k8s.paths._with_flows` joins of them (:data:`~pcaptools.k8s.paths._FLOW_JOINED`,
the first flow by time of each key :data:`FLOW_KEY`), with nothing held per flow or per connection.

A connection's flow key is its first packet's (file, protocol, source, source port, destination, destination port):
a hops row of that connection, in the bucket the spill pass writes it to. So the flows are sent to the buckets that
may ask for them before any bucket is built, an external hash join in three steps (:class:`ClientFlows`):

1. :meth:`~ClientFlows.add_file`: each capture file's flows, a group of key buckets at a time
   (:func:`pcaptools.flow_stream.iter_flows`, which spills the file's packets by key and holds one window and one
   group), of the joined columns only, appended to a spill file as arrays: addresses and file names as codes into the
   run's dictionaries, with a 64-bit hash of the key (text hashed by value, so a hops row's key hashes alike).
2. :meth:`~ClientFlows.tag` (called by the hops spill pass with each row's bucket): every labelled hops row's key
   hashed the same way; each row group's distinct (hash, bucket) pairs appended to a tags file.
3. :meth:`~ClientFlows.assign`: flows and tags partitioned by hash into as many files as make one partition fit
   :data:`SHARE` of the budget (one when they all fit); per partition, the flows of each key (a key's flows hash alike:
   one partition holds them all) reduced to the first by time (of two at the same time, the first in the file's flow
   table), as ``_with_flows``' stable ``sort_values("first_ts_ns").drop_duplicates(key)`` keeps it in memory, and
   matched to the tags by hash; each bucket's matched flows appended to a file of its own.

:meth:`~ClientFlows.of_bucket` reads a bucket's file back when its build asks for its connections' keys and gives
the rows of those keys, compared exactly (a hash collision only sends a flow to a bucket that drops it).

Memory: kept for the run, the dictionaries of file names and addresses (an entry per distinct address, not per flow)
and counts: 690 bytes on gen_set.py's 29,288-connection set (119,041 flows in 4 files), where the lookup this replaces
held 12.9 MiB (460 bytes a connection, 119 a flow key: the joined columns, their MultiIndex and its hash table) and the
concatenated flow tables (about 280 bytes a flow) while it was made. Transient: while a file's flows are computed,
:func:`~pcaptools.flow_stream.iter_flows`' window and group, sized from the budget, and one group's flows (86 MiB
traced there under ``--memory 300MiB``; 101 before, with the tables' concatenation and the lookup: only the joined
columns are computed now); while a row group is
spilled, its rows' tags; while assigned, one partition (about :data:`ROW_BYTES` a flow and :data:`TAG_BYTES` a tag
by design; 16 MiB traced at the peak, of two partitions there); while a bucket is built, its flows (at most one per
distinct key of its hops rows, about 90 bytes each: 1.5 MiB at most there). Limits: a group of
:func:`~pcaptools.flow_stream.iter_flows` holds whole flows (one flow of more packets than the budget allows is read
whole); past :data:`MAX_PARTITIONS` partitions (about 150 million flows under 300 MiB) a partition outgrows its share.
Disk: about 90 bytes a flow twice (the spill, the buckets' files; a flow whose key lies in several buckets once in
each) and 16 bytes a distinct (key, bucket) tag per row group.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pcaptools.correlate.fingerprint import combine
from pcaptools.schema import FLOW_COLUMNS, FLOW_STATES

FLOW_KEY = ("file", "proto", "orig_h", "orig_p", "resp_h", "resp_p")
"""A connection's client-side flow key, as :func:`~pcaptools.k8s.paths._with_flows` joins it."""

_TEXT = ("file", "orig_h", "resp_h")
"""Key columns of text: held as codes into the run's dictionaries (:attr:`ClientFlows.files`, :attr:`~ClientFlows.addresses`)."""

_VALUES = ("state", "orig_bytes", "resp_bytes", "handshake_ns", "retransmissions", "first_ts_ns")
"""The joined columns (:data:`~pcaptools.k8s.paths._FLOW_JOINED`) and the first packet's time that picks a key's flow."""

_DTYPES = {c.name: c.dtype for c in FLOW_COLUMNS}

SHARE = 0.125
"""Share of the budget one partition of flows and tags may take while it is assigned to the buckets."""

ROW_BYTES = 250
"""Bytes a flow takes while its partition is assigned (its arrays, about 90 bytes, their sort orders and copies)."""

TAG_BYTES = 48
"""Bytes a (hash, bucket) tag takes while its partition is assigned (16 bytes, its sort and match arrays)."""

BUFFER_TAGS = 1 << 17
"""Tags held before they are appended to the tags file (2 MiB)."""

MAX_PARTITIONS = 1024
"""At most this many partitions (files opened and appended to a chunk at a time)."""


def text_hashes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of each value's text, whether it has one) of a text column, each distinct value hashed once: the
    same hash for the same text in any table (a flow's address and a hops row's)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, names = col.cat.codes.to_numpy(np.int64), col.cat.categories
    else:
        codes, names = pd.factorize(col)
    named = (
        pd.util.hash_array(np.asarray(names.astype(str), dtype=object))
        if len(names)
        else np.zeros(0, np.uint64)
    )
    ok = codes >= 0
    return np.where(ok, np.append(named, np.uint64(0))[codes], np.uint64(0)), ok


def key_hashes(
    file: pd.Series,
    proto: pd.Series,
    orig_h: pd.Series,
    orig_p: pd.Series,
    resp_h: pd.Series,
    resp_p: pd.Series,
) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of each row's flow key, whether the row has one: a file and both addresses)."""
    (fh, fok), (ah, aok), (bh, bok) = text_hashes(file), text_hashes(orig_h), text_hashes(resp_h)
    h = combine(
        [fh, np.asarray(proto, np.int64), ah, np.asarray(orig_p, np.int64), bh, np.asarray(resp_p, np.int64)]
    )
    return h, fok & aok & bok


def matches(sorted_hashes: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``hashes``, index into ``sorted_hashes``) of every pair of equal hashes: the runs of equal values
    found by ``searchsorted`` and expanded (a run longer than one is a collision or a repeated key)."""
    lo = np.searchsorted(sorted_hashes, hashes, side="left")
    n = np.searchsorted(sorted_hashes, hashes, side="right") - lo
    which = np.repeat(np.arange(len(hashes)), n)
    starts = np.cumsum(n) - n
    return which, lo[which] + np.arange(len(which)) - starts[which]


def _append(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Append one chunk of column arrays to a spill file (a pickle per chunk, read back by :func:`_chunks`)."""
    with open(path, "ab") as fh:
        pickle.dump(arrays, fh, protocol=5)


def _chunks(path: Path) -> Iterator[dict[str, np.ndarray]]:
    """The chunks :func:`_append` wrote to ``path`` (none if it does not exist)."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        while True:
            try:
                yield pickle.load(fh)  # noqa: S301 - our own private spill file
            except EOFError:
                return


def _concat(
    chunks: Iterator[dict[str, np.ndarray]], names: tuple[str, ...], dtypes: dict
) -> dict[str, np.ndarray]:
    """The chunks' columns ``names`` each as one array (empty ones of ``dtypes`` when there is no chunk)."""
    parts = list(chunks)
    return {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0, dtypes[c]) for c in names}


def _take(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {c: a[rows] for c, a in arrays.items()}


def partition_count(need: int, memory: int) -> int:
    """Partitions that make ``need`` bytes fit :data:`SHARE` of ``memory`` a partition (at most :data:`MAX_PARTITIONS`)."""
    return int(min(MAX_PARTITIONS, max(1, -(-int(need) // max(int(memory * SHARE), 1)))))


def partitioned(
    dir: Path,  # noqa: A002 - the spill's directory
    names: dict[str, tuple[str, ...]],
    dtypes: dict,
    partitions: int,
    key: str,
) -> Iterator[tuple[dict[str, np.ndarray], ...]]:
    """The columns ``names[kind]`` of each spill file ``kind`` under ``dir`` (in ``names``' order), a partition at a
    time: rows whose ``key`` (an unsigned hash or a non-negative int) is equal modulo ``partitions`` lie in one
    partition, in spill order. With one partition the files are read whole; else each is split first into a file per
    partition (a pass each, the file removed), and each partition's files are removed once it has been given."""
    if partitions == 1:
        yield tuple(_concat(_chunks(dir / k), names[k], dtypes) for k in names)
        return
    for kind in names:
        for chunk in _chunks(dir / kind):
            part = (chunk[key] % chunk[key].dtype.type(partitions)).astype(np.int64)
            o = np.argsort(part, kind="stable")  # spill order kept within a partition
            cuts = np.searchsorted(part[o], np.arange(partitions + 1))
            for p in np.flatnonzero(np.diff(cuts)):
                _append(dir / f"{kind}-{p}", _take(chunk, o[cuts[p] : cuts[p + 1]]))
        (dir / kind).unlink(missing_ok=True)
    for p in range(partitions):
        yield tuple(_concat(_chunks(dir / f"{k}-{p}"), names[k], dtypes) for k in names)
        for k in names:
            (dir / f"{k}-{p}").unlink(missing_ok=True)


def append_buckets(dir: Path, b: np.ndarray, at: np.ndarray, arrays: dict[str, np.ndarray]) -> None:  # noqa: A002
    """Append rows ``at`` of ``arrays`` to the file ``bucket-B`` under ``dir`` of their bucket ``b`` (``b`` sorted,
    one entry per entry of ``at``), a chunk per bucket."""
    cuts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    for lo, hi in zip(cuts, np.r_[cuts[1:], len(b)], strict=True):
        _append(dir / f"bucket-{int(b[lo])}", {c: a[at[lo:hi]] for c, a in arrays.items()})


class ClientFlows:
    """The client-side flows of a streamed run's capture files, spilled under ``tmp`` and assigned to the buckets of
    connections that may join them (module doc). ``memory``: the run's budget (sizes the partitions)."""

    _COLUMNS = ("hash", "seq", *FLOW_KEY, *_VALUES)
    _ARRAY_DTYPES = {
        **{
            c: np.dtype(_DTYPES[c]) for c in FLOW_KEY + _VALUES if _DTYPES[c] != "category"
        },  # the flow table's
        **dict.fromkeys(_TEXT, np.dtype(np.int32)),  # codes into the run's dictionaries
        "state": np.dtype(np.int8),  # code in FLOW_STATES
        "hash": np.dtype(np.uint64),
        "seq": np.dtype(np.int64),  # spill order: a tie on time goes to the first flow
        "bucket": np.dtype(np.int64),
    }

    def __init__(self, tmp: str | os.PathLike, memory: int) -> None:
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.memory = int(memory)
        self.files = pd.Index([], dtype=object)  # file names in flows: what "file" codes
        self.addresses = pd.Index([], dtype=object)  # addresses in flows: what "orig_h", "resp_h" code
        self.flows = 0  # flows spilled
        self.tags = 0  # tags spilled
        self.partitions = 0  # chosen by assign
        self._held: list[dict[str, np.ndarray]] = []  # tags not written yet
        self._held_rows = 0

    # 1. the flows

    def add_file(self, path: str | os.PathLike, *, memory: int | None = None) -> None:
        """Spill the joined columns of one capture file's flows (:func:`~pcaptools.flow_stream.iter_flows` within
        ``memory``, the run's budget by default), a group of whole flow keys at a time."""
        from pcaptools.flow_stream import iter_flows
        from pcaptools.k8s.paths import _FLOW_JOINED

        for part in iter_flows(path, memory=self.memory if memory is None else memory, columns=_FLOW_JOINED):
            self.add_flows(part)

    def add_flows(self, part: pd.DataFrame) -> None:
        """Spill a flow table (of at least :data:`FLOW_KEY` and the joined columns) in its row order: a key's
        first flow by time is then the first in spill order among those of the least time."""
        if not len(part):
            return
        h, ok = key_hashes(
            part["file"], part["proto"], part["orig_h"], part["orig_p"], part["resp_h"], part["resp_p"]
        )
        rows = np.flatnonzero(ok)
        arrays = {"hash": h[rows], "seq": np.arange(self.flows, self.flows + len(rows), dtype=np.int64)}
        self.flows += len(rows)
        for c in FLOW_KEY + _VALUES:
            col = part[c]
            if c in _TEXT:
                arrays[c] = self._codes(col, "files" if c == "file" else "addresses")[rows]
            elif c == "state":
                arrays[c] = pd.Categorical(col, categories=list(FLOW_STATES)).codes.astype(np.int8)[rows]
            else:
                arrays[c] = col.to_numpy(self._ARRAY_DTYPES[c])[rows]
        _append(self.dir / "flows", arrays)

    def _codes(self, col: pd.Series, vocab: str) -> np.ndarray:
        """Codes of a text column's values in dictionary ``vocab`` (``files`` or ``addresses``), new values appended."""
        cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
        names = pd.Index(np.asarray(cat.cat.categories.astype(str), dtype=object))
        known: pd.Index = getattr(self, vocab)
        at = known.get_indexer(names)
        if (at < 0).any():
            known = known.append(names[at < 0])
            setattr(self, vocab, known)
            at = known.get_indexer(names)
        return np.append(at, -1).astype(np.int32)[cat.cat.codes.to_numpy(np.int64)]

    # 2. the tags

    def tag(self, hops, bucket: np.ndarray) -> None:
        """Note that bucket ``bucket[i]`` may ask for the flow of hops row ``i``'s key (rows of bucket -1 ignored):
        ``hops`` an Arrow table or DataFrame of hops rows (file, proto, src, sport, dst, dport)."""
        cols = ["file", "proto", "src", "sport", "dst", "dport"]
        t = hops.loc[:, cols] if isinstance(hops, pd.DataFrame) else hops.select(cols).to_pandas()
        h, ok = key_hashes(t["file"], t["proto"], t["src"], t["sport"], t["dst"], t["dport"])
        ok &= (np.asarray(bucket) >= 0) & (t["proto"].to_numpy(np.int64) >= 0)
        h, b = h[ok], np.asarray(bucket, np.int64)[ok]
        o = np.lexsort((b, h))
        h, b = h[o], b[o]
        first = np.r_[True, (h[1:] != h[:-1]) | (b[1:] != b[:-1])] if len(h) else np.zeros(0, bool)
        self._held.append({"hash": h[first], "bucket": b[first]})
        self._held_rows += int(first.sum())
        if self._held_rows >= BUFFER_TAGS:
            self._write_tags()

    def _write_tags(self) -> None:
        if self._held_rows:
            _append(
                self.dir / "tags", {c: np.concatenate([x[c] for x in self._held]) for c in ("hash", "bucket")}
            )
            self.tags += self._held_rows
        self._held, self._held_rows = [], 0

    # 3. the assignment

    def assign(self, *, partitions: int | None = None) -> None:
        """Send each bucket the first flow of every key its tags name (module doc), through ``partitions`` hash
        partitions (default: as many as make one fit :data:`SHARE` of the budget). Once every row is tagged."""
        self._write_tags()
        if partitions is None:
            partitions = partition_count(self.flows * ROW_BYTES + self.tags * TAG_BYTES, self.memory)
        self.partitions = int(partitions)
        for flows, tags in self._partitions():
            self._assign_partition(flows, tags)

    def _partitions(self) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(flows, tags) of each hash partition (:func:`partitioned`)."""
        return partitioned(self.dir, {"flows": self._COLUMNS, "tags": ("hash", "bucket")}, self._ARRAY_DTYPES,
                           self.partitions, "hash")  # fmt: skip

    def _assign_partition(self, flows: dict[str, np.ndarray], tags: dict[str, np.ndarray]) -> None:
        """One partition's first flow per key matched to its tags; each bucket's flows appended to its file."""
        if not len(flows["hash"]) or not len(tags["hash"]):
            return
        flows = _take(flows, first_per_key(flows))
        o = np.argsort(flows["hash"], kind="stable")
        flows = _take(flows, o)
        del o
        which, at = matches(flows["hash"], tags["hash"])
        b = tags["bucket"][which]
        o = np.lexsort((at, b))  # by bucket, then the partition's order
        b, at = b[o], at[o]
        if not len(b):  # no tagged key has a flow here (e.g. flows without ports, or none of a bucket's keys)
            return
        append_buckets(self.dir, b, at, {c: a for c, a in flows.items() if c != "seq"})

    # the lookup

    def of_bucket(self, b: int):
        """The lookup bucket ``b``'s build is given as ``flows`` (:func:`~pcaptools.k8s.paths._with_flows`): a function
        of the connections' keys (columns :data:`FLOW_KEY`) giving their flows' rows, read from the bucket's file
        when called (None when no flow was spilled)."""
        if not self.flows:
            return None
        return lambda wanted: self.rows_of(b, wanted)

    def rows_of(self, b: int, wanted: pd.DataFrame) -> pd.DataFrame:
        """The flow rows (:data:`FLOW_KEY`, the joined columns, ``first_ts_ns``; the flow table's dtypes, text as
        categories) of ``wanted``'s keys among bucket ``b``'s, one per key, by key hash."""
        f = _concat(
            _chunks(self.dir / f"bucket-{b}"),
            tuple(c for c in self._COLUMNS if c != "seq"),
            self._ARRAY_DTYPES,
        )
        f = _take(
            f, np.argsort(f["hash"], kind="stable")
        )  # each partition's chunk is sorted, not their sequence
        h, ok = key_hashes(
            wanted["file"],
            wanted["proto"],
            wanted["orig_h"],
            wanted["orig_p"],
            wanted["resp_h"],
            wanted["resp_p"],
        )
        which, at = matches(f["hash"], h[ok])
        w = np.flatnonzero(ok)[which]
        same = np.ones(len(at), bool)
        for c in FLOW_KEY:  # exactly the key asked for (a hash collision matches another)
            want = wanted[c].astype(str) if c in _TEXT else wanted[c]
            if c in _TEXT:
                vocab = self.files if c == "file" else self.addresses
                codes = vocab.get_indexer(pd.Index(np.asarray(want, dtype=object)))
            else:
                codes = want.to_numpy(np.int64)
            same &= codes[w] == f[c][at].astype(np.int64)
        return self._table(_take(f, np.unique(at[same])))

    def _table(self, f: dict[str, np.ndarray]) -> pd.DataFrame:
        """Flow rows from their arrays: text columns as categories of the run's dictionaries, dtypes the flow table's."""
        cols = {}
        for c in (*FLOW_KEY, *_VALUES):
            if c in _TEXT:
                cols[c] = pd.Categorical.from_codes(
                    f[c], categories=self.files if c == "file" else self.addresses, validate=False
                )
            elif c == "state":
                cols[c] = pd.Categorical.from_codes(f[c], categories=list(FLOW_STATES), validate=False)
            else:
                cols[c] = f[c]
        return pd.DataFrame(cols, copy=False)


def first_per_key(flows: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of the first flow of each key (:data:`FLOW_KEY`) by ``first_ts_ns``, ties by spill order (``seq``)."""
    if not len(flows["seq"]):
        return np.zeros(0, np.int64)
    o = np.lexsort([flows[c] for c in ("seq", "first_ts_ns", *reversed(FLOW_KEY))])
    new = np.zeros(len(o), bool)
    new[0] = True
    for c in FLOW_KEY:
        k = flows[c][o]
        new[1:] |= k[1:] != k[:-1]
    return np.sort(o[new])
