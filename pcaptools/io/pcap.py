"""Classic pcap (tcpdump.org/manpages/pcap-savefile.5.html): file header and the compiled record walk.

File header (24 bytes)::

    magic u32 | version_major u16 | version_minor u16 | thiszone i32 | sigfigs u32 | snaplen u32 | linktype u32

Record header (16 bytes, 24 in Kuznetsov's variant)::

    ts_sec u32 | ts_frac u32 (us, or ns with magic a1b23c4d) | caplen u32 | wirelen u32

The walk is the one sequential step of the pipeline, so it is a numba kernel: it stops at the
first thing it cannot handle on its own (output full, record runs past the window, absurd caplen)
and lets Python decide.
"""

from __future__ import annotations

import numpy as np

from pcaptools.errors import TruncatedRecord
from pcaptools.io.prefetch import AHEAD_BYTES, prefetch
from pcaptools.io.records import Interface
from pcaptools.io.sniff import PCAP_MAGICS
from pcaptools.jit import njit

FILE_HEADER_LEN = 24
MAX_CAPLEN = 256 * 1024  # larger than any real snaplen (libpcap's maximum is 262144)

# kernel exit codes
END = 0  # ran out of bytes exactly at a record boundary
FULL = 1  # output arrays full
SHORT = 2  # the next record does not fit in the bytes given (window end, or file end)
ABSURD = 3  # caplen > MAX_CAPLEN: the record header is garbage


def parse_header(path: str, head: bytes) -> tuple[dict, Interface]:
    """Byte order, timestamp unit and record header length, plus the file's single interface."""
    if len(head) < FILE_HEADER_LEN:
        raise TruncatedRecord(
            f"{path}: pcap file header needs {FILE_HEADER_LEN} bytes, {len(head)} present; "
            "the file was cut off while being written",
            path=path,
            offset=0,
        )
    order, nano, rec_hdr = PCAP_MAGICS[head[:4]]
    snaplen = int.from_bytes(head[16:20], "little" if order == "<" else "big")
    ltfield = int.from_bytes(head[20:24], "little" if order == "<" else "big")
    linktype = ltfield & 0xFFFF  # upper bits: FCS presence/length (pcap-savefile(5)), not the type
    iface = Interface(id=0, linktype=linktype, snaplen=snaplen, tsresol_ns=1.0 if nano else 1000.0)
    return {"swap": order == ">", "nano": nano, "rec_hdr": rec_hdr, "snaplen": snaplen}, iface


@njit(cache=True, nogil=True)
def _u32(buf, p, swap):
    if swap:
        return (
            (np.uint32(buf[p]) << 24)
            | (np.uint32(buf[p + 1]) << 16)
            | (np.uint32(buf[p + 2]) << 8)
            | np.uint32(buf[p + 3])
        )
    return (
        (np.uint32(buf[p + 3]) << 24)
        | (np.uint32(buf[p + 2]) << 16)
        | (np.uint32(buf[p + 1]) << 8)
        | np.uint32(buf[p])
    )


@njit(cache=True, nogil=True)
def walk(buf, pos, end, swap, nano, rec_hdr, out_off, out_cap, out_wire, out_ts):
    """Walk records from ``pos`` to ``end``; return (records written, next position, exit code)."""
    mult = np.int64(1) if nano else np.int64(1000)
    n = 0
    cap_out = out_off.shape[0]
    ahead = pos  # the file is streamed into the cache up to here (prefetch: no wait on each header)
    while True:
        stream_to = min(pos + AHEAD_BYTES, end - 1)
        while ahead < stream_to:
            prefetch(buf, ahead)
            ahead += 64
        if pos == end:
            return n, pos, END
        if n == cap_out:
            return n, pos, FULL
        if end - pos < rec_hdr:
            return n, pos, SHORT
        caplen = _u32(buf, pos + 8, swap)
        if caplen > MAX_CAPLEN:
            return n, pos, ABSURD
        if end - pos - rec_hdr < caplen:
            return n, pos, SHORT
        out_ts[n] = np.int64(_u32(buf, pos, swap)) * 1_000_000_000 + np.int64(_u32(buf, pos + 4, swap)) * mult
        out_cap[n] = caplen
        out_wire[n] = _u32(buf, pos + 12, swap)
        out_off[n] = pos + rec_hdr
        pos += rec_hdr + caplen
        n += 1


@njit(cache=True, nogil=True)
def _plausible(buf, p, end, swap, nano, rec_hdr, snaplen, sec_lo, sec_hi):
    if end - p < rec_hdr:
        return False
    caplen = _u32(buf, p + 8, swap)
    wire = _u32(buf, p + 12, swap)
    sec = _u32(buf, p, swap)
    frac = _u32(buf, p + 4, swap)
    limit = snaplen if 0 < snaplen < MAX_CAPLEN else MAX_CAPLEN
    if caplen > limit or caplen > wire or wire > MAX_CAPLEN or caplen == 0:
        return False
    if frac >= (1_000_000_000 if nano else 1_000_000):
        return False
    if sec < sec_lo or sec > sec_hi:
        return False
    return end - p - rec_hdr >= caplen


@njit(cache=True, nogil=True)
def resync(buf, pos, end, swap, nano, rec_hdr, snaplen, sec_lo, sec_hi):
    """First offset after ``pos`` where two consecutive plausible record headers start, or -1.

    Used after a garbage record header: a record is plausible when its caplen fits the snaplen and
    the wire length, its fraction is below one second and its time lies near the last good record's.
    """
    p = pos + 1
    while p + rec_hdr <= end:
        if _plausible(buf, p, end, swap, nano, rec_hdr, snaplen, sec_lo, sec_hi):
            q = p + rec_hdr + _u32(buf, p + 8, swap)
            if q == end or _plausible(buf, q, end, swap, nano, rec_hdr, snaplen, sec_lo, sec_hi):
                return p
        p += 1
    return -1


def record_header_at(buf: np.ndarray, pos: int, state: dict) -> tuple[int, int, int, int]:
    """(ts_sec, ts_frac, caplen, wirelen) of the record header at ``pos`` (for error messages)."""
    order = ">" if state["swap"] else "<"
    vals = np.frombuffer(buf[pos : pos + 16].tobytes(), dtype=f"{order}u4")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]
