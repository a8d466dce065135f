"""Geneve (RFC 8926): 8-byte header plus options, after UDP 6081; the protocol field names the inner.

Layout: version (2 bits) + options length (6 bits, 4-byte words) 0, flags 1, protocol type 2:4
(0x6558 Ethernet, 0x0800 IPv4, 0x86dd IPv6: an ethertype key), VNI 4:7, reserved 7, options.
"""

from __future__ import annotations

import numba as nb

from pcaptools.decode.common import E_BAD_GENEVE, T_TUNNEL, u16, u32

HEADER_LEN = 8


@nb.njit(cache=True, _nrt=False)
def geneve(buf, r, pos, end, key, trunc, err, depth, vni):
    """VNI of the outermost Geneve header; options skipped; key = protocol type (an ethertype)."""
    p = pos[r]
    key[r] = -1
    if p + HEADER_LEN > end[r]:
        trunc[r] = T_TUNNEL
        return
    if depth[r] == 1:
        vni[r] = u32(buf, p + 4) >> 8
    if buf[p] >> 6 != 0:
        err[r] = E_BAD_GENEVE
        return
    hl = HEADER_LEN + nb.int64(buf[p] & 0x3F) * 4
    if p + hl > end[r]:
        trunc[r] = T_TUNNEL
        return
    pos[r] = p + hl
    key[r] = u16(buf, p + 2)
