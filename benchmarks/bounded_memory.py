"""Peak RSS and time of ``pcaptools flows`` and ``pcaptools decode -o`` with a memory cap and without, side by side.

    python benchmarks/bounded_memory.py --packets 5000000 --memory 1GiB      # generates /tmp/big.pcap once

Each command runs as a user runs it (a fresh ``python -m pcaptools.cli`` process, output written to a
temporary directory), once with ``--memory CAP`` and once without, alternating, ``--repeat`` times;
the best time and the largest peak RSS of each are printed and appended to ``results.jsonl``. The
outputs of both are checked equal (flows as JSON, decode as the Parquet table read back) before any
figure is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from end_to_end import _run  # noqa: E402 - a fresh launcher reports each command's own peak RSS


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pcaptools.cli", *args]


def _same_output(kind: str, a: Path, b: Path) -> bool:
    """Whether the capped and uncapped commands wrote the same table (values column by column)."""
    import pandas as pd

    x, y = pd.read_parquet(a), pd.read_parquet(b)
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return False
    # values compared: a category column with no value at all reads back as object when written whole
    bad = [c for c in x.columns if not x[c].astype(object).equals(y[c].astype(object))]
    if bad:
        print(f"{kind}: columns differ: {bad}", file=sys.stderr)
    return not bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--flows", type=int, default=24, help="flows in the generated capture (gen.py --flows)")
    ap.add_argument("--memory", default="1GiB")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--capture", type=Path, default=Path("/tmp/big.pcap"))
    a = ap.parse_args()
    if not a.capture.exists():
        subprocess.run([sys.executable, str(HERE / "gen.py"), "--packets", str(a.packets), "--flows", str(a.flows),
                        "--out", str(a.capture)], check=True)  # fmt: skip
    size_mb = a.capture.stat().st_size / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for kind, base in (("flows", ["flows", str(a.capture)]), ("decode -o", ["decode", str(a.capture)])):
            figures: dict[str, list] = {"capped": [], "whole": []}
            for _ in range(a.repeat):
                for mode in ("capped", "whole"):
                    out = Path(tmp) / f"{kind.split()[0]}-{mode}.parquet"
                    cap = ["--memory", a.memory] if mode == "capped" else []
                    figures[mode].append(_run(_cli(*base, "-o", str(out), *cap)))
                    print(kind, mode, figures[mode][-1], flush=True)
                    outs[kind, mode] = out
            same = _same_output(kind, outs[kind, "capped"], outs[kind, "whole"])
            for mode, runs in figures.items():
                row = {"command": kind, "memory": a.memory if mode == "capped" else None,
                       "seconds": min(r[0] for r in runs), "peak_rss_mb": max(r[1] for r in runs), "same_output": same}  # fmt: skip
                rows.append(row)
    common = {"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "packets": a.packets, "file_mb": round(size_mb, 1),
              "section": "bounded memory"}  # fmt: skip
    with open(HERE / "results.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps({**common, **r}) + "\n")
    print(f"{a.capture}: {a.packets:,} packets, {size_mb:,.0f} MiB")
    print("| command | --memory | seconds | peak RSS MiB | same output |")
    print("|---|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['command']} | {r['memory'] or '(none)'} | {r['seconds']:.1f} | {r['peak_rss_mb']:,.0f} | {r['same_output']} |")


if __name__ == "__main__":
    main()
