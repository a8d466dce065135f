"""Writes notebooks/*.ipynb from the cell lists below and executes them, so they are reviewed as plain code and
committed with their outputs (they render on a repository browser).

Run: python notebooks/make_notebooks.py [--no-execute]   (tests/test_notebooks.py executes them again)
The notebooks import from the modules that define each function (``pcaptools.correlate.api.correlate``...), the
public API that does not depend on what the package root binds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent



def setup(stdlib: str, pcaptools: str) -> str:
    """The first code cell: inline figures, the imports a notebook uses, where the samples are."""
    return f"""%matplotlib inline
{stdlib}from pathlib import Path

import pandas as pd

{pcaptools}

pd.set_option("display.max_colwidth", 90)
SAMPLES = Path("..") / "sample_pcaps" if Path("../sample_pcaps").exists() else Path("sample_pcaps")"""


INVESTIGATE = [
    ("md", """# Where did my packet go?

An investigation on the shipped lab captures (`sample_pcaps/`): a three-node cluster under the
Calico VXLAN data plane, captured on every pod veth, node uplink, overlay device, the NLB and an
external client. Every figure below comes from the packets; `truth.json` is only used to check."""),
    ("code", setup("import json\n", """from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.correlate.latency import hop_samples
from pcaptools.flows import flows
from pcaptools.io import summarize
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.k8s.sequence import sequences
from pcaptools.packets import read_packets
from pcaptools.render import figures""") + """

calico = SAMPLES / "calico-vxlan"
manifest = json.loads((calico / "manifest.json").read_text())
pd.DataFrame(manifest["captures"])[["file", "node", "interface", "role", "pod"]]"""),
    ("md", "## 1. What is in the files\n`summarize` reads only the record index: formats, link types, counts, skips."),
    ("code", """info = pd.DataFrame([summarize(calico / c["file"]) for c in manifest["captures"]])
info[["path", "format", "records", "link_types", "skipped"]].head()"""),
    ("md", "## 2. One packet table for a node uplink\nVXLAN is stripped: inner headers in the main columns, the wire view in `outer_*`."),
    ("code", """pk = read_packets(calico / "node-1" / "eth0.pcap")
pk[["ts_ns", "tunnel", "vni", "outer_src", "outer_dst", "src", "dst", "proto", "sport", "dport", "wirelen"]].head()"""),
    ("code", """pk.groupby("tunnel", dropna=False, observed=False).size()"""),
    ("md", "## 3. Flows on that uplink, with the encapsulation each one paid"),
    ("code", """fl = flows(pk)
fl[["community_id", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "tunnel", "vni",
    "orig_pkts", "resp_pkts", "orig_wire_bytes", "encap_overhead_bytes", "history", "state"]].head(10)"""),
    ("md", "## 4. The same packets at every capture point\nClock offsets per node, then per-hop latency between consecutive points."),
    ("code", """cs = CaptureSet.load(calico)
corr = correlate(cs)
corr.offsets"""),
    ("code", """corr.hop_latency.head(10)"""),
    ("md", "A journey: the rows of one packet, in time order. What NAT rewrote is the difference between two rows."),
    ("code", """hops = corr.hops
syn = hops[(hops.tcp_flags == 2) & (hops.hops >= 4)]
one = hops[hops.journey == syn.journey.iloc[0]]
one[["hop", "point", "since_first_ns", "src", "sport", "dst", "dport", "tunnel", "vni", "outer_src", "outer_dst", "wirelen"]]"""),
    ("md", "Every consecutive pair of sightings is a latency sample; their distributions per pair of points:"),
    ("code", """figures.latency_cdf(hop_samples(corr.hops), hop=("from_point", "to_point"), top=6)"""),
    ("md", """## 5. Connections, named with the inventory
Who talked to whom, through which service, which node rewrote what, where the packet was encapsulated."""),
    ("code", """inventory = calico / "inventory.json"
paths, nat = paths_and_nat(corr, inventory)
paths[["connection", "kind", "client", "service", "backend", "nat", "encap", "client_ip_preserved", "latency_ns"]]"""),
    ("md", "The nodeport connection, packet by packet across the capture points: Wireshark's flow graph, but across nodes."),
    ("code", """seq = sequences(corr, paths, nat, inventory, max_packets=6)
