"""Every command, misused: usage line + one ``pcaptools:`` line, exit 2, never a traceback; quiet when piped to head."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from pcaptools.cli import _command, main

ROOT = Path(__file__).resolve().parents[1]
EYE = str(ROOT / "tests" / "data" / "own" / "eth.pcap")
CALICO = ROOT / "sample_pcaps" / "calico-vxlan"


def _commands() -> list[tuple[list[str], object]]:
    """(argv prefix, click command) of every leaf command, found from the app (new commands are covered too)."""
    out = []

    def walk(c, prefix):
        subs = getattr(c, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*prefix, name])
        else:
            out.append((prefix, c))

    walk(_command(), [])
    return out


COMMANDS = _commands()
IDS = [" ".join(p) for p, _ in COMMANDS]


def _annotation(p):
    return getattr(getattr(p, "type_descriptor", None), "annotation", None)


def _filled(cmd, bad: object = None) -> list[str]:
    """Arguments that parse: every required parameter given a value of its type ('abc' for ``bad``)."""
    args: list[str] = []
    for p in cmd.params:
        if p is not bad and not p.required:
            continue
        ann = _annotation(p)
        value = "abc" if p is bad else "1" if ann in (int, float, list[int], list[float]) else EYE
        args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return args


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def _assert_usage_error(code: int, text: str, argv: list[str]) -> None:
    assert code == 2, (argv, text)
    assert "Traceback" not in text, argv
    lines = [x for x in text.splitlines() if x.strip()]
    assert lines[0].startswith(f"Usage: pcaptools {argv[0]}"), (argv, text)
    assert sum(x.startswith("pcaptools: ") for x in lines) == 1, (argv, text)


@pytest.mark.parametrize(("prefix", "cmd"), COMMANDS, ids=IDS)
def test_missing_argument_is_a_usage_error(prefix, cmd, capsys):
    if not any(p.required for p in cmd.params):
        pytest.skip("every parameter is optional")
    code, text = _run(prefix, capsys)
    _assert_usage_error(code, text, prefix)
    assert "Missing" in text


@pytest.mark.parametrize(("prefix", "cmd"), COMMANDS, ids=IDS)
def test_unknown_option_is_a_usage_error(prefix, cmd, capsys):
    argv = [*prefix, *_filled(cmd), "--no-such-option", "x"]
    code, text = _run(argv, capsys)
    _assert_usage_error(code, text, argv)
    assert "--no-such-option" in text


@pytest.mark.parametrize(("prefix", "cmd"), COMMANDS, ids=IDS)
def test_wrong_type_is_a_usage_error(prefix, cmd, capsys):
    numeric = [p for p in cmd.params if _annotation(p) in (int, float, list[int], list[float])]
    if not numeric:
        pytest.skip("no numeric parameter")
    for p in numeric:
        argv = [*prefix, *_filled(cmd, bad=p)]
        code, text = _run(argv, capsys)
        _assert_usage_error(code, text, argv)
        assert "abc" in text or "Invalid value" in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["paths", str(CALICO), "--window-ms", "nan"], "--window-ms"),
        (["paths", str(CALICO), "--window-ms", "0"], "--window-ms"),
        (["correlate", str(CALICO), "--window-ms", "-5"], "--window-ms"),
        (["correlate", str(CALICO), "--window-ms", "inf"], "--window-ms"),
        (["flows", EYE, "--idle-timeout", "inf"], "--idle-timeout"),
        (["flows", EYE, "--idle-timeout", "nan"], "--idle-timeout"),
        (["flows", EYE, "--idle-timeout", "0"], "--idle-timeout"),
        (["flows", EYE, "--seed", "70000"], "--seed"),
        (["flows", EYE, "--limit", "0"], "--limit"),
        (["decode", EYE, "-o", "/nonexistent-dir/x.parquet"], "does not exist"),
        (["flows", EYE, "-o", "/nonexistent-dir/x.csv"], "does not exist"),
        (["merge", str(CALICO), "-o", "/nonexistent-dir/m.pcapng"], "does not exist"),
        (["decode", EYE, "-o", "x.txt"], ".parquet or .csv"),
        (["decode", EYE, "-o", "x.parquet", "--vxlan-port", "70000"], "1-65535"),
        (["show", EYE, "--", "-1"], "RECORD"),
    ],
)
def test_meaningless_numbers_and_unwritable_outputs_are_refused(argv, needle, capsys):
    code, text = _run(argv, capsys)
    _assert_usage_error(code, text, argv)
    assert needle in text


def test_errors_name_only_options_the_command_has(tmp_path, capsys):
    for cmd in ("paths", "compare"):
        code, text = _run([cmd, str(tmp_path)], capsys)
        assert code == 2 and "manifest.json" in text and "--point" not in text, text


def test_a_file_that_is_neither_manifest_nor_capture_is_one_clear_line(tmp_path, capsys):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(7, 200)))  # not UTF-8 JSON, no capture magic
    for cmd in ("paths", "correlate", "compare"):
        code, text = _run([cmd, str(junk)], capsys)
        assert code == 2 and "Traceback" not in text, text
        assert text.startswith("pcaptools: ") and text.count("\n") == 1 and str(junk) in text


def test_help_shows_flags_as_flags_and_examples(capsys):
    for prefix, _ in COMMANDS:
        assert main([*prefix, "--help"]) == 0
        text = capsys.readouterr().out
        assert "<bool>" not in text and "<list[" not in text and "{" not in text.splitlines()[0], prefix
        if prefix[0] != "lab":
            examples = [x for x in text.splitlines() if x.strip().startswith("Example:")]
            assert examples and all(f"pcaptools {prefix[0]}" in x for x in examples), prefix  # one per line
    assert main(["flows", "--help"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("--json"))
    assert line.split()[1][0].isupper()  # the help text follows the flag


def test_cli_works_without_click_installed():
    code = "import sys; sys.modules['click'] = None\nfrom pcaptools.cli import main\nsys.exit(main(['info']))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "pcaptools: Missing argument" in res.stderr


@pytest.mark.skipif(not (CALICO / "manifest.json").exists(), reason="no lab samples")
@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_output_piped_into_head_ends_quietly(extra):
    proc = subprocess.Popen([sys.executable, "-m", "pcaptools.cli", "paths", str(CALICO), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    fcntl.fcntl(proc.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: a small pipe, so writes hit the closed end
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 0, err
    assert first[:1].isdigit() or first.startswith(b"{")
    # a fresh checkout compiles numba's kernels on this first run and says so; nothing else may reach stderr
    err = "".join(x for x in err.splitlines(keepends=True) if not x.startswith(("pcaptools: compiling", "pcaptools: compiled")))
    assert "Traceback" not in err and "Broken pipe" not in err and err == ""


COMBINED = ROOT / "tests" / "data" / "peer" / "community-id-spec" / "pcaps" / "combined.pcap"


@pytest.mark.parametrize("width", [80, 200])
def test_flows_table_brackets_ipv6_names_protocols_and_shows_icmp_types(width, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["flows", str(COMBINED), "--json"]) == 0
    flows = __import__("json").loads(capsys.readouterr().out)["flows"]
    assert main(["flows", str(COMBINED), "--limit", "50"]) == 0
    text = capsys.readouterr().out
    assert all(len(line) <= width for line in text.splitlines())
    v6 = [f for f in flows if ":" in f["orig_h"] and f["proto"] in (6, 17)]
    assert v6 and all(f"[{f['orig_h']}]:{f['orig_p']} → [{f['resp_h']}]:{f['resp_p']}" in text or
                      (f"[{f['orig_h']}]:{f['orig_p']}" in text and f"[{f['resp_h']}]:{f['resp_p']}" in text) for f in v6)  # fmt: skip
    icmp = [f for f in flows if f["proto"] in (1, 58)]
    assert icmp
    for f in icmp:
        name = "icmp" if f["proto"] == 1 else "icmpv6"
        assert f"{name} type {f['orig_p']}" in text
        assert f"{f['orig_h']}:{f['orig_p']}" not in text  # a type is not a port
    assert {f["proto_name"] for f in flows if f["proto_name"]} <= {w for line in text.splitlines() for w in line.split()}


def test_python_dash_m_pcaptools_runs_the_same_command_line():
    r = subprocess.run([sys.executable, "-m", "pcaptools", "info", "--no-such-option"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no such option" in r.stderr.lower() and "pcaptools info" in r.stderr
