"""Every column of every table pcaptools returns: name, dtype, unit and a one-line doc.

Conventions (fixed, documented once here):

* Absent integers are ``-1`` (ports of an ICMP packet, the VNI of an untunnelled packet): plain
  numpy dtypes keep every column vectorised; ``-1`` is never a valid value of those fields. A
  column whose doc names ``-1`` declares it as its ``absent`` value; JSON output writes ``null``
  there (:mod:`pcaptools.render.records`).
* Addresses (``src``, ``dst``, ``outer_*``, ``eth_*``) are pandas ``category`` columns of readable
  strings (``10.0.1.5``, ``fd00::1``, ``02:42:ac:11:00:02``); absent is missing (``NaN``). IPv4 and
  IPv6 share the same columns. :mod:`pcaptools.addr` turns them into 128-bit integer pairs for
  vectorised joins and hashing.
* Closed vocabularies (``tunnel``, ``direction``, ``truncated_at``, ``error``) are ``category``
  columns whose allowed values are listed below; absent is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

_INT_DTYPES = ("int8", "int16", "int32", "int64")


@dataclass(frozen=True)
class Column:
    """One column: name, dtype, unit, one-line doc, and the value that means 'absent' (JSON ``null``)."""

    name: str
    dtype: str  # numpy dtype name, or "category" / "bool"
    unit: str
    doc: str
    absent: int | None = None  # None: derived from the doc (an integer column whose doc names -1 has absent -1)

    def __post_init__(self) -> None:
        if self.absent is None and self.dtype in _INT_DTYPES and "-1" in self.doc:
            object.__setattr__(self, "absent", -1)


# Closed vocabularies --------------------------------------------------------------------------
TUNNELS = ("vxlan", "geneve", "ipip", "ip6ip", "gre", "wireguard", "esp")
"""Values of ``tunnel``: the outermost encapsulation stripped (or, for wireguard/esp, recognised)."""

DIRECTIONS = ("in", "out", "host", "broadcast", "multicast", "otherhost", "unknown")
"""Values of ``direction``: from LINUX_SLL/SLL2 packet type or pcapng ``epb_flags``."""

LAYERS = ("link", "vlan", "outer_ip", "outer_l4", "tunnel", "ip", "ipv6_ext", "l4", "icmp_quote")
"""Values of ``truncated_at``: the first layer whose header did not fit in the captured bytes."""

ERRORS = (
    "unknown_linktype", "bad_ip_version", "bad_ihl", "bad_ip_len", "bad_ipv6_ext", "bad_tcp_offset",
    "bad_udp_len", "bad_gre", "bad_geneve", "tunnel_depth_exceeded",
)  # fmt: skip
"""Values of ``error``: no decoder for the link type; IP version nibble not 4/6 where IP was
announced; IPv4 IHL < 5; an IP length field shorter than the headers it must hold; more than 8
IPv6 extension headers; TCP data offset < 5; UDP length 1-7; GRE version > 1 or source routing;
Geneve version != 0; more nested tunnels than ``max_tunnel_depth``."""


PACKET_COLUMNS: tuple[Column, ...] = (
    Column("file", "category", "", "capture file the packet was read from"),
    Column("record", "int64", "", "0-based record number in its file (pcapng: among packet blocks)"),
    Column("ts_ns", "int64", "ns", "capture timestamp, nanoseconds since the Unix epoch (UTC)"),
    Column("iface", "int32", "", "capture interface id within the file (pcapng IDB index; 0 for pcap)"),
    Column("caplen", "int32", "bytes", "bytes captured (<= wirelen when snaplen cut the packet)"),
    Column("wirelen", "int32", "bytes", "original length of the frame on the wire"),
    Column("link", "category", "", "link-layer type name (EN10MB, LINUX_SLL2, RAW, ...)"),
    Column("direction", "category", "", "packet direction from the capture (see DIRECTIONS)"),
    Column("ifindex", "int32", "", "LINUX_SLL2 interface index (tcpdump -i any), else -1"),
    Column("eth_src", "category", "", "outermost link-layer source address"),
    Column("eth_dst", "category", "", "outermost link-layer destination address (empty for SLL)"),
    Column("vlan", "int32", "", "outermost 802.1Q VLAN id, -1 if untagged"),
    Column("ethertype", "int32", "", "ethertype (or SLL protocol) of the outermost network layer, -1 if none"),
    Column("tunnel", "category", "", "outermost encapsulation stripped (see TUNNELS); missing if none"),
    Column("vni", "int64", "", "VXLAN/Geneve VNI or GRE key of the outermost tunnel, -1 if none"),
    Column("tunnel_depth", "int8", "", "number of encapsulation layers stripped (0 = native)"),
    Column("outer_src", "category", "", "outer (on-the-wire) IP source of a tunnelled packet"),
    Column("outer_dst", "category", "", "outer (on-the-wire) IP destination of a tunnelled packet"),
    Column("outer_proto", "int16", "", "outer IP protocol (17 for VXLAN/Geneve, 4 IPIP, 47 GRE), -1 if none"),
    Column("outer_sport", "int32", "", "outer UDP source port of a UDP tunnel, -1 if none"),
    Column("outer_dport", "int32", "", "outer UDP destination port of a UDP tunnel, -1 if none"),
    Column("outer_len", "int32", "bytes", "bytes of outer headers before the inner IP header (0 if none)"),
    Column("ip_version", "int8", "", "4 or 6 for the inner (main) IP header, 0 if none (ARP, ...)"),
    Column("src", "category", "", "inner IP source (ARP: sender protocol address)"),
    Column("dst", "category", "", "inner IP destination (ARP: target protocol address)"),
    Column("proto", "int16", "", "inner IP protocol after IPv6 extension headers (6 TCP, 17 UDP, ...), -1 if none"),
    Column("sport", "int32", "", "TCP/UDP/SCTP source port, -1 if none"),
    Column("dport", "int32", "", "TCP/UDP/SCTP destination port, -1 if none"),
    Column("ip_id", "int64", "", "IPv4 identification, or IPv6 fragment-header identification, -1 if none"),
    Column("ttl", "int16", "", "IPv4 TTL or IPv6 hop limit, -1 if none"),
    Column("ip_len", "int32", "bytes", "IP total length (IPv6: payload length + 40); from caplen for BIG TCP/jumbo"),
    Column("frag_offset", "int32", "bytes", "fragment offset in bytes, -1 if no IP"),
    Column("more_frags", "bool", "", "IP more-fragments flag"),
    Column("dont_frag", "bool", "", "IPv4 don't-fragment flag"),
    Column("tcp_flags", "int16", "", "TCP flags (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128), -1 if not TCP"),
    Column("tcp_seq", "int64", "", "TCP sequence number, -1 if not TCP"),
    Column("tcp_ack", "int64", "", "TCP acknowledgement number, -1 if not TCP"),
    Column("tcp_win", "int32", "", "TCP window field (unscaled), -1 if not TCP"),
    Column("tcp_mss", "int32", "bytes", "TCP MSS option, -1 if absent"),
    Column("tcp_wscale", "int16", "", "TCP window-scale option shift, -1 if absent"),
    Column("tcp_sack_ok", "bool", "", "TCP SACK-permitted option present"),
    Column("tcp_tsval", "int64", "", "TCP timestamp option TSval, -1 if absent"),
    Column("tcp_tsecr", "int64", "", "TCP timestamp option TSecr, -1 if absent"),
    Column("icmp_type", "int16", "", "ICMP/ICMPv6 type, -1 if not ICMP"),
    Column("icmp_code", "int16", "", "ICMP/ICMPv6 code, -1 if not ICMP"),
    Column("icmp_mtu", "int32", "bytes", "next-hop MTU of frag-needed / packet-too-big, -1 otherwise"),
    Column("icmp_q_src", "category", "", "source of the packet quoted in an ICMP error"),
    Column("icmp_q_dst", "category", "", "destination of the packet quoted in an ICMP error"),
    Column("icmp_q_proto", "int16", "", "protocol of the quoted packet, -1 if none"),
    Column("icmp_q_sport", "int32", "", "source port of the quoted packet, -1 if none"),
    Column("icmp_q_dport", "int32", "", "destination port of the quoted packet, -1 if none"),
    Column("payload_offset", "int32", "bytes", "offset of the L4 payload from the start of the captured frame, -1 if none"),
    Column("payload_len", "int32", "bytes", "L4 payload length from the headers (may exceed captured bytes), -1 if none"),
    Column("truncated_at", "category", "", "first layer cut by the snaplen (see LAYERS); missing if whole"),
    Column("error", "category", "", "why decoding stopped early on a malformed header; missing if none"),
    Column("tunnel_rule", "category", "", "registry rule that recognised the outermost tunnel ('udp.dport==8472'); missing if none"),
)

PAYLOAD_HASH_COLUMN = Column(
    "payload_hash", "uint64", "", "hash of the first 16 L4 payload bytes captured (the correlator's fingerprint reads it)"
)
"""The column ``read_packets(..., payload_hash=True)`` adds after PACKET_COLUMNS; Parquet datasets store it."""

FLOW_STATES = (
    "attempt", "rejected", "half-open", "established", "half-closed", "closed", "reset", "midstream",
    "oneway", "bidirectional",
)  # fmt: skip
"""Values of the flow ``state`` at the end of the capture (pcaptools.flows documents each).

