"""Servers and clients that run inside lab pods (``python -m pcaptools.lab.traffic server|client``).

The server prints ``READY`` once its socket listens, then one JSON line per request with the peer
address it saw (the truth's cross-check). The client runs a JSON list of jobs and prints one JSON
line per connection with the 5-tuple it used. Standard library only: this runs in every pod.
The parent side (:class:`Server`, :func:`run_clients`) starts them with ``ip netns exec``.

IPv6: a server in a namespace with a global IPv6 address listens on one dual-stack socket (``::``,
``IPV6_V6ONLY`` off) and logs IPv4 peers without the ``::ffff:`` mapping; elsewhere it listens on IPv4
only, as before. A client job's family is its destination's.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

READY = "READY"
_ANSWER_TIMEOUT = 10.0


# ---------------------------------------------------------------- inside the pod

def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _has_ipv6() -> bool:
    """Whether this namespace has a global IPv6 address (``/proc/net/if_inet6`` lists it; scope 00 is global)."""
    try:
        with open("/proc/net/if_inet6") as f:
            return any(line.split()[3] == "00" for line in f if len(line.split()) > 3)
    except OSError:
        return False


def _unmap(addr: tuple[Any, ...]) -> list[Any]:
    """(host, port) of a socket address, an IPv4-mapped IPv6 host written as IPv4."""
    host = str(addr[0])
    return [host[7:] if host.startswith("::ffff:") and "." in host else host, addr[1]]


def _listener(kind: int, port: int) -> socket.socket:
    """A socket bound to ``port`` on every address: dual-stack where the namespace has IPv6, else IPv4."""
    if _has_ipv6():
        srv = socket.socket(socket.AF_INET6, kind)
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        host = "::"
    else:
        srv = socket.socket(socket.AF_INET, kind)
        host = "0.0.0.0"
    if kind == socket.SOCK_STREAM:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    return srv


def _serve_tcp_conn(conn: socket.socket, peer: list[Any], lock: threading.Lock) -> None:
    conn.settimeout(_ANSWER_TIMEOUT)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        first = data.split(b"\r\n", 1)[0].decode("ascii", "replace").split()
        size = int(first[1].lstrip("/")) if len(first) >= 2 and first[1].lstrip("/").isdigit() else 0
        body = bytes(range(256)) * (size // 256) + bytes(size % 256)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body)
        local = _unmap(conn.getsockname())
        with lock:
            _emit({"proto": "tcp", "peer": peer, "local": local, "bytes": size})
    except OSError as exc:
        with lock:
            _emit({"proto": "tcp", "peer": peer, "error": str(exc)})
    finally:
        conn.close()


def serve(proto: str, port: int) -> None:
    """Answer TCP ``GET /<n>`` with n bytes, or echo UDP datagrams, logging each peer."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lock = threading.Lock()
    if proto == "tcp":
        srv = _listener(socket.SOCK_STREAM, port)
        srv.listen(64)
        _emit_ready(port)
        while True:
            conn, peer = srv.accept()
            threading.Thread(target=_serve_tcp_conn, args=(conn, _unmap(peer), lock), daemon=True).start()
    srv = _listener(socket.SOCK_DGRAM, port)
    _emit_ready(port)
    while True:
        data, peer = srv.recvfrom(65535)
        srv.sendto(b"A " + data, peer)
        _emit({"proto": "udp", "peer": _unmap(peer), "local": ["0.0.0.0", port], "bytes": len(data)})


def _emit_ready(port: int) -> None:
    sys.stdout.write(f"{READY} {port}\n")
    sys.stdout.flush()


def _client_job(job: dict[str, Any]) -> dict[str, Any]:
    proto, dst, dport = job["proto"], job["dst"], int(job["port"])
    out: dict[str, Any] = {"id": job["id"], "proto": proto, "dst": dst, "dport": dport, "ok": False}
    wait = float(job.get("timeout") or _ANSWER_TIMEOUT)
    v6 = ":" in dst
    bind = ("::" if v6 else "0.0.0.0", int(job["sport"])) if job.get("sport") else None  # a fixed source port
    try:
        if proto == "tcp":
            with socket.create_connection((dst, dport), timeout=wait, source_address=bind) as s:
                out["src"], out["sport"] = s.getsockname()[:2]
                s.sendall(f"GET /{int(job.get('size', 100))} HTTP/1.0\r\nHost: {dst}\r\n\r\n".encode())
                got = 0
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                out["received"] = got
                out["ok"] = got > 0
        else:
            with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(wait)
                if bind:
                    s.bind(bind)
                s.connect((dst, dport))
                out["src"], out["sport"] = s.getsockname()[:2]
                s.send(f"Q {job['id']} {'x' * int(job.get('size', 32))}".encode())
                out["received"] = len(s.recv(65535))
                out["ok"] = True
    except OSError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def client(jobs: list[dict[str, Any]]) -> None:
    """Run jobs one after another, printing one JSON result per job."""
    for job in jobs:
        _emit(_client_job(job))


def main(argv: list[str] | None = None) -> int:
    """Entry point inside a pod: ``server --proto tcp --port 80`` or ``client --jobs JSON``."""
    ap = argparse.ArgumentParser(prog="python -m pcaptools.lab.traffic")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("client")
    c.add_argument("--jobs", required=True, help="JSON list of {id, proto, dst, port, size[, sport, timeout]}")
    args = ap.parse_args(argv)
    if args.cmd == "server":
        serve(args.proto, args.port)
    else:
        client(json.loads(args.jobs))
    return 0


# ---------------------------------------------------------------- the lab's side

class Server:
    """A server process inside a namespace; :meth:`start` returns once its socket listens."""

    def __init__(self, ns: str, proto: str, port: int, label: str) -> None:
        self.ns, self.proto, self.port, self.label = ns, proto, port, label
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[dict[str, Any]] = []

    def start(self, timeout: float = 15.0) -> None:
        from pcaptools.errors import LabError
        from pcaptools.lab.netns import spawn  # the server dies with the lab, however the lab dies

        self.proc = spawn([sys.executable, "-m", "pcaptools.lab.traffic", "server", "--proto", self.proto,
                           "--port", str(self.port)], ns=self.ns, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            first = self._lines.get(timeout=timeout)
        except queue.Empty:
            first = None
        if not first or not first.startswith(READY):
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise LabError(f"{self.label}: {self.proto} server on port {self.port} in {self.ns} did not "
                           f"become ready within {timeout:.0f} s: {err.strip()[-300:] or 'no output'}")

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def stop(self) -> list[dict[str, Any]]:
        """Stop the server and return every peer record it logged."""
        if self.proc is None:
            return self.log
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        while True:
            try:
                line = self._lines.get(timeout=2)
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("{"):
                self.log.append(json.loads(line))
        self.proc = None
        return self.log


def run_clients(ns: str, jobs: list[dict[str, Any]], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Run ``jobs`` from inside ``ns`` and return the client's result per job."""
    from pcaptools.lab.netns import run

    out = run([sys.executable, "-m", "pcaptools.lab.traffic", "client", "--jobs", json.dumps(jobs)],
              ns=ns, timeout=timeout)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


if __name__ == "__main__":
    raise SystemExit(main())
