"""Alternate fresh CLI runs of two or more source trees on one capture set: median and min wall and CPU s per tree.

A whole command moves by 0.1-0.3 s from run to run on a shared 2-core machine; alternating the trees round by round
puts both under the same load, which one best-of-N run per tree does not. Each run's user and system CPU seconds are
reported apart, and its peak anonymous memory (``RssAnon``, polled every 20 ms): on this VM a page touched for the
first time costs more than most work done in it (zeroed by the kernel, ~1-2.5 s of system time per GiB when the host
has just taken the memory back), and the peak of fresh memory is the steadier figure. ``read`` is the baseline of
issue #12, ``read_packets`` of the set's capture files as a fresh process. Usage:

    git archive OLD | tar -x -C /tmp/old && (cd /tmp/old && python -m compileall -q pcaptools)
    python benchmarks/ab.py /tmp/old . --rounds 8 --set benchmarks/.cache/set-200000-s0

Each tree runs as ``PYTHONPATH=TREE python -m pcaptools ...``; compile its bytecode and warm its numba cache
(``python -m pcaptools warmup``) first, or its first rounds pay for them.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="source trees (each with a pcaptools/ package)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--set", default="benchmarks/.cache/set-200000-s0", help="capture set (a directory)")
    ap.add_argument("--commands", default="correlate,paths", help="comma-separated: correlate, paths, paths-json, read")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pcaptools-ab-")
    out = os.path.join(work, "hops.parquet")
    cap = os.path.abspath(a.set)
    files = sorted(glob.glob(os.path.join(cap, "*", "*.pcap*")) or glob.glob(os.path.join(cap, "*.pcap*")))
    every = {"correlate": ["-m", "pcaptools", "correlate", cap, "--json", "-o", out], "paths": ["-m", "pcaptools", "paths", cap],
             "paths-json": ["-m", "pcaptools", "paths", cap, "--json"],
             "read": ["-c", "import sys, pcaptools; pcaptools.read_packets(sys.argv[1:], payload_hash=True)", *files]}  # fmt: skip
    cmds = {k: every[k] for k in a.commands.split(",")}
    for tree in a.trees:  # each tree's runs import that tree, or the comparison compares nothing
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        got = subprocess.run([sys.executable, "-c", "import pcaptools; print(pcaptools.__file__)"], env=env, cwd=work,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        if not os.path.realpath(got).startswith(os.path.realpath(tree) + os.sep):
            sys.exit(f"ab.py: PYTHONPATH={tree} imports {got}, not that tree")
    res: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    loads = []
    for _ in range(a.rounds):
        for name, args in cmds.items():
            for tree in a.trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                t0 = time.perf_counter()
                # run from a directory holding no tree: `python -m` puts the working directory before PYTHONPATH,
                # so run from a tree's root every run would import that tree (until 2026-12-02 it did)
                p = subprocess.Popen([sys.executable, *args], env=env, cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
                peak, done = [0], threading.Event()
                poll = threading.Thread(target=_peak_anon, args=(p.pid, peak, done), daemon=True)
                poll.start()
                _, status, ru = os.wait4(p.pid, 0)
                done.set()
                poll.join()
                wall = time.perf_counter() - t0
                if status:
                    sys.exit(f"ab.py: {name} of {tree} failed (wait status {status})")
                res.setdefault((name, tree), []).append((wall, ru.ru_utime + ru.ru_stime, ru.ru_utime, ru.ru_stime, peak[0] / 1024))
                loads.append(os.getloadavg()[0])
    for (name, tree), v in sorted(res.items()):
        ws, cs, us, ss, ms = ([x[i] for x in v] for i in range(5))
        print(f"{name:10} {tree:24} wall median {statistics.median(ws):.3f} min {min(ws):.3f}  "
              f"cpu median {statistics.median(cs):.3f} min {min(cs):.3f} (user {statistics.median(us):.2f}, "
              f"sys {statistics.median(ss):.2f})  peak anon {statistics.median(ms):,.0f} MiB")  # fmt: skip
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}; now (1, 5, 15 min):",
          " ".join(f"{x:.1f}" for x in os.getloadavg()))
    shutil.rmtree(work)


def _peak_anon(pid: int, peak: list[int], done: threading.Event) -> None:
    """Largest ``RssAnon`` (KiB) of process ``pid`` seen every 20 ms until it exits (or ``done``), in ``peak[0]``."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:  # gone (or no /proc)
            return
        done.wait(0.02)


if __name__ == "__main__":
    main()
