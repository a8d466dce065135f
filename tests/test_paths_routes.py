"""``paths`` on more connections than a listing can show: grouped by route (pcaptools/k8s/groups.py), each
connection counted in exactly one route, the first connection of each shown as its example; ``--all`` lists each."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pcaptools.cli import main
from pcaptools.k8s.groups import ROUTE_KEY, route_groups
from pcaptools.k8s.paths import load_paths

ROOT = Path(__file__).resolve().parents[1]
CALICO = ROOT / "sample_pcaps" / "calico-vxlan"

pytestmark = pytest.mark.skipif(not (CALICO / "manifest.json").exists(), reason="no lab samples under sample_pcaps/")


@pytest.fixture(scope="module")
def calico():
    return load_paths(CALICO)


def _shown_nat(ps):
    return ps.shown_nat if ps.shown_nat is not None else ps.nat


def test_routes_count_each_connection_once_by_what_its_path_shares(calico):
    from pcaptools.render.records import _nat_by_journey
    from pcaptools.render.terminal import _nat_short

    p = calico.paths
    nat = _shown_nat(calico)
    steps = _nat_by_journey(nat, p["forward_journey"].to_numpy(np.int64))  # the listing's own NAT objects
    want: dict[tuple, list] = {}
    for r in p.itertuples(index=False):
        key = tuple("<none>" if getattr(r, c) != getattr(r, c) else str(getattr(r, c)) for c in ROUTE_KEY if c != "nat_ops")
        want.setdefault(key + (_nat_short(steps.get(int(r.forward_journey), [])),), []).append(r)
    routes = route_groups(p, nat)
    assert int(routes["connections"].sum()) == len(p) and len(routes) == len(want) > 1
    assert list(routes["connections"]) == sorted(routes["connections"], reverse=True)
    for g in routes.itertuples(index=False):
        key = tuple("<none>" if getattr(g, c) != getattr(g, c) else str(getattr(g, c)) for c in ROUTE_KEY if c != "nat_ops")
        members = want[key + (g.nat_ops,)]
        assert g.connections == len(members)
        assert g.first_connection == min(m.connection for m in members)
        seen = [m.latency_ns for m in members if m.latency_ns >= 0]
        assert g.latency_p50_ns == round(float(np.percentile(seen, 50)))
        assert g.latency_p95_ns == round(float(np.percentile(seen, 95)))


def _blocks(text: str) -> list[int]:
    """Connection numbers of the route blocks printed (``#3 clusterip via ...`` after an empty line; a narrow
    console's summary lines also start with ``#3``, but follow no empty line)."""
    return [int(m) for m in re.findall(r"\n\n#(\d+) ", "\n" + text)]


@pytest.mark.parametrize("columns", ["200", "100"])
def test_paths_beyond_the_limit_prints_routes_and_each_one_s_first_connection(calico, monkeypatch, capsys, columns):
    import pcaptools.render.terminal as terminal

    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr(terminal, "LIST_LIMIT", 5)
    routes = route_groups(calico.paths, _shown_nat(calico))
    assert main(["paths", str(CALICO)]) == 0
    grouped = capsys.readouterr().out
    assert f"{len(calico.paths)} connections on {len(routes)} routes" in grouped
    assert _blocks(grouped) == list(routes["first_connection"])  # one example per route, the most used first
    if columns == "100":  # two lines a route: 'N × kind  client → ...'
        assert [int(n) for n in re.findall(r"^(\d+) × ", grouped, flags=re.M)] == list(routes["connections"])
    assert main(["paths", str(CALICO), "--all"]) == 0
    assert _blocks(capsys.readouterr().out) == list(calico.paths["connection"])
    assert main(["paths", str(CALICO), "--brief"]) == 0
    brief = capsys.readouterr().out
    assert not _blocks(brief) and f"on {len(routes)} routes" in brief


def test_routes_beyond_those_shown_are_counted_in_one_line(calico, monkeypatch, capsys):
    import pcaptools.render.terminal as terminal

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(terminal, "LIST_LIMIT", 5)
    monkeypatch.setattr(terminal, "ROUTES_SHOWN", 3)
    routes = route_groups(calico.paths, _shown_nat(calico))
    assert main(["paths", str(CALICO)]) == 0
    out = capsys.readouterr().out
    rest = int(routes["connections"].iloc[3:].sum())
    assert f"… {len(routes) - 3} more routes hold {rest} connections" in out
    assert _blocks(out) == list(routes["first_connection"].iloc[:3])


def test_up_to_the_limit_every_connection_is_listed(calico, capsys, monkeypatch):
    import pcaptools.render.terminal as terminal

    assert len(calico.paths) <= terminal.LIST_LIMIT
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["paths", str(CALICO)]) == 0
    out = capsys.readouterr().out
    assert "routes (same kind" not in out and _blocks(out) == list(calico.paths["connection"])
    assert Counter(_blocks(out)) == Counter(range(len(calico.paths)))
