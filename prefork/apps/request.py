"""Reading an HTTP/1.x request head, and deciding how its body is framed.

Why so strict.  A server behind a proxy must agree with the proxy on where one request ends and
the next begins; where two parsers disagree, a request can be smuggled inside another.  So this
parser refuses, rather than guesses, at every point the RFC 9112 allows it to: a request with
both ``Content-Length`` and ``Transfer-Encoding``, a transfer coding other than a final
``chunked``, a ``Content-Length`` that is not plain digits (or two that differ), whitespace
before a header's colon, obsolete line folding, and a bare CR.  Sizes are bounded too (the
request line, each header line, the number of headers: the user's limits, ``core/httplimits.py``,
and the head in all), so a client cannot make a worker buffer without limit.  Everything refused
raises :class:`RequestError` with the status to answer; a head that ends before it is complete,
:class:`HeadCut` (a 400 too), which the multiplexer's look at a partial head tells apart from a
refusal (``judge``: the peek asks this very parser, so the two cannot disagree).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Literal

from prefork.core.httpgrammar import DIGITS, TOKEN, field_value, list_items, valid_host
from prefork.core.httplimits import DEFAULT, MAX_HEAD, HeadLimits

MAX_LEADING_EMPTY_LINES = 4  # RFC 9112 2.2: ignore at least one empty line before a request

_TOKEN = TOKEN
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")

Framing = Literal["none", "length", "chunked"]


class RequestError(Exception):
    """A request this server refuses: ``status`` is the response to send, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HeadCut(RequestError):
    """The head ended (EOF) before it was complete."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


@dataclass
class RequestHead:
    """The request line and the header fields, decoded as latin-1 (PEP 3333's "native
    strings"); ``headers`` keeps the order and the duplicates, names lower-cased."""

    method: str
    target: str
    version: str  # "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # Set by a reader that saw it (fasthead.take_common): the target is in origin form, and
    # among the fields are one Host (its value ``authority``) and no Content-Length,
    # Transfer-Encoding or Expect -- no body, no framing to judge; ``closing``: a Connection
    # field of a plain head says close.
    plain: bool = field(default=False, compare=False)  # (derived: equal heads may differ)
    authority: str = field(default="", compare=False)
    closing: bool = field(default=False, compare=False)
    size: int = field(default=0, compare=False)  # the head's bytes, where the reader says

    @property
    def http11(self) -> bool:
        return self.version != "HTTP/1.0"

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), duplicates joined by ", "."""
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of header ``name``, lower-cased."""
        return {part.lower() for part in list_items(self.get(name) or "") if part}


def _line(rfile: io.BufferedIOBase, limit: int, status: int, what: str) -> bytes:
    """One line without its CRLF (a bare LF is accepted, as RFC 9112 2.2 allows)."""
    return _strip(rfile.readline(limit + 2), limit, status, what)


def _strip(raw: bytes, limit: int, status: int, what: str) -> bytes:
    if not raw.endswith(b"\n"):
        if len(raw) >= limit + 2:
            raise RequestError(status, f"{what} longer than {limit} bytes")
        raise HeadCut(f"connection closed inside the {what}")
    line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if len(line) > limit:
        raise RequestError(status, f"{what} longer than {limit} bytes")
    if b"\r" in line:
        raise RequestError(400, f"bare CR in the {what}")
    return line


def read_head(rfile: io.BufferedIOBase, limits: HeadLimits = DEFAULT) -> RequestHead | None:
    """Read one request head from ``rfile``; None if the connection ended before a request."""
    for _ in range(MAX_LEADING_EMPTY_LINES + 1):
        raw = rfile.readline(limits.request_line + 2)
        if not raw:
            return None
        if raw not in (b"\r\n", b"\n"):
            break
    else:
        raise RequestError(400, "empty lines instead of a request")
    line = _strip(raw, limits.request_line, 414, "request line")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise RequestError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise RequestError(400, "malformed method")
    if not target or any(c <= 0x20 or c == 0x7F for c in target):
        raise RequestError(400, "malformed request target")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise RequestError(400, "malformed HTTP version")
    if match.group(1) != b"1":
        raise RequestError(505, "only HTTP/1.x is served")
    head = RequestHead(method.decode("ascii"), target.decode("latin-1"),
                       "HTTP/1.0" if match.group(2) == b"0" else "HTTP/1.1")
    read_headers(rfile, head, limits)
    return head


