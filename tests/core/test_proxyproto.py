"""The PROXY protocol header parser (prefork/core/proxyproto.py), on bytes."""

from __future__ import annotations

import socket
import struct

import pytest

from prefork.core.proxyproto import MAX_V2, V2_SIGNATURE, Header, ProxyError, parse


def v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"") -> bytes:
    body = addresses + tlvs
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tcp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!HH", sport, dport))


def test_v1_tcp4_tcp6_unknown() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"
    assert parse(line + b"GET / HTTP/1.1\r\n") == Header(len(line), ("203.0.113.7", 56324))
    line6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n"
    assert parse(line6) == Header(len(line6), ("2001:db8::7", 4000, 0, 0))
    assert parse(b"PROXY UNKNOWN\r\n") == Header(15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == Header(35, None)


def test_v1_incomplete_is_none() -> None:
    for cut in (1, 5, 6, 20):
        assert parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n"[:cut]) is None
    assert parse(b"") is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n",  # a field short
    b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",  # v6 address in TCP4
    b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n",
    b"PROXY TCP4 203.0.113.300 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 080 2\r\n",  # leading zero
    b"PROXY TCP4  203.0.113.7 10.0.0.1 1 2\r\n",  # two spaces
    b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 1 \xff\r\n",
    b"PROXY " + b"A" * 120,  # no CRLF within 107 bytes
])
def test_v1_malformed(data: bytes) -> None:
    with pytest.raises(ProxyError):
        parse(data)


def test_v2_tcp4_tcp6_with_tlvs_skipped() -> None:
    tlv = b"\x04\x00\x05hello"  # PP2_TYPE_NOOP
    data = v2(1, 0x11, tcp4("198.51.100.9", "10.0.0.1", 40000, 443), tlv)
    assert parse(data + b"GET / HTTP/1.1\r\n") == Header(len(data), ("198.51.100.9", 40000))
    data6 = v2(1, 0x21, tcp6("2001:db8::9", "2001:db8::1", 1234, 80))
    assert parse(data6) == Header(len(data6), ("2001:db8::9", 1234, 0, 0))


def test_v2_local_unspec_unix_keep_the_peer() -> None:
    assert parse(v2(0, 0x00, b"")) == Header(16, None)  # LOCAL (a health check)
    assert parse(v2(0, 0x11, tcp4("1.2.3.4", "5.6.7.8", 1, 2))).source is None  # LOCAL
    assert parse(v2(1, 0x00, b"")) == Header(16, None)  # PROXY, UNSPEC
    assert parse(v2(1, 0x31, b"\0" * 216)) == Header(16 + 216, None)  # UNIX stream


def test_v2_incomplete_is_none() -> None:
    data = v2(1, 0x11, tcp4("198.51.100.9", "10.0.0.1", 40000, 443))
    for cut in (1, 11, 12, 15, 16, len(data) - 1):
        assert parse(data[:cut]) is None, cut


@pytest.mark.parametrize("data", [
    V2_SIGNATURE[:11] + b"X" + b"\x21\x11\x00\x0c" + b"\0" * 12,  # the signature broken
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1 in a v2 header
    V2_SIGNATURE + b"\x22\x11\x00\x0c" + b"\0" * 12,  # command 2
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\0" * 12,  # DGRAM
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\0" * 4,  # too short for TCP4 addresses
    V2_SIGNATURE + b"\x21\x41\x00\x00",  # unknown family
    V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", MAX_V2),  # past the bound
])
def test_v2_malformed(data: bytes) -> None:
    with pytest.raises(ProxyError):
        parse(data)