TCP: ``attempt`` SYN without answer; ``rejected`` SYN answered by RST; ``half-open`` SYN and SYN-ACK
but nothing more from the originator; ``established`` handshake done, no FIN/RST; ``half-closed``
FIN from one side; ``closed`` FIN from both; ``reset`` RST after the handshake or mid-stream;
``midstream`` no SYN/SYN-ACK seen (began before the capture). Other protocols: ``oneway`` /
``bidirectional`` by whether the responder sent anything.
"""

FLOW_COLUMNS: tuple[Column, ...] = (
    Column("file", "category", "", "capture file the flow was seen in (flows are per capture point)"),
    Column("uid", "str", "", "stable flow id: hash of file, ordered 5-tuple and first timestamp"),
    Column("community_id", "str", "", "Community ID v1 of the inner 5-tuple (missing if disabled)"),
    Column("proto", "int16", "", "inner IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...)"),
    Column("orig_h", "category", "", "originator address: sender of the first SYN, else of the first packet"),
    Column("orig_p", "int32", "", "originator port (ICMP: type), -1 for port-less protocols"),
    Column("resp_h", "category", "", "responder address"),
    Column("resp_p", "int32", "", "responder port (ICMP: counterpart type, or code if one-way), -1 if port-less"),
    Column("first_ts_ns", "int64", "ns", "timestamp of the flow's first packet"),
    Column("last_ts_ns", "int64", "ns", "timestamp of the flow's last packet"),
    Column("duration_ns", "int64", "ns", "last_ts_ns - first_ts_ns"),
    Column("orig_pkts", "int64", "", "packets sent by the originator (non-first fragments included)"),
    Column("resp_pkts", "int64", "", "packets sent by the responder"),
    Column("orig_bytes", "int64", "bytes", "IP-layer bytes (sum of ip_len) from the originator, like Zeek's orig_ip_bytes"),
    Column("resp_bytes", "int64", "bytes", "IP-layer bytes from the responder"),
    Column("orig_payload_bytes", "int64", "bytes", "L4 payload bytes from the originator (retransmissions included)"),
    Column("resp_payload_bytes", "int64", "bytes", "L4 payload bytes from the responder"),
    Column("orig_wire_bytes", "int64", "bytes", "on-wire frame bytes (wirelen, encapsulation included) from the originator"),
    Column("resp_wire_bytes", "int64", "bytes", "on-wire frame bytes from the responder"),
    Column("encap_overhead_bytes", "int64", "bytes", "wire bytes of tunnelled packets beyond link header + inner IP packet"),
    Column("tunnel", "category", "", "outermost encapsulation of the first tunnelled packet (see TUNNELS)"),
    Column("vni", "int64", "", "VNI / GRE key of the first tunnelled packet, -1 if never tunnelled"),
    Column("outer_orig_h", "category", "", "outer IP on the originator's side (its node) of the first tunnelled packet"),
    Column("outer_resp_h", "category", "", "outer IP on the responder's side of the first tunnelled packet"),
    Column("seen_tunneled", "bool", "", "some packets of the flow were inside a tunnel"),
    Column("seen_native", "bool", "", "some packets of the flow were not tunnelled"),
    Column("syn_synack_ns", "int64", "ns", "TCP: first SYN to first SYN-ACK, -1 if not seen"),
    Column("synack_ack_ns", "int64", "ns", "TCP: first SYN-ACK to the originator's first ACK after it, -1"),
    Column("handshake_ns", "int64", "ns", "TCP: first SYN to that ACK (syn_synack_ns + synack_ack_ns), -1"),
    Column("mss_orig", "int32", "bytes", "TCP MSS option announced by the originator, -1 if none"),
    Column("mss_resp", "int32", "bytes", "TCP MSS option announced by the responder, -1 if none"),
    Column("wscale_orig", "int16", "", "TCP window-scale shift announced by the originator, -1 if none"),
    Column("wscale_resp", "int16", "", "TCP window-scale shift announced by the responder, -1 if none"),
    Column("retransmissions", "int64", "", "TCP segments (data/SYN/FIN) whose seq and payload length were seen before in that direction"),
    Column("out_of_order", "int64", "", "TCP data segments starting below the highest sequence end seen, not retransmissions"),
    Column("zero_windows", "int64", "", "TCP non-RST packets advertising a zero window"),
    Column("resets", "int64", "", "TCP packets with RST"),
    Column("history", "str", "", "Zeek-like letters S h a d f r (upper: originator), each once, in order of first occurrence"),
    Column("state", "category", "", "state at the end of the capture (see FLOW_STATES)"),
    Column("icmp_errors", "int64", "", "ICMP errors seen that quote a packet of this flow (either direction)"),
    Column("icmp_error_type", "int16", "", "type of the last such ICMP error, -1 if none"),
    Column("icmp_error_code", "int16", "", "code of the last such ICMP error, -1 if none"),
    Column("icmp_mtu", "int32", "bytes", "next-hop MTU of the last frag-needed / packet-too-big for this flow, -1"),
)


def columns_by_name(columns: tuple[Column, ...]) -> dict[str, Column]:
    return {c.name: c for c in columns}


def validate(df: pd.DataFrame, columns: tuple[Column, ...], *, table: str) -> pd.DataFrame:
    """Check that ``df`` has every declared column with its declared dtype; return it unchanged.

    Raises ``TypeError`` naming the first offending column: a schema break is a bug, not user error.
    """
    dtypes = dict(zip(df.columns, df.dtypes, strict=True))  # one pass, not a column lookup per name
    for col in columns:
        if col.name not in dtypes:
            raise TypeError(f"{table} table is missing column {col.name!r}")
        got = dtypes[col.name]
        if col.dtype == "category":
            ok = isinstance(got, pd.CategoricalDtype)
        else:
            ok = str(got) == col.dtype
        if not ok:
            raise TypeError(f"{table} column {col.name!r} has dtype {got}, schema says {col.dtype}")
    return df


def describe(columns: tuple[Column, ...]) -> pd.DataFrame:
    """The schema as a table (name, dtype, unit, doc), for docs and ``pcaptools schema``."""
    return pd.DataFrame([c.__dict__ for c in columns])


HOPS_COLUMNS: tuple[Column, ...] = (
    Column("journey", "int64", "", "id of one packet's journey across capture points (pcaptools.correlate)"),
    Column("hop", "int16", "", "0-based position of this sighting in its journey, in corrected time order"),
    Column("hops", "int16", "", "number of capture points the journey was seen at (1 = unmatched)"),
    Column("point", "category", "", "capture point 'node:interface' of this sighting"),
    Column("node", "category", "", "node (clock domain) of the capture point"),
    Column("interface", "category", "", "interface of the capture point"),
    Column("ts_ns", "int64", "ns", "timestamp as captured, on the node's own clock"),
    Column("ts_corrected_ns", "int64", "ns", "timestamp on the reference node's clock (offset/skew removed)"),
    Column("since_first_ns", "int64", "ns", "corrected time since the journey's first sighting"),
    Column("ambiguous", "bool", "", "another journey shares this packet's fingerprint (retransmission, dup ACK...)"),
    Column("fingerprint", "uint64", "", "NAT/tunnel-invariant packet fingerprint (pcaptools.correlate.fingerprint)"),
    Column("file", "category", "", "capture file of this sighting"),
    Column("record", "int64", "", "record number of this sighting in its file"),
    Column("direction", "category", "", "packet direction at the capture point (see DIRECTIONS)"),
    Column("src", "category", "", "inner IP source as seen here (differs from the previous hop after SNAT)"),
    Column("dst", "category", "", "inner IP destination as seen here (differs after DNAT)"),
    Column("sport", "int32", "", "source port as seen here, -1 if none"),
    Column("dport", "int32", "", "destination port as seen here, -1 if none"),
    Column("proto", "int16", "", "inner IP protocol"),
    Column("tunnel", "category", "", "encapsulation around the packet here (see TUNNELS); missing if native"),
    Column("vni", "int64", "", "VXLAN/Geneve VNI or GRE key here, -1 if none"),
    Column("outer_src", "category", "", "outer IP source here when tunnelled"),
    Column("outer_dst", "category", "", "outer IP destination here when tunnelled"),
    Column("ttl", "int16", "", "inner TTL / hop limit here"),
    Column("wirelen", "int32", "bytes", "frame length on the wire here (grows by the tunnel overhead)"),
    Column("ip_id", "int64", "", "IPv4 identification, -1 if none"),
    Column("tcp_flags", "int16", "", "TCP flags, -1 if not TCP"),
)

OFFSET_COLUMNS: tuple[Column, ...] = (
    Column("node", "str", "", "node (clock domain) of the capture points"),
    Column("offset_ns", "int64", "ns", "node clock minus reference clock at at_ns (0 for the reference and for unsolved nodes)"),
    Column("uncertainty_ns", "float64", "ns", "half-width of the offset's interval that holds the true offset; NaN if unsolved"),
    Column("at_ns", "int64", "ns", "instant (node clock) the offset holds at; corrected = ts - (offset + skew*(ts - at))"),
    Column("skew_ppm", "float64", "ppm", "applied clock rate error against the reference; 0 unless the data shows one beyond doubt"),
    Column("skew_uncertainty_ppm", "float64", "ppm", "half-width of the rate interval the data allows; NaN if unsolved or unbounded"),
    Column("skew_matters", "bool", "", "the rate is applied: it excludes 0 and its effect exceeds its own uncertainty"),
    Column("pairs", "int64", "", "packets matched in both directions with other nodes that the estimate used"),
    Column("reference", "bool", "", "this node's clock is the reference (offset 0, skew 0)"),
)


# Kubernetes layer (pcaptools.k8s) -----------------------------------------------------------------
NAT_OPS = ("DNAT", "SNAT", "un-DNAT", "un-SNAT")
"""Values of the NAT ``op``: destination / source rewritten on a forward packet (client -> server), or
restored on a reply (un-DNAT rewrites the reply's source back to the frontend, un-SNAT its destination)."""

NAT_KINDS = ("clusterip", "nodeport", "loadbalancer", "egress-masquerade", "service-masquerade", "other")
"""Values of ``nat_kind``: a service ClusterIP:port, node IP:nodePort or load-balancer ingress IP:port
translated to a backend (or node:nodePort); SNAT to a node address for traffic leaving the cluster; SNAT
to a node address for traffic into a pod (externalTrafficPolicy Cluster via another node, hairpin);
anything the inventory does not explain."""

NAT_COLUMNS: tuple[Column, ...] = (
    Column("journey", "int64", "", "journey (one packet) whose tuple changed between two consecutive sightings"),
    Column("connection", "int64", "", "connection id from pcaptools.paths, -1 when not grouped"),
    Column("step", "int16", "", "0-based position of this translation among the journey's translations"),
    Column("op", "category", "", "DNAT / SNAT / un-DNAT / un-SNAT (see NAT_OPS)"),
    Column("nat_kind", "category", "", "why, from the inventory (see NAT_KINDS)"),
    Column("service", "category", "", "service ns/name the translation belongs to; missing if none"),
    Column("node", "category", "", "node (capture node name) that applied the translation"),
    Column("reply", "bool", "", "the journey travels server -> client"),
    Column("from_point", "category", "", "capture point of the sighting before the change"),
    Column("to_point", "category", "", "capture point of the sighting after the change"),
    Column("ts_corrected_ns", "int64", "ns", "corrected timestamp of the sighting after the change"),
    Column("proto", "int16", "", "IP protocol"),
    Column("addr_before", "category", "", "translated address before (dst for DNAT/un-SNAT, src for SNAT/un-DNAT)"),
    Column("port_before", "int32", "", "translated port before, -1 if none"),
    Column("addr_after", "category", "", "translated address after"),
    Column("port_after", "int32", "", "translated port after, -1 if none"),
    Column("src_before", "category", "", "source address at the sighting before the change"),
    Column("sport_before", "int32", "", "source port before, -1 if none"),
    Column("dst_before", "category", "", "destination address before"),
    Column("dport_before", "int32", "", "destination port before, -1 if none"),
    Column("src_after", "category", "", "source address at the sighting after the change"),
    Column("sport_after", "int32", "", "source port after, -1 if none"),
    Column("dst_after", "category", "", "destination address after"),
    Column("dport_after", "int32", "", "destination port after, -1 if none"),
)

PATH_KINDS = ("pod-direct", "clusterip", "nodeport", "loadbalancer-cluster", "loadbalancer-local", "egress", "external")
"""Values of a path's ``kind`` (how the client reached the server): straight to a pod IP; through a
service ClusterIP; through a node IP:nodePort; through a load balancer in front of a service with
externalTrafficPolicy Cluster / Local; from a pod to an address outside the cluster; anything else."""

PRESERVED = ("yes", "no", "unknown")
"""Values of ``client_ip_preserved``: the backend saw the client's own address, another one (SNAT), or
the path was not captured at the backend."""

PATH_COLUMNS: tuple[Column, ...] = (
    Column("connection", "int64", "", "connection id, in order of first sighting"),
    Column("kind", "category", "", "how the client reached the server (see PATH_KINDS)"),
    Column("proto", "int16", "", "IP protocol"),
    Column("client", "category", "", "client named from the inventory: ns/pod, node name, or its address"),
    Column("client_kind", "category", "", "entity kind of the client address (see inventory.ENTITY_KINDS)"),
    Column("client_node", "category", "", "node of the client pod (or the client node); missing if outside"),
    Column("client_addr", "category", "", "source address as the client sent its first packet"),
    Column("client_port", "int32", "", "source port as the client sent it, -1 if none"),
    Column("server_addr", "category", "", "destination address as the client sent it (service VIP, LB, pod...)"),
    Column("server_port", "int32", "", "destination port as the client sent it, -1 if none"),
    Column("service", "category", "", "service ns/name the connection went through; missing if none"),
    Column("service_type", "category", "", "that service's spec.type (ClusterIP, NodePort, LoadBalancer)"),
    Column("traffic_policy", "category", "", "that service's externalTrafficPolicy (Cluster / Local)"),
    Column("backend", "category", "", "server named from the inventory: ns/pod, node name, or its address"),
    Column("backend_kind", "category", "", "entity kind of the server address as it received the packet"),
    Column("backend_node", "category", "", "node of the backend pod; missing if outside or unknown"),
    Column("backend_addr", "category", "", "destination address at the last forward sighting"),
    Column("backend_port", "int32", "", "destination port at the last forward sighting, -1 if none"),
    Column("cross_node", "bool", "", "client and backend sit on different (known) nodes"),
    Column("nat", "str", "", "forward translations in order: 'DNAT 10.96.0.10:80→10.244.1.5:8080 @node-1; ...'"),
    Column("nat_reply", "str", "", "reply translations in order ('un-DNAT ...'), '' if none"),
    Column("forward_points", "str", "", "capture points of the first packet in causal order, joined by ' → '"),
    Column("reverse_points", "str", "", "capture points of the first reply (SYN-ACK) in causal order"),
    Column("encapsulated", "bool", "", "the first packet was tunnelled somewhere on its way"),
    Column("encap", "str", "", "'vxlan vni 4096 192.168.0.11→192.168.0.12 (node-1→node-2)', 'native' across nodes, '' otherwise"),
    Column("client_ip_preserved", "category", "", "the backend saw the client's address (see PRESERVED)"),
    Column("first_ts_ns", "int64", "ns", "corrected timestamp of the first packet at its first point"),
    Column("latency_ns", "int64", "ns", "first packet: first to last capture point (corrected clocks), -1 if seen once"),
    Column("hop_latency", "str", "", "first packet, per consecutive pair of points: 'a → b 38.0µs; ...'"),
    Column("route", "str", "", "readable path of the first packet: client, points with encapsulation, NAT steps between, backend"),
    Column("forward_journey", "int64", "", "journey id of the first packet (SYN, else the client's first)"),
    Column("reply_journey", "int64", "", "journey id of the first reply (SYN-ACK, else the server's first), -1"),
    Column("journeys", "int64", "", "packets (journeys) of the connection in the hops table"),
    Column("flow_state", "category", "", "state of the client-side flow (see FLOW_STATES); missing without flows"),
    Column("orig_bytes", "int64", "bytes", "client-side flow: IP bytes from the client, -1 without flows"),
    Column("resp_bytes", "int64", "bytes", "client-side flow: IP bytes from the server, -1 without flows"),
    Column("handshake_ns", "int64", "ns", "client-side flow: TCP SYN to the client's ACK of the SYN-ACK, -1 if not seen"),
    Column("retransmissions", "int64", "", "client-side flow: TCP retransmitted segments, -1 without flows"),
)


def empty(columns: tuple[Column, ...]) -> pd.DataFrame:
    """A zero-row table with every declared column at its declared dtype."""
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype) for c in columns})


