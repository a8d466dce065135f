"""pcaptools.process: a command's process keeps freed memory for reuse (glibc), so big arrays are not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

_FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from pcaptools.process import keep_freed_memory
    assert keep_freed_memory()
a = np.ones(64 << 17)  # 64 MiB, freed at once
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(64 << 17)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    res = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_array_is_reused_without_page_faults_after_keep_freed_memory():
    plain, kept = _faults("plain"), _faults("keep")
    assert plain >= 32  # glibc maps and unmaps each big block: faulted in again (2 MiB at a time with huge pages)
    assert kept < plain / 4


_CYCLES = """
import gc, sys
from pcaptools.process import COLLECT_EVERY, fewer_collections
if sys.argv[1] == "fewer":
    fewer_collections()
gc.collect()
before = gc.get_stats()[0]["collections"]
class Node:
    pass
for _ in range(3 * COLLECT_EVERY):  # garbage only a collection frees: each object in a cycle with itself
    n = Node()
    n.me = n
print(gc.get_stats()[0]["collections"] - before, len(gc.get_objects()))
"""


def test_fewer_collections_runs_the_collector_rarely_but_still_frees_cycles():
    from pcaptools.process import COLLECT_EVERY

    def run(mode: str) -> tuple[int, int]:
        res = subprocess.run([sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-2000:]
        a, b = res.stdout.split()
        return int(a), int(b)

    default, _ = run("default")
    fewer, objects = run("fewer")
    assert default >= 300  # every 700 allocations: about 2 * 300,000 / 700 young collections
    assert 1 <= fewer <= 10  # every 100,000 allocations, yet collections still happen
    assert objects < 2 * COLLECT_EVERY  # of the 300,000 dropped cycles, the collector freed all but the latest


def test_main_leaves_the_collector_as_it_found_it():
    import gc

    from pcaptools.cli import main

    before = gc.get_threshold()
    assert main(["--help"]) == 0
    assert gc.get_threshold() == before


_END = """
import atexit, sys, threading
from pcaptools.process import end_process

class Teardown:
    def __del__(self):  # runs only when the interpreter tears its modules down
        sys.stderr.write("teardown ran\\n"); sys.stderr.flush()

keep = Teardown()
atexit.register(lambda: open(sys.argv[1], "w").write("exit handler ran"))
if sys.argv[2] == "thread":  # a live non-daemon thread: the process must end the normal way, after it
    done = threading.Event()
    worker = threading.Thread(target=lambda: (done.wait(5), print("worker finished")))
    worker.start()
    end_process(3)
    print("end_process returned")
    done.set()
    raise SystemExit(4)
if sys.argv[2] == "profiled":  # cProfile, a debugger, coverage: they write their results once the caller returns
    sys.setprofile(lambda *a: None)
    end_process(3)
    sys.setprofile(None)
    print("end_process returned")
    raise SystemExit(5)
