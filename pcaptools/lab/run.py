"""Run the emulated cluster lab end to end: build, serve, capture, drive clients, record truth, tear down."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from pcaptools.errors import LabError
from pcaptools.lab import faults as faults_mod
from pcaptools.lab import kubeproxy, netns, outdir, registry, topology, truth
from pcaptools.lab.capture import Capture, finish
from pcaptools.lab.inventory import build_inventory
from pcaptools.lab.topology import Topology
from pcaptools.lab.traffic import Server, run_clients
from pcaptools.process import signals_as_interrupt

DEFAULT_PREFIX = "ptlab-"
# the order connection kinds are taken in; `connections` cycles through it
KINDS = ("pod-direct-same-node", "clusterip", "nodeport", "loadbalancer-cluster", "loadbalancer-local",
         "clusterip-udp", "egress", "pod-direct-cross-node")
SMALL, LARGE = 2_000, 200_000
# conntrack entries the truth reads after the last client: kept 10 min instead of 30 s (UDP) / 2 min
# (TCP TIME_WAIT), so a run slowed down by a busy host still finds every connection's NAT
CONNTRACK_KEEP = {f"net.netfilter.nf_conntrack_{k}": 600
                  for k in ("udp_timeout", "udp_timeout_stream", "tcp_timeout_time_wait", "tcp_timeout_close")}


def _check(got: dict[str, int]) -> None:
    """Raise the KeyboardInterrupt of a recorded signal whose first raise was swallowed."""
    if "signal" in got:
        raise KeyboardInterrupt(f"signal {got['signal']}")


def plan_jobs(topo: Topology, connections: int, seed: int) -> list[dict[str, Any]]:
    """The clients' connections: kind, client place, destination and size (seeded, so repeatable)."""
    rng = random.Random(seed)
    clients = [p for p in topo.pods if p.labels.get("app") == "client"]
    web, lb, local, dns = (topo.service(n) for n in ("web", "web-lb", "web-local", "dns"))
    backends = topo.endpoints(web)
    backend_nodes = {p.node for p in backends}
    no_backend = [n for n in topo.nodes if n.name not in backend_nodes] or topo.nodes
    jobs = []
    for i in range(connections):
        kind, rnd = KINDS[i % len(KINDS)], i // len(KINDS)
        size = SMALL if rnd % 2 == 0 else (LARGE if kind in ("clusterip", "pod-direct-cross-node") else 20_000)
        job: dict[str, Any] = {"id": i, "kind": kind, "proto": "tcp", "size": size}
        if kind == "pod-direct-same-node":
            b = backends[0]
            c = next(p for p in clients if p.node == b.node)
            job.update(client=c.key, service=None, dst=b.ip, port=80)
        elif kind == "pod-direct-cross-node":
            c = rng.choice(clients)
            b = next(p for p in backends if p.node != c.node)
            job.update(client=c.key, service=None, dst=b.ip, port=80)
        elif kind == "clusterip":
            job.update(client=rng.choice(clients).key, service=web.key, dst=web.cluster_ip, port=web.ports[0].port)
        elif kind == "clusterip-udp":
            job.update(kind="clusterip", proto="udp", size=64 if rnd % 2 == 0 else 512,
                       client=rng.choice(clients).key, service=dns.key, dst=dns.cluster_ip, port=dns.ports[0].port)
        elif kind == "nodeport":
            node = no_backend[-1] if rnd == 0 else rng.choice(topo.nodes)
            job.update(client="client", service=web.key, dst=node.ip, port=web.ports[0].node_port)
        elif kind == "loadbalancer-cluster":
            job.update(client="client", service=lb.key, dst=lb.lb_ip, port=lb.ports[0].port)
        elif kind == "loadbalancer-local":
            job.update(client="client", service=local.key, dst=local.lb_ip, port=local.ports[0].port)
        elif kind == "egress":
            job.update(client=rng.choice(clients).key, service=None, dst=topo.internet.ip, port=80)
        jobs.append(job)
    return jobs


