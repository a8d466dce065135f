"""pcaptools.dask against one process: packets/s of decode, flows and correlate with 1 and 2 Dask workers and in
this process, in one run on one generated capture set (benchmarks/gen_set.py), plus the bytes each step shuffles.

    python benchmarks/dask_bench.py --packets 100000 --workers 1 2

Each figure is the best of ``--repeat`` runs after one warm-up (numba's cache loaded in every worker). Workers
are processes with one thread each (a LocalCluster, as ``--workers N`` starts it); the Dask figures include
task scheduling, the shuffles and gathering the result on the client (flows, hops), not cluster start-up.
"packets" are sightings: records over all capture points. Appends one JSON line per figure to results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _files(set_dir: Path) -> list[str]:
    doc = json.loads((set_dir / "manifest.json").read_text())
    return list(dict.fromkeys(str(set_dir / c["file"]) for c in doc["captures"]))


def _best(fn, repeat: int) -> float:
    fn()  # warm-up: numba caches, page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def single_process(set_dir: Path, files: list[str]) -> dict:
    """The three steps in this process, as the CLI runs them without Dask."""
    import pcaptools
    from pcaptools.correlate.api import correlate
    from pcaptools.k8s.discover import load_captures

    return {
        "decode": lambda: len(pcaptools.read_packets(files, payload_hash=True)),
        "flows": lambda: len(pcaptools.read_flows(files)),
        "correlate": lambda: correlate(load_captures(str(set_dir))).journeys,
    }


def on_dask(set_dir: Path, files: list[str], chunk_records: int) -> dict:
    """The same steps on the current Dask client: decode counts rows on the workers (nothing gathered)."""
    from pcaptools.dask import correlate_captures, read_flows, read_packets

    return {
        "decode": lambda: int(read_packets(files, chunk_records=chunk_records, payload_hash=True)
                              .map_partitions(len).compute().sum()),  # fmt: skip
        "flows": lambda: len(read_flows(files, chunk_records=chunk_records)),
        "correlate": lambda: correlate_captures(str(set_dir), chunk_records=chunk_records).journeys,
    }


def shuffled_bytes(set_dir: Path) -> dict:
    """Bytes per row of what the flow and correlation shuffles move (the frames handed to ``shuffle``)."""
    import pcaptools
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.dask.correlation import _corrected, _with_fingerprint
    from pcaptools.dask.flows import _routable, _route

    cs = CaptureSet.load(set_dir)
    nn = len(cs.nodes)
    zero = {"offset": np.zeros(nn), "skew": np.zeros(nn), "at": np.zeros(nn, np.int64)}
    point_node = np.array([cs.nodes.index(p.node) for p in cs.points], np.int64)
    m = _corrected(_with_fingerprint(cs.packets), zero, point_node)
    heads = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    r = _route(_routable(pcaptools.read_packets(_files(set_dir)[0])), heads)
    return {"correlate": m.memory_usage(index=False).sum() / len(m), "flows": r.memory_usage(index=False).sum() / len(r)}


def main() -> None:
    """Generate (or reuse) the set, run every configuration, print a table and append JSON lines."""
    import gen_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000, help="packets of the generated stream (x ~4 sightings)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunk-records", type=int, default=1 << 16, help="records per partition")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    set_dir = HERE / ".cache" / f"dask_set_{args.packets}_{args.seed}"
    if not (set_dir / "manifest.json").exists():
        set_dir.mkdir(parents=True, exist_ok=True)
        gen_set.generate(args.packets, set_dir, seed=args.seed)
    files = _files(set_dir)
    import pcaptools
    from pcaptools.dask.cluster import connect

    sightings = sum(len(pcaptools.read_packets(f)) for f in files)
    size_mb = sum(os.path.getsize(f) for f in files) / 2**20
    rows = []
    for step, fn in single_process(set_dir, files).items():
        rows.append(("1 process", step, _best(fn, args.repeat)))
    for n in args.workers:
        with connect(workers=n):
            for step, fn in on_dask(set_dir, files, args.chunk_records).items():
                rows.append((f"dask, {n} worker{'s' * (n > 1)}", step, _best(fn, args.repeat)))
    per_row = shuffled_bytes(set_dir)
    run = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{sightings:,} sightings ({size_mb:,.0f} MiB, {len(files)} files), partitions of {args.chunk_records:,} "
          f"records, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'configuration':<18} {'step':<10} {'seconds':>8} {'packets/s':>12} {'vs 1 process':>12}")
    base = {step: s for who, step, s in rows if who == "1 process"}
    with open(HERE / "results.jsonl", "a") as out:
        for who, step, s in rows:
            print(f"{who:<18} {step:<10} {s:8.2f} {sightings / s:12,.0f} {base[step] / s:11.2f}x")
            out.write(json.dumps({"run": run, "section": f"dask {step}", "configuration": who, "records": sightings,
                                  "records_per_s": sightings / s, "seconds": s, "set_mb": round(size_mb, 1),
                                  "chunk_records": args.chunk_records, "cpus": os.cpu_count()}) + "\n")  # fmt: skip
    print(f"shuffled per row: correlate {per_row['correlate']:.0f} bytes per sighting, flows {per_row['flows']:.0f} "
          "bytes per packet (in memory; the wire format is about the same)")  # fmt: skip


if __name__ == "__main__":
    main()
