"""The ``pcaptools`` command: parse arguments, call one library function, render. No logic here.

Each command is one self-contained block below (``@app.command`` + its function); rendering lives in
:mod:`pcaptools.render` (``terminal`` for people, ``records`` for ``--json``). Options are checked
where they are parsed (callbacks below): a bad value is a usage error, exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from pathlib import Path

import typer

from pcaptools.errors import PcapError

app = typer.Typer(
    name="pcaptools",
    help="Where did my packet go? Decode, correlate and compare Kubernetes node captures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors.")) -> None:
    _state["debug"] = debug


# --- shared option checks (typer callbacks: a bad value becomes a usage error, exit 2) ----------------
_NS_PER = {"milliseconds": 1e6, "seconds": 1e9}  # durations are used as int64 nanoseconds
_MAX_NS = 2**62  # about 146 years: any longer duration would overflow the int64 nanoseconds it becomes


def _positive(unit: str, *, allow_none: bool = False):
    """Callback: a finite number > 0 (``nan``, ``inf``, 0 and negatives are refused); a duration (milliseconds,
    seconds) must also be at least 1 ns and fit int64 nanoseconds (1e300 seconds would overflow, 1e-300 round to 0)."""

    def check(value: float | None) -> float | None:
        if value is None and allow_none:
            return value
        if value is None or not math.isfinite(value) or value <= 0:
            raise typer.BadParameter(f"expected a positive finite number of {unit}, found {value}")
        scale = _NS_PER.get(unit)
        if scale is not None and not 1 <= value * scale <= _MAX_NS:
            raise typer.BadParameter(f"expected a duration from 1 ns to {_MAX_NS / scale:.4g} {unit} (about 146 years), "
                                     f"found {value:g} {unit}")  # fmt: skip
        return value

    return check


def _port(values: list[int]) -> list[int]:
    bad = [v for v in values if not 1 <= v <= 65535]
    if bad:
        raise typer.BadParameter(f"expected UDP ports 1-65535, found {bad[0]}")
    return values


def _output(*suffixes: str, example: str, optional: bool = True):
    """Callback: an output file name with one of ``suffixes`` in a directory that exists."""

    def check(value: str | None) -> str | None:
        if value is None and optional:
            return value
        if not str(value).endswith(suffixes):
            raise typer.BadParameter(f"expected a {' or '.join(suffixes)} file name, found {value!r}; try -o {example}")
        parent = Path(value).parent
        if not parent.is_dir():
            raise typer.BadParameter(f"directory {str(parent)!r} does not exist; create it first or write elsewhere")
        return value

    return check


def _one_of(*choices: str):
    """Callback: one of ``choices`` (None passes: the option's default is decided later)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"expected one of {', '.join(choices)}, found {value!r}")
        return value

    return check


def _memory(value: str | None) -> int | None:
    """Callback: a memory cap such as 512MiB, 2GiB or 1.5G (see :mod:`pcaptools.units`), in bytes."""
    if value is None:
        return None
    from pcaptools.units import MIN_MEMORY, parse_bytes

    try:
        return parse_bytes(value, minimum=MIN_MEMORY)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


_MEMORY_HELP = "Bound memory to about this much (512MiB, 2GiB, 1.5G): the input is read in windows, same output."


def _existing_dir_parent(value: str | None) -> str | None:
    if value is not None and not Path(value).parent.is_dir():
        raise typer.BadParameter(f"directory {str(Path(value).parent)!r} does not exist; create it first or write elsewhere")
    return value


_BUSY_BYTES = 50 << 20  # inputs this large take over a second: show that work is under way


def _input_bytes(paths: list[str]) -> int:
    """Total size of the files, or of the files under directories, named on the command line."""
    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


def _busy(paths: list[str], what: str):
    """A transient spinner with elapsed time on stderr while a large input is worked on, where rich shows one (a
    terminal, or a stream rich is told to treat as one): elsewhere a transient spinner prints nothing, and its
    progress module, live display and refresh thread cost ~15 ms of a command."""
    import contextlib

    size = _input_bytes(paths)
    if size < _BUSY_BYTES:
        return contextlib.nullcontext()
    from rich.console import Console

    con = Console(stderr=True)
    if not (con.is_terminal or con.is_jupyter):
        return contextlib.nullcontext()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn(f"{what} {size / 1e6:,.0f} MB"), TimeElapsedColumn(),
                   console=con, transient=True)
    bar.add_task(what, total=None)
    return bar


def _console():
    from pcaptools.render.terminal import console

    return console()


def _print_json(doc: dict) -> None:
    from pcaptools.render.records import dumps

    print(dumps(doc))


def _print_json_items(doc: dict, key: str, items) -> None:
    """:func:`_print_json` of ``doc`` with ``doc[key]`` the list of ``items``, printed an item at a time (a long list
    is never held as a whole, nor as text). If an item fails, what was printed stays unclosed (invalid JSON) and the
    exit code says the run failed."""
    from pcaptools.render.records import write_document

    write_document(doc, key, items, sys.stdout.write)
    sys.stdout.write("\n")


_WINDOW_HELP = "Max time between sightings of one packet after clock correction (milliseconds, > 0)."


def _inferred(cs) -> None:
    """What was inferred about capture points of plain files (one line) and each doubt, on stderr."""
    from pcaptools.k8s.discover import summary_lines
    from pcaptools.render.terminal import safe

    for line in summary_lines(cs):
        print(f"pcaptools: {safe(line)}", file=sys.stderr)


def _skipped(skipped: list[dict]) -> list[dict]:
    """Say on stderr each capture a result left out (its ``skipped_files``: found by walking an input directory and
    unreadable); the list, ``--json``'s ``skipped_files``."""
    from pcaptools.render.terminal import safe

    for s in skipped:
        print(f"pcaptools: skipped {safe(s['path'])} ({s['reason']}), the other captures are analysed: {safe(s['detail'])}",
              file=sys.stderr)  # fmt: skip
    return skipped


_INPUTS = "Capture files, directories of them (NODE/IFACE.pcap, NODE.pcap + NODE.links.json) or a manifest.json / directory holding one."
_LINKS = "`ip -j link` output of a node for its -i any capture: NODE.links.json or NODE=FILE (repeatable; default: beside the capture)."
_SCHEDULER = "Run on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:8786); needs pip install 'pcaptools[dask]'."
_WORKERS = "Run on a local Dask cluster of N worker processes (1 or more); needs pip install 'pcaptools[dask]'."


