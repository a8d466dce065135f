"""VXLAN (RFC 7348): 8-byte header after UDP, inner Ethernet frame follows.

Layout: flags 0 (I = 0x08: VNI valid), reserved 1:4, VNI 4:7, reserved 7. The UDP ports that lead
here are options (``vxlan_ports``; 4789 and Linux's/flannel's 8472 by default).
"""

from __future__ import annotations

import numba as nb

from pcaptools.decode.common import T_TUNNEL, u32

HEADER_LEN = 8
NEXT_ETHERTYPE = 0x6558  # transparent Ethernet bridging: the registry's edge to Ethernet


@nb.njit(cache=True, _nrt=False, inline="always")
def vxlan(buf, r, pos, end, key, trunc, depth, vni):
    """VNI of the outermost VXLAN header; the next key is Ethernet (0x6558)."""
    p = pos[r]
    key[r] = -1
    if p + HEADER_LEN > end[r]:
        trunc[r] = T_TUNNEL
        return
    if depth[r] == 1:
        vni[r] = u32(buf, p + 4) >> 8
    pos[r] = p + HEADER_LEN
    key[r] = NEXT_ETHERTYPE
