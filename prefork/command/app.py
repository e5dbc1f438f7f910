"""From the command line's words to a server class: load the APP and pick the socketserver
class for a bind spec, a mode and the kind of APP.

The four modes run the *same* handler class: ``prefork`` (this package), and the stdlib's
``fork`` (ForkingMixIn), ``thread`` (ThreadingMixIn) and ``sync`` (no mix-in), so one service
can be compared across all of them.  Loading the APP itself (its three forms, the WSGI handler)
is :mod:`prefork.apps.loader`; the server class depends only on the APP's *kind*, so it can be
chosen from a probe that reports the kind without importing the APP here.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
from typing import Any

from prefork.apps.loader import AppError, AppKind, HandlerFactory, handler_kind, load_app
from prefork.core import urgent, urgenthook
from prefork.core.keepalive import handler_class
from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import BindSpec

__all__ = ["DEFAULT_APP", "MODES", "AppError", "is_http_handler", "load_handler",
           "server_class", "server_class_for"]

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
_STREAM_KINDS = ("stream", "http", "wsgi")


def load_handler(app: str) -> HandlerFactory:
    """The handler class (or handler factory) serving ``app`` (any of the three forms; imports
    it)."""
    return load_app(app).handler


def is_http_handler(handler: Any) -> bool:
    """True for handlers that speak HTTP (http.server's, and the WSGI handler)."""
    cls = handler_class(handler)
    return (cls is not None and issubclass(cls, socketserver.BaseRequestHandler)
            and handler_kind(cls) in ("http", "wsgi"))


class _OOBInlineMixIn:
    """The in-process modes keep TCP urgent data in the stream too, as the pool does."""

    oob_inline = True

    def server_bind(self) -> None:
        super().server_bind()  # type: ignore[misc]
        if self.oob_inline:
            urgent.inline(self.socket)  # type: ignore[attr-defined]


class _UrgentMixIn:
    """The in-process modes call a handler's handle_urgent() too (core/urgenthook.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        urgenthook.watch_servers([self])


class _UnixHTTPMixIn:
    """http.server handlers format ``client_address[0]``; a unix peer has no address."""

    def get_request(self) -> tuple[socket.socket, Any]:
        request, _ = super().get_request()  # type: ignore[misc]
        return request, ("unix", 0)


def server_class(
    mode: str, spec: BindSpec, handler: HandlerFactory
) -> type[socketserver.BaseServer]:
    """The server class serving ``handler`` on ``spec`` in ``mode``."""
    cls = handler_class(handler)
    return server_class_for(mode, spec, handler_kind(handler), cls.__name__ if cls else "")


def server_class_for(
    mode: str, spec: BindSpec, kind: AppKind, name: str = ""
) -> type[socketserver.BaseServer]:
    """The server class serving an APP of ``kind`` on ``spec`` in ``mode`` (``name`` goes into
    the class name)."""
    if mode not in MODES:
        raise AppError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    what = name or "the APP"
    if kind in _STREAM_KINDS and not spec.stream:
        label = "a WSGI application" if kind == "wsgi" else "a stream handler"
        raise AppError(f"{what} is {label}; {spec} is a datagram socket")
    if kind == "datagram" and spec.stream:
        raise AppError(f"{what} is a datagram handler; {spec} is a stream socket")
    bases: list[type] = []
    mixin = MODES[mode]
    if mixin is not None:
        bases.append(mixin)
    if mode != "prefork" and spec.kind == "tcp":
        bases += [_OOBInlineMixIn, _UrgentMixIn]
    if kind == "http":
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
    label = "".join(c for c in (name or kind.capitalize()) if c.isalnum() or c == "_")
    # Drop duplicate bases (HTTPServer already is a TCPServer).
    unique = [b for b in bases if not any(b is not o and issubclass(o, b) for o in bases)]
    return type(f"{mode.capitalize()}{label}Server", tuple(unique), attrs)
