"""pcaptools.dask on a 2-worker LocalCluster: every table equals the single-process one, on the lab samples,
captures with ICMP errors and fragments, and a seeded generated capture set; and the CLI's --scheduler/--workers.

The cluster's workers are threads (``processes=False``): no process start-up on a loaded 2-core CI machine,
while tasks, the P2P shuffles and the scheduler run as on a real cluster. One test runs the CLI with
``--workers 2`` worker processes, the way users start it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="needs the dask extra: pip install -e '.[test]'")

import pcaptools  # noqa: E402
from pcaptools.cli import main  # noqa: E402
from pcaptools.correlate.api import correlate  # noqa: E402
from pcaptools.correlate.match import clock_sample  # noqa: E402
from pcaptools.dask import cluster  # noqa: E402
from pcaptools.dask.cluster import connect  # noqa: E402
from pcaptools.dask.correlation import correlate_captures, sample_limit  # noqa: E402
from pcaptools.dask.flows import read_flows  # noqa: E402
from pcaptools.dask.packets import collect_packets, read_packets  # noqa: E402
from pcaptools.dask.paths import load_paths as dask_paths  # noqa: E402
from pcaptools.errors import CorrelationError  # noqa: E402
from pcaptools.k8s.discover import load_captures  # noqa: E402
from pcaptools.k8s.paths import load_paths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
DATA = ROOT / "tests" / "data"
AFS = DATA / "peer" / "tcpdump" / "tests" / "afs.pcap"  # 601 packets: 25 ICMP errors, 149 IP fragments
COMBINED = DATA / "peer" / "community-id-spec" / "pcaps" / "combined.pcap"  # IPv4/IPv6, ICMP errors, SCTP
OWN = DATA / "own"
SETS = [SAMPLES / "calico-vxlan", SAMPLES / "vpc"]


@pytest.fixture(scope="module")
def dask_client():
    """A LocalCluster of 2 single-threaded workers, closed after the module's tests."""
    with connect(workers=2, processes=False) as client:
        yield client


@pytest.fixture
def on_cluster(dask_client):
    """Run the test's Dask work on the module's cluster (even if another client was made the default meanwhile)."""
    with dask_client.as_current():
        yield dask_client


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A seeded capture set from benchmarks/gen_set.py: 4 points on 2 nodes, DNAT, VXLAN, drops, retransmissions."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gen_set
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = tmp_path_factory.mktemp("gen_set")
    gen_set.generate(3000, out, flows=40, seed=11)
    return out


