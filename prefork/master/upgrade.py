"""Upgrade in place (USR2): start a new master with this one's listening sockets.

The sockets are handed over the way systemd hands them to a service: at fds 3, 4, ... with
``LISTEN_FDS`` and ``LISTEN_PID`` in the environment, so the new master finds them with the
same code as under socket activation.  ``_PREFORK_OLD_MASTER`` tells it which master to retire
(with SIGTERM) once its own pool is ready; until then it claims neither the pid file nor the
control socket, so an upgrade that fails leaves the old master whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import selectors
import signal
from collections.abc import Iterable, Mapping, Sequence

from prefork.core import pidfds
from prefork.core import signals as sigs
from prefork.core.contract import PoolServer

log = logging.getLogger("prefork.master")

ENV_OLD_MASTER = "_PREFORK_OLD_MASTER"
FIRST_FD = 3  # SD_LISTEN_FDS_START
SCRATCH_FD = 100  # listeners are first copied above this, out of the way of 3, 4, ...


def exec_new_master(
    argv: Sequence[str], fds: Sequence[int], env: Mapping[str, str], handled: Iterable[int],
    cwd: str | None = None,
) -> int:
    """Fork a child that execs ``argv`` with ``fds`` at 3, 4, ... (in ``cwd``, if given);
    returns its pid.

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
                if cwd is not None:
                    os.chdir(cwd)
                os.execve(argv[0], list(argv), child_env)
            finally:
                os._exit(127)
    finally:
        sigs.unblock(mask)
    return pid


def describe_status(status: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` from a ``waitpid`` status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Upgrade:
    """Both sides of an upgrade in place.

    As the old master: the new master in flight (``pid``), a USR2 queued behind it, and
    whether this master has handed over (``handed_off``).  As the new master: ``old_master``,
    the pid to retire once this pool is ready (only a parent can be it: a stale variable must
    not make us kill a stranger).  Methods: start(), hand_off(), retire_old_master()."""

    def __init__(
        self,
        server: PoolServer,
        selector: selectors.BaseSelector,
        handled: Iterable[int],
        notify_address: str | None,
    ) -> None:
        self.server = server
        self.selector = selector
        self.handled = tuple(handled)
        self.notify_address = notify_address
        self.pid = 0
        self.pidfd: int | None = None
        self.queued = False
        self.handed_off = False
        old = os.environ.pop(ENV_OLD_MASTER, "")
        self.old_master = int(old) if old.isdigit() and int(old) == os.getppid() else 0

    def start(self, stopping: bool = False) -> None:
        """Execute a new master with the listening sockets inherited; it retires this one
        with SIGTERM once its pool is ready.  If it dies before that, this one keeps serving.
        A master that is ``stopping`` starts none."""
        argv = self.server.upgrade_argv
        if stopping:
            return
        if self.pid:
            self.queued = True  # tried again if this one fails: signals are not lost
            return
        if not argv:
            log.warning("master (pid %d) ignores SIGUSR2: this server cannot re-execute itself",
                        os.getpid())
            return
        if os.getpid() == 1:
            # The old master's exit would end the PID namespace, the new master with it.
            log.warning("master (pid 1) ignores SIGUSR2: as PID 1 its exit would end the "
                        "container; roll out a new one instead")
            return
        if not pidfds.usable():  # (how this master learns that the new one died)
            log.warning("master (pid %d) ignores SIGUSR2: an upgrade needs pidfd_open, which "
                        "this system refuses", os.getpid())
            return
        fds = [s.socket.fileno() for s in self.server.listening_servers()]
        env = dict(os.environ)
        env[ENV_OLD_MASTER] = str(os.getpid())
        if self.notify_address:
            env["NOTIFY_SOCKET"] = self.notify_address
        self.pid = exec_new_master(argv, fds, env, self.handled,
                                   getattr(self.server, "upgrade_cwd", None))
        self.pidfd = os.pidfd_open(self.pid)
        self.selector.register(self.pidfd, selectors.EVENT_READ, self._exited)
        log.info("master (pid %d) upgrade: started new master (pid %d)", os.getpid(), self.pid)

    def _exited(self, mask: int) -> None:
        assert self.pidfd is not None
        try:
            _, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            status = 0
        self.selector.unregister(self.pidfd)
        os.close(self.pidfd)
        if not self.handed_off:
            log.error("master (pid %d) new master (pid %d) failed: %s; this one keeps serving",
                      os.getpid(), self.pid, describe_status(status))
        self.pid, self.pidfd = 0, None
        if self.queued and not self.handed_off:
            self.queued = False
            self.start()

    def hand_off(self) -> None:
        """The graceful stop that retires us after an upgrade: the new master owns the socket
        files from now on."""
        if self.pid and not self.handed_off:
            self.handed_off = True
            self.server.keep_socket_file()
            log.info("master (pid %d) handing over to the new master (pid %d)", os.getpid(),
                     self.pid)

    def retire_old_master(self) -> None:
        """As the new master, once ready: ask the old one to leave."""
        if self.old_master:
            log.info("master (pid %d) ready: asking the old master (pid %d) to retire",
                     os.getpid(), self.old_master)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.old_master, signal.SIGTERM)
            self.old_master = 0

    def close(self) -> None:
        if self.pidfd is not None:
            self.selector.unregister(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
