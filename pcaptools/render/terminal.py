"""Tables to terminal text for people: rich tables and text blocks, every file-derived string escaped.

Strings that came from files (manifest, inventory and directory names, pcapng interface names and
comments) may hold escape sequences, newlines or rich markup; :func:`safe` shows control characters
as ``\\x1b``-style escapes and every renderer hands rich plain :class:`~rich.text.Text` (never markup),
so nothing in a name can move the cursor, forge a line, make a hyperlink or crash the renderer.
Units and numbers are written one way everywhere: ``µs``, and thousands separators (``1,460``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from pcaptools.fmt import PROTO_NAMES, fmt_ns
from pcaptools.fmt import endpoint as _endpoint

if TYPE_CHECKING:  # rich is imported where output is drawn, so `safe` costs nothing at startup
    from collections.abc import Iterable

    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029, 0xFEFF}
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_WIDE_LAYOUT = 140  # columns from which the paths summary is a table rather than a two-line list


def safe(value: Any) -> str:
    """``value`` as one line of inert text: control, bidi and line-separator characters shown as escapes."""
    s = str(value)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif o in _BIDI:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def text(value: Any, style: str = "") -> Text:
    """An escaped rich Text (never parsed as markup)."""
    from rich.text import Text

    return Text(safe(value), style=style)


def console(*, stderr: bool = False) -> Console:
    """A console that never interprets markup or highlights; piped without COLUMNS it is 160 wide, not rich's 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, width=160 if wide else None, markup=False, highlight=False, emoji=False, soft_wrap=False)


def fmt_int(v: Any) -> str:
    """An integer with thousands separators (``1,460``)."""
    return f"{int(v):,}"


def endpoint(addr: Any, port: Any = None) -> str:
    """:func:`pcaptools.fmt.endpoint` of an address shown inert (it may come from a file)."""
    return _endpoint(safe(addr), port)


def proto_name(p: Any) -> str:
    """IP protocol by name where it has one (``tcp``), else its number."""
    try:
        return PROTO_NAMES.get(int(p), str(int(p)))
    except (TypeError, ValueError):
        return safe(p)


def _table(title: str | Text | None = None, **kw: Any) -> Table:
    from rich.table import Table

    return Table(title=text(title) if isinstance(title, str) else title, header_style="bold", **kw)


