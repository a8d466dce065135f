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
