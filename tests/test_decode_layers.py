"""Decoder behaviour on the hand-made captures (tests/data/decode, values from make_decode.py)."""

from __future__ import annotations

import struct
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

import pcaptools
from pcaptools.cli import app, main
from pcaptools.decode import decode_batch
from pcaptools.errors import DecodeError
from pcaptools.io import read_records
from pcaptools.schema import PACKET_COLUMNS, validate
from tests.decode_support import DATA, batch_of, tshark_available

D = DATA / "decode"


@pytest.fixture(scope="module")
def tunnels() -> pd.DataFrame:
    return pcaptools.read_packets(D / "tunnels.pcap")


def test_vxlan_on_port_8472_is_stripped(tunnels) -> None:
    r = tunnels.iloc[0]
    assert (r.tunnel, r.tunnel_rule, r.vni, r.tunnel_depth) == ("vxlan", "udp.dport==8472", 1, 1)
    assert (r.outer_src, r.outer_dst, r.outer_proto, r.outer_sport, r.outer_dport) == ("192.168.0.1", "192.168.0.2", 17, 51000, 8472)
    assert (r.src, r.dst, r.proto, r.sport, r.dport, r.ttl, r.ip_id) == ("10.244.1.5", "10.244.2.7", 6, 40000, 8080, 63, 777)
    assert (r.tcp_flags, r.tcp_seq, r.tcp_win, r.tcp_mss, r.tcp_wscale, r.tcp_sack_ok, r.tcp_tsval, r.tcp_tsecr) == (
        2, 1000, 64240, 1410, 7, True, 11, 0)  # fmt: skip
    assert r.outer_len == 14 + 20 + 8 + 8 + 14
    assert tunnels.iloc[1].tunnel_rule == "udp.dport==4789" and tunnels.iloc[1].vni == 4096


def test_qinq_keeps_the_outer_tag_and_finds_ip(tunnels) -> None:
    r = tunnels.iloc[2]
    assert (r.vlan, r.ethertype, r.src, r.dport) == (100, 0x0800, "10.0.0.1", 53)
    assert tunnels.iloc[3].vlan == 42 and tunnels.iloc[3].src == "fd00::1"


def test_gre_key_is_the_vni_and_transparent_ethernet_is_followed(tunnels) -> None:
    r = tunnels.iloc[4]
    assert (r.tunnel, r.vni, r.outer_proto, r.tunnel_rule, r.src, r.tcp_mss) == ("gre", 0xABCDEF, 47, "ip.proto==47", "10.244.1.5", 1410)


def test_ip_in_ipv6_tunnels(tunnels) -> None:
    a, b = tunnels.iloc[5], tunnels.iloc[6]
    assert (a.tunnel, a.outer_src, a.src, a.ip_version, a.sport) == ("ipip", "2001:db8::1", "10.1.1.1", 4, 5)
    assert (b.tunnel, b.outer_dst, b.dst, b.ttl, b.dport) == ("ip6ip", "2001:db8::2", "fd01::2", 9, 8)


def test_wireguard_and_esp_are_marked_and_keep_the_carrier(tunnels) -> None:
    wg, esp = tunnels.iloc[7], tunnels.iloc[8]
    assert (wg.tunnel, wg.tunnel_depth, wg.src, wg.dport, wg.outer_dport) == ("wireguard", 1, "10.9.0.1", 51820, 51820)
    assert (esp.tunnel, esp.proto, esp.outer_proto, esp.sport) == ("esp", 50, 50, -1)


def test_nested_vxlan_counts_depth_and_keeps_the_outermost(tunnels) -> None:
    r = tunnels.iloc[9]
    assert (r.tunnel_depth, r.vni, r.outer_src, r.src, r.sport) == (2, 7, "192.168.0.1", "10.244.1.5", 40000)
    shallow = pcaptools.read_packets(D / "tunnels.pcap", max_tunnel_depth=1).iloc[9]
    assert shallow.error == "tunnel_depth_exceeded" and shallow.tunnel_depth == 1 and shallow.src == "192.168.9.1"


def test_vxlan_port_is_an_option() -> None:
    default = pcaptools.read_packets(D / "tunnels.pcap", vxlan_ports=(4789,))
    assert pd.isna(default.iloc[0].tunnel) and default.iloc[0].dport == 8472 and default.iloc[1].tunnel == "vxlan"
    with pytest.raises(DecodeError, match="two tunnels"):
        pcaptools.read_packets(D / "tunnels.pcap", vxlan_ports=(4789,), geneve_ports=(4789,))
    with pytest.raises(DecodeError, match="1-65535"):
        pcaptools.read_packets(D / "tunnels.pcap", vxlan_ports=(0,))