def print_rows(con: Console, title: str | None, cols: tuple[str, ...], rows: list[tuple[str, ...]], *, key: int = 1,
               right: tuple[str, ...] = ()) -> None:
    """A table when its natural width fits the console, else one line per row: the first ``key`` cells, then
    the others as ``column value`` on an indented line (nothing is cut or folded mid-word)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    if sum(widths) + 3 * len(cols) + 1 <= con.size.width:
        tab = _table(title)
        for c in cols:
            tab.add_column(c, no_wrap=True, justify="right" if c in right else "left")
        for r in rows:
            tab.add_row(*(text(x) for x in r))
        con.print(tab)
        return
    if title:
        con.print(text(title, style="bold"))
    for r in rows:
        con.print(text(" → ".join(r[:key])))
        _packed(con, [f"{c} {x}" for c, x in zip(cols[key:], r[key:], strict=True) if x])


def _pack(cells: list[str], width: int, indent: int = 4) -> list[str]:
    """Cells joined by ' · ' on lines indented by ``indent``, packed to ``width``; a cell is split only if longer than a line."""
    out, line = [], ""
    for cell in map(safe, cells):
        if line and indent + len(line) + 3 + len(cell) > width:
            out.append(" " * indent + line)
            line = ""
        line = f"{line} · {cell}" if line else cell
    if line:
        out.append(" " * indent + line)
    return out


def _packed(con: Console, cells: list[str], indent: int = 4, style: str = "dim") -> None:
    """Cells joined by ' · ' on indented lines, packed to the console width; a cell is split only if longer than a line."""
    for line in _pack(cells, con.size.width, indent):
        con.print(text(line, style=style))


class _Plain:
    """Text already laid out, handed to rich as one segment (nothing left for rich to measure, wrap or style)."""

    def __init__(self, body: str) -> None:
        self.body = body

    def __rich_console__(self, console: Console, options: Any) -> Any:
        from rich.segment import Segment

        yield Segment(self.body)


class _Lines:
    """Where a long listing goes: on a console that shows no styles (piped, a file; not recording), lines that fit
    the width are what rich would print, so they are collected and handed over in blocks of plain text; a line that
    rich would wrap, and every line on a terminal, goes through rich as before (same bytes either way)."""

    BLOCK = 2000  # lines per hand-over: output keeps flowing (| head) without a rich call per line

    def __init__(self, con: Console) -> None:
        self.con = con
        self.width = con.size.width
        self.plain = con.color_system is None and not con.record
        self._buf: list[str] = []

    def __call__(self, line: str | Text = "", style: str = "", *, soft_wrap: bool = False) -> None:
        """One line: a str (printed with ``style``) or a rich Text; ``soft_wrap``: never wrapped at the width."""
        s = line if isinstance(line, str) else line.plain
        if self.plain and s.isprintable() and (soft_wrap or _cells(s) <= self.width):
            self._buf.append(s)
            if len(self._buf) >= self.BLOCK:
                self.flush()
            return
        self.flush()
        if isinstance(line, str):
            if not line:
                self.con.print()
                return
            from rich.text import Text

            line = Text(line, style=style)
        self.con.print(line, soft_wrap=soft_wrap)

    def drawn(self, lines: list[str]) -> None:
        """Lines rich would print as they are (a table it laid out to fit): collected without a check."""
        self._buf.extend(lines)

    def rich(self, renderable: Any) -> None:
        """Anything else, through rich, after what came before."""
        self.flush()
        self.con.print(renderable)

    def flush(self) -> None:
        if self._buf:
            self.con.print(_Plain("".join(f"{x}\n" for x in self._buf)), crop=False)
            self._buf.clear()


def _cells(s: str) -> int:
    """rich's ``cell_len``: the length of a text of single-cell characters (ASCII and the arrows pcaptools prints),
    without rich's walk of every character of a text with an arrow (0.6 µs a character: seconds on a listing of
    tens of thousands of connections); any other text measured by rich."""
    if _narrow().issuperset(s):
        return len(s)
    from rich.cells import cell_len

    return cell_len(s)


def _narrow() -> frozenset[str]:
    """Characters rich measures as one cell (:func:`_cells`), made on first use (rich is imported only to print)."""
    global _NARROW
    if _NARROW is None:
        from rich import cells

        _NARROW = getattr(cells, "_SINGLE_CELLS", frozenset()) | frozenset(c for c in "→←↔" if cells.cell_len(c) == 1)
    return _NARROW


_NARROW: frozenset[str] | None = None


def _fold(s: str, w: int) -> list[str] | None:
    """rich's ``Text(s).wrap(con, w, justify="left", overflow="fold")`` of one line of narrow characters (:func:`_cells`)
    as plain lines of ``w`` cells, without a Text per line (60 µs a cell: seconds in a table of thousands of
    connections): rich's own line breaks, then what its wrap does to each line (trailing spaces beyond ``w`` dropped,
    cut to ``w``, padded). None where rich has no ``divide_line`` to call (the caller wraps with rich)."""
    try:
        from rich._wrap import divide_line
    except ImportError:  # a rich that moved it
        return None
    cuts = [0, *divide_line(s, w, fold=True), len(s)]
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        x = s[a:b]
        if len(x) > w:  # Text.rstrip_end: at most the excess of trailing whitespace goes
            x = x[: len(x) - min(len(x) - len(x.rstrip()), len(x) - w)]
        x = x[:w]  # Text.truncate (a narrow character is a cell), then padded to the width
        out.append(x + " " * (w - len(x)))
    return out


def _cell_measure(s: str) -> tuple[int, int]:
    """What rich measures of a text cell: (longest word, longest line) in cells."""
    if _narrow().issuperset(s):  # one line (no line break is narrow) of narrow characters
        words = s.split()
        return (max(map(len, words)) if words else len(s)), len(s)
    lines = s.splitlines()
    mx = max(_cells(x) for x in lines) if lines else 0
    words = s.split()
    return (max(_cells(w) for w in words) if words else mx), mx


def _plain_table(con: Console, make: Any, rows: list[tuple[str, ...]]) -> list[str] | None:
    """The lines rich draws for the table ``make()`` returns (columns set, no rows; no title, header shown, default
    padding, left-justified columns) holding ``rows`` of plain strings, made without rendering every cell through
    rich: the column widths are rich's own,
    computed on a table of the header and, per column, the cells that decide them (the widest and the one with the
    longest word); a cell that fits its column is its text padded, any other is wrapped by rich. None where that
    shortcut does not hold (no rows, a non-printable character): the caller draws the table with rich."""
    from rich.cells import set_cell_size
    from rich.text import Text

    tab = make()
    if not rows or any(c.justify != "left" for c in tab.columns) or not all(c.isprintable() for r in rows for c in r):
        return None
    ncol = len(tab.columns)
    keep: set[int] = set()
    for i in range(ncol):
        m = [_cell_measure(r[i]) for r in rows]
        keep.add(max(range(len(rows)), key=lambda k: m[k][0]))
        keep.add(max(range(len(rows)), key=lambda k: m[k][1]))
    probe = make()
    for k in sorted(keep):
        probe.add_row(*rows[k])
    options = con.options
    try:  # rich's own width computation (a private method): a rich without it gets its tables drawn by rich
        widths = probe._calculate_column_widths(con, options.update_width(options.max_width - probe._extra_width))
    except AttributeError:
        return None
    box = tab.box.substitute(options, safe=con.safe_box)
    cols = tab.columns

    def cell(s: str, w: int, col: Any) -> list[str]:
        cw = w - 2
        if _cells(s) <= cw:  # padded with spaces to the cell, as rich's set_cell_size does
            s = s.rstrip()
            return [" " + s + " " * (cw - _cells(s)) + " "]
        if col.overflow == "fold" and not col.no_wrap and _narrow().issuperset(s):
            folded = _fold(s, cw)
            if folded is not None:
                return [" " + x + " " for x in folded]
        lines = Text(s).wrap(con, cw, justify=col.justify, overflow=col.overflow, no_wrap=col.no_wrap)
        return [" " + set_cell_size(x.plain, cw) + " " for x in lines]

    def draw(cells: list[tuple[str, ...]], chars: tuple[str, str, str], bottom: bool = False) -> list[str]:
        parts = [cell(s, w, c) for s, w, c in zip(cells, widths, cols, strict=True)]
        height = max(len(p) for p in parts)
        for p, w in zip(parts, widths, strict=True):
            pad = [" " * w] * (height - len(p))
            p[:] = (pad + p) if bottom else (p + pad)
        left, right, mid = chars
        return [left + mid.join(p[n] for p in parts) + right for n in range(height)]

    out = [box.get_top(widths)]
    out += draw(tuple(str(c.header) for c in cols), (box.head_left, box.head_right, box.head_vertical), bottom=True)
    out.append(box.get_row(widths, "head", edge=True))
    for k, r in enumerate(rows):
        last = k == len(rows) - 1
        out += draw(r, (box.foot_left, box.foot_right, box.foot_vertical) if last else (box.mid_left, box.mid_right, box.mid_vertical))
    out.append(box.get_bottom(widths))
    return out


# --- info -------------------------------------------------------------------------------------------
def print_info(summaries: list[dict], con: Console) -> None:
    """One table per capture file: format, records, time span, bytes, interfaces, skips."""
    from datetime import UTC, datetime

    def t(ns: int) -> str:
        return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 10**9:09d}"

    for s in summaries:
        gz = f", {s['compression']}" if s["compression"] else ""
        tab = _table(f"{safe(s['path'])}  ({s['format']}{gz})", show_header=False)
        tab.add_column("field", style="bold")
        tab.add_column("value")
        tab.add_row("records", fmt_int(s["records"]))
        span = "-"
        if s["first_ts_ns"] is not None:
            span = f"{t(s['first_ts_ns'])} .. {t(s['last_ts_ns'])} UTC ({s['duration_ns'] / 1e9:,.6f} s)"
        tab.add_row("time", span)
        tab.add_row("bytes", f"{fmt_int(s['captured_bytes'])} captured, {fmt_int(s['wire_bytes'])} on the wire")
        for i in s["interfaces"]:
            label = " ".join(x for x in (safe(i["name"] or ""), f"({safe(i['description'])})" if i["description"] else "") if x)
            desc = f"{i['link_type']} snaplen {i['snaplen']} {label}".rstrip()
            tab.add_row(f"interface {i['id']}", text(f"{desc}, {fmt_int(i['records'])} records"))
            st = i.get("stats")
            if st:  # the capture's own counters (pcapng Interface Statistics Block)
                got = ", ".join(f"{k} {fmt_int(st[k])}" for k in ("ifrecv", "ifdrop", "filteraccept", "osdrop", "usrdeliv")
                                if st[k] is not None)  # fmt: skip
                lost = "" if st["dropped"] is None else f" ({fmt_int(st['dropped'])} dropped)"
                tab.add_row("", text(f"statistics: {got or 'no counters'}{lost}"))
        tab.add_row("skipped", ", ".join(f"{k} {fmt_int(v)}" for k, v in s["skipped"].items()) or "none")
        if s["stopped_at"]:
            where = s["stopped_at"].get("compressed_offset")
            where = f" (compressed byte {fmt_int(where)})" if where is not None else ""
            tab.add_row("stopped", text(f"{s['stopped_at']['reason']} at byte {fmt_int(s['stopped_at']['offset'])}{where}"))
        for note in s.get("notes") or []:
            tab.add_row("note", text(note))
        con.print(tab)


# --- flows ------------------------------------------------------------------------------------------
def _icmp_detail(proto: int, a: int, b: int) -> str:
    from pcaptools.community_id import ICMP4_COUNTERPART, ICMP6_COUNTERPART

    pair = (ICMP4_COUNTERPART if proto == 1 else ICMP6_COUNTERPART).get(a)
    if a < 0:
        return ""
    return f"type {a} ↔ {b}" if pair is not None and pair == b else f"type {a} code {b}" if b >= 0 else f"type {a}"


def print_flows(fl, con: Console, *, limit: int = 20) -> None:
    """The largest flows by bytes: endpoints (IPv6 in brackets), protocol by name, ICMP type/code, packets, bytes, state."""
    top = fl.assign(_b=fl.orig_bytes + fl.resp_bytes).nlargest(limit, "_b") if len(fl) else fl
    rows = []
    for r in top.itertuples(index=False):
        proto = int(r.proto)
        icmp = proto in (1, 58)
        name = proto_name(proto) + (f" {_icmp_detail(proto, int(r.orig_p), int(r.resp_p))}" if icmp else "")
        orig = endpoint(r.orig_h) if icmp else endpoint(r.orig_h, r.orig_p)
        resp = endpoint(r.resp_h) if icmp else endpoint(r.resp_h, r.resp_p)
        tun = "" if r.tunnel != r.tunnel or r.tunnel is None else f"{safe(r.tunnel)}" + (f" vni {int(r.vni)}" if int(r.vni) >= 0 else "")
        rows.append((name, orig, resp, f"{fmt_int(r.orig_pkts)} / {fmt_int(r.resp_pkts)}",
                     f"{fmt_int(r.orig_bytes)} / {fmt_int(r.resp_bytes)}", fmt_ns(int(r.duration_ns)), safe(r.state),
                     safe(r.history), tun, safe(r.community_id) if isinstance(r.community_id, str) else ""))  # fmt: skip
    title = f"{fmt_int(len(fl))} flows (largest {min(limit, len(fl))} by bytes; packets and bytes originator / responder)"
    cols = ("proto", "originator", "responder", "packets", "bytes", "duration", "state", "history", "tunnel", "community_id")
    keep = [i for i, c in enumerate(cols) if c != "tunnel" or any(r[i] for r in rows)]
    widths = [max([len(cols[i]), *(len(r[i]) for r in rows)]) for i in keep]
    if sum(widths) + 3 * len(keep) + 1 > con.size.width:  # too narrow for a table: two lines per flow
        con.print(text(title, style="bold"))
        for r in rows:
            con.print(text(f"{r[0]}  {r[1]} → {r[2]}  {r[6]} {r[7]}".rstrip()))
            _packed(con, [x for x in (f"{r[3]} packets", f"{r[4]} bytes", r[5], r[8], r[9]) if x])
        return
    tab = _table(title)
    for i in keep:
        tab.add_column(cols[i], no_wrap=True, justify="right" if cols[i] in ("packets", "bytes", "duration") else "left")
    for r in rows:
        tab.add_row(*(text(r[i]) for i in keep))
    con.print(tab)


# --- correlate --------------------------------------------------------------------------------------
_REASONS = {"no_ip": "no IP", "link_scoped_icmpv6": "ND/MLD", "no_timestamp": "no timestamp"}
"""Short names of the reasons a row is not correlated (pcaptools.correlate.fingerprint.NOT_CORRELATED)."""


def _not_correlated(reasons: dict[str, int]) -> str:
    """A point's rows not correlated and why, briefly: ``0``, or ``4 (no IP: 4)``, ``6 (no IP: 4, ND/MLD: 2)``."""
    total = sum(reasons.values())
    why = ", ".join(f"{_REASONS.get(r, r)}: {fmt_int(n)}" for r, n in reasons.items() if n)
    return f"{fmt_int(total)} ({why})" if why else fmt_int(total)