def conform(df: pd.DataFrame, columns: tuple[Column, ...], *, table: str) -> pd.DataFrame:
    """Cast the declared columns of ``df`` to their declared dtypes, keep them in schema order, validate."""
    if not len(df):
        return empty(columns)
    missing = [c.name for c in columns if c.name not in df.columns]
    if missing:
        raise TypeError(f"{table} table is missing columns {missing}")
    return validate(pd.DataFrame({c.name: df[c.name].astype(c.dtype) for c in columns}), columns, table=table)


# Correlation tables (pcaptools.correlate) ------------------------------------------------------------
HOP_LATENCY_COLUMNS: tuple[Column, ...] = (
    Column("from_point", "str", "", "capture point of the earlier sighting ('node:interface')"),
    Column("to_point", "str", "", "capture point of the next sighting of the same journey"),
    Column("count", "int64", "", "journeys seen at from_point and then next at to_point"),
    Column("median_ns", "int64", "ns", "median corrected time from from_point to to_point"),
    Column("p90_ns", "int64", "ns", "90th percentile of the same"),
    Column("p99_ns", "int64", "ns", "99th percentile of the same"),
    Column("min_ns", "int64", "ns", "smallest (may be negative within the clock uncertainty)"),
    Column("max_ns", "int64", "ns", "largest"),
)

