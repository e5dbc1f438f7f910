"""prefork/apps/request.py and body.py: the request head, the framing, the chunked decoder."""

from __future__ import annotations

import io

import pytest

from prefork.apps import fasthead
from prefork.apps.body import ChunkedBody, IncompleteBody, LengthBody, spool
from prefork.apps.request import RequestError, framing
from prefork.core.httplimits import LINE as MAX_REQUEST_LINE

# The head tests run with both parsers (conftest.py), the body tests need neither.
heads = pytest.mark.usefixtures("head_parser")


def head_of(raw: bytes):  # type: ignore[no-untyped-def]
    return fasthead.for_server(None)(io.BufferedReader(io.BytesIO(raw)))  # type: ignore[arg-type]


def status_of(raw: bytes) -> int:
    with pytest.raises(RequestError) as info:
        head = head_of(raw)
        assert head is not None
        framing(head)
    return info.value.status


@heads
def test_head_is_parsed_with_duplicates_in_order() -> None:
    head = head_of(b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a:  2 \r\n\r\nrest")
    assert head is not None
    assert (head.method, head.target, head.version) == ("GET", "/a?b=1", "HTTP/1.1")
    assert head.headers == [("host", "x"), ("x-a", "1"), ("x-a", "2")]
    assert head.get("x-a") == "1, 2"
    assert framing(head) == ("none", 0)


@heads
def test_end_of_connection_before_a_request_is_none() -> None:
    assert head_of(b"") is None


@heads
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x", 400),
        (b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n", 431),
    ],
)
def test_refused_heads(raw: bytes, status: int) -> None:
    assert status_of(raw) == status


@heads
def test_repeated_equal_content_lengths_are_one() -> None:
    head = head_of(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
    assert head is not None and framing(head) == ("length", 5)


def reader(raw: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(raw))


def test_chunked_body_decodes_and_stops_at_its_end() -> None:
    rfile = reader(b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n"
                   b"Trailer: x\r\n\r\nNEXT")
    body = ChunkedBody(rfile)  # type: ignore[arg-type]
    assert body.readline() == b"Wikipedia in\r\n"
    assert body.read(3) == b"\r\nc"
    assert body.read() == b"hunks."
    assert body.read() == b""
    assert rfile.read() == b"NEXT"  # the next request is left alone


@pytest.mark.parametrize(
    "raw",
    [b"0x4\r\nWiki\r\n0\r\n\r\n", b"-1\r\n", b"4\r\nWikiXX\r\n0\r\n\r\n", b" 4\r\nWiki\r\n",
     b"1_0\r\n", b"\r\n"],
)
def test_malformed_chunks_are_refused(raw: bytes) -> None:
    with pytest.raises(RequestError) as info:
        ChunkedBody(reader(raw)).read()  # type: ignore[arg-type]
    assert info.value.status == 400


def test_truncated_bodies_raise_incomplete() -> None:
    with pytest.raises(IncompleteBody):
        ChunkedBody(reader(b"10\r\nshort")).read()  # type: ignore[arg-type]
    with pytest.raises(IncompleteBody):
        LengthBody(reader(b"short"), 10).read()  # type: ignore[arg-type]


def test_length_body_reads_lines_and_iterates() -> None:
    rfile = reader(b"a\nbb\nccc")
    body = LengthBody(rfile, 7)  # type: ignore[arg-type]
    assert list(body) == [b"a\n", b"bb\n", b"cc"]
    assert rfile.read() == b"c"
    body = LengthBody(reader(b"line one\nx"), 10)  # type: ignore[arg-type]
    assert body.readline(4) == b"line"
    assert body.readlines() == [b" one\n", b"x"]


def test_first_read_sends_continue_once() -> None:
    calls: list[int] = []
    body = LengthBody(reader(b"abc"), 3, lambda: calls.append(1))  # type: ignore[arg-type]
    assert body.read(1) == b"a"
    assert body.read() == b"bc"
    assert calls == [1]


def test_drain_and_spool() -> None:
    body = LengthBody(reader(b"x" * 100), 100)  # type: ignore[arg-type]
    assert not body.drain(10)
    assert body.drain(1000)
    chunked = ChunkedBody(reader(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"))  # type: ignore[arg-type]
    stream, size = spool(chunked, 100)
    assert (stream.read(), size) == (b"abcde", 5)
    with pytest.raises(RequestError) as info:
        spool(ChunkedBody(reader(b"3\r\nabc\r\n0\r\n\r\n")), 2)  # type: ignore[arg-type]
    assert info.value.status == 413
