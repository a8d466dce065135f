"""Tables to one self-contained HTML page: inline CSS and JS, figures inline as SVG, no network needed to view it.

Every string that came from a file (point, node, pod and service names, addresses, notes) goes through
:func:`html.escape`; figures are SVG written by matplotlib (which escapes its own text).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pcaptools.fmt import PROTO_NAMES
from pcaptools.render import drawing, figures

if TYPE_CHECKING:
    from pcaptools.compare import Comparison

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#d4deeb}main{max-width:1500px;margin:0 auto;padding:8px 28px 40px}
nav{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:8px 14px;margin:14px 0}
nav a{margin-right:14px;color:#1f5fa8;text-decoration:none}nav a:hover{text-decoration:underline}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:6px 18px 14px;margin:16px 0}
h2{font-size:19px;border-bottom:2px solid #1f3a5f;padding-bottom:3px}h3{font-size:16px;margin:18px 0 6px}
table.connections{width:100%}table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}th,td{border:1px solid #dde2ea;padding:3px 7px;vertical-align:top}
th{background:#eef2f7;text-align:left;position:sticky;top:0}tbody tr:nth-child(even){background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.na{color:#999;text-align:right}
tr.sec td{background:#e4ecf6;font-weight:600}.doc{color:#667;font-size:11.5px}
.filters{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:6px 0}.filters input[type=search]{width:260px;padding:3px 6px}
.fig{overflow-x:auto;margin:6px 0}.fig svg{max-width:100%;height:auto}
details{border:1px solid #dde2ea;border-radius:5px;margin:6px 0;padding:4px 10px}summary{cursor:pointer;font-weight:600}
.route{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:pre-wrap;color:#333}
.k-pod-direct{color:#2e7d32}.k-clusterip{color:#00838f}.k-nodeport{color:#8e24aa}.k-loadbalancer-cluster,.k-loadbalancer-local{color:#b26a00}
.k-egress{color:#1f5fa8}.note{color:#6b5400;background:#fff8e1;border-left:3px solid #f0c000;padding:3px 8px;margin:4px 0}
.muted{color:#777}
"""

_JS = """
function pcFilter(id){
  const t=document.getElementById(id), q=document.getElementById(id+'-q').value.toLowerCase();
  const k=document.getElementById(id+'-kind').value, x=document.getElementById(id+'-cross').checked;
  const s=document.getElementById(id+'-snat').checked; let n=0;
  for(const r of t.tBodies[0].rows){
    const ok=(!q||r.textContent.toLowerCase().includes(q))&&(!k||r.dataset.kind===k)&&(!x||r.dataset.cross==='1')&&(!s||r.dataset.kept==='no');
    r.hidden=!ok; if(ok) n++;
  }
  document.getElementById(id+'-n').textContent=String(n);
}
function pcOpen(){const d=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if(d&&d.tagName==='DETAILS') d.open=true;}
function pcAll(id,open){for(const d of document.querySelectorAll('#'+id+' details')) d.open=open;}
window.addEventListener('hashchange',pcOpen);
document.addEventListener('DOMContentLoaded',()=>{
  for(const t of document.querySelectorAll('table.connections')) pcFilter(t.id);
  pcOpen();
  document.body.dataset.js='ok';
});
"""