def test_fragments_have_offsets_and_no_ports_after_the_first() -> None:
    df = pcaptools.read_packets(D / "ipv6_frags.pcap")
    v4 = df[df.ip_version == 4]
    assert list(v4.frag_offset) == [0, 48, 96] and list(v4.more_frags) == [True, True, False]
    assert list(v4.sport) == [999, -1, -1] and set(v4.ip_id) == {4242}
    six = df[(df.ip_version == 6) & (df.ip_id >= 0)]
    assert list(six.ip_id) == [0xDEAD, 0xDEAD] and list(six.frag_offset) == [0, 24] and list(six.sport) == [1, -1]
    ext = df.iloc[-1]
    assert (ext.proto, ext.sport, ext.dport, ext.dst) == (6, 10, 20, "fd00::d")


def test_icmp_errors_quote_the_original_packet_and_mtu() -> None:
    df = pcaptools.read_packets(D / "icmp_errors.pcap")
    a, b, c = (df.iloc[i] for i in range(3))
    assert (a.icmp_type, a.icmp_code, a.icmp_mtu, a.icmp_q_src, a.icmp_q_dst, a.icmp_q_proto, a.icmp_q_sport, a.icmp_q_dport) == (
        3, 4, 1450, "10.3.0.1", "10.3.0.2", 6, 4444, 80)  # fmt: skip
    assert (b.icmp_type, b.icmp_mtu, b.icmp_q_sport) == (11, -1, 4444)
    assert (c.icmp_type, c.icmp_mtu, c.icmp_q_src, c.icmp_q_proto, c.icmp_q_dport, c.sport) == (2, 1280, "fd00::1", 17, 53, -1)


@pytest.mark.parametrize("name", ["null.pcap", "null_be.pcap", "loop.pcap"])
def test_null_and_loop_families_in_both_byte_orders(name) -> None:
    df = pcaptools.read_packets(D / name)
    assert list(df.ip_version) == [4, 6, 6, 6] and list(df.dport) == [2, 4, 4, 4] and df.error.isna().all()


def test_snaplen_cut_keeps_what_fits_and_names_the_cut_layer() -> None:
    """Every field of a cut packet equals the whole packet's field, or is absent; the cut is named."""
    cut = pcaptools.read_packets(D / "tunnels_snap60.pcap")
    whole = pd.concat([pcaptools.read_packets(D / f) for f in ("tunnels.pcap", "ipv6_frags.pcap", "icmp_errors.pcap")],
                      ignore_index=True)  # fmt: skip
    assert len(cut) == len(whole) and (cut.caplen <= 60).all()
    for i in range(len(cut)):
        c, w = cut.iloc[i], whole.iloc[i]
        for name in ("src", "dst", "outer_src", "proto", "sport", "dport", "ttl", "ip_id", "vni", "tcp_seq"):
            if not (pd.isna(c[name]) or c[name] == -1) and c.tunnel_depth == w.tunnel_depth:
                assert c[name] == w[name], (i, name)
        assert c.tunnel_depth <= w.tunnel_depth
        if w.payload_offset > 60:  # the whole packet's headers end past the snaplen
            assert pd.notna(c.truncated_at), i
        elif w.payload_offset >= 0:
            assert c.truncated_at in (None, "icmp_quote") or pd.isna(c.truncated_at), i  # a quote lies past the L4 header
            assert c.payload_offset == w.payload_offset, i
    assert set(cut.truncated_at.dropna()) >= {"link", "ip", "ipv6_ext", "l4", "icmp_quote"}


def test_unknown_link_type_keeps_its_rows() -> None:
    df = pcaptools.read_packets(DATA / "peer" / "tcpdump" / "tests" / "nflog.pcap")
    assert len(df) == 4 and (df.error == "unknown_linktype").all() and (df.link == "LINKTYPE_239").all()


def test_sll2_interface_index_and_direction_match_tshark() -> None:
    path = DATA / "own" / "any_nano.pcap"
    df = pcaptools.read_packets(path)
    assert df.link.eq("LINUX_SLL2").all() and (df.ifindex > 0).all()
    if tshark_available():
        out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "sll.ifindex", "-e", "sll.pkttype"],
                             capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
        assert list(df.ifindex) == [int(x) for x in out[0::2]]
        assert list(df.direction) == [{"0": "in", "4": "out"}[x] for x in out[1::2]]


def test_sll_direction_and_vxlan(tmp_path) -> None:
    df = pcaptools.read_packets(D / "sll_vxlan.pcap")
    assert list(df.direction) == ["out", "out"] and list(df.tunnel) == ["vxlan", "vxlan"] and df.eth_dst.isna().all()


