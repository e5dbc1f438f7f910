"""TCP urgent ("out-of-band") data, kept in the stream.

TCP's urgent pointer marks a byte the sender wants noticed at once (telnet's and FTP's
"interrupt": ``ftplib.FTP.abort()`` sends ``ABOR\\r\\n`` with ``MSG_OOB``).  By default Linux takes
the last byte of such a send *out* of the stream, where only ``recv(MSG_OOB)`` sees it: a
line-based handler then reads ``ABOR\\r`` glued to the next command.  RFC 6093 (2011) says
urgent data is a legacy mechanism new applications should not use, and that applications
which must still receive it should set ``SO_OOBINLINE``, so the byte stays in the stream where
it was sent.  prefork does that on its TCP listeners (``oob_inline = False`` on the server
class opts out); accepted sockets inherit the option on Linux.  :func:`at_mark` says whether the
next byte read is the marked one (``SIOCATMARK``), for a handler that wants to know; a handler
that must be told when urgent data arrives defines ``handle_urgent()`` (core/urgenthook.py).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import socket
from typing import Any

SIOCATMARK = 0x8905  # linux/sockios.h


def is_tcp(sock: Any) -> bool:
    return (getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6)
            and getattr(sock, "type", None) == socket.SOCK_STREAM)


def inline(sock: socket.socket) -> None:
    """``SO_OOBINLINE`` on a TCP socket (a listening one: accepted sockets inherit it)."""
    if is_tcp(sock):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)


def at_mark(sock: Any) -> bool:
    """Whether the next byte to read from ``sock`` is the urgent one (``sockatmark()``)."""
    flag = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), SIOCATMARK, flag)
    return bool(flag[0])
