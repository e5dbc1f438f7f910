"""One stdlib service, run as a process: ``python served.py MODE NAME [DIR]``.

MODE is ``thread`` (the reference: ``socketserver.ThreadingMixIn``) or ``prefork`` (the pool,
``prefork.PreforkMixIn``, 1 worker); NAME picks a handler shape from :data:`SHAPES`.  The
process prints ``port N`` on stderr once it listens, then serves until TERM.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socketserver
import sys
import threading
import xmlrpc.server
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import prefork


class LineEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(b"echo " + line)


class MakeEcho:
    """A callable instance as the handler factory."""

    def __call__(self, request: Any, address: Any, server: Any) -> LineEcho:
        return LineEcho(request, address, server)


class Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


class OwnHandle(http.server.BaseHTTPRequestHandler):
    """An http.server handler with its own handle(): a banner line per connection first."""

    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        self.wfile.write(b"banner\r\n")
        super().handle()

    def do_GET(self) -> None:
        body = b"got " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Timed(http.server.BaseHTTPRequestHandler):
    """Keep-alive with StreamRequestHandler.timeout: an idle connection closes after it."""

    protocol_version = "HTTP/1.1"
    timeout = 0.5

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


ERRORS = [0]  # handle_error calls in this process


class FinishFails(Timed):
    """finish() raises at the end of every connection but those asking for the count."""

    timeout = None

    def do_GET(self) -> None:
        body = str(ERRORS[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def finish(self) -> None:
        super().finish()
        if getattr(self, "path", "") != "/errors":
            raise RuntimeError("finish failed")


def counting_errors(request: Any, address: Any) -> None:
    ERRORS[0] += 1


class QuietWSGI(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


CONNECTIONS = [0]  # handle() calls seen by this process


class RPCHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    """Keep-alive, counting connections in handle(), as CPython's test_xmlrpc does."""

    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        CONNECTIONS[0] += 1
        super().handle()

    def log_message(self, *args: Any) -> None:
        pass


def _server(mode: str, base: type[socketserver.BaseServer], **extra: Any) -> type[Any]:
    mixin = prefork.PreforkMixIn if mode == "prefork" else socketserver.ThreadingMixIn
    attrs: dict[str, Any] = {"allow_reuse_address": True, "daemon_threads": True, **extra}
    if mode == "prefork":
        attrs["workers"] = 1
        attrs["keep_alive"] = 60.0  # far longer than any handler timeout here
    return type(f"{mode}{base.__name__}", (mixin, base), attrs)


def build(mode: str, name: str, folder: str) -> socketserver.BaseServer:
    address = ("127.0.0.1", 0)
    if name == "partial":
        handler: Any = functools.partial(Quiet, directory=folder)
        return _server(mode, http.server.HTTPServer)(address, handler)
    if name == "lambda":
        return _server(mode, socketserver.TCPServer)(
            address, lambda r, a, s: LineEcho(r, a, s))
    if name == "instance":
        return _server(mode, socketserver.TCPServer)(address, MakeEcho())
    if name == "own-handle":
        return _server(mode, http.server.HTTPServer)(address, OwnHandle)
    if name == "timeout":
        return _server(mode, http.server.HTTPServer)(address, Timed)
    if name == "finish-error":
        return _server(mode, http.server.HTTPServer,
                       handle_error=lambda self, r, a: counting_errors(r, a))(address,
                                                                              FinishFails)
    if name == "wsgiref":
        server = _server(mode, WSGIServer)(address, QuietWSGI)
        server.set_app(app)
        return server  # type: ignore[no-any-return]
    if name == "wsgiref-prefork-class":  # prefork's own WSGI server class with wsgiref's handler
        if mode == "prefork":
            return prefork.PreforkWSGIServer(address, QuietWSGI, app=app, workers=1)
        server = _server(mode, WSGIServer)(address, QuietWSGI)
        server.set_app(app)
        return server  # type: ignore[no-any-return]
    if name == "xmlrpc":
        cls = _server(mode, xmlrpc.server.SimpleXMLRPCServer)
        rpc = cls(address, RPCHandler, logRequests=False)
        rpc.register_function(lambda a, b: a + b, "add")
        rpc.register_function(os.getpid, "pid")
        rpc.register_function(lambda: CONNECTIONS[0], "connections")
        return rpc  # type: ignore[no-any-return]
    raise SystemExit(f"unknown shape {name!r}")


def main() -> None:
    mode, name = sys.argv[1], sys.argv[2]
    folder = sys.argv[3] if len(sys.argv) > 3 else "."
    server = build(mode, name, folder)
    if mode == "thread":  # TERM stops the reference too (prefork's master handles it itself)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"port {server.server_address[1]}", file=sys.stderr, flush=True)  # type: ignore[index]
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
