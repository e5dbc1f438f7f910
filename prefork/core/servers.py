"""PreforkMixIn and the ready server classes.

Use the mix-in as you would the stdlib's ``ForkingMixIn``, first in the bases::

    class MyServer(prefork.PreforkMixIn, http.server.HTTPServer):
        pass

The constructor binds and listens exactly as socketserver does.  ``serve_forever()`` makes this
process the master: it forks ``workers`` children, each running socketserver's own request path
(``get_request``, ``verify_request``, ``process_request``, ``finish_request``,
``shutdown_request``, ``handle_error``, ``service_actions``) on the inherited socket, and
supervises them until ``shutdown()`` is called from another thread or a stop signal arrives.
"""

from __future__ import annotations

import errno
import http.server
import logging
import os
import socket
import socketserver
import sys
import threading
from typing import Any

from prefork.core import pooled, privileges, sockets, urgent
from prefork.core.contract import PoolServer
from prefork.core.keepalive import HoldsConnections
from prefork.master import sizing
from prefork.master.sizing import default_workers as default_workers  # (public here too)
from prefork.master.supervisor import Master

log = logging.getLogger("prefork.worker")


# What a client can do to a connection without any fault of the handler.
CLIENT_GONE_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN,
                                errno.ECONNABORTED, errno.ETIMEDOUT, errno.ESHUTDOWN})


def is_client_gone(exc: BaseException | None) -> bool:
    """True for the network errors a client causes by leaving: resets, broken pipes, timeouts.

    (Not ConnectionRefusedError: a handler whose backend refuses has a real problem.)"""
    gone = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError)
    if isinstance(exc, gone):  # socket.timeout is TimeoutError
        return True
    return isinstance(exc, OSError) and exc.errno in CLIENT_GONE_ERRNOS


