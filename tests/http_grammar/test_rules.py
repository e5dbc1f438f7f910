"""The HTTP/1.1 rules that are not a byte in a position (test_matrix.py has those): the chunked
framing's line ends and sizes, Host, the request target, and the multiplexer's look at a head
agreeing with the parser.  Raw sockets, both head parsers, a pipelined request behind each."""

from __future__ import annotations

import pytest

from tests.http_grammar.conftest import accepted, exchange, refused, responses

Address = tuple[str, int]
TE = b"POST /first HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("body", [
    b"5\nhello\r\n0\r\n\r\n",  # a bare LF ends the chunk-size line
    b"5\r\nhello\n0\r\n\r\n",  # ... the chunk data
    b"5\r\nhello\r\n0\n\r\n",  # ... the last chunk
    b"5\r\nhello\r\n0\r\n\n",  # ... the trailer section
    b"5\r\nhello\r\n0\r\nX: a\n\r\n",  # ... a trailer line
    b"5\nhello\n0\n\n",
    b"5;a\nhello\r\n0\r\n\r\n",  # an LF inside an extension
    b"5;a\rb\r\nhello\r\n0\r\n\r\n",  # a bare CR inside an extension
    b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n",  # ... inside a trailer
    b"5 \r\nhello\r\n0\r\n\r\n",  # a space after the size, no extension
    b"5;\r\nhello\r\n0\r\n\r\n",  # an extension without a name
    b"5;a=\r\nhello\r\n0\r\n\r\n",  # ... with "=" and no value
    b'5;a="b\r\nhello\r\n0\r\n\r\n',  # ... an unterminated quoted string
    b"0000000000000000a\r\nhello\r\n0\r\n\r\n",  # 17 hex digits
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",  # data longer than its size
    b"5\r\nhello\r\n0\r\n folded: x\r\n\r\n",  # a trailer that is not a field line
    b"5\r\nhello\r\n0\r\nX : a\r\n\r\n",
])
def test_chunked_framing_refused(address: Address, body: bytes) -> None:
    refused(address, TE + body)


@pytest.mark.parametrize("body", [
    b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
    b'5 ; a = "q\\"x" ;c=d\r\nhello\r\n0;e\r\nX: a b\r\nY:\r\n\r\n',
    b"0000000000000005\r\nhello\r\n0\r\n\r\n",  # 16 digits: the bound
    b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
])
def test_chunked_framing_accepted(address: Address, body: bytes) -> None:
    assert accepted(address, TE + body)["body"] == "hello"


@pytest.mark.parametrize("head", [
    b"GET /first HTTP/1.1\r\nHost: p\r\nHost: evil.example\r\n\r\n",
    b"GET /first HTTP/1.1\r\nHost: p\r\nHost: p\r\n\r\n",
    b"GET /first HTTP/1.1\r\nHost: evil@p/x\r\n\r\n",
    b"GET /first HTTP/1.1\r\nHost: p/x\r\n\r\n",
    b"GET /first HTTP/1.1\r\nHost: p:80x\r\n\r\n",
    b"GET /first HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"GET http://evil@other.example/first HTTP/1.1\r\nHost: p\r\n\r\n",  # userinfo
    b"GET http:///first HTTP/1.1\r\nHost: p\r\n\r\n",
    b"GET /first HTTP/1.1\r\nX: a\x00b\r\nHost: p\r\n\r\n",  # NUL in a value
])
def test_host_and_values_refused(address: Address, head: bytes) -> None:
    refused(address, head)


@pytest.mark.parametrize(("target", "host", "path", "query"), [
    (b"/first", "p", "/first", ""),
    (b"http://other.example/first?q=1", "other.example", "/first", "q=1"),  # 3.2.2
    (b"http://other.example:8080?q", "other.example:8080", "/", "q"),
    (b"/caf\xc3\xa9", "p", "/caf\u00c3\u00a9", ""),  # latin-1 of the bytes, decoded once
    (b"/caf%C3%A9/%2F", "p", "/caf\u00c3\u00a9//", ""),
    (b"/first?a=%41#frag", "p", "/first", "a=%41"),  # the fragment is not passed on
    (b"/first#frag?x", "p", "/first", ""),
    (b"/[v6]:x", "p", "/[v6]:x", ""),
])
def test_target_and_host(address: Address, target: bytes, host: str, path: str,
                         query: str) -> None:
    seen = accepted(address, b"GET " + target + b" HTTP/1.1\r\nHost: p\r\n\r\n")
    assert (seen["host"], seen["path"], seen["query"]) == (host, path, query)
    assert seen["uri"] == target.partition(b"#")[0].decode("latin-1")  # no fragment either


@pytest.mark.parametrize("host", [b"[::1]:8080", b"127.0.0.1", b"a.b-c_d~e%41:", b""])
def test_valid_hosts(address: Address, host: bytes) -> None:
    seen = accepted(address, b"GET /first HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert seen["host"] == host.decode()


@pytest.mark.parametrize("bad", [
    b"X: a\x00b\r\n", b"X: a\x0bb\r\n", b"Host: q\r\n", b"Host: evil@p/x\r\n",
    b"X y: z\r\n", b"Content-Length: 5\x0b\r\n",
])
def test_refused_head_with_a_small_body_is_answered_at_once(address: Address,
                                                            bad: bytes) -> None:
    """The body is never sent: the multiplexer must hand the head over (and the parser answer
    400) instead of waiting for a body the parser will never read (which would end in 408)."""
    got = responses(exchange(
        address, b"POST /first HTTP/1.1\r\nHost: p\r\n" + bad + b"Content-Length: 5\r\n\r\n"))
    assert [status for status, _ in got] == [400], got


@pytest.mark.parametrize("partial", [b"GET /first HTTP/1.1\r\nHost: p\r\n", b"GE",
                                     b"POST /first HTTP/1.1\r\nHost: p\r\nContent-Length: 5"
                                     b"\r\n\r\nhel"])
def test_half_closed_partial_request_is_closed_at_once(address: Address,
                                                       partial: bytes) -> None:
    """A client that half-closes inside its request can never complete it: closed, without
    the 408 a wait for the deadline would end in."""
    assert exchange(address, partial, half_close=True) == b""
