"""Matplotlib figures drawn from tables: comparison bars, per-hop latency CDFs, a sequence diagram per connection.

Every function takes tables (a :class:`pcaptools.compare.Comparison` is a bundle of them) and returns a
``matplotlib.figure.Figure`` built without pyplot (no global state, no GUI backend: safe in threads and on
headless hosts). The report (:mod:`pcaptools.render.html`) and the notebooks use the same functions;
:func:`save_figures` writes the comparison figures as PNGs, :func:`to_svg` gives one as SVG text.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # a type only: render never imports the modules that compute tables at run time
    from matplotlib.figure import Figure

    from pcaptools.compare import Comparison

_PARTS = (("payload", "L4 payload", "#4C72B0"), ("inner_headers", "inner headers (link, IP, L4)", "#DD8452"),
          ("encapsulation", "encapsulation (outer headers)", "#C44E52"))  # fmt: skip
_SET_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _na(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def wire_bytes(cmp: Comparison) -> Figure:
    """Stacked bar per capture set: uplink frame bytes split into payload / inner headers / encapsulation (%)."""
    fig = _figure(3.0 + 1.5 * len(cmp.labels), 4.6)
    ax = fig.add_subplot()
    wb = cmp.wire_bytes.set_index("label").reindex(cmp.labels) if len(cmp.wire_bytes) else None
    if wb is None or wb["total"].isna().all():
        _na(ax, "no uplink capture")
        return fig
    x = np.arange(len(cmp.labels))
    bottom = np.zeros(len(x))
    total = wb["total"].to_numpy(np.float64)
    for col, name, color in _PARTS:
        share = np.where(total > 0, 100 * wb[col].to_numpy(np.float64) / np.where(total > 0, total, 1), 0)
        share = np.nan_to_num(share)
        bars = ax.bar(x, share, 0.6, bottom=bottom, label=name, color=color)
        ax.bar_label(bars, labels=[f"{v:.1f}%" if v >= 2.5 else "" for v in share], label_type="center", color="white", fontsize=9)
        bottom += share
    for i, t in enumerate(total):
        txt = "n/a" if np.isnan(t) else f"{t / 1e3:,.0f} kB, {int(wb['packets'].iloc[i]):,} frames"
        ax.text(i, 101, txt, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, cmp.labels)
    ax.set_ylim(0, 112)
    ax.set_ylabel("share of uplink frame bytes (%)")
    ax.set_title("Bytes on the node uplinks: payload vs headers vs encapsulation")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8, frameon=False)
    return fig


def latency(cmp: Comparison) -> Figure:
    """Grouped bars: first-packet latency (median, whisker to p90) per connection kind and capture set."""
    lat = cmp.latency
    kinds = sorted(lat["kind"].unique()) if len(lat) else []
    fig = _figure(max(6.0, 1.0 + 0.55 * len(kinds) * max(len(cmp.labels), 1)), 4.8)
    ax = fig.add_subplot()
    if not kinds:
        _na(ax, "no connection seen at two capture points")
        return fig
    width = 0.8 / len(cmp.labels)
    x = np.arange(len(kinds))
    for i, lab in enumerate(cmp.labels):
        d = lat.loc[lat["label"] == lab].set_index("kind").reindex(kinds)
        med = d["median_ns"].to_numpy(np.float64) / 1e3
        p90 = d["p90_ns"].to_numpy(np.float64) / 1e3
        xs = x - 0.4 + width * (i + 0.5)
        ax.bar(xs, np.nan_to_num(med), width, label=lab, color=_SET_COLORS[i % len(_SET_COLORS)])
        ok = ~np.isnan(med)
        ax.errorbar(xs[ok], med[ok], yerr=[np.zeros(ok.sum()), p90[ok] - med[ok]], fmt="none", ecolor="black", capsize=3, lw=1)
        for xx, m, n in zip(xs, med, d["connections"].to_numpy(), strict=True):
            ax.text(xx, 0, "n/a" if np.isnan(m) else f"n={int(n)}", ha="center", va="bottom", fontsize=7, rotation=90,
                    color="white" if not np.isnan(m) and m > 0 else "grey")  # fmt: skip
    ax.set_xticks(x, kinds, rotation=25, ha="right")
    ax.set_ylabel("first packet, first → last capture point (µs)")
    ax.set_title("First-packet latency per connection kind (bar: median, whisker: p90; corrected clocks)")
    ax.legend(title="capture set")
    ax.grid(axis="y", alpha=0.3)
    return fig


def hop_latency(cmp: Comparison) -> Figure:
    """One panel per capture set: per-hop latency (median, whisker to p90) of cross-node pod-to-pod packets."""
    hl = cmp.hop_latency
    fig = _figure(4.2 * max(len(cmp.labels), 1), 4.4)
    axes = fig.subplots(1, max(len(cmp.labels), 1), squeeze=False)[0]  # own y labels: hops differ per CNI
    top = float((hl["p90_ns"].max() if len(hl) else 0) / 1e3) * 1.15 or 1.0
    for i, (ax, lab) in enumerate(zip(axes, cmp.labels, strict=True)):
        d = hl.loc[hl["label"] == lab] if len(hl) else hl
        if not len(d):
            _na(ax, f"{lab}: no cross-node pod-to-pod packets")
            continue
        med, p90 = d["median_ns"].to_numpy(np.float64) / 1e3, d["p90_ns"].to_numpy(np.float64) / 1e3
        y = np.arange(len(d))[::-1]
        ax.barh(y, med, 0.6, color=_SET_COLORS[i % len(_SET_COLORS)])
        ax.errorbar(med, y, xerr=[np.zeros(len(d)), p90 - med], fmt="none", ecolor="black", capsize=3, lw=1)
        ax.set_yticks(y, [f"{h}\n(n={int(c):,})" for h, c in zip(d["hop"], d["count"], strict=True)], fontsize=8)
        ax.set_xlim(0, top)
        ax.set_xlabel("µs (median, whisker p90)")
        ax.set_title(f"{lab}: {len(d)} hops, total median {med.sum():.1f} µs", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Per-hop latency of cross-node pod-to-pod packets, by capture-point role")
    return fig


_MTU_ROWS = (("ip_pod", "largest IP\npod veth"), ("ip_overlay", "largest IP\ninside tunnel"),
             ("ip_uplink", "largest IP\nuplink wire"), ("mss_pod", "MSS\nfrom pods"),
             ("mss_effective", "effective MSS\n(median)"), ("pmtu", "path MTU\nfrom MSS"))  # fmt: skip


def mtu(cmp: Comparison) -> Figure:
    """Grouped bars: largest IP packet per interface role, pod / effective MSS and the MSS-implied path MTU."""
    fig = _figure(max(7.0, 1.2 * len(_MTU_ROWS) * max(len(cmp.labels), 1) * 0.7), 4.8)
    ax = fig.add_subplot()
    keys = [k for k, _ in _MTU_ROWS]
    width = 0.8 / max(len(cmp.labels), 1)
    x = np.arange(len(keys))
    vals_all = []
    for i, lab in enumerate(cmp.labels):
        by_key = cmp.summary.set_index("key")[lab]
        vals = np.array([_num(by_key.get(k)) for k in keys], np.float64)
        vals_all.append(vals)
        xs = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(xs, np.nan_to_num(vals), width, label=lab, color=_SET_COLORS[i % len(_SET_COLORS)])
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{int(v)}" for v in vals], fontsize=8, padding=2)
        for xx in xs[np.isnan(vals)]:
            ax.text(xx, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="grey", transform=ax.get_xaxis_transform())
    hi = np.nanmax(np.concatenate(vals_all)) if vals_all and not np.isnan(np.concatenate(vals_all)).all() else 1500
    lo = np.nanmin(np.concatenate(vals_all)) if vals_all and not np.isnan(np.concatenate(vals_all)).all() else 0
    ax.set_ylim(max(0, lo - 150), hi + 60)  # the differences are tens of bytes: do not start the axis at 0
    ax.set_xticks(x, [n for _, n in _MTU_ROWS], fontsize=9)
    ax.set_ylabel("bytes (axis does not start at 0)")
    ax.set_title("Largest IP packet per interface role, MSS and path MTU")
    ax.legend(title="capture set", loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def figures(cmp: Comparison) -> dict[str, Figure]:
    """Every figure of the comparison by file stem."""
    return {"wire_bytes": wire_bytes(cmp), "latency": latency(cmp), "hop_latency": hop_latency(cmp), "mtu": mtu(cmp)}


def close(fig: Figure) -> None:
    """Release a figure (nothing to do without pyplot; kept so callers need not know)."""
    fig.clear()


def save_figures(cmp: Comparison, directory: str | os.PathLike, *, dpi: int = 120) -> list[Path]:
    """Write the comparison figures as PNGs into ``directory`` (created); returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(cmp).items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        close(fig)
        written.append(path)
    return written


