"""A graceful stop under load: what the clients of a server see when it gets TERM.

Each contender serves a WSGI app whose requests take ``--work-ms`` (so requests are in flight
when the signal comes) with 2 workers; ``wrk -c32`` runs for ``--duration`` seconds and the
server gets TERM after ``--term-after``; ``--connections`` (32) keep-alive clients (threads: wrk
counts the refused connections of a server that is gone as read errors, so its figures cannot
tell a stop that refuses from one that resets) send requests back to back and count each
outcome: served; refused (the stop says so at once: right); reset, or closed before the
response on a new connection (a connection the kernel accepted, lost); closed before the
response on a kept-alive one (the race an HTTP client retries).  Rounds alternate the
contenders.

    python scripts/bench_stop.py [--rounds 3] [--close] [--duration 3] [--term-after 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from procs import ROOT, free_port, wait_for

APP = '''
import time
def application(environ, start_response):
    time.sleep({work})
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
'''
def argv(name: str, port: int, bin_dir: Path) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if name == "prefork":
        return [sys.executable, "-m", "prefork", "serve", "stopapp:application", "-b", bind,
                "-w", "2", "--log-level", "warning"]
    gunicorn = str(bin_dir / "gunicorn")
    extra = ["-k", "gthread", "--threads", "4"] if name == "gunicorn-gthread" else []
    return [gunicorn, "-w", "2", *extra, "-b", bind, "--log-level", "warning",
            "stopapp:application"]


def connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


OUTCOMES = ("served", "refused", "reset", "closed_new", "closed_reused")


class Client(threading.Thread):
    """One keep-alive client: requests back to back until ``until``; each outcome counted.
    ``closed_reused``: a kept-alive connection closed before its response (the race every
    HTTP client retries); ``reset``/``closed_new``: a connection the kernel accepted, lost."""

    def __init__(self, port: int, until: float, close: bool) -> None:
        super().__init__(daemon=True)
        self.port, self.until = port, until
        self.request = b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
            b"Connection: close\r\n" if close else b"")
        self.counts = dict.fromkeys(OUTCOMES, 0)

    def run(self) -> None:
        sock: socket.socket | None = None
        while time.monotonic() < self.until:
            fresh = sock is None
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(self.request)
                data = b""
                while not data.endswith(b"ok\n"):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise EOFError
                    data += chunk
                self.counts["served"] += 1
                if b"connection: close" in data.lower():
                    sock.close()
                    sock = None
            except ConnectionRefusedError:
                self.counts["refused"] += 1
                time.sleep(0.01)
            except (ConnectionResetError, BrokenPipeError):
                self.counts["reset"] += 1
                sock = _closed(sock)
            except EOFError:
                self.counts["closed_new" if fresh else "closed_reused"] += 1
                sock = _closed(sock)
            except OSError:
                self.counts["reset"] += 1
                sock = _closed(sock)
        _closed(sock)


def _closed(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()


def one(name: str, args: argparse.Namespace, folder: Path) -> dict[str, int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{ROOT}"}
    server = subprocess.Popen(argv(name, port, Path(sys.executable).parent), cwd=folder,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(lambda: connectable(port), 20, what=f"{name} listening")
        until = time.monotonic() + args.duration
        clients = [Client(port, until, args.close) for _ in range(args.connections)]
        for client in clients:
            client.start()
        time.sleep(args.term_after)  # the load runs this long before the stop
        server.send_signal(signal.SIGTERM)
        termed = time.monotonic()
        status = server.wait(timeout=60)
        stopped_in = time.monotonic() - termed
        for client in clients:
            client.join(args.duration + 10)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    total = dict.fromkeys(OUTCOMES, 0)
    for client in clients:
        for key, value in client.counts.items():
            total[key] += value
    total["exit"] = status
    total["stop_ms"] = round(stopped_in * 1000)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--term-after", type=float, default=1.0)
    parser.add_argument("--work-ms", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--close", action="store_true", help="a connection per request")
    parser.add_argument("--contenders", default="prefork,gunicorn,gunicorn-gthread")
    args = parser.parse_args()
    names = args.contenders.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "stopapp.py").write_text(APP.format(work=args.work_ms / 1000))
        print(f"{'round':>5} {'server':<17} " + " ".join(f"{k:>13}" for k in OUTCOMES)
              + "  exit stop_ms")
        for round_ in range(1, args.rounds + 1):
            for name in names:
                r = one(name, args, folder)
                print(f"{round_:>5} {name:<17} " + " ".join(f"{r[k]:>13}" for k in OUTCOMES)
                      + f"  {r['exit']:>4} {r['stop_ms']:>7}", flush=True)


if __name__ == "__main__":
    main()
