"""How many connections wait in each listening socket's accept queue: the signal an autoscaler
(or a person) reads to see that the pool is too small, before clients see it as latency.

Why these two ways.  A connection the kernel completed but no worker accepted yet sits in the
listener's accept queue; its length is the best single measure of "more work than workers".
Linux reports it without touching the socket's state:

* **TCP**: ``getsockopt(TCP_INFO)`` on a socket in LISTEN state fills ``tcpi_unacked`` with the
  current accept-queue length and ``tcpi_sacked`` with its limit (the backlog given to
  ``listen``, capped by ``net.core.somaxconn``) -- what ``ss -lnt`` shows as Recv-Q / Send-Q.
* **Unix stream**: no socket option reports it (``SIOCINQ`` refuses a listening socket, and
  ``/proc/net/unix`` has no queue column), but the sock_diag netlink interface does: a
  ``SOCK_DIAG_BY_FAMILY`` request for the socket's inode with ``UDIAG_SHOW_RQLEN`` answers with
  the pending connections and the backlog (what ``ss -lx`` shows).  The kernel answers a
  netlink request inside ``send``, so the non-blocking ``recv`` after it does not wait.

Datagram listeners have no accept queue and are skipped; so is anything that fails (another OS,
a kernel without ``unix_diag``): the metric is then absent, never wrong.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# struct tcp_info: eight u8 fields, then u32 tcpi_rto, ato, snd_mss, rcv_mss, unacked, sacked.
_TCP_INFO_QUEUE = struct.Struct("=II")
_TCP_INFO_QUEUE_OFFSET = 24
_TCP_INFO_SIZE = 104  # enough for every field up to tcpi_sacked on any Linux
_TCP_LISTEN = 10  # tcpi_state of a listening socket

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")
_UNIX_DIAG_MSG_SIZE = 16  # struct unix_diag_msg, before the attributes
_RTA_HEADER = struct.Struct("=HH")  # len, type
_UDIAG_SHOW_RQLEN = 0x10
_UNIX_DIAG_RQLEN = 4  # attribute: u32 pending connections, u32 backlog
_NO_COOKIE = 0xFFFFFFFF
_sequence = itertools.count(1)


@dataclass(frozen=True)
class AcceptQueue:
    """One listener's accept queue: ``waiting`` connections of at most ``limit``."""

    listener: str
    waiting: int
    limit: int


def tcp_accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(waiting, limit) of a listening TCP socket, or None if the kernel does not say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, AttributeError):  # not Linux, or not TCP
        return None
    if len(info) < _TCP_INFO_QUEUE_OFFSET + _TCP_INFO_QUEUE.size or info[0] != _TCP_LISTEN:
        return None
    waiting, limit = _TCP_INFO_QUEUE.unpack_from(info, _TCP_INFO_QUEUE_OFFSET)
    return waiting, limit


def unix_accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(waiting, limit) of a listening unix stream socket, through sock_diag; None if the kernel
    does not say."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
            nl.setblocking(False)
            seq = next(_sequence) & 0xFFFFFFFF
            req = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, _UDIAG_SHOW_RQLEN,
                                      _NO_COOKIE, _NO_COOKIE)
            nl.send(_NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(req), _SOCK_DIAG_BY_FAMILY,
                                       _NLM_F_REQUEST, seq, 0) + req)
            data = nl.recv(8192)
    except (OSError, AttributeError):  # no AF_NETLINK, no unix_diag, no answer yet
        return None
    return _parse_unix_diag(data, inode)


def _parse_unix_diag(data: bytes, inode: int) -> tuple[int, int] | None:
    if len(data) < _NLMSG_HEADER.size + _UNIX_DIAG_MSG_SIZE:
        return None
    length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(data)
    if kind != _SOCK_DIAG_BY_FAMILY or length > len(data):
        return None  # _NLMSG_ERROR, e.g. ENOENT
    if struct.unpack_from("=I", data, _NLMSG_HEADER.size + 4)[0] != inode:
        return None
    offset = _NLMSG_HEADER.size + _UNIX_DIAG_MSG_SIZE
    while offset + _RTA_HEADER.size <= length:
        rta_len, rta_type = _RTA_HEADER.unpack_from(data, offset)
        if rta_len < _RTA_HEADER.size:
            return None
        if rta_type == _UNIX_DIAG_RQLEN and rta_len >= _RTA_HEADER.size + 8:
            waiting, limit = struct.unpack_from("=II", data, offset + _RTA_HEADER.size)
            return waiting, limit
        offset += (rta_len + 3) & ~3
    return None


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(waiting, limit) of a listening stream socket; None for datagram sockets, a closed
    socket, or when the kernel does not say."""
    with contextlib.suppress(OSError):
        if sock.fileno() < 0 or sock.type != socket.SOCK_STREAM:
            return None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return tcp_accept_queue(sock)
        if sock.family == socket.AF_UNIX:
            return unix_accept_queue(sock)
    return None


def accept_queues(servers: Iterable[Any], names: Iterable[str]) -> list[AcceptQueue]:
    """The accept queue of each listening server (its ``socket``), labelled with ``names`` (the
    server's ``listener_names()``, in the same order); listeners without one are left out."""
    queues = []
    for server, name in zip(servers, names, strict=False):
        found = accept_queue(server.socket)
        if found is not None:
            queues.append(AcceptQueue(name, *found))
    return queues
