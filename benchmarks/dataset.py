"""Decode once, analyse many times: ``pcaptools paths`` / ``correlate`` on a Parquet dataset vs on the captures.

For the generated 4-point set (gen_set.py) and the lab samples, in one run: ``pcaptools convert``
once, then each command on the captures and on the dataset, alternately (pcaps, dataset, pcaps,
dataset, ...), each a fresh process as a user runs it, with wall time and peak RSS (end_to_end.py's
launcher). Sizes on disk are printed beside them. Results are appended to results.jsonl.

    python benchmarks/dataset.py --packets 200000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from end_to_end import _run  # noqa: E402  (the launcher measuring a fresh process's peak RSS)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measure(name: str, src: Path, tmp: Path, repeat: int, env: dict) -> list[dict]:
    """convert once, then paths and correlate --json on src and on the dataset, alternately; best of ``repeat``."""
    cli = [sys.executable, "-m", "pcaptools.cli"]
    ds = tmp / f"{name}.ds"
    wall, rss, _ = _run([*cli, "convert", str(src), "-o", str(ds)], env=env)
    rows = [{"set": name, "command": "convert", "input": "captures", "seconds": wall, "peak_rss_mb": rss,
             "input_mb": _size_mb(src), "output_mb": _size_mb(ds)}]  # fmt: skip
    for command in (["paths"], ["correlate", "--json"]):
        runs: dict[str, list[tuple[float, ...]]] = {"captures": [], "dataset": []}
        for _ in range(repeat):
            for kind, path in (("captures", src), ("dataset", ds)):
                runs[kind].append(_run([*cli, command[0], str(path), *command[1:]], env=env))
        for kind, rs in runs.items():
            rows.append({"set": name, "command": " ".join(command), "input": kind, "seconds": min(r[0] for r in rs),
                         "seconds_all": [round(r[0], 2) for r in rs], "peak_rss_mb": max(r[1] for r in rs)})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000, help="packets of the generated stream (seen at 4 points)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each command on each input (best is reported)")
    ap.add_argument("--set", type=Path, default=Path("/tmp/dset-src"), help="where the generated set is (made if absent)")
    a = ap.parse_args()
    from gen_set import generate

    if not (a.set / "manifest.json").exists():
        generate(a.packets, a.set)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (("generated", a.set), ("calico-vxlan", REPO / "sample_pcaps" / "calico-vxlan"),
                          ("vpc", REPO / "sample_pcaps" / "vpc")):  # fmt: skip
            rows += measure(name, src, Path(tmp), a.repeat, env)
            shutil.rmtree(Path(tmp) / f"{name}.ds", ignore_errors=True)
    print(f"{'set':<14}{'command':<18}{'input':<10}{'seconds':>9}{'peak RSS MiB':>14}{'  size MiB in -> out':>22}")
    base = {}
    with (HERE / "results.jsonl").open("a") as f:
        for r in rows:
            key = (r["set"], r["command"])
            base.setdefault(key, r["seconds"])
            ratio = "" if r["command"] == "convert" else f"  {r['seconds'] / base[key]:.2f}x"
            size = f"{r['input_mb']:>10.1f} -> {r['output_mb']:.1f}" if "output_mb" in r else ""
            print(f"{r['set']:<14}{r['command']:<18}{r['input']:<10}{r['seconds']:>9.2f}{r['peak_rss_mb']:>14.0f}{size}{ratio}")
            f.write(json.dumps({"run": run_id, "section": f"dataset {r['set']} {r['command']} on {r['input']}",
                                "packets": a.packets, **r}) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
