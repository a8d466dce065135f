"""Seeded synthetic capture: Ethernet/IPv4 TCP+UDP flows, a share of them VXLAN-encapsulated, as a classic pcap.

Every header is valid (IPv4 header checksums, UDP lengths, TCP/UDP checksums over zero payloads,
VXLAN I flag and VNI) so decoders can be benchmarked on it. The file is assembled with numpy, one
array operation per header field, so a million packets take seconds.

    python benchmarks/gen.py --packets 1000000 --vxlan 0.33 --out /tmp/synth.pcap
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ETH, IP4, UDP, TCP, VXLAN = 14, 20, 8, 20, 8
REC = 16  # pcap record header
MTU_FRAME = 1514
VXLAN_OVERHEAD = ETH + IP4 + UDP + VXLAN  # 50 bytes in front of the inner Ethernet frame
START_SEC = 1_700_000_000


def _put(h: np.ndarray, col: int, values, nbytes: int, order: str = "big") -> None:
    """Write integer ``values`` as ``nbytes``-byte fields at column ``col`` of every row of ``h``."""
    v = np.asarray(values, dtype=np.uint64)
    v = np.broadcast_to(v, (h.shape[0],))
    for i in range(nbytes):
        shift = 8 * (nbytes - 1 - i) if order == "big" else 8 * i
        h[:, col + i] = ((v >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(3):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return (~s.astype(np.uint16)).astype(np.uint16)


def _words(h: np.ndarray, col: int, length: int) -> np.ndarray:
    """Sum of the big-endian 16-bit words of ``h[:, col:col+length]`` per row."""
    b = h[:, col : col + length].astype(np.uint64)
    return (b[:, 0::2] << np.uint64(8)).sum(axis=1) + b[:, 1::2].sum(axis=1)


def _ipv4(h: np.ndarray, col: int, total_len, proto: int, src, dst, ident) -> None:
    h[:, col] = 0x45
    _put(h, col + 2, total_len, 2)
    _put(h, col + 4, ident, 2)
    h[:, col + 6] = 0x40  # don't fragment
    h[:, col + 8] = 64
    h[:, col + 9] = proto
    _put(h, col + 12, src, 4)
    _put(h, col + 16, dst, 4)
    _put(h, col + 10, _fold(_words(h, col, IP4)), 2)


def _l4_checksum(h: np.ndarray, ip: int, l4: int, l4_len, proto: int, hdr_len: int) -> np.ndarray:
    """TCP/UDP checksum over pseudo-header and header; the payload is all zeros and adds nothing."""
    pseudo = _words(h, ip + 12, 8) + np.uint64(proto) + np.asarray(l4_len, dtype=np.uint64)
    return _fold(pseudo + _words(h, l4, hdr_len))


def generate(n: int, *, vxlan: float = 1 / 3, flows: int = 24, seed: int = 0) -> np.ndarray:
    """The bytes of a pcap with ``n`` packets, ``vxlan`` of them VXLAN-encapsulated (ports 4789/8472)."""
    rng = np.random.default_rng(seed)
    n_vx_flows = max(1, round(flows * vxlan)) if vxlan > 0 else 0
    f_tcp = rng.random(flows) < 0.7
    f_tcp[:2] = True  # at least one TCP flow in each group
    f_tcp[n_vx_flows : n_vx_flows + 1] = True
    f_src = rng.integers(0x0A000000, 0x0AFFFFFF, flows, dtype=np.uint64)  # 10.0.0.0/8 pod addresses
    f_dst = rng.integers(0x0A000000, 0x0AFFFFFF, flows, dtype=np.uint64)
    f_sport = rng.integers(32768, 61000, flows)
    f_dport = rng.choice([80, 443, 5432, 6379, 8080, 9090], flows)
    f_isn = rng.integers(0, 2**32, flows, dtype=np.uint64)
    f_node_src = rng.integers(0xC0A80001, 0xC0A800FE, flows, dtype=np.uint64)  # 192.168.0.0/24 nodes
    f_node_dst = rng.integers(0xC0A80001, 0xC0A800FE, flows, dtype=np.uint64)
    f_vxport = rng.choice([4789, 8472], flows)
    f_vni = rng.choice([1, 42, 4096], flows)
    f_mac = rng.integers(0, 2**48, (flows, 4), dtype=np.uint64) & np.uint64(0xFEFFFFFFFFFF)  # unicast

    # which packets are encapsulated, then a flow within that group (a few heavy flows, many light)
    encap = rng.random(n) < vxlan if n_vx_flows else np.zeros(n, bool)
    weights = 1.0 / np.arange(1, flows + 1)
    vx_w, pl_w = weights[:n_vx_flows], weights[n_vx_flows:]
    flow = np.empty(n, np.int64)
    flow[encap] = rng.choice(n_vx_flows, int(encap.sum()), p=vx_w / vx_w.sum())
    if flows > n_vx_flows:
        flow[~encap] = n_vx_flows + rng.choice(flows - n_vx_flows, int((~encap).sum()), p=pl_w / pl_w.sum())
    encap = flow < n_vx_flows
    tcp = f_tcp[flow]

    # frame sizes: 40% bare ACK-sized, 45% full MTU, 15% anything between; VXLAN eats 50 bytes of MTU
    l4h = np.where(tcp, TCP, UDP)
    max_payload = MTU_FRAME - ETH - IP4 - l4h - np.where(encap, VXLAN_OVERHEAD, 0)
    kind = rng.random(n)
    payload = np.where(kind < 0.40, rng.integers(0, 13, n), np.where(kind < 0.85, max_payload, 0))
    mid = kind >= 0.85
    payload[mid] = (rng.random(int(mid.sum())) * max_payload[mid]).astype(np.int64)
    inner_ip_len = IP4 + l4h + payload
    frame = ETH + inner_ip_len + np.where(encap, VXLAN_OVERHEAD, 0)

    # TCP sequence numbers grow by the payload within each flow
    order = np.argsort(flow, kind="stable")
    lens_sorted = payload[order].astype(np.uint64)
    csum = np.cumsum(lens_sorted)
    first = np.r_[0, np.flatnonzero(np.diff(flow[order])) + 1]
    group_start = np.repeat(csum[first] - lens_sorted[first], np.diff(np.r_[first, n]))
    seq = np.empty(n, np.uint64)
    seq[order] = (f_isn[flow[order]] + csum - lens_sorted - group_start) & np.uint64(0xFFFFFFFF)

    gaps = rng.exponential(8_000, n).astype(np.int64) + 1  # ns between packets, ~125 kpps
    ts = START_SEC * 10**9 + np.cumsum(gaps)
    rec_start = 24 + np.r_[0, np.cumsum(REC + frame)[:-1]]
    out = np.zeros(24 + int((REC + frame).sum()), np.uint8)
    out[:24] = np.frombuffer(
        np.array([0xA1B2C3D4], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 262144, 1], "<u4").tobytes(),
        np.uint8,
    )

    for is_vx in (False, True):
        for is_tcp in (False, True):
            sel = np.flatnonzero((encap == is_vx) & (tcp == is_tcp))
            if not sel.size:
                continue
            f = flow[sel]
            l4len = TCP if is_tcp else UDP
            inner = REC + (VXLAN_OVERHEAD if is_vx else 0)  # column where the inner Ethernet starts
            hl = inner + ETH + IP4 + l4len
            h = np.zeros((sel.size, hl), np.uint8)
            _put(h, 0, ts[sel] // 10**9, 4, "little")
            _put(h, 4, ts[sel] % 10**9 // 1000, 4, "little")
            _put(h, 8, frame[sel], 4, "little")
            _put(h, 12, frame[sel], 4, "little")
            if is_vx:
                c = REC
                _put(h, c, f_mac[f, 0], 6)
                _put(h, c + 6, f_mac[f, 1], 6)
                _put(h, c + 12, 0x0800, 2)
                udp_len = frame[sel] - ETH - IP4
                _ipv4(h, c + ETH, udp_len + IP4, 17, f_node_src[f], f_node_dst[f], sel & 0xFFFF)
                u = c + ETH + IP4
                _put(h, u, 49152 + (f * 977) % 16384, 2)  # source port: flow hash, as Linux does
                _put(h, u + 2, f_vxport[f], 2)
                _put(h, u + 4, udp_len, 2)  # checksum 0: allowed for IPv4, what VTEPs send
                h[:, u + UDP] = 0x08  # I flag: VNI valid
                _put(h, u + UDP + 4, f_vni[f] << 8, 4)
            _put(h, inner, f_mac[f, 2], 6)
            _put(h, inner + 6, f_mac[f, 3], 6)
            _put(h, inner + 12, 0x0800, 2)
            ip = inner + ETH
            proto = 6 if is_tcp else 17
            _ipv4(h, ip, inner_ip_len[sel], proto, f_src[f], f_dst[f], (sel * 7) & 0xFFFF)
            l4 = ip + IP4
            _put(h, l4, f_sport[f], 2)
            _put(h, l4 + 2, f_dport[f], 2)
            seg_len = inner_ip_len[sel] - IP4
            if is_tcp:
                _put(h, l4 + 4, seq[sel], 4)
                _put(h, l4 + 8, (f_isn[f] * 31) & 0xFFFFFFFF, 4)  # ack
                h[:, l4 + 12] = 0x50  # data offset 5 words
                h[:, l4 + 13] = np.where(payload[sel] > 0, 0x18, 0x10)  # PSH|ACK or ACK
                _put(h, l4 + 14, 64240, 2)
            else:
                _put(h, l4 + 4, seg_len, 2)
            _put(h, l4 + (16 if is_tcp else 6), _l4_checksum(h, ip, l4, seg_len, proto, l4len), 2)
            idx = rec_start[sel, None] + np.arange(hl)
            out[idx] = h
    return out


def main() -> None:
    """Command line: write a synthetic capture and say how long it took."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--vxlan", type=float, default=1 / 3, help="fraction of packets VXLAN-encapsulated")
    ap.add_argument("--flows", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = generate(a.packets, vxlan=a.vxlan, flows=a.flows, seed=a.seed)
    data.tofile(a.out)
    print(f"{a.out}: {a.packets:,} packets, {len(data):,} bytes in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
