"""Community ID v1 against every published vector: pycommunityid JSON, spec tables, Zeek baselines."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcaptools.community_id import community_id

DATA = Path(__file__).parent / "data" / "peer"
SPEC = DATA / "community-id-spec" / "baseline"
ZEEK = DATA / "zeek" / "Baseline"


def _ids(rows: list[tuple], **kw) -> np.ndarray:
    src, dst, proto, sp, dp = zip(*rows, strict=True)
    return community_id(list(src), list(dst), list(proto), list(sp), list(dp), **kw)


@pytest.mark.parametrize(("name", "kw"), [("deflt", {}), ("seed1", {"seed": 1}), ("nob64", {"base64": False})])
def test_pycommunityid_json_baselines_are_reproduced_from_their_tuples(name, kw):
    recs = json.loads((SPEC / f"baseline_{name}.json").read_text())
    assert len(recs) == 23
    rows = [(r["saddr"], r["daddr"], r["proto"], -1 if r["sport"] is None else r["sport"],
             -1 if r["dport"] is None else r["dport"]) for r in recs]  # fmt: skip
    assert list(_ids(rows, **kw)) == [r["communityid"] for r in recs]


def _readme_tables() -> dict[str, list[tuple]]:
    """The three hand-made tables of baseline/README.md: {heading: [(src, dst, proto, sp, dp, id)]}."""
    tables: dict[str, list[tuple]] = {}
    current = None
    for line in (SPEC / "README.md").read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            tables[current] = []
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current and len(cells) == 8 and cells[1].isdigit():
            port = [-1 if c == "-" else int(c) for c in cells[4:6]]
            addr = [str(ipaddress.ip_address(c)) for c in cells[2:4]]
            tables[current].append((addr[0], addr[1], int(cells[1]), port[0], port[1], cells[6]))
    return tables


def test_spec_readme_tables_are_reproduced():
    tables = _readme_tables()
    options = {"Default settings": {}, "A custom seed=1 value": {"seed": 1}, "No base64-encoding": {"base64": False}}
    assert set(tables) == set(options)
    for title, rows in tables.items():
        assert len(rows) == 16
        got = _ids([r[:5] for r in rows], **options[title])
        assert list(got) == [r[5] for r in rows], title


def test_zeek_community_id_bif_baselines_are_reproduced():
    pat = re.compile(r"\[orig_h=([^,]+), orig_p=(\d+)/\w+, resp_h=([^,]+), resp_p=(\d+)/\w+, proto=(\d+), ctx=\[\]\], (\S+)")
    rows = []
    for f in sorted((ZEEK / "bifs.community_id.run-pcaps").glob("*.out")):
        for m in map(pat.match, f.read_text().splitlines()):
            if m:
                a, ap, b, bp, proto, cid = m.groups()
                rows.append((a, b, int(proto), int(ap), int(bp), cid))
    assert len(rows) >= 19  # icmp, icmp6, ipv6, sctp, tcp, udp (arp has none)
    assert list(_ids([r[:5] for r in rows])) == [r[5] for r in rows]


def test_zeek_conn_log_community_id_column_is_reproduced():
    for d in ("scripts.policy.protocols.conn.community-id-logging",
              "scripts.policy.protocols.conn.community-id-logging-flipped"):  # fmt: skip
        lines = [x for x in (ZEEK / d / "conn.log.cut").read_text().splitlines() if x and not x.startswith("#")]
        assert lines
        for line in lines:
            a, ap, b, bp, proto, _service, cid = line.split("\t")
            num = {"tcp": 6, "udp": 17, "icmp": 1}[proto]
            assert community_id([a], [b], [num], [int(ap)], [int(bp)])[0] == cid
            assert community_id([b], [a], [num], [int(bp)], [int(ap)])[0] == cid


def test_rows_without_addresses_or_protocol_get_no_id():
    got = community_id(["10.0.0.1", None, "10.0.0.1"], ["10.0.0.2", "10.0.0.2", "fd00::1"], [6, 6, 6], [1, 1, 1], [2, 2, 2])
    assert got[0].startswith("1:") and got[1] is None and got[2] is None
    assert community_id(["10.0.0.1"], ["10.0.0.2"], [-1], [-1], [-1])[0] is None


def test_seed_outside_16_bits_is_refused():
    with pytest.raises(ValueError, match="16-bit"):
        community_id(["10.0.0.1"], ["10.0.0.2"], [6], [1], [2], seed=70000)


v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


@given(st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)), st.sampled_from([6, 17, 132, 46]), port, port,
       st.integers(0, 65535))  # fmt: skip
def test_both_directions_of_a_flow_share_one_id(addrs, proto, sp, dp, seed):
    a, b = addrs
    fwd, rev = community_id([a, b], [b, a], [proto, proto], [sp, dp], [dp, sp], seed=seed)
    assert fwd == rev


@given(st.tuples(v4, v4), st.sampled_from([(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)]))
def test_icmp_request_and_reply_share_one_id(addrs, pair):
    a, b = addrs
    req, rep = community_id([a, b], [b, a], [1, 1], [pair[0], pair[1]], [0, 0])
    assert req == rep


def test_one_way_icmp_is_not_reordered():
    # type 3 has no counterpart: each direction is its own flow (spec: one-way treatment)
    x, y = community_id(["10.0.0.1", "10.0.0.2"], ["10.0.0.2", "10.0.0.1"], [1, 1], [3, 3], [1, 1])
    assert x != y


def test_many_rows_hash_each_distinct_tuple_once_with_identical_results():
    rows = [("10.0.0.1", "10.0.0.2", 6, 1000 + i % 7, 80) for i in range(5000)]
    got = _ids(rows)
    assert len(set(got)) == 7
    assert got[0] == _ids([rows[0]])[0] and got[6] == _ids([rows[6]])[0]
