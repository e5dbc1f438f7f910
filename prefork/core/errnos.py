"""The errors a worker's multiplexer expects from the kernel, by name (trio's model).

Anything not named here is not swallowed: it ends the worker with a logged reason
(:class:`BrokenWorker`), and the master replaces it.  A worker whose listening fd was closed
under it (a stray ``os.close`` in a handler or a C extension) would otherwise be woken for
every connection, fail ``accept()`` with EBADF, strand the connection and spin.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import ssl
import time
from collections.abc import Callable

log = logging.getLogger("prefork.worker")

PRESSURE_PAUSE = 0.1  # seconds a worker out of fds (or kernel memory) leaves its listeners alone


def _named(*names: str) -> frozenset[int]:
    return frozenset(getattr(errno, name) for name in names if hasattr(errno, name))


# accept(2) on Linux: "for reliable operation the application should detect the network errors
# defined for the protocol after accept() and treat them like EAGAIN by retrying", plus the
# client that gave up before it was accepted, and a signal.
ACCEPT_RETRY = _named("EAGAIN", "EWOULDBLOCK", "ECONNABORTED", "EPROTO", "EINTR", "ENETDOWN",
                      "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH", "EOPNOTSUPP",
                      "ENETUNREACH", "ECONNRESET", "ENOTCONN", "ECONNREFUSED",
                      "EPERM")  # EPERM: a firewall rule; ECONNREFUSED: a datagram's ICMP
# Out of fds or kernel memory: the connection stays queued; this worker pauses accepting for a
# moment (the other workers, or this one a little later, take it).
RESOURCE_PRESSURE = _named("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
# What a peer can do to one connection (a peek, a reply, a handshake): that connection's loss.
PEER_GONE = _named("ECONNRESET", "EPIPE", "ENOTCONN", "ETIMEDOUT", "ECONNABORTED",
                   "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EHOSTDOWN", "EPROTO")
# epoll_ctl(EPOLL_CTL_DEL) of an fd no longer registered or already closed.
NOT_REGISTERED = _named("ENOENT", "EBADF")


class BrokenWorker(Exception):
    """This worker cannot go on (its own fds are broken): it exits and is replaced."""


def broken(what: str, exc: OSError) -> BrokenWorker:
    """The exception that ends the worker for an unexpected ``exc`` from ``what``."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return BrokenWorker(f"{what} failed with {name} ({exc.strerror}): exiting to be replaced")


class AcceptFailures:
    """What an error from ``accept()`` means: ``failed(fd, exc, pause)`` does nothing for a
    client's loss (retried at the next wake-up), calls ``pause()`` for resource pressure
    (accepting resumes once ``over()``; ``until``, when set, is when the loop must look), and
    raises :class:`BrokenWorker` for anything else."""

    def __init__(self) -> None:
        self.until = 0.0

    def failed(self, fd: int, exc: OSError, pause: Callable[[], None]) -> None:
        if exc.errno in ACCEPT_RETRY or isinstance(exc, ssl.SSLError):
            return
        if exc.errno in RESOURCE_PRESSURE:
            log.warning("worker (pid %d) cannot accept: %s; pausing %.1f s", os.getpid(), exc,
                        PRESSURE_PAUSE)
            self.until = time.monotonic() + PRESSURE_PAUSE
            pause()
            return
        raise broken(f"accept() on listening fd {fd}", exc) from exc

    def over(self) -> bool:
        if self.until and time.monotonic() < self.until:
            return False
        self.until = 0.0
        return True


def unregister(ep: select.epoll, fd: int) -> None:
    """``ep.unregister(fd)``, for an fd that may be unregistered or closed already."""
    try:
        ep.unregister(fd)
    except OSError as exc:
        if exc.errno not in NOT_REGISTERED:
            raise broken("epoll_ctl(EPOLL_CTL_DEL) of a listener", exc) from exc


def expect_peer_gone(what: str, exc: OSError) -> bool:
    """``exc`` from ``what`` on one connection: that client's loss (a TLS error is too:
    True), or raised as :class:`BrokenWorker`."""
    if exc.errno not in PEER_GONE and not isinstance(exc, ssl.SSLError):
        raise broken(what, exc) from exc
    return True