def _captures(topo: Topology, out: Path, *, any_capture: bool, nano: bool) -> list[tuple[Capture, dict[str, Any]]]:
    """Every capture point of the run with its manifest entry."""
    caps: list[tuple[Capture, dict[str, Any]]] = []

    def add(ns: str, label: str, iface: str, role: str, **extra: Any) -> None:
        rel = truth.capture_file(label, iface)
        cap = Capture(ns, iface, out / rel, nano=nano, any_sll2=(iface == "any"))
        if iface == "any":
            cap.buffer_kib = 32768  # every interface of the node: a few times the packets
        caps.append((cap,
                     {"file": rel, "node": label, "interface": iface, "role": role, **extra}))

    for n in topo.nodes:
        for p in topo.pods:
            if p.node == n.name:
                add(n.ns, n.name, p.host_if, "pod-veth", pod=p.key)
        add(n.ns, n.name, "eth0", "node-uplink")
        if topo.cni == "calico-vxlan":
            add(n.ns, n.name, "vxlan.calico", "overlay")
        if any_capture:
            add(n.ns, n.name, "any", "any")
    add(topo.nlb.ns, "nlb", "eth0", "lb")
    add(topo.client.ns, "client", "eth0", "client")
    add(topo.internet.ns, "internet", "eth0", "external")
    return caps


def _conntrack_places(topo: Topology) -> dict[str, str]:
    """Truth place -> namespace of every box whose conntrack table the truth reads."""
    return {**{"node:" + n.name: n.ns for n in topo.nodes}, "nlb": topo.nlb.ns, "router": topo.router.ns}


def _interfaces(topo: Topology, node_ns: str) -> tuple[list[dict[str, Any]], str]:
    """ifindex -> interface -> role inside a node (for the ``any`` capture's SLL2 ifindex field), and the raw
    ``ip -j link`` output (written as NODE.links.json beside the capture, what pcaptools reads without a manifest)."""
    raw = netns.run(["ip", "-j", "link", "show"], ns=node_ns)
    links = json.loads(raw)
    veths = {p.host_if: p.key for p in topo.pods}
    rows = []
    for link in links:
        name = link["ifname"]
        row: dict[str, Any] = {"ifindex": link["ifindex"], "interface": name}
        if name in veths:
            row.update(role="pod-veth", pod=veths[name])
        elif name == "eth0":
            row["role"] = "node-uplink"
        elif name == "vxlan.calico":
            row["role"] = "overlay"
        else:
            row["role"] = "loopback" if name == "lo" else "other"
        rows.append(row)
    return rows, raw


def links_file(node: str) -> str:
    """Where a node's ``ip -j link`` output goes: beside its ``any`` capture, named for the node."""
    return f"{node}/{node}.links.json"


def _remove_previous(out: Path) -> None:
    """Delete the files an earlier run wrote into ``out`` (as its manifest lists them), nothing else."""
    old = out / "manifest.json"
    if not old.is_file():
        return
    try:
        caps = json.loads(old.read_text()).get("captures", [])
        files = [c["file"] for c in caps] + [c["links"] for c in caps if c.get("links")]
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise LabError(f"{old}: not a lab manifest ({exc}); pass an empty --out directory") from exc
    for rel in [*files, "manifest.json", "truth.json", "inventory.json"]:
        path = (out / rel).resolve()
        if out.resolve() in path.parents and path.is_file():
            path.unlink()
    for d in sorted({(out / rel).parent for rel in files}, reverse=True):
        if d != out and d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def _place_of_client(topo: Topology, client: str) -> str:
    return client if client in ("client", "internet") or client.startswith("node:") else "pod:" + client


def _client_ns(topo: Topology, client: str) -> str:
    """Namespace a job's client runs in: the external client, a node's own (a hostNetwork client), or a pod's."""
    if client == "client":
        return topo.client.ns
    return topo.node(client[5:]).ns if client.startswith("node:") else topo.pod(client).ns