def print_correlation(corr, con: Console) -> None:
    """Clock offsets, rows per point (matched, unmatched, not correlated and why), hop latency and losses of a Correlation."""
    offs = corr.offsets
    ref = offs.loc[offs["reference"].to_numpy(bool), "node"]
    rows = []
    for r in offs.itertuples(index=False):
        unc = "unknown" if r.uncertainty_ns != r.uncertainty_ns else f"± {r.uncertainty_ns / 1e3:,.1f} µs"
        rows.append((safe(r.node), f"{r.offset_ns / 1e3:+,.1f} µs", unc, f"{r.skew_ppm:.3f}" + (" (matters)" if r.skew_matters else "")))
    print_rows(con, f"clock offsets (reference {safe(ref.iloc[0]) if len(ref) else '?'})", ("node", "offset", "uncertainty", "skew ppm"),
               rows, right=("offset", "uncertainty", "skew ppm"))  # fmt: skip
    rows = [(safe(c["point"]), fmt_int(c["rows"]), fmt_int(c["matched"]), fmt_int(c["unmatched"]), _not_correlated(c["not_correlated"]))
            for c in corr.point_counts()]  # fmt: skip
    print_rows(con, f"{fmt_int(corr.journeys)} journeys, {fmt_int(corr.ambiguous)} ambiguous",
               ("point", "rows", "matched", "unmatched", "not correlated"), rows, right=("rows", "matched", "unmatched"))  # fmt: skip
    rows = [(safe(r.from_point), safe(r.to_point), fmt_int(r.count), *(fmt_ns(v) for v in (r.median_ns, r.p90_ns, r.p99_ns, r.min_ns, r.max_ns)))
            for r in corr.hop_latency.itertuples(index=False)]  # fmt: skip
    print_rows(con, "hop latency", ("from", "to", "count", "median", "p90", "p99", "min", "max"), rows, key=2,
               right=("count", "median", "p90", "p99", "min", "max"))  # fmt: skip
    ls = corr.loss_summary()
    if len(ls):
        rows = [(safe(r.point), safe(r.missing_at), fmt_int(r.lost), fmt_int(r.seen_at_point)) for r in ls.itertuples(index=False)]
        print_rows(con, "packets missing at the next point", ("seen at", "missing at", "lost", "seen"), rows, key=2, right=("lost", "seen"))
    for note in corr.notes:
        con.print(text(f"note: {note}"))


