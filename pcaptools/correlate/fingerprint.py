"""Per-packet 64-bit fingerprints from the fields NAT and encapsulation leave alone, to find one packet at many points.

A fingerprint mixes, on the inner (decapsulated) packet: IP protocol (and ICMP type), IPv4 identification (IPv6:
fragment id or -1), fragment offset and more-fragments flag, TCP seq, ack and flags, the L4 payload
length and a hash of the first :data:`PREFIX_BYTES` bytes of the L4 payload. Addresses, ports, TTL,
checksums and outer headers are left out on purpose: DNAT/SNAT, routing and tunnels rewrite them.

Where it cannot tell packets apart (the matcher then pairs them by time, see :mod:`.match`):

* pure ACK bursts (duplicate ACKs) with the same seq/ack and no payload, when the IPv4 id does not
  change between them (always on IPv6, which has no id outside fragments);
* TCP retransmissions: same seq, ack, flags and payload (the IPv4 id usually differs on Linux);
* zero-length UDP (or identical payload prefixes) with IPv4 id 0 or on IPv6;
* ICMP echo: the echo id is rewritten by NAT like a port, so identity comes from the payload prefix
  (the decoder's ``payload_offset`` points past the ICMP header; ping puts a timestamp there);
  identical ping payloads on IPv6 collide (an echo reply carries its request's payload, but the ICMP type
  in the fingerprint tells the two apart);
* GSO/TSO and GRO: a 64 KiB super-packet on a veth and its MSS-sized segments on the uplink have
  different payload lengths, so only the first segment can match, if at all;
* middleboxes that rewrite the IPv4 id (pf scrub random-id) or TCP seq (some load balancers).

IPv6 neighbour discovery and MLD (ICMPv6 types 130-137 and 143) get fingerprint 0, like ARP: they never
leave their link, and two hosts' solicitations for the same target carry the same bytes, so matching
them across links would invent journeys (and wrong clock samples). Every fingerprint-0 row is counted per capture
point by reason (:data:`NOT_CORRELATED`, :func:`not_correlated`), so that a correlation accounts for every row.

The matcher resolves repeats of one fingerprint in time order: a sighting joins the oldest open
journey (started at most ``window_ns`` earlier) that has not yet been seen at that capture point with
that TTL and tunnelling, and whose latest sighting's TTL is not below the sighting's (a packet's TTL
never rises along its path, so a packet of the same fingerprint going back the other way starts a
journey of its own; limits in :mod:`.match`); every journey sharing its fingerprint with another one
is flagged ``ambiguous`` and counted.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd

from pcaptools.decode.prefix import IV, PREFIX_BYTES, hashes, mix

__all__ = ["LINK_SCOPED_ICMPV6", "NOT_CORRELATED", "PREFIX_BYTES", "combine", "combine8", "fingerprint", "fingerprint_partition",
           "link_scoped", "mix64", "not_correlated", "prefix_hash"]


_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1
_K = np.array([(0x9E3779B97F4A7C15 * (k + 1)) & _MASK for k in range(9)], np.uint64)  # combine()'s per-field constants


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array: a cheap bijective avalanche for hashing fields."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= _C1
    x ^= x >> np.uint64(27)
    x *= _C2
    x ^= x >> np.uint64(31)
    return x


def combine(fields: list[np.ndarray]) -> np.ndarray:
    """Hash a list of equal-length integer arrays into one uint64 per row (order-sensitive)."""
    h = np.full(len(fields[0]), 0x6A09E667F3BCC908, dtype=np.uint64)
    for k, f in enumerate(fields):
        v = np.asarray(f)
        v = v.astype(np.int64, copy=False).view(np.uint64) if v.dtype != np.uint64 else v
        h = mix64(h ^ (v + np.uint64((0x9E3779B97F4A7C15 * (k + 1)) & _MASK)))
    return h


def prefix_hash(data: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Hash of ``data[start:start+length]`` per row (length clipped to PREFIX_BYTES), one numba pass.

    Rows with ``length <= 0`` hash to the hash of nothing; the byte count is part of the hash. The
    decoder takes the same hash during its walk (``read_packets(..., payload_hash=True)``).
    """
    buf = np.asarray(data).view(np.uint8).reshape(-1)
    return hashes(buf, np.asarray(start, np.int64), np.asarray(length, np.int64))