def read_headers(rfile: io.BufferedIOBase, head: RequestHead, limits: HeadLimits) -> None:
    total = 0
    while True:
        line = _line(rfile, limits.field_size, 431, "header line")
        if not line:
            return
        total += len(line)
        if total > MAX_HEAD or len(head.headers) >= limits.fields:
            raise RequestError(431, "request header fields too large")
        if line[:1] in (b" ", b"\t"):
            raise RequestError(400, "obsolete line folding in a header")
        name, colon, raw = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise RequestError(400, "malformed header line")
        value = field_value(raw)
        if value is None:
            raise RequestError(400, "a control byte in a header value")
        head.headers.append((name.decode("ascii").lower(), value.decode("latin-1")))


def judge(data: bytes, limits: HeadLimits) -> int:
    """The status this parser refuses the partial head ``data`` with once it reads it (it has
    read enough to), or 0 while it has not: the multiplexer's look at a head that has not ended
    (``core/httppeek.py``), so that a head already refused is answered at once, not after the
    client_timeout.  (Host fields are judged once the head is complete.)"""
    try:
        read_head(io.BytesIO(data), limits)
    except HeadCut:
        return 0
    except RequestError as exc:
        return exc.status
    return 0


def framing(head: RequestHead) -> tuple[Framing, int]:
    """How the body is delimited: ("none", 0), ("length", n) or ("chunked", 0)."""
    codings = [key for key, _ in head.headers if key == "transfer-encoding"]
    lengths = [value for key, value in head.headers if key == "content-length"]
    if codings:
        if lengths:
            raise RequestError(400, "both Content-Length and Transfer-Encoding")
        if not head.http11:
            raise RequestError(400, "Transfer-Encoding in an HTTP/1.0 request")
        coding = [part.lower() for part in list_items(head.get("transfer-encoding") or "")]
        if coding != ["chunked"]:
            if coding[-1:] != ["chunked"]:
                raise RequestError(400, "the last transfer coding is not chunked")
            raise RequestError(501, f"transfer coding not supported: {', '.join(coding[:-1])}")
        return "chunked", 0
    if lengths:
        values = {part for value in lengths for part in list_items(value)}
        if len(values) != 1 or not DIGITS.fullmatch(next(iter(values))):
            raise RequestError(400, "invalid Content-Length")
        length = int(values.pop())
        return ("length", length) if length else ("none", 0)
    return "none", 0


def known_host(given: str) -> bool:
    """Whether ``given`` is a valid Host value (the valid ones remembered, bounded)."""
    if given in _HOSTS:
        return True
    if valid_host(given):
        if len(_HOSTS) < HOSTS_KEPT:
            _HOSTS.add(given)
        return True
    return False


def host(head: RequestHead) -> str | None:
    """The request's host (RFC 9112 3.2): from an absolute-form target if it is one, else the
    one ``Host`` field; None if there is neither (an HTTP/1.0 request).  Two Host fields, or
    one that is not ``uri-host [":" port]``, raise RequestError 400, as does an HTTP/1.1
    request without one."""
    if head.plain and known_host(head.authority):
        return head.authority
    values = [value for key, value in head.headers if key == "host"]
    if len(values) > 1:
        raise RequestError(400, "more than one Host header")
    if values and not valid_host(values[0]):
        raise RequestError(400, "malformed Host header")
    if head.http11 and not values:
        raise RequestError(400, "an HTTP/1.1 request needs a Host header")
    authority = target_authority(head.target)
    if authority is not None:
        return authority
    return values[0] if values else None


# Host values found valid (a server is asked by the same few names).
_HOSTS: set[str] = set()
HOSTS_KEPT = 256


def target_authority(target: str) -> str | None:
    """The authority of an absolute-form ``target`` (http or https), None for another form;
    RequestError 400 if it is not a valid ``uri-host [":" port]`` (userinfo included)."""
    if target.startswith("/") or target == "*":
        return None
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise RequestError(400, "unsupported request target")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if not authority or not valid_host(authority):
        raise RequestError(400, "malformed authority in the request target")
    return authority
