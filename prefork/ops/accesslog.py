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

How a line is written.  Not through ``logging``: a line is formatted by a function compiled
from the format once (it computes only the atoms the format uses) and written with
``os.write`` on a descriptor opened ``O_APPEND`` by the master and inherited by the workers, so
lines are never split or interleaved with another worker's, and there is no logging lock, no
handler chain and no stream buffer in the way.  In the stdlib modes each line is one
``write``.  A prefork worker writes its lines in batches: at most ``BATCH_LINES`` lines, or
the ones whose first has waited ``BATCH_DELAY`` seconds, in one ``write`` (the worker's loop
bounds its wait by that delay while lines are pending, and writes the rest when it ends), so
the write's cost is shared by up to 32 requests, a slow disk holds the worker for the time of
one ``write`` per batch, and what a killed worker (SIGKILL) can lose is the lines of its last
50 ms at most.  (A pipe as stdout, ``-``, blocks like any pipe while its reader is slower than
the writers.)  A failed write (a full disk) drops its lines and is counted in
:attr:`AccessLog.dropped`.  USR1 reopens the path (``logs.reopen_log_files``: in the master, so
new workers inherit the new file, and in each worker, after writing what is pending to the old
one): the new file takes the old descriptor's number with ``dup2``, so a thread writing
meanwhile writes to one file or the other, never to a closed descriptor.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast, overload

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
ATOMS = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "b", "B", "f", "a", "D", "T", "M",
         "L", "p", "R"]
_REQUEST_ID = re.compile(r"[!-~]{1,128}")  # visible ASCII: nothing that could forge a line


class AccessLog:
    """Where the lines go (``fd``) and in which format; :data:`ACTIVE` holds the one in use.
    Methods: record(environ, status, sent, seconds), record_http(handler, ...), reopen()."""

    def __init__(self, fmt: str, path: str) -> None:
        self.fmt = fmt
        self.path = path
        self.line = compile_format(fmt)
        self.fd = sys.stdout.fileno() if path == "-" else _open(path)  # OSError: caller says
        self.dropped = 0
        # In a prefork worker (buffered): lines not yet written, and when the first was added.
        self.buffered = False
        self.pending: list[str] = []
        self.first = 0.0
        self.lock = threading.Lock()
        # record(environ, status, sent, started): the line of one WSGI request (``status``: the
        # status line the app gave, ``started``: time.perf_counter() as it began), made and
        # added to the batch by one compiled function: the line where a batch has begun and has
        # room, else through write().  The request's duration is computed only if the format
        # shows it.
        self.record: Record = compile_format(fmt, self)
        # Whether the format shows the request's duration (only then is its start read).
        self.timed = any((m.group(1) or "x") in "DTML" for m in _TOKEN_RE.finditer(fmt))
        self.delay = BATCH_DELAY  # (the loop's wait is bounded by it: mux.timeout)

    def record_http(self, handler: Any, code: Any, length: str | None, seconds: float) -> None:
        """The line of one ``http.server`` request (``code``: what log_request got)."""
        self.write(self.line(http_environ(handler), str(code), _count(length), seconds))

    def write(self, line: str) -> None:
        if not self.buffered:
            self._write(line + "\n")
            return
        pending = self.pending
        if not pending:
            self.first = time.monotonic()
        pending.append(line)
        if len(pending) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        """Write the lines pending, in one write."""
        with self.lock:  # (handler threads may flush too, and append meanwhile: those stay)
            pending = self.pending
            count = len(pending)
            if count:
                text = "\n".join(pending[:count]) + "\n"
                del pending[:count]
                self._write(text)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        try:
            while data:  # a regular file takes it whole; a pipe may take part
                data = data[os.write(self.fd, data):]
        except OSError:
            self.dropped += 1

    def reopen(self) -> None:
        """A new file at the path (after logrotate moved it), on the same descriptor number."""
        self.flush()  # (to the old file: they were logged before the rotation)
        if self.path == "-":
            return
        fresh = _open(self.path)
        try:
            os.dup2(fresh, self.fd)
        finally:
            os.close(fresh)


ACTIVE: list[AccessLog] = []  # empty: no access log (one list lookup per request)
BATCH_LINES = 32  # a prefork worker writes its pending lines at this many ...
BATCH_DELAY = 0.05  # ... or once the first has waited this many seconds


