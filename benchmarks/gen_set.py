"""Seeded synthetic capture set: one stream of packets seen at 4 capture points on 2 nodes, as pcap files + manifest.

A client pod on node-1 talks to a ClusterIP service (10.100.0.20:8080) whose backend pod runs on
node-2. Requests are DNATed on node-1 (service -> backend:80) and replies reverse-translated there.
Points, in request order: node-1's client veth, node-1:eth0, node-2:eth0, node-2's backend veth.
Most flows cross the uplinks VXLAN-encapsulated (UDP 4789, VNI 4096), the rest natively routed.
node-2's clock runs ``offset_ns`` ahead; each hop adds 15-45 us; a sighting is dropped with
probability ``drop`` (and then missing at every later point); ``retrans`` of the TCP packets are sent
again 200 ms later with a new IPv4 id. ``flow_span`` (a fraction of the stream, default: none) makes each flow a short
connection: its packets fall within that fraction of the stream around a random start, it takes the next ephemeral
source port (32768-60999 in turn, by start, as Linux allocates them) and a TCP flow opens with a SYN and a SYN-ACK and
ends with a FIN. Without it (the default) flows are spread over the whole stream and the files are those of before
the option, byte for byte. Writes ``manifest.json`` and an ``inventory.json`` in the shape
of ``kubectl get nodes,pods,services,endpointslices -A -o json``.

    python benchmarks/gen_set.py --packets 200000 --out /tmp/set
    python benchmarks/gen_set.py --packets 100000 --flows 8000 --flow-span 0.001 --out /tmp/many   # 8k short connections
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from gen import ETH, IP4, MTU_FRAME, REC, TCP, UDP, VXLAN_OVERHEAD, _fold, _ipv4, _l4_checksum, _put, _words

NODES = {"node-1": (0xC0A8000B, "10.244.0.0/24"), "node-2": (0xC0A8000C, "10.244.1.0/24")}
CLIENT, BACKEND, VIP = 0x0AF4000A, 0x0AF4010A, 0x0A640014  # 10.244.0.10, 10.244.1.10, 10.100.0.20
VIP_PORT, TARGET_PORT, VNI, VXLAN_PORT = 8080, 80, 4096, 4789
POINTS = (  # (node, interface, role, pod)
    ("node-1", "cali-client0", "pod-veth", "default/client-0"),
    ("node-1", "eth0", "node-uplink", ""),
    ("node-2", "eth0", "node-uplink", ""),
    ("node-2", "cali-backend0", "pod-veth", "default/backend-0"),
)
START_NS = 1_700_000_000 * 10**9


def _pcap(ts_ns: np.ndarray, encap: np.ndarray, tcp: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    """The bytes of a classic pcap (microseconds, Ethernet) holding one packet per row of the field arrays."""
    n = ts_ns.shape[0]
    l4h = np.where(tcp, TCP, UDP)
    inner_ip_len = IP4 + l4h + f["payload"]
    frame = ETH + inner_ip_len + np.where(encap, VXLAN_OVERHEAD, 0)
    rec_start = 24 + np.r_[0, np.cumsum(REC + frame)[:-1]] if n else np.zeros(0, np.int64)
    out = np.zeros(24 + int((REC + frame).sum()), np.uint8)
    out[:24] = np.frombuffer(np.array([0xA1B2C3D4], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
                             + np.array([0, 0, 262144, 1], "<u4").tobytes(), np.uint8)  # fmt: skip
    for is_vx in (False, True):
        for is_tcp in (False, True):
            sel = np.flatnonzero((encap == is_vx) & (tcp == is_tcp))
            if not sel.size:
                continue
            l4len = TCP if is_tcp else UDP
            inner = REC + (VXLAN_OVERHEAD if is_vx else 0)
            hl = inner + ETH + IP4 + l4len
            h = np.zeros((sel.size, hl), np.uint8)
            _put(h, 0, ts_ns[sel] // 10**9, 4, "little")
            _put(h, 4, ts_ns[sel] % 10**9 // 1000, 4, "little")
            _put(h, 8, frame[sel], 4, "little")
            _put(h, 12, frame[sel], 4, "little")
            if is_vx:
                c = REC
                _put(h, c, 0x02000000AA01, 6)
                _put(h, c + 6, 0x02000000AA02, 6)
                _put(h, c + 12, 0x0800, 2)
                udp_len = frame[sel] - ETH - IP4
                _ipv4(h, c + ETH, udp_len + IP4, 17, f["osrc"][sel], f["odst"][sel], f["ip_id"][sel] ^ 0x5A5A)
                u = c + ETH + IP4
                _put(h, u, 49152 + (f["sport"][sel] * 977) % 16384, 2)
                _put(h, u + 2, VXLAN_PORT, 2)
                _put(h, u + 4, udp_len, 2)
                h[:, u + UDP] = 0x08
                _put(h, u + UDP + 4, VNI << 8, 4)
            _put(h, inner, 0x02000000BB01, 6)
            _put(h, inner + 6, 0x02000000BB02, 6)
            _put(h, inner + 12, 0x0800, 2)
            ip = inner + ETH
            proto = 6 if is_tcp else 17
            _ipv4(h, ip, inner_ip_len[sel], proto, f["src"][sel], f["dst"][sel], f["ip_id"][sel])
            h[:, ip + 8] = f["ttl"][sel]
            h[:, ip + 10 : ip + 12] = 0  # the header checksum again, after the TTL changed
            _put(h, ip + 10, _fold(_words(h, ip, IP4)), 2)
            l4 = ip + IP4
            _put(h, l4, f["sport"][sel], 2)
            _put(h, l4 + 2, f["dport"][sel], 2)
            seg_len = inner_ip_len[sel] - IP4
            if is_tcp:
                _put(h, l4 + 4, f["seq"][sel], 4)
                _put(h, l4 + 8, f["ack"][sel], 4)
                h[:, l4 + 12] = 0x50
                h[:, l4 + 13] = f["flags"][sel]
                _put(h, l4 + 14, 64240, 2)
            else:
                _put(h, l4 + 4, seg_len, 2)
            _put(h, l4 + (16 if is_tcp else 6), _l4_checksum(h, ip, l4, seg_len, proto, l4len), 2)
            out[rec_start[sel, None] + np.arange(hl)] = h
    return out


def generate(n: int, out: Path, *, flows: int = 200, vxlan: float = 0.75, drop: float = 0.005, retrans: float = 0.002,
             offset_ns: int = 3_700_000, seed: int = 0, flow_span: float | None = None) -> dict:  # fmt: skip
    """Write the capture set of a stream of about ``n`` packets to ``out``; return its ground truth summary
    (``connections``: flows with packets)."""
    rng = np.random.default_rng(seed)
    f_tcp = rng.random(flows) < 0.8
    f_vx = rng.random(flows) < vxlan
    f_sport = rng.integers(32768, 61000, flows)
    flow = rng.integers(0, flows, n)
    if flow_span is not None:  # its own generator: the default draws stay those of before
        flow, f_sport = _localized(flow, flows, flow_span, np.random.default_rng([seed, 1]))
    fwd = rng.random(n) < 0.55
    _, first_of_flow = np.unique(flow, return_index=True)
    fwd[first_of_flow] = True  # every connection opens with a request
    tcp = f_tcp[flow]
    kind = rng.random(n)
    max_payload = MTU_FRAME - ETH - IP4 - np.where(tcp, TCP, UDP) - VXLAN_OVERHEAD
    payload = np.where(kind < 0.45, 0, np.where(kind < 0.85, max_payload, (rng.random(n) * max_payload).astype(np.int64)))
    if flow_span is not None:
        opening, closing = _handshakes(flow, fwd, tcp)
        payload[opening] = 0
    t = START_NS + np.cumsum(rng.exponential(8_000, n).astype(np.int64) + 1)
    ip_id = np.empty(n, np.int64)  # per flow and direction, counting up as Linux does
    key = flow * 2 + fwd
    order = np.argsort(key, kind="stable")
    first = np.r_[0, np.flatnonzero(np.diff(key[order])) + 1]
    rank = np.arange(n) - np.repeat(first, np.diff(np.r_[first, n]))
    ip_id[order] = (rank + (key[order] * 7919)) & 0xFFFF
    seq = np.empty(n, np.int64)
    seq[order] = (np.cumsum(payload[order]) + key[order] * 104729) & 0xFFFFFFFF
    ack = rng.integers(0, 2**32, n)
    flags = np.where(payload > 0, 0x18, 0x10)
    if flow_span is not None:
        flags[opening] = np.where(fwd[opening], 0x02, 0x12)  # SYN, SYN-ACK
        flags[closing] |= 0x01  # FIN
    connections = int(np.unique(flow).size)
    # retransmissions: the same segment again 200 ms later, with a new IPv4 id
    again = np.flatnonzero(tcp & (rng.random(n) < retrans))
    cols = {"flow": flow, "fwd": fwd, "tcp": tcp, "payload": payload, "t": t, "ip_id": ip_id, "seq": seq, "ack": ack, "flags": flags}
    for k, v in cols.items():
        extra = v[again]
        if k == "t":
            extra = extra + 200_000_000
        elif k == "ip_id":
            extra = (extra + 30011) & 0xFFFF
        cols[k] = np.concatenate([v, extra])
    m = cols["t"].shape[0]
    flow, fwd, tcp = cols["flow"], cols["fwd"], cols["tcp"]
    # each packet travels the points in order (requests 0->3, replies 3->0); a drop ends its journey
    hop_at = np.cumsum(rng.integers(15_000, 45_000, (m, 4)), axis=1)
    lost_from = np.where(rng.random((m, 4)) < drop, np.arange(4)[None, :], 4).min(axis=1)
    lost_from = np.maximum(lost_from, 1)  # the first point always sees it
    sport = f_sport[flow]
    out.mkdir(parents=True, exist_ok=True)
    captures, sightings = [], 0
    for i, (node, iface, role, pod) in enumerate(POINTS):
        step = np.where(fwd, i, 3 - i)  # position of this point on the packet's way
        keep = step < lost_from
        ts = cols["t"] + hop_at[np.arange(m), step] + (offset_ns if node == "node-2" else 0)
        rows = np.flatnonzero(keep)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        f_fwd = fwd[rows]
        nat_side = i == 0  # the client's veth sees the service address; every later point the backend's
        svc = (VIP, VIP_PORT) if nat_side else (BACKEND, TARGET_PORT)
        on_wire = (i in (1, 2)) & f_vx[flow[rows]]
        n1, n2 = NODES["node-1"][0], NODES["node-2"][0]
        fields = {
            "payload": cols["payload"][rows],
            "src": np.where(f_fwd, CLIENT, svc[0]).astype(np.uint64),
            "dst": np.where(f_fwd, svc[0], CLIENT).astype(np.uint64),
            "sport": np.where(f_fwd, sport[rows], svc[1]),
            "dport": np.where(f_fwd, svc[1], sport[rows]),
            "ip_id": cols["ip_id"][rows],
            "ttl": 64 - (step[rows] + 1) // 2,  # routed at node-1 between points 0-1, at node-2 between 2-3
            "seq": cols["seq"][rows],
            "ack": cols["ack"][rows],
            "flags": cols["flags"][rows],
            "osrc": np.where(f_fwd, n1, n2).astype(np.uint64),
            "odst": np.where(f_fwd, n2, n1).astype(np.uint64),
        }
        data = _pcap(ts[rows], on_wire, tcp[rows], fields)
        name = f"{node}/{iface}.pcap"
        (out / node).mkdir(exist_ok=True)
        data.tofile(out / name)
        sightings += rows.size
        captures.append({"file": name, "node": node, "interface": iface, "role": role, **({"pod": pod} if pod else {})})
    (out / "manifest.json").write_text(json.dumps({"cni": "synthetic-vxlan", "captures": captures}, indent=1))
    (out / "inventory.json").write_text(json.dumps(_inventory(), indent=1))
    return {"packets": int(m), "sightings": int(sightings), "offset_ns": offset_ns, "retransmitted": int(again.size),
            "connections": connections}


def _localized(flow: np.ndarray, flows: int, span: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(each packet's flow, each flow's source port) when every flow's packets fall within ``span`` of the stream: the
    packets' flows reordered by a position drawn in their flow's interval, ports given in turn by flow start."""
    n = flow.shape[0]
    start = rng.random(flows) * (1 - span) * n
    pos = start[flow] + rng.random(n) * span * n
    by_start = np.empty(flows, np.int64)
    by_start[np.argsort(start, kind="stable")] = np.arange(flows)
    return flow[np.argsort(pos, kind="stable")], 32768 + by_start % (61000 - 32768)