# --- paths ------------------------------------------------------------------------------------------
_KIND_STYLE = {"pod-direct": "green", "clusterip": "cyan", "nodeport": "magenta", "loadbalancer-cluster": "yellow",
               "loadbalancer-local": "yellow", "egress": "blue", "external": "white"}  # fmt: skip


def _s(v: Any) -> str:
    return "" if v is None or v != v else safe(v)


def _at(name: Any, node: Any) -> str:
    n, d = _s(name), _s(node)
    return f"{n} @{d}" if d and d != n else n


def _nat_short(steps: list[dict]) -> str:
    return ", ".join(f"{s['op']}@{safe(s['node'])}" if s.get("node") else s["op"] for s in steps)


def _encap_short(r: Any) -> str:
    e = _s(r.encap)
    if not e or e == "native":
        return e
    parts = []
    for x in e.split("; "):
        kind = x.split(" ")[0]
        between = x[x.rfind("(") + 1 : -1] if x.endswith(")") else x.split(" ")[-1]
        parts.append(f"{kind} {between}")
    return "; ".join(parts)


def path_block(r: Any, nat: list[dict] | None = None, hops: list[dict] | None = None) -> list[str | list[str]]:
    """One connection for people (a list item is a group of facts to pack to the width), one line per capture point: ``#3 clusterip via default/web tcp a:1 → b:80``, the route, NAT."""
    svc = ""
    if isinstance(r.service, str):
        pol = f", {safe(r.traffic_policy)}" if isinstance(r.traffic_policy, str) else ""
        svc = f" via {safe(r.service)} ({_s(r.service_type)}{pol})"
    lines = [f"#{r.connection} {r.kind}{svc}  {proto_name(r.proto)} "
             f"{endpoint(r.client_addr, r.client_port)} → {endpoint(r.server_addr, r.server_port)}"]  # fmt: skip
    lines.append(f"  from {_at(r.client, r.client_node)}")
    by_point: dict[str, list[dict]] = {}
    for s in nat or []:
        by_point.setdefault(str(s["to_point"]), []).append(s)
    for i, h in enumerate(hops or []):
        for s in by_point.pop(str(h["point"]), []):
            lines.append(f"      {safe(s['text'])}")
            rules = s.get("rules")
            if rules is not None:  # --iptables: the kube-proxy chains behind the step
                how = " → ".join(rules["chains"]) if rules["explained"] else f"not explained: {rules['problem']}"
                lines.append(f"        rules: {safe(how)}")
        gap = f"  +{fmt_ns(h['latency_ns'])}" if i and h.get("latency_ns") is not None else ""
        enc = ""
        if h.get("tunnel"):
            vni = f" vni {h['vni']}" if h.get("vni") is not None else ""
            enc = f" ({safe(h['tunnel'])}{vni} {safe(h['outer_src'])}→{safe(h['outer_dst'])})"
        lines.append(f"    ▸ {safe(h['interface'] or '')}@{safe(h['node'])}{enc}{gap}")
    lines.append(f"  to   {_at(r.backend, r.backend_node)}")
    keep = {"yes": "preserved", "no": "rewritten (SNAT)"}.get(str(r.client_ip_preserved), "not seen at the backend")
    bits = [f"client IP at backend: {keep}"]
    if r.encap:
        bits.append(f"encap: {safe(r.encap)}")
    if r.latency_ns >= 0:
        bits.append(f"first packet {fmt_ns(int(r.latency_ns))} over {len(hops or [])} points")
    if getattr(r, "flow_state", None) is not None and r.flow_state == r.flow_state:
        hs = f", handshake {fmt_ns(int(r.handshake_ns))}" if r.handshake_ns >= 0 else ""
        bits.append(f"flow {safe(r.flow_state)}: {fmt_int(r.orig_bytes)} / {fmt_int(r.resp_bytes)} bytes{hs}, "
                    f"{fmt_int(r.retransmissions)} retransmissions")  # fmt: skip
    lines.append(bits)
    return lines


