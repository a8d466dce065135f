"""Does peak RSS under ``--memory`` stay flat as the input grows? The streamed commands on 1x, 2x, 4x sets.

    python benchmarks/bounded_growth.py                                  # 100k, 200k, 400k packets under 300MiB
    python benchmarks/bounded_growth.py --packets 100000 400000 --memory 300MiB --commands correlate paths
    python benchmarks/bounded_growth.py --packets 100000 --flows 2000 8000 32000 --flow-span 0.002   # per connection

gen_set.py's set (same seed, one stream seen at 4 points, 4 sightings a packet) is generated once per size into
``--dir`` (``set-N-sS``, reused when present; with ``--flows`` / ``--flow-span``, gen_set.py's short connections,
``set-N-sS-fF-spanX``: one set per size and per flow count). Each command runs as a user runs it, a fresh ``python -m
pcaptools.cli`` process started by a small launcher (a child's ``ru_maxrss`` starts from its parent's peak), with
the same ``--memory``, output written to a temporary directory:

- ``correlate DIR --memory M --json -o hops.parquet``
- ``paths DIR --memory M --json``
- ``paths DIR --memory M -o paths.parquet`` (``paths-parquet``)
- ``why DIR --memory M --json``
- ``merge DIR --memory M -o merged.pcapng``
- ``merge DIR --memory M -o merged.pcapng --dedup`` (``merge-dedup``)

Printed: peak RSS (``ru_maxrss`` from ``os.wait4``) and CPU seconds (user + system) per command per size, and the
growth per sighting between the smallest and the largest set ((peak_big - peak_small) / (sightings_big -
sightings_small), bytes) and per connection ((peak_big - peak_small) / (connections_big - connections_small), the
sets ordered by size then flows): bounded means flat within noise (a few bytes a sighting at most). One JSON line per run is
appended to ``results.jsonl`` (section ``bounded growth``). A run that fails is reported and the benchmark exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

_WRAP = r"""
import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
rc = os.waitstatus_to_exitcode(status)
sys.stderr.write(err.decode(errors="replace")[-2000:])
print(time.perf_counter() - t0, ru.ru_maxrss, rc, ru.ru_utime + ru.ru_stime)
"""
"""A small launcher: wall seconds, the child's peak RSS (KiB), its exit code and CPU seconds."""

COMMANDS = {
    "correlate": lambda d, m, out: ["correlate", str(d), "--memory", m, "--json", "-o", str(out / "hops.parquet")],
    "paths": lambda d, m, out: ["paths", str(d), "--memory", m, "--json"],  # noqa: ARG005
    "paths-parquet": lambda d, m, out: ["paths", str(d), "--memory", m, "-o", str(out / "paths.parquet")],
    "why": lambda d, m, out: ["why", str(d), "--memory", m, "--json"],  # noqa: ARG005
    "merge": lambda d, m, out: ["merge", str(d), "--memory", m, "-o", str(out / "merged.pcapng")],
    "merge-dedup": lambda d, m, out: ["merge", str(d), "--memory", m, "-o", str(out / "merged.pcapng"), "--dedup"],
}


def set_dir(root: Path, packets: int, seed: int, flows: int | None, flow_span: float | None) -> Path:
    """Where gen_set.py's set of these options lives under ``root`` (the default set's name unchanged)."""
    if flows is None and flow_span is None:
        return root / f"set-{packets}-s{seed}"
    return root / f"set-{packets}-s{seed}-f{flows or 200}-span{flow_span}"


def ensure_set(d: Path, packets: int, seed: int, flows: int | None = None, flow_span: float | None = None) -> dict:
    """Generate gen_set.py's set of ``packets`` at ``d`` unless it is there; its ground truth (``truth.json``;
    ``connections`` None for a set generated before it was recorded)."""
    if not (d / "truth.json").exists():
        import gen_set

        info = gen_set.generate(packets, d, seed=seed, flows=flows or 200, flow_span=flow_span)
        keys = ("packets", "sightings", "offset_ns", "retransmitted", "connections")
        (d / "truth.json").write_text(json.dumps({k: int(info[k]) for k in keys}))
    return {"connections": None, **json.loads((d / "truth.json").read_text())}


