"""pcaptools: decode, correlate and compare Kubernetes node captures, columnar and fast."""

from __future__ import annotations

__version__ = "0.1.0"

from pcaptools import lab as lab  # noqa: E402  (lazy: pcaptools.lab.run_lab imports on first use)
from pcaptools.compare import compare as compare  # noqa: E402  (pcaptools.compare(dirs) -> Comparison)
from pcaptools.correlate import CaptureSet as CaptureSet  # noqa: E402
from pcaptools.correlate import correlate as correlate  # noqa: E402  (the matcher compiles on first call)
from pcaptools.flows import flows as flows  # noqa: E402  (pcaptools.flows(packets) -> flow table)
from pcaptools.io import iter_records as iter_records  # noqa: E402  (walkers load from numba's cache on first call)
from pcaptools.io import read_records as read_records  # noqa: E402
from pcaptools.io import summarize as summarize  # noqa: E402
from pcaptools.k8s.discover import load_captures as load_captures  # noqa: E402  (plain captures -> CaptureSet)
from pcaptools.k8s.paths import paths as paths  # noqa: E402  (pcaptools.paths(correlation, inventory) -> path table)
from pcaptools.packets import iter_packets as iter_packets  # noqa: E402  (decoder kernels compile on first call)
from pcaptools.packets import read_packets as read_packets  # noqa: E402
