"""Flow table: grouping, orientation, TCP accounting, ICMP errors, Community ID per flow, CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcaptools.community_id import community_id
from pcaptools.flows import flows
from pcaptools.schema import FLOW_COLUMNS, FLOW_STATES, PACKET_COLUMNS, validate

DATA = Path(__file__).parent / "data" / "peer"
CID = DATA / "community-id-spec"


# --- reference packet table built with dpkt (independent of our decoder) --------------------------
def _addr(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(b) == 16 else socket.AF_INET, b)


def dpkt_packets(path: Path) -> pd.DataFrame:
    """A PACKET_COLUMNS table of an Ethernet capture, filled field by field from dpkt."""
    rows = []
    with open(path, "rb") as fh:
        for i, (ts, buf) in enumerate(dpkt.pcap.UniversalReader(fh)):
            r = {c.name: (-1 if c.dtype.startswith("int") else None) for c in PACKET_COLUMNS}
            r.update(file=str(path.name), record=i, ts_ns=int(round(ts * 1e9)), iface=0, caplen=len(buf),
                     wirelen=len(buf), link="EN10MB", tunnel_depth=0, outer_len=0, ip_version=0,
                     more_frags=False, dont_frag=False, tcp_sack_ok=False)  # fmt: skip
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                r.update(ip_version=4, proto=ip.p, ip_len=ip.len, ip_id=ip.id, ttl=ip.ttl,
                         frag_offset=ip.offset, more_frags=bool(ip.mf))  # fmt: skip
                hdr = ip.hl * 4
            elif isinstance(ip, dpkt.ip6.IP6):
                r.update(ip_version=6, proto=ip.p, ip_len=ip.plen + 40, ttl=ip.hlim, frag_offset=0)
                hdr = 40 + sum(len(h) for h in ip.extension_hdrs.values() if h is not None)
            else:
                rows.append(r)
                continue
            r.update(src=_addr(ip.src), dst=_addr(ip.dst))
            l4 = ip.data
            l4len = r["ip_len"] - hdr
            if isinstance(l4, dpkt.tcp.TCP):
                opts = dict(dpkt.tcp.parse_opts(l4.opts))
                r.update(sport=l4.sport, dport=l4.dport, tcp_flags=l4.flags, tcp_seq=l4.seq, tcp_ack=l4.ack,
                         tcp_win=l4.win, payload_len=l4len - l4.off * 4)  # fmt: skip
                if dpkt.tcp.TCP_OPT_MSS in opts:
                    r["tcp_mss"] = int.from_bytes(opts[dpkt.tcp.TCP_OPT_MSS], "big")
                if dpkt.tcp.TCP_OPT_WSCALE in opts:
                    r["tcp_wscale"] = opts[dpkt.tcp.TCP_OPT_WSCALE][0]
            elif isinstance(l4, dpkt.udp.UDP | dpkt.sctp.SCTP):
                r.update(sport=l4.sport, dport=l4.dport, payload_len=l4len - (8 if r["proto"] == 17 else 12))
            elif isinstance(l4, dpkt.icmp.ICMP | dpkt.icmp6.ICMP6):
                r.update(icmp_type=l4.type, icmp_code=l4.code, payload_len=l4len - 8)
                inner = getattr(l4.data, "data", None)
                if r["proto"] == 1 and l4.type in (3, 4, 5, 11, 12) and isinstance(inner, dpkt.ip.IP):
                    q = inner
                elif r["proto"] == 58 and l4.type < 128:
                    try:
                        q = dpkt.ip6.IP6(bytes(l4.data)[4:])
                    except dpkt.UnpackError:
                        q = None
                else:
                    q = None
                if q is not None:
                    r.update(icmp_q_src=_addr(q.src), icmp_q_dst=_addr(q.dst), icmp_q_proto=q.p)
                    if isinstance(q.data, dpkt.udp.UDP | dpkt.tcp.TCP):
                        r.update(icmp_q_sport=q.data.sport, icmp_q_dport=q.data.dport)
                if r["proto"] == 1 and l4.type == 3 and l4.code == 4:
                    r["icmp_mtu"] = int.from_bytes(bytes(l4)[6:8], "big")
                if r["proto"] == 58 and l4.type == 2:
                    r["icmp_mtu"] = int.from_bytes(bytes(l4)[4:8], "big")
            rows.append(r)
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[c.name for c in PACKET_COLUMNS])
    for c in PACKET_COLUMNS:
        df[c.name] = df[c.name].astype(c.dtype) if c.dtype != "category" else pd.Categorical(df[c.name])
    return validate(df, PACKET_COLUMNS, table="packet")


def synthetic(pkts: list[dict], **common) -> pd.DataFrame:
    """A packet table from a few hand-written packets (defaults: TCP, native Ethernet)."""
    rows = []
    for i, p in enumerate(pkts):
        r = {c.name: (-1 if c.dtype.startswith("int") else None) for c in PACKET_COLUMNS}
        r.update(file="syn.pcap", record=i, iface=0, link="EN10MB", tunnel_depth=0, outer_len=0, ip_version=4,
                 more_frags=False, dont_frag=False, tcp_sack_ok=False, proto=6, frag_offset=0)  # fmt: skip
        r.update(common)
        r.update(p)
        r.setdefault("payload_len", 0)
        r["ip_len"] = r["payload_len"] + 40 if r["ip_len"] == -1 else r["ip_len"]
        r["wirelen"] = r["ip_len"] + 14 if r["wirelen"] == -1 else r["wirelen"]
        r["caplen"] = r["wirelen"]
        if r["proto"] == 6 and r["tcp_win"] == -1:
            r["tcp_win"] = 1000
        rows.append(r)
    return _frame(rows)


def conn(ts: int, a: str, b: str, sp: int, dp: int, fl: int, seq: int, n: int = 0, **kw) -> dict:
    return dict(ts_ns=ts, src=a, dst=b, sport=sp, dport=dp, tcp_flags=fl, tcp_seq=seq, payload_len=n, **kw)


S, SA, A, PA, FA, R = 2, 18, 16, 24, 17, 4
C, SRV = "10.0.0.1", "10.0.0.2"


def handshake(t0: int, cport: int = 40000, isn: int = 100, sisn: int = 900) -> list[dict]:
    return [
        conn(t0, C, SRV, cport, 80, S, isn, tcp_mss=1460, tcp_wscale=7),
        conn(t0 + 1000, SRV, C, 80, cport, SA, sisn, tcp_mss=1400, tcp_wscale=9),
        conn(t0 + 3000, C, SRV, cport, 80, A, isn + 1),
    ]


# --- tests ---------------------------------------------------------------------------------------
def test_result_matches_the_declared_flow_schema():
    f = flows(dpkt_packets(CID / "pcaps" / "combined.pcap"))
    validate(f, FLOW_COLUMNS, table="flow")
    assert list(f.columns) == [c.name for c in FLOW_COLUMNS]
    assert set(f["state"].dropna()) <= set(FLOW_STATES)
    assert f["uid"].is_unique


@pytest.mark.parametrize("source", ["dpkt", "read_packets"])
def test_flows_of_combined_capture_carry_the_pycommunityid_baseline_ids(source):
    if source == "dpkt":
        pk = dpkt_packets(CID / "pcaps" / "combined.pcap")
    else:
        pk = pytest.importorskip("pcaptools.packets", reason="decoder not installed yet").read_packets(
            str(CID / "pcaps" / "combined.pcap.gz")
        )
    f = flows(pk)
    base = json.loads((CID / "baseline" / "baseline_deflt.json").read_text())
    expected = {r["communityid"] for r in base}
    assert set(f["community_id"].dropna()) == expected
    for r in base:  # every baseline tuple is one of our flows, in one direction or the other
        hit = f[f["community_id"] == r["communityid"]]
        assert len(hit) == 1
        ends = {(hit["orig_h"].iloc[0], hit["resp_h"].iloc[0])}
        assert (r["saddr"], r["daddr"]) in ends | {(b, a) for a, b in ends}


def test_seed_and_hex_options_reach_every_flow():
    pk = dpkt_packets(CID / "pcaps" / "combined.pcap")
    for name, kw in (("seed1", {"seed": 1}), ("nob64", {})):
        base = json.loads((CID / "baseline" / f"baseline_{name}.json").read_text())
        f = flows(pk, **kw)
        ids = set(f["community_id"].dropna())
        if name == "nob64":
            ids = set(community_id(f["orig_h"], f["resp_h"], f["proto"], f["orig_p"], f["resp_p"], base64=False))
        assert ids == {r["communityid"] for r in base}


@pytest.mark.parametrize("capture", ["combined.pcap", "tcp.pcap", "icmp.pcap"])
def test_flows_of_some_columns_are_those_columns_of_every_flow(capture):
    from pcaptools.flows import KEY_COLUMNS

    path = CID / "pcaps" / capture
    if not path.exists():
        pytest.skip(f"no {capture}")
    pk = dpkt_packets(path)
    whole = flows(pk)
    for cols in (("state", "handshake_ns", "retransmissions"), ("orig_bytes", "tunnel"), ("icmp_errors", "mss_orig", "history")):
        some = flows(pk, columns=cols)
        assert list(some.columns) == [c.name for c in FLOW_COLUMNS if c.name in {*cols, *KEY_COLUMNS}]  # nothing else made
        pd.testing.assert_frame_equal(some, whole.loc[:, list(some.columns)], check_exact=True)  # same rows, order, values


def test_community_id_can_be_switched_off():
    f = flows(dpkt_packets(CID / "pcaps" / "udp.pcap"), community_id=False)
    assert f["community_id"].isna().all()


def test_both_directions_form_one_flow_with_the_syn_sender_as_originator():
    # the server's packet is first in the capture, but the client's SYN decides the originator
    pk = [conn(500, SRV, C, 80, 40000, A, 5)] + handshake(1000)
    f = flows(synthetic(pk), idle_timeout_s=10)
    assert len(f) == 1
    r = f.iloc[0]
    assert (r.orig_h, r.orig_p, r.resp_h, r.resp_p) == (C, 40000, SRV, 80)
    assert (r.orig_pkts, r.resp_pkts) == (2, 2)


def test_udp_originator_is_the_first_sender_and_counts_split_by_direction():
    pk = [
        dict(ts_ns=10, src="fd00::2", dst="fd00::1", proto=17, sport=53, dport=5353, payload_len=20, ip_version=6),
        dict(ts_ns=20, src="fd00::1", dst="fd00::2", proto=17, sport=5353, dport=53, payload_len=30, ip_version=6),
        dict(ts_ns=30, src="fd00::1", dst="fd00::2", proto=17, sport=5353, dport=53, payload_len=40, ip_version=6),
    ]
    r = flows(synthetic(pk)).iloc[0]
    assert (r.orig_h, r.orig_p) == ("fd00::2", 53)
    assert (r.orig_pkts, r.resp_pkts) == (1, 2)
    assert (r.orig_payload_bytes, r.resp_payload_bytes) == (20, 70)
    assert (r.orig_bytes, r.resp_bytes) == (60, 150)
    assert (r.orig_wire_bytes, r.resp_wire_bytes) == (74, 178)
    assert r.history == "Dd" and r.state == "bidirectional"
    assert r.duration_ns == 20


def test_handshake_rtt_options_history_and_closed_state():
    pk = handshake(0) + [
        conn(5000, C, SRV, 40000, 80, PA, 101, 10),
        conn(6000, SRV, C, 80, 40000, PA, 901, 50),
        conn(7000, C, SRV, 40000, 80, FA, 111),
        conn(8000, SRV, C, 80, 40000, FA, 951),
        conn(9000, C, SRV, 40000, 80, A, 112),
    ]
    r = flows(synthetic(pk)).iloc[0]
    assert (r.syn_synack_ns, r.synack_ack_ns, r.handshake_ns) == (1000, 2000, 3000)
    assert (r.mss_orig, r.mss_resp, r.wscale_orig, r.wscale_resp) == (1460, 1400, 7, 9)
    assert r.history == "ShADdFf"
    assert r.state == "closed"
    assert (r.retransmissions, r.out_of_order, r.resets) == (0, 0, 0)


def test_retransmission_and_out_of_order_are_told_apart():
    pk = handshake(0) + [
        conn(5000, C, SRV, 40000, 80, PA, 101, 100),
        conn(6000, C, SRV, 40000, 80, PA, 301, 100),  # 201..300 not yet seen
        conn(7000, C, SRV, 40000, 80, PA, 201, 100),  # arrives late: out of order
        conn(8000, C, SRV, 40000, 80, PA, 301, 100),  # same seq+len again: retransmission
    ]
    r = flows(synthetic(pk)).iloc[0]
    assert (r.retransmissions, r.out_of_order) == (1, 1)


def test_sequence_numbers_wrapping_around_are_not_out_of_order():
    isn = 2**32 - 50
    pk = handshake(0, isn=isn) + [
        conn(5000, C, SRV, 40000, 80, PA, isn + 1, 100),
        conn(6000, C, SRV, 40000, 80, PA, (isn + 101) % 2**32, 100),
    ]
    r = flows(synthetic(pk)).iloc[0]
    assert (r.retransmissions, r.out_of_order) == (0, 0)


def test_new_syn_after_reset_starts_a_new_flow_on_the_same_ports():
    pk = handshake(0) + [conn(4000, SRV, C, 80, 40000, R, 901)] + handshake(10_000, isn=7000)
    f = flows(synthetic(pk))
    assert len(f) == 2
    assert list(f["state"]) == ["reset", "established"]
    assert f["uid"].is_unique and f["community_id"].nunique() == 1


def test_syn_retransmission_without_close_stays_in_the_flow():
    pk = [conn(0, C, SRV, 40000, 80, S, 100), conn(1_000_000_000, C, SRV, 40000, 80, S, 100)]
    f = flows(synthetic(pk))
    assert len(f) == 1
    assert f.iloc[0].state == "attempt" and f.iloc[0].retransmissions == 1


def test_syn_answered_by_rst_is_rejected():
    pk = [conn(0, C, SRV, 40000, 81, S, 100), conn(10, SRV, C, 81, 40000, R | A, 0)]
    r = flows(synthetic(pk)).iloc[0]
    assert r.state == "rejected" and r.history == "Sr" and r.resets == 1


def test_idle_gap_longer_than_timeout_splits_a_flow():
    pk = [
        dict(ts_ns=0, src=C, dst=SRV, proto=17, sport=1000, dport=53, payload_len=1),
        dict(ts_ns=61 * 10**9, src=C, dst=SRV, proto=17, sport=1000, dport=53, payload_len=1),
    ]
    assert len(flows(synthetic(pk))) == 2  # UDP default: 60 s like Zeek
    assert len(flows(synthetic(pk), idle_timeout_s=120)) == 1


def test_icmp_echo_request_and_reply_share_a_flow():
    pk = [
        dict(ts_ns=0, src=C, dst=SRV, proto=1, icmp_type=8, icmp_code=0, payload_len=56, ip_len=84),
        dict(ts_ns=9, src=SRV, dst=C, proto=1, icmp_type=0, icmp_code=0, payload_len=56, ip_len=84),
    ]
    f = flows(synthetic(pk))
    assert len(f) == 1
    r = f.iloc[0]
    assert (r.orig_h, r.orig_p, r.resp_p, r.orig_pkts, r.resp_pkts) == (C, 8, 0, 1, 1)
    expected = community_id([C], [SRV], [1], [8], [0])[0]
    assert r.community_id == expected


def test_icmp_error_is_counted_on_the_flow_it_quotes_with_its_mtu():
    pk = handshake(0) + [
        conn(4000, C, SRV, 40000, 80, PA, 101, 1400),
        dict(ts_ns=4500, src="10.9.9.9", dst=C, proto=1, icmp_type=3, icmp_code=4, icmp_mtu=1450,
             icmp_q_src=C, icmp_q_dst=SRV, icmp_q_proto=6, icmp_q_sport=40000, icmp_q_dport=80, payload_len=28),
    ]  # fmt: skip
    f = flows(synthetic(pk))
    tcp = f[f.proto == 6].iloc[0]
    assert (tcp.icmp_errors, tcp.icmp_error_type, tcp.icmp_error_code, tcp.icmp_mtu) == (1, 3, 4, 1450)
    err = f[f.proto == 1].iloc[0]  # the error itself is a one-way ICMP flow (as Zeek logs it)
    assert (err.orig_h, err.orig_p, err.resp_p, err.icmp_errors) == ("10.9.9.9", 3, 4, 0)


def test_flow_seen_inside_and_outside_a_tunnel_says_so_with_overhead():
    vx = dict(tunnel="vxlan", vni=42, tunnel_depth=1, outer_src="192.168.1.1", outer_dst="192.168.1.2")
    pk = handshake(0)
    pk[0].update(vx, wirelen=40 + 50 + 14)
    pk[1].update(dict(vx, outer_src="192.168.1.2", outer_dst="192.168.1.1"), wirelen=40 + 50 + 14)
    r = flows(synthetic(pk)).iloc[0]
    assert r.seen_tunneled and r.seen_native
    assert (r.tunnel, r.vni, r.outer_orig_h, r.outer_resp_h) == ("vxlan", 42, "192.168.1.1", "192.168.1.2")
    assert r.encap_overhead_bytes == 2 * 50
    assert r.orig_wire_bytes - r.orig_bytes == 50 + 14 + 14


def test_later_fragments_join_the_flow_of_their_first_fragment():
    pk = [
        dict(ts_ns=0, src=C, dst=SRV, proto=17, sport=5000, dport=53, ip_id=7, more_frags=True,
             payload_len=1472, ip_len=1500),
        dict(ts_ns=1, src=C, dst=SRV, proto=17, ip_id=7, frag_offset=1480, ip_len=548),
    ]  # fmt: skip
    f = flows(synthetic(pk))
    assert len(f) == 1 and f.iloc[0].orig_pkts == 2 and f.iloc[0].orig_bytes == 2048


def test_non_ip_packets_make_no_flows():
    assert len(flows(dpkt_packets(CID / "pcaps" / "arp.pcap"))) == 0


def test_missing_columns_raise_a_decode_error():
    from pcaptools.errors import DecodeError

    with pytest.raises(DecodeError, match="read_packets"):
        flows(pd.DataFrame({"ts_ns": np.zeros(1, np.int64)}))


def test_flows_are_symmetric_under_swapping_every_packets_direction_of_capture_order():
    pk = dpkt_packets(CID / "pcaps" / "tcp.pcap")
    f1 = flows(pk)
    f2 = flows(pk.iloc[::-1].reset_index(drop=True).assign(ts_ns=pk["ts_ns"].iloc[::-1].to_numpy()))
    assert set(f1["community_id"]) == set(f2["community_id"])
    assert f1[["orig_pkts", "resp_pkts"]].sum().sum() == f2[["orig_pkts", "resp_pkts"]].sum().sum()


# --- CLI -------------------------------------------------------------------------------------------
def test_cli_help_shows_an_example(capsys):
    from pcaptools.cli import main

    assert main(["flows", "--help"]) == 0
    assert "Example: pcaptools flows" in capsys.readouterr().out


def test_cli_refuses_an_unknown_output_suffix_in_one_line(capsys, tmp_path):
    from pcaptools.cli import main

    assert main(["flows", str(CID / "pcaps" / "tcp.pcap"), "-o", str(tmp_path / "x.txt")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # a usage error: the usage line, then one pcaptools: line
    assert len(lines) == 2 and lines[0].startswith("Usage: pcaptools flows")
    assert lines[1].startswith("pcaptools: ") and ".parquet or .csv" in lines[1]


def test_cli_writes_parquet_and_prints_json(capsys, tmp_path):
    pytest.importorskip("pcaptools.packets", reason="the decoder (read_packets) is not installed yet")
    from pcaptools.cli import main

    out = tmp_path / "f.parquet"
    assert main(["flows", str(CID / "pcaps" / "tcp.pcap"), "--json", "-o", str(out)]) == 0
    rows = json.loads(capsys.readouterr().out)["flows"]
    back = pd.read_parquet(out)
    assert len(rows) == len(back) == 1
    assert rows[0]["community_id"] == back["community_id"][0] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


ADDR = st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2", None])
PKT = st.fixed_dictionaries({
    "ts_ns": st.integers(-(2**40), 2**40), "src": ADDR, "dst": ADDR,
    "proto": st.sampled_from([-1, 1, 6, 17, 58, 132, 46]), "sport": st.integers(-1, 65535),
    "dport": st.integers(-1, 65535), "tcp_flags": st.integers(-1, 255), "tcp_seq": st.integers(-1, 2**32 - 1),
    "payload_len": st.integers(-1, 9000), "icmp_type": st.integers(-1, 255), "icmp_code": st.integers(-1, 255),
    "frag_offset": st.sampled_from([-1, 0, 1480]), "ip_id": st.integers(-1, 3),
    "icmp_q_src": ADDR, "icmp_q_dst": ADDR, "icmp_q_proto": st.sampled_from([-1, 6, 17]),
})  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(PKT, max_size=25))
def test_arbitrary_packet_values_never_break_flows_and_every_ip_packet_is_counted_once(pkts):
    for p in pkts:  # the table's own invariant: one family per packet
        if p["src"] and p["dst"] and (":" in p["src"]) != (":" in p["dst"]):
            p["dst"] = p["src"]
    table = synthetic(pkts)
    f = flows(table)
    ip = table["src"].notna() & table["dst"].notna() & (table["proto"] >= 0)
    assert int(f["orig_pkts"].sum() + f["resp_pkts"].sum()) == int(ip.sum())
    assert (f["orig_pkts"] >= 1).all() and f["uid"].is_unique


@settings(max_examples=60, deadline=None)
@given(st.lists(PKT, min_size=1, max_size=25))
def test_mirroring_every_packet_keeps_the_number_of_flows(pkts):
    for p in pkts:
        if p["src"] and p["dst"] and (":" in p["src"]) != (":" in p["dst"]):
            p["dst"] = p["src"]
    mirrored = [dict(p, src=p["dst"], dst=p["src"], sport=p["dport"], dport=p["sport"]) for p in pkts]
    a, b = flows(synthetic(pkts)), flows(synthetic(mirrored))
    assert len(a) == len(b)


@pytest.mark.parametrize(("flows_n", "max_len"), [(150, 1500), (5000, 1500), (150, 1 << 18)])
def test_retransmission_key_packing_marks_what_duplicated_marks(flows_n: int, max_len: int):
    """The packed key (one column; two past 2,048 flows; five past 17-bit lengths) finds the same repeats as the
    five columns' DataFrame.duplicated, sequence numbers up to 2^32 - 1 included."""
    from pcaptools.flows import _seen_before

    rng = np.random.default_rng(7)
    n = 20_000
    f = np.sort(rng.integers(0, flows_n, n))
    o = rng.random(n) < 0.5
    seq = np.where(rng.random(n) < 0.01, (1 << 32) - 1, rng.integers(0, 1 << 32, n))
    seq[1::3] = seq[::3][: len(seq[1::3])]  # repeats, some in the same flow and direction
    plen = rng.integers(0, max_len, n)
    plen[1::3] = plen[::3][: len(plen[1::3])]
    x = rng.integers(0, 4, n)
    want = pd.DataFrame({"f": f, "o": o, "s": seq, "l": plen, "x": x}).duplicated().to_numpy()
    got = _seen_before(f, o, seq, plen, x)
    assert want.any() and np.array_equal(got, want)
