"""One command for the reader benchmarks: records/s and peak memory per section, appended to results.jsonl.

    python benchmarks/run.py [--packets N] [--only NAME ...] [--repeat 3]

The synthetic capture (benchmarks/gen.py) is cached in benchmarks/.cache/. Each section runs in its
own Python process so its peak memory is its own; the best of ``--repeat`` runs is reported, with
the file already in the page cache (warm). To add a section, write ``def _my_section(path) -> int``
(returning the records it handled) and add one line to SECTIONS. The ``end-to-end`` section
(benchmarks/end_to_end.py) times the CLI on a generated 4-point capture set against read_packets
of the same files: ``--only end-to-end --set-packets 200000``. ``--only stream-memory`` runs
benchmarks/stream_memory.py (correlate under a memory cap on a set four times its size).
(benchmarks/startup.py) times ``pcaptools --help`` and ``pcaptools info small.pcap`` as fresh processes
and lists the largest ``python -X importtime`` entries: ``--only startup``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmark this checkout, whatever copy pip installed elsewhere
CACHE = HERE / ".cache"
RESULTS = HERE / "results.jsonl"


# --- sections: each takes the capture path and returns how many records it went through ---
def _plain_read(path: str) -> int:
    """Baseline: read the file's bytes into memory, nothing else (records = the file's count)."""
    with open(path, "rb") as f:
        data = f.read()
    return len(data) and _COUNT[path]


def _read_records(path: str) -> int:
    from pcaptools.io import read_records

    return len(read_records(path))


def _iter_records(path: str) -> int:
    from pcaptools.io import iter_records

    return sum(len(b) for b in iter_records(path))


def _dpkt_loop(path: str) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as f:
        for _ts, _buf in dpkt.pcap.Reader(f):
            n += 1
    return n


def _tcpdump_copy(path: str) -> int:
    """``tcpdump -r F -w /dev/null``: libpcap reads every record and writes it out, no decoding."""
    subprocess.run(["tcpdump", "-r", path, "-w", "/dev/null"], capture_output=True, check=True)
    return _COUNT[path]


_DECODED: dict = {}


def _flows(path: str) -> int:
    """flows() alone: the packet table is decoded once (first, untimed warm-up call) and reused."""
    from pcaptools.flows import flows

    read_packets = importlib.import_module("pcaptools.packets").read_packets  # the decoder's module

    if path not in _DECODED:
        _DECODED[path] = read_packets(path)
    f = flows(_DECODED[path])
    return int(f["orig_pkts"].sum() + f["resp_pkts"].sum())


def _decode_flows(path: str) -> int:
    """read_packets + flows end to end, the cost of 'pcaptools flows FILE'."""
    from pcaptools.flows import flows

    read_packets = importlib.import_module("pcaptools.packets").read_packets  # the decoder's module

    f = flows(read_packets(path))
    return int(f["orig_pkts"].sum() + f["resp_pkts"].sum())


sys.path.insert(0, str(HERE))
import decode_sections as _dec  # noqa: E402  (read+decode vs dpkt/scapy/tshark, benchmarks/decode_sections.py)

SECTIONS: list[tuple[str, Callable[[str], int]]] = [
    ("plain read", _plain_read),
    ("read_records", _read_records),
    ("iter_records", _iter_records),
    ("dpkt loop", _dpkt_loop),
    ("flows", _flows),
    ("decode+flows", _decode_flows),
    ("read+decode", _dec.read_decode),
    ("read+decode+hash", _dec.read_decode_hash),
    ("iter_packets", _dec.iter_decode),
    ("dpkt decode", _dec.dpkt_decode),
    ("scapy decode", _dec.scapy_decode),
    ("tshark fields", _dec.tshark_fields),
    ("tcpdump -w /dev/null", _tcpdump_copy),
]
BASELINE = "plain read"
_COUNT: dict[str, int] = {}


def _cpu() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children (tcpdump, tshark)."""
    t = os.times()  # children's times only come in clock ticks; this process's from the finer process_time
    return time.process_time() + t.children_user + t.children_system


def _child(name: str, path: str, count: int, repeat: int) -> None:
    """Run one section in this (fresh) process and print its measurements as JSON."""
    _COUNT[path] = count
    fn = dict(SECTIONS)[name]
    fn(path)  # warm-up: imports, numba cache load, page cache
    best = best_cpu = float("inf")
    n = 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _cpu()
        n = fn(path)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, _cpu() - c0)
    tracemalloc.start()  # one more run, traced, for the peak of Python/numpy allocations
    fn(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # VmHWM (peak resident set) is reset by exec, unlike ru_maxrss which a child inherits from its parent.
    # It counts the pages of a memory-mapped file that were touched, too.
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {"records": n, "seconds": best, "cpu_seconds": best_cpu, "peak_alloc_mb": peak / 2**20,
             "peak_rss_mb": hwm_kb / 1024, "load": os.getloadavg()[0]}
        )
    )


