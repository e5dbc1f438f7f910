"""Fds 0-2 stay what they are, so that a client socket never becomes a worker's stderr.

A handler that closes fds 0-2 (a daemonizing library, a careless ``os.closerange``) frees the
lowest fd numbers, and the kernel gives the lowest free number to the next ``accept()``: that
client's socket would then be the worker's stdout or stderr, and every log line and traceback
would go to it.  So the worker reopens a closed one: where it accepts with socketserver's own
``get_request`` (core/accepting.py), a connection that took one of them is moved above them and
they are reopened at once (no system call in the common case); before any other accept (a
``get_request`` of the server's own, TLS) it looks (one ``poll(2)`` with no events asked for: a
closed fd answers ``POLLNVAL``, ~0.5 us).  Each is reopened: stdout and stderr from
the copies kept at the worker's start (the same file, checked by device and inode, so the log
still goes where it went), stdin, or a copy that is gone too, on ``/dev/null``.

Functions: :func:`set_up` (at the worker's start), :func:`ensure_open` (before accepting).
With handler threads a thread may close them while the loop accepts: the look narrows that
window, it cannot close it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select

log = logging.getLogger("prefork.worker")

STD_FDS = (0, 1, 2)
FIRST_COPY_FD = 10  # clear of the fds a launcher or a test places at 3..

_poll = select.poll()
for _fd in STD_FDS:
    _poll.register(_fd, 0)  # POLLNVAL, POLLHUP and POLLERR are reported whatever is asked
_copies: dict[int, tuple[int, int, int]] = {}  # std fd -> (copy, st_dev, st_ino)


def set_up() -> None:
    """At the worker's start: stdin on /dev/null (outside the terminal's foreground group a
    read from the terminal would stop the worker), stdout and stderr reopened if closed, and a
    copy of each kept to restore them from."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    if devnull != 0:  # (0 if it was closed)
        os.dup2(devnull, 0)
        os.close(devnull)
    ensure_open()
    for fd in (1, 2):
        if fd in _copies:
            continue
        stat = os.fstat(fd)
        copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_COPY_FD)
        _copies[fd] = (copy, stat.st_dev, stat.st_ino)


def ensure_open() -> None:
    """Reopen whichever of fds 0-2 is closed (nothing to do, the common case: one poll)."""
    found = _poll.poll(0)
    if not found:
        return
    closed = sorted(fd for fd, events in found if events & select.POLLNVAL)
    for fd in closed:  # in order: an open of /dev/null takes the lowest free number
        _reopen(fd)
    if closed:
        log.warning("worker (pid %d): fds %s were closed (by the application?): reopened",
                    os.getpid(), ",".join(map(str, closed)))


def _reopen(fd: int) -> None:
    saved = _copies.get(fd)
    if saved is not None:
        copy, device, inode = saved
        try:
            stat = os.fstat(copy)
        except OSError:
            stat = None
        if stat is not None and (stat.st_dev, stat.st_ino) == (device, inode):
            os.dup2(copy, fd)
            return
        del _copies[fd]  # closed too, or its number reused: not ours any more
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
