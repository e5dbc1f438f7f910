"""``--reload`` for development: a watcher process that sends the master SIGHUP when a source
file changes.

The watcher is a child of the master, forked before it serves; it imports ``watchfiles`` (a
well-kept native watcher: inotify here, no polling) -- the master does not -- and watches the
Python files under the current directory, the place the APP is imported from.  Each batch of
changes, after ``DEBOUNCE_MS`` of quiet, becomes one SIGHUP: the master starts a new generation
on the current source, exactly as an operator's HUP would, so an edit that does not import
makes that generation fail to boot and the old one keeps serving (the worker's log line says
why).  It works with ``--preload`` too: each generation has its own template.  The watcher dies
with the master (parent-death signal) and is collected at exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from prefork.core.parent import set_parent_death_signal
from prefork.ops import titles

log = logging.getLogger("prefork.master")

DEBOUNCE_MS = 300  # quiet time that ends a batch of changes (an editor saves in bursts)
STEP_MS = 50


class WatchError(Exception):
    """--reload cannot work here; one line for the user."""


def start_watcher(root: Path | None = None) -> int:
    """Fork the watcher of ``root`` (the current directory); its pid."""
    try:
        import watchfiles  # noqa: F401  - checked here, imported for real in the child
    except ImportError:
        raise WatchError("--reload needs the watchfiles package: pip install "
                         "'prefork[reload]'") from None
    master = os.getpid()
    where = root or Path.cwd()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = _watch(master, where)
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os._exit(status)
    log.info("master (pid %d) --reload: watching %s for changes to *.py (watcher pid %d)",
             master, where, pid)
    return pid


def stop_watcher(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _watch(master: int, root: Path) -> int:
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # not the master's handlers: just end
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != master:
        return 0
    os.setpgid(0, 0)  # out of the terminal's group: Ctrl-C goes to the master alone
    titles.set_title(f"{titles.PREFIX}: watcher {root}")
    import watchfiles

    for changes in watchfiles.watch(root, watch_filter=watchfiles.PythonFilter(),
                                    debounce=DEBOUNCE_MS, step=STEP_MS, raise_interrupt=False):
        names = sorted({os.path.relpath(path, root) for _, path in changes})
        log.info("--reload: %s changed; reloading", ", ".join(names[:5]))
        try:
            os.kill(master, signal.SIGHUP)
        except ProcessLookupError:
            return 0
    return 0
