"""One prefork server per module and head parser, serving tests/apps/grammar_echo.py, and a raw
socket exchange with it (every byte as written, responses parsed back)."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import LOCAL, server_process

APP = "tests.apps.grammar_echo:application"
SECOND = b"GET /second HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module", params=["python", "auto", "httptools"])
def address(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A one-worker server with the head parser ``request.param``."""
    if request.param == "httptools" and importlib.util.find_spec("httptools") is None:
        pytest.skip("httptools is not installed")
    with server_process("serve", APP, "-b", LOCAL, "-w", "1",
                        "--http-parser", request.param) as server:
        where = server.tcp_address()
        server.wait_workers(1)
        yield where


def exchange(address: tuple[str, int], raw: bytes, half_close: bool = False) -> bytes:
    """Send ``raw``, read until the server closes (10 s at most per read)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def responses(data: bytes) -> list[tuple[int, dict[str, Any] | None]]:
    """The responses in ``data``: (status, the echo app's JSON or None)."""
    out: list[tuple[int, dict[str, Any] | None]] = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"truncated response head {head!r}"
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body, data = data[:length], data[length:]
        seen = json.loads(body) if status == 200 else None
        out.append((status, seen))
    return out


def refused(address: tuple[str, int], raw: bytes, status: int = 400) -> None:
    """``raw`` with a pipelined request behind it: one response, ``status``, then the close;
    the pipelined request never served."""
    got = responses(exchange(address, raw + SECOND))
    assert [s for s, _ in got] == [status], got


def accepted(address: tuple[str, int], raw: bytes) -> dict[str, Any]:
    """``raw`` with a pipelined request behind it: both served; what the app saw of ``raw``."""
    got = responses(exchange(address, raw + SECOND))
    assert [s for s, _ in got] == [200, 200], got
    first, second = got[0][1], got[1][1]
    assert first is not None and second is not None and second["path"] == "/second", got
    return first
