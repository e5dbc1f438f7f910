"""The HTTP/1.1 grammar, byte by byte, over a raw socket with both head parsers (conftest.py).

One row per field position and byte: every C0 control, SP, DEL and every byte 0x80-0xFF, put
before, inside and after a Transfer-Encoding, Content-Length or Host value, a chunk-size line,
a chunk extension and a trailer value.  Each request has a second one pipelined behind it: a
refused row must answer 400 and close without ever serving it; an accepted row must serve both
and frame the body as the RFC says.  What is accepted (RFC 9110 5.5/5.6.3, RFC 9112 7.1): SP
and HTAB as OWS around a field value (and inside a trailer value), obs-text inside a trailer
value or a quoted chunk extension, a bare LF ending a head line (RFC 9112 2.2) -- and nothing
else.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.http_grammar.conftest import accepted, refused

Address = tuple[str, int]
OWS = {0x09, 0x20}
LF, CR = 0x0A, 0x0D
HIGH = set(range(0x80, 0x100))
VISIBLE = set(range(0x21, 0x7F)) | HIGH

HEAD = b"POST /first HTTP/1.1\r\nHost: h\r\n"
TE = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def _put(value: bytes, where: str, byte: int) -> bytes:
    b = bytes([byte])
    if where == "before":
        return b + value
    if where == "after":
        return value + b
    return value[:1] + b + value[1:]


def _head_field(name: bytes, value: bytes, where: str, byte: int) -> bytes:
    """The last field of a head, and the head's end (a bare LF after the value is the field
    line's end)."""
    end = b"\r\n" if (where, byte) == ("after", LF) else b"\r\n\r\n"
    return name + b": " + _put(value, where, byte) + end


def _head_ok(where: str, byte: int) -> bool:
    """A head field value accepts OWS around it and a bare LF ending its line."""
    return (where != "inside" and byte in OWS) or (where == "after" and byte == LF)


# name -> (request for a position and byte, whether it is accepted, what the app must see)
Row = tuple[Callable[[str, int], bytes], Callable[[str, int], bool], dict[str, object]]
ROWS: dict[str, Row] = {
    "transfer-encoding": (
        lambda where, b: HEAD + _head_field(b"Transfer-Encoding", b"chunked", where, b)
        + b"5\r\nhello\r\n0\r\n\r\n",
        _head_ok, {"body": "hello"}),
    "content-length": (
        lambda where, b: HEAD + _head_field(b"Content-Length", b"05", where, b) + b"hello",
        _head_ok, {"body": "hello", "length": "05"}),
    "host": (
        lambda where, b: b"GET /first HTTP/1.1\r\n" + _head_field(b"Host", b"ab", where, b),
        _head_ok, {"host": "ab"}),
    "chunk-size": (
        lambda where, b: TE + _put(b"5", where, b) + b"\r\nhello\r\n0\r\n\r\n",
        lambda where, b: False, {}),
    "chunk-ext-name": (  # BWS is allowed before "=", nothing else
        lambda where, b: TE + b"5;a" + bytes([b]) + b"=v\r\nhello\r\n0\r\n\r\n",
        lambda where, b: b in OWS, {"body": "hello"}),
    "chunk-ext-value": (  # no BWS after the value: the line ends there
        lambda where, b: TE + _put(b"5;a=v", where, b)[:0] + b"5;a=v" + bytes([b])
        + b"\r\nhello\r\n0\r\n\r\n",
        lambda where, b: False, {}),
    "chunk-ext-quoted": (
        lambda where, b: TE + b'5;a="' + _put(b"xy", where, b) + b'"\r\nhello\r\n0\r\n\r\n',
        lambda where, b: b in OWS or (b in VISIBLE and b not in b'"\\'), {"body": "hello"}),
    "trailer": (
        lambda where, b: TE + b"5\r\nhello\r\n0\r\nX: " + _put(b"ab", where, b)
        + b"\r\n\r\n",
        lambda where, b: b in OWS or b in HIGH, {"body": "hello"}),
}
POSITIONS = {"chunk-ext-name": ["at"], "chunk-ext-value": ["at"]}
# A row per byte, but the 128 bytes of obs-text (0x80-0xFF) in one row: they are one class.
CLASSES = [*([b] for b in range(0x00, 0x21)), [0x7F], list(range(0x80, 0x100))]
CASES = [
    pytest.param(name, where, byte_class, id=f"{name}-{where}-{byte_class[0]:02x}")
    for name in ROWS
    for where in POSITIONS.get(name, ["before", "inside", "after"])
    for byte_class in CLASSES
]


@pytest.mark.parametrize(("name", "where", "byte_class"), CASES)
def test_byte(address: Address, name: str, where: str, byte_class: list[int]) -> None:
    build, ok, expect = ROWS[name]
    for byte in byte_class:
        raw = build(where, byte)
        if not ok(where, byte):
            refused(address, raw)
            continue
        seen = accepted(address, raw)
        assert seen["path"] == "/first"
        for key, value in expect.items():
            assert seen[key] == value, (hex(byte), key, seen)
