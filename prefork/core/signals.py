"""Signals that only record, and the self-pipe that wakes a loop.

Why this shape: a Python signal handler runs between two bytecodes of the main thread, in the
middle of whatever that thread was doing -- possibly inside ``logging`` holding its lock, or inside
``os.waitpid``.  A handler that logs, reaps or forks re-enters that code and deadlocks or
corrupts state (a crash class seen in older supervisors).  So our handlers append the signal
number to a deque and return; the loop that owns the process does the work.

The loop sleeps in ``select``/``epoll`` on the read end of a pipe.  ``signal.set_wakeup_fd``
makes the C-level handler write a byte into that pipe, so a signal wakes the loop at once even
though PEP 475 would otherwise retry the interrupted ``epoll_wait``.  Other threads (for example
``shutdown()`` in the socketserver contract) wake the same loop by writing to the same pipe.

Signals can only be installed from the main thread.  When the loop runs elsewhere,
:meth:`SignalQueue.install` returns ``False`` and the loop relies on the pipe alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType

from prefork.core.errnos import BrokenWorker

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


class SignalQueue:
    """A self-pipe plus record-only handlers for a set of signals.

    Call :meth:`install` to take the signals, :meth:`wake` from any thread, :meth:`drain` in the
    loop after it wakes, :meth:`restore` to hand the signals back and :meth:`close` at the end.
    """

    def __init__(self, signals: Iterable[int] = ()) -> None:
        self.signals = tuple(signals)
        self.pending: deque[int] = deque()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self._inode = os.fstat(self.read_fd).st_ino  # both ends: one pipe, one inode
        self._saved: dict[int, Handler] = {}
        # wake() comes from other threads; close() must not let it write into a closed (and
        # perhaps reused) fd number.
        self._lock = threading.Lock()
        self.closed = False
        self._saved_wakeup: int | None = None
        # Called in signal context after the number is recorded.  Only the worker uses it,
        # to abandon a request on a quick stop (see worker.py); it must not do I/O.
        self.on_record: Callable[[int], None] | None = None

    def install(self) -> bool:
        """Route our signals to the queue.  Returns False when not on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._saved_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in self.signals:
            self._saved[sig] = signal.signal(sig, self._record)
        return True

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)
        if self.on_record is not None:
            self.on_record(signum)

    def intact(self) -> bool:
        """Both ends of the pipe are still this pipe's: False once code that is not ours closed
        one (a handler, a C extension) or its number now names another file."""
        try:
            return all(stat.S_ISFIFO((st := os.fstat(fd)).st_mode) and st.st_ino == self._inode
                       for fd in (self.read_fd, self.write_fd))
        except OSError:
            return False

    def ensure_intact(self) -> None:
        """Raise BrokenWorker unless :meth:`intact` (the loop could never be woken again)."""
        if not self.intact():
            raise BrokenWorker("its signal pipe was closed or replaced (by the application?): "
                               "exiting to be replaced")

    def wake(self) -> None:
        """Wake the loop from any thread (a full pipe already guarantees a wake-up)."""
        with self._lock, contextlib.suppress(BlockingIOError, OSError):
            if not self.closed:
                os.write(self.write_fd, b"\0")

    def drain(self) -> list[int]:
        """Empty the pipe and return the signals recorded since the last call, in order."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while self.pending:
            out.append(self.pending.popleft())
        return out

    def restore(self) -> None:
        """Give the signals and the wake-up fd back to whoever had them."""
        for sig, previous in self._saved.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._saved.clear()
        if self._saved_wakeup is not None:
            signal.set_wakeup_fd(self._saved_wakeup)
            self._saved_wakeup = None

    def close(self) -> None:
        self.restore()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for fd in (self.read_fd, self.write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def fds(self) -> tuple[int, int]:
        return self.read_fd, self.write_fd


def block(signals: Iterable[int]) -> set[int]:
    """Block ``signals`` in this thread; returns the previous mask for :func:`unblock`.

    The master blocks every signal it handles around ``fork()``: a signal that arrives in the
    child before the child has installed its own handlers then stays pending instead of running
    the master's handler in the child, and is delivered once the child unblocks.
    """
    return signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def unblock(previous: set[int]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
