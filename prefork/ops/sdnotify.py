"""systemd's notify protocol and socket activation, without libsystemd.

Two small protocols, both driven by environment variables that systemd sets for the service:

* **Notify** (``Type=notify`` / ``Type=notify-reload``): ``NOTIFY_SOCKET`` names a unix datagram
  socket -- a filesystem path, or an abstract-namespace name written with a leading ``@``.  The
  service sends datagrams of newline-separated ``KEY=VALUE`` lines (``READY=1``, ``STATUS=...``,
  ``RELOADING=1``, ``STOPPING=1``, ``MAINPID=...``).  :class:`Notifier` does this.  A missing
  variable makes every call a no-op, so the master can notify unconditionally.  A failed send is
  logged at debug level and never raised: the service must keep running whatever happens to its
  supervisor's socket.  Each message uses a fresh socket, so no fd is held between sends and no
  worker inherits one across ``fork()``; a send waits at most :data:`SEND_TIMEOUT`.

* **Socket activation**: systemd binds the sockets, passes them as fds 3, 4, ... and sets
  ``LISTEN_PID`` (the pid they are meant for), ``LISTEN_FDS`` (how many) and optionally
  ``LISTEN_FDNAMES`` (colon-separated names, ``FileDescriptorName=``).  :func:`listen_fds` turns
  them into ``socket.socket`` objects, mirroring ``sd_listen_fds(3)``: the fds are only taken when
  ``LISTEN_PID`` is our pid (a variable inherited by a child is not for the child), they are
  marked close-on-exec, and the variables are removed on request so children do not see them.

Why ``MONOTONIC_USEC`` with ``RELOADING=1``: since systemd 253, ``Type=notify-reload`` services
must stamp the reload message with ``CLOCK_MONOTONIC`` in microseconds, so the manager can tell
the reload it asked for from an older one; older managers ignore the field.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("prefork.master")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
LISTEN_PID = "LISTEN_PID"
LISTEN_FDS = "LISTEN_FDS"
LISTEN_FDNAMES = "LISTEN_FDNAMES"
LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: the first fd systemd passes
UNKNOWN_FDNAME = "unknown"  # what sd_listen_fds_with_names() reports for unnamed fds
SEND_TIMEOUT = 1.0  # seconds a notification may wait for room in the manager's queue


class Notifier:
    """Sends state notifications to the service manager named by ``NOTIFY_SOCKET``.

    ``Notifier()`` reads ``os.environ``; ``Notifier(env=...)`` another mapping;
    ``Notifier(address)`` uses an explicit address (``/run/...`` or ``@abstract``).  With
    ``unset=True`` the variable is removed from ``env`` once read, so processes started later do
    not inherit it.

    Methods for the caller: :meth:`send` (raw lines), :meth:`notify` (keyword fields) and the
    conveniences :meth:`ready`, :meth:`reloading`, :meth:`stopping`, :meth:`mainpid`,
    :meth:`status`, :meth:`watchdog`.  Each returns True when a datagram was sent; none raises
    because of the socket.
    """

    notify_timeout = SEND_TIMEOUT

    def __init__(
        self,
        address: str | None = None,
        *,
        env: MutableMapping[str, str] | None = None,
        unset: bool = False,
    ) -> None:
        environ: MutableMapping[str, str] = os.environ if env is None else env
        if address is None:
            address = environ.get(NOTIFY_SOCKET) or None
            if unset:
                environ.pop(NOTIFY_SOCKET, None)
        self.address = address
        self._target: str | bytes | None = _notify_target(address) if address else None

    @property
    def enabled(self) -> bool:
        """True when there is a manager to notify."""
        return self._target is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` (each ``KEY=VALUE``) as one datagram; True if it was sent."""
        if self._target is None or not lines:
            return False
        for line in lines:
            if "\n" in line or "=" not in line:
                raise ValueError(f"notify line must be KEY=VALUE on one line: {line!r}")
        data = ("\n".join(lines) + "\n").encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self.notify_timeout)
                sock.sendto(data, self._target)
        except OSError as exc:
            log.debug(
                "sd_notify to %s failed (pid %d): %s", self.address, os.getpid(), exc
            )
            return False
        return True

    def notify(self, **fields: object) -> bool:
        """``notify(READY=1, STATUS="serving")``: one datagram with these fields, in order.

        Booleans become ``1``/``0``; newlines in values become spaces (the protocol is
        line-based).
        """
        return self.send(*(f"{key}={_format_value(value)}" for key, value in fields.items()))

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete."""
        return self.send("READY=1", *_status_line(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; send :meth:`ready` when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status_line(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins."""
        return self.send("STOPPING=1", *_status_line(status))

    def mainpid(self, pid: int) -> bool:
        """The service's main process is now ``pid`` (after a re-exec)."""
        return self.send(f"MAINPID={int(pid)}")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.send(*_status_line(text))

    def watchdog(self) -> bool:
        """Keep-alive ping for ``WatchdogSec=``."""
        return self.send("WATCHDOG=1")

    def __repr__(self) -> str:
        return f"Notifier({self.address!r})"


