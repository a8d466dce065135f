"""Matplotlib figures of a :class:`pcaptools.compare.Comparison`: wire bytes, latency, hop latency, MTU/MSS.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend, safe in threads
and on headless hosts); each function returns the Figure, ``Comparison.save_figures(dir)`` writes PNGs.
"""

from __future__ import annotations

import numpy as np

from pcaptools.compare import METRICS, Comparison

_PARTS = (("payload", "L4 payload", "#4C72B0"), ("inner_headers", "inner headers (link, IP, L4)", "#DD8452"),
          ("encapsulation", "encapsulation (outer headers)", "#C44E52"))  # fmt: skip
_SET_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _na(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def wire_bytes(cmp: Comparison):
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


def latency(cmp: Comparison):
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


def hop_latency(cmp: Comparison):
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


def mtu(cmp: Comparison):
    """Grouped bars: largest IP packet per interface role, pod / effective MSS and the MSS-implied path MTU."""
    fig = _figure(max(7.0, 1.2 * len(_MTU_ROWS) * max(len(cmp.labels), 1) * 0.7), 4.8)
    ax = fig.add_subplot()
    keys = [k for k, _ in _MTU_ROWS]
    width = 0.8 / max(len(cmp.labels), 1)
    x = np.arange(len(keys))
    vals_all = []
    for i, lab in enumerate(cmp.labels):
        vals = np.array([_num(cmp.value(METRICS[k][1], lab)) for k in keys], np.float64)
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


def figures(cmp: Comparison) -> dict:
    """Every figure of the comparison by file stem."""
    return {"wire_bytes": wire_bytes(cmp), "latency": latency(cmp), "hop_latency": hop_latency(cmp), "mtu": mtu(cmp)}


def close(fig) -> None:
    """Release a figure (nothing to do without pyplot; kept so callers need not know)."""
    fig.clear()
