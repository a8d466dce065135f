"""A diagnosis of a PathSet reads which connections have a DNAT step from the hops, not from the NAT steps of every
journey: the same connections as the NAT table's DNAT rows, and the same diagnosis (lab samples, a generated set)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pcaptools.k8s.diagnose import diagnose
from pcaptools.k8s.paths import load_paths

ROOT = Path(__file__).resolve().parent.parent
SETS = [ROOT / "sample_pcaps" / "calico-vxlan", ROOT / "sample_pcaps" / "vpc"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gen_set import generate

    out = tmp_path_factory.mktemp("gen") / "set"
    generate(20_000, out)
    return out


def _check(src: Path) -> None:
    ps = load_paths(src)
    fast = ps.dnat_connections  # from the hops
    assert callable(ps.__dict__["_nat_value"])  # the NAT steps of every journey not made for it
    d = diagnose(ps.captures, ps.correlation, ps.inventory, detail=ps.detail())
    assert callable(ps.__dict__["_nat_value"])  # nor for the diagnosis
    nat = ps.nat
    assert len(fast) and fast == frozenset(nat.loc[(nat["op"] == "DNAT").to_numpy(), "connection"].tolist())
    whole = SimpleNamespace(paths=ps.paths, nat=nat, hops=ps.hops)  # the NAT table given: read from it
    want = diagnose(ps.captures, ps.correlation, ps.inventory, detail=whole)
    pd.testing.assert_frame_equal(d.connections, want.connections)
    pd.testing.assert_frame_equal(d.losses, want.losses)


@pytest.mark.parametrize("src", SETS, ids=lambda p: p.name)
def test_dnat_connections_from_the_hops_are_the_nat_tables_on_lab_samples(src: Path):
    if not (src / "manifest.json").exists():
        pytest.skip(f"{src.name} is not checked out")
    _check(src)


def test_dnat_connections_from_the_hops_are_the_nat_tables_on_a_generated_set(generated: Path):
    _check(generated)
