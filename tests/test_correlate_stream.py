"""Windowed correlation (pcaptools.correlate.stream) gives what the one-window run gives, with journeys cut by windows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stream_support import FLOOR, without_floor_note

from pcaptools.correlate.stream import correlate_files
from pcaptools.io import read_records

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A seeded 4-point set (benchmarks/gen_set.py): 5,000 packets, VXLAN and native, 3.7 ms clock offset, drops,
    retransmissions 200 ms later (ambiguous fingerprints in other windows)."""
    from gen_set import generate

    out = tmp_path_factory.mktemp("set5k")
    generate(5000, out, seed=7)
    return out


@pytest.fixture(scope="module")
def disordered(generated, tmp_path_factory) -> Path:
    """The generated set with node-1:eth0's records shuffled within blocks of 512 (out of order by up to ~4 ms,
    more than the matching window), as ``tcpdump -i any`` writes them, milliseconds apart."""
    out = tmp_path_factory.mktemp("disordered")
    shutil.copytree(generated, out, dirs_exist_ok=True)
    path = out / "node-1" / "eth0.pcap"
    rb = read_records(str(path))
    data = np.fromfile(path, np.uint8)
    rng = np.random.default_rng(3)
    blocks = [np.arange(k, min(k + 512, len(rb))) for k in range(0, len(rb), 512)]
    order = np.concatenate([rng.permutation(b) if np.ptp(rb.ts_ns[b]) < 10_000_000 else b for b in blocks])  # not across the gap before the retransmissions
    pieces = [data[:24]] + [data[int(rb.offset[i]) - 16 : int(rb.offset[i]) + int(rb.caplen[i])] for i in order]
    np.concatenate(pieces).tofile(path)
    return out