roles = {p.name: p.role for p in cs.points}
nodeport = int(paths.loc[paths.kind == "nodeport", "connection"].iloc[0])
figures.sequence_diagram(seq[seq.connection == nodeport], roles=roles, title=f"connection {nodeport}: nodeport")"""),
    ("md", "Checked against the lab's ground truth: each connection's backend pod as the lab recorded it."),
    ("code", """truth = json.loads((calico / "truth.json").read_text())["connections"]
want = sorted(c["backend"].get("pod") or c["backend"]["ip"] for c in truth)
got = sorted(paths["backend"].astype(str))
pd.Series({"connections (truth)": len(truth), "connections (packets)": len(paths), "same backends": want == got})"""),
]

CLIENT_IP = [
    ("md", """# Why is the client IP lost?

A LoadBalancer service with `externalTrafficPolicy: Cluster` lets any node take the traffic and forward it
to a backend anywhere, so that node rewrites the source to its own address (SNAT) to get the replies back;
with `Local` only nodes that run a backend take traffic, and the client's address reaches the pod. Here is
that difference seen in the packets of the shipped lab runs, not in the manifests."""),
    ("code", setup("import json\n", """from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.k8s.sequence import sequences
from pcaptools.render import figures""") + """

calico = SAMPLES / "calico-vxlan"
cs = CaptureSet.load(calico)
corr = correlate(cs)
paths, nat = paths_and_nat(corr, calico / "inventory.json")
lb = paths[paths.kind.astype(str).str.startswith(("loadbalancer", "nodeport"))]
lb[["connection", "kind", "client", "client_addr", "service", "traffic_policy", "backend", "client_ip_preserved"]]"""),
    ("md", """## 1. What the backend pod saw
The last sighting of each connection's first packet is at the backend's veth: its source address is what the
application logs as the client."""),
    ("code", """h = corr.hops.set_index("journey")
seen = pd.DataFrame({
    "kind": lb.kind.astype(str).to_numpy(),
    "client sent from": lb.client_addr.astype(str).to_numpy(),
    "backend saw from": [str(h.loc[[j]].iloc[-1]["src"]) for j in lb.forward_journey],
    "at point": [str(h.loc[[j]].iloc[-1]["point"]) for j in lb.forward_journey],
}, index=lb.connection.to_numpy())
seen"""),
    ("md", "## 2. Who rewrote it\nThe source translations on the way in (one row per connection and node), who applied them and why:"),
    ("code", """snat = nat[(nat.op == "SNAT") & nat.connection.isin(lb.connection)].drop_duplicates(["connection", "node", "addr_after"])
snat[["connection", "op", "nat_kind", "service", "node", "from_point", "to_point", "addr_before", "addr_after"]]"""),
    ("md", """With `Cluster` the node that received the packet (from the load balancer or on its nodePort) masquerades it
to one of its own addresses (under Calico VXLAN, when the backend is on another node, its tunnel address);
with `Local` there is no SNAT, and the load balancer sends only to nodes with a backend."""),
    ("code", """pd.crosstab(lb.kind.astype(str), lb.client_ip_preserved.astype(str))"""),
    ("md", "## 3. Packet by packet\nOne connection of each policy across the capture points; purple boxes are the translations."),
    ("code", """seq = sequences(corr, paths, nat, calico / "inventory.json", max_packets=3)
roles = {p.name: p.role for p in cs.points}
cluster = int(lb.loc[lb.kind == "loadbalancer-cluster", "connection"].iloc[0])
figures.sequence_diagram(seq[seq.connection == cluster], roles=roles, title=f"connection {cluster}: externalTrafficPolicy Cluster")"""),
    ("code", """local = int(lb.loc[lb.kind == "loadbalancer-local", "connection"].iloc[0])
figures.sequence_diagram(seq[seq.connection == local], roles=roles, title=f"connection {local}: externalTrafficPolicy Local")"""),
    ("md", "## 4. Same question, other CNI\nThe AWS VPC CNI run of the same workload: the policy, not the CNI, decides."),
    ("code", """vpc = SAMPLES / "vpc"
vp = paths_and_nat(correlate(CaptureSet.load(vpc)), vpc / "inventory.json")[0]
both = pd.concat([lb.assign(cni="calico-vxlan"), vp[vp.kind.astype(str).str.startswith(("loadbalancer", "nodeport"))].assign(cni="vpc")])
pd.crosstab([both.cni, both.kind.astype(str)], both.client_ip_preserved.astype(str))"""),
    ("md", "Checked against the lab's ground truth (conntrack on the backend's node): the source the backend saw."),
    ("code", """truth = {(c["client_tuple"]["src"], c["client_tuple"]["sport"]): c["server_tuple"]["src"]
         for c in json.loads((calico / "truth.json").read_text())["connections"] if c.get("server_tuple")}
