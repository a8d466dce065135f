"""``read_packets`` on one core and on every core, in trees side by side: wall and CPU time, and the critical path.

On a shared machine wall time says little, so each run also reports CPU seconds (every thread) and the
critical path: the main thread's CPU time plus, for each parallel stage (ranged record walk, decode walk,
category columns), the busiest worker thread's, plus the workers' CPU time outside those stages (fills,
page-table work, stacking) spread over the cores. That is what the wall time would be with the cores to itself. Each configuration runs in a fresh
process pinned with ``os.sched_setaffinity`` (``--cores 1`` is ``taskset -c 0``), after one warm-up call.

    python benchmarks/decode_scaling.py FILE...                       # this tree, 1 and 2 cores
    python benchmarks/decode_scaling.py --tree /work/main --tree . --repeat 5 FILE...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, os, resource, sys, threading, time
cores, repeat, hash_, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
import pcaptools.decode.table as tb
import pcaptools.decode.walk as wk
from pcaptools.packets import read_packets
log = []
def wrap(mod, name, tag):
    f = getattr(mod, name, None)
    if f is None:
        return
    def g(*a, **k):
        t = time.thread_time(); r = f(*a, **k)
        log.append((tag, threading.get_ident(), time.thread_time() - t)); return r
    setattr(mod, name, g)
for name in ("pcaptools.io.split", "pcaptools.io.split_pcapng"):  # the pcap and pcapng range walks
    try:
        wrap(__import__(name, fromlist=["_"]), "_walk_range", "record walk")
    except ImportError:
        pass
wrap(wk, "_walk", "decode walk")
for fn in ("_mac_category", "_ip_category", "_vocab"):
    wrap(tb, fn, "categories")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
read_packets(files, payload_hash=hash_)
runs = []
for _ in range(repeat):
    log.clear(); main = threading.get_ident()
    c0, t0, w0 = cpu(), time.thread_time(), time.perf_counter()
    n = len(read_packets(files, payload_hash=hash_))
    wall, main_cpu, total = time.perf_counter() - w0, time.thread_time() - t0, cpu() - c0
    stages = {}
    for tag, tid, c in log:
        if tid != main:
            stages.setdefault(tag, {}).setdefault(tid, 0.0)
            stages[tag][tid] += c
    busiest = sum(max(v.values()) for v in stages.values())
    rest = max(0.0, total - main_cpu - sum(sum(v.values()) for v in stages.values()))  # worker CPU outside the stages
    runs.append({"wall": wall, "cpu": total, "main": main_cpu, "critical": main_cpu + busiest + rest / cores, "rows": n,
                 "stages": {k: round(sum(v.values()), 4) for k, v in stages.items()}})
best = lambda k: min(r[k] for r in runs)
print(json.dumps({"rows": runs[0]["rows"], "wall": best("wall"), "cpu": best("cpu"), "main": best("main"),
                  "critical": best("critical"), "stages": min(runs, key=lambda r: r["cpu"])["stages"],
                  "load": os.getloadavg()[0]}))
"""


def run(tree: str, files: list[str], cores: int, repeat: int, payload_hash: bool) -> dict:
    """One fresh process of ``tree``'s pcaptools on ``cores`` cores: best wall, CPU and critical path of ``repeat`` calls."""
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    files = [str(Path(f).resolve()) for f in files]  # the child runs in the tree's directory
    out = subprocess.run([sys.executable, "-c", _CHILD, str(cores), str(repeat), "1" if payload_hash else "0", *files],
                         capture_output=True, text=True, env=env, cwd=tree, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run every tree on 1 core and on all usable cores, alternating, and print one row per configuration."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tree", action="append", help="a pcaptools checkout (default: this one); repeat to compare")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1, help="alternate the configurations this many times")
    ap.add_argument("--hash", action="store_true", help="payload_hash=True, as the correlator reads")
    a = ap.parse_args()
    trees = a.tree or [str(HERE.parent)]
    all_cores = len(os.sched_getaffinity(0))
    rows: dict[tuple[str, int], list[dict]] = {}
    for _ in range(a.rounds):
        for cores in sorted({1, all_cores}):
            for tree in trees:
                rows.setdefault((tree, cores), []).append(run(tree, a.files, cores, a.repeat, a.hash))
    size = sum(os.path.getsize(f) for f in a.files)
    print(f"{len(a.files)} file(s), {size / 2**20:.0f} MiB, payload_hash={a.hash}, best of {a.repeat} x {a.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'tree':<22}{'cores':>6}{'rows':>10}{'wall s':>8}{'cpu s':>8}{'main s':>8}{'critical s':>11}"
          f"{'Mpkt/s (crit)':>14}  stages (CPU s, all threads)")  # fmt: skip
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with (HERE / "results.jsonl").open("a") as f:
        for (tree, cores), rs in rows.items():
            r = {k: min(x[k] for x in rs) for k in ("wall", "cpu", "main", "critical")}
            st = min(rs, key=lambda x: x["cpu"])["stages"]
            print(f"{Path(tree).resolve().name:<22}{cores:>6}{rs[0]['rows']:>10,}{r['wall']:>8.3f}{r['cpu']:>8.3f}"
                  f"{r['main']:>8.3f}{r['critical']:>11.3f}{rs[0]['rows'] / r['critical'] / 1e6:>14.2f}  {st}")  # fmt: skip
            f.write(json.dumps({"run": stamp, "section": "decode scaling", "tree": str(tree), "cores": cores,
                                "files": len(a.files), "mib": round(size / 2**20, 1), "payload_hash": a.hash,
                                "rows": rs[0]["rows"], **{k: round(v, 4) for k, v in r.items()}, "stages": st,
                                "load": rs[-1]["load"]}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
