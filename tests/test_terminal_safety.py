"""Names from files cannot drive the terminal: escapes, OSC 8 links, newlines and rich markup are shown inert.

A capture set is built in tmp_path from sample_pcaps/vpc with hostile names in its directory name,
manifest (node, interface), inventory (node, pod, service) and, through ``merge``, in a pcapng's
if_name / if_description and packet comments; every command's human output is checked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pcaptools.cli import main

ROOT = Path(__file__).resolve().parents[1]
VPC = ROOT / "sample_pcaps" / "vpc"
CALICO = ROOT / "sample_pcaps" / "calico-vxlan"
EVIL = "\x1b[31mRED\x1b]8;;file:///etc/passwd\x07click\x1b]8;;\x07\nFORGED [/] [link=file:///etc/passwd]L[/link] [blink]B\r\u202e"
EVIL_DIR = "set\x1b[2J\x07\nFORGED-DIR [blink]d[bold]"  # no '/' in a directory name

pytestmark = pytest.mark.skipif(not (VPC / "manifest.json").exists(), reason="no lab samples under sample_pcaps/")


def _hostile(text: str, names: list[str]) -> str:
    for name in names:
        text = text.replace(json.dumps(name), json.dumps(name + EVIL))
    return text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile") / EVIL_DIR
    shutil.copytree(VPC, d)
    man = json.loads((d / "manifest.json").read_text())
    for c in man["captures"][::3]:
        c["interface"] = c["interface"] + EVIL
    (d / "manifest.json").write_text(_hostile(json.dumps(man), ["node-3"]))
    inv = (d / "inventory.json").read_text()
    (d / "inventory.json").write_text(_hostile(inv, ["node-3", "client-0", "backend-1", "web", "dns-0"]))
    return d


def _out(argv: list[str], capsys, env_cols: int = 120, monkeypatch=None) -> str:
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return cap.out + cap.err


def _assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    lines = text.splitlines()
    assert not any(line.lstrip("│ ").startswith(("FORGED", "click")) for line in lines), [x for x in lines if "FORGED" in x][:3]


def test_names_are_escaped_in_paths_correlate_and_compare(hostile, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    for argv in (["paths", str(hostile)], ["paths", str(hostile), "--brief"], ["correlate", str(hostile)]):
        text = _out(argv, capsys)
        _assert_inert(text)
        assert "\\x1b[31mRED" in text, argv  # the name is there, shown escaped
    text = _out(["compare", str(hostile), str(VPC)], capsys)  # directory names label the columns
    _assert_inert(text)
    assert "FORGED-DIR [blink]d[bold]" in text and "set\\x1b[2J\\x07\\nFORGED-DIR" in text  # markup shown, not applied


def test_pcapng_interface_names_and_comments_are_escaped(hostile, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    merged = tmp_path / "merged.pcapng"
    _assert_inert(_out(["merge", str(hostile), "-o", str(merged), "--dedup"], capsys))
    text = _out(["info", str(merged)], capsys)
    _assert_inert(text)
    assert "\\x1b[31mRED" in text and "[link=file:///etc/passwd]L[/link]" in text
    for argv in (["flows", str(merged)], ["show", str(merged), "0"], ["decode", str(merged), "-o", str(tmp_path / "p.csv")]):
        _assert_inert(_out(argv, capsys))
    # --json keeps the exact names
    assert main(["info", str(merged), "--json"]) == 0
    names = [i["name"] for i in json.loads(capsys.readouterr().out)["files"][0]["interfaces"]]
    assert any(n.endswith(EVIL) for n in names)


def test_error_messages_escape_names_too(tmp_path, capsys):
    d = tmp_path / EVIL_DIR
    d.mkdir()
    assert main(["paths", str(d)]) == 2
    err = capsys.readouterr().err
    _assert_inert(err)
    assert err.startswith("pcaptools: ") and err.count("\n") == 1


@pytest.mark.parametrize("width", [80, 120])
def test_paths_summary_fits_the_terminal_and_keeps_names_whole(width, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    text = _out(["paths", str(CALICO), "--brief"], capsys)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    inv = json.loads((CALICO / "inventory.json").read_text())
    pods = [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in inv["items"] if i["kind"] == "Pod"]
    clients = {p for p in pods if "client" in p}
    assert clients and all(any(p in line for line in lines) for p in clients)  # never broken mid-word
    assert "µs" in text and " us" not in text


@pytest.mark.parametrize("width", [80, 120])
def test_correlate_tables_fit_the_terminal_and_keep_point_names_whole(width, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    text = _out(["correlate", str(CALICO)], capsys)
    assert all(len(line) <= width for line in text.splitlines())
    man = json.loads((CALICO / "manifest.json").read_text())
    points = {f"{c['node']}:{c['interface']}" for c in man["captures"] if c.get("interface")}
    assert points and all(p in text for p in points)
    assert "µs" in text and " us" not in text and "…" not in text


@pytest.mark.parametrize("grouped", [False, True])  # grouped: the listing by route (more connections than LIST_LIMIT)
@pytest.mark.parametrize("which", ["calico", "hostile"])
def test_paths_plain_text_shortcut_prints_what_rich_prints(which, hostile, grouped, monkeypatch):
    """Piped `paths` output is laid out without rich where rich adds nothing: byte for byte what rich prints (a recording
    console takes rich's own path), at widths that fold table cells and wrap long lines, with escaped hostile names."""
    import io

    from rich.console import Console

    import pcaptools.render.terminal as terminal
    from pcaptools.k8s.paths import load_paths
    from pcaptools.render.terminal import _Lines, print_paths

    if grouped:
        monkeypatch.setattr(terminal, "LIST_LIMIT", 3)
    ps = load_paths(CALICO if which == "calico" else hostile)
    for width in (70, 100, 139, 140, 150, 160, 230):
        for brief in (False, True):
            outs = []
            for record in (False, True):
                con = Console(file=io.StringIO(), width=width, markup=False, highlight=False, emoji=False, soft_wrap=False, record=record)
                assert _Lines(con).plain is not record
                print_paths(ps, con, brief=brief)
                outs.append(con.file.getvalue())
            assert outs[0] == outs[1], (width, brief)
            assert outs[0].count("\n") > len(ps.paths) or (grouped and brief)
            assert ("connections on" in outs[0]) is grouped