check = [(truth.get((r.client_addr, r.client_port)), s) for r, s in zip(lb.itertuples(), seen["backend saw from"], strict=True)]
pd.Series({"connections checked": sum(t is not None for t, _ in check), "agree with truth": sum(t == s for t, s in check)})"""),
]

OVERLAY = [
    ("md", """# What does the overlay cost?

The same workload under the AWS VPC CNI (pods on VPC addresses, native routing) and Calico VXLAN (pods on an
overlay, VXLAN between nodes), captured on every interface. Everything below is measured from the packets:
encapsulation bytes, the MTU and MSS it forces, the extra hops, and their latency."""),
    ("code", setup("", """from pcaptools.compare import compare
from pcaptools.k8s.sequence import sequences
from pcaptools.render import figures""") + """

cmp = compare([SAMPLES / "vpc", SAMPLES / "calico-vxlan"])
cmp.summary.loc[cmp.summary.section.isin(["data plane", "overhead"]), ["metric", "unit", *cmp.labels]]"""),
    ("md", """## 1. Encapsulation bytes
Every VXLAN packet carries outer IP + UDP + VXLAN + inner Ethernet headers. On the node uplinks:"""),
    ("code", """figures.wire_bytes(cmp)"""),
    ("md", "## 2. MTU and MSS\nThe tunnel takes its headers out of the uplink MTU, so pods get a smaller MTU and announce a smaller MSS."),
    ("code", """cmp.summary.loc[cmp.summary.section == "MTU / MSS", ["metric", "unit", *cmp.labels]]"""),
    ("code", """figures.mtu(cmp)"""),
    ("md", "## 3. Hops\nA cross-node pod-to-pod packet crosses the tunnel device on both nodes under the overlay:"),
    ("code", """cmp.cross_node.groupby("label")[["points", "tunnel_devices"]].median()"""),
    ("code", """cn = cmp.cross_node.drop_duplicates("label").set_index("label")
for label in cmp.labels:
    route = cmp.paths[label].set_index("connection").loc[cn.loc[label, "connection"], "forward_points"]
    print(f"{label:>13}: {route}")"""),
    ("md", "The same kind of connection, packet by packet, under each CNI:"),
    ("code", """def diagram(label):
    c = int(cn.loc[label, "connection"])
    seq = sequences(cmp.correlations[label], cmp.paths[label], cmp.nat[label], cmp.inventories[label], max_packets=3)
    pts = cmp.capture_points[label]
    return figures.sequence_diagram(seq[seq.connection == c], roles=dict(zip(pts.point, pts.role, strict=True)),
                                    title=f"{label}: connection {c}, {cn.loc[label, 'kind']}")


diagram("vpc")"""),
    ("code", """diagram("calico-vxlan")"""),
    ("md", "## 4. Latency\nPer hop (by the roles of its capture points) and for the whole way, on corrected clocks:"),
    ("code", """figures.hop_latency(cmp)"""),
    ("code", """total = cmp.hop_samples[cmp.hop_samples.hop == "pod → pod (total)"]
figures.latency_cdf(total, hop="label", title="cross-node pod-to-pod packets, first to last capture point")"""),
    ("code", """cmp.summary.loc[cmp.summary.section.isin(["hops", "latency"]), ["metric", "unit", *cmp.labels]]"""),
]

NOTEBOOKS = {
    "where_did_my_packet_go.ipynb": INVESTIGATE,
    "why_is_the_client_ip_lost.ipynb": CLIENT_IP,
    "what_does_the_overlay_cost.ipynb": OVERLAY,
}


def build(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    """A notebook from (kind, source) pairs, with stable cell ids so regenerating changes only what changed."""
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(t) if k == "md" else nbf.v4.new_code_cell(t) for k, t in cells]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"
    return nb


def execute(nb: nbf.NotebookNode) -> nbf.NotebookNode:
    """Run every cell in this directory, as a reader would."""
    import nbclient

    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main(argv: list[str]) -> None:
    run = "--no-execute" not in argv
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        nbf.write(execute(nb) if run else nb, HERE / name)
        print(f"wrote {HERE / name} ({(HERE / name).stat().st_size / 1e3:,.0f} kB)")


if __name__ == "__main__":
    main(sys.argv[1:])
