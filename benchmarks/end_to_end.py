"""End-to-end section of benchmarks/run.py: the CLI commands a user runs on a capture set, against decoding it.

On a generated 4-point capture set (benchmarks/gen_set.py: NAT, VXLAN and native flows, node-2's
clock 3.7 ms ahead, drops, retransmissions) it times, each in a fresh process as a user runs it
(interpreter start, imports, numba cache loads and output included), with the process's peak RSS:

* ``pcaptools correlate DIR --json -o hops.parquet``, ``pcaptools paths DIR`` and ``pcaptools paths DIR --json``;
* ``read_packets`` of the same files, twice: in a child process after one warm-up call (the core alone, "warm"),
  and as a fresh process, ``python -c "import pcaptools; pcaptools.read_packets(files, payload_hash=True)"``
  (interpreter, imports and numba's first call paid, as by the commands: the process a command is compared with),
  and that process once more ended as a command ends, without the interpreter's teardown (``x no teardown``: like
  for like, since the commands skip it);
* a plain read of the files' bytes, ``tcpdump -r F -w /dev/null`` per file, and the decoder
  baselines of decode_sections.py (a dpkt loop, ``tshark -T fields``) on prefixes, as packets/s.

Every figure comes from the same run, so ratios compare like with like on a shared machine; each row's time is
given over both read_packets figures (``x read_packets`` warm, ``x read_packets process``), and the fresh processes'
CPU seconds (user + system, what a loaded machine distorts least) beside their wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _files(set_dir: Path) -> list[str]:
    doc = json.loads((set_dir / "manifest.json").read_text())
    return [str(set_dir / c["file"]) for c in doc["captures"]]


_WRAP = """
import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)
"""


def _run(cmd: list[str], **kw) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of ``cmd``, output discarded. A small fresh
    interpreter starts it: a child's ru_maxrss starts from its parent's peak (it survives exec), and this benchmark's
    is large."""
    out = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True, **kw)
    wall, rss_kb, rc, cpu = out.stdout.split()
    if out.returncode or int(rc):
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}): {out.stderr[-2000:]}")
    return float(wall), int(rss_kb) / 1024, float(cpu)


def _best(cmd: list[str], repeat: int, **kw) -> dict:
    runs = [_run(cmd, **kw) for _ in range(repeat)]
    wall = min(r[0] for r in runs)  # the least disturbed run on a shared machine
    return {"seconds": wall, "seconds_all": [round(r[0], 3) for r in runs], "peak_rss_mb": max(r[1] for r in runs),
            "cpu_seconds": min(r[2] for r in runs)}  # fmt: skip


_READ_PACKETS_PROCESS = "import sys, pcaptools; pcaptools.read_packets(sys.argv[1:], payload_hash=True)"
"""What a command is compared with as a process: the decode of the same files, as a user's fresh ``python -c`` runs it."""

_READ_PACKETS_ENDED = _READ_PACKETS_PROCESS + "; from pcaptools.process import end_process; end_process(0)"
"""The same process ended as a command ends (:func:`pcaptools.process.end_process`: no interpreter teardown, ~0.5 s),
so that the commands, which skip it, are also compared like for like."""

_READ_PACKETS = """
import json, sys, time
from pcaptools.packets import read_packets
files = sys.argv[1:]
read_packets(files)  # warm-up: numba cache, page cache
best, rows = float("inf"), 0
for _ in range({repeat}):
    t0 = time.perf_counter(); rows = len(read_packets(files)); best = min(best, time.perf_counter() - t0)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"seconds": best, "rows": rows, "peak_rss_mb": hwm / 1024}}))
"""


