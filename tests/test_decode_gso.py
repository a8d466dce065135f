"""GSO/GRO super-packets and BIG TCP against tcpdump's expected output (peer tcpdump tests).

IPv4 total length 0 and IPv6 payload length 0 (with or without a hop-by-hop jumbo option) take
their length from the wire; tcpdump prints the presumed length, the inner TCP ports, sequence
range and payload length, which must be ours too. (tshark stops at such carrier headers.)
"""

from __future__ import annotations

import re

import pytest

import pcaptools
from tests.decode_support import DATA

TESTS = DATA / "peer" / "tcpdump" / "tests"
FILES = sorted(TESTS.glob("bigtcp-*.pcap")) + sorted(TESTS.glob("gso-*.pcap"))
FRAME = re.compile(r"^\s+(\d+)\s+\d{4}-\d\d-\d\d ", re.M)
IP4 = re.compile(r"proto \w+ \(\d+\), length (\d+)")
IP6 = re.compile(r"payload length (\d+)\)(?: \[real length (\d+), presumed BIG TCP\])?(?:[^\n]*?HBH \(jumbo: (\d+)\))?")
TCP = re.compile(
    r"(?:\S+\.(\d+) > \S+\.(\d+)|(\d+) > (\d+)): Flags \[[^\]]*\], cksum [^,]+, seq (\d+):(\d+), ack (\d+),.*?length (\d+)"
)


def _expected(text: str) -> list[dict]:
    starts = [m.start() for m in FRAME.finditer(text)] + [len(text)]
    out = []
    for a, b in zip(starts, starts[1:], strict=False):
        block = text[a:b]
        lens = []
        for m in re.finditer(f"{IP4.pattern}|{IP6.pattern}", block):
            if m.group(1):
                lens.append((m.start(), int(m.group(1))))
            else:
                plen, real, jumbo = int(m.group(2)), m.group(3), m.group(4)
                lens.append((m.start(), int(real) if real else (int(jumbo) + 40 if jumbo else plen + 40)))
        t = list(TCP.finditer(block))[-1]
        g = t.groups()
        out.append({"ip_len": lens[-1][1], "sport": int(g[0] or g[2]), "dport": int(g[1] or g[3]),
                    "tcp_seq": int(g[4]), "tcp_ack": int(g[6]), "payload_len": int(g[7])})  # fmt: skip
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_super_packet_lengths_and_inner_tcp_match_tcpdump(path) -> None:
    exp = _expected(path.with_suffix(".out").read_text())
    df = pcaptools.read_packets(path)
    assert len(df) == len(exp)
    for i, e in enumerate(exp):
        row = df.iloc[i]
        got = {k: int(row[k]) for k in e}
        assert got == e, f"{path.name} packet {i + 1}"
        assert row["error"] != row["error"] and row["truncated_at"] != row["truncated_at"]
        if "vxlan" in path.name or "geneve" in path.name:
            assert row["tunnel"] in ("vxlan", "geneve") and row["tunnel_depth"] == 1
