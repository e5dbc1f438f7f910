"""The access log: one line per WSGI request, in gunicorn's format language.

``--access-logfile PATH`` (``-``: stdout) turns it on; ``--access-logformat`` is a ``%``-format
over these atoms (gunicorn's, where they make sense): ``h`` remote address, ``l`` ``-``, ``u``
the user of HTTP basic auth or ``-``, ``t`` the time ``[02/Dec/2026:13:10:00 +0000]``, ``r``
the request line, ``m`` method, ``U`` path, ``q`` query, ``H`` protocol, ``s`` status, ``b``
body bytes sent (``-`` for none), ``B`` the same as a number, ``f`` referer, ``a`` user agent,
``D`` request time in microseconds, ``T`` in seconds, ``M`` in milliseconds, ``p`` the worker's
pid.  The lines go through the ``prefork.access`` logger (no propagation: they are not mixed
into the error log); a file is a ``FileHandler``, so USR1 reopens it with the other log files
(ops/logs.py), and a line is one ``write``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ATOMS = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "b", "B", "f", "a", "D", "T", "M", "p"]

log = logging.getLogger("prefork.access")
log.propagate = False


class AccessLog:
    """Where the lines go and in which format; :data:`ACTIVE` is the one in use, if any."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt

    def record(self, environ: Mapping[str, Any], status: str | None, sent: int,
               seconds: float) -> None:
        line = self.fmt % atoms(environ, status, sent, seconds)
        log.info("%s", line)


ACTIVE: list[AccessLog] = []  # empty: no access log (one list lookup per request)


def check_format(fmt: str) -> str:
    """``fmt`` if it formats with the atoms; ValueError says why not."""
    try:
        fmt % atoms({}, "200 OK", 0, 0.0)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown atom or bad format: {exc}") from None
    return fmt


def setup_access_log(path: str | None, fmt: str) -> None:
    """Turn the access log on (``path`` a file appended to, or ``-`` for stdout) or off."""
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    ACTIVE.clear()
    if not path:
        return
    handler: logging.Handler
    if path == "-":
        handler = logging.StreamHandler(sys.stdout)
    else:
        handler = logging.FileHandler(path, encoding="utf-8")  # OSError: the caller says so
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    ACTIVE.append(AccessLog(fmt))


def atoms(environ: Mapping[str, Any], status: str | None, sent: int,
          seconds: float) -> dict[str, Any]:
    method = environ.get("REQUEST_METHOD", "-")
    path = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
    protocol = environ.get("SERVER_PROTOCOL", "-")
    code = status.split(" ", 1)[0] if status else "-"
    return {
        "h": environ.get("REMOTE_ADDR", "-"),
        "l": "-",
        "u": _user(environ.get("HTTP_AUTHORIZATION")),
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
        "r": f"{method} {path} {protocol}",
        "m": method,
        "U": environ.get("PATH_INFO", ""),
        "q": environ.get("QUERY_STRING", ""),
        "H": protocol,
        "s": code,
        "b": str(sent) if sent else "-",
        "B": sent,
        "f": environ.get("HTTP_REFERER", "-"),
        "a": environ.get("HTTP_USER_AGENT", "-"),
        "D": int(seconds * 1_000_000),
        "T": int(seconds),
        "M": int(seconds * 1000),
        "p": f"<{os.getpid()}>",
    }


def _user(authorization: str | None) -> str:
    if not authorization or authorization[:6].lower() != "basic ":
        return "-"
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return "-"
    return decoded.partition(":")[0] or "-"