def run_lab(out_dir: str | Path, *, cni: str = "vpc", nodes: int = 3, any_capture: bool = False,
            nano: bool = False, connections: int = 16, prefix: str = DEFAULT_PREFIX, seed: int = 1,
            segment_offload: bool = False, faults: tuple[str, ...] | list[str] = (), ip_family: str = "ipv4",
            underlay: str | None = None, ula: str | None = None) -> Path:
    """Build the lab, capture the clients' traffic on every capture point, write manifest/inventory/truth.

    Returns the path of ``manifest.json``. The run takes a unique id ``prefix`` + 6 hex digits, names
    its namespaces ``<id>-…`` and lists them (and its veths and processes) in a registry
    (:mod:`pcaptools.lab.registry`) before creating them, so concurrent runs never touch each other.
    Its namespaces are removed on return, on error and on Ctrl-C/SIGTERM/SIGHUP; if the process is
    killed outright its children die with it and the next run or ``lab clean`` removes the rest.
    ``ip_family`` (ipv4, ipv6, dual), ``underlay`` and ``ula``: see :func:`pcaptools.lab.topology.plan`; a dual
    run makes each of the ``connections`` over both families.
    """
    if connections < 1:
        raise LabError(f"connections={connections}: need at least 1 (there are {len(KINDS)} kinds)")
    registry.validate_prefix(prefix)
    family = {"ip_family": ip_family, "underlay": underlay, "ula": ula}
    topology.plan(cni, nodes=nodes, prefix=prefix, **family)  # bad arguments fail before anything is touched
    if faults and ip_family != "ipv4":
        raise LabError(f"--fault {faults[0]}: faults are IPv4 only; drop --ip-family {ip_family} or the faults")
    netns.check_host()
    out = outdir.check(out_dir)
    _remove_previous(out)
    registry.reap(prefix)  # leftovers of runs under this prefix whose process is gone
    run = registry.open_run(prefix, out=str(out.resolve()))
    topo = topology.plan(cni, nodes=nodes, prefix=run.ns_prefix, **family)
    jobs = topology.over_each_family(topo, plan_jobs(topo, connections, seed))
    fault_plan = faults_mod.plan(topo, list(faults), first_id=len(jobs), seed=seed)  # adds the faults' services
    jobs += [f.job for f in fault_plan if f.job]
    servers: list[Server] = []
    caps: list[tuple[Capture, dict[str, Any]]] = []
    try:
        with signals_as_interrupt() as got:
            try:
                run.add_namespaces(topo.namespaces())
                topology.build(topo, segment_offload=segment_offload)
                run.add_veths([{"ns": ns, "name": v} for ns in topo.namespaces() for v in netns.veths(ns)])
                for ns in _conntrack_places(topo).values():  # the truth reads conntrack at the end of the run
                    netns.sysctl(ns, CONNTRACK_KEEP)
                kubeproxy.install(topo)
                faults_mod.apply(fault_plan)
                server_at: dict[str, Server] = {}
                for p in topo.pods:
                    for _name, port, proto in p.ports:
                        s = Server(p.ns, proto.lower(), port, p.key)
                        servers.append(s)
                        server_at["pod:" + p.key] = s
                s = Server(topo.internet.ns, "tcp", 80, "internet")
                servers.append(s)
                server_at["internet"] = s
                servers += faults_mod.servers(fault_plan)
                for s in servers:
                    s.start()
                    if s.proc is not None:
                        run.add_pid(s.proc.pid, f"server {s.label} {s.proto}/{s.port}")
                caps = _captures(topo, out, any_capture=any_capture, nano=nano)
                for cap, _entry in caps:
                    cap.root = out
                    cap.start()
                    if cap.pid is not None:
                        run.add_pid(cap.pid, f"tcpdump {cap.ns} {cap.interface}")
                _check(got)
                run.set_state("capturing")
                results = []
                # fault jobs first: their waits would age out the other jobs' UDP conntrack entries
                fault_of = {f.job["id"]: f for f in fault_plan if f.job}
                for job in sorted(jobs, key=lambda j: "sport" not in j):
                    ns = _client_ns(topo, job["client"])
                    faults_mod.before(fault_of.get(job["id"]))
                    res = run_clients(ns, [{k: job[k] for k in ("id", "proto", "dst", "port", "size", "sport", "timeout")
                                            if k in job}])  # fmt: skip
                    faults_mod.after(fault_of.get(job["id"]))
                    results.extend(res)
                    _check(got)
                conntrack = {}
                for place, ns in _conntrack_places(topo).items():
                    conntrack[place] = truth.parse_conntrack(netns.run(["conntrack", "-L", "-o", "extended"],
                                                                       ns=ns, check=False))
                rules = kubeproxy.saved(topo)
                links = {n.name: _interfaces(topo, n.ns) for n in topo.nodes} if any_capture else {}
                logs = {place: s.stop() for place, s in server_at.items()}
                run.set_state("stopping")
                for ns in topo.namespaces():  # entries left to go stale would send ARP probes into the stop
                    netns.run(["ip", "-n", ns, "neigh", "flush", "all"], check=False)
                finish([cap for cap, _entry in caps], token=f"pcaptools-lab end {run.run_id}")
                counts = {entry["file"]: cap.stop() for cap, entry in caps}
                _check(got)
            finally:
                for s in servers:
                    with contextlib.suppress(Exception):
                        s.stop()
                for cap, _entry in caps:
                    with contextlib.suppress(Exception):
                        cap.stop()
                for name in reversed(topo.namespaces()):
                    netns.delete(name)
                if netns.list_namespaces(run.ns_prefix):
                    run.release()  # the registry stays: `lab clean` or the next run finishes the job
                else:
                    run.close()
    except KeyboardInterrupt as exc:
        raise KeyboardInterrupt(f"{exc or 'Ctrl-C'}; its namespaces {run.ns_prefix}* were removed") from None

    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for node, (_rows, raw) in links.items():  # the manifest-free layout: NODE/any.pcap + NODE/NODE.links.json
        outdir.write_text(out, links_file(node), raw if raw.endswith("\n") else raw + "\n")
    manifest = _manifest(topo, caps, counts, {n: rows for n, (rows, _raw) in links.items()}, created, seed)
    records = _truth(topo, jobs, results, conntrack, logs)
    for rel, text in rules.items():  # what capture tools collect beside their pcaps: the node's rules
        outdir.write_text(out, rel, text)
    if fault_plan:
        faults_mod.after_capture(out, fault_plan, {f"{e['node']}:{e['interface']}": e["file"] for _c, e in caps})
        records["faults"] = faults_mod.truth(fault_plan, {r["id"]: r for r in results})
        records["scenarios"] = faults_mod.truth(fault_plan, {r["id"]: r for r in results}, scenarios=True)
    inventory = build_inventory(topo, created)
    inventory["items"] += faults_mod.inventory_items(fault_plan)
    outdir.write_text(out, "inventory.json", json.dumps(inventory, indent=1) + "\n")
    outdir.write_text(out, "truth.json", json.dumps(records, indent=1) + "\n")
    return outdir.write_text(out, "manifest.json", json.dumps(manifest, indent=1) + "\n")


