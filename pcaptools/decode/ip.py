"""Network layers: IPv4 (RFC 791), IPv6 with extension headers (RFC 8200), ARP (RFC 826).

IPv4: version/IHL 0, total length 2:4, id 4:6, flags+offset 6:8 (DF 0x4000, MF 0x2000, offset
in 8-byte units), TTL 8, protocol 9, source 12:16, destination 16:20, options up to IHL*4.
A total length of 0 is a GSO/GRO/BIG TCP super-packet: its length comes from the wire length.

IPv6: payload length 4:6, next header 6, hop limit 7, source 8:24, destination 24:40; the walk
steps over hop-by-hop (0), routing (43), destination options (60), AH (51) and fragment (44)
headers, at most 8 of them. Payload length 0 with a hop-by-hop jumbo option (0xC2, RFC 2675) is
a jumbogram (BIG TCP). Addresses are written as (hi, lo) uint64; IPv4 as ::ffff:a.b.c.d.

ARP: hardware type 0:2, protocol type 2:4, hlen 4, plen 5, op 6:8, then sender hardware and
protocol addresses, target hardware and protocol addresses; for IPv4 ARP the protocol addresses
are written as src/dst.
"""

from __future__ import annotations

import numba as nb

from pcaptools.decode.common import (
    E_BAD_IHL,
    E_BAD_IP_LEN,
    E_BAD_IP_VERSION,
    E_BAD_IPV6_EXT,
    T_IP,
    T_IPV6_EXT,
    V4_MAPPED,
    u16,
    u32,
    u64,
)

MAX_IPV6_EXT = 8


@nb.njit(cache=True, _nrt=False)
def ipv6_ext_walk(buf, q, end, nh):
    """Step over IPv6 extension headers from ``q``: (next header, offset after them, fragment offset,
    more-fragments, fragment id or -1, jumbo length or -1, status: 0 ok, T_IPV6_EXT cut, -1 too many)."""
    fo = 0
    mf = False
    ident = -1
    jumbo = -1
    for _ in range(MAX_IPV6_EXT + 1):
        if nh == 0 or nh == 43 or nh == 60 or nh == 51:
            if q + 2 > end:
                return nh, q, fo, mf, ident, jumbo, T_IPV6_EXT
            hl = (nb.int64(buf[q + 1]) + 2) * 4 if nh == 51 else (nb.int64(buf[q + 1]) + 1) * 8
            if q + hl > end:
                return nh, q, fo, mf, ident, jumbo, T_IPV6_EXT
            if nh == 0:
                o = q + 2
                while o < q + hl:
                    t = buf[o]
                    if t == 0:
                        o += 1
                        continue
                    if o + 1 >= q + hl:
                        break
                    ln = nb.int64(buf[o + 1])
                    if t == 0xC2 and ln == 4 and o + 6 <= q + hl:
                        jumbo = u32(buf, o + 2)
                    o += 2 + ln
            nh = nb.int64(buf[q])
            q += hl
        elif nh == 44:
            if q + 8 > end:
                return nh, q, fo, mf, ident, jumbo, T_IPV6_EXT
            fo = u16(buf, q + 2) & 0xFFF8
            mf = (buf[q + 3] & 1) == 1
            ident = u32(buf, q + 4)
            nh = nb.int64(buf[q])
            q += 8
        else:
            return nh, q, fo, mf, ident, jumbo, 0
    return nh, q, fo, mf, ident, jumbo, -1