LIST_LIMIT = 50
"""Most connections ``paths`` lists one by one; more are grouped by route (:mod:`pcaptools.k8s.groups`) unless asked
for every one: tens of thousands of 13-line blocks tell a reader less than a table of their routes."""

ROUTES_SHOWN = 50
"""Most routes the grouped listing shows (the most used first); the others are counted in one line."""


def print_paths(ps, con: Console, *, brief: bool = False, nat_rules=None, all_connections: bool = False) -> None:
    """A :class:`~pcaptools.k8s.paths.PathSet` for people: header, a summary per connection, then each route
    (with ``nat_rules``, :func:`pcaptools.k8s.iptables.explain`'s table or a function giving it for the NAT rows
    printed, the kube-proxy chains under each NAT step). More
    than :data:`LIST_LIMIT` connections are shown by route, with the first connection of each as its example,
    unless ``all_connections``."""
    import numpy as np
    from rich.text import Text

    from pcaptools.render.records import (
        RECORD_CHUNK,
        ByJourney,
        _hops_by_journey,
        _nat_by_journey,
    )

    inv, corr = ps.inventory, ps.correlation
    n = ps.n_connections
    out = _Lines(con)
    head = f"{fmt_int(n)} connections"
    if inv is not None:
        net = ps.network if getattr(ps, "network", None) is not None else inv.pod_network(corr.hops if corr is not None else None)
        head += f" · inventory: {safe(inv.describe())} · pod IPs: {safe(net['mode'])}"
        if "routing" in net:
            head += f" · pod-to-pod across nodes: {safe(net['routing'])}"
    else:
        head += " · no inventory: addresses are not named (pass --inventory)"
    out(head, "bold")
    grouped = not all_connections and n > LIST_LIMIT
    width = con.size.width
    parts = ps.parts  # (connections, their NAT steps, their hops) a bucket at a time: the whole table need not be read
    if grouped:
        routes = ps.route_groups()
        _print_routes(out, routes.iloc[:ROUTES_SHOWN], n, len(routes), width)
        listed = ps.select(routes["first_connection"].to_numpy()[:ROUTES_SHOWN])
        parts = lambda: iter([listed])  # noqa: E731 - the routes' first connections only

    def chunks(with_hops: bool):
        """(connections, NAT steps and hops of their journeys as objects) :data:`RECORD_CHUNK` connections at a time:
        the objects of a few KiB a connection are never made for all of them at once."""
        for df, nat, hops in parts():
            nat_at = ByJourney(nat) if nat is not None and len(nat) else None
            hops_at = ByJourney(hops) if hops is not None and with_hops else None
            for lo in range(0, len(df), RECORD_CHUNK):
                part = df.iloc[lo:lo + RECORD_CHUNK]
                js = np.concatenate([part["forward_journey"].to_numpy(np.int64), part["reply_journey"].to_numpy(np.int64)])
                nat_of = _nat_by_journey(nat_at.rows(js), js, nat_rules) if nat_at is not None else {}
                hops_of = _hops_by_journey(hops_at.rows(js), js) if hops_at is not None else {}
                yield part.itertuples(index=False), nat_of, hops_of

    if grouped:
        if not brief:
            out()
            out("the route of the first connection of each row:", "bold")
    elif width >= _WIDE_LAYOUT:
        _paths_table(out, chunks(False))
    else:  # compact: two lines per connection, wrapped at spaces so names stay whole
        for conns, nat_of, _ in chunks(False):
            for r in conns:
                keep = {"yes": "client IP kept", "no": "client IP SNAT", "unknown": "client IP ?"}[str(r.client_ip_preserved)]
                hops = [_at(r.client, r.client_node), f"via {_s(r.service)}" if _s(r.service) else "", _at(r.backend, r.backend_node)]
                route = "  " + " → ".join(h for h in hops if h)
                if out.plain:  # styles show nowhere: the same characters without building rich Text
                    out(f"#{r.connection} {r.kind}{route}")
                else:
                    line = Text(f"#{r.connection} ", style="bold")
                    line.append(str(r.kind), style=_KIND_STYLE.get(str(r.kind), ""))
                    line.append(route)
                    out(line)
                bits = [b for b in (_nat_short(nat_of.get(int(r.forward_journey), [])), _encap_short(r), keep,
                                    f"1st pkt {fmt_ns(int(r.latency_ns))}" if r.latency_ns >= 0 else "") if b]  # fmt: skip
                for x in _pack(bits, width):
                    out(x, "dim")
    if not brief:
        for conns, nat_of, hops_of in chunks(True):
            for r in conns:
                out()
                fj, rj = int(r.forward_journey), int(r.reply_journey)
                block = path_block(r, nat_of.get(fj, []), hops_of.get(fj, []))
                if rj >= 0 and nat_of.get(rj):
                    steps = [s["text"] for s in nat_of[rj]]
                    block.append([f"reply: {steps[0]}", *steps[1:]])
                out(block[0], "bold " + _KIND_STYLE.get(str(r.kind), ""))
                for line in block[1:]:
                    if isinstance(line, list):
                        for x in _pack(line, width, indent=2):
                            out(x)
                    else:
                        out(line, "dim" if line.startswith("      ") else "")
        out()
        out("legend: ▸ iface@node capture point (tunnel, outer IPs), +time since the previous one (corrected clocks); "
            "indented: translation 'op before→after @node (why)' applied before that point", "dim")  # fmt: skip
    for note in (inv.notes if inv is not None else []) + (list(corr.notes) if corr is not None else []):
        out(safe(f"note: {note}"), "dim")
    out.flush()


