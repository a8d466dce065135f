"""pcapng (IETF draft-ietf-opsawg-pcapng): block framing, interface options and the compiled block walk.

Every block is ``type u32 | total_length u32 | body | total_length u32`` in its section's byte order
(set by the Section Header Block's byte-order magic 0x1A2B3C4D). Packet blocks:

* Enhanced Packet Block (6): ``iface u32 | ts_hi u32 | ts_lo u32 | caplen u32 | origlen u32 | data | options``
* Simple Packet Block (3): ``origlen u32 | data`` (interface 0, no timestamp: ``ts_ns`` is -1)
* obsolete Packet Block (2): ``iface u16 | drops u16 | ts_hi | ts_lo | caplen | origlen | data | options``

The walk (numba) handles packet blocks and counts the blocks pcaptools skips; it returns to Python
at every Section Header, Interface Description and Interface Statistics Block (rare) and at damage.
"""

from __future__ import annotations

import numpy as np

from pcaptools.io.prefetch import AHEAD_BYTES, prefetch
from pcaptools.io.records import Interface, InterfaceStats
from pcaptools.jit import njit

SHB, IDB, PB, SPB, NRB, ISB, EPB, JOURNAL, DSB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 9, 10
CUSTOM_BLOCKS = (0x00000BAD, 0x40000BAD)
MAX_CAPLEN = 256 * 1024
MAX_BLOCK = 64 << 20  # no real block is this long: a larger length means the framing is garbage
NO_TS = np.uint64(0xFFFFFFFFFFFFFFFF)  # Simple Packet Blocks carry no timestamp: ts_ns becomes -1
BYTE_ORDER_MAGIC = 0x1A2B3C4D

# counters the kernel fills: index -> skip reason
SKIP_REASONS = (
    "name_resolution_block",
    "interface_statistics_block",
    "decryption_secrets_block",
    "custom_block",
    "unknown_block",
    "packet_for_unknown_interface",
    "caplen_absurd",
    "packet_exceeds_block",
    "journal_export_block",
)
DAMAGE = frozenset({"packet_for_unknown_interface", "caplen_absurd", "packet_exceeds_block"})
NO_PACKET = frozenset({"name_resolution_block", "interface_statistics_block", "decryption_secrets_block", "custom_block",
                       "journal_export_block"})
"""Skip reasons of blocks that hold no packet (names, counters, keys, vendor data, journal entries): counted, not lost."""

# kernel exit codes
END, FULL, SHORT, AT_SHB, AT_IDB, BAD_LENGTH, BAD_TRAILER, AT_DAMAGE, AT_ISB = range(9)

# state vector shared with the kernel
ST_SWAP, ST_IF_BASE, ST_IF_COUNT, ST_RECORD, ST_N = 0, 1, 2, 3, 4


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
def _u16(buf, p, swap):
    if swap:
        return (np.uint32(buf[p]) << 8) | np.uint32(buf[p + 1])
    return (np.uint32(buf[p + 1]) << 8) | np.uint32(buf[p])