def run(packets: int, repeat: int, cache: Path, *, flows: int | None = None, flow_span: float | None = None) -> list[dict]:
    """Generate (or reuse) the capture set and time every command; one result dict per row of the table. ``flows``
    and ``flow_span``: gen_set.py's many-short-connections options (bounded_growth.py's set of the same options)."""
    sys.path.insert(0, str(HERE))
    from bounded_growth import set_dir as set_of
    from decode_sections import dpkt_decode, tshark_fields
    from gen_set import generate
    from startup import user_env

    set_dir = set_of(cache, packets, 0, flows, flow_span)
    if not (set_dir / "manifest.json").exists() or not (set_dir / "truth.json").exists():  # (gen_set.py by hand: no truth)
        t0 = time.perf_counter()
        info = generate(packets, set_dir, **({} if flows is None and flow_span is None else {"flows": flows or 200, "flow_span": flow_span}))
        (set_dir / "truth.json").write_text(json.dumps(info))
        print(f"generated {set_dir.name} ({info['sightings']:,} sightings) in {time.perf_counter() - t0:.1f} s")
    info = json.loads((set_dir / "truth.json").read_text())
    files = _files(set_dir)
    size = sum(os.path.getsize(f) for f in files)
    sightings = int(info["sightings"])
    pyc = tempfile.TemporaryDirectory(prefix="pcaptools-pyc-")  # bytecode cached as a user's install caches it
    env = user_env(pyc.name)
    cli = [sys.executable, "-m", "pcaptools.cli"]
    rows: list[dict] = []

    def add(name: str, r: dict, records: int) -> None:
        rows.append({"section": f"e2e {name}", "records": records, "records_per_s": records / r["seconds"], **r})

    best = float("inf")  # plain read: every file's bytes into memory (the first pass warms the page cache)
    for _ in range(2):
        t0 = time.perf_counter()
        for f in files:
            with open(f, "rb") as fh:
                fh.read()
        best = min(best, time.perf_counter() - t0)
    add("plain read", {"seconds": best}, sightings)
    out = subprocess.run([sys.executable, "-c", _READ_PACKETS.format(repeat=repeat), *files], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    rp = json.loads(out.stdout.strip().splitlines()[-1])
    add("read_packets (warm, in process)", rp, rp["rows"])
    rp_proc = _best([sys.executable, "-c", _READ_PACKETS_PROCESS, *files], repeat, env=env)
    add("read_packets (fresh process)", rp_proc, sightings)
    rp_ended = _best([sys.executable, "-c", _READ_PACKETS_ENDED, *files], repeat, env=env)
    add("read_packets (process, no teardown)", rp_ended, sightings)
    with tempfile.TemporaryDirectory() as tmp:
        add("pcaptools correlate --json -o hops.parquet",
            _best([*cli, "correlate", str(set_dir), "--json", "-o", str(Path(tmp) / "hops.parquet")], repeat, env=env), sightings)  # fmt: skip
    add("pcaptools paths", _best([*cli, "paths", str(set_dir)], repeat, env=env), sightings)
    add("pcaptools paths --json", _best([*cli, "paths", str(set_dir), "--json"], repeat, env=env), sightings)
    add("pcaptools why", _best([*cli, "why", str(set_dir)], repeat, env=env), sightings)
    add("pcaptools compare --json", _best([*cli, "compare", str(set_dir), "--json"], repeat, env=env), sightings)
    with tempfile.TemporaryDirectory() as tmp:  # the commands that write files
        add("pcaptools merge -o merged.pcapng",
            _best([*cli, "merge", str(set_dir), "-o", str(Path(tmp) / "merged.pcapng")], repeat, env=env), sightings)  # fmt: skip
        add("pcaptools report -o report.html",
            _best([*cli, "report", str(set_dir), "-o", str(Path(tmp) / "report.html")], repeat, env=env), sightings)  # fmt: skip
    tcpd = [_best(["tcpdump", "-r", f, "-w", "/dev/null"], repeat) for f in files]
    add("tcpdump -r F -w /dev/null", {"seconds": sum(r["seconds"] for r in tcpd), "peak_rss_mb": max(r["peak_rss_mb"] for r in tcpd)}, sightings)
    for name, fn in (("dpkt decode (prefix)", dpkt_decode), ("tshark -T fields (prefix)", tshark_fields)):
        t0 = time.perf_counter()
        n = fn(files[1])  # node-1:eth0, VXLAN and native
        add(name, {"seconds": time.perf_counter() - t0}, n)
    for r in rows:
        r["time_vs_read_packets"] = r["seconds"] / rp["seconds"] * (sightings / r["records"])
        r["time_vs_read_packets_process"] = r["seconds"] / rp_proc["seconds"] * (sightings / r["records"])
        r["time_vs_read_packets_no_teardown"] = r["seconds"] / rp_ended["seconds"] * (sightings / r["records"])
        r.update(set_mb=round(size / 2**20, 1), stream_packets=int(info["packets"]), sightings=sightings)
    pyc.cleanup()
    return rows


def print_table(rows: list[dict]) -> None:
    """The end-to-end rows as a table: packets/s, seconds (CPU seconds of fresh processes), time for the whole set
    relative to read_packets warm in process and to read_packets as a fresh process, side by side."""
    if not rows:
        return
    r0 = rows[0]
    print(f"\nend to end: {r0['stream_packets']:,}-packet stream at 4 points, {r0['sightings']:,} sightings, "
          f"{r0['set_mb']:,.0f} MiB (commands: best of their runs, fresh process each; load {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"{'command':<44}{'packets/s':>12}{'seconds':>10}{'cpu s':>8}{'x read_packets':>16}{'x read_packets process':>24}"
          f"{'x no teardown':>15}{'peak RSS MiB':>14}")
    for r in rows:
        rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else ""
        cpu = f"{r['cpu_seconds']:.2f}" if "cpu_seconds" in r else ""
        print(f"{r['section'][4:]:<44}{r['records_per_s']:>12,.0f}{r['seconds']:>10.2f}{cpu:>8}{r['time_vs_read_packets']:>15.2f}x"
              f"{r['time_vs_read_packets_process']:>23.2f}x{r.get('time_vs_read_packets_no_teardown', float('nan')):>14.2f}x{rss:>14}")  # fmt: skip