def _print_routes(out: _Lines, routes, connections: int, total: int, width: int) -> None:
    """The grouped listing (:func:`pcaptools.k8s.groups.route_groups`): a line saying so, then a row per route (a table
    from :data:`_WIDE_LAYOUT` columns, else two lines a route) and what the rows left out hold."""
    import pandas as pd
    from rich.text import Text

    def lat(v: Any) -> str:
        return "" if v is None or v is pd.NA else fmt_ns(int(v))

    out(f"{fmt_int(connections)} connections on {fmt_int(total)} routes (same kind, client, service, backend, NAT steps, "
        f"encapsulation); --all lists each connection", "bold")  # fmt: skip
    rows = []
    for r in routes.itertuples(index=False):
        keep = {"yes": "kept", "no": "SNAT", "unknown": "?"}[str(r.client_ip_preserved)]
        rows.append((fmt_int(r.connections), str(r.kind), safe(_at(r.client, r.client_node)), safe(_s(r.service)),
                     safe(_at(r.backend, r.backend_node)), safe(r.nat_ops) or "-", safe(_encap_short(r)), keep,
                     lat(r.latency_p50_ns), lat(r.latency_p95_ns), f"#{r.first_connection}"))  # fmt: skip
    if width >= _WIDE_LAYOUT:
        heads = ("conns", "kind", "client", "service", "backend", "NAT", "encap", "client IP", "1st pkt p50", "p95", "first")

        def make() -> Table:
            tab = _table(None)
            for c in heads:
                tab.add_column(c, no_wrap=c in ("conns", "kind", "client IP", "1st pkt p50", "p95", "first"), overflow="fold")
            return tab

        lines = _plain_table(out.con, make, rows) if out.plain else None
        if lines is not None:
            out.drawn(lines)
        else:
            tab = make()
            for row in rows:
                tab.add_row(row[0], Text(row[1], style=_KIND_STYLE.get(row[1], "")), *(Text(x) for x in row[2:7]), *row[7:])
            out.rich(tab)
    else:
        for row in rows:
            hops = [row[2], f"via {row[3]}" if row[3] else "", row[4]]
            out(f"{row[0]} × {row[1]}  " + " → ".join(h for h in hops if h))
            bits = [row[5] if row[5] != "-" else "", row[6], f"client IP {row[7]}",
                    f"1st pkt p50 {row[8]}, p95 {row[9]}" if row[8] else "", f"first {row[10]}"]  # fmt: skip
            for x in _pack([b for b in bits if b], width):
                out(x, "dim")
    if total > len(routes):
        rest = connections - int(routes["connections"].sum())
        out(f"… {fmt_int(total - len(routes))} more routes hold {fmt_int(rest)} connections (--all lists each; "
            f"--json and -o FILE give every one)", "dim")  # fmt: skip


