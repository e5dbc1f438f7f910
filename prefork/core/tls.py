"""Mix-ins for the listening server: TLS, and admitting unix-socket peers by uid/gid.

:class:`TLSMixIn` wraps every accepted connection in TLS *without* the handshake
(``do_handshake_on_connect=False``): in a prefork worker the multiplexer drives the handshake
without blocking and under ``client_timeout``, so clients that never finish it hold no worker;
in the stdlib's sync, threading and forking servers OpenSSL runs it on the handler's first read.
The ``ssl.SSLContext`` is built by the master (``TLSMixIn.tls_load``) at start and again for
each new generation (HUP), so renewed certificate files are read on a reload and the workers
share the context they were forked with.  Its sockets are
:class:`ReadAheadSSLSocket`: an HTTP client's request head is encrypted, so it cannot be
peeked at; the multiplexer reads it (decrypted) ahead of the handler, and the socket's reads
serve those bytes first, so the handler still reads the whole request from its socket.

:class:`PeerCredMixIn` admits a unix-socket client only if the kernel says (``SO_PEERCRED``) its
process runs as an allowed uid or gid.
"""

from __future__ import annotations

import builtins
import os
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def server_context(certfile: str, keyfile: str | None = None,
                   ca_certs: str | None = None) -> ssl.SSLContext:
    """A server-side context; with ``ca_certs``, client certificates signed by them are
    required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    if ca_certs:
        context.load_verify_locations(cafile=ca_certs)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class ReadAheadSSLSocket(ssl.SSLSocket):
    """An ``SSLSocket`` whose reads (``recv``, ``recv_into``, ``read``, hence ``makefile``)
    serve :attr:`ahead` first: decrypted bytes read by :meth:`read_more` (the multiplexer, while
    a request head arrives), then the TLS stream.  With ``ahead`` empty (always, in the stdlib's
    servers) it is an ``SSLSocket``."""

    ahead: bytearray | None = None

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        ahead = self.ahead
        if not ahead or (len <= 0 and buffer is None):
            return super().read(len, buffer)
        return _take(ahead, len, buffer)

    def pending(self) -> int:
        return super().pending() + (builtins.len(self.ahead) if self.ahead else 0)

    def read_more(self, size: int) -> bytes:
        """Up to ``size`` bytes from the TLS stream (one record at most), not from ``ahead``."""
        return super().read(size)


def _take(ahead: bytearray, size: int, buffer: Any) -> Any:
    """The first ``size`` bytes of ``ahead`` (at most), removed from it: bytes, or into
    ``buffer`` (then their count; ``size`` <= 0: as many as it holds, as ``SSLSocket.read``)."""
    if buffer is None:
        data = bytes(ahead[:size])
        del ahead[:size]
        return data
    with memoryview(buffer) as view, view.cast("B") as out:
        room = len(out)
        size = min(size if 0 < size < room else room, len(ahead))
        out[:size] = ahead[:size]
    del ahead[:size]
    return size


def read_ahead_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context``, its sockets made :class:`ReadAheadSSLSocket` (one of their own class's
    subclasses, if it sets a class of its own)."""
    kind = context.sslsocket_class
    if not issubclass(kind, ReadAheadSSLSocket):
        context.sslsocket_class = (ReadAheadSSLSocket if kind is ssl.SSLSocket else
                                   type(kind.__name__, (ReadAheadSSLSocket, kind), {}))
    return context


class TLSMixIn:
    """Server mix-in (before the socketserver class): serve TLS.  Attributes: ``certfile``
    (the certificate chain, PEM), ``keyfile`` (its key; None: in certfile), ``ca_certs`` (None,
    or the CAs whose client certificates are then required).  May be overridden:
    tls_context() (the context it returns gets :func:`read_ahead_context`).

    Call :meth:`tls_load` in the master before ``serve_forever()`` (``prefork serve`` does, and
    again on each reload): the workers forked after it share that context -- the key read by
    the master, as root if it runs as root, so a key only root may read works with ``user``
    (as nginx does it), and one set of session-ticket keys, so a TLS session resumes on any
    worker.  Without it, the first process that accepts builds its own (each worker)."""

    certfile: str | None = None
    keyfile: str | None = None
    ca_certs: str | None = None
    _tls: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        """A new context from the files."""
        if not self.certfile:
            raise ValueError("TLSMixIn needs a certfile")
        return server_context(self.certfile, self.keyfile, self.ca_certs)

    def tls_load(self) -> Callable[[], None]:
        """Build the context now, for the processes forked from here on; returns the undo (the
        previous context back).  Raises what loading the files raises (OSError, ValueError)."""
        previous = self._tls
        self._tls = read_ahead_context(self.tls_context())

        def undo() -> None:
            self._tls = previous

        return undo

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()  # type: ignore[misc]
        if self._tls is None:
            self._tls = read_ahead_context(self.tls_context())
        try:
            wrapped = self._tls.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False)
        except BaseException:
            sock.close()
            raise
        return wrapped, address


class PeerCredMixIn:
    """Server mix-in for unix stream sockets: ``verify_request`` admits a client whose process
    runs as a uid in ``allowed_uids`` (None: only this process's own effective uid) or a gid in
    ``allowed_gids``, as the kernel reports them (``SO_PEERCRED``)."""

    allowed_uids: frozenset[int] | None = None
    allowed_gids: frozenset[int] = frozenset()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            raw = request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        except OSError:
            return False
        _pid, uid, gid = _PEERCRED.unpack(raw)
        uids = self.allowed_uids if self.allowed_uids is not None else {os.geteuid()}
        if uid not in uids and gid not in self.allowed_gids:
            return False
        return bool(super().verify_request(request, client_address))  # type: ignore[misc]
