"""Our flows agree with Zeek's published baselines on the same traces (connections, tuples, counts).

Packets come from ``pcaptools.read_packets`` when the decoder is installed; plain Ethernet traces are
also checked with the dpkt reference table of test_flows.py, so the flow layer is tested on its own.

Principled differences from Zeek, applied to Zeek's side before comparing:
* Zeek logs the outer UDP connection of a VXLAN/Geneve/GRE-over-UDP tunnel too (rows whose uid is
  another row's ``tunnel_parents``, and rows whose ``service`` is the tunnel itself: a VXLAN packet
  carrying ARP has no inner IP connection, so Zeek logs only its outer one); we strip tunnels and
  keep only the inner IP flow.
* Zeek without an SCTP analyzer logs SCTP with ports 0 ("unknown_transport"); we keep SCTP ports.
* Zeek's TCP ``orig_bytes`` counts sequence space; we sum payload lengths. They agree when nothing
  was retransmitted, which holds for the traces compared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from test_flows import dpkt_packets

from pcaptools.flows import flows

ZEEK = Path(__file__).parent / "data" / "peer" / "zeek"
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def _read_packets():
    try:
        from pcaptools.packets import read_packets
    except ImportError:
        return None
    return read_packets


def conn_log(test: str) -> pd.DataFrame:
    """Zeek's conn.log baseline of a btest as a table, outer tunnel connections removed."""
    lines = (ZEEK / "Baseline" / test / "conn.log").read_text().splitlines()
    fields = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    rows = [x.split("\t") for x in lines if x and not x.startswith("#")]
    df = pd.DataFrame(rows, columns=fields)
    parents = {p for v in df["tunnel_parents"] for p in v.split(",") if p != "-"}
    outer = df["uid"].isin(parents) | df["service"].isin(["vxlan", "geneve"])
    return df[~outer].reset_index(drop=True)


def _ours(f: pd.DataFrame) -> dict[tuple, tuple]:
    return {
        (r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto): (
            r.orig_pkts, r.orig_bytes, r.resp_pkts, r.resp_bytes, r.orig_payload_bytes, r.resp_payload_bytes,
        )
        for r in f.itertuples()
    }  # fmt: skip


def _theirs(z: pd.DataFrame) -> dict[tuple, tuple]:
    out = {}
    for r in z.itertuples():
        key = (r[3], int(r[4]), r[5], int(r[6]), int(r.ip_proto))
        pay = tuple(int(x) if x != "-" else 0 for x in (r.orig_bytes, r.resp_bytes))
        out[key] = (int(r.orig_pkts), int(r.orig_ip_bytes), int(r.resp_pkts), int(r.resp_ip_bytes), *pay)
    return out


TUNNEL_CASES = [
    ("core.tunnels.vxlan", "tunnels/vxlan.pcap"),
    ("core.tunnels.geneve", "tunnels/geneve.pcap"),
    ("core.tunnels.geneve-ipv6", "tunnels/geneve-ipv6.pcap"),
    ("core.tunnels.geneve-many-options", "tunnels/geneve-many-options.pcap"),
    ("core.tunnels.geneve-47101", "tunnels/geneve-47101.pcap"),
    ("core.tunnels.analyzer-confirmation", "tunnels/vxlan-encapsulated-http.pcap"),
    ("core.tunnels.gre", "tunnels/gre-sample.pcap"),
    ("core.tunnels.gre-in-gre", "tunnels/gre-within-gre.pcap"),
]


@pytest.mark.parametrize(("test", "trace"), TUNNEL_CASES, ids=[t for t, _ in TUNNEL_CASES])
def test_inner_flows_of_tunnel_traces_match_zeek_conn_log(test, trace):
    read_packets = _read_packets()
    if read_packets is None:
        pytest.skip("pcaptools.packets.read_packets (the decoder) is not installed yet")
    ours = flows(read_packets(str(ZEEK / "Traces" / trace)))
    assert _ours(ours) == _theirs(conn_log(test))
    assert ours["seen_tunneled"].all()


@pytest.mark.parametrize("source", ["dpkt", "read_packets"])
def test_sctp_flow_matches_zeek_counts_with_ports_kept(source):
    pk = _packets(source, ZEEK / "Traces" / "communityid" / "sctp.pcap")
    ours = flows(pk)
    z = conn_log("core.unknown-ip-protocol")
    assert len(ours) == len(z) == 1
    o, t = ours.iloc[0], z.iloc[0]
    assert (o.orig_h, o.resp_h, o.proto) == (t["id.orig_h"], t["id.resp_h"], int(t.ip_proto))
    assert (o.orig_pkts, o.orig_bytes, o.resp_pkts, o.resp_bytes) == tuple(
        int(t[c]) for c in ("orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes")
    )


def _packets(source: str, path: Path) -> pd.DataFrame:
    if source == "dpkt":
        return dpkt_packets(path)
    read_packets = _read_packets()
    if read_packets is None:
        pytest.skip("pcaptools.packets.read_packets (the decoder) is not installed yet")
    return read_packets(str(path))


@pytest.mark.parametrize("source", ["dpkt", "read_packets"])
@pytest.mark.parametrize("trace", ["icmp", "icmp6", "ipv6", "tcp", "udp"])
def test_flows_match_zeek_connections_and_their_community_ids(trace, source):
    pat = re.compile(r"\[orig_h=([^,]+), orig_p=(\d+)/(\w+), resp_h=([^,]+), resp_p=(\d+)/\w+, proto=(\d+)")
    expected = set()
    for line in (ZEEK / "Baseline" / "bifs.community_id.run-pcaps" / f"{trace}.pcap.out").read_text().splitlines():
        m = pat.match(line)
        if m:
            a, ap, _, b, bp, proto = m.groups()
            expected.add((a, int(ap), b, int(bp), int(proto), line.rsplit(" ", 1)[1]))
    f = flows(_packets(source, ZEEK / "Traces" / "communityid" / f"{trace}.pcap"))
    got = {(r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto, r.community_id) for r in f.itertuples()}
    assert got == expected


@pytest.mark.parametrize("source", ["dpkt", "read_packets"])
def test_http_get_flow_matches_zeek_conn_log_community_id(source):
    line = (ZEEK / "Baseline" / "scripts.policy.protocols.conn.community-id-logging" / "conn.log.cut").read_text()
    a, ap, b, bp, proto, _svc, cid = next(x for x in line.splitlines() if x[:1].isdigit()).split("\t")
    f = flows(_packets(source, ZEEK / "Traces" / "http" / "get.pcap"))
    assert len(f) == 1
    r = f.iloc[0]
    assert (r.orig_h, r.orig_p, r.resp_h, r.resp_p, r.proto, r.community_id) == (a, int(ap), b, int(bp), PROTO[proto], cid)
