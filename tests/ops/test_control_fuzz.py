"""Hostile input against a real ControlServer in a select loop: every request gets a reply or a
close, the loop never raises, nothing is logged with a traceback, and a normal request still
works afterwards."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_control import TIMEOUT, FakeMaster, Loop

from helpers import wait_for
from prefork.ops.control import MAX_REQUEST, ControlError, ControlServer, Reply, request

SEED = int(os.environ.get("PREFORK_FUZZ_SEED", "20240611"))


def hostile_payloads(rng: random.Random) -> Iterator[bytes]:
    """Fixed nasty cases first, then random ones; each a complete payload (the client
    half-closes after it)."""
    yield from (
        b"[" * 1100 + b"\n",
        b"[" * 100_000,  # over the size limit too
        b'{"a":' * 5000 + b"\n",
        b"[" * 50_000 + b"]" * 10_000 + b"\n",
        b"1" * 5000 + b"\n",  # past the int digits limit
        b'{"command": "scale", "workers": ' + b"9" * 5000 + b"}\n",
        b'{"command": "scale", "workers": "+' + b"9" * 5000 + b'"}\n',
        b'{"command": "scale", "workers": "-' + b"9" * 5000 + b'"}\n',
        b'{"command": "scale", "workers": "+\xc2\xb2"}\n',  # "+²": isdigit() but not int()
        b'{"command": "scale", "workers": 1e400}\n',
        b'{"command": "scale", "workers": NaN}\n',
        b'{"command": "scale", "workers": 100000000000000000000000}\n',
        b'{"command": "scale", "workers": -3}\n',
        b'{"command": "scale", "workers": null}\n',
        b'{"command": "scale", "workers": ["+1"]}\n',
        b'{"command": 5}\n',
        b'{"command": null}\n',
        b'{"command": ["status"]}\n',
        b'{"command": {"command": "status"}}\n',
        b'{"command": "stop", "graceful": 1}\n',
        b'{"command": "stop", "graceful": null}\n',
        b'{"command": "' + b"x" * 60_000 + b'"}\n',  # not echoed back in full
        b'{"command": "scale", "workers": "' + b"+" * 60_000 + b'"}\n',
        b'"status"\n',
        b"null\n",
        b"true\n",
        b"\n",
        b"\n\n\n",
        b"\x00" * 100 + b"\n",
        b"\xff\xfe\x00\x00garbage\n",
        b"\xef\xbb\xbf{}\n",  # a UTF-8 byte order mark
        b'{"command": "st\\ud800atus"}\n',  # a lone surrogate
        b'{"command": "status"',  # a partial line, then EOF
        b'{"comm',
        b"x" * (MAX_REQUEST - 1) + b"\n",
        b"x" * (MAX_REQUEST + 10) + b"\n",
        b'{"command": "status", "pad": "' + b"y" * (MAX_REQUEST - 40) + b'"}\n',
        b'{"command": "status"}\n{"command": "stop"}\n',  # only the first line counts
    )
    alphabet = b'{}[]":,0123456789+-eE.\\ntrufalsn' + b"commandstatusscaleworkers"
    for _ in range(200):
        kind = rng.randrange(4)
        size = rng.randrange(0, 3000)
        if kind == 0:  # random bytes
            payload = rng.randbytes(size)
        elif kind == 1:  # JSON-ish soup
            payload = bytes(rng.choice(alphabet) for _ in range(size))
        elif kind == 2:  # a valid request, mangled
            text = bytearray(json.dumps({"command": rng.choice(["status", "scale", "reload"]),
                                         "workers": rng.choice([1, "+1", "-1", 0, "x"])}).encode())
            for _ in range(rng.randrange(1, 4)):
                text[rng.randrange(len(text))] = rng.randrange(256)
            payload = bytes(text)
        else:  # deep and wide
            depth = rng.randrange(500, 20_000)
            payload = rng.choice([b"[", b'{"a":', b"[{}, "]) * depth
        yield payload + (b"\n" if rng.random() < 0.8 else b"")


def exchange(path: str, payload: bytes) -> bytes:
    """Send ``payload``, half-close, read until EOF.  A server that refuses a payload as too
    long closes while we still send: its reply is already in our receive queue."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)  # blocking: a full unix backlog waits, not EAGAIN
        sock.settimeout(TIMEOUT)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def check_reply(data: bytes, payload: bytes) -> None:
    assert data.endswith(b"\n") and data.count(b"\n") == 1, (payload[:80], data[:200])
    reply = json.loads(data)
    assert isinstance(reply, dict) and isinstance(reply["ok"], bool), reply
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and len(reply["error"]) < 400, reply


@pytest.fixture
def fuzz_loop(tmp_path: Path) -> Iterator[tuple[str, FakeMaster, Loop]]:
    master = FakeMaster()
    path = str(tmp_path / "ctl")
    server = ControlServer(path, master.handle)
    loop = Loop(server)
    try:
        yield path, master, loop
    finally:
        loop.stop()  # asserts the loop never raised


def test_hostile_requests_never_stop_the_loop(
    fuzz_loop: tuple[str, FakeMaster, Loop], caplog: pytest.LogCaptureFixture
) -> None:
    path, master, loop = fuzz_loop
    rng = random.Random(SEED)
    caplog.set_level(logging.DEBUG, logger="prefork.master")

    # Clients that stall: they must get the timeout reply, and must not delay anyone else.
    stalled = []
    for payload in (b"", b'{"command": "sta', b"[" * 2000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)  # blocking: a full unix backlog waits, not EAGAIN
        sock.settimeout(TIMEOUT)
        sock.sendall(payload)
        stalled.append(sock)
    # Clients that connect and leave, with or without saying something first.
    for payload in (b"", b"{", b"x" * 70_000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            # Refused as too long and closed under us: fine.
            with contextlib.suppress(OSError):
                sock.sendall(payload)

    count = 0
    start = time.monotonic()
    for payload in hostile_payloads(rng):
        check_reply(exchange(path, payload), payload)
        count += 1
    assert count >= 200
    # The stalled clients did not hold anyone up: all that took well under their deadline
    # times their number (the old synchronous server spent a full second on each).
    assert time.monotonic() - start < 60

    for sock in stalled:
        with sock:
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            reply = json.loads(data)
            assert reply["ok"] is False and "no request" in reply["error"]

    # Still serving, and no garbage reached the master's handler.
    assert request(path, {"command": "status"}) == {"ok": True, "pid": os.getpid(), "workers": 2}
    for call in master.calls:
        assert call["command"] in ("status", "scale", "reload", "stop")
    assert loop.thread.is_alive()
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert tracebacks == []


def test_more_clients_than_connections_allowed(fuzz_loop: tuple[str, FakeMaster, Loop]) -> None:
    path, _, _ = fuzz_loop
    limit = ControlServer.max_connections
    idle = []
    try:
        for _ in range(limit + 20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)  # blocking: a full unix backlog waits, not EAGAIN
            sock.settimeout(TIMEOUT)
            idle.append(sock)
        # The ones past the limit are closed at once, with no reply ...
        closed = 0
        for sock in idle[limit:]:
            closed += sock.recv(65536) == b""
        assert closed == 20
    finally:
        for sock in idle:
            sock.close()
    # ... and once the idle ones are gone, service is back (their slots are freed on EOF).
    def status() -> Reply | None:
        try:
            return request(path, {"command": "status"})
        except ControlError:  # accepted and closed while the slots were still taken
            return None

    assert wait_for(status, TIMEOUT, what="a status reply")["ok"] is True