def _canonical(hops: pd.DataFrame) -> pd.DataFrame:
    return hops.astype({c: str for c in hops.columns if isinstance(hops[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def _both(source: Path, tmp_path: Path, *, window_rows: int, window_ns: int = 2_000_000_000):
    one, one_stats = correlate_files(source, window_ns=window_ns, memory=1 << 40, out=tmp_path / "one.parquet")
    win, stats = correlate_files(source, window_ns=window_ns, window_rows=window_rows, out=tmp_path / "win.parquet")
    assert one_stats.windows == 1 and one_stats.passes == 1
    return one, win, stats, pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "win.parquet")


def _assert_same(one, win, h1: pd.DataFrame, h2: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_canonical(h1), _canonical(h2))  # same journeys, numbers, hops and every column
    pd.testing.assert_frame_equal(_canonical(one.hops), _canonical(h1))
    pd.testing.assert_frame_equal(one.offsets, win.offsets)
    pd.testing.assert_frame_equal(one.hop_latency, win.hop_latency)
    pd.testing.assert_frame_equal(_canonical(one.losses), _canonical(win.losses))
    pd.testing.assert_frame_equal(one.loss_summary(), win.loss_summary())
    assert one.to_dict() == win.to_dict()
    assert (one.rows, one.not_correlated) == (win.rows, win.not_correlated)  # each row counted once, not in the survey too


@pytest.mark.parametrize("sample", ["calico-vxlan", "vpc"])
def test_lab_sample_cut_into_windows_correlates_like_one_window(sample, tmp_path):
    one, win, stats, h1, h2 = _both(SAMPLES / sample, tmp_path, window_rows=300)
    assert stats.windows >= 20 and stats.passes == 2
    assert stats.carried_journeys >= 500  # hundreds of journeys were open at a window's end and carried over
    _assert_same(one, win, h1, h2)
    assert one.journeys > 500 and one.multi_point_journeys > 500


def test_generated_set_cut_into_windows_correlates_like_one_window(generated, tmp_path):
    one, win, stats, h1, h2 = _both(generated, tmp_path, window_rows=3000, window_ns=1_000_000)
    assert stats.windows >= 5 and stats.carried_journeys >= 300
    assert stats.rewritten  # a retransmission 200 ms later made journeys written windows earlier ambiguous
    _assert_same(one, win, h1, h2)
    assert one.ambiguous > 0 and h2["ambiguous"].sum() == h1["ambiguous"].sum() > 0
    assert len(one.losses) > 0  # the generator drops 0.5% of sightings
    off = one.offsets.set_index("node")
    assert abs(int(off.loc["node-2", "offset_ns"]) - 3_700_000) < 50_000


def test_out_of_order_capture_is_merged_by_its_measured_disorder(disordered, tmp_path):
    one, win, stats, h1, h2 = _both(disordered, tmp_path, window_rows=2000, window_ns=1_000_000)
    assert stats.windows >= 5 and stats.disorder_ns > 1_000_000  # later than window_ns: without the bound, journeys split
    _assert_same(one, win, h1, h2)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True)


def test_cli_memory_budget_streams_and_prints_the_same_json(tmp_path):
    small = _cli("correlate", str(SAMPLES / "vpc"), "--memory", "16MiB", "--json", "-o", str(tmp_path / "a.parquet"))
    large = _cli("correlate", str(SAMPLES / "vpc"), "--json", "-o", str(tmp_path / "b.parquet"))
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    assert without_floor_note(json.loads(small.stdout)) == json.loads(large.stdout)  # 16 MiB: less than any run holds
    pd.testing.assert_frame_equal(_canonical(pd.read_parquet(tmp_path / "a.parquet")), _canonical(pd.read_parquet(tmp_path / "b.parquet")))


def test_cli_memory_that_is_not_a_size_is_a_usage_error():
    r = _cli("correlate", str(SAMPLES / "vpc"), "--memory", "2x")
    assert r.returncode == 2
    assert r.stderr.startswith("Usage: ") and "pcaptools: Invalid value for '--memory'" in r.stderr and "Traceback" not in r.stderr


def test_compressed_captures_count_at_their_decompressed_weight_against_the_budget(generated, tmp_path):
    """A .pcap.gz is judged by the packets it stands for (COMPRESSED_RATIO times its size, in records): a budget its
    compressed bytes fit but its decoded table does not streams the set (same answers) instead of loading it whole."""
    import gzip

    from pcaptools.correlate.stream import one_window_bytes

    out = tmp_path / "gz"
    shutil.copytree(generated, out)
    man = json.loads((out / "manifest.json").read_text())
    for e in man["captures"]:
        src = out / e["file"]
        (out / (e["file"] + ".gz")).write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
        src.unlink()
        e["file"] += ".gz"
    (out / "manifest.json").write_text(json.dumps(man))
    gz = sum((out / e["file"]).stat().st_size for e in man["captures"])
    budget = one_window_bytes([str(out / e["file"]) for e in man["captures"]]) - 1
    assert budget > 4 * gz  # fits the files' bytes, not the packets
    win, stats = correlate_files(out, memory=budget, out=tmp_path / "h.parquet")
    assert stats.passes == 2
    one, _ = correlate_files(generated, out=tmp_path / "one.parquet")
    assert one.to_dict() == without_floor_note(win.to_dict())  # a budget this small is below what any run holds


def test_one_window_budget_counts_the_records_a_set_holds(generated):
    """The one-window estimate follows packets, not bytes: the records it expects are within 10% of the set's."""
    from pcaptools.correlate.stream import capture_bytes, estimated_records

    files = [str(generated / e["file"]) for e in json.loads((generated / "manifest.json").read_text())["captures"]]
    for f in files:
        assert abs(estimated_records(f, capture_bytes(f)) - len(read_records(f))) <= 0.1 * len(read_records(f))


def test_memory_on_plain_files_streams_them_and_prints_the_same_json(tmp_path):
    files = sorted(str(p) for p in (SAMPLES / "vpc").rglob("*.pcap"))
    small = _cli("correlate", *files, "--memory", "16MiB", "--json", "-o", str(tmp_path / "a.parquet"))
    large = _cli("correlate", *files, "--json", "-o", str(tmp_path / "b.parquet"))
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    got = without_floor_note(json.loads(small.stdout))
    assert got == json.loads(large.stdout)
    assert not any("--memory" in n for n in got["notes"])  # streamed, not read whole with a note saying so
    said = [line for line in small.stderr.splitlines() if FLOOR not in line]
    assert "inferred 11 capture points" in small.stderr and said == large.stderr.splitlines()
    pd.testing.assert_frame_equal(_canonical(pd.read_parquet(tmp_path / "a.parquet")), _canonical(pd.read_parquet(tmp_path / "b.parquet")))


@pytest.fixture(scope="module")
def plain_sets(tmp_path_factory) -> dict[str, tuple[list[str], dict]]:
    """Inputs whose points are inferred: a lab directory without its manifest, a pcapng of 14 interfaces
    (``pcaptools merge``), an -i any capture with its links.json and a pcapng of two sections (one -i any)."""
    from pcaptools.cli import main

    tmp = tmp_path_factory.mktemp("plain")
    d = tmp / "vpc"
    shutil.copytree(SAMPLES / "vpc", d, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    merged = tmp / "merged.pcapng"
    assert main(["merge", str(SAMPLES / "calico-vxlan"), "-o", str(merged)]) == 0
    anyd = tmp / "any"
    anyd.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "own" / "any_nano.pcap", anyd / "host-a.pcap")
    (anyd / "host-a.links.json").write_text(json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]))
    shutil.copy(ROOT / "tests" / "data" / "own" / "two_sections.pcapng", anyd / "two.pcapng")
    return {"vpc-dir": ([str(d)], {"inventory": str(d / "inventory.json")}),
            "merged-pcapng": ([str(merged)], {"inventory": str(SAMPLES / "calico-vxlan" / "inventory.json")}),
            "any-and-sections": ([str(anyd)], {})}  # fmt: skip


