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


def _date_line(now: int) -> bytes:
    """The Date header's line for the second ``now``, kept in :data:`_DATE` (formatted at most
    once a second)."""
    _DATE[:] = [now, f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n".encode("ascii")]
    return bytes(_DATE[1])


_DATE: list[Any] = [-1, b""]  # the second, its Date line
_time = time.time


class Head:
    """An application's headers, checked, and what the server's head takes from them:
    ``text`` (the lines to send, without Connection), the Content-Length declared, whether
    they say ``Connection: close``, whether they have their own Date, and the Server line
    unless they have their own."""

    __slots__ = ("close", "dated", "length", "server", "text", "wire")

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        names = {name.lower() for name, _ in headers}
        kept = [(n, v) for n, v in headers if n.lower() != "connection"]
        self.close = any(v.strip().lower() == "close" for n, v in headers
                         if n.lower() == "connection")
        self.length = (int(next(v for n, v in kept if n.lower() == "content-length"))
                       if "content-length" in names else None)
        self.dated = "date" in names
        self.server = "" if "server" in names else f"Server: {SERVER}\r\n"
        self.text = "".join(f"{n}: {v}\r\n" for n, v in kept)
        # (status, framing, close) -> the response head's bytes before and after its Date
        self.wire: dict[tuple[str, str, bool], tuple[bytes, bytes]] = {}

    def lines(self, status: str, framing: str, close: bool) -> tuple[bytes, bytes]:
        """The response head with these headers, ``status``, the ``framing`` line and
        ``close``, encoded: what goes before the Date line and what goes after it."""
        key = (status, framing, close)
        wire = self.wire.get(key)
        if wire is None:
            if len(self.wire) >= WIRES_KEPT:
                self.wire.clear()
            wire = self.wire[key] = (
                f"HTTP/1.1 {status}\r\n{self.text}{framing}".encode("latin-1"),
                f"{self.server}{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
                .encode("latin-1"))
        return wire


WIRES_KEPT = 16  # encoded heads kept per Head (a status, a length: a few each)

# Checked heads and statuses by value: an application sends the same few again and again.
_HEADS: dict[tuple[tuple[str, str], ...], Head] = {}
_STATUSES: dict[str, bool] = {}  # a status checked -> whether its response has no body
CACHED = 512  # entries of each, then it starts again


def head_of(headers: Any) -> Head:
    """``headers`` checked (TypeError, ValueError as :func:`_check_headers`), as a Head."""
    if type(headers) is list:
        try:
            key = tuple(headers)
            found = _HEADS.get(key)
        except TypeError:  # an unhashable item: checked (and refused) below
            key, found = None, None
        if found is not None:  # (equal to headers that passed: they pass too)
            return found
    else:
        key = None
    head = Head(_check_headers(headers))
    if key is not None and all(type(item) is tuple and type(item[0]) is str
                               and type(item[1]) is str for item in key):
        if len(_HEADS) >= CACHED:
            _HEADS.clear()
        _HEADS[key] = head
    return head


def checked_status(status: Any) -> str:
    """``status`` checked (TypeError, ValueError as :func:`_check_status`)."""
    if type(status) is str and status in _STATUSES:
        return status
    checked = _check_status(status)
    if type(status) is str:
        if len(_STATUSES) >= CACHED:
            _STATUSES.clear()
        _STATUSES[checked] = _bodiless(checked)
    return checked


def _bodiless(status: str) -> bool:
    """Whether a response with ``status`` has no body (every 1xx, 204, 304)."""
    return status[0] == "1" or status[:3] in _EMPTY


_EMPTY = ("204", "304")  # (with every 1xx: the statuses whose response has no body)


class Response:
    """One response on ``wfile``.  ``reusable`` is what the request allows; ``close`` is
    true once the connection must be closed after this response.  ``sock`` is the plain
    socket behind ``wfile`` when a file may be sent with ``sendfile`` (None under TLS)."""

    # (Positional: made for every request, and a call with keywords costs their unpacking.)
    def __init__(self, wfile: io.BufferedIOBase, head_only: bool, http11: bool,
                 reusable: bool, sock: socket.socket | None = None) -> None:
        self.wfile = wfile
        self.sock = sock
        self.head_only = head_only
        self.http11 = http11
        self.close = not reusable
        # (Read on every response: on the instance, a read is specialized; a class default
        # read through the instance is a lookup by name in 3.11.)
        self.status: str | None = None
        self.headers_sent = False

    # (Class defaults, replaced on the instance as the response goes: fewer stores a request.)
    head: Head | None = None  # the headers checked, as sent (head_of)
    chunked = False
    length: int | None = None  # declared Content-Length
    sent = 0  # body bytes written

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
        # (checked_status and head_of, their caches looked up here first: every request)
        self.status = status if type(status) is str and status in _STATUSES else (
            checked_status(status))
        head = None
        if type(headers) is list:
            try:  # noqa: SIM105 (contextlib.suppress: two calls more on every request)
                head = _HEADS.get(tuple(headers))
            except TypeError:  # an unhashable item: head_of refuses it
                pass
        self.head = head if head is not None else head_of(headers)
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
        if ((type(result) is list or isinstance(result, (list, tuple))) and len(result) == 1
                and not self.headers_sent):
            piece = result[0]
            if self.status is None:
                raise AssertionError("the application returned without calling start_response()")
            self._send_head(len(piece), piece if type(piece) is bytes else bytes(piece))
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
        self.head = head_of([("Content-Type", "text/plain; charset=utf-8")])
        self._send_head(len(body), body)

    # -- the wire -----------------------------------------------------------------------------

    def _send_head(self, known_length: int | None, first: bytes) -> None:
        status, head = self.status, self.head
        assert status is not None and head is not None
        close = self.close or head.close
        no_body = _STATUSES.get(status)
        if no_body is None:  # (a status the table no longer holds: it starts again when full)
            no_body = _bodiless(status)
        length, framing, chunked = head.length, "", False
        if length is None and not no_body:
            if known_length is not None:
                length = known_length
                framing = f"Content-Length: {known_length}\r\n"
            elif self.http11:
                self.chunked = chunked = True
                framing = "Transfer-Encoding: chunked\r\n"
            else:
                close = True  # the end of the body is the end of the connection
        self.length, self.close = length, close
        before, after = head.wire.get((status, framing, close)) or head.lines(
            status, framing, close)
        data = before + after if head.dated else before + (
            _DATE[1] if _DATE[0] == (now := int(_time())) else _date_line(now)) + after
        self.headers_sent = True
        if self.head_only or no_body:
            self.head_only = True
        elif first:  # (_frame, for the first piece: nothing sent yet)
            if length is not None and len(first) > length:
                first = first[:length]
            self.sent = len(first)
            data += b"%x\r\n%b\r\n" % (len(first), first) if chunked else first
        try:
            self.wfile.write(data)  # (as _send: the head is never empty)
        except OSError as exc:
            self.close = True
            raise ClientGone(str(exc)) from None

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