def run(args: list[str], env: dict) -> dict:
    """One fresh CLI process: wall seconds, peak RSS MiB, CPU seconds, exit code, stderr's tail."""
    p = subprocess.run([sys.executable, "-c", _WRAP, sys.executable, "-m", "pcaptools.cli", *args],
                       capture_output=True, text=True, env=env)  # fmt: skip
    wall, rss_kb, rc, cpu = p.stdout.split()
    return {"seconds": float(wall), "peak_rss_mb": int(rss_kb) / 1024, "cpu_seconds": float(cpu), "rc": int(rc),
            "stderr": p.stderr[-600:]}  # fmt: skip


def main() -> None:
    """Generate the sets, run every command on each, print the table and the growth per sighting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, nargs="+", default=[100_000, 200_000, 400_000], help="stream packets per set")
    ap.add_argument("--memory", default="300MiB", help="--memory of every run")
    ap.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flows", type=int, nargs="+", default=[None], help="gen_set.py --flows, a set per count")
    ap.add_argument("--flow-span", type=float, default=None, help="gen_set.py --flow-span (short connections)")
    ap.add_argument("--dir", type=Path, default=HERE / ".cache", help="where the sets are generated (reused)")
    ap.add_argument("--label", default="", help="recorded with each row (e.g. the commit)")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    sets = {}
    for n in a.packets:
        for fl in a.flows:
            d = set_dir(a.dir, n, a.seed, fl, a.flow_span)
            sets[(n, fl)] = (d, ensure_set(d, n, a.seed, fl, a.flow_span))
    rows, failed = [], False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with tempfile.TemporaryDirectory() as tmp:
        for cmd in a.commands:
            for (n, fl), (d, truth) in sets.items():
                r = run(COMMANDS[cmd](d, a.memory, Path(tmp)), env)
                row = {"section": "bounded growth", "run": stamp, "label": a.label, "command": cmd, "memory": a.memory,
                       "packets": n, "flows": fl, "flow_span": a.flow_span, "sightings": truth["sightings"],
                       "connections": truth["connections"], "load": round(os.getloadavg()[0], 2),
                       **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "stderr"}}  # fmt: skip
                rows.append(row)
                print(f"{cmd} {n:,}{'' if fl is None else f' x {fl:,} flows'}: rc {r['rc']}, peak RSS {r['peak_rss_mb']:.0f} MiB, {r['cpu_seconds']:.1f} CPU s, "
                      f"{r['seconds']:.1f} s wall (load {row['load']})", flush=True)  # fmt: skip
                if r["rc"]:
                    failed = True
                    print(r["stderr"], file=sys.stderr)
    with (HERE / "results.jsonl").open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    ns = list(sets)
    print(f"\n--memory {a.memory}; peak RSS MiB (CPU s) per set of stream packets / sightings / connections")
    heads = [f"{n:,} / {sets[(n, fl)][1]['sightings']:,} / {sets[(n, fl)][1]['connections'] or '?'}" for n, fl in ns]
    print("| command | " + " | ".join(heads) + " | growth B/sighting | growth B/connection |")
    print("|---|" + "---:|" * (len(ns) + 2))
    for cmd in a.commands:
        mine = {(r["packets"], r["flows"]): r for r in rows if r["command"] == cmd}
        lo, hi = mine[ns[0]], mine[ns[-1]]
        cells = " | ".join(f"{mine[k]['peak_rss_mb']:.0f} ({mine[k]['cpu_seconds']:.1f})" for k in ns)
        print(f"| {cmd} | {cells} | {_growth(lo, hi, 'sightings')} | {_growth(lo, hi, 'connections')} |")
    if failed:
        sys.exit(1)


def _growth(lo: dict, hi: dict, per: str) -> str:
    """Peak RSS difference of two runs per difference in ``per`` (sightings, connections), bytes; '-' unless the sets
    differ in what makes that grow (stream packets for sightings, flows for connections)."""
    varies = lo["packets"] != hi["packets"] if per == "sightings" else lo["flows"] != hi["flows"]
    d = (hi[per] or 0) - (lo[per] or 0)
    return f"{(hi['peak_rss_mb'] - lo['peak_rss_mb']) * 2**20 / d:.0f}" if varies and d and lo[per] and hi[per] else "-"


if __name__ == "__main__":
    main()