def test_pcapng_epb_flags_give_direction(tmp_path) -> None:
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(20)

    def block(t: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", t, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 0))
    epbs = b""
    for flag in (1, 2, 0):
        opt = struct.pack("<HHI", 2, 4, flag) + struct.pack("<HH", 0, 0)
        epbs += block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame + b"\0" * (-len(frame) % 4) + opt)
    p = tmp_path / "flags.pcapng"
    p.write_bytes(shb + idb + epbs)
    df = pcaptools.read_packets(p)
    assert list(df.direction.astype(object).fillna("-")) == ["in", "out", "-"]


def test_several_files_concatenate_with_category_dtypes() -> None:
    files = [D / "tunnels.pcap", DATA / "own" / "eth.pcap"]
    df = pcaptools.read_packets(files)
    validate(df, PACKET_COLUMNS, table="packet")
    assert list(df.file.cat.categories) == [str(f) for f in files]
    assert len(df) == sum(len(read_records(f)) for f in files)
    assert set(df.attrs["skipped"]) == {str(f) for f in files}


def test_iter_packets_matches_read_packets() -> None:
    path = DATA / "own" / "two_sections.pcapng"
    whole = pcaptools.read_packets(path)
    parts = list(pcaptools.iter_packets(path, batch_records=7))
    assert len(parts) > 1
    joined = pd.concat([p.astype({c: object for c in p.columns if isinstance(p[c].dtype, pd.CategoricalDtype)}) for p in parts],
                       ignore_index=True)  # fmt: skip
    expect = whole.astype({c: object for c in whole.columns if isinstance(whole[c].dtype, pd.CategoricalDtype)})
    pd.testing.assert_frame_equal(joined, expect)


def test_decode_batch_takes_a_record_batch() -> None:
    df = decode_batch(read_records(DATA / "own" / "eth.pcap"))
    assert len(df) == 34 and df.file.iloc[0].endswith("eth.pcap")
    empty = decode_batch(batch_of([]))
    validate(empty, PACKET_COLUMNS, table="packet")
    assert len(empty) == 0


def test_decode_cli_writes_parquet_with_categories(tmp_path) -> None:
    out = tmp_path / "p.parquet"
    res = CliRunner().invoke(app, ["decode", str(D / "tunnels.pcap"), "-o", str(out), "--vxlan-port", "4790"])
    assert res.exit_code == 0, res.output
    back = pd.read_parquet(out)
    assert len(back) == 10 and isinstance(back.src.dtype, pd.CategoricalDtype) and back.tunnel.iloc[0] == "vxlan"
    res = CliRunner().invoke(app, ["decode", str(D / "tunnels.pcap"), "-o", str(tmp_path / "p.csv")])
    assert res.exit_code == 0 and (tmp_path / "p.csv").read_text().count("\n") == 11


def test_show_cli_prints_scapy_beside_our_row() -> None:
    res = CliRunner().invoke(app, ["show", str(D / "tunnels.pcap"), "0"])
    assert res.exit_code == 0, res.output
    assert "###[ VXLAN ]###" in res.output and "udp.dport==8472" in res.output and "10.244.1.5" in res.output
    from scapy.layers.inet import UDP
    from scapy.layers.vxlan import VXLAN

    assert not any(c is VXLAN and f.get("dport") == 8472 for f, c in UDP.payload_guess)  # bound only during the call


def test_cli_errors_are_one_line(capsys) -> None:
    assert main(["show", str(D / "tunnels.pcap"), "99"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["decode", str(D / "tunnels.pcap"), "-o", "x.txt"]) == 2
    assert main(["decode", str(D / "tunnels.pcap"), "-o", "x.parquet", "--vxlan-port", "70000"]) == 2


def test_gre_with_an_undecoded_protocol_is_noted() -> None:
    df = pcaptools.read_packets(DATA / "peer" / "tcpdump" / "tests" / "erspan-type-ii-1.pcap")
    assert (df.tunnel == "gre").all() and (df.ip_version == 0).all() and df.outer_src.notna().all()
    assert any("ERSPAN" in n for n in df.attrs["notes"])


def test_ipv4_mapped_ipv6_address_in_an_ipv6_header_stays_ipv6(tmp_path):
    """IPv4 is held as ::ffff:a.b.c.d internally; an IPv6 header's ::ffff:… address must not print as IPv4."""
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    eth = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
    pkts = [Ether(**eth) / IPv6(src="2001:db8::1", dst="::ffff:0:0") / UDP(sport=1, dport=2),
            Ether(**eth) / IPv6(src="::ffff:10.0.0.1", dst="2001:db8::2") / UDP(sport=3, dport=4)]  # fmt: skip
    path = tmp_path / "mapped.pcap"
    wrpcap(str(path), pkts)
    df = pcaptools.read_packets(str(path))
    assert df["dst"].astype(str).tolist() == ["::ffff:0.0.0.0", "2001:db8::2"]
    assert df["src"].astype(str).tolist() == ["2001:db8::1", "::ffff:10.0.0.1"]
