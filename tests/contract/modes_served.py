"""The stdlib shapes as ``prefork serve`` APPs, and their ThreadingMixIn reference.

``prefork serve modes_served:NAME --mode MODE`` serves the APP of each :data:`SHAPES` entry
(``cli``) in any of the four modes; ``python modes_served.py SHAPE DIR BIND`` serves the same
handler under ``socketserver.ThreadingMixIn`` with the stdlib server class it was written for
(the reference) and prints ``address ADDR`` on stderr once it listens.  DIR is the directory
SimpleHTTPRequestHandler serves (the process's own directory too).

The command line builds its own server classes (http.server's HTTPServer for an http.server
handler, the bare socketserver family otherwise), so the handlers that need more of their
server -- xmlrpc's dispatch, wsgiref's application and base environ -- are served through a
handler factory that gives them a view of the server with what they need: the handler itself is
the stdlib's, unchanged.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import socketserver
import sys
import threading
import types
import xmlrpc.server
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from served import LineEcho, MakeEcho, Quiet, QuietWSGI, app
from served import OwnHandle as OwnHandle  # (served by name: SHAPES)
from served import Timed as Timed


class DatagramEcho(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"echo " + self.rfile.read())


class Base(http.server.BaseHTTPRequestHandler):
    """http.server's base handler, keep-alive, one GET and one POST that reads its body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(b"get " + self.path.encode())

    def do_POST(self) -> None:
        self._answer(b"post " + self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class RPCHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    """Keep-alive, two paths, counting connections in handle() as CPython's test_xmlrpc."""

    protocol_version = "HTTP/1.1"
    rpc_paths = ("/math", "/who")
    connections = 0

    def handle(self) -> None:
        RPCHandler.connections += 1
        super().handle()

    def log_message(self, *args: Any) -> None:
        pass


def dispatchers() -> dict[str, xmlrpc.server.SimpleXMLRPCDispatcher]:
    math = xmlrpc.server.SimpleXMLRPCDispatcher()
    math.register_function(lambda a, b: a + b, "add")
    who = xmlrpc.server.SimpleXMLRPCDispatcher()
    who.register_function(os.getpid, "pid")
    who.register_function(lambda: RPCHandler.connections, "connections")
    return {"/math": math, "/who": who}


class ServerView:
    """The server a handler is given, with what the command line's server class lacks."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class RPCView(ServerView):
    """MultiPathXMLRPCServer's dispatch, over any server."""

    dispatchers = dispatchers()
    allow_none = False
    logRequests = False
    encoding = "utf-8"
    _marshaled_dispatch = xmlrpc.server.MultiPathXMLRPCServer._marshaled_dispatch


class WSGIView(ServerView):
    """wsgiref's WSGIServer's application and base environ, over any server."""

    def get_app(self) -> Any:
        return app

    @property
    def base_environ(self) -> dict[str, str]:
        host, port = self._server.server_address[:2]
        made = types.SimpleNamespace(server_name=socket.getfqdn(host), server_port=port)
        WSGIServer.setup_environ(made)  # type: ignore[arg-type]
        return made.base_environ  # type: ignore[no-any-return]


def xmlrpc_handler(request: Any, address: Any, server: Any) -> RPCHandler:
    return RPCHandler(request, address, RPCView(server))


def wsgiref_handler(request: Any, address: Any, server: Any) -> QuietWSGI:
    return QuietWSGI(request, address, WSGIView(server))


line_lambda = lambda r, a, s: LineEcho(r, a, s)  # noqa: E731 - the shape under test
instance = MakeEcho()
directory = functools.partial(Quiet, directory=os.environ.get("SHAPE_DIR", "."))  # not the cwd


@dataclass(frozen=True)
class Shape:
    cli: str  # the attribute of this module ``prefork serve`` is given
    family: str  # the bind spec's kind: tcp, udp, unix, unix-dgram
    reference: type[socketserver.BaseServer]  # the stdlib server class it was written for


SHAPES = {
    "tcp-stream": Shape("LineEcho", "tcp", socketserver.TCPServer),
    "udp-datagram": Shape("DatagramEcho", "udp", socketserver.UDPServer),
    "unix-stream": Shape("LineEcho", "unix", socketserver.UnixStreamServer),
    "unix-datagram": Shape("DatagramEcho", "unix-dgram", socketserver.UnixDatagramServer),
    "http-base": Shape("Base", "tcp", http.server.HTTPServer),
    "http-simple": Shape("Quiet", "tcp", http.server.HTTPServer),
    "http-partial": Shape("directory", "tcp", http.server.HTTPServer),
    "http-own-handle": Shape("OwnHandle", "tcp", http.server.HTTPServer),
    "http-timeout": Shape("Timed", "tcp", http.server.HTTPServer),
    "xmlrpc": Shape("xmlrpc_handler", "tcp", xmlrpc.server.MultiPathXMLRPCServer),
    "wsgiref": Shape("wsgiref_handler", "tcp", WSGIServer),
    "lambda": Shape("line_lambda", "tcp", socketserver.TCPServer),
    "instance": Shape("instance", "tcp", socketserver.TCPServer),
}


def reference(shape: str, bind: str) -> socketserver.BaseServer:
    """The ThreadingMixIn server of ``shape`` listening on ``bind`` (HOST:PORT or a path)."""
    spec = SHAPES[shape]
    cls: Any = type(f"Threading{spec.reference.__name__}",
                    (socketserver.ThreadingMixIn, spec.reference),
                    {"allow_reuse_address": True, "daemon_threads": True})
    address: Any = bind
    if spec.family in ("tcp", "udp"):
        host, _, port = bind.rpartition(":")
        address = (host, int(port))
    if shape == "xmlrpc":
        server = cls(address, RPCHandler, logRequests=False)
        for path, dispatcher in dispatchers().items():
            server.add_dispatcher(path, dispatcher)
        return server  # type: ignore[no-any-return]
    if shape == "wsgiref":
        server = cls(address, QuietWSGI)
        server.set_app(app)
        return server  # type: ignore[no-any-return]
    return cls(address, globals()[spec.cli])  # type: ignore[no-any-return]


def main() -> None:
    shape, folder, bind = sys.argv[1:4]
    os.chdir(folder)
    server = reference(shape, bind)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    address = server.server_address
    shown = address if isinstance(address, str) else f"{address[0]}:{address[1]}"  # type: ignore[index]
    print(f"address {shown}", file=sys.stderr, flush=True)
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