def _paths_table(out: _Lines, chunks: Iterable[tuple[Iterable, dict[int, list[dict]], dict]]) -> None:
    """The wide summary: one table row per connection (plain text where styles show nowhere, else rich's table) of
    ``chunks`` of (connections, their journeys' NAT steps, -)."""
    from rich.text import Text

    heads = ("#", "kind", "client", "service", "backend", "NAT", "encap", "client IP", "1st pkt")

    def make() -> Table:
        tab = _table(None)
        for c in heads:
            tab.add_column(c, no_wrap=c in ("#", "kind", "client IP", "1st pkt"), overflow="fold")
        return tab

    rows = []
    for conns, nat_of, _ in chunks:
        for r in conns:
            keep = {"yes": "kept", "no": "SNAT", "unknown": "?"}[str(r.client_ip_preserved)]
            rows.append((str(r.connection), str(r.kind), safe(_at(r.client, r.client_node)), safe(_s(r.service)),
                         safe(_at(r.backend, r.backend_node)), safe(_nat_short(nat_of.get(int(r.forward_journey), [])) or "-"),
                         safe(_encap_short(r)), keep, fmt_ns(int(r.latency_ns)) if r.latency_ns >= 0 else ""))  # fmt: skip
    lines = _plain_table(out.con, make, rows) if out.plain else None
    if lines is not None:
        out.drawn(lines)
        return
    tab = make()
    for row in rows:
        tab.add_row(row[0], Text(row[1], style=_KIND_STYLE.get(row[1], "")), *(Text(x) for x in row[2:7]), row[7], row[8])
    out.rich(tab)


# --- compare ----------------------------------------------------------------------------------------
def format_value(v: Any, unit: str = "") -> str:
    """A summary cell for people: 'n/a' when not measurable, lists joined, integers without '.0', thousands separators."""
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (list, tuple)):
        if not unit:  # identifiers (VNIs, ports): plain numbers
            return ", ".join(safe(x) for x in v) or "n/a"
        return "; ".join(format_value(x, unit) for x in v) or "n/a"  # quantities (MSS values): 1,410; 1,460
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "yes" if v else "no"
    if isinstance(v, int) or type(v).__name__.startswith("int"):
        return f"{int(v):,}"
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        v = float(v)
        return f"{v:,.0f}" if v.is_integer() else f"{v:,.2f}" if unit == "%" else f"{v:,.1f}"
    return safe(v)


def print_comparison(cmp, con: Console) -> None:
    """The metric x capture-set summary (units, 'n/a' where unmeasurable), latency per connection kind, notes."""
    from rich.text import Text

    tab = _table(f"CNI comparison: {', '.join(safe(x) for x in cmp.labels)}")
    tab.add_column("metric", style="bold")
    tab.add_column("unit", style="dim")
    for lab in cmp.labels:
        tab.add_column(text(lab), justify="right")
    section = None
    for r in cmp.summary.to_dict(orient="records"):
        if r["section"] != section:
            section = r["section"]
            tab.add_section()
            tab.add_row(Text(section, style="cyan"), "", *[""] * len(cmp.labels))
        cells = [format_value(r[lab], r["unit"]) for lab in cmp.labels]
        tab.add_row(f"  {r['metric']}", r["unit"], *[Text(c, style="dim" if c == "n/a" else "") for c in cells])
    con.print(tab)
    if len(cmp.latency):
        tab = _table("first-packet latency per connection kind (median / p90, n connections)")
        tab.add_column("kind", style="bold")
        for lab in cmp.labels:
            tab.add_column(text(lab), justify="right")
        for kind in sorted(cmp.latency["kind"].unique()):
            cells = []
            for lab in cmp.labels:
                d = cmp.latency.loc[(cmp.latency["label"] == lab) & (cmp.latency["kind"] == kind)]
                cells.append(Text("n/a", style="dim") if not len(d) else
                             Text(f"{fmt_ns(d['median_ns'].iloc[0])} / {fmt_ns(d['p90_ns'].iloc[0])}  (n={int(d['connections'].iloc[0])})"))  # fmt: skip
            tab.add_row(text(kind), *cells)
        con.print(tab)
    for lab in cmp.labels:
        for note in cmp.notes.get(lab, []):
            con.print(text(f"note ({lab}): {note}"))


# --- show -------------------------------------------------------------------------------------------
def print_packet(file: str, record: int, dissection: str, row: dict, con: Console) -> None:
    """Scapy's dissection of one packet beside our decoded row (its non-empty columns)."""
    from rich.text import Text

    con.print(Text(f"scapy ({safe(file)} record {record})", style="bold"))
    for line in dissection.splitlines():
        con.print(text(line))
    tab = _table(f"pcaptools row (record {record})")
    tab.add_column("column", style="bold")
    tab.add_column("value")
    for k, v in row.items():
        tab.add_row(text(k), text(v))
    con.print(tab)


_STATUS_STYLE = {"ok": "green", "degraded": "yellow", "failed": "bold red"}