HOP_SAMPLE_COLUMNS: tuple[Column, ...] = (
    Column("journey", "int64", "", "journey (one packet) of the hop"),
    Column("from_point", "str", "", "capture point of the earlier sighting"),
    Column("to_point", "str", "", "capture point of the next sighting"),
    Column("latency_ns", "int64", "ns", "corrected time between the two sightings"),
)

LOSS_COLUMNS: tuple[Column, ...] = (
    Column("journey", "int64", "", "journey that stopped short"),
    Column("point", "category", "", "last capture point that saw it before the expected next one"),
    Column("missing_at", "category", "", "capture point packets of the same flow direction reach next, where it never arrived"),
    Column("ts_corrected_ns", "int64", "ns", "corrected time of the sighting at point"),
    Column("src", "category", "", "inner IP source at point"),
    Column("dst", "category", "", "inner IP destination at point"),
    Column("sport", "int32", "", "source port at point, -1 if none"),
    Column("dport", "int32", "", "destination port at point, -1 if none"),
    Column("proto", "int16", "", "inner IP protocol"),
)

LOSS_SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("point", "str", "", "capture point where the lost packets were last seen"),
    Column("missing_at", "str", "", "capture point they never reached"),
    Column("lost", "int64", "packets", "packets seen at point that never reached missing_at while it was capturing"),
    Column("seen_at_point", "int64", "packets", "all sightings at point (the denominator of a loss rate)"),
)


