"""GRE (RFC 2784/2890; version 1 is PPTP's enhanced GRE, RFC 2637): IP protocol 47.

Layout: flags+version 0:2 (C 0x8000 checksum, R 0x4000 routing, K 0x2000 key, S 0x1000 sequence,
version = low 3 bits), protocol type 2:4 (an ethertype: 0x6558 Ethernet, 0x0800, 0x86dd; 0x88be
ERSPAN and 0x880b PPP are not decoded further), then checksum+reserved (4, if C), key (4, if K;
-> ``vni`` for version 0), sequence (4, if S), acknowledgement (4, version 1 with A 0x0080).
Source routing (R, obsolete) and versions > 1 are errors.
"""

from __future__ import annotations

import numba as nb

from pcaptools.decode.common import E_BAD_GRE, T_TUNNEL, u16, u32


@nb.njit(cache=True, _nrt=False)
def gre(buf, r, pos, end, key, trunc, err, depth, vni):
    """GRE header; the outermost version-0 key goes to ``vni``; key = protocol type (an ethertype)."""
    p = pos[r]
    key[r] = -1
    if p + 4 > end[r]:
        trunc[r] = T_TUNNEL
        return
    f = u16(buf, p)
    ver = f & 7
    if ver > 1 or f & 0x4000:
        err[r] = E_BAD_GRE
        return
    hl = 4
    if f & 0x8000:
        hl += 4
    kat = p + hl
    if f & 0x2000:
        hl += 4
    if f & 0x1000:
        hl += 4
    if ver == 1 and f & 0x0080:
        hl += 4
    if p + hl > end[r]:
        trunc[r] = T_TUNNEL
        return
    if depth[r] == 1 and ver == 0 and f & 0x2000:
        vni[r] = u32(buf, kat)
    pos[r] = p + hl
    key[r] = u16(buf, p + 2)
