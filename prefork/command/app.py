"""From the command line's words to a server class: load ``module:Handler`` and pick the
socketserver class for a bind spec and a mode.

The four modes run the *same* handler class: ``prefork`` (this package), and the stdlib's
``fork`` (ForkingMixIn), ``thread`` (ThreadingMixIn) and ``sync`` (no mix-in), so one service
can be compared across all of them.
"""

from __future__ import annotations

import http.server
import importlib
import os
import socket
import socketserver
import sys
from typing import Any

from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import BindSpec

MODES: dict[str, type | None] = {
    "prefork": PreforkMixIn,
    "fork": socketserver.ForkingMixIn,
    "thread": socketserver.ThreadingMixIn,
    "sync": None,
}
DEFAULT_APP = "prefork.demo:DemoHandler"

_BASES: dict[str, type[socketserver.BaseServer]] = {
    "tcp": socketserver.TCPServer,
    "udp": socketserver.UDPServer,
    "unix": socketserver.UnixStreamServer,
    "unix-dgram": socketserver.UnixDatagramServer,
}


class AppError(ValueError):
    """The APP cannot be served as asked; the message says why, in one line."""


def load_handler(app: str) -> type[socketserver.BaseRequestHandler]:
    """Import ``module:Class`` (the current directory first on the path, as gunicorn does)."""
    module_name, sep, attr = app.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"APP {app!r}: expected module:HandlerClass")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppError(
            f"APP {app!r}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"APP {app!r}: module {module_name} has no {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, socketserver.BaseRequestHandler)):
        raise AppError(f"APP {app!r}: {attr} is not a socketserver.BaseRequestHandler subclass")
    return obj


def is_http_handler(handler: type) -> bool:
    return issubclass(handler, http.server.BaseHTTPRequestHandler)


class _UnixHTTPMixIn:
    """http.server handlers format ``client_address[0]``; a unix peer has no address."""

    def get_request(self) -> tuple[socket.socket, Any]:
        request, _ = super().get_request()  # type: ignore[misc]
        return request, ("unix", 0)


def server_class(
    mode: str, spec: BindSpec, handler: type[socketserver.BaseRequestHandler]
) -> type[socketserver.BaseServer]:
    """The server class serving ``handler`` on ``spec`` in ``mode``."""
    if mode not in MODES:
        raise AppError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    stream_handler = issubclass(handler, socketserver.StreamRequestHandler)
    datagram_handler = issubclass(handler, socketserver.DatagramRequestHandler)
    if stream_handler and not spec.stream:
        raise AppError(f"{handler.__name__} is a stream handler; {spec} is a datagram socket")
    if datagram_handler and spec.stream:
        raise AppError(f"{handler.__name__} is a datagram handler; {spec} is a stream socket")
    bases: list[type] = []
    mixin = MODES[mode]
    if mixin is not None:
        bases.append(mixin)
    if is_http_handler(handler):
        if spec.kind == "unix":
            bases.append(_UnixHTTPMixIn)
        else:
            bases.append(http.server.HTTPServer)
    bases.append(_BASES[spec.kind])
    attrs: dict[str, Any] = {"allow_reuse_address": True}
    if spec.family != socket.AF_UNIX:
        attrs["address_family"] = spec.family
    if mode == "thread":
        attrs["daemon_threads"] = True
    name = f"{mode.capitalize()}{handler.__name__}Server"
    # Drop duplicate bases (HTTPServer already is a TCPServer).
    unique = [b for b in bases if not any(b is not o and issubclass(o, b) for o in bases)]
    return type(name, tuple(unique), attrs)
