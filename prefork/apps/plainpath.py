"""A held connection's next request read by its WSGI handler, and a plain one made into its
environ in one pass (issue 20: the keep-alive request path).

Why.  Between keep-alive requests a WSGI connection waits in the worker's multiplexer; on its
event the handler reads what arrived itself (``take_head``, for ``mux.on_event``: one ``recv``,
no peek).  Most such requests are *plain*: one whole head and nothing after it, of the common
shape, with no body.  The general path reads such a head into a :class:`RequestHead` (a field
list, lower-cased names), then makes the environ from it (the fields again, the Host again):
two passes over the fields and two objects per request, about a sixth of a kept-alive
request's instructions.  Here each field line goes straight into the environ, and what a line
means (its key, its value without OWS, whether it is valid by the strict grammar, what it
tells: the Host, a close, a body) is learnt once per distinct line (a client sends the same
Host, User-Agent and Accept lines on every request), so a known line costs one lookup, and the
grammar's expression (``fasthead.COMMON_HEAD``: 3k instructions for a short head) is not run.
A whole head sent again as it was (the same target and the same fields: a client's polling,
an API client, a load generator) is one lookup (``_HEADS``, bounded), and the environ is the
connection's copied with its request's keys and its fields' keys; on the connection that sent
it last, the environ it made then is copied (``_again``: one comparison of the bytes).

What is plain.  The read took all that had arrived, less than the reader's buffer, and it is
one head ending in its first CRLF CRLF, no longer than the shorter line limit, with at most
``limit_request_fields`` fields: a request line ``METHOD SP target SP HTTP/1.x`` (a token, an
origin-form target of printable bytes: a subset of the grammar's), then field lines each
valid by the grammar (``FIELD_LINE``); exactly one Host, valid; no Content-Length,
Transfer-Encoding or Expect.  Anything else (a pipelined request behind it, a body, part of a
head, another shape, every refusal) goes back into the handler's reader
(``connio.ConnIO.put_back``) and the general path reads it, so its answers stay the strict
parser's.  tests/wsgi/test_plainpath.py checks, byte by byte and by
mutation, that a head taken here makes the environ the general path makes of it.
"""

from __future__ import annotations

import io
import re
import socket
from typing import Any

from prefork.apps import forwarded
from prefork.apps.environ import environ_key, joined, split_target
from prefork.apps.fasthead import FIELD_BYTES, HeadReader, read_head_grammar, take_common
from prefork.apps.request import RequestHead, known_host
from prefork.core import connio, httplimits
from prefork.core.httpgrammar import TCHAR, TOKEN, list_items
from prefork.core.keepalive import GONE, NOTHING, OTHER

DONTWAIT = socket.MSG_DONTWAIT
# What a field line tells: nothing more (0), the Host (valid), a Connection that says close,
# that the head is not plain (a body's framing, an expectation, a Host that is not valid), a
# header forwarded.apply reads (a trusted peer's).
_ORDINARY, _HOST, _CLOSE, _NOT_PLAIN, _PROXY = 0, 1, 2, 3, 4
_KINDS = {"host": _HOST, "connection": _CLOSE, "content-length": _NOT_PLAIN,
          "transfer-encoding": _NOT_PLAIN, "expect": _NOT_PLAIN,
          "x-forwarded-for": _PROXY, "x-forwarded-proto": _PROXY, "forwarded": _PROXY}


# A field line of the strict grammar (fasthead's, on the latin-1 text of the head).
FIELD_LINE = re.compile((TCHAR + rb"+:" + FIELD_BYTES).decode("latin-1"))
_REFUSED = ("", _NOT_PLAIN, "")


def _learn(line: str) -> tuple[str, int, str]:
    """A field line -> its environ key ("": dropped), what it tells, and its value without
    OWS; a line the grammar refuses is not plain."""
    if FIELD_LINE.fullmatch(line) is None:
        return _REFUSED
    name, _, value = line.partition(":")
    lowered, value = name.lower(), value.strip(" \t")
    kind = _KINDS.get(lowered, _ORDINARY)
    if kind == _HOST and not known_host(value):
        kind = _NOT_PLAIN  # (the strict path refuses it)
    elif kind == _CLOSE and "close" not in list_items(value.lower()):
        kind = _ORDINARY
    entry = (environ_key(lowered), kind, value)
    if len(line) <= LINE_KEPT:
        if len(_LINES) >= LINES_KEPT:
            _LINES.clear()
        _LINES[line] = entry
    return entry


# Field lines as sent -> what _learn makes of them: a client sends the same Host, User-Agent,
# Accept... line on every request (a line that differs each time, a request id, is learnt
# each time; the table starts again once full).
_LINES: dict[str, tuple[str, int, str]] = {}
LINES_KEPT, LINE_KEPT = 512, 256  # lines, and the longest kept (at most 128 KiB in all)


def _token(method: str) -> bool:
    """Whether ``method`` is a token (the valid ones remembered, bounded)."""
    if TOKEN.fullmatch(method.encode("latin-1")) is None:
        return False
    if len(_METHODS) < METHODS_KEPT:
        _METHODS.add(method)
    return True


_METHODS: set[str] = set()
METHODS_KEPT = 64
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")

# What a request line gives the environ, whether it is HTTP/1.1, whether its path is outside
# the mount prefix.
Request = tuple[dict[str, str], str, bool, bool]


def _request(line: str, prefix: str) -> Request | None:
    """A plain head's request line ``METHOD SP target SP HTTP/1.x`` (a token, an origin-form
    target of printable bytes, a subset of the grammar's), under the mount ``prefix``; None
    if it is not one.  Without a prefix, remembered (a client asks for the same few again)."""
    parts = line.split(" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if (version not in _VERSIONS or target[:1] != "/" or not target.isprintable()
            or (method not in _METHODS and not _token(method))):
        return None
    path, query, target, outside = split_target(target, prefix)
    request = ({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                "REQUEST_URI": target, "SERVER_PROTOCOL": version}, method,
               version == "HTTP/1.1", outside)
    if not prefix and len(line) <= LINE_KEPT:
        if len(_REQUESTS) >= LINES_KEPT:
            _REQUESTS.clear()
        _REQUESTS[line] = request
    return request


_REQUESTS: dict[str, Request] = {}


# What a plain head gives: its request line's keys, its fields' keys (joined as add_fields
# joins repeated ones), how many field lines it has, its method, whether it is HTTP/1.1,
# says close, carries a proxy header, and has a path outside the mount prefix.
Head = tuple[dict[str, str], dict[str, str], int, str, bool, bool, bool, bool]


def _head(text: str, size: int, prefix: str) -> Head | None:
    """The plain head ``text`` (``size`` long, ending in CRLF CRLF) under the mount
    ``prefix``, or None if it is not one.  Without a prefix, remembered whole (a client that
    sends the same head again -- the same target, Host, User-Agent, Accept... -- is answered
    from one lookup)."""
    line_end = text.find("\r\n")
    if line_end + 4 >= size:
        return None  # (no field: no Host)
    line = text[:line_end]
    request = None if prefix else _REQUESTS.get(line)
    if request is None:
        request = _request(line, prefix)
        if request is None:
            return None
    keys, method, http11, outside = request
    lines = text[line_end + 2:size - 4].split("\r\n")
    fields: dict[str, str] = {}
    authority, closing, proxied, known = None, False, False, _LINES
    for line in lines:
        key, kind, value = known.get(line) or _learn(line)
        if kind:
            if kind == _NOT_PLAIN:
                return None
            if kind == _HOST:
                if authority is not None:
                    return None  # (two: the strict path refuses them)
                authority = value
            elif kind == _PROXY:
                proxied = True
            else:
                closing = True
        if not key:
            continue  # X-Forwarded_For would pose as X-Forwarded-For: dropped
        fields[key] = joined(key, fields[key], value) if key in fields else value
    if authority is None:
        return None
    head = (keys, fields, len(lines), method, http11, closing, proxied, outside)
    if not prefix and size <= HEAD_KEPT:
        if len(_HEADS) >= HEADS_KEPT:
            _HEADS.clear()
        _HEADS[text] = head
    return head


# Whole plain heads as sent -> what they give (bounded: the table starts again once full).
_HEADS: dict[str, Head] = {}
HEADS_KEPT, HEAD_KEPT = 256, 2048  # heads, and the longest kept (at most 512 KiB in all)