def _manifest(topo: Topology, caps: list[tuple[Capture, dict[str, Any]]], counts: dict[str, dict[str, int]],
              links: dict[str, list[dict[str, Any]]], created: str, seed: int) -> dict[str, Any]:
    captures = []
    for _cap, entry in caps:
        e = dict(entry)
        if e["role"] == "any":
            e["interfaces"] = links.get(e["node"], [])
            e["links"] = links_file(e["node"])
        e["tcpdump"] = c = counts.get(e["file"], {})
        e["complete"] = bool(c) and c.get("dropped", 0) == 0 and c.get("captured") == c.get("received")
        captures.append(e)
    nodes = {n.name: {"ip": n.ip, "zone": n.zone, "pod_cidr": n.pod_cidr, "tunnel_ip": n.tunnel_ip,
                      "tunnel_mac": n.tunnel_mac, "mac": n.mac} for n in topo.nodes}
    return {
        "format": "pcaptools-lab/1", "cni": topo.cni, "created": created, "captures": captures, "nodes": nodes,
        "hosts": {"nlb": {"ip": topo.nlb.ip, "lb_ips": [s.lb_ip for s in topo.services if s.lb_ip]},
                  "client": {"ip": topo.client.ip}, "internet": {"ip": topo.internet.ip},
                  "router": {"ip": topo.router.ip}},
        "network": {"vpc_cidr": topo.vpc_cidr, "pod_cidr": topo.pod_cidr, "service_cidr": topo.service_cidr,
                    "ip_family": topo.ip_family, "underlay": topo.underlay,
                    "families": {f: dataclasses.asdict(n) for f, n in topo.nets.items()},
                    "mtu": topo.mtu, "overlay": ({"type": "vxlan", "device": "vxlan.calico",
                                                 "vni": topology.VXLAN_VNI, "udp_port": topology.VXLAN_PORT}
                                                if topo.cni == "calico-vxlan" else None)},
        "lab": {"seed": seed, "inventory": "inventory.json", "truth": "truth.json"},
    }


