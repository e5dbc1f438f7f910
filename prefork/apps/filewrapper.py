"""``wsgi.file_wrapper``: a file-backed body the server may send with ``os.sendfile``.

PEP 3333's optional extension, as this module keeps it:

* :class:`FileWrapper` is an ordinary iterable over ``read(blksize)`` with a ``close()`` that
  closes the file, so middleware that wraps or replaces it, and a server that does not know it,
  still send every byte.
* The server sends the file itself only when the application's iterable *is* one of these
  wrappers (not a middleware's iterable around it), and its object has a ``fileno()`` of a
  regular file (:func:`regular_fd`): a pipe, a socket, ``io.BytesIO`` or a file behind TLS is
  read and written instead.  The body starts at the file's current position (a Range
  response may have seeked it) and ends at its end or where the ``Content-Length`` the
  application set ends, whichever comes first; afterwards the file is positioned after what
  was sent, as if it had been read.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from typing import IO, Any

BLOCK = 8192  # PEP 3333's suggestion when the application gives no block size
FALLBACK_BLOCK = 256 * 1024  # read-and-write under TLS: fewer, larger records


class FileWrapper:
    """``environ["wsgi.file_wrapper"](filelike, blksize)``: iterate ``filelike`` in blocks."""

    def __init__(self, filelike: IO[bytes] | Any, blksize: int = BLOCK) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return bytes(data)
        raise StopIteration

    def close(self) -> None:
        """Close the file (PEP 3333: the server calls the iterable's close())."""
        closer = getattr(self.filelike, "close", None)
        if closer is not None:
            closer()

    def blocks(self, size: int) -> Iterator[bytes]:
        """The rest of the file in pieces of at least ``size`` bytes (the server's fallback)."""
        size = max(size, self.blksize)
        while data := self.filelike.read(size):
            yield bytes(data)


def regular_fd(wrapper: FileWrapper) -> int | None:
    """The file descriptor of a regular file behind ``wrapper``, opened for binary reading;
    None for anything ``os.sendfile`` should not read (or that reads as text)."""
    filelike = wrapper.filelike
    if isinstance(filelike, io.TextIOBase) or "b" not in getattr(filelike, "mode", "b"):
        return None
    fileno = getattr(filelike, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
        if not isinstance(fd, int) or not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return fd


def position(wrapper: FileWrapper, fd: int) -> int:
    """Where the body starts: the file object's position (a buffered reader's, which may be
    behind the descriptor's own), else the descriptor's."""
    tell = getattr(wrapper.filelike, "tell", None)
    if tell is not None:
        try:
            return int(tell())
        except (OSError, ValueError):
            pass
    return os.lseek(fd, 0, os.SEEK_CUR)

