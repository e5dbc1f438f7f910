"""Where an HTTP request ends, from peeked bytes (core/httppeek.py): the head at its first
empty line, a small Content-Length body waited for, everything else handed over with the head."""

from __future__ import annotations

import socket

import pytest

from prefork.core.accepting import PEEKED, head_arrived
from prefork.core.httplimits import MAX_HEAD
from prefork.core.httppeek import BODY_WAIT, head_end, heads_in, request_end

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("data", "expected"), [
    (GET, len(GET)),
    (GET + b"GET / HTTP/1.1\r\n", len(GET)),
    (b"GET / HTTP/1.1\nHost: x\n\n", 24),
    (b"GET / HTTP/1.1\nHost: x\n\r\n", 25),  # LF lines, a CRLF empty line
    (b"\r\n\r\n" + GET, 4 + len(GET)),  # empty lines before the request line
    (b"\r\n\r\nGET / HTTP/1.1\r\n", -1),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", -1),
    (b"", -1),
])
def test_head_end(data: bytes, expected: int) -> None:
    assert head_end(data, len(data)) == expected


def post(headers: bytes, body: bytes = b"") -> tuple[bytes, int]:
    head = b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    return head + body, len(head)


@pytest.mark.parametrize("length", [b"5", b" 5 ", b"0000000000005", b"5, 5", b"5,5"])
def test_a_small_body_is_waited_for(length: bytes) -> None:
    data, head = post(b"Content-Length:" + length + b"\r\n", b"ab")
    assert request_end(data, len(data)) == head + 5  # beyond what arrived: wait
    assert request_end(data + b"cde", len(data) + 3) == head + 5


@pytest.mark.parametrize("headers", [
    b"Content-Length: %d\r\n" % (BODY_WAIT + 1),
    b"Content-Length: 5\r\nExpect: 100-continue\r\n",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length: 1234567890123456789\r\n",
])
def test_the_rest_goes_with_the_head(headers: bytes) -> None:
    data, head = post(headers)
    assert request_end(data, len(data)) == head


def test_a_body_holding_crlf_crlf_after_a_bare_lf_head() -> None:
    data = b"POST / HTTP/1.1\nHost: x\nContent-Length: 8\n\nab\r\n\r\ncd"
    assert request_end(data, len(data)) == len(data)


def test_heads_in_is_an_upper_bound() -> None:
    assert heads_in(GET * 3) == 3
    assert heads_in(b"GET / HTTP/1.1\nHost: x\n\n" * 2) == 2
    assert heads_in(b"") == 0


SHAPES = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET / HTTP/1.1\r\nHost: x\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length : 3\r\n\r\nab",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
]


def test_the_accepts_look_says_what_request_end_says() -> None:
    """accepting.head_arrived's shortcut for the common head (no request_end call) gives
    request_end's verdict on every prefix of every shape, with stale bytes after it."""
    buf = bytearray(b"\r" * MAX_HEAD)  # (stale bytes from an earlier look: never counted)
    for shape in SHAPES:
        for cut in range(len(shape) + 1):
            data = shape[:cut]
            ours, theirs = socket.socketpair()
            try:
                theirs.sendall(data)
                if not data:
                    theirs.close()
                want = 0 <= request_end(data, len(data)) <= len(data)
                assert head_arrived(ours, buf) is want, data
                assert (PEEKED.sock is ours) is want, data
            finally:
                PEEKED.sock = None
                ours.close()
                theirs.close()
