"""Shared pieces of the layer decoders: big-endian readers for numba kernels and the row-state codes.

Every layer decoder handles one row ``r`` per call (the fused walk in ``walk.py`` calls it), reads
its header at ``pos[r]`` within the captured bytes ``end[r]``, writes its fields, advances ``pos[r]``
and names the key of the next layer in ``key[r]`` (-1: nothing follows). A header that does not fit
sets ``trunc[r]``; a header that cannot be right sets ``err[r]``; both stop the row. Decoders are
compiled with ``_nrt=False`` (they allocate nothing, so no reference counting of their ~20 array
arguments per call); the hot ones (Ethernet, IPv4, TCP, UDP, VXLAN) are inlined into the walk.
"""

from __future__ import annotations

import numba as nb

from pcaptools.schema import DIRECTIONS, ERRORS, LAYERS

# codes stored per row: 0 = none, i + 1 = the i-th value of the vocabulary
T_LINK, T_VLAN, T_OUTER_IP, T_OUTER_L4, T_TUNNEL, T_IP, T_IPV6_EXT, T_L4, T_ICMP_QUOTE = range(1, len(LAYERS) + 1)
assert LAYERS[T_ICMP_QUOTE - 1] == "icmp_quote"

E = {name: i + 1 for i, name in enumerate(ERRORS)}
E_UNKNOWN_LINKTYPE = E["unknown_linktype"]
E_BAD_IP_VERSION = E["bad_ip_version"]
E_BAD_IHL = E["bad_ihl"]
E_BAD_IP_LEN = E["bad_ip_len"]
E_BAD_IPV6_EXT = E["bad_ipv6_ext"]
E_BAD_TCP_OFFSET = E["bad_tcp_offset"]
E_BAD_UDP_LEN = E["bad_udp_len"]
E_BAD_GRE = E["bad_gre"]
E_BAD_GENEVE = E["bad_geneve"]
E_TUNNEL_DEPTH = E["tunnel_depth_exceeded"]

D = {name: i + 1 for i, name in enumerate(DIRECTIONS)}
V4_MAPPED = 0xFFFF00000000


@nb.njit(cache=True, inline="always")
def u16(buf, p):
    return (nb.int64(buf[p]) << 8) | nb.int64(buf[p + 1])


@nb.njit(cache=True, inline="always")
def u32(buf, p):
    return (nb.int64(buf[p]) << 24) | (nb.int64(buf[p + 1]) << 16) | (nb.int64(buf[p + 2]) << 8) | nb.int64(buf[p + 3])


@nb.njit(cache=True, inline="always")
def u64(buf, p):
    v = nb.uint64(0)
    for k in range(8):
        v = (v << nb.uint64(8)) | nb.uint64(buf[p + k])
    return v


@nb.njit(cache=True, inline="always")
def mac(buf, p):
    v = nb.uint64(0)
    for k in range(6):
        v = (v << nb.uint64(8)) | nb.uint64(buf[p + k])
    return v