class PreforkMixIn(HoldsConnections, PoolServer):
    """Mix-in that serves each request in one of a pool of pre-forked worker processes.

    Methods for the caller: serve_forever(), shutdown(), server_close() (and the context
    manager), as on any socketserver server.

    May be overridden, besides socketserver's own request methods: the hooks of
    :class:`~prefork.core.contract.PoolServer` -- pre_fork(worker), load_app(),
    post_fork(worker), worker_exit(worker, status), prepare_reload() -- where the tunables (class
    attributes; ``workers`` is also a keyword argument) are declared with their defaults.
    """

    # socketserver's default backlog is 5: with a busy pool the queue overflows and clients
    # wait a SYN retry (1 s).  The kernel caps this at net.core.somaxconn.
    request_queue_size: int = 2048
    # TCP urgent data stays in the stream (SO_OOBINLINE, RFC 6093's advice; core/urgent.py).
    oob_inline: bool = True

    # What the mix-in expects of the socketserver class it is mixed into.
    socket: socket.socket
    address_family: int
    server_address: Any

    def __init__(self, *args: Any, workers: int | None = None, **kwargs: Any) -> None:
        sizing.settle(self, workers)  # ValueError: not in [1, max_children]
        # Checked before binding: a user that does not exist fails here, not in each worker.
        self.credentials = privileges.of_workers(self)
        self._prefork_master: Master | None = None
        self._prefork_lock = threading.Lock()
        self._prefork_shutdown = False
        self._prefork_done = threading.Event()
        # The unix socket file this process bound, removed at close by this process only (a
        # forked worker closing its copy must not remove it).
        self._prefork_unix_ident: sockets.FileIdent | None = None
        self._prefork_unix_owner = 0
        self.extra_listeners: list[socketserver.BaseServer] = []
        super().__init__(*args, **kwargs)

    # -- socketserver contract ----------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Run the pool until shutdown() or a stop signal.  ``poll_interval`` is only how often
        workers call ``service_actions()`` when the server overrides it: nothing polls for
        shutdown."""
        self._prefork_done.clear()
        try:
            master = Master(self, poll_interval)
            with self._prefork_lock:
                self._prefork_master = master
                if self._prefork_shutdown:
                    master.request_stop(graceful=True)
            master.run()
        finally:
            with self._prefork_lock:
                self._prefork_master = None
                self._prefork_shutdown = False
            self._prefork_done.set()

    def shutdown(self) -> None:
        """Stop serve_forever() gracefully and wait until it returned.  Call it from another
        thread, as with socketserver (from the serving thread it would deadlock).  In a
        worker (a handler calling ``self.server.shutdown()``) it asks the master for the same
        graceful stop and returns at once: the request finishes (core/pooled.py)."""
        if pooled.request_stop():
            return
        with self._prefork_lock:
            self._prefork_shutdown = True
            if self._prefork_master is not None:
                self._prefork_master.request_stop(graceful=True)
        self._prefork_done.wait()

    def server_close(self) -> None:
        """Close the listening socket; a pool still running is stopped quickly first."""
        with self._prefork_lock:
            master = self._prefork_master
        if master is not None and master.thread_ident != threading.get_ident():
            master.request_stop(graceful=False)
            self._prefork_done.wait()
        super().server_close()  # type: ignore[misc]
        for other in self.extra_listeners:
            other.server_close()
        if self._prefork_unix_ident is not None and self._prefork_unix_owner == os.getpid():
            sockets.remove_unix_path(self.server_address, self._prefork_unix_ident)
            self._prefork_unix_ident = None

    def server_bind(self) -> None:
        path = self.server_address
        on_file = sockets.is_path_address(self.address_family, path)
        if on_file:
            sockets.clear_stale_unix_path(path, self.socket.type)
        super().server_bind()  # type: ignore[misc]
        if self.oob_inline:
            urgent.inline(self.socket)
        if on_file:
            self._own_socket_file()
            # Before listen(): no client connects while the file still has the umask's mode.
            if self.socket_mode is not None:
                os.chmod(path, self.socket_mode)
            privileges.chown(path, self.credentials)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log the exception of a failed request through ``logging`` (socketserver prints).

        A client that goes away (reset, broken pipe, not connected, timed out) is part of
        normal traffic: one line at debug level, so a stream of resets cannot flood the log.
        Anything else is a bug in the handler and is logged with its traceback."""
        exc = sys.exc_info()[1]
        if is_client_gone(exc):
            log.debug("worker (pid %d) client %r went away: %s", os.getpid(), client_address,
                      exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc))
            return
        log.exception(
            "worker (pid %d) error while handling a request from %r", os.getpid(), client_address
        )

    # -- hooks --------------------------------------------------------------------------------

    def add_listener(self, other: socketserver.BaseServer) -> None:
        """Serve ``other``'s socket too, in every worker, with ``other``'s request methods (its
        own class, so a unix listener can sit beside a TCP one).  It is closed with this one."""
        self.extra_listeners.append(other)

    def listening_servers(self) -> list[Any]:
        """This server and the ones added with add_listener(), in order; a server without a
        socket (a generic ``BaseServer``, see pulls_requests()) is none."""
        return [s for s in (self, *self.extra_listeners) if getattr(s, "socket", None) is not None]

    def pulls_requests(self) -> bool:
        """True when this server has no socket (mixed into ``socketserver.BaseServer``): each
        worker calls its ``get_request()`` itself, waiting on ``fileno()`` if it has one."""
        return getattr(self, "socket", None) is None

    def keep_socket_file(self) -> None:
        """Leave the unix socket files in place at close: another master serves them now."""
        for server in self.listening_servers():
            if isinstance(server, PreforkMixIn):
                server.disown_socket_file()

    def disown_socket_file(self) -> None:
        """Leave this listener's unix socket file in place at close."""
        self._prefork_unix_ident = None

    def adopt_socket_file(self) -> None:
        """Remove the unix socket file at close, as if bound here (an inherited socket)."""
        if sockets.is_path_address(self.address_family, self.server_address):
            self._own_socket_file()

    def _own_socket_file(self) -> None:
        self._prefork_unix_ident = sockets.file_ident(self.server_address)
        self._prefork_unix_owner = os.getpid()

    def listener_names(self) -> list[str]:
        """Every listener's address as a user would type it, for titles and logs."""
        return [s.listener_name() if isinstance(s, PreforkMixIn) else str(s.server_address)
                for s in self.listening_servers()]

    def listener_name(self) -> str:
        """The listening address as a user would type it."""
        kind = "tcp"
        if self.socket.type == socket.SOCK_DGRAM:
            kind = "unix-dgram" if self.address_family == socket.AF_UNIX else "udp"
        return sockets.format_address(kind, self.address_family, self.server_address)


class PreforkTCPServer(PreforkMixIn, socketserver.TCPServer):
    allow_reuse_address = True


class PreforkUDPServer(PreforkMixIn, socketserver.UDPServer):
    allow_reuse_address = True


class PreforkUnixStreamServer(PreforkMixIn, socketserver.UnixStreamServer):
    pass


class PreforkUnixDatagramServer(PreforkMixIn, socketserver.UnixDatagramServer):
    pass


class PreforkHTTPServer(PreforkMixIn, http.server.HTTPServer):
    pass


# PreforkWSGIServer lives in prefork/apps/server.py, beside the WSGI handler it serves with.
