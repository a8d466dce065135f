"""Transport layers: TCP (RFC 9293, options MSS/WS/SACK-permitted/timestamps), UDP (RFC 768),
SCTP common header (RFC 9260), ICMP (RFC 792) and ICMPv6 (RFC 4443) with the quoted packet of
error messages (its IP source, destination, protocol and ports) and the MTU of frag-needed
(ICMP 3/4, bytes 6:8) and packet-too-big (ICMPv6 2, bytes 4:8).

TCP: ports 0:4, seq 4:8, ack 8:12, data offset 12 (high nibble, 32-bit words), flags 13,
window 14:16, options 20:offset. UDP: ports 0:4, length 4:6 (0 = GSO/jumbo: length from IP).
Payload offsets are from the start of the captured frame; payload lengths come from the headers.
"""

from __future__ import annotations

import numba as nb

from pcaptools.decode.common import (
    E_BAD_IP_LEN,
    E_BAD_TCP_OFFSET,
    E_BAD_UDP_LEN,
    T_ICMP_QUOTE,
    T_L4,
    V4_MAPPED,
    u16,
    u32,
    u64,
)
from pcaptools.decode.ip import ipv6_ext_walk


@nb.njit(cache=True, _nrt=False, inline="always")
def tcp(buf, r, pos, end, lim, start, key, trunc, err, sport, dport, seq, ack, flags, win,
        mss, wscale, sack_ok, tsval, tsecr, pay_off, pay_len):  # fmt: skip
    """TCP header and the options the flow table uses; ports are kept even when the rest is cut."""
    p = pos[r]
    e = end[r]
    key[r] = -1
    if p + 4 <= e:
        sport[r] = u16(buf, p)
        dport[r] = u16(buf, p + 2)
    if p + 20 > e:
        trunc[r] = T_L4
        return
    seq[r] = u32(buf, p + 4)
    ack[r] = u32(buf, p + 8)
    flags[r] = buf[p + 13]
    win[r] = u16(buf, p + 14)
    hl = nb.int64(buf[p + 12] >> 4) * 4
    if hl < 20:
        err[r] = E_BAD_TCP_OFFSET
        return
    o = p + 20
    oe = min(p + hl, e)
    while o < oe:
        k = buf[o]
        if k == 0:
            break
        if k == 1:
            o += 1
            continue
        if o + 1 >= oe:
            break
        ln = nb.int64(buf[o + 1])
        if ln < 2 or o + ln > oe:
            break
        if k == 2 and ln == 4:
            mss[r] = u16(buf, o + 2)
        elif k == 3 and ln == 3:
            wscale[r] = buf[o + 2]
        elif k == 4 and ln == 2:
            sack_ok[r] = True
        elif k == 8 and ln == 10:
            tsval[r] = u32(buf, o + 2)
            tsecr[r] = u32(buf, o + 6)
        o += ln
    if p + hl > e:
        trunc[r] = T_L4
        return
    pl = lim[r] - (p + hl)
    if pl < 0:
        err[r] = E_BAD_IP_LEN
        return
    pay_off[r] = p + hl - start[r]
    pay_len[r] = pl
    pos[r] = p + hl


@nb.njit(cache=True, _nrt=False, inline="always")
def udp(buf, r, pos, end, lim, start, key, trunc, err, sport, dport, pay_off, pay_len):
    """UDP header; key = destination port (the registry's tunnel edges)."""
    p = pos[r]
    key[r] = -1
    if p + 4 <= end[r]:
        sport[r] = u16(buf, p)
        dport[r] = u16(buf, p + 2)
    if p + 8 > end[r]:
        trunc[r] = T_L4
        return
    ulen = u16(buf, p + 4)
    if ulen == 0:
        pl = lim[r] - p - 8
    elif ulen < 8:
        err[r] = E_BAD_UDP_LEN
        return
    else:
        pl = ulen - 8
    pay_off[r] = p + 8 - start[r]
    pay_len[r] = pl
    pos[r] = p + 8
    key[r] = dport[r]


