"""A held WSGI connection's next head read by its handler (WSGIRequestHandler.take_head, for
the multiplexer's on_event): only a whole plain head under the ``auto`` parser is taken; a head
with a body, or any head under another parser, stays buffered (OTHER) for the multiplexer's
look and the handler's own parser.  Found by a review: a POST's head was served at once and the
handler then blocked the worker on its slow body; ``--http-parser python`` was ignored from the
second request on."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest

from prefork.apps import fasthead
from prefork.apps.request import RequestHead
from prefork.apps.wsgi import WSGIRequestHandler
from prefork.core import connio, httplimits
from prefork.core.keepalive import GONE, NOTHING, OTHER

GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab"


@pytest.fixture
def pair() -> Iterator[tuple[WSGIRequestHandler, socket.socket]]:
    ours, theirs = socket.socketpair()
    handler = WSGIRequestHandler.__new__(WSGIRequestHandler)  # (no request served: its parts)
    handler.rfile, handler._raw = connio.reader(ours, -1, 1.0)
    handler._limits = httplimits.DEFAULT
    handler._read_head = fasthead.choose("auto")
    handler.connection, handler._full, handler._trust = ours, 8192, None
    handler._base = {"SCRIPT_NAME": ""}
    yield handler, theirs
    ours.close()
    theirs.close()


def test_a_plain_head_is_taken(pair: tuple[WSGIRequestHandler, socket.socket]) -> None:
    handler, client = pair
    assert handler.take_head() == NOTHING
    client.sendall(GET)
    environ = handler.take_head()  # (a plain one: its environ, apps/plainpath.py)
    assert isinstance(environ, dict) and environ["PATH_INFO"] == "/x"
    assert handler.buffered() == b""
    client.sendall(GET + GET)  # pipelined: the first as a head, the second stays buffered
    head = handler.take_head()
    assert isinstance(head, RequestHead) and head.plain and head.target == "/x"
    assert handler.buffered() == GET
    client.close()
    handler.rfile.read(len(GET))
    assert handler.take_head() == GONE


def test_a_head_with_a_body_stays_buffered(
    pair: tuple[WSGIRequestHandler, socket.socket]
) -> None:
    handler, client = pair
    client.sendall(POST)
    assert handler.take_head() == OTHER
    assert handler.buffered() == POST  # nothing consumed: the multiplexer's look sees it all


@pytest.mark.parametrize("parser", ["python", "httptools"])
def test_under_another_parser_every_head_stays_for_it(
    pair: tuple[WSGIRequestHandler, socket.socket], parser: str
) -> None:
    if parser == "httptools" and not fasthead.HTTPTOOLS:
        pytest.skip("httptools is not installed")
    handler, client = pair
    handler._read_head = fasthead.choose(parser)
    client.sendall(GET)
    assert handler.take_head() == OTHER
    head = handler._read_head(handler.rfile, handler._limits)  # (what the handler does then)
    assert head is not None and head.target == "/x"


def test_the_same_head_again_gets_a_fresh_copy_of_its_environ(
    pair: tuple[WSGIRequestHandler, socket.socket]
) -> None:
    """A connection sending the head it sent last gets the environ made then, copied: what the
    application did to the one before (keys, wsgi.input) is not seen, and a head in between
    is its own."""
    handler, client = pair
    other = b"HEAD /y?q HTTP/1.0\r\nHost: h\r\nX-A: 1\r\n\r\n"
    seen = []
    for raw in (GET, GET, GET, other, GET, GET):
        client.sendall(raw)
        environ = handler.take_head()
        assert isinstance(environ, dict)
        assert (handler._http11, handler._head_only) == (raw != other, raw == other)
        expected = handler._plain(raw, len(raw))  # (made afresh from the bytes)
        assert expected is not None
        del expected["wsgi.input"]
        got = dict(environ)
        assert got.pop("wsgi.input") not in [e["wsgi.input"] for e in seen]
        assert got == expected and list(got) == list(expected)
        assert handler.buffered() == b""
        seen.append(environ)
        environ["PATH_INFO"] = "/changed by the app"
        environ["app.mark"] = True
        environ["wsgi.input"].write(b"left by the app")


@pytest.mark.parametrize("closing", [False, True])
@pytest.mark.parametrize("keep_alive", [False, True])
@pytest.mark.parametrize("most", [0, 1, 2, 5])
@pytest.mark.parametrize("retiring", [False, True])
def test_a_plain_requests_response_is_the_one_its_constructor_makes(
    pair: tuple[WSGIRequestHandler, socket.socket], monkeypatch: pytest.MonkeyPatch,
    closing: bool, keep_alive: bool, most: int, retiring: bool,
) -> None:
    """resume() makes a plain request's Response without calling its __init__ (a frame on
    every kept-alive request): the object is the one Response(...) makes."""
    from prefork.apps.response import Response
    from prefork.core import keepalive

    handler, _ = pair
    made: list[Response] = []
    monkeypatch.setattr(handler, "_run", lambda app, environ, body, response, *rest:
                        made.append(response) or True, raising=False)
    handler.wfile, handler._app, handler._count = io.BytesIO(), None, 1  # type: ignore[assignment]
    handler.max_keepalive_requests = most  # type: ignore[misc]
    handler._keep_alive, handler._closing = keep_alive, closing
    handler._head_only, handler._http11 = True, False
    keepalive.RETIRING[0] = retiring
    try:
        handler.resume({"REQUEST_METHOD": "GET", "REQUEST_URI": "/"})
    finally:
        keepalive.RETIRING[0] = False
    reusable = keep_alive and not closing and (not most or most > 2) and not retiring
    want = Response(handler.wfile, True, False, reusable, handler.connection)
    assert vars(made[0]) == vars(want)


def test_a_subclass_keeps_its_own_clean() -> None:
    """Found by a review: the handler's "nothing buffered" flag, made public as ``clean``,
    replaced a subclass's method of that name on every kept-alive request."""
    class Own(WSGIRequestHandler):
        def clean(self) -> str:
            return "mine"

    ours, theirs = socket.socketpair()
    try:
        handler = Own.__new__(Own)
        handler.rfile, handler._raw = connio.reader(ours, -1, 1.0)
        handler._limits, handler._read_head = httplimits.DEFAULT, fasthead.choose("auto")
        handler.connection, handler._full, handler._trust = ours, 8192, None
        handler._base = {"SCRIPT_NAME": ""}
        for _ in range(2):
            theirs.sendall(GET)
            assert isinstance(handler.take_head(), dict)
            assert handler.clean() == "mine" and handler.buffered() == b""
    finally:
        ours.close()
        theirs.close()
