"""The benchmark's floor: a bare fork-and-accept loop in plain Python, no framework at all.

``python scripts/bare_floor.py workers.http_hello:Hello -b 127.0.0.1:8000 -w 2`` binds, forks N
children, and each child loops ``conn = sock.accept(); Handler(conn, addr, server); close`` --
the same handler class prefork runs, with the same shutdown(SHUT_WR) + close socketserver does,
and nothing else (no epoll, no signals, no verify/process/finish layers).  ``--udp`` loops
``recvfrom`` instead.  SIGTERM to the parent kills the children and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import socketserver
import sys


def child(server: socketserver.BaseServer, handler: type, udp: bool) -> None:
    sock: socket.socket = server.socket  # type: ignore[attr-defined]
    while True:
        if udp:
            data, addr = sock.recvfrom(8192)
            with contextlib.suppress(Exception):  # a client gone mid-reply (socketserver logs)
                handler((data, sock), addr, server)
            continue
        conn, addr = sock.accept()
        with contextlib.suppress(Exception):
            handler(conn, addr, server)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:HandlerClass")
    parser.add_argument("-b", "--bind", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("-w", "--workers", type=int, default=2)
    parser.add_argument("--udp", action="store_true", help="serve datagrams")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    module, _, name = args.app.partition(":")
    handler = getattr(importlib.import_module(module), name)
    host, _, port = args.bind.rpartition(":")
    base = socketserver.UDPServer if args.udp else socketserver.TCPServer
    base.allow_reuse_address = True
    # The same socket as prefork's: socketserver binds and listens, with prefork's backlog.
    base.request_queue_size = 2048
    server = base((host, int(port)), handler)
    pids = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
            try:
                child(server, handler, args.udp)
            finally:
                os._exit(0)
        pids.append(pid)
    print(f"bare floor: serving {args.app} on {args.bind}, {args.workers} workers", file=sys.stderr)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