def to_svg(fig: Figure) -> str:
    """The figure as standalone SVG text (fonts as text, not paths: smaller, selectable, searchable)."""
    import matplotlib

    buf = io.StringIO()
    fixed = fig.get_layout_engine() is None  # laid out by hand (sequence diagrams): skip the extra 'tight' pass
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pcaptools"}):
        fig.savefig(buf, format="svg", bbox_inches=None if fixed else "tight",
                    metadata={"Creator": None, "Date": None, "Format": None, "Type": None})  # no RDF block: smaller
    # not cleared: without pyplot nothing else holds it, and clearing a sequence diagram's artists cost ~10 ms each
    text = buf.getvalue()
    return text[text.index("<svg"):]


def latency_cdf(samples: pd.DataFrame, *, hop: str | tuple[str, ...] = "hop", panel: str | None = None, top: int = 8,
                title: str = "Per-hop latency distribution (corrected clocks)") -> Figure:  # fmt: skip
    """Empirical CDFs of ``latency_ns``, one line per hop (``hop``: a column, or columns joined by ' → '),
    the ``top`` most frequent hops, one panel per value of ``panel`` (e.g. ``label``); x in µs, log scale."""
    cols = (hop,) if isinstance(hop, str) else tuple(hop)
    names = samples[cols[0]].astype(str)
    for c in cols[1:]:
        names = names + " → " + samples[c].astype(str)
    lat = samples["latency_ns"].to_numpy(np.float64) / 1e3
    groups = list(pd.unique(samples[panel].astype(str))) if panel else [None]
    fig = _figure(max(6.5, 5.2 * len(groups)), 4.6)
    axes = fig.subplots(1, max(len(groups), 1), squeeze=False, sharex=True)[0]
    floor = 0.5  # µs: 0 and negative hops (within clock uncertainty) are drawn at the left edge
    for ax, g in zip(axes, groups, strict=True):
        sel = np.ones(len(samples), bool) if g is None else (samples[panel].astype(str) == g).to_numpy()
        if not sel.any():
            _na(ax, f"{g}: no samples")
            continue
        counts = names[sel].value_counts()
        shown = list(counts.index[:top])
        meds = {h: float(np.median(lat[sel & (names == h).to_numpy()])) for h in shown}
        for i, h in enumerate(sorted(shown, key=meds.get)):
            x = np.sort(np.maximum(lat[sel & (names == h).to_numpy()], floor))
            y = np.arange(1, len(x) + 1) / len(x)
            ax.step(x, y, where="post", color=_SET_COLORS[i % len(_SET_COLORS)], lw=1.6,
                    label=f"{h}  (n={len(x):,}, median {meds[h]:,.1f} µs)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("latency (µs, log scale)")
        ax.set_ylabel("share of packets ≤ x")
        ax.grid(alpha=0.3, which="both")
        more = f" ({len(counts) - len(shown)} rarer hops not drawn)" if len(counts) > len(shown) else ""
        ax.set_title((f"{g}" if g else "") + more, fontsize=10)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7.5, frameon=False)
    fig.suptitle(title)
    return fig


