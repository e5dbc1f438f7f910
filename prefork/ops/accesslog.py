"""The access log: one line per request, in gunicorn's format language, for WSGI applications
and ``http.server`` handlers alike.

``--access-logfile PATH`` (``-``: stdout) turns it on; ``--access-logformat`` is a ``%``-format
over these atoms (gunicorn's, where they make sense): ``h`` remote address, ``l`` ``-``, ``u``
the user of HTTP basic auth or ``-``, ``t`` the time ``[02/Dec/2026:13:10:00 +0000]``, ``r``
the request line, ``m`` method, ``U`` path, ``q`` query, ``H`` protocol, ``s`` status, ``b``
body bytes sent (``-`` for none), ``B`` the same as a number, ``f`` referer, ``a`` user agent,
``D`` request time in microseconds, ``T`` in seconds, ``M`` in milliseconds, ``L`` in decimal
seconds, ``p`` the worker's pid, ``R`` the request id: the request's own ``X-Request-Id``
(what a proxy in front set; up to 128 visible characters) or, without one, one made here
(``<pid hex>-<count hex>``, unique within the worker's life).  For an ``http.server`` handler
the line is written when its request ends (``log_request`` no longer prints it to stderr),
with the ``Content-Length`` it sent as ``b``; its other ``log_message`` lines (``log_error``)
stay on stderr.

How a line is written.  Not through ``logging``: each line is formatted and written with one
``os.write`` on a descriptor opened ``O_APPEND`` (by the master, inherited by the workers), so
a line is never split or interleaved with another worker's, nothing is buffered in the worker
(a killed worker loses no line it had written), and a slow disk costs a worker the time of that
one ``write`` and no more: there is no lock to wait for and no buffer to flush behind it.  (A
pipe as stdout, ``-``, blocks like any pipe while its reader is slower than the writers.)  A
failed write (a full disk) drops the line and is counted in :attr:`AccessLog.dropped`.  USR1
reopens the path (``logs.reopen_log_files``: in the master, so new workers inherit the new
file, and in each worker): the new file takes the old descriptor's number with ``dup2``, so a
thread writing meanwhile writes to one file or the other, never to a closed descriptor.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ATOMS = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "b", "B", "f", "a", "D", "T", "M",
         "L", "p", "R"]
_ATOM_RE = re.compile(r"%\((\w+)\)")
_REQUEST_ID = re.compile(r"[!-~]{1,128}")  # visible ASCII: nothing that could forge a line


class AccessLog:
    """Where the lines go (``fd``) and in which format; :data:`ACTIVE` holds the one in use.
    Methods: record(environ, status, sent, seconds), record_http(handler, ...), reopen()."""

    def __init__(self, fmt: str, path: str) -> None:
        self.fmt = fmt
        self.path = path
        self.used = tuple(dict.fromkeys(_ATOM_RE.findall(fmt)))  # the atoms computed per line
        self.fd = sys.stdout.fileno() if path == "-" else _open(path)  # OSError: caller says
        self.dropped = 0

    def record(self, environ: Mapping[str, Any], status: str | None, sent: int,
               seconds: float) -> None:
        """The line of one WSGI request (``status``: the status line the app gave)."""
        self.write(self.fmt % atoms(environ, status, sent, seconds, self.used))

    def record_http(self, handler: Any, code: Any, length: str | None, seconds: float) -> None:
        """The line of one ``http.server`` request (``code``: what log_request got)."""
        self.write(self.fmt % atoms(http_environ(handler), str(code), _count(length), seconds,
                                    self.used))

    def write(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:  # a regular file takes it whole; a pipe may take part
                data = data[os.write(self.fd, data):]
        except OSError:
            self.dropped += 1

    def reopen(self) -> None:
        """A new file at the path (after logrotate moved it), on the same descriptor number."""
        if self.path == "-":
            return
        fresh = _open(self.path)
        try:
            os.dup2(fresh, self.fd)
        finally:
            os.close(fresh)


ACTIVE: list[AccessLog] = []  # empty: no access log (one list lookup per request)


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def check_format(fmt: str) -> str:
    """``fmt`` if it formats with the atoms; ValueError says why not."""
    try:
        fmt % atoms({}, "200 OK", 0, 0.0, ATOMS)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown atom or bad format: {exc}") from None
    return fmt


def setup_access_log(path: str | None, fmt: str) -> None:
    """Turn the access log on (``path`` a file appended to, or ``-`` for stdout) or off."""
    for old in ACTIVE:
        if old.path != "-":
            os.close(old.fd)
    ACTIVE.clear()
    if path:
        ACTIVE.append(AccessLog(fmt, path))


def reopen() -> int:
    """USR1: reopen the access log file, if there is one; how many were reopened."""
    for log in ACTIVE:
        log.reopen()  # OSError: the caller says it keeps the old file
    return sum(1 for log in ACTIVE if log.path != "-")


_ids = itertools.count(1)
_stamp: list[Any] = [-1, ""]  # the second of the last 't' atom and its text


def request_id(environ: Mapping[str, Any]) -> str:
    given = environ.get("HTTP_X_REQUEST_ID")
    if given and _REQUEST_ID.fullmatch(given):
        return str(given)
    return f"{os.getpid():x}-{next(_ids):x}"


def _now() -> str:
    second = int(time.time())
    if _stamp[0] != second:
        _stamp[:] = [second, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))]
    return str(_stamp[1])


def _path(environ: Mapping[str, Any]) -> str:
    return str(environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""))


Atom = Callable[[Mapping[str, Any], str, int, float], Any]
_ATOMS: dict[str, Atom] = {
    "h": lambda e, s, n, d: e.get("REMOTE_ADDR", "-"),
    "l": lambda e, s, n, d: "-",
    "u": lambda e, s, n, d: _user(e.get("HTTP_AUTHORIZATION")),
    "t": lambda e, s, n, d: _now(),
    "r": lambda e, s, n, d: (f"{e.get('REQUEST_METHOD', '-')} {_path(e)} "
                             f"{e.get('SERVER_PROTOCOL', '-')}"),
    "m": lambda e, s, n, d: e.get("REQUEST_METHOD", "-"),
    "U": lambda e, s, n, d: e.get("PATH_INFO", ""),
    "q": lambda e, s, n, d: e.get("QUERY_STRING", ""),
    "H": lambda e, s, n, d: e.get("SERVER_PROTOCOL", "-"),
    "s": lambda e, s, n, d: s,
    "b": lambda e, s, n, d: str(n) if n else "-",
    "B": lambda e, s, n, d: n,
    "f": lambda e, s, n, d: e.get("HTTP_REFERER", "-"),
    "a": lambda e, s, n, d: e.get("HTTP_USER_AGENT", "-"),
    "D": lambda e, s, n, d: int(d * 1_000_000),
    "T": lambda e, s, n, d: int(d),
    "M": lambda e, s, n, d: int(d * 1000),
    "L": lambda e, s, n, d: f"{d:.6f}",
    "p": lambda e, s, n, d: f"<{os.getpid()}>",
    "R": lambda e, s, n, d: request_id(e),
}
assert list(_ATOMS) == ATOMS


def atoms(environ: Mapping[str, Any], status: str | None, sent: int, seconds: float,
          used: Any = ATOMS) -> dict[str, Any]:
    """The values of the atoms ``used`` (a KeyError names an unknown one)."""
    code = status.split(" ", 1)[0] if status else "-"
    return {key: _ATOMS[key](environ, code, sent, seconds) for key in used}


def http_environ(handler: Any) -> dict[str, Any]:
    """An ``http.server`` handler's request in the environ's names the atoms read."""
    path = handler.path
    headers = handler.headers
    address = handler.client_address
    environ = {
        "REMOTE_ADDR": address[0] if isinstance(address, tuple) and address else "-",
        "REQUEST_METHOD": handler.command or "-",
        "REQUEST_URI": path,
        "PATH_INFO": path.partition("?")[0],
        "QUERY_STRING": path.partition("?")[2],
        "SERVER_PROTOCOL": handler.request_version,
    }
    if headers is not None:
        for name, key in (("Authorization", "HTTP_AUTHORIZATION"), ("Referer", "HTTP_REFERER"),
                          ("User-Agent", "HTTP_USER_AGENT"), ("X-Request-Id", "HTTP_X_REQUEST_ID")):
            value = headers.get(name)
            if value is not None:
                environ[key] = value
    return environ


def _count(length: str | None) -> int:
    return int(length) if length is not None and length.isdigit() else 0


def _user(authorization: str | None) -> str:
    if not authorization or authorization[:6].lower() != "basic ":
        return "-"
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return "-"
    return decoded.partition(":")[0] or "-"