@nb.njit(cache=True, _nrt=False, inline="always")
def ipv4(buf, r, pos, end, wend, lim, key, trunc, err, ip_at, ver, s_hi, s_lo, d_hi, d_lo, a_ok,
         proto, ip_id, ttl, ip_len, frag, mf, df):  # fmt: skip
    """IPv4 header fields; key = protocol, or -1 for a non-first fragment (no L4 header in it)."""
    p = pos[r]
    key[r] = -1
    if p + 20 > end[r]:
        if p < end[r] and buf[p] >> 4 != 4:
            err[r] = E_BAD_IP_VERSION
        else:
            trunc[r] = T_IP
        return
    b0 = buf[p]
    if b0 >> 4 != 4:
        err[r] = E_BAD_IP_VERSION
        return
    ihl = nb.int64(b0 & 15) * 4
    tl = u16(buf, p + 2)
    ff = u16(buf, p + 6)
    ver[r] = 4
    if s_hi[r] != 0:  # IPv4: hi stays 0, and a page never written costs nothing
        s_hi[r] = 0
    s_lo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, p + 12))
    if d_hi[r] != 0:
        d_hi[r] = 0
    d_lo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, p + 16))
    a_ok[r] = True
    proto[r] = buf[p + 9]
    ip_id[r] = u16(buf, p + 4)
    ttl[r] = buf[p + 8]
    frag[r] = (ff & 0x1FFF) * 8
    mf[r] = (ff & 0x2000) != 0
    df[r] = (ff & 0x4000) != 0
    il = tl if tl != 0 else wend[r] - p
    ip_len[r] = il
    ip_at[r] = p
    if ihl < 20:
        err[r] = E_BAD_IHL
        return
    if tl != 0 and tl < ihl:
        err[r] = E_BAD_IP_LEN
        return
    if p + ihl > end[r]:
        trunc[r] = T_IP
        return
    lim[r] = p + il
    pos[r] = p + ihl
    if ff & 0x1FFF == 0:
        key[r] = buf[p + 9]


@nb.njit(cache=True, _nrt=False)
def ipv6(buf, r, pos, end, wend, lim, key, trunc, err, ip_at, ver, s_hi, s_lo, d_hi, d_lo, a_ok,
         proto, ip_id, ttl, ip_len, frag, mf):  # fmt: skip
    """IPv6 header and extension headers; key = upper-layer protocol unless a non-first fragment."""
    p = pos[r]
    key[r] = -1
    if p + 40 > end[r]:
        if p < end[r] and buf[p] >> 4 != 6:
            err[r] = E_BAD_IP_VERSION
        else:
            trunc[r] = T_IP
        return
    if buf[p] >> 4 != 6:
        err[r] = E_BAD_IP_VERSION
        return
    plen = u16(buf, p + 4)
    ver[r] = 6
    s_hi[r] = u64(buf, p + 8)
    s_lo[r] = u64(buf, p + 16)
    d_hi[r] = u64(buf, p + 24)
    d_lo[r] = u64(buf, p + 32)
    a_ok[r] = True
    ttl[r] = buf[p + 7]
    ip_at[r] = p
    nh0 = nb.int64(buf[p + 6])
    nh, q, fo, m, ident, jumbo, status = ipv6_ext_walk(buf, p + 40, end[r], nh0)
    proto[r] = nh if status == 0 else -1  # unknown while extension headers are cut or too many
    frag[r] = fo
    mf[r] = m
    ip_id[r] = ident
    if plen > 0:
        il = plen + 40
    elif jumbo >= 0:
        il = jumbo + 40
    elif nh0 == 59:
        il = 40
    else:
        il = wend[r] - p
    ip_len[r] = il
    if status == T_IPV6_EXT:
        trunc[r] = T_IPV6_EXT
        return
    if status < 0:
        err[r] = E_BAD_IPV6_EXT
        return
    if q > p + il or (plen == 0 and jumbo < 0 and fo != 0):  # a GSO super-packet is never a fragment
        err[r] = E_BAD_IP_LEN
        return
    lim[r] = p + il
    pos[r] = q
    if fo == 0 and nh != 59:
        key[r] = nh


@nb.njit(cache=True, _nrt=False)
def arp(buf, r, pos, end, key, trunc, s_hi, s_lo, d_hi, d_lo, a_ok):
    """ARP for IPv4: sender/target protocol addresses -> src/dst."""
    p = pos[r]
    key[r] = -1
    if p + 8 > end[r]:
        trunc[r] = T_IP
        return
    hl = nb.int64(buf[p + 4])
    if u16(buf, p + 2) != 0x0800 or buf[p + 5] != 4:
        return
    if p + 16 + 2 * hl > end[r]:
        trunc[r] = T_IP
        return
    if s_hi[r] != 0:  # IPv4: hi stays 0, and a page never written costs nothing
        s_hi[r] = 0
    s_lo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, p + 8 + hl))
    if d_hi[r] != 0:
        d_hi[r] = 0
    d_lo[r] = nb.uint64(V4_MAPPED) | nb.uint64(u32(buf, p + 12 + 2 * hl))
    a_ok[r] = True
    pos[r] = p + 16 + 2 * hl
