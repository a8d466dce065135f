"""Flows with bounded memory: windows small enough to cut hundreds of flows give the in-memory table exactly."""

from __future__ import annotations

import json

import dpkt
import pandas as pd
import pytest
from stream_support import ROOT, flows_spanning_windows, generated_capture

from pcaptools.cli import main
from pcaptools.flow_stream import iter_flows, read_flows_bounded
from pcaptools.flows import flows, read_flows
from pcaptools.packets import iter_packets, read_packets
from pcaptools.units import MIN_MEMORY

PEER = ROOT / "tests" / "data" / "peer" / "tcpdump" / "tests"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """15,000 packets of 400 interleaved flows (seeded), most flows alive across the whole capture."""
    return generated_capture(tmp_path_factory.mktemp("gen") / "gen.pcap", packets=15_000, flows=400, seed=11)


@pytest.mark.parametrize("cni", ["calico-vxlan", "vpc"])
def test_lab_sample_flows_cut_by_windows_of_sixteen_packets_equal_the_in_memory_flows(cni):
    spanning = 0
    for f in sorted((ROOT / "sample_pcaps" / cni).glob("*/*.pcap")):
        whole = flows(read_packets(f))
        pd.testing.assert_frame_equal(read_flows_bounded(f, memory=MIN_MEMORY, batch_records=16), whole)
        spanning += flows_spanning_windows(read_packets(f)["ts_ns"].sort_values().to_numpy(), whole, 16)
    assert spanning >= 30  # most connections of the set were cut by a window boundary


def test_generated_capture_with_hundreds_of_flows_spanning_windows_gives_the_same_table(generated):
    pk = read_packets(generated)
    whole = flows(pk)
    assert flows_spanning_windows(pk["ts_ns"].to_numpy(), whole, 600) >= 200
    pd.testing.assert_frame_equal(read_flows_bounded(generated, memory=MIN_MEMORY, batch_records=600), whole)


def test_idle_timeout_seed_and_community_id_options_reach_the_windowed_path(generated):
    opts = {"idle_timeout_s": 0.002, "seed": 3, "community_id": False}
    whole = flows(read_packets(generated), **opts)
    assert len(whole) > 1000  # a 2 ms timeout splits the generated flows many times, across windows too
    pd.testing.assert_frame_equal(read_flows_bounded(generated, memory=MIN_MEMORY, batch_records=999, **opts), whole)


def test_fragments_and_icmp_errors_cut_by_windows_of_three_packets_are_attributed_as_in_memory():
    f = PEER / "afs.pcap"
    pk = read_packets(f)
    whole = flows(pk)
    assert (pk["frag_offset"] > 0).sum() > 100 and whole["icmp_errors"].sum() > 10
    pd.testing.assert_frame_equal(read_flows_bounded(f, memory=MIN_MEMORY, batch_records=3), whole)


def test_later_fragments_read_before_their_first_fragment_wait_for_it(tmp_path):
    """The capture written backwards: every later fragment comes windows before the first one of its datagram."""
    with open(PEER / "afs.pcap", "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        records, link = list(reader), reader.datalink()
    backwards = tmp_path / "afs-backwards.pcap"
    with open(backwards, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=link, nano=False)
        for ts, buf in reversed(records):
            w.writepkt(buf, ts)
    whole = flows(read_packets(backwards))
    assert whole["orig_p"].ge(0).sum() == flows(read_packets(PEER / "afs.pcap"))["orig_p"].ge(0).sum()
    pd.testing.assert_frame_equal(read_flows_bounded(backwards, memory=MIN_MEMORY, batch_records=2), whole)


@pytest.mark.parametrize("name", ["kday1.pcap", "mptcp-v1.pcap", "geneve.pcap", "gso-ipv6-vxlan-ipv4.pcap", "icmpv6-rfc7112.pcap", "empty.pcapng"])
def test_peer_captures_cut_into_windows_of_two_packets_give_the_same_flows(name):
    f = PEER / name
    pd.testing.assert_frame_equal(read_flows_bounded(f, memory=MIN_MEMORY, batch_records=2), flows(read_packets(f)))


def test_iter_flows_yields_complete_flows_whose_union_is_the_table(generated):
    parts = list(iter_flows(generated, memory=MIN_MEMORY, batch_records=2000))
    assert len(parts) > 1
    whole = flows(read_packets(generated))
    assert sum(len(p) for p in parts) == len(whole)
    got = pd.concat([p[["uid", "orig_pkts", "resp_pkts", "last_ts_ns"]] for p in parts]).sort_values("uid")
    pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                  whole[["uid", "orig_pkts", "resp_pkts", "last_ts_ns"]].sort_values("uid").reset_index(drop=True))  # fmt: skip