def _notify_target(address: str) -> str | bytes | None:
    if address.startswith("@"):
        return b"\0" + os.fsencode(address[1:])
    if address.startswith("/"):
        return address
    # vsock:CID:PORT (systemd >= 254, for VMs) and relative paths are not supported.
    log.debug("NOTIFY_SOCKET=%r not supported (pid %d); notifications off", address, os.getpid())
    return None


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).replace("\r", " ").replace("\n", " ")


def _status_line(status: str | None) -> tuple[str, ...]:
    return () if status is None else (f"STATUS={_format_value(status)}",)


# --- socket activation -------------------------------------------------------------------------


def listen_fds(
    env: MutableMapping[str, str] = os.environ, unset: bool = True
) -> list[socket.socket]:
    """The sockets systemd passed to this process (empty when none were passed to *us*).

    See :func:`listen_fds_with_names`; this drops the names.
    """
    return [sock for _, sock in listen_fds_with_names(env, unset)]


def listen_fds_with_names(
    env: MutableMapping[str, str] = os.environ, unset: bool = True
) -> list[tuple[str, socket.socket]]:
    """``(name, socket)`` for each fd systemd passed, starting at fd 3.

    Nothing is taken unless ``LISTEN_PID`` is this process's pid.  Family and type come from the
    kernel (``socket.socket(fileno=fd)``).  Names come from ``LISTEN_FDNAMES``; without it (or
    when its count does not match) every name is ``"unknown"``, as in libsystemd.  The fds are
    made close-on-exec.  With ``unset`` (the default) the three variables are removed from
    ``env`` whatever the outcome.

    Raises ``ValueError`` when ``LISTEN_PID``/``LISTEN_FDS`` are malformed and ``OSError``
    (``ENOTSOCK``/``EBADF``) when a passed fd is not an open socket; no fd is wrapped then.
    """
    try:
        return _take_fds(env)
    finally:
        if unset:
            for key in (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES):
                env.pop(key, None)


def _take_fds(env: Mapping[str, str]) -> list[tuple[str, socket.socket]]:
    pid_text = env.get(LISTEN_PID)
    if not pid_text:
        return []
    pid = _parse_int(LISTEN_PID, pid_text)
    if pid != os.getpid():
        return []
    count = _parse_int(LISTEN_FDS, env.get(LISTEN_FDS, "0"))
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + count)
    names = _fd_names(env.get(LISTEN_FDNAMES), count)
    for fd in fds:  # check them all before wrapping any: a socket object closes its fd on GC
        mode = os.fstat(fd).st_mode
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.ENOTSOCK, f"fd {fd} passed in {LISTEN_FDS} is not a socket")
    result = []
    for fd, name in zip(fds, names, strict=True):
        os.set_inheritable(fd, False)
        result.append((name, socket.socket(fileno=fd)))
    log.debug(
        "pid %d took %d socket(s) from systemd: %s", os.getpid(), count, ", ".join(names)
    )
    return result


def _parse_int(key: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{key}={text!r} is negative")
    return value


def _fd_names(text: str | None, count: int) -> list[str]:
    if text is None:
        return [UNKNOWN_FDNAME] * count
    names = text.split(":") if count else []
    if len(names) != count:
        log.warning(
            "%s has %d names for %d fds (pid %d); ignoring the names",
            LISTEN_FDNAMES, len(names), count, os.getpid(),
        )
        return [UNKNOWN_FDNAME] * count
    return [name or UNKNOWN_FDNAME for name in names]

