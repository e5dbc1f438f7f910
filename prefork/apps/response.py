"""Sending one WSGI response: ``start_response``, ``write``, and the application's iterable.

PEP 3333's rules, as this module keeps them:

* The status and headers are held until the first non-empty piece of body (or the end of the
  iterable), so an application may still replace them by calling ``start_response`` again with
  ``exc_info``; once they are sent, such a call re-raises the application's exception.
* Every piece is written as soon as the iterable yields it (streaming); the iterable's
  ``close()`` is the caller's job, in a ``finally``.
* A response without ``Content-Length`` goes out chunked to an HTTP/1.1 client and delimited by
  closing the connection to an HTTP/1.0 one; a one-piece body gets its length instead.  A
  response to HEAD, and a 1xx, 204 or 304, carries no body whatever the application yields.
* More bytes than the ``Content-Length`` the application declared are dropped, and fewer leave
  the connection to be closed (the client could not tell where the next response starts).
* A ``wsgi.file_wrapper`` returned as it is (:mod:`prefork.apps.filewrapper`) over a regular
  file goes out with ``sendfile`` on a plain socket, framed like any body (its length, else one
  chunk, else the connection's end); under TLS it is read and written in large blocks.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import os
import socket
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from prefork.apps.filewrapper import FALLBACK_BLOCK, FileWrapper, position, regular_fd

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]

SERVER = "prefork"
# Hop-by-hop fields are the server's to set (PEP 3333); "Connection: close" is honoured.
HOP_BY_HOP = frozenset({"keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade"})
_FORBIDDEN = frozenset("\r\n\0")


class ClientGone(Exception):
    """Writing to the client failed: it closed the connection or stopped reading."""


class _Clock:
    """The Date header, formatted at most once a second."""

    second = -1
    text = ""

    @classmethod
    def date(cls) -> str:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.text = now, email.utils.formatdate(now, usegmt=True)
        return cls.text


def _no_body(status: str) -> bool:
    code = status[:3]
    return code[0] == "1" or code in ("204", "304")


class Response:
    """One response on ``wfile``.  ``keep_alive`` is what the request allows; ``close`` is
    true once the connection must be closed after this response.  ``sock`` is the plain
    socket behind ``wfile`` when a file may be sent with ``sendfile`` (None under TLS)."""

    def __init__(self, wfile: io.BufferedIOBase, *, head_only: bool, http11: bool,
                 keep_alive: bool, sock: socket.socket | None = None) -> None:
        self.wfile = wfile
        self.sock = sock
        self.head_only = head_only
        self.http11 = http11
        self.close = not keep_alive
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False
        self.length: int | None = None  # declared Content-Length
        self.sent = 0  # body bytes written

    # -- what the application calls -----------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self.status = _check_status(status)
        self.headers = _check_headers(headers)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable, and each piece of the iterable."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"WSGI body pieces must be bytes, not {type(data).__name__}")
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not data:
            return
        if not self.headers_sent:
            self._send_head(None, bytes(data))
        else:
            self._send_piece(bytes(data))

    # -- what the handler calls ---------------------------------------------------------------

    def run(self, result: Iterable[bytes]) -> None:
        """Send the body the application returned (its ``close()`` is the caller's)."""
        if isinstance(result, (list, tuple)) and len(result) == 1 and not self.headers_sent:
            piece = result[0]
            if self.status is None:
                raise AssertionError("the application returned without calling start_response()")
            self._send_head(len(piece), bytes(piece))
            return
        if type(result) is FileWrapper:  # as the application made it: no middleware around it
            self._send_file(result)
        else:
            self._send_all(result)
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        if not self.headers_sent:
            self._send_head(0, b"")
        elif self.chunked and not self.head_only:
            self._send(b"0\r\n\r\n")
        if self.length is not None and self.sent < self.length and not self.head_only:
            self.close = True  # the client waits for bytes that will not come

    def _send_all(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.write(piece)
            if self.head_only and self.headers_sent:
                break  # the head is out; the rest would be dropped anyway

    def _send_file(self, wrapper: FileWrapper) -> None:
        """The file behind ``wrapper``, from its position to its end or the declared length."""
        fd = regular_fd(wrapper)
        if fd is None or self.sock is None:  # a pipe, BytesIO...: as the wrapper reads it
            self._send_all(wrapper if fd is None else wrapper.blocks(FALLBACK_BLOCK))
            return
        if self.status is None:
            raise AssertionError("the application returned without calling start_response()")
        offset = position(wrapper, fd)
        available = max(0, os.fstat(fd).st_size - offset)
        if not self.headers_sent:
            self._send_head(None, b"")
        if self.head_only:
            return
        count = available if self.length is None else min(available, self.length - self.sent)
        if count <= 0:
            return
        if self.chunked:
            self._send(b"%x\r\n" % count)
        self.wfile.flush()  # (unbuffered in a StreamRequestHandler; a subclass may differ)
        queue = getattr(self.wfile, "send_file", None)  # a prefork worker's (core/outbox.py)
        try:
            if queue is not None:  # sent as the client reads, after this handler returns
                queue(fd, offset, count)
                sent = count
                _seek(wrapper.filelike, offset + count)
            else:  # os.sendfile under the socket's timeout; the file is left after what was sent
                sent = self.sock.sendfile(wrapper.filelike, offset, count)
        except OSError as exc:
            self.close = True
            raise ClientGone(str(exc)) from None
        self.sent += sent
        if sent < count:  # the file shrank: the body is cut short, the connection must end
            self.close, self.chunked = True, False
        elif self.chunked:
            self._send(b"\r\n")

    def send_error(self, code: int, reason: str, message: str = "") -> None:
        """A plain-text error response, before any head was sent; the connection closes."""
        body = f"{code} {reason}\n{message}\n".encode("latin-1", "replace")
        self.close = True
        self.status = f"{code} {reason}"
        self.headers = [("Content-Type", "text/plain; charset=utf-8")]
        self._send_head(len(body), body)

    # -- the wire -----------------------------------------------------------------------------

    def _send_head(self, known_length: int | None, first: bytes) -> None:
        assert self.status is not None
        names = {name.lower() for name, _ in self.headers}
        headers = [(n, v) for n, v in self.headers if n.lower() != "connection"]
        if "connection" in names and any(
            v.strip().lower() == "close" for n, v in self.headers if n.lower() == "connection"
        ):
            self.close = True
        no_body = _no_body(self.status)
        if "content-length" in names:
            self.length = int(next(v for n, v in headers if n.lower() == "content-length"))
        elif no_body:
            pass
        elif known_length is not None:
            self.length = known_length
            headers.append(("Content-Length", str(known_length)))
        elif self.http11:
            self.chunked = True
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            self.close = True  # the end of the body is the end of the connection
        if "date" not in names:
            headers.append(("Date", _Clock.date()))
        if "server" not in names:
            headers.append(("Server", SERVER))
        if self.close:
            headers.append(("Connection", "close"))
        lines = [f"HTTP/1.1 {self.status}\r\n", *(f"{n}: {v}\r\n" for n, v in headers), "\r\n"]
        head = "".join(lines).encode("latin-1")
        self.headers_sent = True
        if self.head_only or no_body:
            self.head_only = True
            self._send(head)
        else:
            self._send(head + self._frame(first))

    def _send_piece(self, data: bytes) -> None:
        if not self.head_only:
            self._send(self._frame(data))

    def _frame(self, data: bytes) -> bytes:
        if self.length is not None:
            data = data[: max(0, self.length - self.sent)]
        self.sent += len(data)
        if self.chunked and data:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.wfile.write(data)
        except OSError as exc:
            self.close = True
            raise ClientGone(str(exc)) from None


def _seek(filelike: Any, offset: int) -> None:
    """Leave ``filelike`` after what was queued, as if it had been read (as sendfile does)."""
    seek = getattr(filelike, "seek", None)
    if seek is not None:
        with contextlib.suppress(OSError, ValueError):
            seek(offset)


def _check_status(status: Any) -> str:
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be a str, not {type(status).__name__}")
    code = status[:3]
    if not (code.isdigit() and code[0] in "12345" and (len(status) == 3 or status[3] == " ")):
        raise ValueError(f"invalid WSGI status {status!r}")
    if _FORBIDDEN.intersection(status):
        raise ValueError(f"control character in WSGI status {status!r}")
    return status


def _check_headers(headers: Any) -> list[tuple[str, str]]:
    if not isinstance(headers, list):
        raise TypeError(f"WSGI headers must be a list, not {type(headers).__name__}")
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2
                and isinstance(item[0], str) and isinstance(item[1], str)):
            raise TypeError(f"a WSGI header must be a (str, str) tuple, not {item!r}")
        name, value = item
        if not name or ":" in name or _FORBIDDEN.intersection(name + value) or " " in name:
            raise ValueError(f"invalid WSGI header {item!r}")
        if name.lower() in HOP_BY_HOP:
            raise ValueError(f"hop-by-hop header {name!r} is the server's to set")
        if name.lower() == "content-length" and not value.strip().isdigit():
            raise ValueError(f"invalid Content-Length {value!r}")
    return list(headers)