@njit(cache=True, nogil=True)
def walk(
    buf,
    pos,
    end,
    st,
    stop_on_damage,
    counters,
    out_off,
    out_cap,
    out_wire,
    out_ts,
    out_if,
    out_flags,
    out_rec,
):
    """Walk blocks from ``pos`` to ``end``; return (packets written, position, exit code).

    ``st`` holds [big-endian?, first global interface id of this section, interfaces seen in this
    section, next packet record number]; ``counters`` counts skipped blocks by SKIP_REASONS index.
    """
    n = 0
    cap_out = out_off.shape[0]
    swap = st[ST_SWAP] != 0
    ahead = pos  # the file is streamed into the cache up to here (prefetch: no wait on each block header)
    while True:
        stream_to = min(pos + AHEAD_BYTES, end - 1)
        while ahead < stream_to:
            prefetch(buf, ahead)
            ahead += 64
        if pos == end:
            return n, pos, END
        if n == cap_out:
            return n, pos, FULL
        if end - pos < 8:
            return n, pos, SHORT
        btype = _u32(buf, pos, swap)
        if btype == SHB:
            return n, pos, AT_SHB
        blen = np.int64(_u32(buf, pos + 4, swap))
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return n, pos, BAD_LENGTH
        if end - pos < blen:
            return n, pos, SHORT
        if np.int64(_u32(buf, pos + blen - 4, swap)) != blen:
            return n, pos, BAD_TRAILER
        if btype == IDB:
            return n, pos, AT_IDB
        if btype == EPB or btype == PB or btype == SPB:
            flags = np.uint32(0)
            if btype == SPB:
                if blen < 16:
                    return n, pos, BAD_LENGTH
                local_if = np.int64(0)
                wire = _u32(buf, pos + 8, swap)
                caplen = np.int64(min(np.int64(wire), blen - 16))
                ts = NO_TS
                data = pos + 12
            else:
                if blen < 32:
                    return n, pos, BAD_LENGTH
                if btype == EPB:
                    local_if = np.int64(_u32(buf, pos + 8, swap))
                else:
                    local_if = np.int64(_u16(buf, pos + 8, swap))
                ts = (np.uint64(_u32(buf, pos + 12, swap)) << np.uint64(32)) | np.uint64(
                    _u32(buf, pos + 16, swap)
                )
                caplen = np.int64(_u32(buf, pos + 20, swap))
                wire = _u32(buf, pos + 24, swap)
                data = pos + 28
            reason = -1
            if local_if >= st[ST_IF_COUNT]:
                reason = 5
            elif caplen > MAX_CAPLEN:
                reason = 6
            elif data + caplen > pos + blen - 4:
                reason = 7
            if reason >= 0:
                if stop_on_damage:
                    return n, pos, AT_DAMAGE
                counters[reason] += 1
                st[ST_RECORD] += 1
                pos += blen
                continue
            if btype != SPB:  # options: epb_flags / pack_flags (code 2, 4 bytes)
                p = data + ((caplen + 3) // 4) * 4
                oend = pos + blen - 4
                while p + 4 <= oend:
                    code = _u16(buf, p, swap)
                    olen = np.int64(_u16(buf, p + 2, swap))
                    if code == 0:
                        break
                    if code == 2 and olen == 4 and p + 8 <= oend:
                        flags = _u32(buf, p + 4, swap)
                    p += 4 + ((olen + 3) // 4) * 4
            out_off[n] = data
            out_cap[n] = caplen
            out_wire[n] = wire
            out_ts[n] = ts
            out_if[n] = st[ST_IF_BASE] + local_if
            out_flags[n] = flags
            out_rec[n] = st[ST_RECORD]
            st[ST_RECORD] += 1
            n += 1
        elif btype == NRB:
            counters[0] += 1
        elif btype == ISB:
            return n, pos, AT_ISB
        elif btype == DSB:
            counters[2] += 1
        elif btype == 0x00000BAD or btype == 0x40000BAD:
            counters[3] += 1
        elif btype == JOURNAL:
            counters[8] += 1
        else:
            counters[4] += 1
        pos += blen


def _options(body: bytes, order: str) -> dict[int, bytes]:
    """Option code -> value of an options list (later duplicates win; stops at opt_endofopt)."""
    out: dict[int, bytes] = {}
    p = 0
    while p + 4 <= len(body):
        code = int.from_bytes(body[p : p + 2], order)
        olen = int.from_bytes(body[p + 2 : p + 4], order)
        if code == 0:
            break
        out.setdefault(code, body[p + 4 : p + 4 + olen])
        p += 4 + (olen + 3) // 4 * 4
    return out


def _text(raw: bytes | None) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace") if raw else ""


def parse_idb(block: bytes, order: str, *, iface_id: int, section: int) -> tuple[Interface, int, int]:
    """Interface of an IDB, plus its if_tsresol byte and if_tsoffset seconds (exact timestamp maths)."""
    linktype = int.from_bytes(block[8:10], order)
    snaplen = int.from_bytes(block[12:16], order)
    opts = _options(block[16:-4], order)
    tsresol = opts[9][0] if opts.get(9) else 6
    tsoffset = int.from_bytes(opts[14][:8], order, signed=True) if len(opts.get(14, b"")) >= 8 else 0
    if tsresol & 0x80:
        per_ns = 1e9 / 2.0 ** (tsresol & 0x7F)
    else:
        per_ns = 10.0 ** (9 - tsresol)
    iface = Interface(
        id=iface_id,
        linktype=linktype,
        snaplen=snaplen,
        name=_text(opts.get(2)),
        description=_text(opts.get(3)),
        hardware=_text(opts.get(15)),
        tsresol_ns=per_ns,
        tsoffset_s=tsoffset,
        section=section,
    )
    return iface, tsresol, tsoffset


ISB_COUNTERS = {4: "ifrecv", 5: "ifdrop", 6: "filteraccept", 7: "osdrop", 8: "usrdeliv"}
"""Interface Statistics Block option code -> :class:`InterfaceStats` field (u64 counters)."""


def parse_isb(block: bytes, order: str) -> tuple[int, InterfaceStats]:
    """(interface id within the section, counters) of an Interface Statistics Block; a counter whose option is
    not 8 bytes long is left None."""
    opts = _options(block[20:-4], order)
    vals = {name: int.from_bytes(opts[code], order) for code, name in ISB_COUNTERS.items() if len(opts.get(code, b"")) == 8}
    return int.from_bytes(block[8:12], order), InterfaceStats(**vals)


_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1


def _scaled(units: np.ndarray, mult: int) -> tuple[np.ndarray, np.ndarray]:
    """``units * mult`` as int64 for uint64 ``units``, and where that product leaves int64."""
    over = units > np.uint64(_U64_MAX // mult)
    prod = np.where(over, np.uint64(0), units) * np.uint64(mult)  # exact in uint64 where not over
    over |= prod > np.uint64(_I64_MAX)
    return np.where(over, np.uint64(0), prod).astype(np.int64), over


def units_to_ns(raw: np.ndarray, tsresol: int, tsoffset_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps in if_tsresol units -> int64 ns since the epoch (truncating below 1 ns), exactly.

    Also returns where the value, before or after ``tsoffset_s``, does not fit int64 nanoseconds (years
    1677-2262): those values are meaningless and the caller skips them; nothing wraps around.
    """
    raw = raw.astype(np.uint64, copy=False)
    absent = raw == NO_TS
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        exp = min(exp, 63)  # beyond 2^-63 s per unit is not a real clock; keep the maths in 64 bits
    if tsresol & 0x80:  # 2^-exp seconds per unit
        if exp == 0:
            ns, over = _scaled(raw, 1_000_000_000)
        else:
            sec, over = _scaled(raw >> np.uint64(exp), 1_000_000_000)
            frac = raw & np.uint64((1 << exp) - 1)
            if exp > 33:  # keep frac * 1e9 inside 64 bits; the dropped bits are below 1 ns
                frac = frac >> np.uint64(exp - 33)
                exp = 33
            sub = ((frac * np.uint64(1_000_000_000)) >> np.uint64(exp)).astype(np.int64)  # < 1e9
            over |= sec > _I64_MAX - sub
            ns = np.where(over, 0, sec + np.where(over, 0, sub))
    elif exp <= 9:
        ns, over = _scaled(raw, 10 ** (9 - exp))
    else:
        ns = (raw // np.uint64(10 ** min(exp - 9, 19))).astype(np.int64)  # < 2^64 / 10: fits
        over = np.zeros(raw.shape, bool)
    if tsoffset_s:  # ns is in [0, 2^63) here; the sum must stay in [-2^63, 2^63)
        off = int(tsoffset_s) * 1_000_000_000
        if off > 0:
            over |= ns > max(_I64_MAX - off, -1)
            ns = np.where(over, 0, ns) + np.int64(min(off, _I64_MAX))
        elif off >= -_I64_MAX - 1:
            ns = ns + np.int64(off)
        else:
            thr = -_I64_MAX - 1 - off  # ns + off >= -2^63  <=>  ns >= thr
            over |= ns < min(thr, _I64_MAX)
            if thr > _I64_MAX:
                over[:] = True
            ns = (np.where(over, 0, ns - np.int64(min(thr, _I64_MAX)))) + np.int64(-_I64_MAX - 1)
    over &= ~absent
    if absent.any():
        ns = np.where(absent, np.int64(-1), ns)
    return ns, over
