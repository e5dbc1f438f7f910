"""``self.server.shutdown()`` from inside a handler stops ``serve_forever()`` as under
``ThreadingMixIn``: the handler's response still arrives, ``serve_forever()`` returns, the
process exits 0.  Under the pool the worker asks the master for a graceful stop
(core/pooled.py); on the main of before, that worker waited for ever and the pool neither
stopped nor served."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from harness import MODES

from helpers import Proc, clean_env

SERVED = Path(__file__).with_name("shutdown_served.py")


def say(port: int, line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(line)
        return sock.makefile("rb").readline()


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_from_a_handler_stops_serve_forever(mode: str) -> None:
    proc = Proc([sys.executable, str(SERVED), mode], env=clean_env(), name=f"shutdown-{mode}")
    try:
        port = int(proc.wait_line(r"port (\d+)", timeout=15).group(1))
        assert say(port, b"one\n") == b"echo one\n"
        assert say(port, b"stop\n") == b"stopping\n"  # the handler's response is not lost
        assert proc.wait(timeout=20) == 0, proc.text()
        text = proc.text()
    finally:
        proc.kill()
    assert "serve_forever returned" in text, text
