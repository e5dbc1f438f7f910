"""prefork/apps/fasthead.py: each fast head reader (the grammar's one expression, and httptools
where it is installed) never accepts what the strict parser refuses, reads the same head where
it accepts, and takes the fast path on common heads."""

from __future__ import annotations

import importlib.util
import io
import random

import pytest

from prefork.apps import fasthead, request
from prefork.apps.request import RequestError, RequestHead

FAST: list[fasthead.HeadReader] = [fasthead.read_head_grammar]
if importlib.util.find_spec("httptools") is not None:
    FAST.append(fasthead.read_head_httptools)

BASES = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a?b=c HTTP/1.0\r\nHost: h\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc",
    b"PUT http://h/p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nCookie: a=b\r\n\r\n0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\nGET / HTTP/1.1\r\n\r\n",
]
Outcome = tuple[str, object, object]


def outcome(reader: fasthead.HeadReader, raw: bytes) -> Outcome:
    """What a reader makes of ``raw``: the head and the bytes left, or the refusal."""
    rfile = io.BufferedReader(io.BytesIO(raw))
    try:
        head = reader(rfile)  # type: ignore[arg-type]
    except RequestError as exc:
        return ("refused", exc.status, str(exc))
    return ("read", head, rfile.read())


def assert_same(raw: bytes) -> None:
    strict = outcome(request.read_head, raw)
    for reader in FAST:
        assert outcome(reader, raw) == strict, (reader.__name__, raw)


@pytest.mark.parametrize("base", BASES)
def test_every_byte_in_every_place_reads_as_the_strict_parser_reads_it(base: bytes) -> None:
    for i in range(len(base)):
        for byte in range(256):
            assert_same(base[:i] + bytes([byte]) + base[i + 1:])  # replaced
            assert_same(base[:i] + bytes([byte]) + base[i:])  # inserted


def test_mutated_heads_read_as_the_strict_parser_reads_them() -> None:
    rnd = random.Random(10)
    special = b" \t\r\n:\x00\x7f\x80\xff,;/?#%HTTP1.0"
    for _ in range(30000):
        raw = bytearray(rnd.choice(BASES))
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(raw) + 1)
            byte = rnd.choice(special) if rnd.random() < 0.7 else rnd.randrange(256)
            op = rnd.random()
            if op < 0.4:
                raw[i:i + 1] = bytes([byte])
            elif op < 0.8:
                raw[i:i] = bytes([byte])
            else:
                del raw[i:i + rnd.randint(1, 3)]
        assert_same(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b"GET  / HTTP/1.1\r\n\r\n",  # llhttp takes two spaces as one
        b"GET / HTTP/2.0\r\n\r\n",  # llhttp takes these versions: 505 here
        b"GET / HTTP/0.9\r\n\r\n",
        b"\r\n" * 6 + b"GET / HTTP/1.1\r\n\r\n",  # llhttp skips any number of empty lines
        b"GET / HTTP/1.1\r\nX: a \t\r\n\r\n",  # llhttp keeps the trailing blanks
        b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",  # llhttp refuses
        b"PROPFIND2 / HTTP/1.1\r\n\r\n",  # a token llhttp does not know as a method
        b"GET /\xe9 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"CONNECT h:443 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 101 + b"\r\n",  # 431, though short
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",  # past the fast path's size: 414
    ],
)
def test_where_the_parsers_differ_the_strict_one_answers(raw: bytes) -> None:
    assert_same(raw)


@pytest.mark.parametrize("reader", FAST, ids=lambda r: r.__name__)
def test_common_heads_take_the_fast_path(monkeypatch: pytest.MonkeyPatch,
                                         reader: fasthead.HeadReader) -> None:
    def no_fallback(rfile: io.BufferedIOBase) -> RequestHead | None:
        raise AssertionError("fell back to the strict parser")

    monkeypatch.setattr(request, "read_head", no_fallback)
    rfile = io.BufferedReader(io.BytesIO(BASES[3]))
    head = reader(rfile)  # type: ignore[arg-type]
    assert head == RequestHead("OPTIONS", "*", "HTTP/1.1",
                               [("host", "x"), ("expect", "100-continue")])
    assert rfile.read() == b"GET / HTTP/1.1\r\n\r\n"  # the pipelined request is left alone
    browser = (b"GET /s/app.js?v=3 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0\r\n"
               b"Accept: */*\r\nAccept-Encoding: gzip, br\r\nCookie: a=1; b=2\r\n\r\n")
    head = reader(io.BufferedReader(io.BytesIO(browser)))  # type: ignore[arg-type]
    assert head is not None and head.get("cookie") == "a=1; b=2"
    assert reader(io.BufferedReader(io.BytesIO(b"GET / HTTP/1.0\r\n\r\n"))) == RequestHead(
        "GET", "/", "HTTP/1.0", [])  # type: ignore[arg-type]


@pytest.mark.parametrize("reader", FAST, ids=lambda r: r.__name__)
def test_a_head_not_yet_buffered_is_read_by_the_strict_parser(
        reader: fasthead.HeadReader) -> None:
    rfile = io.BufferedReader(io.BytesIO(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), 8)
    head = reader(rfile)  # type: ignore[arg-type]
    assert head == RequestHead("GET", "/", "HTTP/1.1", [("host", "x")])
    assert rfile.read() == b"rest"


def test_the_server_chooses_the_parser() -> None:
    class Server:
        http_parser = "python"

    assert fasthead.for_server(Server()) is request.read_head
    assert fasthead.for_server(object()) is fasthead.read_head_grammar  # auto
    Server.http_parser = "auto"
    assert fasthead.for_server(Server()) is fasthead.read_head_grammar
    if importlib.util.find_spec("httptools") is not None:
        Server.http_parser = "httptools"
        assert fasthead.for_server(Server()) is fasthead.read_head_httptools
    with pytest.raises(ValueError, match="http_parser"):
        fasthead.choose("llhttp")


def test_a_field_line_matched_without_backtracking_is_the_strict_grammars_line() -> None:
    """fasthead.FIELD_BYTES (one run of value bytes and blanks) is the language of OWS, a field
    value, OWS (httpgrammar.FIELD_VALUE, which starts and ends with a visible byte)."""
    import re

    from prefork.core.httpgrammar import FIELD_VALUE

    strict = re.compile(rb"[ \t]*" + FIELD_VALUE.pattern + rb"[ \t]*")
    simple = re.compile(fasthead.FIELD_BYTES)
    rnd = random.Random(20)
    alphabet = [b" ", b"\t", b"a", b"\x7f", b"\x80", b"\x00", b"\r", b"\n", b"\x1f", b"\xff"]
    words = [b"", b" ", b"\t", b"a", b" a ", b"a b", b"\x7f", b"a\x7f"]
    for _ in range(20000):
        words.append(b"".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 6))))
    for word in words:
        assert bool(strict.fullmatch(word)) == bool(simple.fullmatch(word)), word
