"""How the master learns that the job table changed, without querying it.

A watcher has an fd the master's loop waits on and ``consume()``, called when it is readable:
True if a change may have been committed since the last call.  ``mark()`` notes a change the
master made itself.  False alarms are fine (the master then counts the due jobs, one cheap
query); a missed change is not, which is why the master also has a safety poll.

SQLite (:class:`FileWatcher`): every commit writes the ``-wal`` file (or, without WAL or at a
checkpoint, the database file), so inotify on the directory, filtered to those two names, sees
every commit from any process, with no system call until one happens.  (``PRAGMA
data_version`` would tell too, but only when asked: a poll.)  inotify has no stdlib binding;
the three libc calls go through ctypes.  Where inotify cannot be had, ``fileno()`` is None and
the safety poll alone serves.

PostgreSQL: LISTEN/NOTIFY (prefork/jobs/postgres.py), a trigger notifying on every job that
becomes queued.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger("prefork.jobs")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


class FileWatcher:
    """inotify on the directory of a SQLite file, for writes to the file or its ``-wal``."""

    def __init__(self, path: str) -> None:
        target = Path(path).resolve()
        self.names = {target.name.encode(), (target.name + "-wal").encode()}
        self.fd: int | None = None
        self.changed = False
        self.directory = str(target.parent).encode()
        self.wd = -1  # the watch; -1 while paused
        self.libc = libc = _libc()
        if libc is None:
            return
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            log.warning("inotify unavailable (%s): the job table is polled",
                        os.strerror(ctypes.get_errno()))
            return
        self.wd = libc.inotify_add_watch(fd, self.directory, MASK)
        if self.wd < 0:
            log.warning("inotify cannot watch %s (%s): the job table is polled", target.parent,
                        os.strerror(ctypes.get_errno()))
            os.close(fd)
            return
        self.fd = fd

    def fileno(self) -> int | None:
        return self.fd

    def mark(self) -> None:
        self.changed = True

    def pause(self) -> None:
        """Drop the watch (while every worker is busy: the master has no one to wake).  A
        watch costs every write to the directory an event: ~23 us per empty job's claim and
        finish, measured on the bare claim+finish loop with a watch beside it."""
        if self.fd is not None and self.wd >= 0 and self.libc is not None:
            self.libc.inotify_rm_watch(self.fd, self.wd)
            self.wd = -1

    def resume(self) -> None:
        """Watch again (a change made while paused is not reported: look at the table after)."""
        if self.fd is not None and self.wd < 0 and self.libc is not None:
            self.wd = self.libc.inotify_add_watch(self.fd, self.directory, MASK)
            if self.wd < 0:
                log.warning("inotify cannot watch the job table's directory again (%s)",
                            os.strerror(ctypes.get_errno()))

    def consume(self) -> bool:
        """Read what inotify has (never blocks); True if our files were written since."""
        changed, self.changed = self.changed, False
        while self.fd is not None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _, _, _, length = EVENT.unpack_from(data, offset)
                start = offset + EVENT.size
                name = data[start:start + length].rstrip(b"\0")
                changed = changed or name in self.names
                offset = start + length
        return changed

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
