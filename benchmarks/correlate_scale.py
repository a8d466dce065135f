"""Correlation scaling: capture sets of 1M..8M packets in total, time per packet and peak memory per size.

Packet tables are generated directly (seeded): TCP/UDP flows between pods on two nodes, every packet
seen at 4 points (node-1:veth -> node-1:eth0 -> node-2:eth0 -> node-2:veth, replies backwards),
DNAT at node-1, VXLAN between the eth0 points, node-2's clock 3.7 ms ahead (and ``--drift-ppm``
fast, from the first packet on), 0.5% of sightings dropped. Each size runs in a fresh process (peak RSS is per size). When ``pcaptools.read_packets``
exists, the same run decodes a benchmarks/gen.py capture of as many packets for the ratio.

    python benchmarks/correlate_scale.py --sizes 1000000 2000000 [--drift-ppm 50] [--out benchmarks/results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OFFSET_NS = 3_700_000
POINTS = (("node-1", "veth1"), ("node-1", "eth0"), ("node-2", "eth0"), ("node-2", "veth2"))


def capture_set(total: int, seed: int = 1, drift_ppm: float = 0.0):
    """A CaptureSet of about ``total`` sightings (total/4 packets at 4 points); node-2 runs ``drift_ppm`` fast."""
    from pcaptools.correlate.capture_set import CaptureSet

    rng = np.random.default_rng(seed)
    n = total // 4
    nflows = max(n // 50, 1)
    flow = rng.integers(0, nflows, n)
    fwd = rng.random(n) < 0.5  # requests and replies of each flow
    pods = np.array([f"10.244.{i // 250}.{i % 250 + 2}" for i in range(1000)], object)
    a = rng.integers(0, 1000, nflows)
    b = rng.integers(0, 1000, nflows)
    ts = np.sort(rng.integers(0, 60_000_000_000, n)) + 1_700_000_000_000_000_000
    proto = np.where(rng.random(nflows) < 0.8, 6, 17)[flow].astype(np.int16)
    tcp = proto == 6
    base = {
        "file": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=["synthetic"]),
        "record": np.arange(n, dtype=np.int64),
        "iface": np.zeros(n, np.int32),
        "wirelen": rng.integers(60, 1514, n).astype(np.int32),
        "direction": pd.Categorical.from_codes(np.full(n, -1, np.int8), categories=["in", "out"]),
        "ifindex": np.full(n, -1, np.int32),
        "proto": proto,
        "ip_id": rng.integers(0, 65536, n).astype(np.int64),
        "ttl": np.full(n, 64, np.int16),
        "frag_offset": np.zeros(n, np.int32),
        "more_frags": np.zeros(n, bool),
        "tcp_flags": np.where(tcp, 16, -1).astype(np.int16),
        "tcp_seq": np.where(tcp, rng.integers(0, 2**32, n), -1).astype(np.int64),
        "tcp_ack": np.where(tcp, rng.integers(0, 2**32, n), -1).astype(np.int64),
        "payload_offset": np.full(n, 54, np.int32),
        "payload_len": rng.integers(0, 1400, n).astype(np.int32),
        "payload_hash": rng.integers(0, 2**63, n).astype(np.uint64),
    }
    sport = rng.integers(30000, 60000, nflows)[flow].astype(np.int32)
    frames = []
    for pos, (node, iface) in enumerate(POINTS):
        hop = np.where(fwd, pos, 3 - pos)
        when = ts + hop * 30_000 + rng.integers(0, 10_000, n)
        if node == "node-2":
            when = when + OFFSET_NS + np.round((when - ts[0]) * drift_ppm * 1e-6).astype(np.int64)
        s_code = np.where(fwd, a[flow], b[flow])
        d_code = np.where(fwd, b[flow], a[flow])
        vip = 1000  # code of the service VIP in the categories below
        if pos == 0:
            d_code = np.where(fwd, vip, d_code)
            s_code = np.where(fwd, s_code, vip)
        cats = list(pods) + ["10.96.0.10"]
        df = pd.DataFrame(
            {
                **base,
                "ts_ns": when.astype(np.int64),
                "src": pd.Categorical.from_codes(s_code, categories=cats),
                "dst": pd.Categorical.from_codes(d_code, categories=cats),
                "sport": np.where(fwd, sport, 80).astype(np.int32),
                "dport": np.where(fwd, 80, sport).astype(np.int32),
                "tunnel": pd.Categorical.from_codes(np.full(n, 0 if iface == "eth0" else -1, np.int8), categories=["vxlan"]),
                "vni": np.full(n, 1 if iface == "eth0" else -1, np.int64),
                "outer_src": pd.Categorical.from_codes(np.full(n, -1, np.int8), categories=["172.18.0.2"]),
                "outer_dst": pd.Categorical.from_codes(np.full(n, -1, np.int8), categories=["172.18.0.3"]),
            }
        )
        df = df[rng.random(n) >= 0.005]
        frames.append(({"node": node, "interface": iface, "file": "synthetic"}, df))
    return CaptureSet.from_frames(frames)


def _child(total: int, drift_ppm: float) -> None:
    from pcaptools.correlate.api import correlate

    t0 = time.perf_counter()
    cs = capture_set(total, drift_ppm=drift_ppm)
    t1 = time.perf_counter()
    corr = correlate(cs)
    t2 = time.perf_counter()
    rows = len(cs.packets)
    n2 = corr.offsets.set_index("node").loc["node-2"]
    # true offset of node-2 when its clock reads at_ns: OFFSET_NS plus the drift since the first packet
    rel = int(n2["at_ns"]) - int(cs.packets["ts_ns"].min())
    true_off = rel - (rel - OFFSET_NS) / (1 + drift_ppm * 1e-6)
    out = {
        "section": "correlate",
        "packets": rows,
        "build_s": t1 - t0,
        "correlate_s": t2 - t1,
        "ns_per_packet": (t2 - t1) / rows * 1e9,
        "offset_error_ns": int(round(n2["offset_ns"] - true_off)),
        "drift_ppm": drift_ppm,
        "skew_ppm": float(n2["skew_ppm"]),
        "journeys": corr.journeys,
        "lost_found": len(corr.losses),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    try:
        from pcaptools import read_packets  # type: ignore[attr-defined]
    except ImportError:
        read_packets = None
    if read_packets is not None:
        cap = HERE / ".cache" / f"corr_{rows}.pcap"
        if not cap.exists():
            cap.parent.mkdir(exist_ok=True)
            subprocess.run([sys.executable, str(HERE / "gen.py"), "--packets", str(rows), "--out", str(cap)], check=True)
        t3 = time.perf_counter()
        read_packets(str(cap))
        out["decode_s"] = time.perf_counter() - t3
        out["correlate_over_decode"] = out["correlate_s"] / out["decode_s"]
    print(json.dumps(out))


def main() -> None:
    """Run each size in a fresh process; print a table and optionally append JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[1_000_000, 2_000_000, 4_000_000, 8_000_000])
    ap.add_argument("--out", help="append JSON lines here (e.g. benchmarks/results.jsonl)")
    ap.add_argument("--drift-ppm", type=float, default=0.0, help="node-2's clock rate error (default 0)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.drift_ppm)
        return
    # compile the matcher once outside the timed runs
    subprocess.run([sys.executable, __file__, "--child", "40000"], check=True, capture_output=True)
    print(f"{'packets':>10}{'correlate s':>13}{'ns/packet':>11}{'build s':>9}{'decode s':>10}{'corr/decode':>12}{'offset err ns':>15}{'skew ppm':>10}{'peak RSS MiB':>14}")
    for size in args.sizes:
        res = subprocess.run([sys.executable, __file__, "--child", str(size), "--drift-ppm", str(args.drift_ppm)],
                             check=True, capture_output=True, text=True)  # fmt: skip
        r = json.loads(res.stdout.strip().splitlines()[-1])
        dec = f"{r['decode_s']:.2f}" if "decode_s" in r else "n/a"
        ratio = f"{r['correlate_over_decode']:.2f}" if "correlate_over_decode" in r else "n/a"
        print(f"{r['packets']:>10,}{r['correlate_s']:>13.2f}{r['ns_per_packet']:>11.0f}{r['build_s']:>9.2f}{dec:>10}{ratio:>12}"
              f"{r['offset_error_ns']:>15}{r['skew_ppm']:>10.3f}{r['peak_rss_mib']:>14.0f}", flush=True)  # fmt: skip
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
