"""The least a pure-Python WSGI server can do: issue 20's floor, the yardstick of the request path.

``python scripts/wsgi_floor.py workers.wsgi_hello:app -b 127.0.0.1:8000 -w 2``

The master binds, forks ``-w`` children and waits; TERM or INT stops them all.  Each child runs
one epoll loop over the listener (``EPOLLEXCLUSIVE``) and its connections: ``recv``, find the
end of the head, split the request line and the fields, build a minimal PEP 3333 environ, call
the app, join status, headers and body, ``sendall``; close on ``Connection: close``, HTTP/1.0
or EOF.  No limits, no validation, no bodies, no Date header, no timeouts: never serve with it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import select
import signal
import socket
import sys
from typing import Any

EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)


def child(listener: socket.socket, app: Any) -> None:
    host, port = listener.getsockname()[:2]
    base = {"SERVER_NAME": host, "SERVER_PORT": str(port), "SCRIPT_NAME": "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
            "wsgi.run_once": False}
    ep = select.epoll()
    lfd = listener.fileno()
    ep.register(lfd, select.EPOLLIN | EXCLUSIVE)
    conns: dict[int, list[Any]] = {}  # fd -> [socket, bytes received and not yet served]
    while True:
        for fd, _ in ep.poll():
            if fd == lfd:
                try:
                    sock, _addr = listener.accept()
                except BlockingIOError:
                    continue
                conns[sock.fileno()] = [sock, b""]
                ep.register(sock.fileno(), select.EPOLLIN)
                continue
            entry = conns[fd]
            sock = entry[0]
            try:
                data = sock.recv(65536)
            except OSError:  # (a reset)
                data = b""
            if not data or not serve(sock, app, base, entry, data):
                ep.unregister(fd)
                del conns[fd]
                sock.close()


def serve(sock: socket.socket, app: Any, base: dict[str, Any], entry: list[Any],
          data: bytes) -> bool:
    """Answer every whole head received; False: close the connection."""
    buf = entry[1] + data
    while (end := buf.find(b"\r\n\r\n")) >= 0:
        lines = buf[:end].decode("latin-1").split("\r\n")
        buf = buf[end + 4:]
        method, target, version = lines[0].split(" ", 2)
        path, _, query = target.partition("?")
        environ = dict(base)
        environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query,
                       SERVER_PROTOCOL=version)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            environ["HTTP_" + name.upper().replace("-", "_")] = value.strip()
        reply: list[str] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None,
                           reply: list[str] = reply) -> None:
            reply.append(f"HTTP/1.1 {status}\r\n"
                         + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n")

        body = b"".join(app(environ, start_response))
        sock.sendall(reply[0].encode("latin-1") + body)
        if version != "HTTP/1.1" or environ.get("HTTP_CONNECTION", "").lower() == "close":
            return False
    entry[1] = buf
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="module:callable")
    parser.add_argument("-b", "--bind", default="127.0.0.1:8000")
    parser.add_argument("-w", "--workers", type=int, default=2)
    args = parser.parse_args()
    module, _, name = args.app.partition(":")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module), name or "application")
    host, _, port = args.bind.rpartition(":")
    listener = socket.create_server((host, int(port)), backlog=1024)
    listener.setblocking(False)
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # the master waits for them (sigwait)
    kids = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
            child(listener, app)
        kids.append(pid)
    try:
        signal.sigwait(stops)
    finally:
        for pid in kids:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