# Comparison tables (pcaptools.compare) --------------------------------------------------------------
COMPARISON_SUMMARY_COLUMNS: tuple[Column, ...] = (
    Column("key", "str", "", "stable metric key (compare.METRICS), for programs"),
    Column("section", "str", "", "data plane / overhead / MTU / MSS / fragmentation / hops / latency"),
    Column("metric", "str", "", "metric name for people"),
    Column("unit", "str", "", "unit of the values ('' for counts and words)"),
    Column("doc", "str", "", "how the metric is measured; besides these, one object column per capture set holds its value (None = n/a)"),
)

COMPARISON_MODE_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("mode", "str", "", "overlay kind on the uplinks, 'native' if none; missing without an uplink capture"),
    Column("tunnels", "str", "", "the same when something is tunnelled, else ''"),
    Column("vnis", "object", "", "VNIs / GRE keys on the uplinks (a sorted list of ints, or text joined by ', ')"),
    Column("udp_ports", "object", "", "outer UDP destination ports of tunnelled packets (a sorted list of ints, or joined text)"),
    Column("tunnelled_packets", "int64", "packets", "uplink packets carrying an encapsulation"),
    Column("uplink_packets", "int64", "packets", "packets at uplink points (role node-uplink or any)"),
    Column("cni_declared", "str", "", "the manifest's cni label (shown, never used as evidence)"),
)

