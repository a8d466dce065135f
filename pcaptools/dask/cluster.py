"""Connect to a Dask cluster (``--scheduler ADDRESS``) or start a local one (``--workers N``), with one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from pcaptools.errors import PcapError

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for a scheduler to answer before saying it cannot be reached."""


class ClusterError(PcapError):
    """Dask is not installed, or the scheduler cannot be reached or started."""


def refuse_datasets(paths) -> None:  # noqa: ANN001 - the inputs as given
    """A ClusterError for a dataset directory (or ``DIR::FILE``) among ``paths``: the Dask layer decodes capture files."""
    from pcaptools.dataset import is_dataset, split_member

    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        if is_dataset(p) or split_member(os.fspath(p)) is not None:
            raise ClusterError(
                f"{os.fspath(p)}: a dataset `pcaptools convert` wrote is read in one process; drop --scheduler/--workers, "
                "or read its packets on Dask as a hive dataset: dask.dataframe.read_parquet('DIR/packets')"
            )


def require_dask():
    """``dask.distributed``, or a ClusterError naming the extra to install (nothing else in pcaptools needs dask)."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed
    except ImportError as exc:
        raise ClusterError(
            f"running on Dask needs the dask extra ({exc.name} is not installed); "
            "try pip install 'pcaptools[dask]' or run without --scheduler/--workers"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: str | None = None, *, workers: int | None = None, processes: bool = True) -> Iterator[object]:
    """A ``dask.distributed.Client`` for the scheduler at ``scheduler``, else for a LocalCluster of ``workers``
    single-threaded workers (processes, or threads with ``processes=False``); closed on exit."""
    distributed = require_dask()
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # task errors reach the user as one line, once
    if (scheduler is None) == (workers is None):
        raise ClusterError("give either a scheduler address or a number of workers, not both or neither")
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S} s ({type(exc).__name__}); "
                "check the address (tcp://HOST:8786) and that `dask scheduler` runs there"
            ) from None
        with client:
            yield client
        return
    if workers < 1:
        raise ClusterError(f"--workers: expected 1 or more workers, found {workers}")
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)  # fmt: skip
    with cluster, distributed.Client(cluster) as client:
        yield client
