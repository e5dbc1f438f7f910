"""The benchmark's workloads and contenders, and starting one as a server (scripts/procs.py)
that is ready once its workers exist and it answers a probe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from procs import ROOT, Proc

PY = sys.executable
HOST = "127.0.0.1"

# contenders with N worker processes
POOLS = ("prefork", "prefork-base", "floor", "wsgi-floor", "gunicorn", "gunicorn-preload",
         "uwsgi", "granian")

# -- workloads and contenders -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    app: str
    wsgi: str | None
    # "wrk", "wrk-ka" (-t2 -c32), "wrk-close" (the same, Connection: close), "wrk-tls" and
    # "wrk-tls-close" (the same two over HTTPS), "tcp", "udp"
    load: str
    contenders: tuple[str, ...]


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "http",
            "HTTP hello (BaseHTTPRequestHandler)",
            "workers.http_hello:Hello",
            "workers.http_hello:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn", "sync", "thread", "fork"),
        ),
        Workload(
            "tcp",
            "raw TCP echo (one connection per line)",
            "workers.echo:LineEcho",
            None,
            "tcp",
            ("prefork", "floor", "sync", "thread", "fork"),
        ),
        Workload(
            "wsgi",
            "WSGI hello, keep-alive clients (wrk -t2 -c32)",
            "workers.wsgi_hello:app",
            "workers.wsgi_hello:app",
            "wrk-ka",
            ("prefork", "wsgi-floor", "uwsgi", "granian", "gunicorn"),
        ),
        Workload(
            "wsgi-close",
            "WSGI hello, a new connection per request (wrk -t2 -c32 -H 'Connection: close')",
            "workers.wsgi_hello:app",
            "workers.wsgi_hello:app",
            "wrk-close",
            ("prefork", "wsgi-floor", "uwsgi", "granian", "gunicorn"),
        ),
        Workload(
            "wsgi-tls",
            "WSGI hello over TLS, keep-alive clients (wrk -t2 -c32, https)",
            "workers.wsgi_hello:app",
            "workers.wsgi_hello:app",
            "wrk-tls",
            ("prefork", "gunicorn"),  # pyuwsgi is built without SSL
        ),
        Workload(
            "wsgi-tls-close",
            "WSGI hello over TLS, a new connection (and handshake) per request",
            "workers.wsgi_hello:app",
            "workers.wsgi_hello:app",
            "wrk-tls-close",
            ("prefork", "gunicorn"),
        ),
        Workload(
            "raw",
            "raw TCP, minimal handler (recv, sendall; one connection per request)",
            "workers.raw_echo:Echo",
            None,
            "tcp",
            ("prefork", "floor", "sync"),
        ),
        Workload(
            "udp",
            "UDP echo",
            "workers.udp_echo:DatagramEcho",
            None,
            "udp",
            ("prefork", "floor", "sync", "thread", "fork"),
        ),
        Workload(
            "cpu",
            "CPU-bound (~4 ms pure Python per request)",
            "workers.cpu:Burn",
            "workers.cpu:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn", "sync", "thread", "fork"),
        ),
        Workload(
            "preload",
            "HTTP hello with a 100 MB structure preloaded",
            "scripts.bench_preload:Hello",
            "scripts.bench_preload:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn-preload", "gunicorn"),
        ),
    )
}


def contender_argv(
    name: str, work: Workload, port: int, workers: int, debug: bool = False
) -> list[str]:
    udp = work.load == "udp"
    hostport = f"{HOST}:{port}"
    if name == "floor":
        return [
            PY,
            str(ROOT / "scripts" / "bare_floor.py"),
            work.app,
            "-b",
            hostport,
            "-w",
            str(workers),
            *(["--udp"] if udp else []),
        ]
    if name == "wsgi-floor":  # the least a pure-Python WSGI server does (issue 20)
        assert work.wsgi is not None, work
        return [PY, str(ROOT / "scripts" / "wsgi_floor.py"), work.wsgi, "-b", hostport,
                "-w", str(workers)]
    if name == "granian":  # Rust (the granian package), its WSGI interface on HTTP/1.1
        assert work.wsgi is not None, work
        return [str(Path(PY).with_name("granian")), "--interface", "wsgi", "--http", "1",
                "--workers", str(workers), "--host", HOST, "--port", str(port),
                "--log-level", "warning", "--no-ws", work.wsgi]
    if name == "uwsgi":  # the compiled reference (the pyuwsgi package)
        assert work.wsgi is not None, work
        module, _, callable_ = work.wsgi.partition(":")
        # --http11-socket keeps connections alive and then ignores "Connection: close" (wrk
        # would measure keep-alive); --http-socket closes after every response.
        socket_option = "--http-socket" if work.load == "wrk-close" else "--http11-socket"
        return [
            str(Path(PY).with_name("uwsgi")),
            socket_option,
            hostport,
            "--processes",
            str(workers),
            "--wsgi-file",
            str(ROOT / (module.replace(".", "/") + ".py")),
            "--callable",
            callable_,
            "--master",
            "--disable-logging",
            "--die-on-term",
        ]
    tls = tls_flags() if work.load.startswith("wrk-tls") else []
    if name.startswith("gunicorn"):
        assert work.wsgi is not None, work
        preload = ["--preload", *tls] if name == "gunicorn-preload" else tls
        return [
            PY,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-b",
            hostport,
            "-k",
            "sync",
            "--log-level",
            "warning",
            *preload,
            work.wsgi,
        ]
    bind = f"udp://{hostport}" if udp else hostport
    argv = [PY, "-m", "prefork", "serve", work.app, "-b", bind, *tls]
    if name == "prefork-base":  # another checkout of prefork (BENCH_PREFORK_BASE), same flags
        base = os.environ.get("BENCH_PREFORK_BASE")
        if not base:
            raise SystemExit("bench: prefork-base needs BENCH_PREFORK_BASE=<a checkout>")
        return ["env", "-C", base, f"PYTHONPATH={base}", *argv, "-w", str(workers), "--mode",
                "prefork"]  # (run there: the working directory comes first on the path)
    if name == "prefork":
        argv += ["-w", str(workers), "--mode", "prefork"]
    else:
        argv += ["--mode", name]
    if debug:
        argv += ["--log-level", "debug"]
    return argv


# -- running a server ---------------------------------------------------------------------------


def tls_flags() -> list[str]:
    """``--certfile C --keyfile K`` for a self-signed certificate made once per run (openssl)."""
    global _TLS_DIR
    if _TLS_DIR is None:
        if shutil.which("openssl") is None:
            raise SystemExit("bench: the TLS workloads need the openssl command "
                             "(apt-get install openssl)")
        _TLS_DIR = tempfile.mkdtemp(prefix="prefork-bench-tls-")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", f"/CN={HOST}", "-keyout", f"{_TLS_DIR}/key.pem", "-out",
                        f"{_TLS_DIR}/cert.pem"], check=True, capture_output=True)
    return ["--certfile", f"{_TLS_DIR}/cert.pem", "--keyfile", f"{_TLS_DIR}/key.pem"]


_TLS_DIR: str | None = None


def http_get(port: int, timeout: float = 5.0, path: str = "/", tls: bool = False) -> bytes:
    """One HTTP/1.0 GET; returns the whole response (raises OSError on failure)."""
    with socket.create_connection((HOST, port), timeout=timeout) as plain:
        sock = plain
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(plain, server_hostname=HOST)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise OSError(f"bad response {data[:60]!r}")
    return data


def probe(load: str, port: int) -> bool:
    try:
        if load == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(0.2)
                sock.sendto(b"ping\n", (HOST, port))
                return sock.recv(64) == b"ping\n"
        if load == "tcp":
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"ping\n")
                return sock.recv(64) == b"ping\n"
        http_get(port, timeout=2, tls=load.startswith("wrk-tls"))
        return True
    except OSError:
        return False


class Server(Proc):
    """A contender started as a process (scripts/procs.py), its output appended to ``log``.

    ``workers`` is how many children to wait for (0 for the in-process servers); :meth:`ready`
    is true once they exist and the server answers a probe on ``port``.
    """

    def __init__(
        self, name: str, argv: list[str], port: int, load: str, workers: int, log: Path
    ) -> None:
        super().__init__(argv, log=log, name=name)
        self.port = port
        self.load = load
        self.workers = workers

    def ready(self) -> bool:
        return len(self.children()) >= self.workers and probe(self.load, self.port)

    def log_text(self) -> str:
        return self.text()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Wait until ``server`` is ready (RuntimeError if it exits or times out first); stop it
    (SIGTERM, with a deadline, then its group is killed) when the block ends."""
    try:
        yield server.wait_ready(server.ready)
    finally:
        server.stop()
