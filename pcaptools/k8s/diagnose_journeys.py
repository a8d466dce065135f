"""A diagnosis's journeys as columns: one row per journey, its sightings as a slice of per-sighting arrays.

:class:`JourneyTable` holds what :mod:`pcaptools.k8s.diagnose` reads of each journey (connection, direction, first
and last sighting, the tuple where it was last seen, TCP flags, sizes, sequence numbers, the capture points and
nodes it crossed as bit sets) so that the per-journey work of a diagnosis (which expected points a journey missed,
retransmission groups, the timeline) is array operations over every connection at once; Python objects are made
only for the journeys a printed loss names. Limits: none beyond the hops table's; a journey's point and node sets
take one 64-bit word per 64 distinct points (nodes) of the group of connections diagnosed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pcaptools.fmt import PROTO_NAMES
from pcaptools.labels import as_strings

FORWARD, REVERSE = 0, 1
"""Direction codes of :attr:`JourneyTable.dir` (-1: neither)."""

_FLAG_NAMES = ((0x04, "RST"), (0x02, "SYN"), (0x01, "FIN"), (0x08, "PSH"), (0x10, "ACK"))
_M32 = 0xFFFFFFFF


def flag_text(f: int) -> str:
    """TCP flags for people (``SYN-ACK``), ``""`` for a packet without TCP flags (-1)."""
    if f < 0:
        return ""
    names = [n for bit, n in _FLAG_NAMES if f & bit]
    return "-".join(names) if names else "TCP"


def take_int(col: pd.Series, rows: np.ndarray) -> np.ndarray:
    """``col.to_numpy(np.int64)[rows]``, converting only the rows taken when the column is a numpy one."""
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iub":
        return col.to_numpy()[rows].astype(np.int64)
    return col.to_numpy(np.int64)[rows]


def _find(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``keys``, found) of each of ``q`` (``keys`` ascending and unique, both ints): by a table of the
    keys' range when it is small (journey ids), else by bisection."""
    top = max(int(keys[-1]), int(q.max())) if len(q) else 0
    if len(q) and int(keys[0]) >= 0 and int(q.min()) >= 0 and top <= 4 * (len(keys) + len(q)) + (1 << 20):
        pos = np.full(top + 1, -1, np.int64)
        pos[keys] = np.arange(len(keys), dtype=np.int64)
        at = pos[q]
        return np.maximum(at, 0), at >= 0
    at = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
    return at, keys[at] == q


