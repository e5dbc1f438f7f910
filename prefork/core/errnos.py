"""The errors a worker's multiplexer expects from the kernel, by name (trio's model).

Anything not named here is not swallowed: it ends the worker with a logged reason
(:class:`BrokenWorker`), and the master replaces it.  A worker whose listening fd was closed
under it (a stray ``os.close`` in a handler or a C extension) would otherwise be woken for
every connection, fail ``accept()`` with EBADF, strand the connection and spin.
"""

from __future__ import annotations

import errno


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
