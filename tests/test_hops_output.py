"""The hops file `correlate -o` writes becomes the output only once complete: an error or an interrupt during the run
leaves an earlier file at that path as it was and nothing beside it; a pipe is written through, byte for byte."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from pcaptools.correlate import stream
from pcaptools.correlate.stream import correlate_files

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
EARLIER = b"an earlier run's hops file\n"


class _Boom(Exception):
    pass


@pytest.mark.parametrize("error", [_Boom, KeyboardInterrupt])
def test_one_window_run_that_fails_leaves_an_earlier_output_as_it_was(monkeypatch, tmp_path, error):
    out = tmp_path / "h.parquet"
    out.write_bytes(EARLIER)
    real = stream.correlate_tables

    def run(*args, **kwargs):
        real(*args, **kwargs)
        raise error("after the hops were handed to the writer")

    monkeypatch.setattr(stream, "correlate_tables", run)
    with pytest.raises(error):
        correlate_files(SAMPLES / "calico-vxlan" / "manifest.json", out=out)
    assert out.read_bytes() == EARLIER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.parquet"]  # no .h.parquet.partial left


def test_one_window_run_replaces_an_earlier_output_with_its_hops(tmp_path):
    out = tmp_path / "h.parquet"
    out.write_bytes(EARLIER)
    corr, stats = correlate_files(SAMPLES / "calico-vxlan" / "manifest.json", out=out)
    assert stats.windows == 1 and len(corr.hops) > 1000
    back = pd.read_parquet(out)
    assert len(back) == len(corr.hops)
    assert back["journey"].tolist() == corr.hops["journey"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.parquet"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
@pytest.mark.parametrize("window_rows", [None, 300], ids=["one-window", "streamed"])
def test_hops_written_to_a_pipe_are_the_bytes_of_a_file(tmp_path, window_rows):
    manifest = SAMPLES / "calico-vxlan" / "manifest.json"
    plain = tmp_path / "plain.parquet"
    correlate_files(manifest, out=plain, window_rows=window_rows)
    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)
    got = bytearray()

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.extend(fh.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        correlate_files(manifest, out=fifo, window_rows=window_rows)
    finally:
        if reader.is_alive():  # the run failed before opening the pipe: let the reader go
            with open(fifo, "wb"):
                pass
        reader.join(60)
    assert bytes(got) == plain.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.parquet", "plain.parquet"]