def test_read_flows_with_a_memory_cap_equals_read_flows_over_several_files(generated):
    files = [str(generated), str(PEER / "afs.pcap")]
    pd.testing.assert_frame_equal(read_flows(files, memory="16MiB"), read_flows(files))


def test_read_flows_refuses_a_nonsense_memory_cap():
    from pcaptools.errors import DecodeError

    with pytest.raises(DecodeError, match="expected a size such as 512MiB"):
        read_flows(str(PEER / "afs.pcap"), memory="plenty")


def test_cli_flows_with_a_memory_cap_prints_the_same_json(generated, capsys):
    assert main(["flows", str(generated), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["flows", str(generated), "--json", "--memory", "16MiB"]) == 0  # 16 MiB: windows of 1,024 records
    assert json.loads(capsys.readouterr().out) == whole


@pytest.mark.parametrize("command", ["flows", "decode", "merge"])
@pytest.mark.parametrize("value", ["lots", "-2GiB", "0", "1MiB"])
def test_cli_memory_nonsense_is_a_usage_error(command, value, capsys, tmp_path):
    extra = ["-o", str(tmp_path / ("x.parquet" if command == "decode" else "x.pcapng"))] if command != "flows" else []
    assert main([command, str(PEER / "afs.pcap"), *extra, "--memory", value]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert lines[0].startswith(f"Usage: pcaptools {command}")
    assert lines[-1].startswith("pcaptools: ") and "size" in lines[-1] and "Traceback" not in "\n".join(lines)


def test_bucket_groups_with_and_without_tunnelled_flows_join_into_one_table(tmp_path):
    """24 heavy flows, a third VXLAN, read back 1,024 rows at a time: some groups hold no tunnel at all."""
    cap = generated_capture(tmp_path / "few.pcap", packets=6_000, flows=24, seed=2)
    parts = list(iter_flows(cap, memory=MIN_MEMORY, batch_records=1000))
    assert any(p["tunnel"].isna().all() for p in parts) and any(p["tunnel"].notna().any() for p in parts)
    pd.testing.assert_frame_equal(read_flows_bounded(cap, memory=MIN_MEMORY, batch_records=1000), flows(read_packets(cap)))


@pytest.fixture(scope="module")
def over_16mib(tmp_path_factory):
    """25,000 generated packets (about 21 MB): more than iter_packets' default 16 MiB read window."""
    path = generated_capture(tmp_path_factory.mktemp("big") / "big.pcap", packets=25_000, flows=300, seed=5)
    assert path.stat().st_size > 16 << 20
    return path


def _windows_read(monkeypatch, path, memory: int) -> tuple[pd.DataFrame, list[int]]:
    """read_flows_bounded's table and the rows of each packet window it decoded."""
    import pcaptools.packets

    sizes: list[int] = []
    real = pcaptools.packets.iter_packets

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        for t in real(*args, **kwargs):
            sizes.append(len(t))
            yield t

    monkeypatch.setattr(pcaptools.packets, "iter_packets", spy)
    return read_flows_bounded(path, memory=memory), sizes


def test_iter_packets_reads_windows_of_batch_bytes(over_16mib):
    whole = read_packets(over_16mib)
    assert len(list(iter_packets(over_16mib))) == 2  # the default 16 MiB window
    assert len(list(iter_packets(over_16mib, batch_bytes=64 << 20))) == 1
    small = list(iter_packets(over_16mib, batch_bytes=1 << 20))
    assert len(small) >= 20
    pd.testing.assert_frame_equal(pd.concat(small, ignore_index=True)[list(whole.columns)].astype(whole.dtypes.to_dict()), whole)


def test_memory_cap_sets_the_read_window_so_a_capture_that_fits_is_one_window(monkeypatch, over_16mib):
    whole = flows(read_packets(over_16mib))
    got, sizes = _windows_read(monkeypatch, over_16mib, 1 << 30)  # 1 GiB: windows of 216 MiB
    assert sizes == [25_000]
    pd.testing.assert_frame_equal(got, whole)
    got, sizes = _windows_read(monkeypatch, over_16mib, MIN_MEMORY)  # 16 MiB: 1,024 records, 1 MiB read windows
    assert len(sizes) >= 25 and max(sizes) <= 1024 and sum(sizes) == 25_000
    pd.testing.assert_frame_equal(got, whole)
