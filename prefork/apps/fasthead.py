"""The request head's fast paths: one expression of the strict grammar, or httptools (llhttp).

Why the strict parser stays the judge.  llhttp is a good parser, but it is not this server's
parser: it accepts heads that :mod:`prefork.apps.request` refuses (two spaces in the request
line, ``HTTP/2.0`` and ``HTTP/0.9``, any number of empty lines before a request, trailing
blanks it keeps in a value) and refuses heads that it accepts (a method llhttp does not know, a
bare LF, two equal Content-Lengths, a byte above 0x7F in the target).  Where two parsers
disagree on a request, a request can be smuggled; so llhttp only gets a fast path, for the
common shape, and every head outside it goes to :func:`prefork.apps.request.read_head`:

* the whole head must already be buffered (``peek``), end in its first CRLF CRLF, be no
  longer than the shorter line limit (``core/httplimits.py``: so no line or total bound can be
  crossed) and not begin with an empty line;
* llhttp must accept it without an upgrade, and its request line must read back exactly as
  ``METHOD SP target SP HTTP/1.x CRLF``; at most ``limit_request_fields`` fields, each valid
  by :mod:`prefork.core.httpgrammar` (llhttp lets some control bytes through).

Anything else (every refusal included) is read again by the strict parser, from the same bytes,
so the answers and their statuses are the strict parser's.  The body's framing is judged by
:func:`prefork.apps.request.framing` on either path.  tests/wsgi/test_wsgi_fasthead.py checks,
byte by byte and by mutation, that the fast path never accepts what the strict parser refuses.

The server's ``http_parser`` (the setting ``--http-parser``) picks the parser: ``auto`` (the
default: :func:`read_head_grammar`, the common shape of head matched whole by one expression of
the strict grammar, in C, the rest read by the strict parser; about half llhttp's cost here,
with its callbacks into Python, and it needs nothing installed), ``httptools`` (llhttp's fast
path above; refused at start where httptools does not import) or ``python`` (the strict parser
alone); a server without the attribute (the stdlib's servers) gets ``auto``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from prefork.apps import request
from prefork.apps.request import RequestHead
from prefork.core.httpgrammar import OWS, TCHAR, list_items, valid_value
from prefork.core.httplimits import DEFAULT, HeadLimits

try:
    import httptools  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # the python parser serves alone
    HTTPTOOLS = False
else:
    HTTPTOOLS = True

HeadReader = Callable[[io.BufferedIOBase, HeadLimits], "RequestHead | None"]

_VERSIONS = {b"HTTP/1.1\r\n": "HTTP/1.1", b"HTTP/1.0\r\n": "HTTP/1.0"}


class _Fields:
    """llhttp's callbacks: the target and the header fields, as the strict parser keeps them."""

    __slots__ = ("headers", "target")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.target = b""

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("ascii").lower(), value.strip(OWS).decode("latin-1")))


def read_head_httptools(rfile: io.BufferedIOBase,
                        limits: HeadLimits = DEFAULT) -> RequestHead | None:
    """:func:`prefork.apps.request.read_head`, with llhttp on the common shape of head."""
    if not HTTPTOOLS:
        raise RuntimeError("httptools is not installed")
    peek = getattr(rfile, "peek", None)
    buffered: bytes = peek() if peek is not None else b""
    end = buffered.find(b"\r\n\r\n") + 4
    if end < 4 or end > limits.smallest_line or buffered[0] in b"\r\n":
        return request.read_head(rfile, limits)
    head = buffered[:end]
    fields = _Fields()
    parser = httptools.HttpRequestParser(fields)
    try:
        parser.feed_data(head)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return request.read_head(rfile, limits)
    # The request line must read back as exactly METHOD SP target SP HTTP/1.x CRLF.
    method, target = parser.get_method(), fields.target
    start = len(method) + len(target) + 2
    version = _VERSIONS.get(head[start:start + 10])
    if (version is None or head[:start] != b" ".join((method, target, b""))
            or len(fields.headers) > limits.fields
            or not all(valid_value(value) for _, value in fields.headers)):
        return request.read_head(rfile, limits)
    rfile.read(end)
    return RequestHead(method.decode("ascii"), target.decode("latin-1"), version, fields.headers)


