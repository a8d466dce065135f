"""The HTML report: self-contained, escaped, complete for the shipped samples, and it renders in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pcaptools.cli import app
from pcaptools.correlate.api import correlate
from pcaptools.correlate.capture_set import CaptureSet
from pcaptools.k8s.paths import paths_and_nat
from pcaptools.k8s.sequence import sequences
from pcaptools.report import report

ROOT = Path(__file__).parent.parent
CALICO = ROOT / "sample_pcaps" / "calico-vxlan"
VPC = ROOT / "sample_pcaps" / "vpc"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless browser tests need chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """The report on one capture set, written by the CLI."""
    out = tmp_path_factory.mktemp("report") / "calico.html"
    res = CliRunner().invoke(app, ["report", str(CALICO), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"written to {out}" in res.output
    return out


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    """The report comparing the two shipped capture sets."""
    out = tmp_path_factory.mktemp("report") / "comparison.html"
    res = CliRunner().invoke(app, ["report", str(VPC), str(CALICO), "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def calico_paths():
    """The calico sample's paths, built straight from the library (what the report must show)."""
    corr = correlate(CaptureSet.load(CALICO))
    return corr, paths_and_nat(corr, CALICO / "inventory.json")[0]


def _chromium(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _console(stderr: str) -> list[str]:
    """Messages the page wrote to the browser console (errors, uncaught exceptions, logs)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_report_on_one_set_shows_every_point_node_and_connection(single, calico_paths):
    corr, paths = calico_paths
    text = single.read_text(encoding="utf-8")
    manifest = json.loads((CALICO / "manifest.json").read_text())
    for cap in manifest["captures"]:
        assert f"{cap['node']}:{cap['interface']}" in text
    for node in corr.offsets["node"]:
        assert f"<td>{node}</td>" in text
    rows = re.findall(r'<tr data-kind="([^"]+)"', text)
    assert rows == [str(k) for k in paths["kind"]]
    # one sequence diagram per connection, each in its own block
    assert len(re.findall(r'<details id="s0-conn-c\d+"', text)) == len(paths)
    assert text.count("<svg") == len(paths) + 1  # + the per-hop latency CDF
    for svc in paths["service"].dropna().unique():
        assert svc in text
    assert "CNI comparison" not in text  # one set: no comparison section


def test_report_points_table_accounts_for_every_row_of_each_point(single, calico_paths):
    """The capture points table gives each point's rows, matched, unmatched and a column per reason not correlated."""
    corr, _ = calico_paths
    text = single.read_text(encoding="utf-8")
    block = text[text.index('id="s0-points"'):text.index('id="s0-clocks"')]
    heads = re.findall(r"<th>([^<]+)</th>", block)
    assert heads[heads.index("packets"):heads.index("file")] == ["packets", "rows", "matched", "unmatched", "no IP", "ND/MLD", "no timestamp"]
    for c in corr.point_counts():
        row = re.search(rf"<tr><td>{re.escape(c['point'])}</td>(.*?)</tr>", block).group(1)
        nums = [int(n.replace(",", "")) for n in re.findall(r'<td class="num">([\d,]+)</td>', row)]
        assert nums[-6:] == [c["rows"], c["matched"], c["unmatched"], *c["not_correlated"].values()]
    assert any(c["not_correlated"]["no_ip"] for c in corr.point_counts())


def test_report_lists_the_routes_every_connection_took(single, calico_paths):
    from pcaptools.k8s.groups import route_groups

    corr, paths = calico_paths
    text = single.read_text(encoding="utf-8")
    at = text.index('id="s0-routes"')
    block = text[at:text.index('id="s0-connections"')]
    routes = route_groups(paths, paths_and_nat(corr, CALICO / "inventory.json")[1])
    assert f"{len(paths)} connections on {len(routes)} routes" in block
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]+)</td>", block)  # connections, kind
    assert [(int(n), k) for n, k in rows] == list(zip(routes["connections"], routes["kind"].astype(str), strict=True))
    assert sum(int(n) for n, _ in rows) == len(paths)