def _first_call_cost(sample: str) -> dict:
    """Seconds of the first read_packets call in a fresh process (read and decode a pcapng and a pcap):
    cold (numba compiling the record walkers and the decoder) and from numba's cache."""
    import pcaptools

    src = Path(pcaptools.__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import time; t=time.perf_counter(); import pcaptools.packets as r; "
            f"assert r.__file__.startswith({tmp!r}), r.__file__; r.read_packets({sample!r}); "
            f"r.read_packets({tmp!r} + '/probe.pcap'); print(time.perf_counter()-t)"
        )
        shutil.copytree(src, Path(tmp) / "pcaptools", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(
            HERE.parent / "tests" / "data" / "own" / "eth.pcap", Path(tmp) / "probe.pcap"
        )  # both walkers
        env = dict(os.environ, PYTHONPATH=tmp)
        run = [sys.executable, "-c", code]
        # cwd=tmp: with the repository as cwd, "python -c" would import the repository's copy instead
        cold = float(subprocess.run(run, env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout)
        cached = float(
            subprocess.run(run, env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout
        )
    return {"first_call_cold_s": round(cold, 3), "first_call_cached_s": round(cached, 3)}


def main() -> None:
    """Generate (or reuse) the capture, run every section, print a table and append JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--vxlan", type=float, default=1 / 3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="section names to run (default: all; 'end-to-end' for the CLI on a capture set, 'startup' for short commands; 'stream-memory', never by default)")
    ap.add_argument("--set-packets", type=int, help="end-to-end: packets of the stream seen at 4 points (default: --packets)")
    ap.add_argument("--set-flows", type=int, help="end-to-end: connections of the stream (gen_set.py --flows; default 200)")
    ap.add_argument("--set-flow-span", type=float, help="end-to-end: each connection within this share of the stream "
                    "(gen_set.py --flow-span: many short connections, e.g. --set-flows 32000 --set-flow-span 0.002)")
    ap.add_argument(
        "--child", nargs=4, metavar=("SECTION", "PATH", "COUNT", "REPEAT"), help=argparse.SUPPRESS
    )
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
        return

    if a.only and "stream-memory" in a.only:  # about 8 GB of captures under a 2 GiB cap: only when asked for
        subprocess.run([sys.executable, str(HERE / "stream_memory.py")], check=False)
        a.only = [n for n in a.only if n != "stream-memory"]
        if not a.only:
            return

    sys.path.insert(0, str(HERE))
    from gen import generate

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"synth-{a.packets}-vx{a.vxlan:.3f}-s{a.seed}.pcap"
    if not path.exists():
        t0 = time.perf_counter()
        generate(a.packets, vxlan=a.vxlan, seed=a.seed).tofile(path)
        print(f"generated {path.name} in {time.perf_counter() - t0:.1f} s")
    size = path.stat().st_size
    names = [n for n, _ in SECTIONS if not a.only or n in a.only]
    e2e = not a.only or "end-to-end" in a.only
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    common = {
        "run": run_id,
        "packets": a.packets,
        "file_mb": round(size / 2**20, 1),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    rows = []
    load0 = os.getloadavg()[0]
    for name in names:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, str(path), str(a.packets), str(a.repeat)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(f"{name}: failed\n{out.stderr}", file=sys.stderr)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r.update(
            section=name, records_per_s=r["records"] / r["seconds"], mb_per_s=size / 2**20 / r["seconds"]
        )
        rows.append(r)
    base = next((r for r in rows if r["section"] == BASELINE), None)
    print(f"{a.packets:,} packets, {size / 2**20:.0f} MiB, best of {a.repeat}, warm page cache; "
          f"load average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} CPUs")
    print(f"{'section':<22}{'records/s':>14}{'MiB/s':>10}{'seconds':>10}{'cpu s':>8}{'vs plain':>10}{'alloc MiB':>11}"
          f"{'RSS MiB':>10}{'load':>6}")  # fmt: skip
    with RESULTS.open("a") as f:
        for r in rows:
            ratio = r["seconds"] / base["seconds"] if base else float("nan")
            print(
                f"{r['section']:<22}{r['records_per_s']:>14,.0f}{r['mb_per_s']:>10,.0f}{r['seconds']:>10.3f}"
                f"{r['cpu_seconds']:>8.3f}{ratio:>9.2f}x{r['peak_alloc_mb']:>11.0f}{r['peak_rss_mb']:>10.0f}{r['load']:>6.1f}"
            )
            f.write(json.dumps({**common, **r, "time_vs_plain_read": ratio}) + "\n")
        dec = next((r for r in rows if r["section"] == "read+decode"), None)
        for other in ("dpkt decode", "scapy decode", "tshark fields", "tcpdump -w /dev/null", "plain read") if dec else ():
            o = next((r for r in rows if r["section"] == other), None)
            if o:
                ratio = dec["records_per_s"] / o["records_per_s"]
                print(f"read+decode is {ratio:.2f}x the packets/s of {other}")
                f.write(json.dumps({**common, "section": f"read+decode vs {other}", "packets_per_s_ratio": ratio}) + "\n")
        if e2e:
            import end_to_end

            e2e_rows = end_to_end.run(a.set_packets or a.packets, a.repeat, CACHE, flows=a.set_flows, flow_span=a.set_flow_span)
            end_to_end.print_table(e2e_rows)
            for r in e2e_rows:
                f.write(json.dumps({**common, **r}) + "\n")
        if not a.only or "startup" in a.only:
            import startup

            st_rows, imports = startup.run(a.repeat)
            startup.print_table(st_rows, imports)
            for r in st_rows:
                f.write(json.dumps({**common, **r}) + "\n")
            f.write(json.dumps({**common, "section": "startup imports", "imports_ms": dict(imports)}) + "\n")
        if not a.only or "first call" in a.only:
            sample = str(HERE.parent / "tests" / "data" / "own" / "two_sections.pcapng")
            fc = _first_call_cost(sample)
            print(
                f"first read_packets call in a fresh process: {fc['first_call_cold_s']:.2f} s compiling, "
                f"{fc['first_call_cached_s']:.2f} s from numba's cache"
            )
            f.write(json.dumps({**common, "section": "first call", **fc}) + "\n")


if __name__ == "__main__":
    main()
