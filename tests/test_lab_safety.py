"""The lab cannot hurt its host: unique runs with registries, cleanup of exactly what a run made,
prefix validation, children that die with the lab, outputs that follow no planted link (issue 15)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pcaptools.errors import LabError
from tests.lab_support import REASON, needs_lab


def _prefix() -> str:
    return f"ptl{secrets.token_hex(2)}-"


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(prefix))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pcaptools.cli", *args], capture_output=True, text=True,
                          timeout=300)


def _alive(pid: int, start: int | None) -> bool:
    """The process is still there and is still the one recorded (same start time); zombies count as gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = raw[raw.rindex(b")") + 2:].split()
    return fields[0] != b"Z" and int(fields[19]) == start


# ------------------------------------------------------------------ prefix validation

@pytest.mark.parametrize("prefix", ["a b", "ptl\tx", "a/b", "..", "ab..", "../etc", "x" * 17, "-ab", "p", "",
                                    "ptl\n-", "ptlé-"])
@pytest.mark.parametrize("command", ["run", "clean"])
def test_unsafe_prefix_is_rejected_in_one_line_with_exit_2(tmp_path, capsys, prefix, command):
    from pcaptools.cli import main

    args = ["lab", command, "--prefix", prefix] + (["--out", str(tmp_path / "out")] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pcaptools: --prefix {prefix!r} is not a safe namespace prefix")
    assert "try --prefix ptlab-" in err[0]
    assert not (tmp_path / "out").exists()  # rejected before anything was created


@pytest.mark.parametrize("prefix", ["ptlab-", "ptl1a2b-", "Lab_2", "ab"])
def test_safe_prefixes_are_accepted(prefix):
    from pcaptools.lab.registry import validate_prefix

    assert validate_prefix(prefix) == prefix


# ------------------------------------------------------------------ registry and stale runs

def test_a_run_is_live_while_its_owner_holds_the_lock_and_stale_once_it_is_killed(tmp_path):
    """The owner is a separate process: SIGKILL releases its flock, and reap() then removes the registry."""
    from pcaptools.lab import registry

    code = ("import sys; from pathlib import Path; from pcaptools.lab import registry;"
            "r = registry.open_run(sys.argv[1], base=Path(sys.argv[2])); print(r.run_id, flush=True);"
            "sys.stdin.read()")
    prefix = _prefix()
    owner = subprocess.Popen([sys.executable, "-c", code, prefix, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        run_id = owner.stdout.readline().strip()
        assert run_id.startswith(prefix) and len(run_id) == len(prefix) + 6
        rec = json.loads((tmp_path / f"{run_id}.json").read_text())
        assert rec["owner_pid"] == owner.pid and rec["run_id"] == run_id and rec["namespaces"] == []
        live = registry.reap(prefix, base=tmp_path)
        assert live.live == [run_id] and live.runs == [] and (tmp_path / f"{run_id}.json").exists()
    finally:
        owner.kill()
        owner.wait()
    stale = registry.reap(prefix, base=tmp_path)
    assert stale.runs == [run_id] and stale.live == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_reap_signals_a_recorded_pid_only_while_it_is_still_the_recorded_process(tmp_path):
    """A PID reused by an unrelated process (other start time) is never signalled."""
    from pcaptools.lab import registry

    prefix = _prefix()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = registry._start_time(sleeper.pid)
        for recorded, survives in ((start + 1, True), (start, False)):
            run_id = f"{prefix}{secrets.token_hex(3)}"
            (tmp_path / f"{run_id}.lock").touch()  # nobody holds it: the owner is gone
            (tmp_path / f"{run_id}.json").write_text(json.dumps(
                {"format": registry.FORMAT, "run_id": run_id, "namespaces": [],
                 "pids": [{"pid": sleeper.pid, "start": recorded, "what": "tcpdump"}]}))
            assert registry.reap(prefix, base=tmp_path).runs == [run_id]
            deadline = time.monotonic() + 10
            while not survives and sleeper.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)  # polling process exit
            assert (sleeper.poll() is None) == survives
            assert list(tmp_path.iterdir()) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_runs_under_one_prefix_get_different_ids(tmp_path):
    from pcaptools.lab import registry

    prefix = _prefix()
    a, b = registry.open_run(prefix, base=tmp_path), registry.open_run(prefix, base=tmp_path)
    try:
        assert a.run_id != b.run_id and a.ns_prefix == a.run_id + "-"
        assert not a.ns_prefix.startswith(b.ns_prefix) and not b.ns_prefix.startswith(a.ns_prefix)
        with pytest.raises(LabError, match="does not carry the run id"):
            a.add_namespaces([b.ns_prefix + "node-1"])
        assert registry.reap(prefix, base=tmp_path).live == sorted([a.run_id, b.run_id])
    finally:
        a.close()
        b.close()
    assert list(tmp_path.iterdir()) == []


def test_a_registry_directory_others_can_write_is_refused(tmp_path):
    from pcaptools.lab import registry

    base = tmp_path / "runs"
    base.mkdir(mode=0o777)
    base.chmod(0o777)
    with pytest.raises(LabError, match="writable only by it"):
        registry.open_run(_prefix(), base=base)
    assert list(base.iterdir()) == []


@needs_lab
@pytest.mark.lab
def test_clean_leaves_a_foreign_namespace_with_the_same_prefix_and_a_run_id_like_name():
    prefix = _prefix()
    foreign = [prefix + "node-1", prefix + "a1b2c3-node-1", prefix + "x\x1b[31m"]
    for name in foreign:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        res = _cli("lab", "clean", "--prefix", prefix)
        assert res.returncode == 0, res.stderr
        assert _namespaces(prefix) == sorted(foreign)
        assert "removed" not in res.stdout
        assert "no lab run registered" in res.stdout and all(ascii(n) in res.stdout for n in foreign)
        assert "\x1b" not in res.stdout  # a foreign name reaches the terminal escaped
    finally:
        for name in foreign:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert _namespaces(prefix) == []


# ------------------------------------------------------------------ killed and concurrent runs

def _registry_of(prefix: str, proc: subprocess.Popen[str], want_state: str, limit: float = 240) -> dict:
    """Poll the run registry (the lab's own readiness record) until the run under ``prefix`` reaches ``want_state``."""
    from pcaptools.lab.registry import read_runs

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for rec in read_runs():
            if rec["prefix"] == prefix and rec["state"] == want_state:
                return rec
        time.sleep(0.05)  # polling the registry for a state change, not waiting for readiness blindly
    raise AssertionError(f"the run under {prefix} never reached {want_state!r}")


@needs_lab
@pytest.mark.lab
def test_sigkill_of_a_run_leaves_no_capture_running_and_clean_removes_its_namespaces(tmp_path):
    prefix = _prefix()
    proc = subprocess.Popen([sys.executable, "-m", "pcaptools.cli", "lab", "run", "--cni", "calico-vxlan",
                             "--connections", "400", "--out", str(tmp_path), "--prefix", prefix],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rec = _registry_of(prefix, proc, "capturing")
    except BaseException:
        proc.kill()
        raise
    run_id = rec["run_id"]
    assert _namespaces(prefix) == rec["namespaces"] and all(n.startswith(run_id + "-") for n in rec["namespaces"])
    assert {v["ns"] for v in rec["veths"]} <= set(rec["namespaces"]) and len(rec["veths"]) >= 10
    tcpdumps = [p for p in rec["pids"] if p["what"].startswith("tcpdump ")]
    servers = [p for p in rec["pids"] if p["what"].startswith("server ")]
    assert len(tcpdumps) >= 14 and len(servers) >= 4  # calico: 5 veths, 3 uplinks, 3 vxlan, nlb, client, internet
    assert all(_alive(p["pid"], p["start"]) for p in tcpdumps + servers)
    in_ns = {n: subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout.split()
             for n in rec["namespaces"]}
    assert sum(len(v) for v in in_ns.values()) >= len(tcpdumps) + len(servers)

    proc.kill()  # SIGKILL: no handler, no finally
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 20
    left = tcpdumps + servers
    while left and time.monotonic() < deadline:
        left = [p for p in left if _alive(p["pid"], p["start"])]
        time.sleep(0.05)  # polling process exit
    assert left == []
    while time.monotonic() < deadline and any(
            subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout.split()
            for n in rec["namespaces"]):
        time.sleep(0.05)  # the client of the killed run may take a moment to die too
    for n in rec["namespaces"]:  # no process of the run remains inside its namespaces
        assert subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout.split() == [], n
    assert _namespaces(prefix) == rec["namespaces"]  # nobody cleaned up: SIGKILL left the namespaces

    res = _cli("lab", "clean", "--prefix", prefix)
    assert res.returncode == 0, res.stderr
    assert sorted(line.removeprefix("removed ") for line in res.stdout.splitlines()) == rec["namespaces"]
    assert _namespaces(prefix) == []
    assert not Path(f"/run/pcaptools-lab/{run_id}.json").exists()
    assert not Path(f"/run/pcaptools-lab/{run_id}.lock").exists()


@needs_lab
@pytest.mark.lab
def test_two_runs_with_the_default_prefix_at_once_both_complete_with_full_captures(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "pcaptools.cli", "lab", "run", "--cni", "calico-vxlan",
                               "--connections", "8", "--out", str(o)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for o in outs]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err), o in zip(procs, results, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == str(o / "manifest.json")
        manifest = json.loads((o / "manifest.json").read_text())
        truth = json.loads((o / "truth.json").read_text())
        assert len(manifest["captures"]) == 14
        for c in manifest["captures"]:
            assert c["complete"], c
            assert (o / c["file"]).stat().st_size > 24, c
        assert len(truth["connections"]) == 8 and all(c["ok"] for c in truth["connections"])


# ------------------------------------------------------------------ output safety

def test_a_link_planted_after_the_check_is_not_followed(tmp_path):
    from pcaptools.lab import outdir

    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    out = outdir.check(tmp_path / "out")
    (out / "node-1").mkdir()
    (out / "node-1" / "eth0.pcap").symlink_to(outside)
    with pytest.raises(LabError, match=r"eth0.pcap is a symbolic link \(to .*outside.txt\).*does not follow"):
        outdir.open_new(out, "node-1/eth0.pcap")
    (out / "node-2").symlink_to(tmp_path)
    with pytest.raises(LabError, match="node-2 is a symbolic link"):
        outdir.write_text(out, "node-2/outside.txt", "overwritten\n")
    assert outside.read_text() == "precious\n"
    outdir.write_text(out, "node-3/eth0.pcap", "new\n")
    assert (out / "node-3" / "eth0.pcap").read_text() == "new\n"


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
@pytest.mark.parametrize("where", ["manifest.json", "node-1/eth0.pcap", "node-1", "."])
def test_lab_run_refuses_a_symlink_in_out_and_leaves_its_target_unchanged(tmp_path, capsys, where):
    from pcaptools.cli import main

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text("precious\n")
    out = tmp_path / "out"
    if where == ".":
        out.symlink_to(outside)
    else:
        link = out / where
        link.parent.mkdir(parents=True)
        link.symlink_to(outside / "manifest.json" if where.endswith((".json", ".pcap")) else outside)
    prefix = _prefix()
    assert main(["lab", "run", "--out", str(out), "--prefix", prefix]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a symbolic link (to " in err[0] and "does not follow links" in err[0], err
    assert err[0].startswith("pcaptools: --out: ")
    assert (outside / "manifest.json").read_text() == "precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["manifest.json"]
    assert _namespaces(prefix) == []
