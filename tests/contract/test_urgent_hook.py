"""An urgent byte reaches the handler's ``handle_urgent()`` (core/urgenthook.py), in each of the
four modes, while the handler is blocked reading its next line; and a lone urgent byte that is
not readable data (``oob_inline = False``) still brings a waiting connection to its handler."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from helpers import ROOT, Proc, clean_env, server_process

SERVED = Path(__file__).with_name("urgent_served.py")


def urgent_exchange(port: int) -> list[bytes]:
    """A line, an urgent byte while the handler waits for the next line, then that line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"one\n")
        first = reader.readline()
        sock.sendall(b"!", socket.MSG_OOB)
        notice = reader.readline()
        sock.sendall(b"two\n")
        return [first, notice, reader.readline()]


@pytest.mark.parametrize("mode", ["prefork", "fork", "thread", "sync"])
def test_an_urgent_byte_reaches_handle_urgent(mode: str) -> None:
    with server_process("serve", "urgent_served:Urgent", "--bind", "127.0.0.1:0", "--mode", mode,
                        "--workers", "1",
                        env={"PYTHONPATH": f"{SERVED.parent}:{ROOT}"}) as srv:
        _, port = srv.tcp_address()
        # The urgent byte stays in the stream (SO_OOBINLINE): the next line starts with it.
        assert urgent_exchange(port) == [b"line b'one\\n'\n", b"URGENT 1\n",
                                         b"line b'!two\\n'\n"]


def test_a_lone_urgent_byte_wakes_a_waiting_connection() -> None:
    proc = Proc([sys.executable, str(SERVED), "prefork-no-inline"], env=clean_env(),
                name="urgent-no-inline")
    try:
        port = int(proc.wait_line(r"port (\d+)", timeout=15).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"!", socket.MSG_OOB)  # out of band: no readable byte at all
            assert sock.makefile("rb").readline() == b"URGENT 1\n"
    finally:
        proc.kill()
