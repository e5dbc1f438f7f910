"""``wsgi.input``: a request body read from the connection, by Content-Length or chunked.

Either way the application sees a plain stream that ends where the body ends (so
``wsgi.input_terminated`` is true and ``read()`` with no argument is safe): it can never read
into the next request on a kept-alive connection.  The first read of a request that said
``Expect: 100-continue`` first tells the client to go on.

A client that goes away or stalls inside a body raises :class:`IncompleteBody`; a chunked
framing that does not parse raises :class:`~prefork.apps.request.RequestError` (400).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from prefork.apps.request import RequestError
from prefork.core.httpgrammar import CHUNK_LINE, FIELD_LINE
from prefork.core.httplimits import FIELD_SIZE, MAX_HEAD

BLOCK = 65536
SPOOL_MEMORY = 1 << 20  # a buffered body larger than this goes to a temporary file
MAX_CHUNK_LINE = 1024  # a chunk size with its extensions


class IncompleteBody(ConnectionError):
    """The client closed the connection, or stalled past the timeout, inside the body."""


class Body:
    """The request body as a readable binary stream (PEP 3333's ``wsgi.input``)."""

    def __init__(
        self, rfile: io.BufferedIOBase, on_first_read: Callable[[], None] | None = None
    ) -> None:
        self.rfile = rfile
        self.on_first_read = on_first_read
        self.buffer = b""
        self.finished = False  # the framing's end was reached

    # -- what subclasses provide --------------------------------------------------------------

    def _next(self, size: int) -> bytes:
        """Up to ``size`` (> 0) bytes of the body from the connection; b"" at its end."""
        return b""

    # -- the stream ---------------------------------------------------------------------------

    def _fill(self, size: int) -> bytes:
        if self.finished:
            return b""
        if self.on_first_read is not None:
            hook, self.on_first_read = self.on_first_read, None
            hook()
        try:
            data = self._next(size)
        except (TimeoutError, ConnectionError) as exc:
            raise IncompleteBody(f"request body: {exc}") from None
        if not data:
            self.finished = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self.buffer]
            self.buffer = b""
            while data := self._fill(BLOCK):
                parts.append(data)
            return b"".join(parts)
        while len(self.buffer) < size:
            data = self._fill(max(size - len(self.buffer), 1))
            if not data:
                break
            self.buffer += data
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self.buffer.find(b"\n") + 1
            if end or (limit is not None and len(self.buffer) >= limit):
                break
            data = self._fill(BLOCK)
            if not data:
                end = len(self.buffer)
                break
            self.buffer += data
        if limit is not None:
            end = min(end, limit) if end else limit
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def drain(self, limit: int) -> bool:
        """Read and drop what is left of the body, up to ``limit`` bytes; True if it ended."""
        self.buffer = b""
        while limit > 0:
            data = self._fill(min(BLOCK, limit))
            if not data:
                return True
            limit -= len(data)
        return self.finished


class LengthBody(Body):
    """A body of ``length`` bytes (Content-Length)."""

    def __init__(self, rfile: io.BufferedIOBase, length: int,
                 on_first_read: Callable[[], None] | None = None) -> None:
        super().__init__(rfile, on_first_read)
        self.left = length
        self.finished = not length

    def _next(self, size: int) -> bytes:
        if not self.left:
            return b""
        data = self.rfile.read(min(size, self.left))
        if not data:
            raise IncompleteBody(f"connection closed with {self.left} bytes of the body unread")
        self.left -= len(data)
        return data


class ChunkedBody(Body):
    """A body in the chunked transfer coding (RFC 9112 7.1), decoded; trailers are read and
    dropped."""

    def __init__(
        self, rfile: io.BufferedIOBase, on_first_read: Callable[[], None] | None = None,
        field_size: int = FIELD_SIZE,
    ) -> None:
        super().__init__(rfile, on_first_read)
        self.field_size = field_size  # a trailer line's bound (limit_request_field_size)
        self.left = 0  # bytes of the current chunk still to read
        self.ended = False  # the last chunk and the trailers were read

    def _next(self, size: int) -> bytes:
        if not self.left:
            if self.ended:
                return b""
            self.left = self._chunk_size()
            if not self.left:
                self._trailers()
                self.ended = True
                return b""
        data = self.rfile.read(min(size, self.left))
        if not data:
            raise IncompleteBody("connection closed inside a chunk")
        self.left -= len(data)
        if not self.left and self._line(0, "chunk end") is None:
            raise RequestError(400, "chunk data longer than its size")
        return data

    def _line(self, limit: int, what: str) -> bytes | None:
        """A line of the framing without its CRLF (a bare LF or CR is refused: RFC 9112 7.1's
        lines end in CRLF); None if it is longer than ``limit``."""
        raw = self.rfile.readline(limit + 2)
        if not raw:
            raise IncompleteBody(f"connection closed before the {what}")
        if not raw.endswith(b"\n"):
            if len(raw) < limit + 2:
                raise IncompleteBody(f"connection closed inside the {what}")
            return None
        line = raw[:-2]
        if not raw.endswith(b"\r\n") or b"\r" in line:
            raise RequestError(400, f"{what} not ended by CRLF")
        return line

    def _chunk_size(self) -> int:
        line = self._line(MAX_CHUNK_LINE, "chunk size line")
        match = CHUNK_LINE.fullmatch(line) if line is not None else None
        if match is None:
            raise RequestError(400, "malformed chunk size line")
        return int(match.group(1), 16)

    def _trailers(self) -> None:
        total = 0
        while line := self._line(self.field_size, "trailer line"):
            total += len(line)
            if total > MAX_HEAD:
                raise RequestError(431, "trailer fields too large")
            if FIELD_LINE.fullmatch(line) is None:
                raise RequestError(400, "malformed trailer line")
        if line is None:
            raise RequestError(431, f"trailer line longer than {self.field_size} bytes")


def spool(body: Body, limit: int) -> tuple[IO[bytes], int]:
    """Read all of ``body`` into a file (in memory up to SPOOL_MEMORY bytes), rewound; and its
    length.  More than ``limit`` bytes: RequestError 413."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
    try:
        total = 0
        while data := body.read(BLOCK):
            total += len(data)
            if total > limit:
                raise RequestError(413, f"request body larger than {limit} bytes")
            out.write(data)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out, total