def _files(capture_set: Path) -> list[str]:
    return sorted(str(p) for p in capture_set.rglob("*.pcap*"))


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, rows and values; category columns compared by value (their category lists may differ)."""
    got, want = got.reset_index(drop=True), want.reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for c in want.columns:
        a, b = got[c], want[c]
        if isinstance(b.dtype, pd.CategoricalDtype):
            assert isinstance(a.dtype, pd.CategoricalDtype), c
            a, b = a.astype(object), b.astype(object)
            assert (a.isna() == b.isna()).all() and (a[b.notna()] == b[b.notna()]).all(), c
        else:
            assert a.dtype == b.dtype, c
            np.testing.assert_array_equal(a.to_numpy(), b.to_numpy(), err_msg=c)


def test_packets_decoded_in_record_ranges_equal_read_packets(on_cluster):
    files = [*_files(SAMPLES / "calico-vxlan"), str(OWN / "eth.pcapng"), str(OWN / "eth.pcap.gz"),
             str(OWN / "any_nano.pcapng"), str(OWN / "truncated_last.pcap")]  # fmt: skip
    ddf = read_packets(files, chunk_records=97, payload_hash=True)
    assert ddf.npartitions > len(files)  # files are cut into record ranges (the gzip file stays whole)
    assert_same_table(ddf.compute(), pcaptools.read_packets(files, payload_hash=True))
    assert ddf["file"].cat.known and list(ddf["file"].cat.categories) == files


def test_reader_accounting_survives_the_cluster(on_cluster):
    files = [str(OWN / "truncated_last.pcap"), str(OWN / "eth.pcap")]
    got = collect_packets(files, chunk_records=5)
    want = pcaptools.read_packets(files)
    assert_same_table(got, want)
    assert got.attrs["skipped"] == want.attrs["skipped"] and sum(got.attrs["skipped"][files[0]].values()) == 1
    assert got.attrs["stopped_at"] == want.attrs["stopped_at"]
    assert got.attrs["interface_stats"] == want.attrs["interface_stats"]


def test_flows_cut_by_partitions_equal_read_flows_with_icmp_errors_and_fragments(on_cluster):
    files = [str(AFS), str(COMBINED), *_files(SAMPLES / "vpc")]
    want = pcaptools.read_flows(files)
    assert want["icmp_errors"].sum() > 20
    assert_same_table(read_flows(files, chunk_records=250), want)  # afs.pcap in 3 partitions


def test_fragments_in_other_partitions_join_their_first_fragments_flow(on_cluster):
    zeek = DATA / "peer" / "zeek" / "Traces"
    files = [*sorted(map(str, (zeek / "ipv4").glob("fragmented-*.pcap"))), str(zeek / "ipv6-fragmented-dns.pcap")]
    want = pcaptools.read_flows(files)
    assert_same_table(read_flows(files, chunk_records=1), want)  # every packet its own partition
    assert (want["orig_pkts"] + want["resp_pkts"] > 2).any()


@pytest.mark.parametrize("capture_set", [*SETS, "generated"], ids=["calico-vxlan", "vpc", "generated"])
def test_correlation_equals_single_process(capture_set, generated, on_cluster):
    src = generated if capture_set == "generated" else capture_set
    want = correlate(load_captures(src))
    got = correlate_captures(src, chunk_records=1200)
    assert_same_table(got.hops, want.hops)
    assert_same_table(got.offsets, want.offsets)
    assert got.to_dict() == want.to_dict()
    assert want.journeys > 500 and (want.hops["hops"] > 1).any()
    assert got.point_counts() == want.point_counts()  # every row accounted for, per point and reason, as in one process
    assert all(c["rows"] == c["matched"] + c["unmatched"] + sum(c["not_correlated"].values()) for c in got.point_counts())


def test_paths_equal_single_process(on_cluster):
    want = load_paths(SETS[0])
    got = dask_paths(SETS[0], chunk_records=900)
    assert_same_table(got.paths, want.paths)
    assert_same_table(got.nat, want.nat)
    assert len(want.paths) >= 16 and want.paths["flow_state"].notna().any()


def test_bottom_k_of_partitions_is_the_single_process_clock_sample():
    rng = np.random.default_rng(3)
    fp = rng.integers(0, 5000, 20000).astype(np.uint64)  # repeats (sightings) and zeros (not matchable)
    for k in (1, 100, 4000, 10_000):
        parts = np.array_split(fp, 7)
        bottoms = [np.unique(p[p != 0])[:k] for p in parts]
        limit = sample_limit(bottoms, k)
        mask = (fp != 0) if limit is None else (fp != 0) & (fp < np.uint64(limit))
        np.testing.assert_array_equal(mask, clock_sample(fp, k))


def test_plain_captures_without_a_manifest_are_refused_with_what_to_do(on_cluster):
    with pytest.raises(CorrelationError, match="pcaptools manifest"):
        correlate_captures(_files(SAMPLES / "vpc"))


def test_cli_correlate_with_a_scheduler_prints_the_single_process_json(on_cluster, capsys):
    assert main(["correlate", str(SETS[1]), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["correlate", str(SETS[1]), "--json", "--scheduler", on_cluster.scheduler.address]) == 0
    assert json.loads(capsys.readouterr().out) == want


def test_a_bad_capture_read_on_a_worker_is_one_line(on_cluster, tmp_path, capsys):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(bytes(range(7, 200)))
    code = main(["decode", str(junk), "-o", str(tmp_path / "x.parquet"), "--scheduler", on_cluster.scheduler.address])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"pcaptools: {junk} is not a pcap or pcapng file") and err.count("\n") == 1


def test_cli_unreachable_scheduler_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    code = main(["flows", str(COMBINED), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pcaptools: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], ["--json", "--workers", "2"]])
def test_cli_cluster_option_misuse_is_a_usage_error(argv, capsys):
    code = main(["paths", str(SETS[1]), *argv])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2 and lines[0].startswith("Usage: pcaptools paths") and len(lines) == 2
    assert lines[1].startswith("pcaptools: ") and ("not both" in lines[1] or "--json" in lines[1])


def test_cli_without_the_dask_extra_names_it():
    code = ("import sys; sys.modules['distributed'] = None\nfrom pcaptools.cli import main\n"
            f"sys.exit(main(['flows', {str(COMBINED)!r}, '--workers', '1']))")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("pcaptools: running on Dask needs the dask extra") and "pcaptools[dask]" in res.stderr


def test_cli_correlate_on_two_worker_processes_writes_the_single_process_hops(tmp_path):
    def run(*extra: str) -> str:
        out = tmp_path / f"hops{len(extra)}.parquet"
        res = subprocess.run([sys.executable, "-m", "pcaptools.cli", "correlate", str(SETS[1]), "--json", "-o", str(out), *extra],
                             capture_output=True, text=True, cwd=ROOT, timeout=900)  # fmt: skip
        assert res.returncode == 0 and "Traceback" not in res.stderr and "ERROR" not in res.stderr, res.stderr
        return res.stdout

    assert json.loads(run("--workers", "2")) == json.loads(run())
    assert_same_table(pd.read_parquet(tmp_path / "hops2.parquet"), pd.read_parquet(tmp_path / "hops0.parquet"))


def test_a_dataset_given_to_dask_is_refused_as_a_dataset(tmp_path):
    """Not 'is a directory' or 'points must be named': a dataset is read in one process (or by dask's read_parquet)."""
    from pcaptools.convert import convert
    from pcaptools.dask.cluster import ClusterError

    ds = str(convert([str(SAMPLES / "vpc")], tmp_path / "vpc.ds"))
    for run in (lambda: read_packets(ds), lambda: read_flows([ds]), lambda: correlate_captures(ds)):
        with pytest.raises(ClusterError, match="dataset .*read_parquet"):
            run()