@nb.njit(cache=True, nogil=True)
def _fingerprints(proto, itype, ip_id, frag, mf, seq, ack, flags, plen, phash):  # pragma: no cover - compiled
    """combine() of the nine fields, one pass over the rows (same values, no temporaries); an ICMP row's type
    (``itype`` >= 0) is folded into its protocol field as ``proto + 256 * (type + 1)``."""
    n = proto.shape[0]
    out = np.empty(n, np.uint64)
    for i in range(n):
        h = nb.uint64(IV)
        p = nb.int64(proto[i])
        if p >= 0 and itype[i] >= 0:
            p += 256 * (nb.int64(itype[i]) + 1)
        h = mix(h ^ (nb.uint64(p) + _K[0]))
        h = mix(h ^ (nb.uint64(nb.int64(ip_id[i])) + _K[1]))
        h = mix(h ^ (nb.uint64(nb.int64(frag[i])) + _K[2]))
        h = mix(h ^ (nb.uint64(nb.int64(mf[i])) + _K[3]))
        h = mix(h ^ (nb.uint64(nb.int64(seq[i])) + _K[4]))
        h = mix(h ^ (nb.uint64(nb.int64(ack[i])) + _K[5]))
        h = mix(h ^ (nb.uint64(nb.int64(flags[i])) + _K[6]))
        h = mix(h ^ (nb.uint64(nb.int64(plen[i])) + _K[7]))
        h = mix(h ^ (phash[i] + _K[8]))
        if h == 0:
            h = nb.uint64(1)  # 0 is reserved for "not matchable"
        if proto[i] < 0:
            h = nb.uint64(0)
        out[i] = h
    return out


@nb.njit(cache=True, nogil=True)
def combine8(a, b, c, d, e, f, g, h):  # pragma: no cover - compiled
    """combine() of eight integer arrays (uint64 or int64), one compiled pass: the same values, no temporaries."""
    n = a.shape[0]
    out = np.empty(n, np.uint64)
    for i in range(n):
        x = nb.uint64(IV)
        x = mix(x ^ (nb.uint64(a[i]) + _K[0]))
        x = mix(x ^ (nb.uint64(b[i]) + _K[1]))
        x = mix(x ^ (nb.uint64(c[i]) + _K[2]))
        x = mix(x ^ (nb.uint64(d[i]) + _K[3]))
        x = mix(x ^ (nb.uint64(e[i]) + _K[4]))
        x = mix(x ^ (nb.uint64(f[i]) + _K[5]))
        x = mix(x ^ (nb.uint64(g[i]) + _K[6]))
        x = mix(x ^ (nb.uint64(h[i]) + _K[7]))
        out[i] = x
    return out


LINK_SCOPED_ICMPV6 = (130, 131, 132, 133, 134, 135, 136, 137, 143)
"""ICMPv6 types that stay on their link: MLD query/report/done, router and neighbour solicitation and
advertisement, redirect, MLDv2 report."""


def fingerprint(packets: pd.DataFrame, payload_hash: np.ndarray) -> np.ndarray:
    """uint64 fingerprint per packet row; 0 for rows without an IP protocol (ARP, undecodable) and for IPv6
    neighbour discovery / MLD (:data:`LINK_SCOPED_ICMPV6`, when ``icmp_type`` is a column), never matched.

    The value is ``combine([proto, ip_id, frag_offset, more_frags, tcp_seq, tcp_ack, tcp_flags,
    payload_len, payload_hash])``, computed in one compiled pass, where an ICMP/ICMPv6 row's ``proto`` is
    ``proto + 256 * (icmp_type + 1)``: NAT leaves the type alone, and without it an echo reply (same id, sequence and
    payload as its request; IPv6 has no IP id to tell them apart) shares its request's fingerprint."""
    itype = (packets["icmp_type"].to_numpy() if "icmp_type" in packets.columns
             else np.full(len(packets), -1, np.int16))  # fmt: skip
    cols = [packets[c].to_numpy() for c in ("proto", "ip_id", "frag_offset", "more_frags", "tcp_seq", "tcp_ack",
                                            "tcp_flags", "payload_len")]  # fmt: skip
    cols = [c if c.dtype.kind in "iub" else c.astype(np.int64) for c in cols]
    fp = _fingerprints(cols[0], itype, *cols[1:], np.asarray(payload_hash, np.uint64))
    fp[link_scoped(packets)] = 0
    return fp