@pytest.mark.parametrize("case", ["vpc-dir", "merged-pcapng", "any-and-sections"])
def test_plain_files_stream_with_their_inferred_points_like_the_in_memory_run(plain_sets, case, tmp_path):
    from pcaptools.k8s.discover import correlate_inputs

    inputs, kw = plain_sets[case]
    one, cs1 = correlate_inputs(inputs, memory=1 << 40, out=tmp_path / "one.parquet", **kw)
    win, cs2 = correlate_inputs(inputs, window_rows=300, out=tmp_path / "win.parquet", **kw)
    assert len(cs1.packets) > 0 and len(cs2.packets) == 0  # streamed: the points and evidence, no packet table
    assert cs1.points == cs2.points and len(cs2.points) >= 2
    pd.testing.assert_frame_equal(cs1.inference, cs2.inference)
    _assert_same(one, win, pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "win.parquet"))
    assert one.journeys > 0 and len(win.hops) == 0


def test_budget_below_one_window_of_the_densest_traffic_says_what_it_needs(generated, tmp_path):
    """A window must hold --window-ms of traffic at once: when the budget leaves less, the window is matched in
    partitions (tests/test_stream_partition.py); 16 MiB is below what the run holds anyway, and the run says so (JSON
    notes and stderr) with the MiB it needs, and still gives the in-memory answers."""
    import re

    small = _cli("correlate", str(generated), "--memory", "16MiB", "--window-ms", "60000", "--json")
    large = _cli("correlate", str(generated), "--window-ms", "60000", "--json")
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    got, want = json.loads(small.stdout), json.loads(large.stdout)
    [note] = [n for n in got["notes"] if "below this capture set's floor" in n]
    assert f"pcaptools: {note}" in small.stderr and "floor" not in large.stdout + large.stderr
    need = int(re.search(r"give --memory (\d+)MiB or more", note).group(1))
    assert need > 16 and "60,000 ms (--window-ms" in note and "partitions spilled to disk" in note
    got["notes"].remove(note)
    assert got == want