def _truth(topo: Topology, jobs: list[dict[str, Any]], results: list[dict[str, Any]],
           conntrack: dict[str, list[truth.CtEntry]], logs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    by_id = {r["id"]: r for r in results}
    conns = []
    for job in jobs:
        res = by_id.get(job["id"], {})
        fam = job.get("family", topo.families[0])
        rec: dict[str, Any] = {"id": job["id"], "kind": job["kind"], "service": job["service"], "proto": job["proto"],
                               "ip_family": fam, "ok": bool(res.get("ok")), "request_bytes": job["size"],
                               "received_bytes": res.get("received")}
        start = _place_of_client(topo, job["client"])
        if start.startswith("pod:"):
            p = topo.pod(job["client"])
            rec["client"] = {"kind": "pod", "pod": p.key, "node": p.node, "ip": p.addr(fam)}
        elif start.startswith("node:"):  # a hostNetwork pod's process in the node's own namespace
            n = topo.node(start[5:])
            rec["client"] = {"kind": "host-network-pod", "pod": job.get("host_pod"), "node": n.name, "ip": n.addr(fam)}
        else:
            rec["client"] = {"kind": "external", "host": start, "ip": topo.client.addr(fam)}
        if job.get("walk") is False and res.get("ok"):  # not modelled by the truth's router: see truth["scenarios"]
            rec["client_tuple"] = {"src": res["src"], "sport": int(res["sport"]), "dst": job["dst"],
                                   "dport": job["port"], "proto": job["proto"]}
            conns.append(rec)
            continue
        if not res.get("ok") or "sport" not in res:
            rec["error"] = res.get("error", "client produced no result")
            conns.append(rec)
            continue
        first = (res["src"], int(res["sport"]), res["dst"], int(res["dport"]), job["proto"])
        rec["client_tuple"] = truth.tuple_dict(first)
        w = truth.walk(topo, start, first, conntrack)
        end, last = w["end"], w["last"]
        if end.startswith("pod:"):
            p = topo.pod(end[4:])
            rec["backend"] = {"kind": "pod", "pod": p.key, "node": p.node, "ip": last[2], "port": last[3]}
        else:
            rec["backend"] = {"kind": "external", "host": end, "ip": last[2], "port": last[3]}
        rec["backend_source"] = "conntrack"
        rec["server_tuple"] = truth.tuple_dict(last)
        seen = [e for e in logs.get(end, []) if e.get("peer") == [last[0], last[1]]]
        rec["server_log_agrees"] = bool(seen)
        rec["nat"] = w["nat"]
        rec["hops"] = [truth._Router(topo).label(h) if not h.startswith("pod:") else h[4:] for h in w["hops"]]
        rec["path"] = {"forward": w["forward"], "reverse": truth.reverse_path(w["forward"])}
        encaps = []
        for c in w["forward"]:
            if c["encap"] and c["encap"] not in encaps:
                encaps.append(c["encap"])
        rec["encapsulated"] = bool(encaps)
        rec["encap"] = encaps
        rec["conntrack"] = w["conntrack"]
        conns.append(rec)
    return {"format": "pcaptools-lab-truth/1", "cni": topo.cni, "connections": conns}


def clean(prefix: str | None = None) -> registry.Cleaned:
    """Remove what lab runs whose process is gone created (all prefixes, or ``prefix``); nothing else."""
    if prefix is not None:
        registry.validate_prefix(prefix)
    netns.check_host()
    return registry.reap(prefix)
