"""What a WSGI handler takes from its server: read once per server, not once per connection.

A connection per request made every handler read the same server attributes again (the head
parser, the head limits, whose proxy headers count, the mount prefix, the ``wsgi.*`` flags, the
listener's family and local address): about a tenth of such a request's cost.  They are the
server's settings, which do not change while it serves (prefork re-reads them in new workers on
HUP), so :func:`of` keeps them per server object.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import weakref
from dataclasses import dataclass
from typing import Any

from prefork.apps import fasthead, forwarded
from prefork.apps.environ import listener_address, script_name
from prefork.apps.filewrapper import FileWrapper
from prefork.core import httplimits
from prefork.core.servers import PreforkMixIn
from prefork.core.threads import handler_threads
from prefork.core.trust import forwarders


@dataclass(frozen=True)
class ServerSide:
    """``read_head`` (the ``http_parser``'s), ``limits`` (``limit_request_*``), ``trust``
    (``forwarded_allow_ips``), ``concurrent`` (False under a sync server: one connection at a
    time), ``inet`` (an AF_INET/AF_INET6 listener; None: ask each connection), ``local`` (its
    address, None where each connection's own is asked) and ``shared``, the environ's keys
    that are the same for every request of the server."""

    read_head: fasthead.HeadReader
    limits: httplimits.HeadLimits
    trust: forwarded.Trusted
    concurrent: bool
    inet: bool | None
    local: tuple[Any, ...] | None
    shared: dict[str, Any]


_SIDES: weakref.WeakKeyDictionary[Any, ServerSide] = weakref.WeakKeyDictionary()
_INET = (socket.AF_INET, socket.AF_INET6)


def of(server: Any) -> ServerSide:
    """``server``'s :class:`ServerSide`, made on its first connection."""
    try:
        return _SIDES[server]
    except (KeyError, TypeError):  # (TypeError: a server that takes no weak reference)
        pass
    threaded = isinstance(server, socketserver.ThreadingMixIn) or (
        isinstance(server, PreforkMixIn) and handler_threads(server) > 1)
    processes = isinstance(server, (socketserver.ForkingMixIn, PreforkMixIn))
    listener = getattr(server, "socket", None)
    family = listener.family if isinstance(listener, socket.socket) else None
    side = ServerSide(
        read_head=fasthead.for_server(server), limits=httplimits.of(server),
        trust=forwarded.trusted(forwarders(server)), concurrent=threaded or processes,
        inet=None if family is None else family in _INET, local=listener_address(server),
        shared={
            "SCRIPT_NAME": script_name(server),
            "wsgi.version": (1, 0),
            "wsgi.multithread": threaded,
            "wsgi.multiprocess": processes,
            "wsgi.run_once": False,
            # Both kinds of body end where the request's body ends: reading to EOF is safe.
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,  # sent with sendfile where it can be
        })
    with contextlib.suppress(TypeError):
        _SIDES[server] = side
    return side