# The common shape of head, whole, in one expression of the strict grammar: a request line
# "METHOD SP target SP HTTP/1.0|1 CRLF", then field lines "name: value CRLF", then CRLF.
_REQUEST_LINE = rb"(" + TCHAR + rb"+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])\r\n"
# OWS, a field value, OWS (httpgrammar.FIELD_VALUE: it starts and ends with a visible byte) is
# every string of field-value bytes and blanks, and nothing else: matched as such, the line
# needs no backtracking (40 % cheaper; the value is split off its OWS below).  The same
# language: tests/wsgi/test_wsgi_fasthead.py checks it against the strict grammar's.
FIELD_BYTES = rb"[\t\x20-\x7e\x80-\xff]*"
_FIELD_LINE = TCHAR + rb"+:" + FIELD_BYTES + rb"\r\n"
COMMON_HEAD = re.compile(_REQUEST_LINE + rb"(?:" + _FIELD_LINE + rb")*\r\n")
_MINOR = {b"1": "HTTP/1.1", b"0": "HTTP/1.0"}


def read_head_grammar(rfile: io.BufferedIOBase,
                      limits: HeadLimits = DEFAULT) -> RequestHead | None:
    """:func:`prefork.apps.request.read_head`, with the common shape of head (buffered whole,
    no longer than the shorter line limit, CRLF lines, HTTP/1.0 or 1.1, at most
    ``limit_request_fields`` fields) matched by one expression of the strict grammar
    (:data:`COMMON_HEAD`, built from :mod:`prefork.core.httpgrammar`) and split in C; every
    other head, every refusal included, is the strict parser's."""
    peek = getattr(rfile, "peek", None)
    head = take_common(rfile, peek() if peek is not None else b"", limits)
    return head if head is not None else request.read_head(rfile, limits)


def take_common(rfile: io.BufferedIOBase, buffered: bytes, limits: HeadLimits = DEFAULT,
                plain_only: bool = False) -> RequestHead | None:
    """The head at the start of ``buffered`` (what ``rfile`` holds), read off ``rfile``, if it
    is whole and of the common shape (:func:`read_head_grammar`) -- and, with ``plain_only``,
    plain (RequestHead.plain: no body); None, nothing read, if not."""
    end = buffered.find(b"\r\n\r\n") + 4
    if end < 4 or end > limits.smallest_line:
        return None
    match = COMMON_HEAD.match(buffered, 0, end)
    if match is None or match.end() != end:
        return None
    start = match.end(3) + 2
    lines = buffered[start:end - 4].split(b"\r\n") if end - 4 > start else []
    if len(lines) > limits.fields:
        return None
    headers = []
    plain, authority = buffered[match.start(2)] == 47, None  # (47: "/", origin form)
    closing = False
    names = _NAMES
    for line in lines:
        name, _, value = line.partition(b":")
        key = names.get(name)
        if key is None:
            key = name.decode("ascii").lower()
            if len(names) < NAMES_KEPT:
                names[name] = key
        text = value.strip(OWS).decode("latin-1")
        headers.append((key, text))
        if key in _TELLING:  # (RequestHead.plain)
            if key == "host" and authority is None:
                authority = text
            elif key == "connection":
                lowered = text.lower()
                closing = closing or ("close" in lowered and "close" in list_items(lowered))
            else:
                plain = False
    if plain_only and (not plain or authority is None):
        return None
    rfile.read(end)
    return RequestHead(match[1].decode("ascii"), match[2].decode("latin-1"), _MINOR[match[3]],
                       headers, plain and authority is not None, authority or "", closing, end)


# Field names as sent -> lower-cased (a client sends the same few again and again).
_NAMES: dict[bytes, str] = {}
NAMES_KEPT = 256

# The fields a plain head has one Host of, any Connection (its close noted) and none of the
# others (RequestHead.plain).
_TELLING = frozenset({"host", "content-length", "transfer-encoding", "expect", "connection"})


def choose(name: str = "auto") -> HeadReader:
    """The head reader ``name`` (auto, httptools or python) names."""
    name = name.lower()
    if name == "python":
        return request.read_head
    if name == "auto":
        return read_head_grammar
    if name == "httptools":
        if not HTTPTOOLS:
            raise RuntimeError("http_parser is httptools, but httptools is not installed "
                               "(pip install 'prefork[http]')")
        return read_head_httptools
    raise ValueError(f"http_parser must be auto, httptools or python, not {name!r}")


def for_server(server: Any) -> HeadReader:
    """The head reader ``server.http_parser`` names (``auto`` without the attribute)."""
    return choose(getattr(server, "http_parser", "auto"))