@nb.njit(cache=True, _nrt=False)
def sctp(buf, r, pos, end, lim, start, key, trunc, sport, dport, pay_off, pay_len):
    """SCTP common header: ports (chunks are payload)."""
    p = pos[r]
    key[r] = -1
    if p + 4 <= end[r]:
        sport[r] = u16(buf, p)
        dport[r] = u16(buf, p + 2)
    if p + 12 > end[r]:
        trunc[r] = T_L4
        return
    pay_off[r] = p + 12 - start[r]
    pay_len[r] = max(lim[r] - p - 12, 0)
    pos[r] = p + 12


@nb.njit(cache=True, _nrt=False)
def _quote(buf, q, e, qlim, r, trunc, q_shi, q_slo, q_dhi, q_dlo, q_ok, q_proto, q_sport, q_dport):
    """The IP header (and ports) quoted in an ICMP error at ``q``; a quote cut by the snaplen is marked."""
    if q >= e:
        if qlim > q:
            trunc[r] = T_ICMP_QUOTE
        return
    v = buf[q] >> 4
    if v == 4:
        if q + 20 > e:
            trunc[r] = T_ICMP_QUOTE
            return
        ihl = nb.int64(buf[q] & 15) * 4
        q_shi[r] = 0
        q_slo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, q + 12))
        q_dhi[r] = 0
        q_dlo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, q + 16))
        q_ok[r] = True
        pr = nb.int64(buf[q + 9])
        q_proto[r] = pr
        first = (u16(buf, q + 6) & 0x1FFF) == 0
        t = q + ihl
    elif v == 6:
        if q + 40 > e:
            trunc[r] = T_ICMP_QUOTE
            return
        q_shi[r] = u64(buf, q + 8)
        q_slo[r] = u64(buf, q + 16)
        q_dhi[r] = u64(buf, q + 24)
        q_dlo[r] = u64(buf, q + 32)
        q_ok[r] = True
        pr, t, fo, _m, _id, _j, status = ipv6_ext_walk(buf, q + 40, e, nb.int64(buf[q + 6]))
        q_proto[r] = pr
        first = fo == 0 and status == 0
        ihl = 20
    else:
        return
    if ihl >= 20 and first and (pr == 6 or pr == 17 or pr == 132) and t + 4 <= e:
        q_sport[r] = u16(buf, t)
        q_dport[r] = u16(buf, t + 2)


@nb.njit(cache=True, _nrt=False)
def icmp(buf, r, pos, end, lim, start, key, trunc, v6, itype, icode, mtu,
         q_shi, q_slo, q_dhi, q_dlo, q_ok, q_proto, q_sport, q_dport, pay_off, pay_len):  # fmt: skip
    """ICMP (v6=False) or ICMPv6 (v6=True): type, code, MTU, and the quoted packet of errors."""
    p = pos[r]
    e = end[r]
    key[r] = -1
    if p + 2 > e:
        trunc[r] = T_L4
        return
    t = nb.int64(buf[p])
    c = nb.int64(buf[p + 1])
    itype[r] = t
    icode[r] = c
    if p + 8 > e:
        trunc[r] = T_L4
        return
    if v6:
        if t == 2:
            mtu[r] = u32(buf, p + 4)
        error = 1 <= t <= 4
    else:
        if t == 3 and c == 4:
            mtu[r] = u16(buf, p + 6)
        error = t == 3 or t == 4 or t == 5 or t == 11 or t == 12
    pay_off[r] = p + 8 - start[r]
    pay_len[r] = max(lim[r] - p - 8, 0)
    pos[r] = p + 8
    if error:
        _quote(buf, p + 8, e, lim[r], r, trunc, q_shi, q_slo, q_dhi, q_dlo, q_ok, q_proto, q_sport, q_dport)
