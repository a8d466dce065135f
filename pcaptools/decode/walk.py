"""The decode driver: take every record through all its layers in one numba pass, following the registry's edges.

Each packet is walked from its link layer to its last decodable header by :func:`_walk`: the layer
decoders (``link``, ``ip``, ``l4``, ``tunnels/*``: one row each call) read their header and name a
key, and the registry's lookup arrays turn the key into the next kind. Entering a tunnel moves the
outermost carrier's IP/UDP fields to ``outer_*`` and clears the main columns for the inner packet.
One pass per packet reads its header bytes once (the capture buffer is far larger than any cache).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba as nb
import numpy as np

from pcaptools.decode import ip, l4, link, prefix, registry
from pcaptools.decode import registry as R
from pcaptools.decode.common import E_TUNNEL_DEPTH, E_UNKNOWN_LINKTYPE
from pcaptools.decode.prefix import PREFIX_BYTES
from pcaptools.decode.tunnels import geneve, gre, ipip, vxlan
from pcaptools.io import split
from pcaptools.io.prefetch import prefetch as _prefetch
from pcaptools.io.records import RecordBatch
from pcaptools.io.threads import MAX_THREADS, usable_cores  # noqa: F401  (re-exported: table.py, tests)
from pcaptools.schema import TUNNELS

PREFETCH_AHEAD = 16  # packets: the header bytes of packet r + 16 are requested while packet r is decoded
PREFETCH_LINES = 3  # 64-byte lines from a packet's start: link, IP, UDP, VXLAN and inner headers
PARALLEL_MIN = 1 << 16  # rows: smaller batches are walked by one thread (a thread costs ~0.1 ms)
REMAP_BYTES = 32 << 20
"""The decode walk unmaps a memory-mapped file this many bytes at a time behind itself (and, over several files,
whose pages read_packets unmapped after their record walks, maps each piece again before walking it)."""
CHUNK = 1 << 20  # kept for callers of run(chunk=...); the fused walk needs no chunking
MAX_STEPS = 64
"""Bound on a packet's steps; a step ends when the next layer's kind number is not above the current one.
The former step-by-kind driver counted the same way when every kind was present in the batch; tunnel
depth is bounded anyway, so only an endless Ethernet-in-Ethernet (0x6558) chain meets the bound."""

# Column blocks: one 2-D array per (group, dtype), one row per column, so a row's reset is a few loops.
# Main (inner) columns are reset when a tunnel is entered; outer ones are written once per packet.
_FILL = {"int8": 0, "int16": -1, "int32": -1, "int64": -1, "uint64": 0, "bool": 0}
MAIN_BLOCKS: dict[str, tuple[str, ...]] = {
    "int8": ("ip_version",),
    "int16": ("proto", "ttl", "tcp_flags", "tcp_wscale", "icmp_type", "icmp_code", "icmp_q_proto"),
    "int32": ("sport", "dport", "ip_len", "frag_offset", "tcp_win", "tcp_mss", "icmp_mtu", "icmp_q_sport",
              "icmp_q_dport", "payload_offset", "payload_len"),
    "int64": ("ip_id", "tcp_seq", "tcp_ack", "tcp_tsval", "tcp_tsecr"),
    "uint64": ("src_hi", "src_lo", "dst_hi", "dst_lo", "q_src_hi", "q_src_lo", "q_dst_hi", "q_dst_lo"),
    "bool": ("more_frags", "dont_frag", "tcp_sack_ok", "ip_ok", "q_ok"),
}  # fmt: skip
OUTER_BLOCKS: dict[str, tuple[str, ...]] = {
    "int8": ("tunnel",),
    "int16": ("outer_proto", "tunnel_rule"),
    "int32": ("ifindex", "vlan", "ethertype", "outer_sport", "outer_dport"),
    "int64": ("vni",),
    "uint64": ("eth_src", "eth_dst", "outer_src_hi", "outer_src_lo", "outer_dst_hi", "outer_dst_lo"),
    "bool": ("eth_ok", "outer_ok"),
}  # fmt: skip
# ``direction`` (int8, 0 = unknown) is its own array: it starts from the pcapng flags, not from a fill.
MAIN: dict[str, tuple[str, int]] = {n: (dt, _FILL[dt]) for dt, names in MAIN_BLOCKS.items() for n in names}
OUTER: dict[str, tuple[str, int]] = {n: (dt, _FILL[dt]) for dt, names in OUTER_BLOCKS.items() for n in names}
OUTER["direction"] = ("int8", 0)

_TUNNEL_CODE = np.zeros(R.N_KINDS, np.int8)
_IS_TUNNEL = np.zeros(R.N_KINDS, np.bool_)
_IS_OPAQUE = np.zeros(R.N_KINDS, np.bool_)
for _k, _name in R.TUNNEL_NAME.items():
    _TUNNEL_CODE[_k] = TUNNELS.index(_name) + 1
    _IS_TUNNEL[_k] = True
for _k in R.OPAQUE_TUNNELS:
    _IS_OPAQUE[_k] = True
_LINK_LUT = np.full(65536, R.UNKNOWN_LINK, np.int8)
for _lt, _k in R.LINKTYPE.items():
    _LINK_LUT[_lt] = _k
_IPIP_KEY = ipip.NEXT_ETHERTYPE["ipip"]
_IP6IP_KEY = ipip.NEXT_ETHERTYPE["ip6ip"]


@nb.njit(cache=True, inline="always")
def _fill_rows(r, b8, b16, b32, b64, bu64, bb):
    """Row ``r`` of one group of column blocks set to the absent values (_FILL)."""
    for j in range(b8.shape[0]):  # zero blocks start zero (calloc): written only where a layer set a value
        if b8[j, r] != 0:
            b8[j, r] = 0
    for j in range(b16.shape[0]):
        b16[j, r] = -1
    for j in range(b32.shape[0]):
        b32[j, r] = -1
    for j in range(b64.shape[0]):
        b64[j, r] = -1
    for j in range(bu64.shape[0]):
        if bu64[j, r] != 0:
            bu64[j, r] = 0
    for j in range(bb.shape[0]):
        if bb[j, r]:
            bb[j, r] = False


def _sources_digest() -> int:
    """Hash of every source the fused walk compiles in (numba's cache checks only this file's)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted([*here.glob("*.py"), *here.glob("tunnels/*.py"), here.parent / "schema.py",
                     here.parent / "io" / "prefetch.py"]):  # fmt: skip
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return int(h.hexdigest()[:15], 16)