sys.stdout.write("unflushed output")  # buffered: a pipe's stdout is block-buffered
end_process(3)
print("not reached")
"""


def test_end_process_flushes_output_runs_exit_handlers_and_skips_teardown(tmp_path):
    mark = tmp_path / "atexit.txt"
    res = subprocess.run([sys.executable, "-c", _END, str(mark), "main"], capture_output=True, text=True)
    assert res.returncode == 3
    assert res.stdout == "unflushed output"
    assert mark.read_text() == "exit handler ran"
    assert "teardown ran" not in res.stderr


def test_end_process_leaves_a_live_thread_to_finish_and_exits_normally(tmp_path):
    mark = tmp_path / "atexit.txt"
    res = subprocess.run([sys.executable, "-c", _END, str(mark), "thread"], capture_output=True, text=True)
    assert res.returncode == 4
    assert res.stdout.splitlines() == ["end_process returned", "worker finished"]
    assert mark.read_text() == "exit handler ran"


def test_end_process_under_a_profiler_exits_normally_so_the_profile_is_written(tmp_path):
    res = subprocess.run([sys.executable, "-c", _END, str(tmp_path / "atexit.txt"), "profiled"], capture_output=True, text=True)
    assert (res.returncode, res.stdout) == (5, "end_process returned\n")
    assert "teardown ran" in res.stderr  # the normal exit: the interpreter tore its modules down


def test_a_command_run_as_a_process_writes_its_whole_output(tmp_path):
    """The console entry ends without teardown: what it printed and wrote is all there, with its exit code."""
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "calico-vxlan"
    out = tmp_path / "hops.parquet"
    res = subprocess.run([sys.executable, "-m", "pcaptools", "correlate", str(sample), "--json", "-o", str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    import pandas as pd

    doc = json.loads(res.stdout)
    assert pd.read_parquet(out)["journey"].nunique() == doc["journeys"] > 0
    bad = subprocess.run([sys.executable, "-m", "pcaptools", "correlate", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("pcaptools: ")


def test_a_command_started_with_stdout_closed_still_ends_with_one_error_line(tmp_path):
    """`pcaptools ... >&-` (a daemon's or cron's closed descriptor): Python has no sys.stdout; the error is one line."""
    import os

    res = subprocess.run([sys.executable, "-m", "pcaptools", "info", str(tmp_path / "missing.pcap")], stdout=None,
                         stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.splitlines() == [f"pcaptools: {tmp_path / 'missing.pcap'}: No such file or directory"]


def test_an_os_error_while_cleaning_up_after_an_interrupt_still_exits_130(monkeypatch, capsys):
    """A cleanup that fails after Ctrl-C/SIGTERM (EBADF closing a spill, say) is reported as the interrupt it follows."""
    import errno

    import pcaptools.cli as cli

    class Command:
        def main(self, **kw):  # noqa: ANN003, ANN201, ARG002
            try:
                raise KeyboardInterrupt
            finally:
                raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(cli, "_command", lambda: Command())
    assert cli._run(["correlate"], debug=False) == 130
    err = capsys.readouterr().err
    assert err.startswith("pcaptools: interrupted (Bad file descriptor while cleaning up)")



def test_a_sigterm_whose_interrupt_a_library_swallowed_still_exits_130_without_a_traceback(monkeypatch, capsys):
    """numpy's tofile can swallow the KeyboardInterrupt a SIGTERM raises and fail with a TypeError instead (seen in
    a partitioned correlate): the recorded signal makes it the interrupt it follows."""
    import os
    import signal

    import pcaptools.cli as cli

    class Command:
        def main(self, **kw):  # noqa: ANN003, ANN201, ARG002
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs between bytecodes
                    pass
            except KeyboardInterrupt:
                pass  # swallowed where it landed
            raise TypeError("expected str, bytes or os.PathLike object, not BufferedWriter")

    monkeypatch.setattr(cli, "_command", lambda: Command())
    assert cli.main(["correlate"]) == 130
    err = capsys.readouterr().err
    assert err == "pcaptools: interrupted\n" and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN


_POOL = """
import sys
import pcaptools.process as process
def report(code):
    import pyarrow
    print(pyarrow.default_memory_pool().backend_name, code)
    sys.stdout.flush()
    process.os._exit(0)
process.end_process = report
sys.argv = ["pcaptools", *sys.argv[1:]]
from pcaptools.cli import main
main()
"""


def _pool_of_command(*args: str, env: dict | None = None) -> str:
    import os

    res = subprocess.run([sys.executable, "-c", _POOL, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.split()[-2]


def test_a_command_given_memory_allocates_arrow_from_glibc_which_gives_memory_back():
    sample = "sample_pcaps/calico-vxlan"
    assert _pool_of_command("correlate", sample, "--memory", "64MiB", "--json") == "system"
    assert _pool_of_command("correlate", sample, "--json") != "system"  # without a budget: pyarrow's own, faster
    # a pool the user chose is kept
    assert _pool_of_command("correlate", sample, "--memory", "64MiB", "--json", env={"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"


def test_arrow_gives_back_switches_the_pool_of_a_pyarrow_already_imported():
    code = "import os, pyarrow; os.environ.pop('ARROW_DEFAULT_MEMORY_POOL', None)\n" \
           "from pcaptools.process import arrow_gives_back; arrow_gives_back(); print(pyarrow.default_memory_pool().backend_name)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "system"
