"""Upgrade in place (USR2): start a new master with this one's listening sockets.

The sockets are handed over the way systemd hands them to a service: at fds 3, 4, ... with
``LISTEN_FDS`` and ``LISTEN_PID`` in the environment, so the new master finds them with the
same code as under socket activation.  ``_PREFORK_OLD_MASTER`` tells it which master to retire
(with SIGTERM) once its own pool is ready; until then it claims neither the pid file nor the
control socket, so an upgrade that fails leaves the old master whole.
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterable, Mapping, Sequence

from prefork.core import signals as sigs

ENV_OLD_MASTER = "_PREFORK_OLD_MASTER"
FIRST_FD = 3  # SD_LISTEN_FDS_START
SCRATCH_FD = 100  # listeners are first copied above this, out of the way of 3, 4, ...


def exec_new_master(
    argv: Sequence[str], fds: Sequence[int], env: Mapping[str, str], handled: Iterable[int],
) -> int:
    """Fork a child that execs ``argv`` with ``fds`` at 3, 4, ...; returns its pid.

    ``handled`` are the signals this process handles: they are blocked around the fork, and the
    child resets them to the default before unblocking, so none runs our handler there (and a
    blocked mask, which survives exec, is not passed on).
    """
    handled = tuple(handled)
    child_env = {k: v for k, v in env.items() if not k.startswith("LISTEN_")}
    child_env["LISTEN_FDS"] = str(len(fds))
    mask = sigs.block(handled)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - replaced by exec
            try:
                for sig in handled:
                    signal.signal(sig, signal.SIG_DFL)
                sigs.unblock(mask)
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, SCRATCH_FD) for fd in fds]
                for target, fd in enumerate(high, start=FIRST_FD):
                    os.dup2(fd, target)  # inheritable
                child_env["LISTEN_PID"] = str(os.getpid())
                os.execve(argv[0], list(argv), child_env)
            finally:
                os._exit(127)
    finally:
        sigs.unblock(mask)
    return pid
