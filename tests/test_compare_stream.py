"""``compare`` within a memory budget: packet metrics reduced batch by batch, flows per file within the budget,
correlation and paths streamed, hops read back a row group at a time; the same tables, JSON and figures as the
in-memory run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from pcaptools.compare import Comparison, compare
from pcaptools.render.figures import save_figures

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
OWN = ROOT / "tests" / "data" / "own"
sys.path.insert(0, str(ROOT / "tests"))

from stream_support import FLOOR  # noqa: E402

TABLES = ("summary", "mode", "wire_bytes", "points", "latency", "hop_latency", "cross_node", "hop_samples")


def _figures(cmp: Comparison, out: Path) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in save_figures(cmp, out)}


def _assert_same(whole: Comparison, bounded: Comparison, tmp_path: Path) -> None:
    for name in TABLES:  # every column, dtype and value
        pd.testing.assert_frame_equal(getattr(whole, name), getattr(bounded, name), obj=name)
    assert whole.to_json() == bounded.to_json()
    for label in whole.labels:
        pd.testing.assert_frame_equal(whole.capture_points[label], bounded.capture_points[label])
        pd.testing.assert_frame_equal(whole.paths[label], bounded.paths[label])
    figs = _figures(whole, tmp_path / "whole")
    assert len(figs) >= 4 and figs == _figures(bounded, tmp_path / "bounded")


def test_lab_samples_in_windows_batches_and_buckets_give_the_in_memory_comparison(tmp_path):
    sets = [SAMPLES / "vpc", SAMPLES / "calico-vxlan"]
    whole = compare(sets)
    bounded = compare(sets, window_rows=300, bucket_rows=50, batch_records=500)
    for label in whole.labels:
        assert whole.hops_files[label] is None and whole.streamed[label] is None
        assert bounded.streamed[label]["windows"] >= 20 and bounded.streamed[label]["carried_journeys"] >= 500
        assert len(bounded.correlations[label].hops) < len(whole.correlations[label].hops)  # the rest stayed on disk
        assert sum(len(h) for h in bounded.hop_tables(label)) == len(whole.correlations[label].hops)
    # the metrics the reductions read from counts and maxima, as the lab built them
    assert whole.value("data-plane mode", "calico-vxlan") == "vxlan" and whole.value("data-plane mode", "vpc") == "native"
    assert whole.value("encapsulation per tunnelled packet", "calico-vxlan") == 50
    assert len(whole.hop_samples) > 100
    _assert_same(whole, bounded, tmp_path)


def test_directory_without_manifest_streamed_gives_the_in_memory_comparison(plain_dir, tmp_path):
    whole = compare([plain_dir])
    bounded = compare([plain_dir], window_rows=300, bucket_rows=50, batch_records=400)
    assert bounded.streamed["calico-vxlan"]["windows"] >= 20
    assert any(n.startswith("inferred 14 capture points") for n in whole.notes["calico-vxlan"])
    assert whole.notes == bounded.notes
    _assert_same(whole, bounded, tmp_path)


def test_any_capture_split_by_ifindex_streamed_gives_the_in_memory_comparison(tmp_path):
    """An -i any capture: its points are (ifindex) parts of one file, tallied apart and its flows taken per point."""
    d = tmp_path / "any"
    d.mkdir()
    (d / "host-a.links.json").write_text(json.dumps([{"ifindex": 1, "ifname": "lo"}, {"ifindex": 2, "ifname": "eth0"}]))
    shutil.copy(OWN / "any_nano.pcap", d / "host-a.pcap")
    whole = compare([d])
    bounded = compare([d], window_rows=5, bucket_rows=5, batch_records=4)
    assert bounded.streamed["any"]["windows"] >= 2
    assert whole.capture_points["any"]["point"].tolist() == ["host-a:eth0"]
    assert whole.points["packets"].sum() > 4 and whole.value("data-plane mode", "any") == "native"
    _assert_same(whole, bounded, tmp_path / "f")


def test_generated_set_with_hundreds_of_journeys_cut_gives_the_in_memory_comparison(generated, tmp_path):
    whole = compare([generated])
    bounded = compare([generated], window_rows=2000, bucket_rows=3000, batch_records=1500)
    st = bounded.streamed["generated"]
    assert st["windows"] >= 10 and st["carried_journeys"] >= 500 and st["buckets"] >= 20
    assert len(whole.paths["generated"]) > 150
    # the generator's VXLAN share and DNAT are measured, not assumed
    assert whole.value("data-plane mode", "generated") == "vxlan" and 0 < whole.value("uplink packets tunnelled", "generated") < 100
    assert whole.value("cross-node pod-to-pod connections", "generated") > 150
    _assert_same(whole, bounded, tmp_path)


def test_dataset_streamed_gives_the_in_memory_comparison(plain_dir, tmp_path):
    from pcaptools.convert import convert

    ds = convert(plain_dir, tmp_path / "calico.ds")
    whole = compare([ds])
    bounded = compare([ds], window_rows=300, bucket_rows=50, batch_records=400)
    assert bounded.streamed["calico.ds"]["windows"] >= 20
    _assert_same(whole, bounded, tmp_path / "f")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"COLUMNS": "120", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_cli_compare_under_a_memory_cap_prints_the_same_json_and_table(generated, tmp_path):
    small = _cli("compare", str(generated), str(SAMPLES / "vpc"), "--memory", "16MiB", "--json", cwd=tmp_path)
    large = _cli("compare", str(generated), str(SAMPLES / "vpc"), "--json", cwd=tmp_path)
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    a, b = json.loads(small.stdout), json.loads(large.stdout)
    # 16 MiB is below any run's floor: each streamed set carries correlate's note saying so, and nothing else differs
    assert [s["label"] for s in a["capture_sets"]] == ["generated", "vpc"]
    for s in a["capture_sets"]:
        assert sum(FLOOR in n for n in s["notes"]) == 1
        s["notes"] = [n for n in s["notes"] if FLOOR not in n]
    assert a == b and a["schema_version"] == 1
    small = _cli("compare", str(generated), "--memory", "16MiB", "-o", "s.csv", cwd=tmp_path)
    large = _cli("compare", str(generated), "-o", "l.csv", cwd=tmp_path)
    assert small.returncode == large.returncode == 0, small.stderr + large.stderr
    floor = re.compile(r"[^\n]*the memory budget \(16 MiB\) is below .*?not joined\)\n", re.DOTALL)
    assert len(floor.findall(small.stdout)) == 1 and not floor.search(large.stdout)
    assert floor.sub("", small.stdout).replace("s.csv", "l.csv") == large.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv"), pd.read_csv(tmp_path / "l.csv"))


def test_hops_read_back_in_small_batches_come_in_whole_journeys(tmp_path):
    """A row group of the streamed hops file may hold a whole window (or set): it is read a few rows at a time, the
    last journey of each batch carried to the next, so every part holds whole journeys and together they are the file."""
    from pcaptools.compare import _hop_parts
    from pcaptools.correlate.api import correlate
    from pcaptools.correlate.capture_set import CaptureSet
    from pcaptools.correlate.stream import write_hops

    hops = correlate(CaptureSet.load(SAMPLES / "vpc")).hops
    write_hops([hops], tmp_path / "hops.parquet")  # one row group
    parts = list(_hop_parts(tmp_path / "hops.parquet", None, batch_rows=7))
    assert len(parts) > len(hops) // 20
    journeys = [set(p["journey"]) for p in parts]
    assert sum(map(len, journeys)) == len(set().union(*journeys)) == hops["journey"].nunique()  # none cut in two
    back = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(back.astype({c: str for c in back.columns if isinstance(back[c].dtype, pd.CategoricalDtype)}),
                                  hops.astype({c: str for c in hops.columns if isinstance(hops[c].dtype, pd.CategoricalDtype)}),
                                  check_dtype=False)  # fmt: skip