COMPARISON_WIRE_BYTES_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("payload", "int64", "bytes", "L4 payload bytes on the uplinks"),
    Column("inner_headers", "int64", "bytes", "link, inner IP and L4 header bytes on the uplinks"),
    Column("encapsulation", "int64", "bytes", "outer headers of tunnelled packets on the uplinks"),
    Column("total", "int64", "bytes", "frame bytes on the uplinks (the sum of the three)"),
    Column("packets", "int64", "packets", "frames on the uplinks"),
)

COMPARISON_POINTS_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("point", "str", "", "capture point 'node:interface'"),
    Column("role", "str", "", "the point's role from the manifest (pod-veth, node-uplink, overlay, ...)"),
    Column("packets", "int64", "packets", "packets captured there"),
    Column("tunnelled", "int64", "packets", "of those, tunnelled"),
    Column("largest_ip", "int64", "bytes", "largest inner IP packet, -1 if none"),
    Column("largest_wire_ip", "int64", "bytes", "largest outermost IP packet, -1 if none"),
    Column("largest_frame", "int64", "bytes", "largest frame on the wire"),
    Column("syn_mss", "object", "", "distinct MSS options in SYNs seen there (a sorted list of ints)"),
    Column("fragments", "int64", "packets", "IP fragments"),
    Column("frag_needed", "int64", "packets", "ICMP frag-needed / packet-too-big"),
)

