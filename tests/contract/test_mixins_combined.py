"""PreforkMixIn combined with the stdlib's mix-ins -- ``(PreforkMixIn, ThreadingHTTPServer)``,
``(PreforkMixIn, ForkingTCPServer)``, ``(PreforkMixIn, ThreadingMixIn, TCPServer)`` -- runs
each worker's requests the way the mixed-in class says (a thread or a forked child per
connection, core/delegating.py) and answers as the reference ``ThreadingMixIn`` does: the same
bytes on a kept-alive connection, and a request in flight at ``shutdown()`` is answered before
``serve_forever()`` returns.  On the main of before, the forked child held the kept-alive
connection and exited under it (the second request got nothing), and a graceful stop ended the
worker under its request threads (the request in flight got no answer)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from harness import DATE

from helpers import Proc, clean_env, wait_for

SERVED = Path(__file__).with_name("mixins_served.py")
COMBOS = ("threading-http", "forking-tcp", "threading-tcp")
KEPT = (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def start(mode: str, combo: str, folder: Path) -> tuple[Proc, int]:
    proc = Proc([sys.executable, str(SERVED), mode, combo, str(folder)], env=clean_env(),
                name=f"{mode}-{combo}")
    return proc, int(proc.wait_line(r"port (\d+)", timeout=15).group(1))


def until_closed(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return DATE.sub(b"Date: -\r\n", out)


def kept_alive(mode: str, combo: str, folder: Path) -> bytes:
    proc, port = start(mode, combo, folder)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(KEPT)
            return until_closed(sock)
    finally:
        proc.kill()


@pytest.mark.parametrize("combo", COMBOS)
def test_kept_alive_connection_as_under_threading_mixin(combo: str, tmp_path: Path) -> None:
    reference = kept_alive("thread", combo, tmp_path)
    assert reference.endswith(b"got /a") is False and reference.endswith(b"got /b")
    assert kept_alive("prefork", combo, tmp_path) == reference


@pytest.mark.parametrize("mode,combo", [("thread", "threading-http"),
                                        *(("prefork", combo) for combo in COMBOS)])
def test_request_in_flight_at_shutdown_is_answered(mode: str, combo: str,
                                                   tmp_path: Path) -> None:
    proc, port = start(mode, combo, tmp_path)
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=20)
        with slow:
            slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            proc.wait_line("slow started", timeout=10)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
                other.sendall(b"GET /shutdown HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert until_closed(other).endswith(b"got /shutdown")
            (tmp_path / "go").touch()
            assert until_closed(slow).endswith(b"got /slow"), proc.text()
        wait_for(lambda: "serve_forever returned" in proc.text(), timeout=20,
                 what="serve_forever() to return")
        assert proc.wait(timeout=20) == 0, proc.text()
    finally:
        proc.kill()