def _one_cluster(other: str):
    """Callback: --scheduler and --workers exclude each other (whichever is parsed second says so)."""

    def check(ctx: typer.Context, value):
        if value is not None and ctx.params.get(other) is not None:
            raise typer.BadParameter("give --scheduler ADDRESS or --workers N, not both")
        return value

    return check


def _in_process_only(memory: int | None, scheduler: str | None, workers: int | None) -> None:
    """--memory bounds this process: with a Dask cluster it would mean nothing, so the two are refused together."""
    if memory is not None and (scheduler is not None or workers is not None):
        raise typer.BadParameter("--memory bounds one process; on Dask give --scheduler/--workers without it", param_hint="--memory")


def _cluster(scheduler: str | None, workers: int | None):
    """The Dask client of --scheduler/--workers (closed on exit), or None when neither is given: run in this process."""
    import contextlib

    if scheduler is None and workers is None:
        return contextlib.nullcontext()
    from pcaptools.dask.cluster import connect

    return connect(scheduler, workers=workers)

# the options `paths` and `why` share, defined once: both commands load, correlate and name captures the same way
_PATHS_INVENTORY = typer.Option(None, "--inventory", metavar="FILE", help="kubectl get nodes,pods,services,endpointslices -A -o json output (default: the manifest's inventory, else inventory.json beside the inputs).")
_PATHS_POINT = typer.Option([], "--point", metavar="NODE:IFACE=FILE", help="Capture point (repeatable; wins over inference).")
_PATHS_LINKS = typer.Option([], "--links", metavar="FILE", help=_LINKS)
_PATHS_IPTABLES = typer.Option([], "--iptables", metavar="NODE=FILE", help="iptables-save output of a node; names the kube-proxy chains behind each translation (repeatable).")
_PATHS_WINDOW = typer.Option(2000.0, "--window-ms", metavar="MS", callback=_positive("milliseconds"), help=_WINDOW_HELP)
_BUDGET = typer.Option(None, "--memory", metavar="SIZE", callback=_memory, help="Memory budget, e.g. 512MiB, 2GiB, 1.5G (default: a quarter of the available memory); captures (or a dataset) larger than it are read in windows of corrected time.")
_PATHS_BUDGET = typer.Option(None, "--memory", metavar="SIZE", callback=_memory, help="Memory budget, e.g. 512MiB, 2GiB, 1.5G (default: a quarter of the available memory); captures (or a dataset) larger than it are read in windows of corrected time, and the paths built and diagnosed a bucket of whole connections at a time: the same output.")
_PATHS_ALLOW_OUTSIDE = typer.Option(False, "--allow-outside", help="Let a manifest name files outside its own directory (only for manifests you trust).")


# Commands are registered below, one block per command, each calling one library function.
# --- commands ---