COMPARISON_LATENCY_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("kind", "str", "", "path kind (PATH_KINDS) with '(cross-node)' / '(same node)'"),
    Column("connections", "int64", "", "connections of that kind seen at two points or more"),
    Column("median_ns", "float64", "ns", "median first-packet latency, first to last capture point"),
    Column("p90_ns", "float64", "ns", "90th percentile of the same"),
)

COMPARISON_HOP_LATENCY_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("hop", "str", "", "'from_role → to_role', ' (wire)' when it crosses nodes"),
    Column("from_role", "str", "", "role of the earlier capture point"),
    Column("to_role", "str", "", "role of the next capture point"),
    Column("count", "int64", "", "cross-node pod-to-pod packets that made this hop"),
    Column("median_ns", "float64", "ns", "median hop latency, corrected clocks"),
    Column("p90_ns", "float64", "ns", "90th percentile of the same"),
)

COMPARISON_HOP_SAMPLE_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("hop", "str", "", "as in the hop_latency table; 'pod → pod (total)' for the whole way"),
    Column("latency_ns", "int64", "ns", "one cross-node pod-to-pod packet's latency over that hop"),
)

COMPARISON_CROSS_NODE_COLUMNS: tuple[Column, ...] = (
    Column("label", "str", "", "capture set"),
    Column("connection", "int64", "", "connection id in that set's paths"),
    Column("kind", "str", "", "path kind (PATH_KINDS)"),
    Column("points", "int64", "points", "forward capture points of the first packet"),
    Column("tunnel_devices", "int64", "points", "of those, tunnel devices (role overlay)"),
    Column("encapsulated", "bool", "", "the first packet was tunnelled somewhere"),
    Column("forward_points", "object", "", "those points in causal order (a list of point names, or text joined by ' → ')"),
)


