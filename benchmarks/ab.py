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
    work = tempfile.mkdtemp(prefix="pcaptools-ab-")
    out = os.path.join(work, "hops.parquet")
    cap = os.path.abspath(a.set)
    every = {"correlate": ["correlate", cap, "--json", "-o", out], "paths": ["paths", cap],
             "paths-json": ["paths", cap, "--json"]}  # fmt: skip
    cmds = {k: every[k] for k in a.commands.split(",")}
    for tree in a.trees:  # each tree's runs import that tree, or the comparison compares nothing
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        got = subprocess.run([sys.executable, "-c", "import pcaptools; print(pcaptools.__file__)"], env=env, cwd=work,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        if not os.path.realpath(got).startswith(os.path.realpath(tree) + os.sep):
            sys.exit(f"ab.py: PYTHONPATH={tree} imports {got}, not that tree")
    res: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for name, args in cmds.items():
            for tree in a.trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                # run from a directory holding no tree: `python -m` puts the working directory before PYTHONPATH,
                # so run from a tree's root every run would import that tree (until 2026-12-02 it did)
                subprocess.run([sys.executable, "-m", "pcaptools", *args], env=env, cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)  # fmt: skip
                wall = time.perf_counter() - t0
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                res.setdefault((name, tree), []).append((wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime))
    for (name, tree), v in sorted(res.items()):
        ws, cs = [x[0] for x in v], [x[1] for x in v]
        print(f"{name:10} {tree:24} wall median {statistics.median(ws):.3f} min {min(ws):.3f}  "
              f"cpu median {statistics.median(cs):.3f} min {min(cs):.3f}")  # fmt: skip
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