def _e(v) -> str:
    """Escaped text of a value from a table."""
    return html.escape(str(v), quote=True)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _cell(v, col: str = "", digits: int = 1) -> str:
    """One <td>: numbers right-aligned with separators (``digits`` decimals unless whole), ``*_ns`` in µs, absent 'n/a'."""
    if _missing(v) or (isinstance(v, str) and v in ("", "nan")):
        return '<td class="na">n/a</td>' if not isinstance(v, str) else "<td></td>"
    if isinstance(v, (list, tuple, np.ndarray)):
        return f"<td>{_e(', '.join(map(str, v)))}</td>" if len(v) else '<td class="na">n/a</td>'
    if isinstance(v, (bool, np.bool_)):
        return f"<td>{'yes' if v else 'no'}</td>"
    if isinstance(v, (int, np.integer, float, np.floating)):
        x = float(v)
        if _is_timestamp(col):
            t = _dt.datetime.fromtimestamp(int(v) // 10**9, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            return f'<td class="num">{t}.{int(v) % 10**9 // 1000:06d}</td>'
        if col.endswith("_ns"):
            return f'<td class="num">{x / 1e3:,.1f}</td>'
        return f'<td class="num">{int(x):,}</td>' if x.is_integer() else f'<td class="num">{x:,.{digits}f}</td>'
    return f"<td>{_e(v)}</td>"


def _is_timestamp(col: str) -> bool:
    """A ``*_ns`` column holding a point in time (ns since the epoch), not a duration."""
    return col == "at_ns" or col.endswith("ts_ns") or col.startswith("ts_")


def _head(col: str) -> str:
    if _is_timestamp(col):
        return _e(col[:-3] + " (UTC)")
    return _e(col[:-3] + " (µs)" if col.endswith("_ns") else col)


def table(df: pd.DataFrame, *, columns: list[str] | None = None, cls: str = "", tid: str = "") -> str:
    """A plain HTML table of ``df`` (every cell escaped); ``*_ns`` columns in µs."""
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    if not len(df):
        return '<p class="muted">(none)</p>'
    head = "".join(f"<th>{_head(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(v, c) for c, v in zip(cols, row, strict=True)) + "</tr>"
                   for row in df[cols].itertuples(index=False, name=None))  # fmt: skip
    attrs = (f' class="{_e(cls)}"' if cls else "") + (f' id="{_e(tid)}"' if tid else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fig(fig) -> str:
    return f'<div class="fig">{figures.to_svg(fig)}</div>'


def _summary_table(cmp: Comparison) -> str:
    """Metric x capture set, grouped by section, with units and the doc line; 'n/a' where unmeasurable."""
    head = "<th>metric</th><th>unit</th>" + "".join(f"<th>{_e(lab)}</th>" for lab in cmp.labels)
    rows, section = [], None
    for r in cmp.summary.to_dict(orient="records"):
        if r["section"] != section:
            section = r["section"]
            rows.append(f'<tr class="sec"><td colspan="{2 + len(cmp.labels)}">{_e(section)}</td></tr>')
        cells = "".join(_cell(r[lab], digits=2 if r["unit"] == "%" else 1) if not _missing(r[lab]) else '<td class="na">n/a</td>' for lab in cmp.labels)
        rows.append(f'<tr><td>{_e(r["metric"])}<div class="doc">{_e(r["doc"])}</div></td><td>{_e(r["unit"])}</td>{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _connections(tid: str, paths: pd.DataFrame) -> str:
    """The connections table with client-side filters (text, kind, cross-node, client IP rewritten)."""
    if paths is None or not len(paths):
        return '<p class="muted">No connection was reconstructed.</p>'
    kinds = sorted(map(str, paths["kind"].dropna().unique()))
    opts = '<option value="">all kinds</option>' + "".join(f'<option value="{_e(k)}">{_e(k)}</option>' for k in kinds)
    filters = (f'<div class="filters"><input type="search" id="{tid}-q" placeholder="filter: pod, service, address, node…" '
               f'oninput="pcFilter(\'{tid}\')"><select id="{tid}-kind" onchange="pcFilter(\'{tid}\')">{opts}</select>'
               f'<label><input type="checkbox" id="{tid}-cross" onchange="pcFilter(\'{tid}\')"> cross-node only</label>'
               f'<label><input type="checkbox" id="{tid}-snat" onchange="pcFilter(\'{tid}\')"> client IP rewritten only</label>'
               f'<span><b id="{tid}-n">{len(paths)}</b> of {len(paths)} shown</span></div>')  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in ("#", "kind", "proto", "client", "server (as sent)", "service", "backend",
                                             "NAT", "encapsulation", "client IP at backend", "1st packet (µs)", "points"))  # fmt: skip
    rows = []
    for r in paths.itertuples(index=False):
        kind = str(r.kind)
        svc = "" if _missing(r.service) else f"{r.service} ({r.service_type}{', ' + str(r.traffic_policy) if not _missing(r.traffic_policy) else ''})"
        cl = str(r.client) + ("" if _missing(r.client_node) or r.client_node == r.client else f" @{r.client_node}")
        be = str(r.backend) + ("" if _missing(r.backend_node) or r.backend_node == r.backend else f" @{r.backend_node}")
        server = f"{r.server_addr}:{r.server_port}" if r.server_port >= 0 else str(r.server_addr)
        nat = "<br>".join(_e(x) for x in str(r.nat).split("; ") if x)
        keep = {"yes": "preserved", "no": "rewritten (SNAT)", "unknown": "not seen at backend"}[str(r.client_ip_preserved)]
        lat = f'<td class="num">{r.latency_ns / 1e3:,.1f}</td>' if r.latency_ns >= 0 else '<td class="na">n/a</td>'
        npts = len([p for p in str(r.forward_points).split(" → ") if p])
        rows.append(
            f'<tr data-kind="{_e(kind)}" data-cross="{int(bool(r.cross_node))}" data-kept="{_e(r.client_ip_preserved)}">'
            f'<td><a href="#{tid}-c{int(r.connection)}">{int(r.connection)}</a></td><td class="k-{_e(kind)}">{_e(kind)}</td>'
            f"<td>{_e(PROTO_NAMES.get(int(r.proto), r.proto))}</td><td>{_e(cl)}</td><td>{_e(server)}</td><td>{_e(svc)}</td>"
            f"<td>{_e(be)}</td><td>{nat}</td><td>{_e(r.encap)}</td><td>{_e(keep)}</td>{lat}"
            f'<td class="num">{npts}</td></tr>'
        )
    return f'{filters}<table class="connections" id="{tid}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _routes(paths: pd.DataFrame | None, nat: pd.DataFrame | None) -> str:
    """Connections by route (:func:`pcaptools.k8s.groups.route_groups`), the most used first: what thousands of rows
    of the connections table have in common, with the first connection of each as a link to its details."""
    if paths is None or not len(paths):
        return '<p class="muted">No connection was reconstructed.</p>'
    from pcaptools.k8s.groups import route_groups

    r = route_groups(paths, nat)
    shown = r.assign(client=[c if _missing(n) or n == c else f"{c} @{n}" for c, n in zip(r["client"], r["client_node"], strict=True)],
                     backend=[b if _missing(n) or n == b else f"{b} @{n}" for b, n in zip(r["backend"], r["backend_node"], strict=True)])  # fmt: skip
    doc = (f'<p class="doc">{len(paths):,} connections on {len(r):,} routes: connections with the same kind, client, service, '
           "backend, NAT steps with the nodes that applied them, encapsulation and client-IP verdict; latency of the first "
           "packet from its first to its last capture point, median and 95th percentile.</p>")  # fmt: skip
    return doc + table(shown, columns=["connections", "kind", "client", "service", "backend", "nat_ops", "encap", "client_ip_preserved",
                                       "latency_p50_ns", "latency_p95_ns", "first_connection"])  # fmt: skip


def _connection_details(tid: str, paths: pd.DataFrame, seq: pd.DataFrame, roles: dict[str, str], max_diagrams: int | None = None,
                        other: drawing.Drawer | None = None) -> str:  # fmt: skip
    """Per connection: route, NAT both ways, encapsulation and its sequence diagram across capture points (the first
    ``max_diagrams`` connections' only: a diagram costs ~40 ms and ~30 kB of page, too much for thousands)."""
    out = []
    by_connection = seq.groupby("connection", sort=False)
    rows_of = by_connection.indices  # each connection's rows and packets drawn, found once (not a scan per connection)
    drawn = by_connection["packet"].nunique().to_dict() if len(seq) else {}
    conns = paths["connection"].to_numpy(np.int64)
    with_diagram = [int(c) for i, c in enumerate(conns) if int(c) in rows_of and (max_diagrams is None or i < max_diagrams)]
    svgs = dict(zip(with_diagram, drawing.sequence_svgs([seq.iloc[rows_of[c]] for c in with_diagram], roles, other), strict=True))
    for i, r in enumerate(paths.itertuples(index=False)):
        c = int(r.connection)
        shown = int(drawn.get(c, 0))
        title = f"#{c} {r.kind}: {r.client} → {r.backend}" + ("" if _missing(r.service) else f" via {r.service}")
        facts = [f"route: {r.route}"]
        if r.nat:
            facts.append(f"NAT (forward): {r.nat}")
        if r.nat_reply:
            facts.append(f"NAT (reply): {r.nat_reply}")
        if r.encap:
            facts.append(f"encapsulation: {r.encap}")
        if r.hop_latency:
            facts.append(f"first packet per hop: {r.hop_latency}")
        facts.append(f"{int(r.journeys):,} packets in the capture, the first {shown} drawn")
        if c not in rows_of:
            fig = '<p class="muted">No packet of this connection was matched.</p>'
        elif max_diagrams is not None and i >= max_diagrams:
            fig = (f'<p class="muted">Diagram not drawn: the report draws the first {max_diagrams:,} connections\' diagrams '
                   "(pcaptools report --max-diagrams N).</p>")  # fmt: skip
        else:
            fig = f'<div class="fig">{svgs[c]}</div>'
        out.append(f'<details id="{tid}-c{c}"{" open" if i == 0 else ""}><summary class="k-{_e(r.kind)}">{_e(title)}</summary>'
                   f'<div class="route">{"<br>".join(_e(f) for f in facts)}</div>{fig}</details>')  # fmt: skip
    return "".join(out)


_NOT_CORRELATED = {"no_ip": "no IP", "link_scoped_icmpv6": "ND/MLD", "no_timestamp": "no timestamp"}
"""Column heads of the reasons a row is not correlated (pcaptools.correlate.fingerprint.NOT_CORRELATED)."""


def _point_counts(corr) -> pd.DataFrame:
    """Per point of a Correlation: rows, matched, unmatched and one column per reason a row is not correlated."""
    recs = [{"point": c["point"], "rows": c["rows"], "matched": c["matched"], "unmatched": c["unmatched"],
             **{_NOT_CORRELATED.get(r, r): n for r, n in c["not_correlated"].items()}} for c in corr.point_counts()]  # fmt: skip
    cols = ["point", "rows", "matched", "unmatched", *_NOT_CORRELATED.values()]
    return pd.DataFrame(recs, columns=cols).astype({c: np.int64 for c in cols[1:]})


def _set_section(cmp: Comparison, i: int, label: str, seq: pd.DataFrame, samples: pd.DataFrame, max_diagrams: int | None = None,
                 other: drawing.Drawer | None = None) -> str:  # fmt: skip
    """Everything about one capture set: points, clocks, connections, per-hop latency, losses, each connection's diagram."""
    tid = f"s{i}"
    corr = cmp.correlations[label]
    pts = cmp.capture_points[label].copy()
    counts = _point_counts(corr)
    for c in counts.columns.drop("point"):
        pts[c] = pts["point"].map(dict(zip(counts["point"], counts[c], strict=True))).fillna(0).astype(np.int64)
    roles = dict(zip(pts["point"], pts["role"], strict=True))
    paths = cmp.paths[label]
    ls = corr.loss_summary()
    lost = int(ls["lost"].sum()) if len(ls) else 0
    parts = [
        f'<section id="{tid}"><h2>{_e(label)} <span class="muted">({_e(cmp.sources.get(label, ""))})</span></h2>',
        f"<p>{len(pts)} capture points on {pts['node'].nunique()} nodes · {int(pts['packets'].sum()):,} packets · "
        f"{corr.journeys:,} journeys ({corr.ambiguous:,} ambiguous) · {len(paths) if paths is not None else 0} connections · "
        f"{lost:,} packets lost between points</p>",
        f'<h3 id="{tid}-points">Capture points</h3>',
        table(pts, columns=["point", "node", "interface", "role", "pod", "packets", "rows", "matched", "unmatched", *_NOT_CORRELATED.values(),
                            "file"]),  # fmt: skip
        '<p class="doc">rows: the point\'s packets given to the correlation, each matched (seen at another point too), unmatched '
        "(seen here only) or not correlated: no IP (ARP, other non-IP frames, undecodable), ND/MLD (IPv6 neighbour discovery "
        "and MLD, which stay on their link), no timestamp.</p>",
        f'<h3 id="{tid}-clocks">Clock offsets (against the reference node)</h3>',
        table(corr.offsets),
        '<p class="doc">offset and uncertainty in µs; a node with no packets matched both ways with the reference keeps its own clock.</p>',
        f'<h3 id="{tid}-routes">Routes</h3>',
        _routes(paths, cmp.nat.get(label)),
        f'<h3 id="{tid}-connections">Connections</h3>',
        _connections(f"{tid}-conn", paths),
        f'<h3 id="{tid}-latency">Per-hop latency</h3>',
        _fig(figures.latency_cdf(samples, hop="hop", title=f"{label}: latency per hop, by the roles of its capture points")) if len(samples)
        else '<p class="muted">No packet was seen at two capture points.</p>',
        table(corr.hop_latency),
        f'<h3 id="{tid}-losses">Losses between capture points</h3>',
        '<p class="doc">A packet seen at <i>point</i> is lost when packets of the same flow direction go on to <i>missing_at</i> '
        "but this one never arrives there while it was capturing.</p>",
        table(ls) if len(ls) else '<p>No packet went missing between capture points.</p>',
        f'<h3 id="{tid}-sequences">Each connection across capture points</h3>'
        f'<p><button onclick="pcAll(\'{tid}-seq\',true)">open all</button> <button onclick="pcAll(\'{tid}-seq\',false)">close all</button></p>'
        f'<div id="{tid}-seq">',
        _connection_details(f"{tid}-conn", paths, seq, roles, max_diagrams, other) if paths is not None and len(paths) else "",
        "</div>",
    ]
    notes = cmp.notes.get(label, [])
    if notes:
        parts.append("<h3>Notes</h3>" + "".join(f'<div class="note">{_e(n)}</div>' for n in dict.fromkeys(notes)))
    parts.append("</section>")
    return "".join(parts)


def _comparison_section(cmp: Comparison) -> str:
    """The CNI comparison: summary table, overhead / MTU / latency figures, pod-to-pod latency CDFs."""
    total = cmp.hop_samples.loc[cmp.hop_samples["hop"] == "pod → pod (total)"] if cmp.hop_samples is not None else None
    parts = ['<section id="comparison"><h2>CNI comparison</h2>',
             '<p class="doc">Everything below is measured from the packets; the manifests\' cni labels are not used as evidence. '
             "n/a: the captures cannot answer.</p>",
             _summary_table(cmp), "<h3>Bytes on the uplinks</h3>", _fig(figures.wire_bytes(cmp)),
             "<h3>Largest packets, MSS and path MTU</h3>", _fig(figures.mtu(cmp)),
             "<h3>Latency</h3>", _fig(figures.latency(cmp)), _fig(figures.hop_latency(cmp))]  # fmt: skip
    if total is not None and len(total):
        parts.append(_fig(figures.latency_cdf(total, hop="label", title="Cross-node pod-to-pod packets, first to last capture point")))
    if cmp.hop_samples is not None and len(cmp.hop_samples):
        parts.append(_fig(figures.latency_cdf(cmp.hop_samples, panel="label", title="Cross-node pod-to-pod packets, per hop")))
    parts.append("<h3>First-packet latency per connection kind</h3>" + table(cmp.latency))
    parts.append("<h3>Capture points per set</h3>" + table(cmp.points))
    parts.append("</section>")
    return "".join(parts)


def drawn_first(cmp: Comparison, max_diagrams: int | None) -> str | None:
    """The first set with enough diagrams to draw on two processes (:mod:`.drawing`), if any."""
    for lab in cmp.labels:
        paths = cmp.paths.get(lab)
        n = 0 if paths is None else len(paths) if max_diagrams is None else min(len(paths), max_diagrams)
        if n >= drawing.PARALLEL_FROM:
            return lab
    return None


def report_html(cmp: Comparison, sequences: dict[str, pd.DataFrame], samples: dict[str, pd.DataFrame], *, title: str | None = None,
                max_diagrams: int | None = None, ahead: drawing.Drawer | None = None) -> str:  # fmt: skip
    """The whole report page: a comparison section when there are several sets, then one section per set (each
    drawing the sequence diagrams of its first ``max_diagrams`` connections, every one when None; ``ahead``: a
    drawing process already started, for the set :func:`drawn_first` names)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("pcaptools")
    except PackageNotFoundError:  # running from a source tree that was never installed
        __version__ = "(source tree)"
    several = len(cmp.labels) > 1
    title = title or ("CNI comparison: " + " vs ".join(cmp.labels) if several else f"pcaptools report: {cmp.labels[0]}")
    nav = ['<a href="#comparison">comparison</a>'] if several else []
    for i, lab in enumerate(cmp.labels):
        nav.append(f'<a href="#s{i}"><b>{_e(lab)}</b></a>' + "".join(
            f'<a href="#s{i}-{k}">{k}</a>' for k in ("points", "clocks", "connections", "latency", "losses", "sequences")))
    body = [_comparison_section(cmp)] if several else []
    first = drawn_first(cmp, max_diagrams) if ahead is not None else None
    body += [_set_section(cmp, i, lab, sequences[lab], samples[lab], max_diagrams, ahead if lab == first else None)
             for i, lab in enumerate(cmp.labels)]  # fmt: skip
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sources = " · ".join(f"{_e(lab)}: {_e(cmp.sources.get(lab, ''))}" for lab in cmp.labels)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_JS}</script></head><body>"
            f"<header><h1>{_e(title)}</h1><p>{sources}</p><p>pcaptools {_e(__version__)} · generated {when}</p></header>"
            f'<main><nav>{" ".join(nav)}</nav>{"".join(body)}</main></body></html>\n')  # fmt: skip