def print_why(d, con: Console, *, all_connections: bool = False) -> None:
    """``pcaptools why``: a status summary, then each failed or degraded connection with its losses and retries; more
    than :data:`LIST_LIMIT` of them are shown by kind of loss (:func:`pcaptools.k8s.groups.loss_groups`), with the first
    connection of each kind, unless ``all_connections`` (which lists every connection, the ones without loss too).
    The diagnosis is read a part at a time (:meth:`Diagnosis.parts() <pcaptools.k8s.diagnose.Diagnosis.parts>`: a
    streamed run's buckets): counted and its kinds of loss summed in a first pass, its connections listed in a second."""
    import numpy as np

    from pcaptools.k8s.diagnose import STATUSES
    from pcaptools.k8s.groups import LossGroups

    out = _Lines(con)
    counts: dict[str, int] = {}
    total = n_listed = 0
    kinds = LossGroups()
    for part in d.parts():
        c = part.connections
        total += len(c)
        for s, n in c["status"].value_counts().items():
            counts[s] = counts.get(s, 0) + int(n)
        if not all_connections:
            listed = c["connection"].to_numpy(np.int64)[_listed(part)]
            n_listed += len(listed)
            kinds.add(c, part.losses, listed)
    out(f"{fmt_int(total)} connections: " + ", ".join(f"{fmt_int(int(counts.get(s, 0)))} {s}" for s in STATUSES), "bold")
    if not all_connections and n_listed > LIST_LIMIT:
        kinds = kinds.table()
        rows = [(fmt_int(r.connections), r.status, r.direction or "-", r.cause or "no loss (NAT not explained)", safe(r.last_seen),
                 safe(r.first_missed), fmt_int(r.packets), f"#{r.first_connection}")
                for r in kinds.iloc[:ROUTES_SHOWN].itertuples(index=False)]  # fmt: skip
        out(f"{fmt_int(n_listed)} connections with a loss or unexplained NAT, by kind (a connection counts in each kind it "
            "has; --all lists each connection)", "bold")  # fmt: skip
        out.flush()
        print_rows(con, None, ("conns", "status", "direction", "cause", "last seen", "first missed", "packets", "first"), rows, key=4,
                   right=("conns", "packets"))  # fmt: skip
        if len(kinds) > ROUTES_SHOWN:
            rest = kinds.iloc[ROUTES_SHOWN:]
            out(f"… {fmt_int(len(rest))} more kinds of loss (--all lists each connection; --json gives every one)", "dim")
        out()
        out("the first connection of each kind:", "bold")
        first = np.asarray(list(dict.fromkeys(kinds["first_connection"].iloc[:ROUTES_SHOWN].tolist())), np.int64)
        for r in d.select(first).itertuples(index=False):  # records made one at a time
            _why_connection(out, r, d.connection_record(int(r.connection)))
    else:
        for part in d.parts():
            c = part.connections
            for r in (c if all_connections else c.iloc[np.flatnonzero(_listed(part))]).itertuples(index=False):
                _why_connection(out, r, part.connection_record(int(r.connection)))
    for note in d.notes:
        out(safe(f"note: {note}"), "dim")
    out.flush()


def _listed(d: Any) -> np.ndarray:
    """Per connection of a Diagnosis (or a part of one), whether ``why`` lists it: not ok, or a loss, or a translation
    its node's rules do not explain."""
    import numpy as np

    conns = d.connections["connection"].to_numpy(np.int64)
    shown = (d.connections["status"].astype(str) != "ok").to_numpy() | np.isin(conns, d.losses["connection"].to_numpy(np.int64))
    if d.nat_rules is not None and len(d.nat_rules):
        unexplained = d.nat_rules.loc[~d.nat_rules["explained"].astype(bool), "connection"].to_numpy(np.int64)
        shown |= np.isin(conns, unexplained)
    return shown


def _why_connection(out: _Lines, r: Any, rec: dict) -> None:
    """One connection of ``why``: its row of the connection table, then its record's losses, NAT rules and retries."""
    out()
    head = text(f"#{r.connection} {proto_name(r.proto)} {safe(r.client)} {endpoint(r.client_addr, r.client_port)} → "
                f"{safe(r.server)} {endpoint(r.server_addr, r.server_port)}  ")  # fmt: skip
    head.append(str(r.status), style=_STATUS_STYLE.get(str(r.status), ""))
    out(head)
    for loss in rec["losses"]:
        out(safe(f"  {loss['direction']}: {loss['cause']} ({loss['confidence']:.2f}) {loss['packets']} packet(s), "
                 f"last seen {loss['last_seen']}, first missed {loss['first_missed'] or '-'}"))  # fmt: skip
        out(safe(f"    {loss['evidence']}"), "dim", soft_wrap=True)
    for x in rec.get("nat", []):
        how = " → ".join(x["chains"]) if x["explained"] else f"not explained: {x['problem']}"
        out(safe(f"  {x['op']} {x['before']}→{x['after']} @{x['node']}: {how}"), "" if x["explained"] else "bold red", soft_wrap=True)
    t0 = min((s["ts_ns"] for a in rec["timeline"] for s in a["sightings"]), default=0)
    for a in rec["timeline"]:
        seen = ", ".join(f"{s['point']} +{fmt_ns(s['ts_ns'] - t0)}" for s in a["sightings"])
        mark = "went through" if a["reached"] else "lost after the last point"
        out(safe(f"  {a['direction']} {a['packet']} attempt {a['attempt']}: {seen}; {mark}"), "dim", soft_wrap=True)
