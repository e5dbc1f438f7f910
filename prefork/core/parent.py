"""A worker and its parent: the kernel's parent-death signal, and the wait of a worker forked
through a template until the master is its parent."""

from __future__ import annotations

import ctypes
import os
import sys
import time

_PR_SET_PDEATHSIG = 1
REPARENT_WAIT = 2.0  # seconds a template's worker waits to become the master's child
REPARENT_POLL = 0.0005


def set_parent_death_signal(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)


def wait_for_parent(master_pid: int) -> None:
    """A worker forked through a template's intermediate process is re-parented to the master
    (a child subreaper) when the intermediate exits, a moment after the fork: wait for that,
    within REPARENT_WAIT, before arming the parent-death signal (it would fire for the
    intermediate).  After the wait, a parent that is not the master means the master died."""
    deadline = time.monotonic() + REPARENT_WAIT
    while os.getppid() != master_pid and time.monotonic() < deadline:
        time.sleep(REPARENT_POLL)