def sequence_diagram(seq: pd.DataFrame, *, lanes: list[str] | None = None, roles: dict[str, str] | None = None,
                     title: str = "") -> Figure:  # fmt: skip
    """Wireshark's flow graph across capture points: one connection's rows of the sequences table
    (pcaptools.k8s.sequence), points as lanes, each packet an arrow through the points that saw it,
    translations (NAT) and encapsulation annotated where they first appear, time since the first packet at left."""
    from matplotlib.figure import Figure

    if lanes is None:
        fwd = seq.loc[~seq["reply"].to_numpy()] if (~seq["reply"].to_numpy()).any() else seq
        lanes = list(pd.unique(fwd.sort_values(["packet", "hop"])["point"]))
        lanes += [p for p in pd.unique(seq["point"]) if p not in lanes]
    x_of = {p: i for i, p in enumerate(lanes)}
    s = seq.sort_values(["packet", "hop"], kind="stable")
    pk = s["packet"].to_numpy()
    row = pd.factorize(pk)[0]  # packets drawn one per row, in order
    npk = int(row.max()) + 1 if len(row) else 1
    width, height = 2.6 + 1.55 * max(len(lanes), 2), 1.5 + 0.62 * npk
    fig = Figure(figsize=(width, height))  # no layout engine: every position is fixed, so drawing is one pass
    ax = fig.add_axes((0, 0, 1, 1 - (0.35 / height if title else 0)))
    ax.set_xlim(-1.95, len(lanes) - 0.35)
    ax.set_ylim(npk + 0.15, -1.25)
    ax.axis("off")
    for p, i in x_of.items():
        ax.plot([i, i], [-0.45, npk], color="#bbbbbb", lw=1, zorder=0)
        role = f"\n({roles[p]})" if roles and roles.get(p) else ""
        ax.text(i, -0.5, p.replace(":", ":\n", 1) + role, ha="center", va="bottom", fontsize=8, weight="bold")
    x = np.array([x_of[p] for p in s["point"]], np.float64)
    # y: a packet descends 0.55 of a row while it crosses its points
    first = np.r_[True, pk[1:] != pk[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(pk)), 0))
    n_in = np.bincount(row)[row]
    y = row + 0.55 * (np.arange(len(pk)) - start) / np.maximum(n_in - 1, 1)
    reply = s["reply"].to_numpy(bool)
    tun = (s["encap"] != "").to_numpy()
    base = np.where(reply, "#C44E52", "#4C72B0")
    seg = np.flatnonzero(~first)  # a segment ends at every sighting but a packet's first
    loop = x[seg] == x[seg - 1]  # seen twice at one point (in, then out encapsulated or routed back)
    x0, x1 = x[seg - 1] + 0.1 * loop, x[seg] + 0.1 * loop
    enc_seg = tun[seg] & tun[seg - 1]
    ax.quiver(x0, y[seg - 1], x1 - x0, y[seg] - y[seg - 1], angles="xy", scale_units="xy", scale=1,
              color=np.where(enc_seg, "#DD8452", base[seg]).tolist(), width=0.0016, headwidth=5, headlength=7,
              headaxislength=6, zorder=2)  # fmt: skip
    ax.scatter(x, y, s=np.where(tun, 30, 12), marker="s", c=np.where(tun, "#DD8452", base).tolist(), zorder=3)
    for k in np.flatnonzero(first):
        t0 = int(s["since_start_ns"].iat[k])
        ax.text(-1.9, row[k] + 0.27, f"+{t0 / 1e3:,.0f} µs  {s['label'].iat[k]}", fontsize=7.5, va="center", color=base[k])
    noted: set[str] = set()
    nat, enc = s["nat"].to_numpy(object), s["encap"].to_numpy(object)
    repeat_x, repeat_y = [], []
    for i in np.flatnonzero((nat != "") | (enc != "")):
        xm = (x[i] + x[i - 1]) / 2 if not first[i] else x[i]
        ym = (y[i] + y[i - 1]) / 2 if not first[i] else y[i]
        if nat[i]:
            key = ("r" if reply[i] else "f") + nat[i]
            if key in noted:
                repeat_x.append(xm)
                repeat_y.append(ym)
            else:
                noted.add(key)
                ax.text(xm, ym - 0.1, nat[i].replace("; ", "\n"), fontsize=6.5, ha="center", va="bottom", color="#6a3d9a",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "#6a3d9a", "lw": 0.5, "alpha": 0.9})  # fmt: skip
        if enc[i] and ("e" + enc[i]) not in noted:
            noted.add("e" + enc[i])
            ax.text(x[i] + 0.06, y[i] + 0.08, enc[i], fontsize=6.5, ha="left", va="top", color="#a35a1f")
    if repeat_x:
        ax.scatter(repeat_x, repeat_y, s=14, marker="D", color="#6a3d9a", zorder=4)
    gone = np.flatnonzero((s["missing_at"] != "").to_numpy()) if "missing_at" in s.columns else np.zeros(0, np.int64)
    for i in gone:  # a loss: the packet never reached the point its flow goes on to from here
        where = s["missing_at"].iat[i]
        xt = float(x_of[where]) if where in x_of else x[i] + 0.6
        ax.plot([x[i], xt], [y[i], y[i] + 0.25], color="#888888", lw=1, ls=":", zorder=1)
        ax.scatter([xt], [y[i] + 0.25], s=60, marker="x", color="#d62728", linewidths=2, zorder=4)
        ax.text(xt + 0.06, y[i] + 0.25, f"not seen at {where}", fontsize=6.5, color="#d62728", va="center")
    ax.text(-1.9, npk - 0.05, "blue: client → server   red: server → client   orange: encapsulated   "
            "purple: address translation (◆ the same again)   red ✕: not seen where its flow goes next (lost or not captured)", fontsize=7, color="#555555", va="top")  # fmt: skip
    if title:
        fig.text(0.01, 1 - 0.05 / height, title, fontsize=10, va="top", ha="left")
    return fig
