"""prefork: run socketserver-style services across CPU cores.

A master process binds the listening socket and forks a bounded pool of workers; each worker
runs the accept loop with the same request handler classes the stdlib's sync, threading and
forking servers use, and the master supervises them.
"""

from __future__ import annotations

from prefork.apps.server import PreforkWSGIServer
from prefork.apps.wsgi import WSGIRequestHandler, wsgi_handler
from prefork.core.contract import WorkerInfo
from prefork.core.keepalive import KeepAliveHTTPMixIn, Ready, hold
from prefork.core.servers import (
    PreforkHTTPServer,
    PreforkMixIn,
    PreforkTCPServer,
    PreforkUDPServer,
    PreforkUnixDatagramServer,
    PreforkUnixStreamServer,
    default_workers,
)
from prefork.core.sockets import BindSpec, BindSpecError, parse_bind
from prefork.core.tls import PeerCredMixIn, TLSMixIn
from prefork.core.urgent import at_mark
from prefork.master.supervisor import BootError, Master

__version__ = "0.1.0"

__all__ = [
    "BindSpec",
    "BindSpecError",
    "BootError",
    "KeepAliveHTTPMixIn",
    "Master",
    "PeerCredMixIn",
    "PreforkHTTPServer",
    "PreforkMixIn",
    "PreforkTCPServer",
    "PreforkUDPServer",
    "PreforkUnixDatagramServer",
    "PreforkUnixStreamServer",
    "PreforkWSGIServer",
    "Ready",
    "TLSMixIn",
    "WSGIRequestHandler",
    "WorkerInfo",
    "__version__",
    "at_mark",
    "default_workers",
    "hold",
    "parse_bind",
    "wsgi_handler",
]