def _handshakes(flow: np.ndarray, fwd: np.ndarray, tcp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the SYN and SYN-ACK packets: each TCP flow's first request and first reply, its last packet: the FIN)."""
    i = np.arange(flow.shape[0])
    firsts = []
    for side in (fwd, ~fwd):
        rows = i[side]
        _, at = np.unique(flow[rows], return_index=True)
        firsts.append(rows[at])
    opening = np.sort(np.concatenate(firsts))
    _, last = np.unique(flow[::-1], return_index=True)
    closing = np.setdiff1d(flow.shape[0] - 1 - last, opening)
    return opening[tcp[opening]], closing[tcp[closing]]


def _ip(v: int) -> str:
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))


def _inventory() -> dict:
    """Two nodes, the client and backend pods, the ClusterIP service and its EndpointSlice."""
    items: list[dict] = []
    for name, (addr, cidr) in NODES.items():
        items.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                      "status": {"addresses": [{"type": "InternalIP", "address": _ip(addr)}, {"type": "Hostname", "address": name}]}})  # fmt: skip
    for pod, node, addr, labels in (("client-0", "node-1", CLIENT, {"app": "client"}), ("backend-0", "node-2", BACKEND, {"app": "web"})):
        items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "default", "labels": labels},
                      "spec": {"nodeName": node}, "status": {"phase": "Running", "hostIP": _ip(NODES[node][0]),
                      "podIP": _ip(addr), "podIPs": [{"ip": _ip(addr)}]}})  # fmt: skip
    items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"type": "ClusterIP", "clusterIP": _ip(VIP), "clusterIPs": [_ip(VIP)], "selector": {"app": "web"},
                           "ports": [{"name": "http", "port": VIP_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}]}})  # fmt: skip
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
                  "addressType": "IPv4", "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
                  "endpoints": [{"addresses": [_ip(BACKEND)], "nodeName": "node-2", "conditions": {"ready": True},
                                 "targetRef": {"kind": "Pod", "name": "backend-0", "namespace": "default"}}]})  # fmt: skip
    return {"apiVersion": "v1", "kind": "List", "items": items}


def main() -> None:
    """Command line: write a capture set and print its size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flows", type=int, default=200, help="flows (connections) in the stream")
    ap.add_argument("--flow-span", type=float, default=None,
                    help="each flow's packets within this fraction of the stream (0-1), short connections with a "
                         "handshake; default: spread over the whole stream")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.flow_span is not None and not 0 < a.flow_span <= 1:
        ap.error(f"--flow-span must be a fraction of the stream in (0, 1], got {a.flow_span}")
    t0 = time.perf_counter()
    info = generate(a.packets, a.out, flows=a.flows, seed=a.seed, flow_span=a.flow_span)
    print(f"{a.out}: {info} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
