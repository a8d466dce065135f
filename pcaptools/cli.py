"""The ``pcaptools`` command: parse arguments, call one library function, render. No logic here."""

from __future__ import annotations

import sys

import typer

from pcaptools.errors import PcapError

app = typer.Typer(
    name="pcaptools",
    help="Where did my packet go? Decode, correlate and compare Kubernetes node captures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _console():
    """Stdout console; when piped (no terminal width to read) tables get 160 columns, not rich's 80."""
    import os

    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=160 if wide else None)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors.")) -> None:
    _state["debug"] = debug


_BUSY_BYTES = 50 << 20  # inputs this large take over a second: show that work is under way


def _input_bytes(paths: list[str]) -> int:
    """Total size of the files, or of the files under directories, named on the command line."""
    from pathlib import Path

    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


def _busy(paths: list[str], what: str):
    """A transient spinner with elapsed time on stderr while a large input is worked on."""
    import contextlib

    size = _input_bytes(paths)
    if size < _BUSY_BYTES:
        return contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn(f"{what} {size / 1e6:,.0f} MB"), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    bar.add_task(what, total=None)
    return bar


# Commands are registered below, one block per command, each calling one library function.
# --- commands ---


@app.command("compare")
def compare_cmd(
    sources: list[str] = typer.Argument(..., help="Capture-set directories (each holding manifest.json); the directory name labels the column."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print summary and detail tables as JSON (null = not measurable)."),
    figures: str = typer.Option(None, "--figures", help="Write the comparison figures as PNGs into this directory."),
    out: str = typer.Option(None, "-o", "--output", help="Write the summary table (metric x capture set) to OUT.csv or OUT.parquet."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let the manifest name files outside its own directory (only for manifests you trust)."),
) -> None:
    """Compare CNI data planes: overlay mode, encapsulation overhead, MTU/MSS, fragmentation, hops and latency.

    Example: pcaptools compare sample_pcaps/vpc sample_pcaps/calico-vxlan --figures figures/ -o summary.csv
    Example: pcaptools compare sample_pcaps/vpc sample_pcaps/calico-vxlan --json
    """
    from pcaptools.compare import compare, print_comparison
    from pcaptools.errors import CorrelationError

    if out and not out.endswith((".parquet", ".csv")):
        raise CorrelationError(f"-o {out}: expected a .csv or .parquet file name; found another suffix; try -o summary.csv")
    with _busy(list(sources), "comparing"):
        cmp = compare(sources, allow_outside=allow_outside)
    if out:
        tab = cmp.summary.astype({lab: str for lab in cmp.labels}).replace({"None": "", "nan": ""})
        tab.to_parquet(out, index=False) if out.endswith(".parquet") else cmp.summary.to_csv(out, index=False)
    written = cmp.save_figures(figures) if figures else []
    if as_json:
        print(cmp.to_json(indent=2))
        return
    print_comparison(cmp, console=_console())
    for path in written:
        print(f"figure written to {path}")
    if out:
        print(f"summary ({len(cmp.summary)} metrics) written to {out}")


@app.command("paths")
def paths_cmd(
    source: str = typer.Argument(..., help="manifest.json of the capture set, or a directory holding one."),
    inventory: str = typer.Option(None, "--inventory", help="kubectl get nodes,pods,services,endpointslices -A -o json output (default: the manifest's lab.inventory, else inventory.json beside it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the paths as a JSON list, one object per connection."),
    out: str = typer.Option(None, "-o", "--output", help="Write the path table to OUT.csv or OUT.parquet."),
    brief: bool = typer.Option(False, "--brief", help="Only the summary table, no per-connection route."),
    window_ms: float = typer.Option(2000.0, "--window-ms", help="Max time between sightings of one packet after clock correction."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let the manifest name files outside its own directory (only for manifests you trust)."),
) -> None:
    """Pod and service paths per connection: client, service, NAT steps and the nodes that applied them, tunnels, backend.

    Example: pcaptools paths sample_pcaps/calico-vxlan
    Example: pcaptools paths captures/manifest.json --inventory inventory.json -o paths.parquet --json
    """
    import json

    from pcaptools.correlate import CaptureSet
    from pcaptools.correlate.api import correlate
    from pcaptools.correlate.manifest import inventory_beside
    from pcaptools.errors import InventoryError
    from pcaptools.k8s.inventory import Inventory
    from pcaptools.k8s.paths import path_records, paths

    if out and not out.endswith((".parquet", ".csv")):
        raise InventoryError(f"-o {out}: expected a .parquet or .csv file name; found another suffix; try -o paths.parquet")
    if inventory is None:
        inventory = inventory_beside(source, allow_outside=allow_outside)
    inv = Inventory.load(inventory) if inventory else None
    with _busy([source], "correlating"):
        corr = correlate(CaptureSet.load(source, allow_outside=allow_outside), window_ns=int(window_ms * 1e6))
        p = paths(corr, inv)
    if out:
        p.to_parquet(out, index=False) if out.endswith(".parquet") else p.to_csv(out, index=False)
    if as_json:
        print(json.dumps(path_records(p), indent=2, ensure_ascii=False))
        return
    from pcaptools.k8s.paths import print_paths

    print_paths(p, inv, corr, brief=brief, console=_console())
    if out:
        print(f"{len(p):,} paths written to {out}")


@app.command("decode")
def decode_cmd(
    files: list[str] = typer.Argument(..., help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    out: str = typer.Option(..., "-o", "--output", help="Write the packet table to OUT.parquet or OUT.csv."),
    vxlan_port: list[int] = typer.Option([], "--vxlan-port", help="Extra UDP port carrying VXLAN (repeatable; 4789 and 8472 always)."),  # noqa: B008
    geneve_port: list[int] = typer.Option([], "--geneve-port", help="Extra UDP port carrying Geneve (repeatable; 6081 always)."),  # noqa: B008
    wireguard_port: list[int] = typer.Option([], "--wireguard-port", help="Extra UDP port carrying WireGuard (repeatable; 51820/51821 always)."),  # noqa: B008
    max_tunnel_depth: int = typer.Option(4, "--max-tunnel-depth", help="Nested tunnels stripped at most."),
) -> None:
    """Decode captures into one packet table (inner and outer headers of tunnels, one row per record).

    Example: pcaptools decode node1.pcap node2.pcapng.gz -o packets.parquet --vxlan-port 4790
    """
    from pcaptools.decode import registry
    from pcaptools.errors import DecodeError
    from pcaptools.packets import read_packets

    if not out.endswith((".parquet", ".csv")):
        raise DecodeError(f"-o {out}: expected a .parquet or .csv file name; found another suffix; try -o packets.parquet")
    with _busy(files, "decoding"):
        df = read_packets(
            files,
            vxlan_ports=tuple(dict.fromkeys((*registry.DEFAULT_VXLAN_PORTS, *vxlan_port))),
            geneve_ports=tuple(dict.fromkeys((*registry.DEFAULT_GENEVE_PORTS, *geneve_port))),
            wireguard_ports=tuple(dict.fromkeys((*registry.DEFAULT_WIREGUARD_PORTS, *wireguard_port))),
            max_tunnel_depth=max_tunnel_depth,
        )
    df.to_parquet(out, index=False) if out.endswith(".parquet") else df.to_csv(out, index=False)
    skipped = sum(sum(v.values()) for v in df.attrs.get("skipped", {}).values())
    errors = int(df["error"].notna().sum())
    print(f"{len(df):,} packets from {len(files)} file(s) written to {out}; {errors:,} with a decode error, {skipped:,} records skipped by the reader")


@app.command("show")
def show_cmd(
    file: str = typer.Argument(..., help="Capture file."),
    record: int = typer.Argument(..., help="0-based record number (tshark's frame number minus 1)."),
    vxlan_port: list[int] = typer.Option([], "--vxlan-port", help="Extra UDP port carrying VXLAN (repeatable)."),  # noqa: B008
    geneve_port: list[int] = typer.Option([], "--geneve-port", help="Extra UDP port carrying Geneve (repeatable)."),  # noqa: B008
) -> None:
    """Scapy's full dissection of one packet beside our decoded row (its non-empty columns).

    Example: pcaptools show node1.pcap 41 --vxlan-port 4790
    """
    from rich.table import Table

    from pcaptools.decode import registry
    from pcaptools.show import non_empty, show_packet

    text, row = show_packet(
        file,
        record,
        vxlan_ports=tuple(dict.fromkeys((*registry.DEFAULT_VXLAN_PORTS, *vxlan_port))),
        geneve_ports=tuple(dict.fromkeys((*registry.DEFAULT_GENEVE_PORTS, *geneve_port))),
    )
    console = _console()
    console.print(f"[bold]scapy[/bold] ({file} record {record})")
    console.print(text, markup=False, highlight=False)
    t = Table(title=f"pcaptools row (record {record})")
    t.add_column("column", style="bold")
    t.add_column("value")
    for k, v in non_empty(row).items():
        t.add_row(k, str(v))
    console.print(t)


@app.command("flows")
def flows_cmd(
    files: list[str] = typer.Argument(..., help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    out: str = typer.Option(None, "-o", "--output", help="Write the flow table to OUT.parquet or OUT.csv."),
    as_json: bool = typer.Option(False, "--json", help="Print the flows as a JSON list, one object per flow."),
    idle_timeout: float = typer.Option(None, "--idle-timeout", help="Seconds of inactivity that end a flow (default: Zeek's, TCP 300, others 60)."),
    seed: int = typer.Option(0, "--seed", help="Community ID seed (0-65535); both sides of a comparison must use the same."),
    limit: int = typer.Option(20, "--limit", help="Rows shown in the terminal table (largest flows first)."),
) -> None:
    """Bidirectional flows (Zeek conn.log-like) with Community ID, per capture file.

    Example: pcaptools flows node1.pcap.gz node2.pcapng -o flows.parquet
    Example: pcaptools flows capture.pcap --json --seed 1
    """
    from pcaptools.errors import DecodeError
    from pcaptools.flows import read_flows

    if out and not out.endswith((".parquet", ".csv")):
        raise DecodeError(f"-o {out}: expected a .parquet or .csv file name; found another suffix; try -o flows.parquet")
    if not 0 <= seed <= 0xFFFF:
        raise DecodeError(f"--seed {seed}: expected 0..65535 (an unsigned 16-bit value)")
    with _busy(files, "decoding"):
        fl = read_flows(files, idle_timeout_s=idle_timeout, seed=seed)
    if out:
        fl.to_parquet(out, index=False) if out.endswith(".parquet") else fl.to_csv(out, index=False)
    if as_json:
        print(fl.to_json(orient="records", indent=2))
        return
    if out:
        print(f"{len(fl):,} flows written to {out}")
        return
    from rich.table import Table

    t = Table(title=f"{len(fl):,} flows (largest {min(limit, len(fl))} by bytes)")
    cols = ("community_id", "proto", "orig", "resp", "pkts", "bytes", "duration s", "state", "history", "tunnel")
    for c in cols:
        t.add_column(c)
    top = fl.assign(_b=fl.orig_bytes + fl.resp_bytes).nlargest(limit, "_b")
    for r in top.itertuples(index=False):
        port = lambda h, p: f"{h}:{p}" if p >= 0 else str(h)  # noqa: E731
        t.add_row(str(r.community_id), str(r.proto), port(r.orig_h, r.orig_p), port(r.resp_h, r.resp_p),
                  f"{r.orig_pkts}/{r.resp_pkts}", f"{r.orig_bytes}/{r.resp_bytes}", f"{r.duration_ns / 1e9:.3f}",
                  str(r.state), r.history, "" if r.tunnel != r.tunnel else f"{r.tunnel} {r.vni}")  # fmt: skip
    _console().print(t)


@app.command("correlate")
def correlate_cmd(
    source: str = typer.Argument(None, help="manifest.json or a directory holding one (optional with --point)."),
    point: list[str] = typer.Option([], "--point", help="Capture point NODE:IFACE=FILE (repeatable; a bare FILE gets node=its stem)."),  # noqa: B008
    window_ms: float = typer.Option(2000.0, "--window-ms", help="Max time between sightings of one packet after clock correction."),
    reference: str = typer.Option(None, "--reference", help="Node whose clock the others are corrected to (default: the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print clock offsets, journeys, matched/unmatched per point, hop latency as JSON."),
    out: str = typer.Option(None, "-o", "--output", help="Write the hops table (one row per packet per capture point) to this .parquet file."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let the manifest name files outside its own directory (only for manifests you trust)."),
) -> None:
    """Find each packet at every capture point (through NAT and tunnels), estimate clock offsets, per-hop latency and loss.

    Example: pcaptools correlate sample_pcaps/calico-vxlan --json -o hops.parquet
    Example: pcaptools correlate --point node-1:eth0=n1.pcap --point node-2:eth0=n2.pcap
    """
    from rich.table import Table

    from pcaptools.correlate import CaptureSet
    from pcaptools.correlate.api import correlate

    with _busy([x for x in [source, *(q.rpartition("=")[2] for q in point)] if x], "correlating"):
        cs = CaptureSet.load(source, points=point, allow_outside=allow_outside)
        corr = correlate(cs, window_ns=int(window_ms * 1e6), reference=reference)
    if out:
        corr.hops.to_parquet(out, index=False)
    if as_json:
        print(corr.to_json(indent=2))
        return
    console = _console()
    t = Table(title=f"clock offsets (reference {corr.offsets.loc[corr.offsets['reference'], 'node'].iloc[0]})")
    for c in ("node", "offset", "uncertainty", "skew ppm"):
        t.add_column(c)
    for r in corr.offsets.itertuples(index=False):
        unc = "unknown" if r.uncertainty_ns != r.uncertainty_ns else f"±{r.uncertainty_ns / 1e3:.1f} us"
        t.add_row(r.node, f"{r.offset_ns / 1e3:+.1f} us", unc, f"{r.skew_ppm:.3f}" + (" (matters)" if r.skew_matters else ""))
    console.print(t)
    t = Table(title=f"{corr.journeys:,} journeys, {corr.ambiguous:,} ambiguous")
    for c in ("point", "matched", "unmatched"):
        t.add_column(c)
    for name in corr.matched:
        t.add_row(name, f"{corr.matched[name]:,}", f"{corr.unmatched[name]:,}")
    console.print(t)
    t = Table(title="hop latency (us)")
    for c in ("from", "to", "count", "median", "p90", "p99", "min", "max"):
        t.add_column(c)
    for r in corr.hop_latency.itertuples(index=False):
        t.add_row(r.from_point, r.to_point, f"{r.count:,}", *(f"{v / 1e3:.1f}" for v in (r.median_ns, r.p90_ns, r.p99_ns, r.min_ns, r.max_ns)))
    console.print(t)
    ls = corr.loss_summary()
    if len(ls):
        t = Table(title="packets missing at the next point")
        for c in ("seen at", "missing at", "lost", "seen"):
            t.add_column(c)
        for r in ls.itertuples(index=False):
            t.add_row(str(r.point), str(r.missing_at), f"{r.lost:,}", f"{r.seen_at_point:,}")
        console.print(t)
    for note in corr.notes:
        console.print(f"note: {note}")


@app.command("merge")
def merge_cmd(
    source: str = typer.Argument(None, help="manifest.json or a directory holding one (optional with --point)."),
    output: str = typer.Option(..., "-o", "--output", help="pcapng file to write."),
    point: list[str] = typer.Option([], "--point", help="Capture point NODE:IFACE=FILE (repeatable)."),  # noqa: B008
    dedup: bool = typer.Option(False, "--dedup", help="Write each packet once; its other sightings become packet comments."),
    reference: str = typer.Option(None, "--reference", help="Node whose clock the others are corrected to (default: the first)."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let the manifest name files outside its own directory (only for manifests you trust)."),
) -> None:
    """Merge all capture points into one pcapng on one clock: one interface per point, packets in corrected time order.

    Example: pcaptools merge sample_pcaps/calico-vxlan -o merged.pcapng --dedup
    """
    from pcaptools.correlate import CaptureSet
    from pcaptools.correlate.api import correlate
    from pcaptools.correlate.merge import merge

    with _busy([x for x in [source, *(q.rpartition("=")[2] for q in point)] if x], "merging"):
        cs = CaptureSet.load(source, points=point, allow_outside=allow_outside)
        n = merge(cs, output, correlation=correlate(cs, reference=reference), dedup=dedup)
    print(f"wrote {n:,} packets from {len(cs.points)} capture points to {output}")


lab_app = typer.Typer(help="The emulated Kubernetes data-plane lab (network namespaces, kube-proxy NAT, tcpdump).",
                      no_args_is_help=True)
app.add_typer(lab_app, name="lab")


@lab_app.command("run")
def lab_run_cmd(
    out: str = typer.Option(..., "--out", help="Directory for manifest.json, inventory.json, truth.json, pcaps."),
    cni: str = typer.Option("vpc", "--cni", help="CNI to emulate: vpc or calico-vxlan."),
    nodes: int = typer.Option(3, "--nodes", help="Number of nodes (2-20)."),
    any_capture: bool = typer.Option(False, "--any", help="Also capture '-i any' (LINUX_SLL2) on every node."),
    nano: bool = typer.Option(False, "--nano", help="Nanosecond timestamps (--time-stamp-precision=nano)."),
    connections: int = typer.Option(16, "--connections", help="Client connections (cycling through 8 kinds)."),
    seed: int = typer.Option(1, "--seed", help="Seed for the clients' choices."),
    prefix: str = typer.Option("ptlab-", "--prefix", help="Namespace name prefix of this run."),
) -> None:
    """Build a cluster in network namespaces, drive traffic, capture it, write manifest/inventory/truth.

    Needs root. Example: pcaptools lab run --cni calico-vxlan --out sample_pcaps/calico-vxlan
    """
    from pcaptools.errors import LabError
    from pcaptools.lab import run_lab

    try:
        path = run_lab(out, cni=cni, nodes=nodes, any_capture=any_capture, nano=nano, connections=connections,
                       seed=seed, prefix=prefix)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: run_lab has already removed its namespaces
        raise LabError(f"lab run interrupted ({exc or 'Ctrl-C'}); its {prefix}* namespaces were removed") from exc
    print(path)


@lab_app.command("clean")
def lab_clean_cmd(
    prefix: str = typer.Option("ptlab-", "--prefix", help="Namespace name prefix to remove."),
) -> None:
    """Remove the namespaces (and their processes) a crashed lab run left behind.

    Example: pcaptools lab clean --prefix ptlab-
    """
    from pcaptools.lab import clean

    for name in clean(prefix):
        print(f"removed {name}")


@app.command("info")
def info_cmd(
    files: list[str] = typer.Argument(..., help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per file."),
) -> None:
    """Format, interfaces, record count, time span and skipped records of each capture.

    Example: pcaptools info node1.pcapng node2.pcap.gz --json
    """
    import json
    import os
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from pcaptools.io import summarize

    out = []
    for f in files:
        if os.path.getsize(f) <= 50 << 20:
            out.append(summarize(f))
            continue
        columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(os.path.basename(f), total=None)
            out.append(
                summarize(f, progress=lambda done, total, t=task: bar.update(t, completed=done, total=total))
            )
    if as_json:
        print(json.dumps(out, indent=2))
        return

    def _t(ns: int) -> str:
        return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 10**9:09d}"

    console = _console()
    for s in out:
        gz = f", {s['compression']}" if s["compression"] else ""
        t = Table(title=f"{s['path']}  ({s['format']}{gz})", show_header=False)
        t.add_column("field", style="bold")
        t.add_column("value")
        t.add_row("records", f"{s['records']:,}")
        span = "-"
        if s["first_ts_ns"] is not None:
            span = f"{_t(s['first_ts_ns'])} .. {_t(s['last_ts_ns'])} UTC ({s['duration_ns'] / 1e9:.6f} s)"
        t.add_row("time", span)
        t.add_row("bytes", f"{s['captured_bytes']:,} captured, {s['wire_bytes']:,} on the wire")
        for i in s["interfaces"]:
            label = " ".join(x for x in (i["name"], f"({i['description']})" if i["description"] else "") if x)
            desc = f"{i['link_type']} snaplen {i['snaplen']} {label}".rstrip()
            t.add_row(f"interface {i['id']}", f"{desc}, {i['records']:,} records")
        t.add_row("skipped", ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "none")
        if s["stopped_at"]:
            where = s["stopped_at"].get("compressed_offset")
            where = f" (compressed byte {where:,})" if where is not None else ""
            t.add_row("stopped", f"{s['stopped_at']['reason']} at byte {s['stopped_at']['offset']:,}{where}")
        console.print(t)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one actionable line and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, standalone_mode=False)
    except PcapError as exc:
        if debug:
            raise
        print(f"pcaptools: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable file, a name too long, a full disk: one line, no traceback
        if debug:
            raise
        print(f"pcaptools: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pcaptools: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click --help and usage errors
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except Exception as exc:  # click usage errors carry their own message
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
