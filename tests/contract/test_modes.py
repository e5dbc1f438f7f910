"""The stdlib shapes through the command line, in each of the four ``--mode``s: every mode
answers what the same handler answers under ``socketserver.ThreadingMixIn`` with the stdlib
server class it was written for (the reference, ``modes_served.py``) -- same bytes, same close.

socketserver's four families (TCP and unix streams, UDP and unix datagrams), http.server's base
and simple handlers (and the ``partial(directory=...)`` idiom), a handler with its own
``handle()``, StreamRequestHandler.timeout on a kept-alive connection, xmlrpc keep-alive over
two paths, wsgiref's handler, and handler factories (a lambda, a callable instance).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import DATE
from modes_served import SHAPES

from helpers import ROOT, Proc, clean_env, server_process

HERE = Path(__file__).parent
MODES = ("prefork", "fork", "thread", "sync")

KEPT = (b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
# What each shape is sent: (bytes, half-close after them).
REQUESTS: dict[str, tuple[bytes, bool]] = {
    "tcp-stream": (b"one\ntwo\n", True),
    "udp-datagram": (b"ping\n", False),
    "unix-stream": (b"one\ntwo\n", True),
    "unix-datagram": (b"ping\n", False),
    "http-base": (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
                  b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    "http-simple": (KEPT, False),
    "http-partial": (KEPT.replace(b"hello", b"inner"), False),
    "http-own-handle": (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    "http-timeout": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False),  # then idle: 0.5 s, closed
    "wsgiref": (b"GET /x HTTP/1.0\r\n\r\n", False),
    "lambda": (b"one\ntwo\n", True),
    "instance": (b"one\ntwo\n", True),
}
# Part of each answer, so that two equally wrong answers cannot pass.
EXPECTED = {
    "tcp-stream": b"echo one\necho two\n",
    "udp-datagram": b"echo ping\n",
    "unix-stream": b"echo one\necho two\n",
    "unix-datagram": b"echo ping\n",
    "http-base": b"get /a",
    "http-simple": b"hello from the directory\n",
    "http-partial": b"inner file\n",
    "http-own-handle": b"banner\r\n",
    "http-timeout": b"\r\n\r\nok",
    "wsgiref": b"GET /x",
    "lambda": b"echo one\necho two\n",
    "instance": b"echo one\necho two\n",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the module: the references are taken once per shape."""
    top = tmp_path_factory.mktemp("modes")
    (top / "sub").mkdir()
    for path, text in ((top / "hello.txt", b"hello from the directory\n"),
                       (top / "sub" / "inner.txt", b"inner file\n")):
        path.write_bytes(text)
        os.utime(path, (1_700_000_000, 1_700_000_000))  # one Last-Modified for every server
    return top


def env(folder: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{HERE}:{ROOT}", "SHAPE_DIR": str(folder / "sub")}


def bind_for(shape: str, folder: Path, name: str) -> str:
    family = SHAPES[shape].family
    if family in ("unix", "unix-dgram"):
        return str(folder / f"{shape}-{name}.sock")
    return "127.0.0.1:0"


@contextlib.contextmanager
def reference(shape: str, folder: Path) -> Iterator[str]:
    """The ThreadingMixIn reference of ``shape``; its address."""
    proc = Proc([sys.executable, str(HERE / "modes_served.py"), shape, str(folder),
                 bind_for(shape, folder, "reference")], env=clean_env(**env(folder)),
                cwd=folder, name=f"reference-{shape}")
    try:
        yield proc.wait_line(r"address (\S+)", timeout=15).group(1)
    finally:
        proc.kill()


@contextlib.contextmanager
def command(shape: str, mode: str, folder: Path) -> Iterator[str]:
    """``prefork serve modes_served:APP --mode MODE`` for ``shape``; its address."""
    spec = SHAPES[shape]
    bind = bind_for(shape, folder, mode)
    if spec.family == "udp":
        bind = "udp://" + bind
    elif spec.family == "unix":
        bind = "unix:" + bind
    elif spec.family == "unix-dgram":
        bind = "unix-dgram:" + bind
    with server_process("serve", f"modes_served:{spec.cli}", "--bind", bind, "--mode", mode,
                        "--workers", "1", env=env(folder), cwd=folder) as srv:
        where = srv.address()
        for scheme in ("http://", "udp://", "unix-dgram:", "unix:"):
            where = where.removeprefix(scheme)
        yield where.rstrip("/")


def talk(shape: str, where: str, folder: Path) -> Any:
    """The client-visible outcome of ``shape``'s exchange with the server at ``where``."""
    if shape == "xmlrpc":
        return rpc_calls(where)
    data, half_close = REQUESTS[shape]
    family = SHAPES[shape].family
    if family in ("udp", "unix-dgram"):
        return datagram(family, where, data, folder)
    if family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(where)
    else:
        host, _, port = where.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=10)
    with sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return DATE.sub(b"Date: -\r\n", out)


def datagram(family: str, where: str, data: bytes, folder: Path) -> bytes:
    if family == "udp":
        host, _, port = where.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(data, (host, int(port)))
            return sock.recv(65536)
    client = folder / "client.sock"
    client.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.bind(str(client))  # a unix datagram peer needs an address to be answered at
        sock.sendto(data, where)
        return sock.recv(65536)


def rpc_calls(where: str) -> tuple[list[int], int, int, str]:
    """Calls on one kept-alive connection per path, and a call on a path not served."""
    # One connection after the other: the sync mode (and a pool of one worker whose handler
    # owns its connection) serves one at a time.  /who first: a forked child counts only its
    # own connection.
    with xmlrpc.client.ServerProxy(f"http://{where}/who") as who:
        pids = {who.pid() for _ in range(3)}
        connections = who.connections()
    with xmlrpc.client.ServerProxy(f"http://{where}/math") as math:
        sums = [math.add(n, 1) for n in range(3)]
    try:
        xmlrpc.client.ServerProxy(f"http://{where}/other").add(1, 1)
        missing = "served"
    except xmlrpc.client.ProtocolError as exc:
        missing = f"{exc.errcode} {exc.errmsg}"
    return sums, len(pids), connections, missing


REFERENCES: dict[str, Any] = {}  # per shape, per test process


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_mode_answers_as_the_reference(shape: str, mode: str, folder: Path) -> None:
    if shape not in REFERENCES:
        with reference(shape, folder) as where:
            REFERENCES[shape] = talk(shape, where, folder)
    expected = REFERENCES[shape]
    if shape == "xmlrpc":
        # Four calls on /who's kept-alive connection: one handle() call.
        assert expected == ([1, 2, 3], 1, 1, "404 Not Found")
    else:
        assert EXPECTED[shape] in expected, expected
    with command(shape, mode, folder) as where:
        assert talk(shape, where, folder) == expected