def joins(base: dict[str, Any]) -> bool:
    """Whether the base environ ``base`` has a key a field makes (a subclass's base_environ
    may): the plain path then joins such fields to it, as add_fields does."""
    return any(key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
               for key in base)


class PlainRequests:
    """The WSGI handler's ``take_head`` (keepalive.TakesHeads): a held connection's next
    request, read off the socket; a plain one as its environ (``_closing``, ``_http11`` and
    ``_head_only`` say the rest), another whole plain head (pipelined) as a RequestHead, else
    NOTHING, GONE or OTHER."""

    connection: socket.socket
    rfile: Any
    _raw: connio.ConnIO | None
    _full: int
    _clean: bool
    _limits: httplimits.HeadLimits
    _base: dict[str, Any]
    _trust: forwarded.Trusted | None
    _read_head: HeadReader
    _joins = True  # joins(_base) (set with it; until then the safe way)
    _closing = False  # the plain request said "Connection: close", or is HTTP/1.0
    _http11 = True
    _head_only = False
    # The last plain head this connection sent, and its environ as made (before the
    # application saw it): a client sending the same request again gets a copy.
    _again = b""
    _template: dict[str, Any] = {}  # noqa: RUF012 (replaced on the instance, never changed)

    def take_head(self) -> dict[str, Any] | RequestHead | int:
        raw = self._raw
        if raw is None or self._read_head is not read_head_grammar:
            return OTHER  # (TLS, or the python or httptools parser: every head is theirs)
        try:
            data = self.connection.recv(self._full, DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return NOTHING  # (woken for nothing: the buffer stays as empty as it was)
        except OSError:
            return GONE
        if not data:
            return GONE
        if data == self._again:  # the head this connection sent last: its environ again
            again = self._template.copy()
            again["wsgi.input"] = io.BytesIO()
            self._clean = True  # (and _closing, _http11, _head_only are still its)
            return again
        size, full = len(data), self._full
        if size < full and data.find(b"\r\n\r\n") == size - 4:
            environ = self._plain(data, size)
            if environ is not None:
                self._clean = True  # nothing buffered (buffered())
                self._again, self._template = data, environ.copy()
                return environ
        raw.put_back(self.rfile, data, size >= full)
        self._clean = False
        if size >= full:  # (more may wait in the socket, with no event to come)
            return OTHER
        head = take_common(self.rfile, data, self._limits, plain_only=True)
        if head is None:
            return OTHER  # stays buffered for the multiplexer's look and the general path
        self._clean = head.size == size
        return head

    def _plain(self, data: bytes | bytearray, size: int, peer: Any = None,
               here: Any = None) -> dict[str, Any] | None:
        """The environ of the plain head ``data`` (all of it), or None if it is not one.
        ``peer`` and ``here``: the connection's addresses, in place of the base environ's
        (a new connection's only request: apps/closing.py)."""
        limits = self._limits
        if size > limits.smallest_line:
            return None
        text, base = data.decode("latin-1"), self._base
        prefix = base["SCRIPT_NAME"]
        head = None if prefix else _HEADS.get(text)
        if head is None:
            head = _head(text, size, prefix)
            if head is None:
                return None
        keys, fields, count, method, http11, closing, proxied, outside = head
        if count > limits.fields:
            return None
        environ = base.copy()  # (then its request's keys: faster than a display with **base)
        environ.update(keys)
        if peer is not None:  # (before the fields: a trusted proxy's header replaces it)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(peer[0]), str(peer[1])
            if here is not None:
                environ["SERVER_NAME"], environ["SERVER_PORT"] = str(here[0]), str(here[1])
        environ["wsgi.input"] = io.BytesIO()
        if outside:
            environ["SCRIPT_NAME"] = ""
        if not self._joins:
            environ.update(fields)
        else:  # a key the base environ has already (a subclass's): joined, as add_fields does
            for key, value in fields.items():
                environ[key] = joined(key, environ[key], value) if key in environ else value
        if proxied and self._trust is not None:
            forwarded.apply(environ, self._trust)
        self._http11, self._closing, self._head_only = http11, closing or not http11, (
            method == "HEAD")
        return environ