def buffering() -> AccessLog | None:
    """In a prefork worker, whose loop bounds its wait by the batch's delay (mux.timeout) and
    flushes at its end: the access log in use, its lines from now on written in batches; None
    without one."""
    if not ACTIVE:
        return None
    ACTIVE[0].buffered = True
    return ACTIVE[0]


def _open(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


def check_format(fmt: str) -> str:
    """``fmt`` if it formats with the atoms; ValueError says why not."""
    try:
        compile_format(fmt)({}, "200 OK", 0, 0.0)
    except (KeyError, ValueError, TypeError, SyntaxError) as exc:
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


def flush_pending() -> None:
    """Write the lines still pending (a prefork worker's loop, as it ends)."""
    for log in ACTIVE:
        log.flush()


def reopen() -> int:
    """USR1: reopen the access log file, if there is one; how many were reopened."""
    for log in ACTIVE:
        log.reopen()  # OSError: the caller says it keeps the old file
    return sum(1 for log in ACTIVE if log.path != "-")


_ids = itertools.count(1)


def request_id(environ: Mapping[str, Any]) -> str:
    given = environ.get("HTTP_X_REQUEST_ID")
    if given and _REQUEST_ID.fullmatch(given):
        return str(given)
    return f"{os.getpid():x}-{next(_ids):x}"


def _restamp(space: dict[str, Any], now: float) -> str:
    """The 't' atom's text for ``now``, kept in the line function's globals (``space``) with
    the second it is true for, ``_S0 <= now < _S1``."""
    second = int(now)
    text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
    space.update(_S0=float(second), _S1=second + 1.0, _ST=text)
    return text


# Each atom as an expression over the request's environ (``g`` is its ``get``), the status line
# ``s`` (checked: it starts with its three digits), body bytes ``n`` and seconds ``d``; ``w`` is
# time.time() (computed only when ``t`` is used).  A format is compiled once into one function
# that computes the atoms it uses and nothing else: the access log runs on every request, so
# each expression is inlined (no helper call where a lookup does).
_EXPRESSIONS = {
    "h": 'g("REMOTE_ADDR", "-")',
    "l": '"-"',
    "u": '(_user(e["HTTP_AUTHORIZATION"]) if "HTTP_AUTHORIZATION" in e else "-")',
    "t": "(_ST if _S0 <= w < _S1 else _stamp_at(w))",
    "r": ('"%s %s %s" % (g("REQUEST_METHOD", "-"), g("REQUEST_URI") or g("PATH_INFO", ""), '
          'g("SERVER_PROTOCOL", "-"))'),
    "m": 'g("REQUEST_METHOD", "-")',
    "U": 'g("PATH_INFO", "")',
    "q": 'g("QUERY_STRING", "")',
    "H": 'g("SERVER_PROTOCOL", "-")',
    "s": '(s[:3] if s else "-")',
    "b": '(n or "-")',
    "B": "n",
    "f": '(e["HTTP_REFERER"] if "HTTP_REFERER" in e else "-")',
    "a": '(e["HTTP_USER_AGENT"] if "HTTP_USER_AGENT" in e else "-")',
    "D": "int(d * 1_000_000)",
    "T": "int(d)",
    "M": "int(d * 1000)",
    "L": '"%.6f" % d',
    "p": "_PID[0]",
    "R": "request_id(e)",
}
assert list(_EXPRESSIONS) == ATOMS
Line = Callable[[Mapping[str, Any], "str | None", int, float], str]
Record = Callable[[Mapping[str, Any], "str | None", int, float], None]


@overload
def compile_format(fmt: str) -> Line: ...
@overload
def compile_format(fmt: str, log: AccessLog) -> Record: ...
def compile_format(fmt: str, log: AccessLog | None = None) -> Line | Record:
    """``fmt`` as a function of (environ, status, sent, seconds) -> the line; KeyError names
    an unknown atom, ValueError a ``%`` that is neither ``%%`` nor an atom.  With ``log``: a
    function that gives the line to ``log`` (its ``record``).

    The function is one f-string (a ``%`` over nine values costs about three times as much):
    an atom converted with plain ``s`` is an f-string field, one with another conversion
    (``%(D)8d``) is ``%``-formatted alone, and the text between them is the f-string's
    literal text."""
    pieces: list[str] = []
    clock = ""
    last = 0
    timed = False
    for token in _TOKEN_RE.finditer(fmt):
        pieces.append(_literal(fmt[last:token.start()]))
        last = token.end()
        name, spec = token.group(1), token.group(2)
        if name is None:  # %%
            pieces.append("%")
            continue
        expression = _EXPRESSIONS[name]
        clock = "    w = _time()\n" if name == "t" else clock
        timed = timed or name in "DTML"
        if spec == "s":
            pieces.append(_SPLICED.get(name) or "{" + expression + "}")
        else:
            expression = _AS_STR.get(name, expression)
            pieces.append("{" + f'"%{spec}" % ({expression},)' + "}")
    pieces.append(_literal(fmt[last:]))
    text = "".join(pieces)
    # The server's environ always has the keys of ALWAYS: read with e[...] (a subscript costs
    # a fifth of a call to get); if an app took one away, the line is made with get().
    fast = _ALWAYS_RE.sub(lambda m: f'e["{m.group(1)}"]', text)
    # (``g``, the environ's get, only where it is used: on the common path a lookup less.)
    body = f"    g = e.get\n    line = f'{text}'\n" if fast == text else (
        f"    try:\n        line = f'{fast}'\n    except KeyError:\n        g = e.get\n"
        f"        line = f'{text}'\n")
    tail = ("    if _P and len(_P) < _LAST:\n        _P.append(line)\n    else:\n"
            "        _W(line)\n") if log is not None else "    return line\n"
    if log is None:
        source = f"def line(e, s, n, d):\n{clock}{body}{tail}"
    else:  # (d is the start; the duration is computed only if the format shows it)
        since = "    d = _perf() - d\n" if timed else ""
        source = f"def line(e, s, n, d):\n{clock}{since}{body}{tail}"
    namespace: dict[str, Any] = {
        "_user": _user, "_time": time.time, "_perf": time.perf_counter, "_PID": _PID,
        "request_id": request_id,
        "_S0": 0.0, "_S1": 0.0, "_ST": ""}
    if log is not None:
        namespace.update(_P=log.pending, _W=log.write, _LAST=BATCH_LINES - 1)
    namespace["_stamp_at"] = functools.partial(_restamp, namespace)
    exec(source, namespace)  # (our own expressions; the format's text is escaped)
    return cast("Line | Record", namespace["line"])


# The environ's keys that the WSGI handler and http_environ() always set.
_ALWAYS = ("REMOTE_ADDR", "REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING",
           "SERVER_PROTOCOL")
_ALWAYS_RE = re.compile(r'g\("(' + "|".join(_ALWAYS) + r')"(?:, "[^"]*")?\)')
# ``%%`` or an atom and its conversion (what ``%`` would take after the name).
_TOKEN_RE = re.compile(r"%%|%\((\w+)\)([#0 +-]*\d*(?:\.\d+)?[a-zA-Z])")
# Atoms whose value is a str only under plain s: for another conversion (%r), a str too.
_AS_STR = {"b": '(str(n) if n else "-")'}
# Atoms whose plain-s text is spliced into the f-string in parts (no inner format).
_SPLICED = {"l": "-", "r": '{g("REQUEST_METHOD", "-")} {g("REQUEST_URI") or g("PATH_INFO", "")} '
                 '{g("SERVER_PROTOCOL", "-")}'}


def _literal(text: str) -> str:
    """The format's ``text`` between its atoms, as f-string literal text."""
    if "%" in text:
        raise ValueError(f"a % that is neither %% nor an atom in {text!r}")
    text = text.encode("unicode_escape").decode("ascii")
    return text.replace("'", "\\'").replace("{", "{{").replace("}", "}}")


_PID = [f"<{os.getpid()}>"]  # the p atom, refreshed in a forked worker
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, f"<{os.getpid()}>"))


def atoms(environ: Mapping[str, Any], status: str | None, sent: int, seconds: float,
          used: Any = ATOMS) -> dict[str, Any]:
    """The values of the atoms ``used`` (for tests and tools; a KeyError names an unknown
    one)."""
    return {key: compile_format(f"%({key})s")(environ, status, sent, seconds) for key in used}


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