SEQUENCE_COLUMNS: tuple[Column, ...] = (
    Column("connection", "int64", "", "connection id, as in the paths table"),
    Column("packet", "int64", "", "0-based packet (journey) of the connection, in order of first sighting"),
    Column("journey", "int64", "", "journey id in the hops table"),
    Column("reply", "bool", "", "the packet travels server -> client"),
    Column("hop", "int16", "", "0-based position of this sighting in the packet's causal order"),
    Column("point", "str", "", "capture point of the sighting"),
    Column("node", "str", "", "node of the capture point"),
    Column("ts_corrected_ns", "int64", "ns", "corrected timestamp of the sighting"),
    Column("since_start_ns", "int64", "ns", "corrected time since the connection's first sighting"),
    Column("label", "str", "", "packet name for people: TCP flags or protocol, and its frame length at the first point"),
    Column("nat", "str", "", "translations between the previous sighting and this one ('DNAT a:p→b:q @node'; '; '-joined), '' if none"),
    Column("encap", "str", "", "encapsulation around the packet here ('vxlan vni 4096 192.168.0.11→192.168.0.12'), '' if native"),
    Column("wirelen", "int32", "bytes", "frame length on the wire here"),
    Column("missing_at", "str", "", "capture point packets of this flow direction reach next from here, where this one was never seen (pcaptools.correlate losses), '' if none"),
)
