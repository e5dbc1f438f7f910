from __future__ import annotations

import socket

import pytest

from prefork.core.sockets import BindSpecError, parse_bind


@pytest.mark.parametrize(
    ("spec", "kind", "family", "address"),
    [
        ("127.0.0.1:8000", "tcp", socket.AF_INET, ("127.0.0.1", 8000)),
        (":8000", "tcp", socket.AF_INET, ("", 8000)),
        ("tcp://localhost:0", "tcp", socket.AF_INET, ("localhost", 0)),
        ("[::1]:9000", "tcp", socket.AF_INET6, ("::1", 9000)),
        ("udp://127.0.0.1:53", "udp", socket.AF_INET, ("127.0.0.1", 53)),
        ("udp://[::1]:53", "udp", socket.AF_INET6, ("::1", 53)),
        ("unix:/tmp/x.sock", "unix", socket.AF_UNIX, "/tmp/x.sock"),
        ("unix:///tmp/x.sock", "unix", socket.AF_UNIX, "/tmp/x.sock"),
        ("unix-dgram:/tmp/d.sock", "unix-dgram", socket.AF_UNIX, "/tmp/d.sock"),
    ],
)
def test_parse_bind(spec: str, kind: str, family: int, address: object) -> None:
    parsed = parse_bind(spec)
    assert (parsed.kind, parsed.family, parsed.address) == (kind, family, address)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("8000", "expected HOST:PORT"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("::1:80", "write IPv6 addresses as"),
        ("[::1]80", "expected \\[IPV6\\]:PORT"),
        ("sctp://1.2.3.4:5", "unknown scheme 'sctp'"),
        ("unix:", "missing socket path"),
    ],
)
def test_bad_bind_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(BindSpecError, match=message):
        parse_bind(spec)


def test_str_round_trips() -> None:
    for spec in ("127.0.0.1:80", "[::1]:80", "udp://127.0.0.1:5", "unix:/a", "unix-dgram:/b"):
        assert str(parse_bind(spec)) == spec