def link_scoped(packets: pd.DataFrame) -> np.ndarray:
    """Rows that are IPv6 neighbour discovery or MLD (:data:`LINK_SCOPED_ICMPV6`): IP packets never matched
    across points, like ARP (all False without an ``icmp_type`` column)."""
    if "icmp_type" not in packets.columns:
        return np.zeros(len(packets), bool)
    return _link_scoped(packets["proto"].to_numpy(), packets["icmp_type"].to_numpy())


def _link_scoped(proto: np.ndarray, icmp_type: np.ndarray) -> np.ndarray:
    return (proto == 58) & np.isin(icmp_type, LINK_SCOPED_ICMPV6)


NOT_CORRELATED = ("no_ip", "link_scoped_icmpv6", "no_timestamp")
"""Why a packet-table row gets fingerprint 0 and is left out of correlation, one reason a row, the first that holds:
``no_ip``: no IP protocol (``proto < 0``: ARP, other non-IP frames, a link type the decoder does not know, an
undecodable frame); ``link_scoped_icmpv6``: IPv6 neighbour discovery or MLD (:data:`LINK_SCOPED_ICMPV6`);
``no_timestamp``: no time to place it in (``ts_ns < 0``, :func:`pcaptools.correlate.api.packet_fingerprints`)."""


def not_correlated(packets: pd.DataFrame, fp: np.ndarray, point_id: np.ndarray | int, points: int) -> np.ndarray:
    """Rows of ``packets`` left out of correlation (``fp == 0``) per point and reason: int64 array of shape
    ``(points, len(NOT_CORRELATED))``. ``point_id``: each row's point (or one for all rows), in ``0 .. points - 1``.

    So that every row read is accounted for: a point's rows are its matched, its unmatched and these. Only the
    fingerprint-0 rows are looked at (a few in a capture of pod traffic), so this costs one pass over ``fp``."""
    zero = np.flatnonzero(np.asarray(fp) == 0)
    reasons = len(NOT_CORRELATED)
    if not zero.shape[0]:
        return np.zeros((points, reasons), np.int64)
    proto = packets["proto"].to_numpy()[zero]
    reason = np.full(zero.shape[0], NOT_CORRELATED.index("no_timestamp"), np.int64)
    if "icmp_type" in packets.columns:
        reason[_link_scoped(proto, packets["icmp_type"].to_numpy()[zero])] = NOT_CORRELATED.index("link_scoped_icmpv6")
    reason[proto < 0] = NOT_CORRELATED.index("no_ip")
    pid = np.asarray(point_id, np.int64)
    code = reason + reasons * (pid[zero] if pid.ndim else pid)
    return np.bincount(code, minlength=points * reasons).reshape(points, reasons)


def fingerprint_partition(fp: np.ndarray, parts: int) -> np.ndarray:
    """Partition (``0 .. parts - 1``) of each fingerprint: pandas' hash of the value modulo ``parts``, the partition
    Dask's shuffle on the fingerprint column gives it (:mod:`pcaptools.dask.correlation`). The fingerprint is what
    NAT and tunnels leave alone, so every sighting of one packet, whatever point saw it, lands in one partition."""
    return (pd.util.hash_array(np.asarray(fp, np.uint64)) % np.uint64(parts)).astype(np.int64)
