"""``fork()`` in a process that has other threads, without handing the child a held lock.

Why.  ``fork()`` copies the memory of the process but only the calling thread: every lock that
another thread held at that instant stays held in the child, by a thread that does not exist
there, for ever.  A library user's process often has such threads (a metrics exporter, an
executor, a thread that logs or imports), and ``serve_forever()`` forks the workers from it.
Two locks matter in practice, because the worker takes them itself:

* **logging.**  CPython 3.11's ``logging`` registers ``os.register_at_fork`` hooks: it takes the
  module lock before the fork and re-initialises every handler's lock in the child.  That keeps
  the locks themselves free, but not what they protect: a thread in the middle of an ``emit``
  holds the lock of the stream it writes (an ``io.BufferedWriter``'s, which nothing resets), so
  the child's first log line hangs.  So the parent takes **every handler's lock** before
  ``fork()`` (no thread is inside an ``emit`` then) and releases them after; logging's own hook
  frees them in the child.
* **imports.**  CPython resets the global import lock in the child, but not the per-module locks
  of ``importlib._bootstrap``: a module another thread was importing stays locked, half run, and
  the child's ``import`` of it waits for ever.  Waiting in the parent for a moment with no import
  under way can starve (a thread importing in a loop holds a lock most of the time), so the
  child repairs instead, as CPython does for the global lock: each module lock owned by a thread
  that is gone is re-initialised, and the half-initialised module is dropped from
  ``sys.modules`` (as after a failed import), so the child imports it afresh.

With no other thread (the usual case of the command line) :func:`fork` is ``os.fork()``.  With
others, the first fork says so in one line.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

# How long the parent waits for one logging handler's lock (a thread inside its emit); past it
# the fork goes ahead without that lock, and says so.
HANDLER_LOCK_WAIT = 5.0

_told: set[int] = set()  # pids that said, once, that they fork with other threads


def other_threads() -> int:
    """How many threads besides the calling one this process has (every thread, also those
    that ``threading`` does not know of)."""
    try:
        return len(os.listdir("/proc/self/task")) - 1
    except OSError:
        return threading.active_count() - 1


def fork(log: logging.Logger, role: str) -> int:
    """``os.fork()``; with other threads running, with logging's handler locks held around it and
    the import locks repaired in the child.  ``role`` names the caller in the one line said."""
    others = other_threads()
    if others <= 0:
        return os.fork()
    if os.getpid() not in _told:
        _told.add(os.getpid())
        log.info("%s (pid %d) forks with %d other thread%s running: logging's handler locks "
                 "are held across fork(); imports left unfinished are reset in the child",
                 role, os.getpid(), others, "" if others == 1 else "s")
    held = _hold_handler_locks(log, role)
    try:
        pid = os.fork()
    except BaseException:
        _release(held)
        raise
    if pid == 0:
        reset_module_locks()  # (logging's own at-fork hook freed the handler locks)
    else:
        _release(held)
    return pid


def _handler_locks() -> list[Any]:
    out = []
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        lock = getattr(handler, "lock", None)
        if lock is not None:
            out.append(lock)
    return out


def _hold_handler_locks(log: logging.Logger, role: str) -> list[Any]:
    held = []
    for lock in _handler_locks():
        if lock.acquire(timeout=HANDLER_LOCK_WAIT):
            held.append(lock)
        else:
            log.warning("%s (pid %d) forks while a thread has held a logging handler's lock "
                        "for %.0f s: the child may not be able to log", role, os.getpid(),
                        HANDLER_LOCK_WAIT)
    return held


def _release(held: list[Any]) -> None:
    for lock in reversed(held):
        lock.release()


def reset_module_locks() -> int:
    """In a forked child: re-initialise the module locks that threads of the parent held (they
    do not exist here) and drop their half-imported modules.  Returns how many."""
    bootstrap = sys.modules.get("importlib._bootstrap")
    locks = getattr(bootstrap, "_module_locks", None)
    if not isinstance(locks, dict):
        return 0
    me = threading.get_ident()
    reset = 0
    for name, ref in list(locks.items()):
        lock = ref() if callable(ref) else None
        if lock is None:
            continue
        owner = getattr(lock, "owner", None)
        inner = getattr(lock, "lock", None)
        stuck = owner is not None and owner != me
        if stuck or (inner is not None and inner.locked() and owner is None):
            lock.__init__(name)  # fresh locks, no owner: what a new _ModuleLock has
            reset += 1
            module = sys.modules.get(name)
            spec = getattr(module, "__spec__", None)
            if module is not None and getattr(spec, "_initializing", False):
                del sys.modules[name]
    return reset