def _bitsets(codes: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Per slice of ``codes`` starting at ``starts`` (non-empty, contiguous, covering ``codes``): the set of its codes
    (>= 0) as bits, one uint64 word per 64 codes (``n`` codes): shape (slices, words)."""
    words = max(1, -(-n // 64))
    out = np.zeros((len(starts), words), np.uint64)
    if not len(starts):
        return out
    one = np.left_shift(np.uint64(1), (np.arange(words * 64) % 64).astype(np.uint64))
    for w in range(words):
        lut = np.zeros(words * 64 + 1, np.uint64)  # code -> its bit in word w (the last entry: code -1, none)
        lut[w * 64:(w + 1) * 64] = one[w * 64:(w + 1) * 64]
        out[:, w] = np.bitwise_or.reduceat(lut[codes], starts)
    return out


class JourneyTable:
    """The journeys of a hops table in causal order (grouped by journey, as
    :func:`pcaptools.k8s.paths.paths_detail` gives), in order of their first sighting's corrected time (ties in table
    order), with the TCP numbers of :class:`pcaptools.k8s.diagnose.PacketEvidence`. Row ``i`` of every per-journey
    array is journey ``i``; its sightings are rows ``s[i]:e[i]`` of :attr:`pt`, :attr:`nd` and :attr:`ts`.

    The table may come as pieces of whole journeys in table order (a streamed bucket's detail files): each piece is
    reduced to its journeys' columns and its sightings' codes as it comes (:class:`_Pieces`), so the hops of a
    connection larger than a piece are never held whole; the result is the one table's."""

    def __init__(self, h: pd.DataFrame | Iterable[pd.DataFrame], ev) -> None:  # noqa: ANN001 - a PacketEvidence
        acc = _Pieces()
        for piece in [h] if isinstance(h, pd.DataFrame) else h:
            acc.add(piece)
        acc.finish(self, ev)

    # --- one journey, for what is printed ---------------------------------------------------------------------
    def points(self, i: int) -> list[str]:
        return self.point_names[self.pt[self.s[i]:self.e[i]]].tolist()

    def nodes(self, i: int) -> list[str]:
        return self.node_names[self.nd[self.s[i]:self.e[i]]].tolist()

    def dst(self, i: int) -> str:
        return self.dst_names[self.dst_c[i]]

    def src(self, i: int) -> str:
        return self.src_names[self.src_c[i]]

    def point_code(self, name: str | None) -> int:
        """Code of a point name (-2 for None or a point not in the table: matches no sighting)."""
        if name is None:
            return -2
        if self._point_codes is None:  # name -> its first code, made once
            self._point_codes = {}
            for i, x in enumerate(self.point_names[:-1].tolist()):
                self._point_codes.setdefault(x, i)
        return self._point_codes.get(name, -2)

    def is_addr(self, col: str, idx: np.ndarray, name: str) -> np.ndarray:
        """Per journey of ``idx``: whether its last sighting's ``col`` ('src' or 'dst') is ``name`` (compared as
        ``{col}_names[{col}_c[idx]] == name`` is, by code)."""
        names = self.src_names if col == "src" else self.dst_names
        return (names == name)[self.src_c[idx] if col == "src" else self.dst_c[idx]]

    def addr_codes(self, col: str) -> tuple[np.ndarray, dict]:
        """(per code of ``col`` ('src' or 'dst'), the first code with its name; name -> that code): equal names, equal
        codes (the trailing 'nan' of a missing one too, code -1 indexing it)."""
        names = (self.src_names if col == "src" else self.dst_names).tolist()
        first: dict = {}
        for i, x in enumerate(names):
            first.setdefault(x, i)
        return np.array([first[x] for x in names], np.int64), first

    def has_point(self, idx: np.ndarray, code: int) -> np.ndarray:
        """Whether each journey of ``idx`` was seen at point ``code``."""
        if code < 0:
            return np.zeros(len(idx), bool)
        return (self.point_set[idx, code // 64] >> np.uint64(code % 64)) & np.uint64(1) != 0

    def node_names_of(self, idx: np.ndarray) -> set:
        """The nodes any journey of ``idx`` was seen on."""
        if not len(idx):
            return set()
        acc = np.bitwise_or.reduce(self.node_set[idx], axis=0)
        out = set()
        for w, word in enumerate(acc.tolist()):
            while word:
                b = (word & -word).bit_length() - 1
                out.add(self.node_names[w * 64 + b])
                word &= word - 1
        return out

    def what(self, idx: np.ndarray) -> str:
        """The kinds of packet of ``idx`` for people: ``SYN/ACK``, at most three then ``...``."""
        names = list(dict.fromkeys(flag_text(f) or PROTO_NAMES.get(0, "packet") for f in dict.fromkeys(self.flags[idx].tolist())))
        names = [x for x in names if x] or ["packet"]
        return "/".join(names[:3]) + (" ..." if len(names) > 3 else "")


class _Vocab:
    """The names of a label column over pieces (a string per value, in order of first piece), each piece's codes
    recoded to them; a missing value keeps code -1 (the last of :meth:`names`)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def codes(self, col: pd.Series, factorize: bool) -> np.ndarray:
        """Codes of ``col`` in the names so far (new ones appended): a category's ``str``; a column of values its
        ``str`` per value (``factorize``: missing ones read ``'nan'``) or per distinct non-missing value."""
        if isinstance(col.dtype, pd.CategoricalDtype):
            local, names = np.asarray(col.cat.codes, np.int64), [str(x) for x in col.cat.categories]
        elif factorize:
            local, uniq = pd.factorize(as_strings(col))
            local, names = local.astype(np.int64), list(uniq)
        else:
            cat = pd.Categorical(col)
            local, names = np.asarray(cat.codes, np.int64), [str(x) for x in cat.categories]
        remap = np.array([self.index.setdefault(x, len(self.index)) for x in names] + [-1], np.int64)
        return remap[local]  # code -1 takes the trailing -1

    def names(self, missing) -> np.ndarray:  # noqa: ANN001 - what a missing value (code -1) reads as
        return np.array([*self.index, missing], dtype=object)


_JOURNEY_COLUMNS = ("jid", "conn", "dir", "src_c", "dst_c", "dport", "flags", "size", "last_size", "fp", "tun")


class _Pieces:
    """A :class:`JourneyTable` gathered a piece of whole journeys at a time: per piece its sightings' point, node and
    time in journey order (24 bytes a sighting) and its journeys' columns in order of first row (what the table
    reads at a journey's first or last sighting), label columns coded in names shared by every piece."""

    def __init__(self) -> None:
        self.point, self.node, self.src, self.dst = _Vocab(), _Vocab(), _Vocab(), _Vocab()
        self.sightings: dict[str, list[np.ndarray]] = {"pt": [], "nd": [], "ts": [], "start": [], "k": []}
        self.journeys: dict[str, list[np.ndarray]] = {c: [] for c in _JOURNEY_COLUMNS}
        self.rows = self.count = 0

    def add(self, h: pd.DataFrame) -> None:
        """One piece (its journeys in no other piece)."""
        n = len(h)
        if not n:
            return
        j = h["journey"].to_numpy(np.int64)
        o = np.argsort(j, kind="stable")
        jo = j[o]
        start = np.flatnonzero(np.r_[True, jo[1:] != jo[:-1]])
        end = np.r_[start[1:], n].astype(np.int64)
        k = np.argsort(o[start], kind="stable")  # in order of first sighting in the table
        a, last = o[start[k]], o[end[k] - 1]
        dcode, dnames = pd.factorize(h["direction"])
        dmap = np.array([FORWARD if str(x) == "forward" else REVERSE if str(x) == "reverse" else -1 for x in dnames] + [-1], np.int64)
        size = h["wirelen"]
        cols = {"jid": j[a], "conn": h["connection"].to_numpy(np.int64)[a], "dir": dmap[dcode[a]],
                "src_c": self.src.codes(h["src"], False)[last], "dst_c": self.dst.codes(h["dst"], False)[last],
                "dport": take_int(h["dport"], last), "flags": take_int(h["tcp_flags"], a),
                "size": take_int(size, a), "last_size": take_int(size, last), "fp": h["fingerprint"].to_numpy(np.uint64)[a],
                "tun": h["tunnel"].notna().to_numpy()[last]}  # fmt: skip
        for c in _JOURNEY_COLUMNS:
            self.journeys[c].append(cols[c])
        sg = self.sightings
        sg["pt"].append(self.point.codes(h["point"], True)[o])
        sg["nd"].append(self.node.codes(h["node"], True)[o])
        sg["ts"].append(h["ts_corrected_ns"].to_numpy(np.int64)[o])
        sg["start"].append(start + self.rows)
        sg["k"].append(k + self.count)
        self.rows += n
        self.count += len(start)

    def finish(self, t: JourneyTable, ev) -> None:  # noqa: ANN001 - a PacketEvidence
        """Fill ``t``: journeys in time order (ties in table order), per-journey values of every piece's; each column's
        pieces are joined and dropped in turn (never every column twice)."""
        start, k = self._joined(self.sightings, "start"), self._joined(self.sightings, "k")
        t.ts = self._joined(self.sightings, "ts")
        end = np.r_[start[1:], self.rows].astype(np.int64)
        order = np.argsort(t.ts[start[k]], kind="stable")  # then by time (stable)
        k = k[order]
        t.s, t.e = start[k], end[k]
        del end
        t.n = len(k)
        for c in _JOURNEY_COLUMNS:
            setattr(t, c, self._joined(self.journeys, c, {"fp": np.uint64, "tun": bool}.get(c, np.int64))[order])
        del order
        t.pt, t.nd = self._joined(self.sightings, "pt"), self._joined(self.sightings, "nd")
        t.point_names, t.node_names = self.point.names(np.nan), self.node.names(np.nan)
        t.src_names, t.dst_names = self.src.names("nan"), self.dst.names("nan")
        t.ts0, t.tsl = t.ts[t.s], t.ts[t.e - 1] if t.n else np.zeros(0, np.int64)
        t.npts = t.e - t.s
        t.first_pt, t.last_pt = t.pt[t.s], t.pt[t.e - 1] if t.n else np.zeros(0, np.int64)
        t.seq = np.full(t.n, -1, np.int64)
        t.ack = np.full(t.n, -1, np.int64)
        t.plen = np.full(t.n, -1, np.int64)
        sj, sv = ev._sj, ev._sv
        if len(sj) and t.n:
            at, hit = _find(sj, t.jid)
            t.seq[hit], t.ack[hit], t.plen[hit] = sv[at[hit], 0], sv[at[hit], 1], sv[at[hit], 2]
        syn = (t.flags >= 0) & (t.flags & 0x02 != 0)
        fin = (t.flags >= 0) & (t.flags & 0x01 != 0)
        t.seglen = np.maximum(t.plen, 0) + syn + fin  # sequence space: payload, plus one for SYN and for FIN
        t.point_set = _bitsets(t.pt, start, len(t.point_names) - 1)[k]  # journey i's starts at start[k[i]]
        t.node_set = _bitsets(t.nd, start, len(t.node_names) - 1)[k]
        t._point_codes = None

    @staticmethod
    def _joined(parts: dict[str, list[np.ndarray]], c: str, dtype=np.int64) -> np.ndarray:  # noqa: ANN001
        """Column ``c``'s pieces as one array, taken out of ``parts`` (so they go once it is made)."""
        got = parts.pop(c)
        return np.concatenate(got) if got else np.zeros(0, dtype)


def sequence_ids(t: JourneyTable, idx: np.ndarray) -> np.ndarray:
    """Per journey of ``idx``: an id of its sequence of points (equal sequences, equal ids), one hash pass per position."""
    if not len(idx):
        return np.zeros(0, np.int64)
    base = len(t.point_names) + 1
    if base ** int(t.npts.max()) < 2**62:  # a sequence as one number, its codes (1 to base - 1) the digits
        pos = np.arange(len(t.pt), dtype=np.int64)
        start = np.zeros(len(t.pt), bool)
        start[t.s] = True
        pos -= np.maximum.accumulate(np.where(start, pos, 0))  # each sighting's place in its journey
        digits = (t.pt + 2) * base ** pos
        acc = np.zeros(len(t.pt) + 1, np.int64)
        np.cumsum(digits, out=acc[1:])  # (wraps past 2^63; a difference of two is a journey's exact sum)
        return pd.factorize((acc[t.e] - acc[t.s])[idx])[0].astype(np.int64)
    npts = t.npts[idx]
    ids = np.zeros(len(idx), np.int64)
    base = len(t.point_names) + 1
    for k in range(int(npts.max())):
        code = np.where(k < npts, t.pt[np.minimum(t.s[idx] + k, len(t.pt) - 1)] + 2, 0)  # 0: ended, 1: missing point
        ids = pd.factorize(ids * base + code)[0].astype(np.int64)  # ids < len(idx): no overflow
    return ids


class Acks:
    """Whether the receiver of a TCP segment of ``js`` acknowledged it later (an ACK in ``other`` at or beyond its last
    byte) while no other copy of its first byte was seen getting through before that ACK (a retransmission may have
    carried it). A pure ACK carries no byte to acknowledge: never. ``js`` and ``other`` are journeys in time order (of
    first sighting); ACKs are found by time and overlapping segments by sequence number."""

    def __init__(self, t: JourneyTable, js: np.ndarray, other: np.ndarray) -> None:
        self.t = t
        of = t.flags[other]
        acks = other[(t.ack[other] >= 0) & (of >= 0) & (of & 0x10 != 0)]
        self.ack_ts, self.ack_no, self.ack_ts0 = t.ts0[acks], t.ack[acks], t.ts0[acks]
        segs = js[(t.seq[js] >= 0) & (t.seglen[js] > 0)]
        self.segs = segs[np.argsort(t.seq[segs], kind="stable")]  # by sequence number
        self.seqs = t.seq[self.segs]
        self.longest = int(t.seglen[self.segs].max()) if len(self.segs) else 0

    def acked(self, i: int, lost: np.ndarray) -> bool:
        """Whether journey ``i`` arrived by its receiver's word (``lost``: per journey of the table, lost or not)."""
        t = self.t
        n = int(t.seglen[i])
        f, q = int(t.flags[i]), int(t.seq[i])
        if q < 0 or f < 0 or f & 0x04 or n == 0:
            return False
        end = (q + n) & _M32
        at = int(np.searchsorted(self.ack_ts, t.tsl[i], side="right"))  # the first ACK after the segment's last sighting
        beyond = ((self.ack_no[at:] - end) & _M32) < 0x80000000
        if not beyond.any():
            return False
        k_ts = self.ack_ts0[at + int(np.argmax(beyond))]
        # a copy overlapping the segment starts within (seq - longest, seq + n) modulo 2^32
        lo, hi = (q - self.longest + 1) & _M32, (q + n) & _M32
        if self.longest + n > _M32:
            p = self.segs
        elif lo < hi:
            p = self.segs[np.searchsorted(self.seqs, lo):np.searchsorted(self.seqs, hi)]
        else:
            p = np.concatenate([self.segs[np.searchsorted(self.seqs, lo):], self.segs[:np.searchsorted(self.seqs, hi)]])
        if not len(p):
            return True
        pq = t.seq[p]
        hit = ((t.jid[p] != t.jid[i]) & ~lost[p] & (t.ts0[p] < k_ts)
               & ((((pq - q) & _M32) < n) | (((q - pq) & _M32) < t.seglen[p])))  # fmt: skip
        return not hit.any()

    def acked_all(self, idx: np.ndarray, lost: np.ndarray, steps: int = 8) -> np.ndarray:
        """:meth:`acked` of each journey of ``idx``, as arrays over all of them: the ACK beyond a segment looked for
        ``steps`` ACKs at a time, its other copies by sequence number; a segment whose ACK is further on, or whose
        copies' window wraps, is answered by :meth:`acked` itself."""
        t = self.t
        idx = np.asarray(idx, np.int64)
        out = np.zeros(len(idx), bool)
        na = len(self.ack_no)
        if not len(idx) or not na:
            return out
        n, f, q = t.seglen[idx], t.flags[idx], t.seq[idx]
        end = (q + n) & _M32
        pos = np.searchsorted(self.ack_ts, t.tsl[idx], side="right")  # the first ACK after the segment's last sighting
        todo = (q >= 0) & (f >= 0) & (f & 0x04 == 0) & (n != 0) & (pos < na)
        k = np.full(len(idx), -1, np.int64)  # the first ACK at or beyond the segment's end
        for _ in range(steps):
            w = np.flatnonzero(todo)
            if not len(w):
                break
            beyond = ((self.ack_no[pos[w]] - end[w]) & _M32) < 0x80000000
            k[w[beyond]] = pos[w[beyond]]
            todo[w[beyond]] = False
            w = w[~beyond]
            pos[w] += 1
            todo[w[pos[w] >= na]] = False  # no ACK beyond it
        for x in np.flatnonzero(todo).tolist():  # still looking: the ACK is further on
            out[x] = self.acked(int(idx[x]), lost)
        lo, hi = (q - self.longest + 1) & _M32, end
        plain = (k >= 0) & (lo < hi) & (self.longest + n <= _M32)
        for x in np.flatnonzero((k >= 0) & ~plain).tolist():  # copies' window wraps (or spans every number)
            out[x] = self.acked(int(idx[x]), lost)
        w = np.flatnonzero(plain)
        a, b = np.searchsorted(self.seqs, lo[w]), np.searchsorted(self.seqs, hi[w])
        cnt = b - a
        own = np.repeat(np.arange(len(w)), cnt)  # the copies of each segment's window, one row each
        p = self.segs[np.repeat(a - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(int(cnt.sum()))]
        x = w[own]
        pq, qx, nx = t.seq[p], q[x], n[x]
        hit = ((t.jid[p] != t.jid[idx[x]]) & ~lost[p] & (t.ts0[p] < self.ack_ts0[k[x]])
               & ((((pq - qx) & _M32) < nx) | (((qx - pq) & _M32) < t.seglen[p])))  # fmt: skip
        out[w] = np.bincount(own, weights=hit, minlength=len(w)) == 0
        return out


def timeline(t: JourneyTable, order: np.ndarray, g: np.ndarray, lost: np.ndarray) -> dict[str, np.ndarray]:
    """Attempts of packets sent more than once or lost (retransmissions share a fingerprint) of the journeys ``order``
    (grouped by ``g``, a connection's direction, and in time order in each), each a journey, in order of their packet's
    first journey then time: per attempt its ``journey``, ``packet`` label, ``attempt`` number, whether it ``reached``
    its end and its number of ``sightings``; per sighting (an attempt's after the one before's) its ``point`` and
    ``ts_corrected_ns``. A retransmission repeats flags, seq and size (its IPv4 id, hence its fingerprint, differs)."""
    empty = {"journey": np.zeros(0, np.int64), "packet": np.zeros(0, object), "attempt": np.zeros(0, np.int64),
             "reached": np.zeros(0, bool), "sightings": np.zeros(0, np.int64), "point": np.zeros(0, object),
             "ts_corrected_ns": np.zeros(0, np.int64)}  # fmt: skip
    if not len(order):
        return empty
    seq = t.seq[order]
    tcp = seq >= 0
    fp = t.fp[order].view(np.int64)
    k1 = np.where(tcp, t.flags[order], fp)
    k2 = np.where(tcp, seq, 0)
    k3 = np.where(tcp, t.size[order], 0)
    pos = np.arange(len(order))
    if int(g.min()) >= 0 and int(k3.min()) >= 0 and int(k3.max()) < 1 << 20 and int(k2.max()) < 1 << 32:
        # (g, not TCP) and (seq, size) as one key each: the same order from 3 sort keys, not 6 (lexsort is stable)
        cols = (g * 2 + ~tcp, k1, (k2 << 20) | k3)
        srt = np.lexsort(cols[::-1])
    else:
        srt = np.lexsort((pos, k3, k2, k1, ~tcp, g))
        cols = (g, tcp, k1, k2, k3)
    new = np.ones(len(order), bool)
    new[1:] = np.zeros(len(order) - 1, bool)
    for c in cols:
        cs = c[srt]
        new[1:] |= cs[1:] != cs[:-1]
    key = np.empty(len(order), np.int64)
    key[srt] = np.cumsum(new) - 1
    nk = int(key.max()) + 1
    count = np.bincount(key, minlength=nk)
    has_lost = np.bincount(key, weights=lost[order], minlength=nk) > 0
    shown = (count > 1) | has_lost
    sel = np.flatnonzero(shown[key])
    if not len(sel):
        return empty
    first = srt[np.flatnonzero(new)]  # each key's first journey: its run's first in the (stable) sort
    sel = sel[np.lexsort((sel, first[key[sel]]))]  # groups in order of their first journey, each in time order
    ks = key[sel]
    brk = np.r_[True, ks[1:] != ks[:-1]]
    gstart = np.flatnonzero(brk)
    attempt = np.arange(len(sel)) - np.repeat(gstart, np.diff(np.r_[gstart, len(sel)])) + 1
    heads = order[sel[gstart]]
    hf = t.flags[heads].tolist()
    kind = {f: flag_text(f) or "packet" for f in set(hf)}  # a few distinct flag sets: named once each
    labels = np.array([f"{kind[f]} {z}B #{x & 0xFFFF:04x}"
                       for f, z, x in zip(hf, t.size[heads].tolist(), t.fp[heads].tolist(), strict=True)], dtype=object)  # fmt: skip
    jr = order[sel]
    cnt = t.npts[jr]
    rows = np.repeat(t.s[jr] - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(int(cnt.sum()))
    return {"journey": jr, "packet": labels[np.cumsum(brk) - 1], "attempt": attempt, "reached": ~lost[jr],
            "sightings": cnt, "point": t.point_names[t.pt[rows]], "ts_corrected_ns": t.ts[rows]}  # fmt: skip
