"""The way into the worker's multiplexer: a new connection's PROXY protocol header
(``proxyproto.py``, from the peers ``proxy_allow_ips`` trusts) and TLS handshake, read without
blocking under ``client_timeout`` from accept, before it waits for its first request."""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable

from prefork.core.conn import Conn, Deadlines, Phase
from prefork.core.errnos import expect_peer_gone
from prefork.core.keepalive import Ready
from prefork.core.listeners import Limits
from prefork.core.proxyproto import ProxyError, refused
from prefork.core.proxyproto import take as take_header
from prefork.core.trust import Trusted

log = logging.getLogger("prefork.worker")


class Opening:
    """The multiplexer's opening of new connections.  The subclass provides buf, deadlines,
    limits, proxied, _wait, _check, _dispatch and _close."""

    buf: bytearray
    deadlines: Deadlines
    limits: Limits
    proxied: dict[int, Trusted]
    _wait: Callable[[Conn], None]
    _check: Callable[..., None]
    _dispatch: Callable[[Conn], None]
    _close: Callable[[Conn], None]

    def _open(self, listener: int, conn: Conn) -> None:
        # client_timeout from accept, for the PROXY header, the handshake and the head.
        self.deadlines.arm(conn, time.monotonic() + self.limits.head_wait)
        trust = self.proxied.get(listener)
        if trust is None:
            self._begin(conn)
        elif trust.peer(conn.address):
            conn.phase = Phase.PROXY
            self._proxy(conn)
        else:
            refused(conn.address, "a PROXY header from a peer not in proxy_allow_ips")
            self._close(conn)

    def _proxy(self, conn: Conn) -> None:
        """Its PROXY header (proxyproto.py) read without blocking, before TLS; then on."""
        try:
            header = take_header(conn.sock, self.buf)
        except (ProxyError, OSError) as exc:
            refused(conn.address, f"PROXY protocol: {exc}")
            self._close(conn)
            return
        if header is None:
            self._wait(conn)
            return
        if header.source is not None:
            conn.address = header.source
        self._begin(conn)

    def _begin(self, conn: Conn) -> None:
        if conn.ready is Ready.ACCEPTED:
            self._dispatch(conn)
        elif conn.tls:
            conn.phase = Phase.HANDSHAKE
            conn.sock.setblocking(False)
            self._handshake(conn)
        else:
            conn.phase = Phase.WAITING
            self._check(conn, defer=False)

    def _handshake(self, conn: Conn) -> None:
        try:
            conn.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self._wait(conn)
            return
        except OSError as exc:  # (ssl.SSLError is one: the client's TLS failed)
            expect_peer_gone("a TLS handshake", exc)
            log.debug("worker (pid %d) TLS handshake with %r failed: %s", os.getpid(),
                      conn.address, exc)
            self._close(conn)
            return
        conn.sock.settimeout(None)  # blocking, as socketserver hands it to handlers
        conn.phase = Phase.WAITING
        self._check(conn, defer=False)
