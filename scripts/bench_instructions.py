"""Instructions per request of a server's whole process tree, counted by valgrind's callgrind:
a figure that does not move with the machine's load, for comparing two variants of one server.

``python scripts/bench_instructions.py [--requests 400,2000] [--close] [--tls] [--floor]
-- SERVE ARGS...``

The command ``python -m prefork serve SERVE ARGS... -b 127.0.0.1:PORT`` runs under
``valgrind --tool=callgrind --trace-children=yes`` (so the master and every worker are counted),
is sent N requests over one kept-alive connection (or N connections with ``--close``), one
after the other, and is stopped with SIGTERM; the instructions of the master's children (the
workers, and the import probe, the same in every run) are summed.  The master is left out
unless ``--master``: its timers run by the clock, and under valgrind on a loaded machine the
wall time of a run, hence the master's count, varies.
Run for two values of N, the difference divided by the difference of N is the cost of one
request, without the start and the stop.  Example, the access log's cost::

    python scripts/bench_instructions.py -- workers.wsgi_hello:app -w 1
    python scripts/bench_instructions.py -- workers.wsgi_hello:app -w 1 --access-logfile /tmp/a

(callgrind runs the code about 50 times slower: keep N in the thousands.)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from procs import free_port, root_env, wait_for  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"
CLOSE = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n"


def _response(sock: socket.socket, pending: bytearray) -> bool:
    """Read one response (a head with Content-Length, then its body) off ``sock``; True if
    the server keeps the connection open."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        pending += chunk
    head, _, _ = bytes(pending).partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    end = len(head) + 4 + (int(match.group(1)) if match else 0)
    while len(pending) < end:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        pending += chunk
    del pending[:end]
    return re.search(rb"(?im)^connection:\s*close", head) is None


TLS: list[ssl.SSLContext] = []  # the client's context with --tls
KEEP: list[str] = []  # --keep DIR


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    return TLS[0].wrap_socket(sock, server_hostname="127.0.0.1") if TLS else sock


def drive(port: int, count: int, close: bool) -> None:
    if close:
        for _ in range(count):
            with _connect(port) as sock:
                sock.sendall(CLOSE)
                _response(sock, bytearray())
        return
    sock = _connect(port)
    pending = bytearray()
    try:
        for _ in range(count):
            sock.sendall(REQUEST)
            if not _response(sock, pending):  # (a limit of requests per connection)
                sock.close()
                sock = _connect(port)
    finally:
        sock.close()


def count(serve: list[str], requests: int, close: bool, master: bool,
          floor: bool = False) -> int:
    """Instructions of the master's children (and of the master with ``master``) for one run
    of ``requests`` requests."""
    port = free_port(socket.SOCK_STREAM)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.%p")
        # No address-space randomisation either (setarch -R), where setarch is.
        fixed = ["setarch", os.uname().machine, "-R"] if shutil.which("setarch") else []
        command = ([str(ROOT / "scripts" / "wsgi_floor.py"), *serve] if floor else
                   ["-m", "prefork", "serve", *serve, "--log-level", "warning"])
        argv = [*fixed, "valgrind", "--tool=callgrind", "--trace-children=yes", "--quiet",
                f"--callgrind-out-file={out}", sys.executable, *command,
                "-b", f"127.0.0.1:{port}"]
        # One hash seed: with random ones, the counts of two runs differ by more than a request.
        proc = subprocess.Popen(argv, cwd=ROOT, env=root_env({"PYTHONHASHSEED": "0"}),
                                stderr=subprocess.DEVNULL)
        try:
            def up() -> bool:  # (a worker answering, not only the master's listener)
                try:
                    drive(port, 1, True)
                except OSError as exc:
                    if not isinstance(exc, ConnectionRefusedError):
                        print(f"not up yet: {exc!r}", file=sys.stderr)
                    return False
                return True
            wait_for(up, 600, 0.5, "the server under valgrind", error=RuntimeError)
            drive(port, 20, close)  # warm: the worker's first requests import and allocate
            drive(port, requests, close)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        total = 0
        for name in os.listdir(tmp):
            if name == f"cg.{proc.pid}" and not master:
                continue  # (valgrind runs python in its own pid: this is the master)
            if KEEP:  # --keep: the workers' profiles, for callgrind_annotate
                shutil.copy(Path(tmp, name), Path(KEEP[0], f"{requests}.{name}"))
            text = Path(tmp, name).read_text(errors="replace")
            match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
            if match:
                total += int(match.group(1))
        return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", default="400,2000",
                        help="two request counts, comma-separated (default 400,2000)")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--master", action="store_true",
                        help="count the master too (its timers run by the clock, so its count "
                             "grows with the wall time a run takes: noisy under load)")
    parser.add_argument("--tls", action="store_true",
                        help="over HTTPS (a self-signed certificate made with openssl)")
    parser.add_argument("--floor", action="store_true",
                        help="run scripts/wsgi_floor.py with these args instead (issue 20's "
                             "pure-Python floor: -- workers.wsgi_hello:app -w 1)")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the workers' callgrind profiles in DIR (N.cg.PID; a "
                             "function's cost per request: its count at the higher N minus at "
                             "the lower, over the difference of N; callgrind_annotate reads them)")
    parser.add_argument("serve", nargs=argparse.REMAINDER, help="-- then prefork serve's args")
    args = parser.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        KEEP.append(args.keep)
    if shutil.which("valgrind") is None:
        print("bench_instructions: needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    serve = [a for a in args.serve if a != "--"] or ["workers.wsgi_hello:app", "-w", "1"]
    if args.tls:  # a self-signed certificate, made once (openssl)
        folder = tempfile.mkdtemp(prefix="bench-instructions-tls-")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-keyout", f"{folder}/key.pem", "-out",
                        f"{folder}/cert.pem"], check=True, capture_output=True)
        serve += ["--certfile", f"{folder}/cert.pem", "--keyfile", f"{folder}/key.pem"]
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        TLS.append(context)
    low, high = (int(n) for n in args.requests.split(","))
    first = count(serve, low, args.close, args.master, args.floor)
    second = count(serve, high, args.close, args.master, args.floor)
    per = (second - first) / (high - low)
    name = ("floor " if args.floor else "") + " ".join(serve)
    print(f"{name}: {per / 1000:.1f}k instructions/request "
          f"({'close' if args.close else 'keep-alive'}; {low}: {first}, {high}: {second})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