def _make_walk(sources_digest: int):
    """The fused walk as a closure over ``sources_digest``: numba keys its on-disk cache on the closure's
    values, so an edit of any decoder module (not only of this file) compiles it anew."""

    @nb.njit(cache=True, _nrt=False, nogil=True)
    def walk(buf, start, caplen, wirelen, kind0, et_lut, et_rule, ip_lut, ip_rule, ud_lut, ud_rule, tpids,
             max_depth, pos, end, wend, lim, key, rule, depth, trunc, err, ip_at, outer_len,
             m8, m16, m32, m64, mu64, mb, o8, o16, o32, o64, ou64, ob, direction, lo, hi, phash):  # fmt: skip
        """Decode rows ``lo:hi`` through all their layers (the column blocks come filled with absent values);
        ``phash`` (empty: skipped) gets each row's payload-prefix hash. Rows are independent: threads may
        walk disjoint ranges at once."""
        _ = sources_digest
        ip_version = m8[0]
        proto, ttl, tcp_flags, tcp_wscale, icmp_type, icmp_code, icmp_q_proto = (
            m16[0], m16[1], m16[2], m16[3], m16[4], m16[5], m16[6])  # fmt: skip
        sport, dport, ip_len, frag_offset, tcp_win, tcp_mss, icmp_mtu = (
            m32[0], m32[1], m32[2], m32[3], m32[4], m32[5], m32[6])  # fmt: skip
        icmp_q_sport, icmp_q_dport, payload_offset, payload_len = m32[7], m32[8], m32[9], m32[10]
        ip_id, tcp_seq, tcp_ack, tcp_tsval, tcp_tsecr = m64[0], m64[1], m64[2], m64[3], m64[4]
        src_hi, src_lo, dst_hi, dst_lo = mu64[0], mu64[1], mu64[2], mu64[3]
        q_src_hi, q_src_lo, q_dst_hi, q_dst_lo = mu64[4], mu64[5], mu64[6], mu64[7]
        more_frags, dont_frag, tcp_sack_ok, ip_ok, q_ok = mb[0], mb[1], mb[2], mb[3], mb[4]
        tunnel = o8[0]
        outer_proto, tunnel_rule = o16[0], o16[1]
        ifindex, vlan, ethertype, outer_sport, outer_dport = o32[0], o32[1], o32[2], o32[3], o32[4]
        vni = o64[0]
        eth_src, eth_dst, outer_src_hi, outer_src_lo, outer_dst_hi, outer_dst_lo = (
            ou64[0], ou64[1], ou64[2], ou64[3], ou64[4], ou64[5])  # fmt: skip
        eth_ok, outer_ok = ob[0], ob[1]
        want_hash = phash.shape[0] > 0
        for r in range(lo, hi):
            if r + PREFETCH_AHEAD < hi:  # the walk is latency-bound on each packet's first bytes otherwise
                a = start[r + PREFETCH_AHEAD]
                for q in range(PREFETCH_LINES):
                    _prefetch(buf, a + 64 * q)
            s = start[r]
            pos[r] = s
            end[r] = s + caplen[r]
            wend[r] = s + wirelen[r]
            lim[r] = wend[r]
            key[r] = -1
            rule[r] = -1
            depth[r] = 0
            trunc[r] = 0
            err[r] = 0
            ip_at[r] = -1
            net_at = -1  # where the last network header (IP, ARP) began
            inner_at = -1  # where the payload of the last tunnel entered began
            k = kind0[r]
            if k == R.UNKNOWN_LINK:
                err[r] = E_UNKNOWN_LINKTYPE
                k = R.DONE
            steps = 1
            while k != R.DONE:
                if _IS_TUNNEL[k]:
                    if depth[r] == 0:
                        if src_hi[r] != 0:  # IPv4 carriers leave the zero hi columns unwritten (untouched pages)
                            outer_src_hi[r] = src_hi[r]
                        outer_src_lo[r] = src_lo[r]
                        if dst_hi[r] != 0:
                            outer_dst_hi[r] = dst_hi[r]
                        outer_dst_lo[r] = dst_lo[r]
                        outer_ok[r] = ip_ok[r]
                        outer_proto[r] = proto[r]
                        outer_sport[r] = sport[r]
                        outer_dport[r] = dport[r]
                        tunnel[r] = _TUNNEL_CODE[k]
                        tunnel_rule[r] = rule[r]
                    inner_at = pos[r]
                    if depth[r] >= max_depth:
                        err[r] = E_TUNNEL_DEPTH
                        break
                    depth[r] += 1
                    if _IS_OPAQUE[k]:
                        break
                    _fill_rows(r, m8, m16, m32, m64, mu64, mb)  # the inner packet starts empty
                lut = et_lut
                rlut = et_rule
                if k == R.ETH:
                    link.ethernet(buf, r, pos, end, key, trunc, depth, tpids, eth_src, eth_dst, eth_ok, vlan,
                                  ethertype)  # fmt: skip
                elif k == R.IP4:
                    net_at = pos[r]
                    ip.ipv4(buf, r, pos, end, wend, lim, key, trunc, err, ip_at, ip_version, src_hi, src_lo, dst_hi,
                            dst_lo, ip_ok, proto, ip_id, ttl, ip_len, frag_offset, more_frags, dont_frag)  # fmt: skip
                    lut, rlut = ip_lut, ip_rule
                elif k == R.IP6:
                    net_at = pos[r]
                    ip.ipv6(buf, r, pos, end, wend, lim, key, trunc, err, ip_at, ip_version, src_hi, src_lo, dst_hi,
                            dst_lo, ip_ok, proto, ip_id, ttl, ip_len, frag_offset, more_frags)  # fmt: skip
                    lut, rlut = ip_lut, ip_rule
                elif k == R.TCP:
                    l4.tcp(buf, r, pos, end, lim, start, key, trunc, err, sport, dport, tcp_seq, tcp_ack, tcp_flags,
                           tcp_win, tcp_mss, tcp_wscale, tcp_sack_ok, tcp_tsval, tcp_tsecr, payload_offset,
                           payload_len)  # fmt: skip
                    break
                elif k == R.UDP:
                    l4.udp(buf, r, pos, end, lim, start, key, trunc, err, sport, dport, payload_offset, payload_len)
                    lut, rlut = ud_lut, ud_rule
                elif k == R.VXLAN:
                    vxlan.vxlan(buf, r, pos, end, key, trunc, depth, vni)
                elif k == R.SLL:
                    link.sll(buf, r, pos, end, key, trunc, direction, eth_src, eth_ok, ethertype)
                elif k == R.SLL2:
                    link.sll2(buf, r, pos, end, key, trunc, direction, ifindex, eth_src, eth_ok, ethertype)
                elif k == R.NULL:
                    link.null(buf, r, pos, end, key, trunc)
                elif k == R.RAWIP:
                    link.rawip(buf, r, pos, end, key, trunc, err)
                elif k == R.ARP:
                    net_at = pos[r]
                    ip.arp(buf, r, pos, end, key, trunc, src_hi, src_lo, dst_hi, dst_lo, ip_ok)
                    break
                elif k == R.SCTP:
                    l4.sctp(buf, r, pos, end, lim, start, key, trunc, sport, dport, payload_offset, payload_len)
                    break
                elif k == R.ICMP or k == R.ICMP6:
                    l4.icmp(buf, r, pos, end, lim, start, key, trunc, k == R.ICMP6, icmp_type, icmp_code, icmp_mtu,
                            q_src_hi, q_src_lo, q_dst_hi, q_dst_lo, q_ok, icmp_q_proto, icmp_q_sport, icmp_q_dport,
                            payload_offset, payload_len)  # fmt: skip
                    break
                elif k == R.GENEVE:
                    geneve.geneve(buf, r, pos, end, key, trunc, err, depth, vni)
                elif k == R.GRE:
                    gre.gre(buf, r, pos, end, key, trunc, err, depth, vni)
                elif k == R.IPIP:
                    key[r] = _IPIP_KEY
                elif k == R.IP6IP:
                    key[r] = _IP6IP_KEY
                else:
                    break
                kk = key[r]
                if kk < 0:
                    break
                nk = lut[kk]
                rule[r] = rlut[kk]
                if nk <= k:
                    steps += 1
                    if steps > MAX_STEPS:
                        break
                k = nk
            at = net_at if net_at >= inner_at else inner_at
            outer_len[r] = at - s if depth[r] > 0 else 0
            if want_hash:  # the payload's first bytes follow the headers just read: still in cache
                po = payload_offset[r]
                nh = 0
                if po >= 0:
                    nh = min(min(nb.int64(caplen[r]) - po, nb.int64(payload_len[r])), PREFIX_BYTES)
                    nh = max(nh, 0)
                phash[r] = prefix.hash_at(buf, s + po if po >= 0 else 0, nh)

    return walk


_walk = _make_walk(_sources_digest())


def _block(shape: tuple[int, int], dt: str) -> np.ndarray:
    """A column block of ``dt``: zeros straight from calloc'd pages, other absent values filled by :meth:`Walk.run`."""
    return np.zeros(shape, dt) if _FILL[dt] == 0 else np.empty(shape, dt)


class Walk:
    """Per-row walking state and the output columns of one batch, or of several (one file each) stacked row-wise:
    the output columns are allocated once for all their rows, so their tables need no concatenation."""

    def __init__(self, batch: RecordBatch | list[RecordBatch], tables: registry.Tables, max_depth: int, *,
                 payload_hash: bool = False) -> None:  # fmt: skip
        self.batches = [batch] if isinstance(batch, RecordBatch) else list(batch)
        sizes = [len(b) for b in self.batches]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # batch i has rows bounds[i]:bounds[i+1]
        n = int(self.bounds[-1])
        self.payload_hash = payload_hash
        self.phash = np.empty(n if payload_hash else 0, np.uint64)  # payload-prefix hash per row, if asked
        self.bufs = [np.asarray(b.data).view(np.uint8).reshape(-1) for b in self.batches]
        self.batch = self.batches[0]
        self.tables = tables
        self.max_depth = max_depth
        self.start = self._stacked("offset", np.int64)  # read only
        self.caplen = self._stacked("caplen", np.uint32)
        self.wirelen = self._stacked("wirelen", np.uint32)
        self._outer_len = np.empty(n, np.int32)
        self.depth = np.empty(n, np.int8)
        self.trunc = np.empty(n, np.int8)
        self.err = np.empty(n, np.int8)
        # one contiguous fill per block: cheaper than writing ~60 columns row by row in the walk
        # (zero fills from calloc: fresh pages come zeroed, no pass over them here)
        self.main = {dt: _block((len(names), n), dt) for dt, names in MAIN_BLOCKS.items()}
        self.outer = {dt: _block((len(names), n), dt) for dt, names in OUTER_BLOCKS.items()}
        self.c: dict[str, np.ndarray] = {}
        for blocks, names_of in ((self.main, MAIN_BLOCKS), (self.outer, OUTER_BLOCKS)):
            for dt, names in names_of.items():
                for j, name in enumerate(names):
                    self.c[name] = blocks[dt][j]
        self.c["direction"] = np.zeros(n, np.int8)
        self.first_kind = _LINK_LUT[self._stacked("linktype", np.uint16)] if n else np.zeros(0, np.int8)
        for b, lo in zip(self.batches, self.bounds[:-1].tolist(), strict=True):
            if b.flags is not None and len(b):
                d = (b.flags & 3).astype(np.int8)  # epb_flags: 1 inbound, 2 outbound -> "in"/"out" codes
                self.c["direction"][lo : lo + len(b)] = np.where((d == 1) | (d == 2), d, 0)

    def _stacked(self, name: str, dt: type) -> np.ndarray:
        """A record column of every batch as one array of ``dt`` (one batch: the array itself, no copy)."""
        cols = [getattr(b, name) for b in self.batches]
        return cols[0].astype(dt, copy=False) if len(cols) == 1 else np.concatenate(cols).astype(dt, copy=False)

    def run(self, chunk: int = CHUNK, *, threads: int | None = None) -> None:
        """Decode every row through all its layers, in ``threads`` disjoint row ranges at once (default:
        one per usable core, for batches of at least PARALLEL_MIN rows). ``chunk`` is accepted and unused."""
        t = self.tables
        m, o = self.main, self.outer
        n = int(self.bounds[-1])
        head = (self.start, self.caplen, self.wirelen, self.first_kind, t.ethertype, t.rule_ethertype, t.ip_proto,
                t.rule_ip_proto, t.udp_dport, t.rule_udp_dport, _TPIDS, self.max_depth)  # fmt: skip
        cols = (self._outer_len, m["int8"], m["int16"], m["int32"], m["int64"], m["uint64"], m["bool"], o["int8"],
                o["int16"], o["int32"], o["int64"], o["uint64"], o["bool"], self.c["direction"])  # fmt: skip
        k = threads if threads is not None else (usable_cores() if n >= PARALLEL_MIN else 1)
        cuts = np.linspace(0, n, max(1, min(k, n)) + 1).astype(np.int64)
        ranges = list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))
        fills = [(blk, _FILL[dt]) for blocks in (m, o) for dt, blk in blocks.items() if _FILL[dt] != 0]
        bounds = self.bounds.tolist()
        remap = len(self.bufs) > 1
        unmap = [split.is_mapped(buf) for buf in self.bufs]

        def part(lo: int, hi: int) -> None:
            for blk, v in fills:  # absent values for this range (numpy fills without the GIL)
                blk[:, lo:hi] = v
            pos, end, wend, lim, key, ip_at = (self._scratch(n, np.int64) for _ in range(6))  # this thread's own
            rule = self._scratch(n, np.int16)
            for i, buf in enumerate(self.bufs):  # the range's rows of each batch, walked over that batch's bytes
                a, b = max(lo, bounds[i]), min(hi, bounds[i + 1])
                while a < b:  # REMAP_BYTES of the file at a time: (mapped again,) walked, unmapped by this thread
                    c = min(b, a + int(np.searchsorted(self.start[a:b], self.start[a] + REMAP_BYTES)))
                    c = max(c, a + 1)
                    first, last = int(self.start[a]), int(self.start[c - 1]) + int(self.caplen[c - 1])
                    if remap:  # read_packets unmapped each file after its record walk
                        split.populate(buf, first, last)
                    _walk(buf, *head, pos, end, wend, lim, key, rule, self.depth, self.trunc, self.err, ip_at, *cols,
                          a, c, self.phash)  # fmt: skip
                    if unmap[i]:  # the walked pages leave the RSS here, on every thread at once, not in one munmap
                        split.release(buf, first, last)  # of the whole file when the batch goes
                    a = c

        if len(ranges) <= 1:
            part(0, n)
            return
        with ThreadPoolExecutor(len(ranges)) as pool:  # the walk releases the GIL (nogil)
            for f in [pool.submit(part, lo, hi) for lo, hi in ranges]:
                f.result()

    @staticmethod
    def _scratch(n: int, dt: type) -> np.ndarray:
        """A per-row state array of ``n`` rows that all share one element: the walk reads a row's state
        only while it walks that row, so one thread needs one slot, not a fresh column of n (no pages to
        fault in for pos/end/wend/lim/key/rule/ip_at)."""
        return np.lib.stride_tricks.as_strided(np.zeros(1, dt), shape=(n,), strides=(0,))

    def outer_len(self) -> np.ndarray:
        """Bytes before the inner network header of tunnelled rows (opaque tunnels: before their payload)."""
        return self._outer_len


_TPIDS = registry.vlan_tpids()

