"""Find out what the APP is without running its code in the master.

``prefork serve`` must pick the server class for the APP (a stream, datagram or HTTP handler)
and refuse an APP that does not import, before it binds and serves -- but the master must never
execute application code (its import-time state would be inherited by every worker, and a reload
could not replace it).  So a short-lived child is forked to import the APP and report back the
most specific stdlib base class of its handler: the master builds its servers around that
stand-in, and every worker (or preload template) imports the real APP for itself.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import select
import signal
import socketserver
import sys
import time

from prefork.apps.loader import AppError
from prefork.apps.wsgi import WSGIRequestHandler
from prefork.command import rpcapp
from prefork.command.rpcapp import RPCApp
from prefork.core import pidfds, privileges
from prefork.core.privileges import Credentials

PROBE_TIMEOUT = 60.0  # seconds an import may take (a framework that connects somewhere)
# What the master's servers are built around, per kind (prefork.apps.loader.AppKind): the
# handler's most specific base, until a worker puts the real one in its place.
STAND_INS: dict[str, type[socketserver.BaseRequestHandler]] = {
    "wsgi": WSGIRequestHandler,
    "http": http.server.BaseHTTPRequestHandler,
    "stream": socketserver.StreamRequestHandler,
    "datagram": socketserver.DatagramRequestHandler,
    "base": socketserver.BaseRequestHandler,
}


def probe(
    app: str, credentials: Credentials | None = None, timeout: float = PROBE_TIMEOUT,
) -> type[socketserver.BaseRequestHandler] | RPCApp:
    """Import ``app`` in a child process -- as the workers' user and group (``credentials``),
    since it runs application code -- and return its stand-in handler class (for an RPC
    program: what the master needs of it, prefork.command.rpcapp), or raise
    :class:`AppError`."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the probe: import, report one line, leave without running exit handlers
        try:
            os.close(read_fd)
            os.setpgid(0, 0)  # what the import starts is killed with the probe's group
            devnull = os.open(os.devnull, os.O_RDONLY)  # out of the terminal's group now
            os.dup2(devnull, 0)
            os.close(devnull)
            try:
                privileges.drop(credentials or Credentials())
                loaded = rpcapp.load(app)
                kind = rpcapp.probe_answer(loaded) if isinstance(loaded, type) else loaded.kind
                answer = "ok " + kind
            except AppError as exc:
                answer = f"error {exc}"
            except BaseException as exc:  # SystemExit from an app's import, say
                answer = f"error APP {app!r}: {type(exc).__name__}: {exc}"
            os.write(write_fd, answer.encode(errors="replace")[:65536])
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(0)
    os.close(write_fd)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)  # also done in the child; whichever runs first wins
    pidfd = os.pidfd_open(pid) if pidfds.usable() else None
    try:
        reply = _read_all(read_fd, pid, pidfd, time.monotonic() + timeout)
    finally:
        os.close(read_fd)
        if pidfd is not None:
            os.close(pidfd)
        # Done already, or stuck past the timeout; a zombie still holds its group id, so
        # the group cannot be someone else's: whatever the import started goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if reply is None:
        raise AppError(f"APP {app!r}: importing it took longer than {timeout:g} s")
    verdict, _, detail = reply.partition(" ")
    if verdict == "ok" and detail in STAND_INS:
        return STAND_INS[detail]
    if verdict == "ok" and detail.startswith(rpcapp.KIND + " "):
        return RPCApp.from_probe(detail.partition(" ")[2])
    raise AppError(detail if verdict == "error" else f"APP {app!r}: the import probe died")


def _read_all(fd: int, pid: int, pidfd: int | None, deadline: float) -> str | None:
    """What the probe wrote, once it closed the pipe or exited (a process its import forked
    may hold the pipe open for long after); None past ``deadline``.  Without a pidfd the exit
    is noticed by ``waitpid(WNOHANG)`` every ``EXIT_CHECK`` seconds (the zombie stays: the
    caller reaps it)."""
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        watched = [fd] if pidfd is None else [fd, pidfd]
        wait = remaining if pidfd is not None else min(remaining, EXIT_CHECK)
        readable, _, _ = select.select(watched, [], [], wait)
        if fd in readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data.decode(errors="replace")
            data += chunk
        elif pidfd in readable or (pidfd is None and _exited(pid)):  # all it wrote is there
            os.set_blocking(fd, False)
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(fd, 65536):
                    data += chunk
            return data.decode(errors="replace")


EXIT_CHECK = 0.05  # seconds between exit checks of the probe where pidfds cannot be used


def _exited(pid: int) -> bool:
    """True once ``pid`` has exited (without reaping it: ``waitid`` with WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
