"""Generate the decoder's hand-made captures (deterministic): python tests/data/decode/make_decode.py

Each file exercises what the peer captures lack: VXLAN on 8472 (flannel), QinQ, GRE with a key
carrying Ethernet, IPv4/IPv6 in IPv6, IPv6 extension headers and fragments, ICMP errors with
quotes and MTUs, WireGuard and ESP, NULL/LOOP in both byte orders, and snaplen-cut copies.
"""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.all import (
    ESP,
    GRE,
    ICMP,
    IP,
    TCP,
    UDP,
    VXLAN,
    Dot1AD,
    Dot1Q,
    Ether,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    bind_layers,
    wrpcap,
)
from scapy.layers.l2 import CookedLinux

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000
E = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def tunnels() -> list:
    bind_layers(UDP, VXLAN, dport=8472)
    inner = Ether(**E) / IP(src="10.244.1.5", dst="10.244.2.7", ttl=63, id=777) / TCP(
        sport=40000, dport=8080, flags="S", seq=1000, window=64240,
        options=[("MSS", 1410), ("SAckOK", b""), ("Timestamp", (11, 0)), ("NOP", None), ("WScale", 7)])
    pk = [
        Ether(**E) / IP(src="192.168.0.1", dst="192.168.0.2", id=1) / UDP(sport=51000, dport=8472) / VXLAN(vni=1) / inner,
        Ether(**E) / IP(src="192.168.0.1", dst="192.168.0.2", id=2) / UDP(sport=51001, dport=4789) / VXLAN(vni=4096) / inner,
        Ether(**E) / Dot1AD(vlan=100) / Dot1Q(vlan=200) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / Raw(b"x" * 10),
        Ether(**E) / Dot1Q(vlan=42) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1234, dport=443, flags="PA", seq=5, ack=9) / Raw(b"y" * 20),
        Ether(**E) / IP(src="172.16.0.1", dst="172.16.0.2") / GRE(key_present=1, key=0xABCDEF, proto=0x6558) / inner,
        Ether(**E) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IP(src="10.1.1.1", dst="10.1.1.2", id=5) / UDP(sport=5, dport=6),
        Ether(**E) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6(src="fd01::1", dst="fd01::2", hlim=9) / TCP(sport=7, dport=8),
        Ether(**E) / IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=51820, dport=51820) / Raw(b"\x04\x00\x00\x00" + b"z" * 28),
        Ether(**E) / IP(src="10.9.0.1", dst="10.9.0.2") / ESP(spi=0x1000, seq=1) / Raw(b"e" * 24),
        Ether(**E) / IP(src="192.168.0.1", dst="192.168.0.2") / UDP(sport=5, dport=4789) / VXLAN(vni=7) / Ether(**E)
        / IP(src="192.168.9.1", dst="192.168.9.2") / UDP(sport=6, dport=8472) / VXLAN(vni=8) / inner,
    ]
    return pk


def ipv6_and_frags() -> list:
    payload = IP(src="10.2.0.1", dst="10.2.0.2", id=4242) / UDP(sport=999, dport=53) / Raw(b"q" * 100)
    frags = [Ether(**E) / f for f in __import__("scapy.all", fromlist=["fragment"]).fragment(payload, fragsize=48)]
    six = IPv6(src="fd00::a", dst="fd00::b") / IPv6ExtHdrFragment(id=0xDEAD, m=1, offset=0) / UDP(sport=1, dport=2) / Raw(b"f" * 16)
    six2 = IPv6(src="fd00::a", dst="fd00::b") / IPv6ExtHdrFragment(id=0xDEAD, m=0, offset=3) / Raw(b"g" * 16)
    ext = (IPv6(src="fd00::c", dst="fd00::d") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["fd00::e"])
           / IPv6ExtHdrDestOpt() / TCP(sport=10, dport=20, flags="A"))
    return frags + [Ether(**E) / six, Ether(**E) / six2, Ether(**E) / ext]


def icmp_errors() -> list:
    q = IP(src="10.3.0.1", dst="10.3.0.2", flags="DF") / TCP(sport=4444, dport=80, flags="PA") / Raw(b"p" * 8)
    q6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5353, dport=53)
    return [
        Ether(**E) / IP(src="10.3.0.254", dst="10.3.0.1") / ICMP(type=3, code=4, nexthopmtu=1450) / q,
        Ether(**E) / IP(src="10.3.0.254", dst="10.3.0.1") / ICMP(type=11, code=0) / q,
        Ether(**E) / IPv6(src="fd00::fe", dst="fd00::1") / ICMPv6PacketTooBig(mtu=1280) / q6,
    ]


def write(name: str, pkts: list, linktype: int | None = None, snaplen: int | None = None) -> None:
    for i, p in enumerate(pkts):
        p.time = T0 + i / 1000
    if snaplen:
        raw = [bytes(p) for p in pkts]
        with open(HERE / name, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
            for i, b in enumerate(raw):
                cut = b[:snaplen]
                f.write(struct.pack("<IIII", T0, i, len(cut), len(b)) + cut)
        return
    wrpcap(str(HERE / name), pkts, linktype=linktype)


def null_loop() -> None:
    """NULL (host order, both endiannesses seen in the wild) and LOOP (network order) families 2 and 30."""
    ip4 = bytes(IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=1, dport=2))
    ip6 = bytes(IPv6(src="::1", dst="::1") / UDP(sport=3, dport=4))
    for name, lt, fam in (("null.pcap", 0, "<I"), ("null_be.pcap", 0, ">I"), ("loop.pcap", 108, ">I")):
        with open(HERE / name, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt))
            for i, (af, b) in enumerate(((2, ip4), (30, ip6), (24, ip6), (28, ip6))):
                frame = struct.pack(fam, af) + b
                f.write(struct.pack("<IIII", T0, i, len(frame), len(frame)) + frame)


def main() -> None:
    t = tunnels()
    write("tunnels.pcap", t)
    write("ipv6_frags.pcap", ipv6_and_frags())
    write("icmp_errors.pcap", icmp_errors())
    write("tunnels_snap60.pcap", t + ipv6_and_frags() + icmp_errors(), snaplen=60)
    write("sll_vxlan.pcap", [CookedLinux(pkttype=4, proto=0x0800) / p[IP] for p in t[:2]], linktype=113)
    null_loop()


if __name__ == "__main__":
    main()