def test_report_draws_the_first_max_diagrams_connections_and_lists_the_rest(tmp_path, calico_paths):
    _, paths = calico_paths
    out = tmp_path / "few.html"
    res = CliRunner().invoke(app, ["report", str(CALICO), "-o", str(out), "--max-diagrams", "2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    blocks = re.findall(r'<details id="s0-conn-c(\d+)".*?</details>', text, re.S)
    assert len(blocks) == len(paths) > 2  # every connection still listed, with its route
    drawn = re.findall(r'<details id="s0-conn-c\d+".*?(<svg|Diagram not drawn)', text, re.S)
    assert drawn == ["<svg"] * 2 + ["Diagram not drawn"] * (len(paths) - 2)  # the first two, in the page's order
    assert text.count("<svg") == 2 + 1  # + the per-hop latency CDF
    bad = CliRunner().invoke(app, ["report", str(CALICO), "-o", str(tmp_path / "x.html"), "--max-diagrams", "0"])
    assert bad.exit_code == 2 and "--max-diagrams" in bad.output


def test_report_sequence_diagrams_annotate_nat_and_vxlan(single, calico_paths):
    _, paths = calico_paths
    text = single.read_text(encoding="utf-8")
    lb = paths.loc[(paths["kind"] == "loadbalancer-cluster") & paths["encapsulated"]].iloc[0]
    block = re.search(rf'<details id="s0-conn-c{int(lb.connection)}".*?</details>', text, re.S).group(0)
    svg = re.search(r"<svg.*?</svg>", block, re.S).group(0)
    # every forward translation of the path (op, before→after, node), as text in the diagram, and the VXLAN tunnel
    for step in lb.nat.split("; "):
        assert step.split(" (")[0] in svg
    assert re.search(r"vxlan vni \d+ \d+\.\d+\.\d+\.\d+→", svg)


def test_report_needs_no_network(comparison):
    text = comparison.read_text(encoding="utf-8")
    assert not re.search(r"<(script|img|iframe)[^>]+src=", text)
    assert "<link" not in text and "@import" not in text
    assert set(re.findall(r"url\(([^)]*)\)", text)) <= {u for u in re.findall(r"url\((#[^)]*)\)", text)}  # in-page #ids only
    # the only absolute URLs are SVG/XLink namespace names, which browsers never fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_comparison_report_has_summary_and_both_sets(comparison):
    text = comparison.read_text(encoding="utf-8")
    assert "CNI comparison: vpc vs calico-vxlan" in text
    assert 'id="s0"' in text and 'id="s1"' in text
    assert "encapsulation per tunnelled packet" in text


def test_strings_from_files_are_escaped(tmp_path):
    work = tmp_path / "set"
    shutil.copytree(CALICO, work)
    man = json.loads((work / "manifest.json").read_text())
    evil = '<img src=x onerror="alert(1)">&'
    man["captures"][0]["pod"] = evil
    man["captures"][0]["interface"] = "cali<i>0</i>"  # becomes a point name: tables, filters, diagram lanes
    (work / "manifest.json").write_text(json.dumps(man))
    text = report({"<b>set</b>": work})
    assert evil not in text and "<b>set</b>" not in text and "<i>0</i>" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in text
    assert "&lt;b&gt;set&lt;/b&gt;" in text
    assert "cali&lt;i&gt;0&lt;/i&gt;" in re.search(r"<svg.*?</svg>", text.split('id="s0-sequences"')[1], re.S).group(0)


def test_report_without_an_inventory_shows_connections_by_address(tmp_path):
    work = tmp_path / "set"
    shutil.copytree(CALICO, work)
    (work / "inventory.json").unlink()
    corr = correlate(CaptureSet.load(work))
    paths = paths_and_nat(corr, None)[0]
    text = report([work])
    assert len(re.findall(r'<tr data-kind="', text)) == len(paths) > 0
    conns = re.search(r'<table class="connections".*?</table>', text, re.S).group(0)
    assert "default/backend-0" not in conns and "10.244.0.5" in conns  # the backend by its address
    assert "no inventory" in text  # and the report says why


def _drop_records(path: Path, keep) -> int:
    """Rewrite a classic pcap keeping the records ``keep(i)`` says to; returns how many were dropped."""
    import struct

    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off, i, dropped = [data[:24]], 24, 0, 0
    while off + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        if keep(i):
            out.append(data[off:off + 16 + caplen])
        else:
            dropped += 1
        off += 16 + caplen
        i += 1
    path.write_bytes(b"".join(out))
    return dropped


def test_report_locates_packets_lost_between_points(tmp_path):
    work = tmp_path / "set"
    shutil.copytree(CALICO, work)
    assert _drop_records(work / "node-2" / "eth0.pcap", lambda i: not (20 <= i < 80 and i % 2)) == 30  # early, mid-capture
    corr = correlate(CaptureSet.load(work))
    ls = corr.loss_summary()
    assert "node-2:eth0" in set(ls["missing_at"])
    text = report([work])
    section = re.search(r'id="s0-losses".*?<h3', text, re.S).group(0)
    for r in ls.itertuples():
        assert f"<td>{r.point}</td><td>{r.missing_at}</td><td class=\"num\">{r.lost:,}</td>" in section
    assert f"{int(ls['lost'].sum()):,} packets lost between points" in text
    # and the diagrams mark the packets they draw (each connection's first 10) where those went missing
    paths, nat = paths_and_nat(corr, work / "inventory.json")
    drawn = sequences(corr, paths, nat, work / "inventory.json", max_packets=10)
    marked = drawn.loc[drawn["missing_at"] != "", "missing_at"]
    assert len(marked) > 0
    for where, n in marked.value_counts().items():
        assert text.count(f"not seen at {where}") == n


def test_report_cli_rejects_a_non_html_output_name(tmp_path):
    from pcaptools.cli import main

    assert main(["report", str(CALICO), "-o", str(tmp_path / "r.txt")]) == 2
    assert not (tmp_path / "r.txt").exists()


@needs_chromium
@pytest.mark.parametrize("which", ["single", "comparison"])
def test_report_renders_in_headless_chromium(which, request, tmp_path):
    page = request.getfixturevalue(which)
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    assert 'data-js="ok"' in dom.stdout  # the page's script ran to its end
    for key in ("Capture points", "Clock offsets", "Connections", "Per-hop latency", "Losses between capture points",
                "calico-vxlan", "node-1:eth0", "default/backend-0"):  # fmt: skip
        assert key in dom.stdout
    if which == "comparison":
        assert "CNI comparison: vpc vs calico-vxlan" in dom.stdout
    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert res.returncode == 0 and _console(res.stderr) == []
    from matplotlib.image import imread

    px = imread(shot)[..., :3]
    assert px.shape[:2] == (2000, 1280)
    assert px.std() > 0.1  # not a blank page
    assert (px.min(axis=2) < 0.9).mean() > 0.05  # at least 5 % of the page is ink, not background


@needs_chromium
def test_connection_filter_in_the_browser_keeps_only_the_chosen_kind(single, calico_paths, tmp_path):
    _, paths = calico_paths
    probe = tmp_path / "probe.html"
    script = ("<script>document.addEventListener('DOMContentLoaded',()=>{const s=document.getElementById('s0-conn-kind');"
              "s.value='egress';s.dispatchEvent(new Event('change'));"
              "document.body.dataset.visible=document.getElementById('s0-conn-n').textContent;"
              "document.body.dataset.rows=[...document.querySelectorAll('#s0-conn tbody tr')].filter(r=>!r.hidden).length;"
              "document.body.dataset.opened=[...document.querySelectorAll('#s0-seq details')].filter(d=>d.open).map(d=>d.id).join(' ');"
              "});</script>")  # fmt: skip
    probe.write_text(single.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    last = int(paths["connection"].iloc[-1])
    dom = _chromium("--dump-dom", probe.as_uri() + f"#s0-conn-c{last}")  # a link from the table opens that diagram
    assert _console(dom.stderr) == []
    want = int((paths["kind"] == "egress").sum())
    assert want > 0
    assert f'data-visible="{want}"' in dom.stdout and f'data-rows="{want}"' in dom.stdout
    assert f'data-opened="s0-conn-c0 s0-conn-c{last}"' in dom.stdout  # the first is open by default


def test_hop_samples_are_the_samples_behind_hop_latency(calico_paths):
    from pcaptools.correlate.latency import hop_samples

    corr, _ = calico_paths
    s = hop_samples(corr.hops)
    med = s.groupby(["from_point", "to_point"])["latency_ns"].median().round().astype(np.int64)
    lat = corr.hop_latency.set_index(["from_point", "to_point"])
    assert len(s) == int(lat["count"].sum())
    assert (med.reindex(lat.index) == lat["median_ns"]).all()


def test_report_says_how_many_packets_of_each_connection_its_diagram_draws(single, calico_paths):
    from pcaptools.report import DEFAULT_MAX_PACKETS

    corr, paths = calico_paths
    nat = paths_and_nat(corr, CALICO / "inventory.json")[1]
    seq = sequences(corr, paths, nat, CALICO / "inventory.json", max_packets=DEFAULT_MAX_PACKETS)
    expected = {int(c): g["packet"].nunique() for c, g in seq.groupby("connection")}
    text = single.read_text(encoding="utf-8")
    said = {int(c): int(n) for c, n in re.findall(r'<details id="s0-conn-c(\d+)".*?packets in the capture, the first (\d+) drawn', text, re.S)}
    assert said == {int(c): expected.get(int(c), 0) for c in paths["connection"]}
    assert any(n > 1 for n in said.values())
