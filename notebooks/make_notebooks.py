"""Writes notebooks/*.ipynb from the cell lists below, so the notebooks are reviewed as plain code.

Run: python notebooks/make_notebooks.py   (tests/test_notebooks.py executes the result)
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

INVESTIGATE = [
    ("md", """# Where did my packet go?

An investigation on the shipped lab captures (`sample_pcaps/`): a three-node cluster under the
Calico VXLAN data plane, captured on every pod veth, node uplink, overlay device, the NLB and an
external client. Every figure below comes from the packets; `truth.json` is only used to check."""),
    ("code", """import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

import pcaptools

SAMPLES = Path("..") / "sample_pcaps" if Path("../sample_pcaps").exists() else Path("sample_pcaps")
calico = SAMPLES / "calico-vxlan"
manifest = json.loads((calico / "manifest.json").read_text())
pd.DataFrame(manifest["captures"])[["file", "node", "interface", "role", "pod"]]"""),
    ("md", "## 1. What is in the files\n`summarize` reads only the record index: formats, link types, counts, skips."),
    ("code", """info = pd.DataFrame([pcaptools.summarize(calico / c["file"]) for c in manifest["captures"]])
info[["path", "format", "records", "link_types", "skipped"]].head()"""),
    ("md", "## 2. One packet table for a node uplink\nVXLAN is stripped: inner headers in the main columns, the wire view in `outer_*`."),
    ("code", """pk = pcaptools.read_packets(calico / "node-1" / "eth0.pcap")
pk[["ts_ns", "tunnel", "vni", "outer_src", "outer_dst", "src", "dst", "proto", "sport", "dport", "wirelen"]].head()"""),
    ("code", """pk.groupby("tunnel", dropna=False, observed=False).size()"""),
    ("md", "## 3. Flows on that uplink, with the encapsulation each one paid"),
    ("code", """fl = pcaptools.flows(pk)
fl[["community_id", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "tunnel", "vni",
    "orig_pkts", "resp_pkts", "orig_wire_bytes", "encap_overhead_bytes", "history", "state"]].head(10)"""),
    ("md", "## 4. The same packets at every capture point\nClock offsets per node, then per-hop latency between consecutive points."),
    ("code", """cs = pcaptools.CaptureSet.load(calico)
corr = pcaptools.correlate(cs)
corr.offsets"""),
    ("code", """corr.hop_latency.sort_values("count", ascending=False).head(10)"""),
    ("md", "A journey: the rows of one packet, in time order. What NAT rewrote is the difference between two rows."),
    ("code", """hops = corr.hops
syn = hops[(hops.tcp_flags == 2) & (hops.hops >= 4)]
one = hops[hops.journey == syn.journey.iloc[0]]
one[["hop", "point", "since_first_ns", "src", "sport", "dst", "dport", "tunnel", "vni", "outer_src", "outer_dst", "wirelen"]]"""),
    ("code", """lat = corr.hop_latency.sort_values("median_ns").tail(12)
fig, ax = plt.subplots(figsize=(8, 4))
ax.barh(lat["from_point"] + " -> " + lat["to_point"], lat["median_ns"] / 1000)
ax.set_xlabel("median one-way latency (us, clock-corrected)")
ax.set_title("per-hop latency, calico-vxlan lab")
fig.tight_layout()"""),
]


def build(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(t) if k == "md" else nbf.v4.new_code_cell(t) for k, t in cells]
    return nb


def main() -> None:
    nbf.write(build(INVESTIGATE), HERE / "where_did_my_packet_go.ipynb")


if __name__ == "__main__":
    main()
