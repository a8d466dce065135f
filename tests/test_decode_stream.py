"""decode -o with bounded memory: written window by window, the file reads back as read_packets' table."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from stream_support import ROOT, generated_capture

from pcaptools.cli import main
from pcaptools.packet_file import write_packets
from pcaptools.packets import read_packets
from pcaptools.units import MIN_MEMORY

PEER = ROOT / "tests" / "data" / "peer" / "tcpdump" / "tests"
FILES = [*sorted(str(p) for p in (ROOT / "sample_pcaps" / "calico-vxlan").glob("*/*.pcap")), str(PEER / "afs.pcap"),
         str(PEER / "bgp-orf.pcapng"), str(PEER / "ipv4_invalid_total_length.pcap")]  # fmt: skip


def test_parquet_written_in_windows_reads_back_as_the_whole_packet_table_with_its_accounting(tmp_path):
    out, ref = tmp_path / "p.parquet", tmp_path / "whole.parquet"
    done = write_packets(FILES, out, memory=MIN_MEMORY, batch_records=50)
    whole = read_packets(FILES)
    whole.to_parquet(ref, index=False)
    back = pd.read_parquet(out)
    assert pq.ParquetFile(out).num_row_groups > len(FILES)  # one row group per window, files cut into many
    pd.testing.assert_frame_equal(back, pd.read_parquet(ref))
    assert back.attrs == whole.attrs and done.packets == len(whole)
    assert done.errors == int(whole["error"].notna().sum())


def test_csv_written_in_windows_is_the_same_text(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    read_packets(FILES).to_csv(a, index=False)
    write_packets(FILES, b, memory=MIN_MEMORY, batch_records=40)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_capture_without_records_writes_the_empty_table(tmp_path, suffix):
    out = tmp_path / f"e{suffix}"
    write_packets([str(PEER / "empty.pcap")], out, memory=MIN_MEMORY)
    back = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(back) == 0 and list(back.columns) == list(read_packets(str(PEER / "empty.pcap")).columns)


def test_cli_decode_with_a_memory_cap_writes_the_same_parquet_and_summary(tmp_path, capsys):
    cap = generated_capture(tmp_path / "gen.pcap", packets=5_000, flows=50, seed=5)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert main(["decode", str(cap), str(PEER / "afs.pcap"), "-o", str(a)]) == 0
    said = capsys.readouterr().out.replace(str(a), "OUT")
    assert main(["decode", str(cap), str(PEER / "afs.pcap"), "-o", str(b), "--memory", "16MiB"]) == 0
    assert capsys.readouterr().out.replace(str(b), "OUT") == said
    assert pq.ParquetFile(b).num_row_groups == 6  # 5,000 records in windows of 1,024, then afs.pcap
    pd.testing.assert_frame_equal(pd.read_parquet(b), pd.read_parquet(a))
