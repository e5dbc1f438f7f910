"""TCP urgent data stays in the stream (``SO_OOBINLINE`` on the pool's TCP listeners, RFC 6093's
advice; core/urgent.py).  ``ftplib.FTP.abort()`` sends ``ABOR\\r\\n`` with ``MSG_OOB``: without the
option Linux takes its last byte out of the stream, and a line-based handler reads ``ABOR\\r``
glued to the next command -- what the reference ``ThreadingMixIn`` (and, on the main of before,
the pool) gives.  With it the handler reads two lines."""

from __future__ import annotations

import ftplib
import socket
import sys
from pathlib import Path

import pytest

import prefork
from helpers import ROOT, Proc, clean_env, server_process, wait_for
from prefork.core.urgent import inline

SERVED = Path(__file__).with_name("oob_served.py")


def served(mode: str) -> tuple[Proc, int]:
    proc = Proc([sys.executable, str(SERVED), mode], env=clean_env(), name=f"oob-{mode}")
    return proc, int(proc.wait_line(r"port (\d+)", timeout=15).group(1))


def raw_abort_then_noop(port: int) -> bytes:
    """What ftplib's abort() sends, then a NOOP; the replies up to the NOOP's."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == b"220 hello\r\n"
        sock.sendall(b"ABOR\r\n", socket.MSG_OOB)
        sock.sendall(b"NOOP\r\n")
        out = b""
        while b"NOOP" not in out:
            out += reader.readline()
        return out


def test_ftplib_abort_reaches_a_line_handler_as_two_lines() -> None:
    proc, port = served("prefork")
    try:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=10)
        assert ftp.abort() == "226 b'ABOR\\r\\n'"
        assert ftp.voidcmd("NOOP") == "226 b'NOOP\\r\\n'"
        ftp.close()
    finally:
        proc.kill()


@pytest.mark.parametrize("mode,expected", [
    ("prefork", b"226 b'ABOR\\r\\n'\r\n226 b'NOOP\\r\\n'\r\n"),
    ("thread", b"226 b'ABOR\\rNOOP\\r\\n'\r\n"),  # the stdlib: the urgent byte is out of band
    ("prefork-no-inline", b"226 b'ABOR\\rNOOP\\r\\n'\r\n"),  # oob_inline = False: the same
])
def test_urgent_byte_inline_by_default(mode: str, expected: bytes) -> None:
    proc, port = served(mode)
    try:
        assert raw_abort_then_noop(port) == expected
    finally:
        proc.kill()


def test_at_mark_finds_the_urgent_byte() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        assert prefork.PreforkMixIn.oob_inline  # the pool's default
        inline(listener)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            assert server.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE)  # inherited
            client.sendall(b"ab")
            client.sendall(b"X", socket.MSG_OOB)
            client.sendall(b"cd")
            assert server.recv(2) == b"ab"  # (a read stops at the mark)
            wait_for(lambda: prefork.at_mark(server), what="the urgent mark")
            rest = b""
            while len(rest) < 3:
                rest += server.recv(3 - len(rest))
            assert rest == b"Xcd" and not prefork.at_mark(server)


@pytest.mark.parametrize("mode", ["prefork", "fork", "thread", "sync"])
def test_every_command_line_mode_keeps_urgent_data_inline(mode: str) -> None:
    with server_process("serve", "oob_served:Lines", "--bind", "127.0.0.1:0", "--mode", mode,
                        "--workers", "1",
                        env={"PYTHONPATH": f"{SERVED.parent}:{ROOT}"}) as srv:
        _, port = srv.tcp_address()
        assert raw_abort_then_noop(port) == b"226 b'ABOR\\r\\n'\r\n226 b'NOOP\\r\\n'\r\n"
