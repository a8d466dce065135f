"""Fixtures shared by several test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Every numba kernel compiled (or loaded from the cache) before the first test, as ``pcaptools warmup`` does: on a
    fresh clone the first-run compile notice would otherwise land on stderr inside whichever test first needs a
    kernel, and CliRunner's output holds stderr too (a JSON document with a notice before it does not parse)."""
    from pcaptools.warmup import warmup

    warmup()


@pytest.fixture(scope="session")
def plain_dir(tmp_path_factory) -> Path:
    """calico-vxlan's captures and inventory.json without its manifest: every point inferred from names and packets."""
    d = tmp_path_factory.mktemp("plain") / "calico-vxlan"
    shutil.copytree(SAMPLES / "calico-vxlan", d, ignore=shutil.ignore_patterns("manifest.json", "truth.json"))
    return d


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """A seeded 4-point set (benchmarks/gen_set.py): 20,000 packets, ~200 connections through a ClusterIP DNAT, VXLAN
    and native on the uplinks, a 3.7 ms clock offset, drops and retransmissions (modules wanting another override it)."""
    import sys

    sys.path.insert(0, str(SAMPLES.parent / "benchmarks"))  # gen_set imports its sibling gen
    try:
        import gen_set
    finally:
        sys.path.remove(str(SAMPLES.parent / "benchmarks"))
    out = tmp_path_factory.mktemp("set20k") / "generated"
    gen_set.generate(20000, out, seed=0)
    return out
