"""Large responses for the slow-reader tests (tests/integration/test_slow_readers.py): a WSGI
``application`` and an ``http.server`` handler ``Big``.

WSGI: ``GET /big`` 2 MB in one piece, ``GET /stream`` 2 MB yielded in 64 KiB pieces (chunked),
``GET /file`` an 8 MB file through ``wsgi.file_wrapper``, ``/pid`` the worker's pid.  ``Big``:
``GET /big`` 8 MB written through ``wfile`` in 64 KiB writes (as ``shutil.copyfileobj`` does),
anything else "PID PATH"; ``POST`` answers "PID PATH" at once without reading the body.
Every body byte is ``b"x"``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

PIECE = 64 * 1024
WSGI_SIZE = 2 * 1024 * 1024
HANDLER_SIZE = 8 * 1024 * 1024


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    path = environ["PATH_INFO"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(WSGI_SIZE))])
        return [b"x" * WSGI_SIZE]
    if path == "/file":
        start_response("200 OK", [("Content-Length", str(HANDLER_SIZE))])
        return environ["wsgi.file_wrapper"](open(_big_file(), "rb"))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _pieces(WSGI_SIZE)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


def _big_file() -> str:
    """An 8 MB file of b"x", made once per machine and user."""
    path = os.path.join(tempfile.gettempdir(), f"prefork-test-big-{os.getuid()}.bin")
    if not os.path.exists(path) or os.path.getsize(path) != HANDLER_SIZE:
        part = f"{path}.{os.getpid()}"
        with open(part, "wb") as out:
            out.write(b"x" * HANDLER_SIZE)
        os.replace(part, path)
    return path


def _pieces(size: int) -> Iterator[bytes]:
    piece = b"x" * PIECE
    for _ in range(size // PIECE):
        yield piece


class Big(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/big":
            self._head(HANDLER_SIZE)
            piece = b"x" * PIECE
            for _ in range(HANDLER_SIZE // PIECE):
                self.wfile.write(piece)
        else:
            body = f"{os.getpid()} {self.path}".encode()
            self._head(len(body))
            self.wfile.write(body)

    def do_POST(self) -> None:  # the body is never read
        body = f"{os.getpid()} {self.path}".encode()
        self._head(len(body))
        self.wfile.write(body)

    def _head(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass
