"""The decoder's dispatch table: the only place where one layer's key leads to the next decoder.

Each layer decoder reads its header and names a key in one *key space* (``ETHERTYPE``,
``IP_PROTO``, ``UDP_DPORT``); the tables here map that key to the next layer *kind*. Tunnels
are edges like any other; each tunnel edge carries the rule text recorded in ``tunnel_rule``.
The driver (:mod:`pcaptools.decode.walk`) turns these dicts into lookup arrays once per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Layer kinds (small ints stored per row while walking; 0 = nothing more to decode) -------------
DONE, ETH, SLL, SLL2, NULL, RAWIP, IP4, IP6, ARP = 0, 1, 2, 3, 4, 5, 6, 7, 8
TCP, UDP, SCTP, ICMP, ICMP6 = 9, 10, 11, 12, 13
VXLAN, GENEVE, GRE, WIREGUARD, ESP, IPIP, IP6IP = 14, 15, 16, 17, 18, 19, 20
UNKNOWN_LINK = 21
N_KINDS = 22

# Tunnel kind -> ``tunnel`` column value (schema.TUNNELS). IPIP/IP6IP carry no header of their own:
# ``ipip`` is IPv4 inside IPv4/IPv6 (proto 4), ``ip6ip`` IPv6 inside IPv4/IPv6 (proto 41).
TUNNEL_NAME = {VXLAN: "vxlan", GENEVE: "geneve", GRE: "gre", WIREGUARD: "wireguard", ESP: "esp",
               IPIP: "ipip", IP6IP: "ip6ip"}  # fmt: skip
OPAQUE_TUNNELS = (WIREGUARD, ESP)
"""Recognised but encrypted: counted and named, the carrier stays in the main columns."""

# Key spaces --------------------------------------------------------------------------------------
LINKTYPE: dict[int, int] = {1: ETH, 113: SLL, 276: SLL2, 0: NULL, 108: NULL, 101: RAWIP, 228: IP4, 229: IP6}
"""DLT/LINKTYPE number -> first layer. Anything else keeps its row with error ``unknown_linktype``."""

ETHERTYPE: dict[int, int] = {0x0800: IP4, 0x86DD: IP6, 0x0806: ARP, 0x6558: ETH}
"""Ethertype (Ethernet, SLL, GRE and Geneve protocol fields) -> next layer. 0x6558 is transparent
Ethernet bridging (GRE/Geneve carrying Ethernet). 0x88BE (ERSPAN) is left undecoded."""

VLAN_TPIDS: tuple[int, ...] = (0x8100, 0x88A8, 0x9100)
"""Ethertypes of 802.1Q / 802.1ad (QinQ) tags the Ethernet decoder steps over (outermost id kept)."""

IP_PROTO: dict[int, int] = {6: TCP, 17: UDP, 132: SCTP, 1: ICMP, 58: ICMP6, 4: IPIP, 41: IP6IP, 47: GRE, 50: ESP}
"""IP protocol (after IPv6 extension headers) -> next layer; 4/41/47/50 are tunnel edges."""

DEFAULT_VXLAN_PORTS: tuple[int, ...] = (4789, 8472)  # IANA, and the Linux/flannel default
DEFAULT_GENEVE_PORTS: tuple[int, ...] = (6081,)
DEFAULT_WIREGUARD_PORTS: tuple[int, ...] = (51820, 51821)  # wg-quick default, Calico's WireGuard


def udp_dport(
    vxlan_ports: tuple[int, ...] = DEFAULT_VXLAN_PORTS,
    geneve_ports: tuple[int, ...] = DEFAULT_GENEVE_PORTS,
    wireguard_ports: tuple[int, ...] = DEFAULT_WIREGUARD_PORTS,
) -> dict[int, int]:
    """UDP destination port -> tunnel layer; the ports are options of read_packets."""
    out: dict[int, int] = {}
    for ports, kind in ((wireguard_ports, WIREGUARD), (geneve_ports, GENEVE), (vxlan_ports, VXLAN)):
        for p in ports:
            out[int(p)] = kind
    return out


@dataclass(frozen=True)
class Tables:
    """The registry as lookup arrays: key -> kind, and key -> rule id for tunnel edges (-1 if none)."""

    ethertype: np.ndarray  # int8[65536]
    ip_proto: np.ndarray  # int8[256]
    udp_dport: np.ndarray  # int8[65536]
    rule_ethertype: np.ndarray  # int16[65536]
    rule_ip_proto: np.ndarray  # int16[256]
    rule_udp_dport: np.ndarray  # int16[65536]
    rules: tuple[str, ...]  # rule id -> text, e.g. "udp.dport==8472"


def build_tables(udp: dict[int, int]) -> Tables:
    """Lookup arrays for one decode call (the UDP port table depends on the caller's options)."""
    rules: list[str] = []

    def lut(size: int, table: dict[int, int], name: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
        kinds = np.zeros(size, np.int8)
        rule = np.full(size, -1, np.int16)
        for key, kind in table.items():
            kinds[key] = kind
            if kind in TUNNEL_NAME:
                rule[key] = len(rules)
                rules.append(f"{name}=={fmt.format(key)}")
        return kinds, rule

    et, ret = lut(65536, ETHERTYPE, "ethertype", "0x{:04x}")
    ip, rip = lut(256, IP_PROTO, "ip.proto", "{}")
    ud, rud = lut(65536, udp, "udp.dport", "{}")
    return Tables(et, ip, ud, ret, rip, rud, tuple(rules))


def vlan_tpids() -> np.ndarray:
    return np.array(VLAN_TPIDS, np.int64)
