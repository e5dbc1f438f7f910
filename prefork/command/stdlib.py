"""The stdlib modes' run (``serve --mode sync|thread|fork``, and ``jobs`` in those modes): the
server's ``serve_forever()`` in a thread, this thread waiting for TERM, INT or QUIT, then
``shutdown()`` (the stdlib's contract: from another thread) and the join."""

from __future__ import annotations

import selectors
import signal
import socketserver
import threading

from prefork.core.signals import SignalQueue

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def serve_stdlib(server: socketserver.BaseServer) -> None:
    """Run a stdlib server in a thread until TERM, INT or QUIT, then shut it down."""
    stops = SignalQueue(STOP_SIGNALS)
    stops.install()
    thread = threading.Thread(target=server.serve_forever, name="serve_forever", daemon=True)
    thread.start()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(stops.read_fd, selectors.EVENT_READ)
            while not stops.drain():
                selector.select()
        server.shutdown()
    finally:
        stops.close()
        thread.join()