@app.command("compare")
def compare_cmd(
    sources: list[str] = typer.Argument(..., metavar="DIR", help="Capture-set directories (a manifest.json, or plain captures whose points are inferred); the directory name labels the column."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print summary and detail tables as JSON (null = not measurable)."),
    figures: str = typer.Option(None, "--figures", metavar="DIR", help="Write the comparison figures as PNGs into this directory."),
    out: str = typer.Option(None, "-o", "--output", metavar="FILE", callback=_output(".csv", ".parquet", example="summary.csv"), help="Write the summary table (metric x capture set) to FILE.csv or FILE.parquet."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let a manifest name files outside its own directory (only for manifests you trust)."),
    memory: str = _BUDGET,
) -> None:
    """Compare CNI data planes: overlay mode, encapsulation overhead, MTU/MSS, fragmentation, hops and latency.

    Example: pcaptools compare sample_pcaps/vpc sample_pcaps/calico-vxlan --figures figures/ -o summary.csv

    Example: pcaptools compare sample_pcaps/vpc sample_pcaps/calico-vxlan --json

    Example: pcaptools compare big-vpc/ big-calico/ --memory 2GiB --json
    """
    from pcaptools.compare import compare
    from pcaptools.correlate.budget import default_memory

    with _busy(list(sources), "comparing"):
        cmp = compare(sources, allow_outside=allow_outside, memory=default_memory() if memory is None else memory)
    _skipped([f for lab in cmp.labels for f in cmp.skipped_files.get(lab, [])])
    if out:
        from pcaptools.render.records import write_table_parts

        write_table_parts([cmp.summary], out)
    written = []
    if figures:
        from pcaptools.render.figures import save_figures

        written = save_figures(cmp, figures)
    if as_json:
        from pcaptools.render.records import comparison_document

        _print_json(comparison_document(cmp))
        return
    from pcaptools.render.terminal import print_comparison, safe

    con = _console()
    print_comparison(cmp, con)
    for path in written:
        con.print(f"figure written to {safe(path)}")
    if out:
        con.print(f"summary ({len(cmp.summary)} metrics) written to {safe(out)}")


@app.command("paths")
def paths_cmd(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, metavar="INPUT", help=_INPUTS),  # noqa: B008
    inventory: str = _PATHS_INVENTORY,
    point: list[str] = _PATHS_POINT,
    links: list[str] = _PATHS_LINKS,
    iptables: list[str] = _PATHS_IPTABLES,
    as_json: bool = typer.Option(False, "--json", help="Print the paths as JSON: one object per connection, NAT steps and hops as objects."),
    out: str = typer.Option(None, "-o", "--output", metavar="FILE", callback=_output(".parquet", ".csv", example="paths.parquet"), help="Write the path table to FILE.csv or FILE.parquet."),
    brief: bool = typer.Option(False, "--brief", help="Only the summary, no per-connection route."),
    all_connections: bool = typer.Option(False, "--all", help="List each connection (default: more than 50 are grouped by route, the first of each shown)."),
    window_ms: float = _PATHS_WINDOW,
    allow_outside: bool = _PATHS_ALLOW_OUTSIDE,
    memory: str = _PATHS_BUDGET,
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDRESS", callback=_one_cluster("workers"), help=_SCHEDULER),
    workers: int = typer.Option(None, "--workers", metavar="N", min=1, callback=_one_cluster("scheduler"), help=_WORKERS),
) -> None:
    """Pod and service paths per connection: client, service, NAT steps and the nodes that applied them, tunnels, backend.

    Example: pcaptools paths sample_pcaps/calico-vxlan

    Example: pcaptools paths captures/ --inventory inventory.json -o paths.parquet --json

    Example: pcaptools paths node-a.pcap node-b-any.pcapng --links node-b.links.json

    Example: pcaptools paths captures/ --iptables node-1=node-1/iptables-save.txt

    Example: pcaptools paths big-set/manifest.json --memory 2GiB -o paths.parquet

    Example: pcaptools paths big-set/manifest.json --memory 2GiB --json
    """
    from pcaptools.k8s.discover import manifest_drops
    from pcaptools.k8s.iptables import explain
    from pcaptools.k8s.iptables import load as load_iptables
    from pcaptools.k8s.paths_stream import diagnose_bounded, load_paths_bounded

    if as_json and (scheduler or workers):
        raise typer.BadParameter("--json is not available on Dask yet (its diagnosis reads every packet in one process); "
                                 "drop --json or --scheduler/--workers", ctx=ctx, param_hint="--json")  # fmt: skip
    _in_process_only(memory, scheduler, workers)
    rules = [load_iptables(spec) for spec in iptables]  # a bad file fails before the captures are read
    d = None
    with _busy([*(sources or []), *(q.rpartition("=")[2] for q in point)], "correlating"), _cluster(scheduler, workers) as dask:
        if dask is None:
            given = {"points": point, "links": links, "inventory": inventory, "allow_outside": allow_outside,
                     "window_ns": int(window_ms * 1e6), "memory": memory}  # fmt: skip
            if as_json:  # with the diagnosis of each connection
                ps, d = diagnose_bounded(sources or [], capture_drops=manifest_drops(sources or []), **given)
            else:
                ps = load_paths_bounded(sources or [], **given)
        else:
            from pcaptools.dask.paths import load_paths as dask_paths

            ps = dask_paths(sources or [], points=point, inventory=inventory, allow_outside=allow_outside, window_ns=int(window_ms * 1e6))
    try:
        # the rules of the NAT steps printed, explained a part (a streamed run's bucket) at a time: not the whole table
        _print_paths(ps, d, out, as_json=as_json, brief=brief, nat_rules=functools.partial(explain, rulesets=rules) if rules else None,
                     all_connections=all_connections)  # fmt: skip
    finally:
        ps.close()  # a streamed run's spilled output (its diagnosis' too)


def _print_paths(ps, d, out: str | None, *, as_json: bool, brief: bool, nat_rules, all_connections: bool) -> None:
    """``paths``' output of a PathSet (and with ``--json`` its Diagnosis ``d``): the file ``out`` written from its
    parts (a streamed run's buckets one at a time), then the text or the JSON document (``nat_rules``: a function
    giving the rules of NAT rows, :func:`pcaptools.k8s.iptables.explain`)."""
    from pcaptools.render.records import write_table_parts

    if ps.captures is not None:
        _inferred(ps.captures)
    skipped = _skipped(ps.skipped_files)
    if out:
        write_table_parts((p for p, _, _ in ps.parts()), out)
    if as_json:
        from pcaptools.render.records import document, path_records

        items = (r for p, nat, hops in ps.parts()  # a streamed run's buckets one at a time
                 for r in path_records(p, nat, hops, diagnosis=d, nat_rules=nat_rules, columns=True))  # fmt: skip
        _print_json_items(document("paths", connections=ps.n_connections, skipped_files=skipped, paths=[]), "paths", items)
        return
    from pcaptools.render.terminal import fmt_int, print_paths, safe

    con = _console()
    print_paths(ps, con, brief=brief, nat_rules=nat_rules, all_connections=all_connections)
    if out:
        con.print(f"{fmt_int(ps.n_connections)} paths written to {safe(out)}")


@app.command("decode")
def decode_cmd(
    files: list[str] = typer.Argument(..., metavar="FILE", help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    out: str = typer.Option(..., "-o", "--output", metavar="FILE", callback=_output(".parquet", ".csv", example="packets.parquet", optional=False), help="Write the packet table to FILE.parquet or FILE.csv."),
    vxlan_port: list[int] = typer.Option([], "--vxlan-port", metavar="PORT", callback=_port, help="Extra UDP port carrying VXLAN (repeatable; 4789 and 8472 always)."),  # noqa: B008
    geneve_port: list[int] = typer.Option([], "--geneve-port", metavar="PORT", callback=_port, help="Extra UDP port carrying Geneve (repeatable; 6081 always)."),  # noqa: B008
    wireguard_port: list[int] = typer.Option([], "--wireguard-port", metavar="PORT", callback=_port, help="Extra UDP port carrying WireGuard (repeatable; 51820/51821 always)."),  # noqa: B008
    max_tunnel_depth: int = typer.Option(4, "--max-tunnel-depth", metavar="N", min=0, max=16, help="Nested tunnels stripped at most."),
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDRESS", callback=_one_cluster("workers"), help=_SCHEDULER),
    workers: int = typer.Option(None, "--workers", metavar="N", min=1, callback=_one_cluster("scheduler"), help=_WORKERS),
    memory: str = typer.Option(None, "--memory", metavar="SIZE", callback=_memory, help=_MEMORY_HELP),
) -> None:
    """Decode captures into one packet table (inner and outer headers of tunnels, one row per record).

    Example: pcaptools decode node1.pcap node2.pcapng.gz -o packets.parquet --vxlan-port 4790

    Example: pcaptools decode captures/*.pcap -o packets.parquet --scheduler tcp://10.0.0.5:8786

    Example: pcaptools decode big.pcap -o packets.parquet --memory 2GiB
    """
    from pcaptools.decode import registry
    from pcaptools.render.terminal import fmt_int, safe

    options = {
        "vxlan_ports": tuple(dict.fromkeys((*registry.DEFAULT_VXLAN_PORTS, *vxlan_port))),
        "geneve_ports": tuple(dict.fromkeys((*registry.DEFAULT_GENEVE_PORTS, *geneve_port))),
        "wireguard_ports": tuple(dict.fromkeys((*registry.DEFAULT_WIREGUARD_PORTS, *wireguard_port))),
        "max_tunnel_depth": max_tunnel_depth,
    }
    _in_process_only(memory, scheduler, workers)
    with _busy(files, "decoding"), _cluster(scheduler, workers) as dask:
        if memory is not None and dask is None:
            from pcaptools.packet_file import write_packets

            done = write_packets(files, out, memory=memory, **options)
            rows, errors, skipped = done.packets, done.errors, sum(sum(v.values()) for v in done.skipped.values())
        else:
            if dask is not None:
                from pcaptools.dask.packets import collect_packets as read_packets
            else:
                from pcaptools.packets import read_packets

            df = read_packets(files, **options)
            df.to_parquet(out, index=False) if out.endswith(".parquet") else df.to_csv(out, index=False)
            rows, errors = len(df), int(df["error"].notna().sum())
            skipped = sum(sum(v.values()) for v in df.attrs.get("skipped", {}).values())
    _console().print(f"{fmt_int(rows)} packets from {len(files)} input(s) written to {safe(out)}; "
                     f"{fmt_int(errors)} with a decode error, {fmt_int(skipped)} records skipped by the reader")  # fmt: skip


@app.command("convert")
def convert_cmd(
    sources: list[str] = typer.Argument(None, metavar="INPUT", help=_INPUTS + " Optional with --point."),  # noqa: B008
    out: str = typer.Option(..., "-o", "--output", metavar="DIR", callback=_existing_dir_parent, help="Dataset directory to write (new or empty; see --overwrite)."),
    window_s: float = typer.Option(60.0, "--window-seconds", metavar="SECONDS", callback=_positive("seconds"), help="Time window of each partition (seconds, > 0)."),
    with_flows: bool = typer.Option(False, "--flows", help="Also write each capture file's flow table (DIR/flows/)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already at DIR (never another non-empty directory)."),
    point: list[str] = typer.Option([], "--point", metavar="NODE:IFACE=FILE", help="Capture point (repeatable; wins over inference)."),  # noqa: B008
    inventory: str = typer.Option(None, "--inventory", metavar="FILE", help="kubectl inventory JSON naming nodes and pods of plain captures (default: inventory.json beside the inputs); copied into the dataset."),
    links: list[str] = typer.Option([], "--links", metavar="FILE", help=_LINKS),  # noqa: B008
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let a manifest name files outside its own directory (only for manifests you trust)."),
) -> None:
    """Decode a capture set once into a Parquet dataset (packets per capture point and time window, points and evidence kept); paths, correlate, why, report, compare and flows read it instead of the captures.

    Example: pcaptools convert sample_pcaps/calico-vxlan -o calico.ds && pcaptools paths calico.ds

    Example: pcaptools convert captures/ --inventory inventory.json -o captures.ds --flows
    """
    from pcaptools.convert import convert
    from pcaptools.dataset import read_meta
    from pcaptools.render.terminal import fmt_int, safe

    sources = list(sources or [])
    with _busy([*sources, *(q.rpartition("=")[2] for q in point)], "converting"):
        path = convert(sources, out, points=point, inventory=inventory, links=links, window_ns=int(window_s * 1e9),
                       flows=with_flows, overwrite=overwrite, allow_outside=allow_outside)
    meta = read_meta(path)
    _skipped(meta.get("skipped_files") or [])
    rows = sum(f["rows"] for f in meta["files"])
    skipped = sum(sum(f["skipped"].values()) for f in meta["files"])
    _console().print(f"{fmt_int(rows)} packets of {len(meta['points'])} capture points from {len(meta['files'])} file(s) "
                     f"written to {safe(str(path))}; {fmt_int(skipped)} records skipped by the reader")  # fmt: skip


@app.command("show")
def show_cmd(
    file: str = typer.Argument(..., metavar="FILE", help="Capture file."),
    record: int = typer.Argument(..., metavar="RECORD", min=0, help="0-based record number (tshark's frame number minus 1)."),
    vxlan_port: list[int] = typer.Option([], "--vxlan-port", metavar="PORT", callback=_port, help="Extra UDP port carrying VXLAN (repeatable)."),  # noqa: B008
    geneve_port: list[int] = typer.Option([], "--geneve-port", metavar="PORT", callback=_port, help="Extra UDP port carrying Geneve (repeatable)."),  # noqa: B008
) -> None:
    """Scapy's full dissection of one packet beside our decoded row (its non-empty columns).

    Example: pcaptools show node1.pcap 41 --vxlan-port 4790
    """
    from pcaptools.decode import registry
    from pcaptools.render.terminal import print_packet
    from pcaptools.show import non_empty, show_packet

    text, row = show_packet(
        file,
        record,
        vxlan_ports=tuple(dict.fromkeys((*registry.DEFAULT_VXLAN_PORTS, *vxlan_port))),
        geneve_ports=tuple(dict.fromkeys((*registry.DEFAULT_GENEVE_PORTS, *geneve_port))),
    )
    print_packet(file, record, text, non_empty(row), _console())


@app.command("flows")
def flows_cmd(
    files: list[str] = typer.Argument(..., metavar="FILE", help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    out: str = typer.Option(None, "-o", "--output", metavar="FILE", callback=_output(".parquet", ".csv", example="flows.parquet"), help="Write the flow table to FILE.parquet or FILE.csv."),
    as_json: bool = typer.Option(False, "--json", help="Print the flows as JSON, one object per flow."),
    idle_timeout: float = typer.Option(None, "--idle-timeout", metavar="SECONDS", callback=_positive("seconds", allow_none=True), help="Seconds of inactivity that end a flow (default: Zeek's, TCP 300, others 60)."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, max=0xFFFF, help="Community ID seed (0-65535); both sides of a comparison must use the same."),
    limit: int = typer.Option(20, "--limit", metavar="N", min=1, help="Rows shown in the terminal table (largest flows first)."),
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDRESS", callback=_one_cluster("workers"), help=_SCHEDULER),
    workers: int = typer.Option(None, "--workers", metavar="N", min=1, callback=_one_cluster("scheduler"), help=_WORKERS),
    memory: str = typer.Option(None, "--memory", metavar="SIZE", callback=_memory, help=_MEMORY_HELP),
) -> None:
    """Bidirectional flows (Zeek conn.log-like) with Community ID, per capture file.

    Example: pcaptools flows node1.pcap.gz node2.pcapng -o flows.parquet

    Example: pcaptools flows capture.pcap --json --seed 1

    Example: pcaptools flows node*.pcap --workers 4 -o flows.parquet

    Example: pcaptools flows big.pcap --memory 2GiB -o flows.parquet
    """
    from pcaptools.flows import read_flows

    _in_process_only(memory, scheduler, workers)
    with _busy(files, "decoding"), _cluster(scheduler, workers) as dask:
        if dask is not None:
            from pcaptools.dask.flows import read_flows as dask_flows

            fl = dask_flows(files, idle_timeout_s=idle_timeout, seed=seed)
        else:
            fl = read_flows(files, idle_timeout_s=idle_timeout, seed=seed, memory=memory)
    from pcaptools.fmt import reader_notes
    from pcaptools.render.terminal import safe

    for note in reader_notes(fl.attrs.get("skipped") or {}):  # flows of records no table holds cannot be counted
        print(f"pcaptools: note: {safe(note)}", file=sys.stderr)
    if out:
        fl.to_parquet(out, index=False) if out.endswith(".parquet") else fl.to_csv(out, index=False)
    if as_json:
        from pcaptools.render.records import flows_document

        _print_json(flows_document(fl))
        return
    from pcaptools.render.terminal import fmt_int, print_flows

    if out:
        _console().print(f"{fmt_int(len(fl))} flows written to {safe(out)}")
        return
    print_flows(fl, _console(), limit=limit)


@app.command("correlate")
def correlate_cmd(
    sources: list[str] = typer.Argument(None, metavar="INPUT", help=_INPUTS + " Optional with --point."),  # noqa: B008
    point: list[str] = typer.Option([], "--point", metavar="NODE:IFACE=FILE", help="Capture point (repeatable; a bare FILE gets node=its stem; wins over inference)."),  # noqa: B008
    inventory: str = typer.Option(None, "--inventory", metavar="FILE", help="kubectl inventory JSON naming nodes and pods of plain captures (default: inventory.json beside the inputs)."),
    links: list[str] = typer.Option([], "--links", metavar="FILE", help=_LINKS),  # noqa: B008
    window_ms: float = typer.Option(2000.0, "--window-ms", metavar="MS", callback=_positive("milliseconds"), help=_WINDOW_HELP),
    reference: str = typer.Option(None, "--reference", metavar="NODE", help="Node whose clock the others are corrected to (default: the first node of the largest group tied by two-way traffic; usually the first)."),
    as_json: bool = typer.Option(False, "--json", help="Print clock offsets, journeys, matches per point, hop latency and losses as JSON."),
    out: str = typer.Option(None, "-o", "--output", metavar="FILE", callback=_output(".parquet", example="hops.parquet"), help="Write the hops table (one row per packet per capture point) to this .parquet file."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let a manifest name files outside its own directory (only for manifests you trust)."),
    memory: str = _BUDGET,
    scheduler: str = typer.Option(None, "--scheduler", metavar="ADDRESS", callback=_one_cluster("workers"), help=_SCHEDULER),
    workers: int = typer.Option(None, "--workers", metavar="N", min=1, callback=_one_cluster("scheduler"), help=_WORKERS),
) -> None:
    """Find each packet at every capture point (through NAT and tunnels), estimate clock offsets, per-hop latency and loss.

    Example: pcaptools correlate sample_pcaps/calico-vxlan --json -o hops.parquet

    Example: pcaptools correlate --point node-1:eth0=n1.pcap --point node-2:eth0=n2.pcap

    Example: pcaptools correlate big-set/manifest.json --memory 2GiB -o hops.parquet

    Example: pcaptools correlate captures/manifest.json --scheduler tcp://10.0.0.5:8786 -o hops.parquet
    """
    from pcaptools.k8s.discover import correlate_inputs, find_inventory

    sources = list(sources or [])
    _in_process_only(memory, scheduler, workers)
    with _busy([*sources, *(q.rpartition("=")[2] for q in point)], "correlating"), _cluster(scheduler, workers) as dask:
        if dask is None:
            corr, cs = correlate_inputs(sources, points=point, inventory=inventory or find_inventory(sources, allow_outside=allow_outside),
                                        links=links, allow_outside=allow_outside, window_ns=int(window_ms * 1e6), reference=reference,
                                        memory=memory, out=out)  # fmt: skip
            if cs is not None:
                _inferred(cs)
        else:
            from pcaptools.correlate.stream import write_hops
            from pcaptools.dask.correlation import correlate_captures

            corr = correlate_captures(sources, points=point, window_ns=int(window_ms * 1e6), reference=reference,
                                      allow_outside=allow_outside)  # fmt: skip
            if out:
                write_hops([corr.hops], out)
    skipped = _skipped(corr.skipped_files)
    if as_json:
        from pcaptools.render.records import correlation_document

        _print_json(correlation_document(corr, skipped_files=skipped))
        return
    from pcaptools.render.terminal import print_correlation

    print_correlation(corr, _console())


@app.command("merge")
def merge_cmd(
    sources: list[str] = typer.Argument(None, metavar="INPUT", help=_INPUTS + " Optional with --point."),  # noqa: B008
    output: str = typer.Option(..., "-o", "--output", metavar="FILE", callback=_existing_dir_parent, help="pcapng file to write."),
    point: list[str] = typer.Option([], "--point", metavar="NODE:IFACE=FILE", help="Capture point (repeatable; wins over inference)."),  # noqa: B008
    inventory: str = typer.Option(None, "--inventory", metavar="FILE", help="kubectl inventory JSON naming nodes and pods of plain captures (default: inventory.json beside the inputs)."),
    links: list[str] = typer.Option([], "--links", metavar="FILE", help=_LINKS),  # noqa: B008
    dedup: bool = typer.Option(False, "--dedup", help="Write each packet once; its other sightings become packet comments."),
    reference: str = typer.Option(None, "--reference", metavar="NODE", help="Node whose clock the others are corrected to (default: the first node of the largest group tied by two-way traffic; usually the first)."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Let a manifest name files outside its own directory (only for manifests you trust)."),
    memory: str = typer.Option(None, "--memory", metavar="SIZE", callback=_memory, help="Memory budget, e.g. 512MiB, 2GiB, 1.5G (default: a quarter of the available memory): the capture files are read in windows, and correlated in windows when larger than it; the same file."),
) -> None:
    """Merge all capture points into one pcapng on one clock: one interface per point, packets in corrected time order.

    Example: pcaptools merge sample_pcaps/calico-vxlan -o merged.pcapng --dedup
    """
    from pcaptools.correlate.budget import default_memory
    from pcaptools.k8s.discover import merge_inputs
    from pcaptools.render.terminal import fmt_int, safe

    with _busy([*(sources or []), *(q.rpartition("=")[2] for q in point)], "merging"):
        done = merge_inputs(list(sources or []), output, points=point, inventory=inventory, links=links, dedup=dedup,
                            reference=reference, allow_outside=allow_outside,
                            memory=default_memory() if memory is None else memory)  # fmt: skip
    if done.captures is not None:
        _inferred(done.captures)
    for note in done.notes:  # files left out (done.skipped_files), records a reader skipped: not in the merged file either
        print(f"pcaptools: note: {safe(note)}", file=sys.stderr)
    _console().print(f"wrote {fmt_int(done.packets)} packets from {done.points} capture points to {safe(output)}")


@app.command("manifest")
def manifest_cmd(
    sources: list[str] = typer.Argument(None, help=_INPUTS),  # noqa: B008
    inventory: str = typer.Option(None, "--inventory", help="kubectl get nodes,pods,services,endpointslices -A -o json output (default: inventory.json beside the inputs)."),
    point: list[str] = typer.Option([], "--point", help="Capture point NODE:IFACE=FILE (repeatable; wins over inference)."),  # noqa: B008
    links: list[str] = typer.Option([], "--links", help=_LINKS),  # noqa: B008
    out: str = typer.Option(None, "-o", "--output", callback=_existing_dir_parent, help="Write the inferred capture set as a manifest.json to review, edit and pass back."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest (with each field's evidence) as JSON."),
) -> None:
    """Infer each capture point's node, interface, role and pod from plain captures and show the evidence for every field.

    Example: pcaptools manifest captures/ --inventory inventory.json -o captures/manifest.json
    Example: pcaptools manifest node-a.pcap node-b.pcapng --json
    """
    import json
    import os

    from rich.markup import escape
    from rich.table import Table

    from pcaptools.k8s.discover import find_inventory, load_captures, manifest_doc

    sources = list(sources or [])
    cs = load_captures(sources, points=point, inventory=inventory or find_inventory(sources), links=links)
    _skipped(cs.skipped_files)
    doc = manifest_doc(cs, os.path.dirname(os.path.abspath(out)) if out else ".")
    if out:
        with open(out, "w") as f:
            f.write(json.dumps(doc, indent=1) + "\n")
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    ev = cs.inference
    t = Table(title=f"{len(cs.points)} capture points (evidence per field)")
    for c in ("point", "file", "node", "interface", "role", "pod"):
        t.add_column(c)
    for r in ev.itertuples(index=False):
        cell = lambda v, e: escape(f"{v}\n[{e}]" if e else str(v))  # noqa: E731
        f = os.path.relpath(r.file) + (f" #{r.pcapng_interface}" if r.pcapng_interface >= 0 else "") + (f" ifindex {r.ifindex}" if r.ifindex >= 0 else "")
        t.add_row(escape(r.point), escape(f), cell(r.node, r.node_from), cell(r.interface, r.interface_from),
                  cell(r.role, r.role_from), cell(r.pod, r.pod_from))  # fmt: skip
    console = _console()
    console.print(t)
    for w in ev.attrs.get("warnings", []):
        console.print(f"warning: {escape(w)}")
    if out:
        print(f"manifest with {len(doc['captures'])} captures written to {out}; review it, then pass it to paths/correlate/compare")


lab_app = typer.Typer(help="The emulated Kubernetes data-plane lab (network namespaces, kube-proxy NAT, tcpdump).",
                      no_args_is_help=True)
app.add_typer(lab_app, name="lab")


@lab_app.command("run")
def lab_run_cmd(
    out: str = typer.Option(..., "--out", help="Directory for manifest.json, inventory.json, truth.json, pcaps."),
    cni: str = typer.Option("vpc", "--cni", help="CNI to emulate: vpc or calico-vxlan."),
    nodes: int = typer.Option(3, "--nodes", min=2, max=20, help="Number of nodes (2-20)."),
    any_capture: bool = typer.Option(False, "--any", help="Also capture '-i any' (LINUX_SLL2) on every node."),
    nano: bool = typer.Option(False, "--nano", help="Nanosecond timestamps (--time-stamp-precision=nano)."),
    connections: int = typer.Option(16, "--connections", min=1, max=10_000, help="Client connections (cycling through 8 kinds; 1-10000)."),
    seed: int = typer.Option(1, "--seed", help="Seed for the clients' choices."),
    prefix: str = typer.Option("ptlab-", "--prefix", help="Namespace name prefix: 2-16 letters, digits, '-', '_'; "
                               "the run adds a unique id, so concurrent runs never collide."),
    ip_family: str = typer.Option("ipv4", "--ip-family", callback=_one_of("ipv4", "ipv6", "dual"), help="Address family of pods, services and connections: ipv4, ipv6 (ULA addresses chosen per run) or dual (every connection over both)."),
    underlay: str = typer.Option(None, "--underlay", callback=_one_of("ipv4", "ipv6"), help="Family of the VXLAN packets between nodes (calico-vxlan): ipv4 or ipv6; default: the first of --ip-family."),
    fault: list[str] = typer.Option([], "--fault", metavar="FAULT", help="Inject a fault on its own connection, recorded in truth.json (repeatable): policy-drop, no-endpoints, stale-endpoint, mtu-blackhole, mtu-icmp, asymmetric-return, conntrack-invalid, capture-drop; or add a scenario: hairpin, port-reuse, hostnetwork, hostnetwork-client, nodelocal-dns."),  # noqa: B008
) -> None:
    """Build a cluster in network namespaces, drive traffic, capture it, write manifest/inventory/truth.

    Needs root. Example: pcaptools lab run --cni calico-vxlan --out sample_pcaps/calico-vxlan
    Example: pcaptools lab run --cni calico-vxlan --out faulty/ --fault policy-drop --fault mtu-blackhole
    Example: pcaptools lab run --cni calico-vxlan --ip-family dual --underlay ipv6 --out v6/
    """
    from pcaptools.errors import LabError
    from pcaptools.lab import run_lab

    try:
        path = run_lab(out, cni=cni, nodes=nodes, any_capture=any_capture, nano=nano, connections=connections,
                       seed=seed, prefix=prefix, faults=fault, ip_family=ip_family, underlay=underlay)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP: run_lab has already removed its namespaces
        raise LabError(f"lab run interrupted: {exc or 'Ctrl-C'}") from exc
    print(path)


@lab_app.command("clean")
def lab_clean_cmd(
    prefix: str = typer.Option(None, "--prefix", help="Only runs under this prefix (default: every run)."),
) -> None:
    """Remove what lab runs whose process is gone left behind (as their registries list it), nothing else.

    Example: pcaptools lab clean --prefix ptlab-
    """
    from pcaptools.lab import clean

    done = clean(prefix)
    for name in done.removed:
        print(f"removed {name}")
    for run_id in done.live:
        print(f"left {run_id}: its lab run is still running")
    if not (done.removed or done.live or done.runs):
        print("no lab run left anything behind" + (f" under {prefix}" if prefix else ""))
    if done.unlisted:
        print(f"left {len(done.unlisted)} namespace(s) starting with {prefix} that no lab run registered: "
              + ", ".join(ascii(n) for n in done.unlisted))  # names anyone could choose: escaped


@app.command("info")
def info_cmd(
    files: list[str] = typer.Argument(..., metavar="FILE", help="Capture files (pcap, pcapng, gzip-compressed or not)."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object with one summary per file."),
) -> None:
    """Format, interfaces, record count, time span and skipped records of each capture.

    Example: pcaptools info node1.pcapng node2.pcap.gz --json
    """
    import os

    from pcaptools.io.summary import summarize

    out = []
    for f in files:
        if os.path.getsize(f) <= 50 << 20:
            out.append(summarize(f))
            continue
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True, markup=False), transient=True) as bar:
            task = bar.add_task(os.path.basename(f), total=None)
            out.append(summarize(f, progress=lambda done, total, t=task: bar.update(t, completed=done, total=total)))
    if as_json:
        from pcaptools.render.records import info_document

        _print_json(info_document(out))
        return
    from pcaptools.render.terminal import print_info

    print_info(out, _console())


@app.command("report")
def report_cmd(
    sources: list[str] = typer.Argument(..., metavar="DIR", help="Capture sets, as for 'pcaptools compare' (directories); several make a CNI comparison."),  # noqa: B008
    out: str = typer.Option(..., "-o", "--output", metavar="FILE", callback=_output(".html", ".htm", example="report.html", optional=False), help="The HTML file to write (self-contained: opens without network access)."),
    max_packets: int = typer.Option(10, "--max-packets", metavar="N", callback=_positive("packets"), help="Packets drawn per connection in its sequence diagram."),
    max_diagrams: int = typer.Option(200, "--max-diagrams", metavar="N", callback=_positive("connections"), help="Connections per set whose sequence diagram is drawn (the first ones); the others are listed without one."),
    memory: str = _BUDGET,
) -> None:
    """One HTML report: capture points, clocks, connections (with filters), a sequence diagram per connection, per-hop latency, losses; a CNI comparison when given several sets.

    Example: pcaptools report sample_pcaps/calico-vxlan -o report.html

    Example: pcaptools report sample_pcaps/vpc sample_pcaps/calico-vxlan -o comparison.html

    Example: pcaptools report big-set/ -o report.html --memory 2GiB
    """
    from pcaptools.correlate.budget import default_memory
    from pcaptools.render.terminal import safe
    from pcaptools.report import write_report

    with _busy(list(sources), "building the report on"):
        path = write_report(sources, out, max_packets=max_packets, max_diagrams=max_diagrams, memory=default_memory() if memory is None else memory,
                            on_skipped=_skipped)  # fmt: skip
    sets = f"{len(sources)} capture set{'s' if len(sources) > 1 else ''}"
    _console().print(f"report on {sets} written to {safe(path)} ({path.stat().st_size / 1e6:.1f} MB)")


# --- entry point ------------------------------------------------------------------------------------
def _command():
    """The click command behind ``app``, with flags shown as flags in --help (no ``<bool>``)."""
    cmd = typer.main.get_command(app)
    for c in _walk(cmd):
        if c.help:  # each "Example:" its own paragraph, so help never runs two examples together
            c.help = re.sub(r"\n[ \t]*Example:", "\n\nExample:", c.help)
        for p in c.params:
            if getattr(p, "is_flag", False) or getattr(p, "count", False):
                p.metavar = ""
            elif p.param_type_name == "argument":  # FILE... in usage and help, no <list[str]>
                name = (p.metavar or p.name.upper()) + ("..." if p.nargs != 1 else "")
                p._usage_display_name = lambda _n=name, _r=p.required: _n if _r else f"[{_n}]"
                p._rich_display_name = lambda _n=name: _n
                p.display_type_rich = lambda ctx: None
            elif p.metavar is None:  # --out OUT rather than --out <str>
                p.metavar = p.name.upper()
            _verbatim(p)
        c.get_help_option = lambda ctx, _get=c.get_help_option: _flag(_get(ctx))  # the implicit --help too
    return cmd


def _verbatim(param) -> None:
    """A str, list[str], flag, int or float parameter is taken as typed (a number when it is plainly written and in
    range): spares typer's pydantic TypeAdapter (0.1 s of imports); anything else goes to typer's own coercion."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "_runtime_param", 0) is not None or desc.annotation not in (str, list[str], bool, int, float):
        return  # another typer version, or a type that needs converting: typer's own coercion
    verbatim = _verbatim_class()
    if verbatim is not None:
        param._runtime_param = verbatim(parameter_info=desc.parameter_info, annotation=desc.annotation)


_PLAIN_NUMBER = {int: re.compile(r"-?(0|[1-9][0-9]*)"), float: re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")}
"""Numbers as typed that pydantic reads the same way as int() and float() do."""


@functools.cache
def _verbatim_class():
    """typer's coercion contract implemented as 'take the value as typed' (None if this typer has no such contract)."""
    try:
        from typer._coercion import RuntimeParam, build_runtime_param
    except ImportError:
        return None

    class Verbatim(RuntimeParam):
        def _coerce_value(self, value, param, ctx):
            kind = self.annotation
            if kind not in _PLAIN_NUMBER:
                return value if isinstance(value, (str, bool)) else list(value)
            x = None
            if type(value) is kind:
                x = value
            elif isinstance(value, str) and _PLAIN_NUMBER[kind].fullmatch(value):
                x = kind(value)
            lo, hi = self.parameter_info.min, self.parameter_info.max
            if x is not None and (lo is None or x >= lo) and (hi is None or x <= hi):
                return x
            # not plain, or out of range: typer's coercion, with its messages (this imports pydantic)
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

    return Verbatim


def _flag(opt):
    if opt is not None:
        opt.metavar = ""
        _verbatim(opt)
    return opt


def _walk(c):
    """A command and all its subcommands."""
    yield c
    for sub in (getattr(c, "commands", None) or {}).values():
        yield from _walk(sub)


def _usage_error(exc) -> int:
    """Usage line and the problem as one ``pcaptools:`` line; exit code 2 (--help text itself exits 0)."""
    from pcaptools.render.terminal import safe

    ctx = getattr(exc, "ctx", None)
    code = int(getattr(exc, "exit_code", 2) or 2)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as click does
        print(exc.format_message(), file=sys.stderr)
        return code
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
    msg = (exc.format_message() if hasattr(exc, "format_message") else str(exc)).rstrip(".")
    where = f"; try '{ctx.command_path} --help'" if ctx is not None else ""
    print(f"pcaptools: {safe(msg)}{where}", file=sys.stderr)
    return code


def _quiet_stdout() -> None:
    """After a closed pipe (``pcaptools ... | head``): send the rest of stdout to /dev/null so exit is quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


@app.command("warmup")
def warmup_cmd() -> None:
    """Compile the decoder and correlator once now (numba, about half a minute after an install), not on first use.

    Example: pip install pcaptools && pcaptools warmup
    """
    from pcaptools.warmup import warmup

    r = warmup()
    print(f"ready: decoder and correlator compiled or loaded from numba's cache in {r['seconds']:.1f} s")


@app.command("why")
def why_cmd(
    ctx: typer.Context,
    sources: list[str] = typer.Argument(None, metavar="INPUT", help=_INPUTS),  # noqa: B008
    inventory: str = _PATHS_INVENTORY,
    point: list[str] = _PATHS_POINT,
    links: list[str] = _PATHS_LINKS,
    iptables: list[str] = _PATHS_IPTABLES,
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON (schema: pcaptools/schemas/why.schema.json)."),
    all_connections: bool = typer.Option(False, "--all", help="List every connection, those with no loss too (default: the failed and degraded ones; more than 50 grouped by kind of loss)."),
    window_ms: float = _PATHS_WINDOW,
    allow_outside: bool = _PATHS_ALLOW_OUTSIDE,
    memory: str = _PATHS_BUDGET,
) -> None:
    """Where did the packets of each connection stop, per direction, and why: cause, confidence, evidence, retries.

    Example: pcaptools why captures/ --inventory inventory.json

    Example: pcaptools why sample_pcaps/calico-vxlan --json

    Example: pcaptools why captures/ --iptables node-1=node-1/iptables-save.txt --json

    Example: pcaptools why big-set/manifest.json --memory 2GiB --json
    """
    from pcaptools.k8s.discover import manifest_drops
    from pcaptools.k8s.iptables import load as load_iptables
    from pcaptools.k8s.paths_stream import diagnose_bounded

    rules = [load_iptables(spec) for spec in iptables]
    with _busy([*(sources or []), *(q.rpartition("=")[2] for q in point)], "correlating"):
        ps, d = diagnose_bounded(sources or [], points=point, links=links, inventory=inventory, allow_outside=allow_outside,
                                 window_ns=int(window_ms * 1e6), with_flows=False, memory=memory, iptables=rules,
                                 capture_drops=manifest_drops(sources or []))  # fmt: skip
    try:
        if ps.captures is not None:  # None: a manifest's streamed set, nothing inferred
            _inferred(ps.captures)
        skipped = _skipped(ps.skipped_files)
        if as_json:
            _print_json_items({**d.head(), "skipped_files": skipped}, "connections", d.records(columns=True))
            return
        from pcaptools.render.terminal import print_why

        print_why(d, _console(), all_connections=all_connections)
    finally:
        ps.close()  # a streamed run's spilled output, the diagnosis' parts too (read back as they are printed)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one actionable line and exit code 2, never a traceback."""
    from pcaptools.jit import skip_blas_probe
    from pcaptools.process import (
        arrow_gives_back,
        end_process,
        fewer_collections,
        keep_freed_memory,
        signals_as_interrupt,
    )

    skip_blas_probe()
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    gc_thresholds = None
    if not any(a == "--memory" or a.startswith("--memory=") for a in args):  # a budget given: memory goes back
        keep_freed_memory()
        gc_thresholds = fewer_collections()
    elif argv is None:  # a process of its own (not a caller's, such as a test's, whose pyarrow pool is its choice)
        arrow_gives_back()
    try:
        with signals_as_interrupt() as got:  # `kill`, a job's timeout: temporary spills removed, exit 130, as on Ctrl-C
            try:
                code = _run(args, debug)
            except Exception:
                if not got:
                    raise
                code = 1  # the signal's KeyboardInterrupt was swallowed where it landed (numpy's tofile does), and
                # what failed next is its consequence: still an interrupt
            if got and code != 130:
                print("pcaptools: interrupted", file=sys.stderr)
                code = 130
    finally:
        if gc_thresholds is not None:  # as they were for a caller that lives on (tests call main in process)
            import gc

            gc.set_threshold(*gc_thresholds)
    if argv is None:  # the console script or `python -m pcaptools`: the process ends here, without its teardown
        end_process(code)
    return code


def _run(args: list[str], debug: bool) -> int:
    """:func:`main` past its process setup: the command, its errors as one line each."""
    from pcaptools.render.terminal import safe

    try:
        rv = _command().main(args=args, prog_name="pcaptools", standalone_mode=False)
        if rv == 130:  # typer (0.12+) turns Ctrl-C/SIGTERM's KeyboardInterrupt into exit 130 without a word
            print("pcaptools: interrupted", file=sys.stderr)
        return rv if isinstance(rv, int) else 0
    except typer.Abort:
        print("pcaptools: aborted", file=sys.stderr)
        return 1
    except typer.TyperException as exc:  # usage errors (typer vendors click: never import click here)
        if debug:
            raise
        return _usage_error(exc)
    except PcapError as exc:
        if debug:
            raise
        print(f"pcaptools: {safe(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except SystemExit as exc:  # typer turns a closed stdout (EPIPE) into exit 1; a reader that stopped is no error
        if isinstance(exc.__context__, BrokenPipeError):
            _quiet_stdout()
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except OSError as exc:  # a missing or unreadable file, a name too long, a full disk: one line, no traceback
        if debug:
            raise
        if isinstance(exc.__context__, KeyboardInterrupt):  # cleaning up after Ctrl-C/SIGTERM failed: still an interrupt
            print(f"pcaptools: interrupted ({exc.strerror or safe(exc)} while cleaning up)", file=sys.stderr)
            return 130
        if exc.filename is None:  # a write or read that names no file (EIO, ENOSPC on an open output)
            print(f"pcaptools: {exc.strerror or safe(exc)} (errno {exc.errno}) while reading the inputs or writing the "
                  "output; check that the output is a regular file on a writable file system with free space", file=sys.stderr)  # fmt: skip
        else:
            print(f"pcaptools: {safe(exc.filename)}: {exc.strerror or safe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pcaptools: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
