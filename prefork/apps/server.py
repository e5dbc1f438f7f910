"""``PreforkWSGIServer``: a WSGI application across a pool of workers, from Python::

    server = prefork.PreforkWSGIServer(("127.0.0.1", 8000), app=flask_app, workers=4)
    with server:
        server.serve_forever()

Each worker serves connections with :class:`~prefork.apps.wsgi.WSGIRequestHandler` (HTTP/1.1,
keep-alive, chunked bodies both ways).  It is still a ``wsgiref.simple_server.WSGIServer``, so
code written for that class -- ``set_app()``, ``get_app()``, or wsgiref's own handler given as
the second argument -- keeps working.
"""

from __future__ import annotations

import socketserver
from typing import Any
from wsgiref.simple_server import WSGIServer

from prefork.apps.wsgi import WSGIApp, WSGIRequestHandler
from prefork.core.servers import PreforkMixIn


class PreforkWSGIServer(PreforkMixIn, WSGIServer):
    """A prefork server for the WSGI application ``app`` (or the one given to ``set_app()``
    before ``serve_forever()``).  ``RequestHandlerClass`` defaults to prefork's HTTP/1.1
    handler."""

    allow_reuse_address = True

    def __init__(
        self,
        server_address: Any,
        RequestHandlerClass: type[socketserver.BaseRequestHandler] | None = None,
        bind_and_activate: bool = True,
        *,
        app: WSGIApp | None = None,
        workers: int | None = None,
    ) -> None:
        handler = WSGIRequestHandler if RequestHandlerClass is None else RequestHandlerClass
        super().__init__(server_address, handler, bind_and_activate, workers=workers)
        if app is not None:
            self.set_app(app)
