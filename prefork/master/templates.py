"""The master's side of preloading: one template process per generation (see
prefork.core.template for why, and for the protocol).

A template is started when its generation first needs a worker, reports ready once the
application is loaded, forks workers on request (a synchronous exchange bounded by
:data:`FORK_TIMEOUT`), and is stopped when its generation is over: retired by a finished
reload, abandoned by an aborted one, or at the master's stop.  A template that dies is
collected here; the supervisor judges it (a boot failure before it was ready).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prefork.core import forksafe
from prefork.core import signals as sigs
from prefork.core.contract import ChildContext, PoolServer, WorkerInfo
from prefork.core.template import READY, REPLY, SPAWN, run_template

log = logging.getLogger("prefork.master")

FORK_TIMEOUT = 10.0  # seconds a ready template may take to answer a fork request
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Template:
    generation: int
    pid: int
    pidfd: int
    channel: socket.socket  # the master's end
    started: float
    ready: bool = False
    killed: bool = False  # by boot_timeout, still to be reaped


def become_subreaper() -> bool:
    """Make orphaned descendants (a template's workers) children of this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


class Templates:
    """Methods: ready(generation), start(generation), fork_worker(info), stop(generation),
    stop_older_than(generation), stop_all(), reap() -> [(template, status)], owns(pid)."""

    def __init__(
        self,
        server: PoolServer,
        selector: selectors.BaseSelector,
        handled_signals: Iterable[int],
        context: Callable[[], ChildContext],
    ) -> None:
        self.server = server
        self.selector = selector
        self.handled_signals = tuple(handled_signals)
        self.context = context  # the ChildContext of a new child, from the pool
        self.by_generation: dict[int, Template] = {}

    def ready(self, generation: int) -> bool:
        template = self.by_generation.get(generation)
        return template is not None and template.ready

    def fds(self) -> list[int]:
        """The master's fds of every template, which no other child may hold."""
        return [fd for t in self.by_generation.values()
                for fd in (t.pidfd, t.channel.fileno()) if fd >= 0]

    def owns(self, pid: int) -> bool:
        return any(t.pid == pid for t in self.by_generation.values())

    def start(self, generation: int) -> None:
        """Fork the template of ``generation`` unless it runs already."""
        if generation in self.by_generation:
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ctx = self.context()
        ctx.close_fds.append(mine.fileno())
        ctx.blocked_mask = sigs.block(self.handled_signals)
        try:
            pid = forksafe.fork(log, "master")
            if pid == 0:
                run_template(self.server, generation, ctx, theirs)  # never returns
        except BaseException:
            mine.close()
            raise
        finally:
            sigs.unblock(ctx.blocked_mask)
            theirs.close()
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        template = Template(generation, pid, os.pidfd_open(pid), mine, time.monotonic())
        self.by_generation[generation] = template
        self.selector.register(template.pidfd, selectors.EVENT_READ, _ignore)
        self.selector.register(mine.fileno(), selectors.EVENT_READ,
                               lambda mask: self._on_ready(template))
        log.info("master (pid %d) template of generation %d (pid %d) loading the application",
                 os.getpid(), generation, pid)

    def _on_ready(self, template: Template) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            message = template.channel.recv(16, socket.MSG_DONTWAIT)
            if message == READY:
                template.ready = True
                log.info("template of generation %d (pid %d) ready in %.1f ms",
                         template.generation, template.pid,
                         (time.monotonic() - template.started) * 1000)
            # EOF or anything else: the template is dying; its pidfd tells the rest.
            self._unwatch(template)

    def _unwatch(self, template: Template) -> None:
        """Stop waiting for the template's READY (it came, or the template is going)."""
        if template.channel.fileno() in self.selector.get_map():
            self.selector.unregister(template.channel.fileno())

    def fork_worker(self, info: WorkerInfo) -> int:
        """Ask the ready template of ``info.generation`` for a worker; its pid.  Raises
        OSError (or TimeoutError) when the template cannot answer."""
        template = self.by_generation[info.generation]
        template.channel.sendall(SPAWN.pack(info.age, info.slot, info.generation))
        readable, _, _ = select.select([template.channel], [], [], FORK_TIMEOUT)
        if not readable:
            # Its late answer would be taken for the next request's (a worker we would not
            # know): this template is done; a new one loads when a worker is needed.
            self.stop(info.generation)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(template.pid, signal.SIGKILL)
            raise TimeoutError(f"template of generation {info.generation} did not answer")
        reply = template.channel.recv(64)
        if len(reply) != REPLY.size:
            raise OSError(f"template of generation {info.generation} (pid {template.pid}) "
                          "is gone")
        (pid,) = REPLY.unpack(reply)
        if pid <= 0:
            raise OSError(-pid, f"template could not fork: {os.strerror(-pid)}")
        return int(pid)

    def stop(self, generation: int) -> None:
        """End a template: closing our end is its signal to leave (TERM if it is busy)."""
        template = self.by_generation.get(generation)
        if template is not None and template.channel.fileno() >= 0:
            self._unwatch(template)
            template.channel.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(template.pid, signal.SIGTERM)

    def stop_older_than(self, generation: int) -> None:
        for number in [g for g in self.by_generation if g < generation]:
            self.stop(number)

    def stop_all(self) -> None:
        for number in list(self.by_generation):
            self.stop(number)

    def reap(self, block: bool = False) -> list[tuple[Template, int]]:
        """Templates that exited, collected: (template, waitpid status)."""
        out = []
        for generation, template in list(self.by_generation.items()):
            try:
                exited = os.waitid(os.P_PID, template.pid,
                                   os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
                if exited is None:
                    continue
                # Still a zombie, so its group id is not reused yet: what its import started
                # (a helper subprocess) goes with it, as a worker's subprocesses do.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(template.pid, signal.SIGKILL)
                _, status = os.waitpid(template.pid, 0)
            except ChildProcessError:
                status = 255 << 8
            del self.by_generation[generation]
            self.selector.unregister(template.pidfd)
            os.close(template.pidfd)
            if template.channel.fileno() >= 0:
                self._unwatch(template)
                template.channel.close()
            out.append((template, status))
        return out

    def deadline(self, timeout: float) -> float | None:
        """When the first loading template runs out of ``timeout`` (boot_timeout)."""
        loading = [t.started + timeout for t in self.by_generation.values()
                   if not t.ready and not t.killed]
        return min(loading) if timeout and loading else None

    def expire(self, now: float, timeout: float) -> None:
        """Kill templates still loading after ``timeout``: an import that hangs."""
        for template in list(self.by_generation.values()):
            if timeout and not (template.ready or template.killed) and (
                now - template.started > timeout
            ):
                log.error("template of generation %d (pid %d) not ready after %.1f s "
                          "(boot_timeout): killing it", template.generation, template.pid,
                          now - template.started)
                template.killed = True  # its exit is judged when it is reaped
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(template.pid, signal.SIGKILL)

    def kill_all(self) -> list[tuple[Template, int]]:
        for template in self.by_generation.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(template.pid, signal.SIGKILL)
        return self.reap(block=True)


def _ignore(mask: int) -> None:
    """A template's pidfd: the loop reaps after every wake-up."""
