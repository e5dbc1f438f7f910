"""Running one handler shape of ``served.py`` as a process, and talking to it with raw bytes."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import Proc, clean_env

SERVED = Path(__file__).with_name("served.py")
DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)
MODES = ("thread", "prefork")


@contextlib.contextmanager
def served(mode: str, shape: str, folder: Path) -> Iterator[int]:
    proc = Proc([sys.executable, str(SERVED), mode, shape, str(folder)], env=clean_env(),
                name=f"{mode}-{shape}")
    try:
        yield int(proc.wait_line(r"port (\d+)", timeout=15).group(1))
    finally:
        proc.kill()


def exchange(port: int, data: bytes, half_close: bool = False) -> bytes:
    """Send ``data``; everything the server sends until it closes (Date blanked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return DATE.sub(b"Date: -\r\n", out)


def both(shape: str, folder: Path, data: bytes, half_close: bool = False) -> dict[str, bytes]:
    answers = {}
    for mode in MODES:
        with served(mode, shape, folder) as port:
            answers[mode] = exchange(port, data, half_close)
    return answers
