"""Write every capture point's packets into one pcapng on the reference clock (one interface per point).

Layout: one Section Header Block; one Interface Description Block per (point, link type) with
``if_name`` "node:iface", ``if_description`` "k8s.node=…;interface=…;role=…" and ``if_tsresol`` 9
(nanoseconds); then Enhanced Packet Blocks in corrected time order across points. With ``dedup``
each journey's packet is written once (its first sighting) and its other sightings become EPB
``opt_comment`` text ("also at node-2:eth0 +125.3us src>dst ..."). Blocks are assembled with numpy
in chunks (headers, padded packet bytes and comments gathered by index), not one packet at a time.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pandas as pd

from pcaptools.errors import CorrelationError

_CHUNK = 1 << 16


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _shb() -> bytes:
    opts = _opt(4, b"pcaptools merge") + _opt(0, b"")
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opts)


def _idb(linktype: int, name: str, desc: str) -> bytes:
    opts = _opt(2, name.encode()) + _opt(3, desc.encode()) + _opt(9, b"\x09") + _opt(0, b"")
    return _block(1, struct.pack("<HHI", linktype, 0, 0) + opts)


def _gather(dst: np.ndarray, dst_start: np.ndarray, src: np.ndarray, src_start: np.ndarray, length: np.ndarray) -> None:
    """dst[dst_start[i] : +length[i]] = src[src_start[i] : +length[i]] for all i, vectorised."""
    total = int(length.sum())
    if total == 0:
        return
    rep = np.repeat(np.arange(length.shape[0]), length)
    within = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
    dst[dst_start[rep] + within] = src[src_start[rep] + within]


def write_pcapng(
    path: str | os.PathLike,
    packets: pd.DataFrame,
    ts_ns: np.ndarray,
    points: list,
    *,
    comments: pd.Series | None = None,
) -> int:
    """Write ``packets`` rows (columns file, record, point) with timestamps ``ts_ns``, time-ordered; returns the count.

    ``comments`` (index aligned with ``packets``) gives an opt_comment per row where not missing.
    """
    from pcaptools.io import read_records

    n = len(packets)
    files = packets["file"].astype(str).to_numpy()
    rec = packets["record"].to_numpy(np.int64)
    pcode = packets["point"].cat.codes.to_numpy(np.int64)
    # source bytes per row: one concatenated view per file is avoided; rows keep (file index, offset)
    src_off = np.zeros(n, np.int64)
    caplen = np.zeros(n, np.int64)
    wirelen = np.zeros(n, np.int64)
    ltype = np.zeros(n, np.int64)
    fidx = np.zeros(n, np.int64)
    bufs = []
    for k, f in enumerate(pd.unique(files)):
        rows = np.flatnonzero(files == f)
        if not f or not os.path.exists(f):
            raise CorrelationError(f"{f or '<no file>'}: merge needs the original capture files to copy packet bytes", path=f)
        rb = read_records(f)
        pos = np.searchsorted(rb.record, rec[rows])
        bad = (pos >= len(rb)) | (rb.record[np.minimum(pos, len(rb) - 1)] != rec[rows]) if len(rb) else np.ones(len(rows), bool)
        if bad.any():
            r = int(rec[rows][np.argmax(bad)])
            raise CorrelationError(f"{f}: record {r} of the packet table is not in the file; was it rewritten since decoding?", path=f, record=r)
        src_off[rows] = rb.offset[pos]
        caplen[rows] = rb.caplen[pos]
        wirelen[rows] = rb.wirelen[pos]
        ltype[rows] = rb.linktype[pos]
        fidx[rows] = k
        bufs.append(rb.data)
    # interfaces: one per (point, linktype)
    key = pcode * 65536 + ltype
    ukeys, iface = np.unique(key, return_inverse=True)
    header = [_shb()]
    for uk in ukeys:
        pt = points[int(uk // 65536)]
        desc = f"k8s.node={pt.node};interface={pt.interface};role={pt.role}" + (f";pod={pt.pod}" if pt.pod else "")
        header.append(_idb(int(uk % 65536), pt.name, desc))
    cbuf = np.zeros(0, np.uint8)
    c_off = np.zeros(n, np.int64)
    c_len = np.zeros(n, np.int64)
    if comments is not None:
        cm = comments.reindex(packets.index)
        has = cm.notna().to_numpy()
        enc = [s.encode() for s in cm[has].astype(str)]
        lens = np.array([len(e) for e in enc], np.int64)
        c_len[has] = lens
        c_off[has] = np.cumsum(lens) - lens
        cbuf = np.frombuffer(b"".join(enc), np.uint8) if enc else cbuf
    order = np.argsort(ts_ns, kind="stable")
    with open(path, "wb") as out:
        out.write(b"".join(header))
        for lo in range(0, n, _CHUNK):
            idx = order[lo : lo + _CHUNK]
            out.write(_epbs(idx, ts_ns, iface, caplen, wirelen, src_off, fidx, bufs, c_off, c_len, cbuf))
    return n


def _epbs(idx, ts_ns, iface, caplen, wirelen, src_off, fidx, bufs, c_off, c_len, cbuf) -> bytes:
    """Enhanced Packet Blocks for rows ``idx`` as one bytes object."""
    cap = caplen[idx]
    pad = (cap + 3) & ~3
    cl = c_len[idx]
    opt = np.where(cl > 0, 4 + ((cl + 3) & ~3) + 4, 0)
    total = 28 + pad + opt + 4
    start = np.cumsum(total) - total
    buf = np.zeros(int(total.sum()), np.uint8)
    t = ts_ns[idx].astype(np.int64).view(np.uint64)
    hdr = np.empty((idx.shape[0], 7), "<u4")
    hdr[:, 0] = 6
    hdr[:, 1] = total
    hdr[:, 2] = iface[idx]
    hdr[:, 3] = (t >> np.uint64(32)).astype(np.uint32)
    hdr[:, 4] = (t & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hdr[:, 5] = cap
    hdr[:, 6] = wirelen[idx]
    _gather(buf, start, hdr.view(np.uint8).reshape(-1), np.arange(idx.shape[0]) * 28, np.full(idx.shape[0], 28))
    for k in np.unique(fidx[idx]):
        m = fidx[idx] == k
        _gather(buf, start[m] + 28, bufs[int(k)], src_off[idx][m], cap[m])
    wc = np.flatnonzero(cl > 0)
    if wc.size:
        oh = np.zeros((wc.size, 2), "<u2")
        oh[:, 0] = 1
        oh[:, 1] = cl[wc]
        ostart = start[wc] + 28 + pad[wc]
        _gather(buf, ostart, oh.view(np.uint8).reshape(-1), np.arange(wc.size) * 4, np.full(wc.size, 4))
        _gather(buf, ostart + 4, cbuf, c_off[idx][wc], cl[wc])
        # opt_endofopt is the 4 zero bytes already there
    tail = np.empty((idx.shape[0], 1), "<u4")
    tail[:, 0] = total
    _gather(buf, start + total - 4, tail.view(np.uint8).reshape(-1), np.arange(idx.shape[0]) * 4, np.full(idx.shape[0], 4))
    return buf.tobytes()


def merge(capture_set, out: str | os.PathLike, *, correlation=None, dedup: bool = False) -> int:
    """Write the capture set as one pcapng on the reference clock; ``dedup`` keeps each journey once with comments."""
    from pcaptools.correlate.api import correlate

    corr = correlation if correlation is not None else correlate(capture_set)
    pk = capture_set.packets
    ts = corr.row_ts_corrected
    keep = np.ones(len(pk), bool)
    comments = None
    if dedup and len(corr.hops):
        h = corr.hops
        rj = corr.row_journey
        m = np.flatnonzero(rj >= 0)
        o = m[np.lexsort((ts[m], rj[m]))]
        first = np.ones(o.shape[0], bool)
        first[1:] = rj[o][1:] != rj[o][:-1]
        keep = rj < 0
        keep[o[first]] = True  # the first sighting represents its journey
        later = h[h["hop"] > 0]
        text = (
            "also at " + later["point"].astype(str) + " +" + (later["since_first_ns"] / 1000).round(1).astype(str) + "us "
            + later["src"].astype(str) + ":" + later["sport"].astype(str) + ">" + later["dst"].astype(str) + ":" + later["dport"].astype(str)
        )
        per_j = text.groupby(later["journey"].to_numpy()).agg("; ".join)
        rows = np.flatnonzero(keep & (rj >= 0))
        comments = pd.Series(per_j.reindex(rj[rows]).to_numpy(), index=pk.index[rows])
    sel = np.flatnonzero(keep)
    sub = pk.iloc[sel]
    return write_pcapng(out, sub, ts[sel], capture_set.points, comments=None if comments is None else comments.reindex(sub.index))
