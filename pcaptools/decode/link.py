"""Link layers: Ethernet (802.1Q/802.1ad tags), LINUX_SLL, LINUX_SLL2, NULL/LOOP and raw IP.

Layouts (offsets in bytes):

* Ethernet II: dst 0:6, src 6:12, type 12:14; each VLAN tag (TPID in ``registry.VLAN_TPIDS``) adds
  4 bytes (TCI 14:16, id = TCI & 0xfff) before the real type. A type <= 1500 is an 802.3 length.
* LINUX_SLL (16): packet type 0:2, ARPHRD 2:4, address length 4:6, address 6:14, protocol 14:16.
* LINUX_SLL2 (20): protocol 0:2, reserved 2:4, ifindex 4:8, ARPHRD 8:10, packet type 10,
  address length 11, address 12:20.
* NULL/LOOP (4): address family, host byte order (NULL) or network order (LOOP); we accept both:
  2 = IPv4, 24/28/30 = IPv6 (BSD variants).
* RAW (101): IP version nibble picks IPv4/IPv6. IPV4 (228) / IPV6 (229) need no link decoder.

The key for the next layer is an ethertype (NULL/RAW map to 0x0800/0x86dd).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from pcaptools.decode.common import E_BAD_IP_VERSION, T_LINK, T_VLAN, mac, u16, u32

# SLL packet type -> DIRECTIONS code (+1): 0 host "in", 1 broadcast, 2 multicast, 3 otherhost, 4 "out"
SLL_DIRECTION = np.array([1, 4, 5, 6, 2], np.int8)
UNKNOWN_DIRECTION = 7


@nb.njit(cache=True, _nrt=False, inline="always")
def ethernet(buf, r, pos, end, key, trunc, depth, tpids, eth_src, eth_dst, eth_ok, vlan, ethertype):
    """Ethernet II with any number (bounded to 8) of VLAN tags; link fields of the outermost only."""
    p = pos[r]
    if p + 14 > end[r]:
        trunc[r] = T_LINK
        key[r] = -1
        return
    outer = depth[r] == 0
    if outer:
        eth_dst[r] = mac(buf, p)
        eth_src[r] = mac(buf, p + 6)
        eth_ok[r] = True
    t = u16(buf, p + 12)
    p += 14
    first_tag = True
    for _ in range(8):
        tagged = False
        for k in range(tpids.shape[0]):
            if t == tpids[k]:
                tagged = True
        if not tagged:
            break
        if p + 4 > end[r]:
            trunc[r] = T_VLAN
            t = -1
            break
        if outer and first_tag:
            vlan[r] = u16(buf, p) & 0xFFF
        first_tag = False
        t = u16(buf, p + 2)
        p += 4
    if t >= 0 and outer:
        ethertype[r] = t if t > 1500 else -1
    pos[r] = p
    key[r] = t if t > 1500 else -1


@nb.njit(cache=True, _nrt=False)
def sll(buf, r, pos, end, key, trunc, direction, eth_src, eth_ok, ethertype):
    """LINUX_SLL (cooked v1): packet type -> direction, link-layer source, protocol."""
    p = pos[r]
    if p + 16 > end[r]:
        trunc[r] = T_LINK
        key[r] = -1
        return
    pt = u16(buf, p)
    direction[r] = SLL_DIRECTION[pt] if pt < 5 else UNKNOWN_DIRECTION
    if u16(buf, p + 4) == 6:
        eth_src[r] = mac(buf, p + 6)
        eth_ok[r] = True
    t = u16(buf, p + 14)
    ethertype[r] = t
    pos[r] = p + 16
    key[r] = t


@nb.njit(cache=True, _nrt=False)
def sll2(buf, r, pos, end, key, trunc, direction, ifindex, eth_src, eth_ok, ethertype):
    """LINUX_SLL2 (tcpdump -i any): protocol, interface index, packet type, link-layer source."""
    p = pos[r]
    if p + 20 > end[r]:
        trunc[r] = T_LINK
        key[r] = -1
        return
    t = u16(buf, p)
    ifindex[r] = u32(buf, p + 4)
    pt = buf[p + 10]
    direction[r] = SLL_DIRECTION[pt] if pt < 5 else UNKNOWN_DIRECTION
    if buf[p + 11] == 6:
        eth_src[r] = mac(buf, p + 12)
        eth_ok[r] = True
    ethertype[r] = t
    pos[r] = p + 20
    key[r] = t


@nb.njit(cache=True, _nrt=False)
def null(buf, r, pos, end, key, trunc):
    """NULL/LOOP 4-byte address family, read in both byte orders."""
    p = pos[r]
    if p + 4 > end[r]:
        trunc[r] = T_LINK
        key[r] = -1
        return
    be = u32(buf, p)
    le = buf[p] | (buf[p + 1] << 8) | (nb.int64(buf[p + 2]) << 16) | (nb.int64(buf[p + 3]) << 24)
    pos[r] = p + 4
    if be == 2 or le == 2:
        key[r] = 0x0800
    elif be in (24, 28, 30) or le in (24, 28, 30):
        key[r] = 0x86DD
    else:
        key[r] = -1


@nb.njit(cache=True, _nrt=False)
def rawip(buf, r, pos, end, key, trunc, err):
    """RAW (101): the version nibble of the first byte says IPv4 or IPv6."""
    p = pos[r]
    if p + 1 > end[r]:
        trunc[r] = T_LINK
        key[r] = -1
        return
    v = buf[p] >> 4
    if v == 4:
        key[r] = 0x0800
    elif v == 6:
        key[r] = 0x86DD
    else:
        err[r] = E_BAD_IP_VERSION
        key[r] = -1
