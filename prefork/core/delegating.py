"""Servers whose ``process_request`` runs each request somewhere else: the stdlib's
``ThreadingMixIn`` (a thread per connection) and ``ForkingMixIn`` (a child process per
connection), combined with the pool -- ``class S(prefork.PreforkMixIn,
http.server.ThreadingHTTPServer)``, ``(PreforkMixIn, socketserver.ForkingTCPServer)``,
``(PreforkMixIn, socketserver.ThreadingMixIn, socketserver.TCPServer)``.

The decision: each worker runs its requests the way the mixed-in class says, as the stdlib
would in one process.  What that takes from the worker:

* **The handler owns its connection** in its thread or child, keep-alive included: the worker
  does not let it hand the connection back between requests (``allowed`` is False for such a
  server in core/dispatch.py).  A forked child that handed it back would exit under it, and the
  client's next request would find the connection reset.
* **A graceful stop waits for the requests in flight**, with the stdlib's own means: the
  threads are joined (the worker's copy of the server sets ``daemon_threads = False`` and
  ``block_on_close = True``, so that ``ThreadingMixIn`` tracks every one of them -- a daemon
  thread would die with the worker, its response unsent) and the children collected
  (``collect_children(blocking=True)``).  ``graceful_timeout`` still bounds it: the master kills
  a worker that takes longer.  A quick stop does not wait.

``max_children`` is ``PreforkMixIn``'s (the pool's bound), which comes first in the MRO: it also
bounds ``ForkingMixIn``'s children per worker.
"""

from __future__ import annotations

import socketserver
from collections.abc import Iterable
from typing import Any


def delegates(server: Any) -> bool:
    """Whether ``server``'s ``process_request`` runs the request in a thread or a child."""
    return isinstance(server, (socketserver.ThreadingMixIn, socketserver.ForkingMixIn))


def prepare(server: Any) -> None:
    """In the worker, before the first request: every request thread is tracked."""
    if isinstance(server, socketserver.ThreadingMixIn):
        server.daemon_threads = False
        server.block_on_close = True


def finish(servers: Iterable[Any], graceful: bool) -> None:
    """At the worker's end: on a graceful stop, wait for the requests still running."""
    if not graceful:
        return
    for server in servers:
        if isinstance(server, socketserver.ThreadingMixIn):
            # The stdlib's own wait: closes this worker's copy of the listening socket (it is
            # leaving), then joins the request threads.
            socketserver.ThreadingMixIn.server_close(server)
        elif isinstance(server, socketserver.ForkingMixIn):
            server.collect_children(blocking=True)
