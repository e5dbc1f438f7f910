"""The template of a generation (``preload``): imports the application once, forks its workers.

Why a template.  Preloading means importing the application once and forking the workers from
that copy, so they share its memory.  Doing it in the master would run application code there
and pin the code for good: a reload could only fork the same old modules again.  So the master
forks one template per generation; the template imports the application (the server's
``load_app()``), freezes the garbage collector's view of what it built (``gc.freeze()``: the
collector then never writes to those shared pages), says it is ready, and then forks a worker
whenever the master asks.  A reload starts a new template, which imports the current source of
every module; the old one leaves with its generation.

Who owns the workers.  The master must stay the parent of every worker -- it reaps them by pid,
waits on their pidfds, kills their process groups, and their parent-death signal must fire when
*it* dies.  A template therefore forks twice: the template forks a short-lived intermediate,
which forks the worker and exits at once.  The master is a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so the orphaned worker is re-parented to the master, not to init;
the template collects the intermediate and only then tells the master the worker's pid, so the
master never looks at a pid that is not yet its child.  The worker waits until its parent is the
master before it arms its parent-death signal (see ``Worker._setup_process``).

Protocol on the master's socketpair (SOCK_SEQPACKET, one message each): the template sends
``READY`` once loaded; then each :data:`SPAWN` request (age, slot, generation) is answered with
a :data:`REPLY` (the worker's pid, or minus an errno).  EOF from the master ends the template.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import socket
import struct
import sys
from typing import NoReturn

from prefork.core import forksafe, privileges
from prefork.core.contract import ChildContext, PoolServer, WorkerInfo
from prefork.core.parent import set_parent_death_signal
from prefork.core.signals import block, unblock
from prefork.core.worker import WORKER_SIGNALS, run_worker
from prefork.ops import titles
from prefork.ops.logs import capture_output

log = logging.getLogger("prefork.worker")

READY = b"R"
SPAWN = struct.Struct("=iii")  # age, slot, generation
REPLY = struct.Struct("=i")  # pid > 0, or -errno
EXIT_OK, EXIT_ERROR, EXIT_ORPHANED = 0, 1, 4
# Signals the template leaves at their default (it simply ends) or ignores (master-only ones).
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
IGNORED_SIGNALS = (signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH, signal.SIGUSR1,
                   signal.SIGUSR2)


def run_template(
    server: PoolServer, generation: int, ctx: ChildContext, channel: socket.socket
) -> NoReturn:
    """Entry point of the template child; never returns."""
    status = EXIT_ERROR
    try:
        status = _Template(server, generation, ctx, channel).run()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BaseException:
        log.exception("template of generation %d (pid %d) failed", generation, os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        os._exit(status)


class _Template:
    def __init__(
        self, server: PoolServer, generation: int, ctx: ChildContext, channel: socket.socket
    ) -> None:
        self.server = server
        self.generation = generation
        self.ctx = ctx
        self.channel = channel

    def run(self) -> int:
        with contextlib.suppress(PermissionError):
            os.setpgid(0, 0)
        privileges.drop(self.ctx.credentials)  # application code runs here too
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self.ctx.master_pid:
            return EXIT_ORPHANED
        for fd in self.ctx.close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        capture_output()  # --capture-output: what the import prints goes to the log file
        signal.set_wakeup_fd(-1)
        for sig in ENDING_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        for sig in IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        unblock(self.ctx.blocked_mask)
        titles.set_title(titles.template_title(titles.name_of(self.server), self.generation))
        self.server.load_app()
        gc.collect()
        gc.freeze()  # what the import built stays shared: the collector will not touch it
        self.channel.sendall(READY)
        log.debug("template of generation %d (pid %d) ready", self.generation, os.getpid())
        while True:
            message = self.channel.recv(64)
            if not message:
                return EXIT_OK  # the master closed its end: this generation is over
            age, slot, generation = SPAWN.unpack(message)
            try:
                pid = self._fork_worker(WorkerInfo(age=age, slot=slot, generation=generation))
            except OSError as exc:
                pid = -(exc.errno or errno.EIO)
            self.channel.sendall(REPLY.pack(pid))

    def _fork_worker(self, info: WorkerInfo) -> int:
        """Fork ``info``'s worker through an intermediate that exits at once (see above)."""
        read_fd, write_fd = os.pipe()
        # As in the master: a signal for the new worker waits until it has its handlers.
        mask = block(WORKER_SIGNALS)
        try:
            intermediate = forksafe.fork(log, "template")
            if intermediate == 0:
                try:
                    os.close(read_fd)
                    worker = forksafe.fork(log, "template")
                    if worker == 0:
                        os.close(write_fd)
                        run_worker(self.server, info, dataclasses.replace(
                            self.ctx, blocked_mask=mask, app_loaded=True, via_template=True,
                            close_fds=[self.channel.fileno()],
                        ))
                    os.write(write_fd, REPLY.pack(worker))
                finally:
                    os._exit(0)
        finally:
            unblock(mask)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            data = pipe.read(REPLY.size)
        os.waitpid(intermediate, 0)  # gone: the worker is the master's child from now on
        if len(data) != REPLY.size:
            raise OSError(errno.ECHILD, "the intermediate process died before forking")
        (pid,) = REPLY.unpack(data)
        return int(pid)
