"""Alternate fresh CLI runs of two or more source trees on one capture set: median and min wall and CPU s per tree.

A whole command moves by 0.1-0.3 s from run to run on a shared 2-core machine; alternating the trees round by round
puts both under the same load, which one best-of-N run per tree does not. Usage:

    git archive OLD | tar -x -C /tmp/old && (cd /tmp/old && python -m compileall -q pcaptools)
    python benchmarks/ab.py /tmp/old . --rounds 8 --set benchmarks/.cache/set-200000-s0

Each tree runs as ``PYTHONPATH=TREE python -m pcaptools ...``; compile its bytecode and warm its numba cache
(``python -m pcaptools warmup``) first, or its first rounds pay for them.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="source trees (each with a pcaptools/ package)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--set", default="benchmarks/.cache/set-200000-s0", help="capture set (a directory)")
    ap.add_argument("--commands", default="correlate,paths", help="comma-separated: correlate, paths, paths-json")
    a = ap.parse_args()
    out = os.path.join(tempfile.mkdtemp(prefix="pcaptools-ab-"), "hops.parquet")
    every = {"correlate": ["correlate", a.set, "--json", "-o", out], "paths": ["paths", a.set],
             "paths-json": ["paths", a.set, "--json"]}  # fmt: skip
    cmds = {k: every[k] for k in a.commands.split(",")}
    res: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for name, args in cmds.items():
            for tree in a.trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "pcaptools", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)  # fmt: skip
                wall = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                res.setdefault((name, tree), []).append((wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
    for (name, tree), v in sorted(res.items()):
        ws, cs = [x[0] for x in v], [x[1] for x in v]
        print(f"{name:10} {tree:24} wall median {statistics.median(ws):.3f} min {min(ws):.3f}  "
              f"cpu median {statistics.median(cs):.3f} min {min(cs):.3f}")  # fmt: skip
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    shutil.rmtree(os.path.dirname(out))


if __name__ == "__main__":
    main()
