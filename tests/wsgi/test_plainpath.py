"""prefork/apps/plainpath.py: a head taken as plain makes exactly the environ the general path
(the strict parser's head, then WSGIRequestHandler.make_environ) makes of the same bytes, with
the same Connection, version and HEAD answers; and a head the strict parser refuses, or one
with a body, is never taken.  Byte by byte and by mutation, as tests/wsgi/test_wsgi_fasthead.py
checks the head readers."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest

from prefork.apps import forwarded, plainpath, request
from prefork.apps.request import RequestError
from prefork.apps.wsgi import WSGIRequestHandler
from prefork.core import httplimits

BASES = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a%20b?c=%41#f HTTP/1.1\r\nHost: h:80\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    b"HEAD /app/x?y HTTP/1.0\r\nhost: h\r\nX-A: 1\r\nx-a: 2\r\nConnection: a, close\r\n\r\n",
    b"DELETE /p HTTP/1.1\r\nUser-Agent: u\r\nHost: [::1]:8\r\nX_Under: z\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 9.9.9.9\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"GET / HTTP/1.1\r\nForwarded: for=8.8.8.8;proto=https\r\nHost: x\r\n\r\n",
]


def handler(prefix: str) -> WSGIRequestHandler:
    made = WSGIRequestHandler.__new__(WSGIRequestHandler)  # (no request served: its parts)
    made._limits, made._trust = httplimits.DEFAULT, None
    made._base = {"SCRIPT_NAME": prefix, "SERVER_NAME": "s"}
    made._joins = plainpath.joins(made._base)
    return made


def trusting() -> WSGIRequestHandler:
    made = handler("")
    made._trust = forwarded.trusted("*")  # (every peer's proxy headers count)
    made._base["REMOTE_ADDR"], made._base["wsgi.url_scheme"] = "1.2.3.4", "http"
    return made


def with_defaults() -> WSGIRequestHandler:
    """A subclass's base environ that has field keys already: a field joins them (found by a
    review: the plain path replaced them)."""
    made = handler("")
    made._base.update({"HTTP_X_A": "d", "CONTENT_TYPE": "ct", "HTTP_COOKIE": "c=0"})
    made._joins = plainpath.joins(made._base)
    assert made._joins
    return made


HANDLERS = [handler(""), handler("/app"), trusting(), with_defaults()]


def general(made: WSGIRequestHandler, raw: bytes) -> tuple[Any, ...] | None:
    """What the general path makes of ``raw``: None where it would not serve it as a plain
    request (a refusal, a body, bytes after the head)."""
    rfile = io.BufferedReader(io.BytesIO(raw))
    try:
        head = request.read_head(rfile)
        if head is None or rfile.read() or request.framing(head)[0] != "none":
            return None
        if head.get("expect") is not None:
            return None
        environ = made.make_environ(head, None, made._base)  # type: ignore[arg-type]
    except RequestError:
        return None
    closing = head.version == "HTTP/1.0" or "close" in head.tokens("connection")
    return environ, closing, head.version != "HTTP/1.0", head.method == "HEAD"


def check(raw: bytes) -> None:
    for made in HANDLERS:
        environ = made._plain(raw, len(raw)) if raw.find(b"\r\n\r\n") == len(raw) - 4 else None
        if environ is None:
            continue
        expected = general(made, raw)
        assert expected is not None, raw
        want, closing, http11, head_only = expected
        again = made._plain(raw, len(raw))  # (a head seen before: from the table, _HEADS)
        assert again is not None, raw
        del want["wsgi.input"]
        for got in (environ, again):
            del got["wsgi.input"]
            assert got == want, raw
            assert list(got) == list(environ), raw  # (the same order of keys too)
        assert (made._closing, made._http11, made._head_only) == (closing, http11, head_only), raw


def test_the_bases_are_taken_as_plain() -> None:
    for raw in BASES:
        assert HANDLERS[0]._plain(raw, len(raw)) is not None, raw
        check(raw)


@pytest.mark.parametrize("base", BASES)
def test_every_byte_in_every_place_makes_the_general_paths_environ(base: bytes) -> None:
    for i in range(len(base)):
        for byte in range(256):
            check(base[:i] + bytes([byte]) + base[i + 1:])  # replaced
            check(base[:i] + bytes([byte]) + base[i:])  # inserted


def test_mutated_heads_make_the_general_paths_environ() -> None:
    rnd = random.Random(30)
    special = b" \t\r\n:\x00\x7f\x80\xff,;/?#%HTTP1.0"
    extra = [b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: y\r\n",
             b"Expect: 100-continue\r\n", b"Connection: close\r\n", b"\r\n"]
    for _ in range(20000):
        raw = bytearray(rnd.choice(BASES))
        if rnd.random() < 0.3:
            line = raw.find(b"\r\n") + 2
            raw[line:line] = rnd.choice(extra)
        for _ in range(rnd.randint(0, 3)):
            i = rnd.randrange(len(raw) + 1)
            byte = rnd.choice(special) if rnd.random() < 0.7 else rnd.randrange(256)
            if rnd.random() < 0.5 and i < len(raw):
                raw[i] = byte
            else:
                raw.insert(i, byte)
        check(bytes(raw))


def test_a_head_with_a_body_or_two_hosts_is_not_plain() -> None:
    for raw in (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\n",
                b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"):
        assert HANDLERS[0]._plain(raw, len(raw)) is None, raw


def test_a_remembered_head_still_meets_each_servers_limits() -> None:
    raw = b"GET /lim HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n"
    assert HANDLERS[0]._plain(raw, len(raw)) is not None
    assert raw.decode("latin-1") in plainpath._HEADS
    strict = handler("")
    strict._limits = httplimits.HeadLimits(fields=2)
    assert strict._plain(raw, len(raw)) is None  # (three fields: the general path's 431)
    strict._limits = httplimits.HeadLimits(field_size=len(raw) - 1)
    assert strict._plain(raw, len(raw)) is None


def test_the_table_of_heads_is_bounded() -> None:
    for n in range(plainpath.HEADS_KEPT * 2 + 5):
        raw = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n
        assert HANDLERS[0]._plain(raw, len(raw))["PATH_INFO"] == f"/{n}"  # type: ignore[index]
        assert len(plainpath._HEADS) <= plainpath.HEADS_KEPT
    long = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * plainpath.HEAD_KEPT + b"\r\n\r\n"
    assert HANDLERS[0]._plain(long, len(long)) is not None
    assert long.decode("latin-1") not in plainpath._HEADS
