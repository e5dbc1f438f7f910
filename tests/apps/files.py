"""File responses through ``wsgi.file_wrapper``: ``prefork serve tests.apps.files:application``.

The query string names the file.  ``/file`` returns the wrapper with no Content-Length
(chunked to HTTP/1.1), ``/sized`` declares the file's size, ``/first?N,PATH`` declares only
N bytes, ``/from?N,PATH`` reads N bytes first, ``/wrapped`` hides the wrapper behind a
middleware-style generator, ``/pipe`` wraps the read end of a pipe (not a regular file) and
``/bytesio?N`` N bytes from an io.BytesIO.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
OCTETS = [("Content-Type", "application/octet-stream")]


def application(environ: Environ, start_response: StartResponse) -> Any:
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    wrap = environ["wsgi.file_wrapper"]
    if path == "/file":
        start_response("200 OK", OCTETS)
        return wrap(open(query, "rb"))
    if path == "/sized":
        start_response("200 OK", [*OCTETS, ("Content-Length", str(os.path.getsize(query)))])
        return wrap(open(query, "rb"), 65536)
    if path in ("/first", "/from"):
        count, _, name = query.partition(",")
        f = open(name, "rb")  # noqa: SIM115
        if path == "/first":
            start_response("200 OK", [*OCTETS, ("Content-Length", count)])
        else:
            f.read(int(count))  # a buffered reader's position, ahead of nothing sent yet
            start_response("200 OK", OCTETS)
        return wrap(f)
    if path == "/wrapped":
        start_response("200 OK", OCTETS)
        return _middleware(wrap(open(query, "rb")))
    if path == "/pipe":
        read_fd, write_fd = os.pipe()
        threading.Thread(target=_fill, args=(write_fd, query), daemon=True).start()
        start_response("200 OK", OCTETS)
        return wrap(os.fdopen(read_fd, "rb"))
    if path == "/bytesio":
        start_response("200 OK", OCTETS)
        return wrap(io.BytesIO(b"x" * int(query)))
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def _middleware(inner: Any) -> Iterator[bytes]:
    try:
        yield from inner
    finally:
        inner.close()


def _fill(fd: int, name: str) -> None:
    with open(name, "rb") as source, os.fdopen(fd, "wb") as sink:
        while block := source.read(1 << 16):
            sink.write(block)
