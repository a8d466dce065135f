"""Bounded memory: ``pcaptools correlate --memory CAP`` on a generated capture set several times larger than CAP.

    python benchmarks/stream_memory.py                       # 14 chunks (about 8 GB) under 2 GiB
    python benchmarks/stream_memory.py --chunks 4 --cap 1GiB --check-chunks 2

The set is gen_set.py's 4-point stream written in chunks of ``--chunk-packets`` packets (seed ``seed +
chunk``, each chunk starting 4 s after the previous one, so the generator's memory is one chunk's);
``--check-chunks`` first chunks of the same seed form the smaller set of the equality check, a prefix
of the big one. Three runs of the CLI, each in a fresh process:

1. the big set with ``--memory CAP --json -o hops.parquet``, under the cap: peak RSS (the kernel's
   high-water mark, ``ru_maxrss``), wall time, windows;
2. the small set the same way (streamed: ``--memory`` below what one window would take);
3. the small set uncapped (the default budget: one window, in memory).

Runs 2 and 3 must print the same JSON and write the same hops (compared as sorted tables); run 1's
clock offset and journey count are checked against the generator's ground truth.

The cap is enforced by the kernel with a cgroup memory limit: v2 ``memory.max`` or v1
``memory.limit_in_bytes`` (+ ``memsw``), whichever /sys/fs/cgroup offers (root needed); past it the
process is reclaimed (page cache first) and then OOM-killed. Where neither can be written a watchdog
polls the process's RSS and kills it past the cap; the kernel's high-water mark is compared with the
cap afterwards either way. ``RLIMIT_AS``/``RLIMIT_DATA`` are not used: numba,
pyarrow and glibc reserve address space they never touch (measured: 2.3 GB of VmPeak at 645 MB RSS),
so a limit on address space would kill runs that stay far under the cap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

GAP_NS = 4_000_000_000  # chunk start to chunk start: more than a chunk's traffic plus the 2 s matching window


def make_set(out: Path, chunks: int, chunk_packets: int, seed: int) -> dict:
    """Write ``chunks`` chunks of gen_set's stream into one capture set at ``out``; return the summed ground truth."""
    import gen_set

    out.mkdir(parents=True, exist_ok=True)
    truth = {"packets": 0, "sightings": 0, "retransmitted": 0, "chunks": chunks, "offset_ns": None}
    start = gen_set.START_NS
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        for k in range(chunks):
            gen_set.START_NS = start + k * GAP_NS
            try:
                info = gen_set.generate(chunk_packets, Path(tmp) / "chunk", seed=seed + k)
            finally:
                gen_set.START_NS = start
            man = json.loads((Path(tmp) / "chunk" / "manifest.json").read_text())
            for c in man["captures"]:
                data = (Path(tmp) / "chunk" / c["file"]).read_bytes()
                dst = out / c["file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                with dst.open("wb" if k == 0 else "ab") as f:
                    f.write(data if k == 0 else data[24:])  # one pcap header, then every chunk's records
            if k == 0:
                shutil.copy(Path(tmp) / "chunk" / "manifest.json", out / "manifest.json")
                shutil.copy(Path(tmp) / "chunk" / "inventory.json", out / "inventory.json")
            for key in ("packets", "sightings", "retransmitted"):
                truth[key] += int(info[key])
            truth["offset_ns"] = int(info["offset_ns"])
            shutil.rmtree(Path(tmp) / "chunk")
    (out / "truth.json").write_text(json.dumps(truth))
    return truth


def _cgroup(cap: int) -> tuple[Path, str] | None:
    """A fresh cgroup holding its processes under ``cap`` bytes, and how (v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``); None where neither memory controller can be written."""
    name = f"pcaptools-bench-{os.getpid()}"
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    try:
        if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text().split():
            d = v2 / name
            d.mkdir()
            (d / "memory.max").write_text(str(cap))
            (d / "memory.swap.max").write_text("0") if (d / "memory.swap.max").exists() else None
            return d, "cgroup v2 memory.max"
        if (v1 / "memory.limit_in_bytes").exists():
            d = v1 / name
            d.mkdir()
            (d / "memory.limit_in_bytes").write_text(str(cap))
            if (d / "memory.memsw.limit_in_bytes").exists():  # no swapping out instead of staying under the cap
                (d / "memory.memsw.limit_in_bytes").write_text(str(cap))
            return d, "cgroup v1 memory.limit_in_bytes"
    except OSError:
        return None
    return None


def run_capped(cmd: list[str], cap: int | None, env: dict) -> dict:
    """Run ``cmd`` (output to a file) under ``cap`` bytes; wall seconds, peak RSS MiB, exit code, how the cap was held."""
    held = _cgroup(cap) if cap else None
    cg = held[0] if held else None
    out = tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False)
    pre = (lambda: (cg / "cgroup.procs").write_text(str(os.getpid()))) if cg else None
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env, preexec_fn=pre, text=True)
    killed = threading.Event()
    if cap and cg is None:  # watchdog: RSS polled, the process killed past the cap

        def watch() -> None:
            while p.poll() is None:
                try:
                    rss = next(int(line.split()[1]) << 10 for line in open(f"/proc/{p.pid}/status") if line.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    rss = 0
                if rss > cap:
                    killed.set()
                    p.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.02)

        threading.Thread(target=watch, daemon=True).start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read()
    out.seek(0)
    text = out.read()
    os.unlink(out.name)
    if cg is not None:
        cg.rmdir()
    return {"seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "rc": p.returncode, "stdout": text, "stderr": err[-2000:],
            "cap_mb": cap / 2**20 if cap else None, "enforced_by": (held[1] if held else "RSS watchdog") if cap else None,
            "killed_at_cap": killed.is_set(), "user_s": usage.ru_utime, "sys_s": usage.ru_stime}  # fmt: skip


def _canonical(path: Path):
    import pandas as pd

    h = pd.read_parquet(path)
    h = h.astype({c: str for c in h.columns if isinstance(h[c].dtype, pd.CategoricalDtype)})
    return h.sort_values(["journey", "hop"], ignore_index=True)


def main() -> None:
    """Generate (or reuse) the sets, run the three commands, check the answers, print and record the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=14)
    ap.add_argument("--chunk-packets", type=int, default=200_000)
    ap.add_argument("--check-chunks", type=int, default=2)
    ap.add_argument("--cap", default="2GiB")
    ap.add_argument("--small-memory", default="512MiB", help="--memory of the streamed small-set run (run 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=HERE / ".cache")
    a = ap.parse_args()
    from pcaptools.units import parse_bytes

    cap = parse_bytes(a.cap)
    sets = {}
    for name, chunks in (("big", a.chunks), ("small", a.check_chunks)):
        d = a.dir / f"stream-{chunks}x{a.chunk_packets}-s{a.seed}"
        if not (d / "truth.json").exists():
            t0 = time.perf_counter()
            make_set(d, chunks, a.chunk_packets, a.seed)
            print(f"generated {d.name} in {time.perf_counter() - t0:.0f} s")
        files = [d / c["file"] for c in json.loads((d / "manifest.json").read_text())["captures"]]
        sets[name] = (d, sum(f.stat().st_size for f in files), json.loads((d / "truth.json").read_text()))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cli = [sys.executable, "-m", "pcaptools.cli", "correlate"]
    results = {}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        runs = (("big, capped", "big", ["--memory", a.cap], cap), ("small, streamed", "small", ["--memory", a.small_memory], cap),
                ("small, in memory", "small", [], None))  # fmt: skip
        for label, which, opts, limit in runs:
            d = sets[which][0]
            hops = Path(tmp) / f"{label.replace(', ', '-').replace(' ', '_')}.parquet"
            r = run_capped([*cli, str(d), *opts, "--json", "-o", str(hops)], limit, env)
            r["hops"] = hops
            results[label] = r
            print(f"{label}: rc {r['rc']}, {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MiB" + (f" (cap {r['cap_mb']:.0f} MiB, {r['enforced_by']})" if limit else ""))
            if r["rc"]:
                print(r["stderr"], file=sys.stderr)
        small_same = None
        if not results["small, streamed"]["rc"] and not results["small, in memory"]["rc"]:
            js = json.loads(results["small, streamed"]["stdout"]) == json.loads(results["small, in memory"]["stdout"])
            hs = _canonical(results["small, streamed"]["hops"]).equals(_canonical(results["small, in memory"]["hops"]))
            small_same = bool(js and hs)
        big = results["big, capped"]
        truth = sets["big"][2]
        doc = json.loads(big["stdout"]) if not big["rc"] else {}
        off = (doc.get("clock_offsets", {}).get("node-2") or {}).get("offset_ns")
    size_big, size_small = sets["big"][1], sets["small"][1]
    summary = {
        "section": "stream memory", "run": time.strftime("%Y-%m-%dT%H:%M:%S"), "set_mb": round(size_big / 2**20), "cap_mb": cap / 2**20,
        "set_over_cap": round(size_big / cap, 2), "sightings": truth["sightings"], "peak_rss_mb": round(big["peak_rss_mb"]),
        "under_cap": bool(big["peak_rss_mb"] * 2**20 <= cap and not big["rc"]), "enforced_by": big["enforced_by"],
        "seconds": round(big["seconds"], 1), "cpu_seconds": round(big["user_s"] + big["sys_s"], 1),
        "journeys": doc.get("journeys"), "truth_packets": truth["packets"],
        "offset_error_ns": None if off is None else int(off) - truth["offset_ns"],
        "small_set_mb": round(size_small / 2**20), "small_streamed_equals_in_memory": small_same,
        "small_streamed_peak_rss_mb": round(results["small, streamed"]["peak_rss_mb"]),
        "small_in_memory_peak_rss_mb": round(results["small, in memory"]["peak_rss_mb"]),
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    with (HERE / "results.jsonl").open("a") as f:
        f.write(json.dumps(summary) + "\n")
    if not summary["under_cap"] or small_same is not True:
        sys.exit(1)


if __name__ == "__main__":
    main()
