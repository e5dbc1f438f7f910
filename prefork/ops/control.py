"""The master's control socket (status / reload / scale / stop) and its client.

The protocol is one exchange per connection over a unix stream socket: the client sends one
JSON object on one line, the server answers one JSON object on one line and closes::

    -> {"command": "status"}
    <- {"ok": true, "workers": [...]}
    -> {"command": "scale", "workers": "+1"}         (or an absolute count: 4)
    -> {"command": "stop", "graceful": true}
    -> {"command": "reload"}                         (answered at once: it started)
    -> {"command": "reload", "wait": 60}             (answered with the outcome, within 60 s)
    <- {"ok": false, "error": "unknown command 'relaod'"}

Why it looks like this:

* **No thread in the master, and no waiting in it.**  :class:`ControlServer` is an
  :class:`~prefork.ops.endpoint.Endpoint`: its connections are non-blocking and served from the
  master's select loop, each within :attr:`ControlServer.timeout` *in total* (not per ``recv``).
  A client that connects and says nothing, or trickles bytes, costs a registration, and gets an
  error reply at its deadline.  The answer itself comes from :class:`ControlHandler`, an
  ordinary ``socketserver.StreamRequestHandler``.
* **Some answers come later.**  ``reload`` with ``wait`` is answered when the new generation
  serves, or when it failed: the master's handler returns a :class:`PendingReply` and resolves
  it from its loop (see :class:`~prefork.ops.buffered.Deferred`); past ``wait`` seconds the
  client gets ``{"ok": false, "error": ...}``.  Nothing in the master waits for it.
* **Any input gets a reply.**  Whatever a client sends -- bytes that are not UTF-8, nesting
  deeper than the JSON parser's recursion, numbers past the int digits limit, wrong types -- is
  answered with ``{"ok": false, "error": ...}``; nothing reaches the master's loop as an
  exception.
* **Who may talk to it.**  Two layers.  The socket file is created with mode 0600 (bound under a
  0o177 umask, so there is no window where it is wider, then chmod'ed in case the filesystem
  ignored the umask), so only the owner and root can connect at all.  Then every peer's
  credentials are read from the kernel (``SO_PEERCRED``, taken at ``connect()`` time and not
  forgeable): only the master's effective uid and root are served, anyone else gets
  ``{"ok": false, "error": "permission denied"}`` without the request being read.
* **The socket file belongs to this server.**  A stale file left by a dead master is replaced, a
  live one is refused (see :func:`prefork.core.sockets.clear_stale_unix_path`), and :meth:`close`
  removes the file only if it is still the one bound here (a successor may own the path by then).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import socketserver
import struct
import time
from collections.abc import Callable
from typing import Any

from prefork.core.sockets import FileIdent, clear_stale_unix_path, file_ident, remove_unix_path
from prefork.ops.buffered import Deferred
from prefork.ops.endpoint import SERVE_TIMEOUT, Endpoint

log = logging.getLogger("prefork.master")

Request = dict[str, Any]
Reply = dict[str, Any]

class PendingReply(Deferred):
    """A control reply that comes later: the handler returns it, the owner calls
    :meth:`answer` with the reply dict once the outcome is known.  ``what`` names the wait in
    the reply a client gets if ``timeout`` passes first."""

    def __init__(self, timeout: float, what: str) -> None:
        error = f"{what}: no outcome within {timeout:g} s"
        super().__init__(timeout, encode({"ok": False, "error": error}))

    def answer(self, reply: Reply) -> None:
        self.resolve(encode(reply))


Handler = Callable[[Request], "Reply | PendingReply"]

COMMANDS = ("status", "reload", "scale", "stop")
PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
SOCKET_MODE = 0o600
BIND_UMASK = 0o177
MAX_REQUEST = 64 * 1024  # bytes; a request is one short JSON line
MAX_REPLY = 16 * 1024 * 1024  # bytes the client accepts before giving up
PERMISSION_DENIED: Reply = {"ok": False, "error": "permission denied"}
MAX_SCALE = 1_000_000  # no pool is this big: larger counts are refused, not converted
MAX_WAIT = 24 * 3600.0  # seconds a client may ask to wait for a reload's outcome
RELATIVE = re.compile(r"[+-][0-9]{1,7}")  # "+N"/"-N", ASCII digits only ("+²".isdigit())


class ControlError(Exception):
    """The control socket could not be used; the message is one line fit to show a user."""


class RequestError(ValueError):
    """A request that is not valid; the message goes back to the client."""


def validate(request: object) -> Request:
    """Check a decoded request against the protocol and return it with defaults filled in.

    ``scale`` needs ``workers``: an int >= 1, or a string ``"+N"``/``"-N"`` (relative);
    ``stop`` takes ``graceful`` (bool, default True); ``reload`` takes ``wait`` (seconds to wait
    for the outcome, > 0; absent: answer at once).  Raises :class:`RequestError`.
    """
    if not isinstance(request, dict):
        raise RequestError("request must be a JSON object")
    command = request.get("command")
    if not isinstance(command, str):
        raise RequestError('request needs a "command" string')
    if command not in COMMANDS:
        raise RequestError(f"unknown command {_shown(command)} (one of: {', '.join(COMMANDS)})")
    out: Request = dict(request)
    if command == "scale":
        workers = request.get("workers")
        if isinstance(workers, bool) or not isinstance(workers, (int, str)):
            raise RequestError('scale needs "workers": a count or "+N"/"-N"')
        if isinstance(workers, int):
            if workers < 1:
                raise RequestError('"workers" must be at least 1')
            if workers > MAX_SCALE:
                raise RequestError(f'"workers" must be at most {MAX_SCALE}')
        elif not RELATIVE.fullmatch(workers):
            raise RequestError(f'"workers" must be a count or "+N"/"-N", not {_shown(workers)}')
    elif command == "reload" and "wait" in request:
        wait = request["wait"]
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not (
            0 < wait <= MAX_WAIT
        ):
            raise RequestError(f'"wait" must be a number of seconds in (0, {MAX_WAIT:g}]')
    elif command == "stop":
        graceful = request.get("graceful", True)
        if not isinstance(graceful, bool):
            raise RequestError('"graceful" must be true or false')
        out["graceful"] = graceful
    return out


def _shown(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut short: replies must not echo a client's megabytes back."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def scale_target(workers: int | str, current: int) -> int:
    """The pool size a validated ``scale`` request asks for, given the ``current`` size."""
    if isinstance(workers, str):
        return current + int(workers)
    return workers


class ControlHandler(socketserver.StreamRequestHandler):
    """Answers one control request: reads a JSON line, writes a JSON line.

    ``server`` is the :class:`ControlServer`, whose ``handle`` acts on a validated request.
    Any input gets a reply; nothing a client sends makes this raise.
    """

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, ControlServer)
        line = self.rfile.readline(server.max_request + 1)
        reply = self.answer(server, line)
        if isinstance(reply, PendingReply):
            self.request.defer(reply)  # a BufferedRequest (prefork.ops.buffered)
        else:
            self.wfile.write(encode(reply))

    def answer(self, server: ControlServer, line: bytes) -> Reply | PendingReply:
        try:
            request = validate(decode(line))
        except RequestError as exc:
            return {"ok": False, "error": str(exc)}
        peer_pid = peer_credentials(self.request)[0]
        # Commands that change something are worth a line; status (and `prefork top`) is not.
        log.log(
            logging.DEBUG if request["command"] == "status" else logging.INFO,
            "master (pid %d) control: %s from pid %d", os.getpid(), request["command"], peer_pid,
        )
        try:
            result = server.handle(request)
            if isinstance(result, PendingReply):
                return result
            if not isinstance(result, dict):
                raise TypeError(f"handler returned {type(result).__name__}, not dict")
            reply = {"ok": True, **result}
            json.dumps(reply)  # fail here, inside the guard, if it cannot be encoded
        except Exception as exc:
            log.exception(
                "master (pid %d) control command %r failed", os.getpid(), request["command"]
            )
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return reply


def decode(line: bytes) -> object:
    """``json.loads`` for untrusted input: every failure is a :class:`RequestError`."""
    try:
        return json.loads(line)
    except RecursionError:  # [[[[...: deeper than the parser's recursion limit
        raise RequestError("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digits limit
        raise RequestError(f"invalid JSON: {exc}") from None


def encode(reply: Reply) -> bytes:
    return json.dumps(reply).encode() + b"\n"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """The connected peer's (pid, uid, gid), from the kernel (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
    pid, uid, gid = PEERCRED.unpack(creds)
    return pid, uid, gid


class ControlServer(Endpoint):
    """The listening side, served from the master's select loop (see :class:`Endpoint`).

    Methods for the caller: :meth:`register`, :meth:`deadline`, :meth:`expire`, :meth:`close`.

    ``handle(request)`` receives a validated request (see :func:`validate`) and returns a dict
    that becomes the reply; ``"ok": true`` is added unless it sets ``ok`` itself.  It may
    instead return a :class:`PendingReply` and answer it later.  An exception
    in ``handle`` is logged with its traceback and answered with ``{"ok": false, "error": ...}``.
    It runs in the master's loop: it must not block.

    Tunables (class attributes): ``timeout``, ``max_request``, ``max_connections``, ``backlog``.
    Construction raises :class:`ControlError` when the path is in use by a live server, is not a
    socket, or cannot be bound.  Not for threads: it sets the process umask while binding.
    """

    handler_class = ControlHandler
    name = "control socket"
    timeout = SERVE_TIMEOUT
    max_request = MAX_REQUEST

    def __init__(self, path: str, handle: Handler) -> None:
        self.path = path
        self.handle = handle
        self.uid = os.geteuid()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._ident = self._bind(sock)
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        super().__init__(sock)
        log.debug("master (pid %d) control socket at %s", os.getpid(), path)

    def _bind(self, sock: socket.socket) -> FileIdent | None:
        try:
            clear_stale_unix_path(self.path, socket.SOCK_STREAM)
        except OSError as exc:
            raise ControlError(f"control socket {self.path}: {exc.strerror or exc}") from exc
        old_umask = os.umask(BIND_UMASK)
        try:
            sock.bind(self.path)
        except OSError as exc:
            raise ControlError(f"control socket {self.path}: cannot bind: {exc}") from exc
        finally:
            os.umask(old_umask)
        ident = file_ident(self.path)
        try:
            os.chmod(self.path, SOCKET_MODE)
        except OSError as exc:
            remove_unix_path(self.path, ident)
            raise ControlError(f"control socket {self.path}: cannot chmod: {exc}") from exc
        return ident

    def admit(self, sock: socket.socket) -> bytes | None:
        """Only the master's effective uid and root are served; the rest are refused unread."""
        peer_pid, peer_uid, _ = peer_credentials(sock)
        if peer_uid in (self.uid, 0):
            return None
        log.warning(
            "master (pid %d) control socket: refused pid %d (uid %d)",
            os.getpid(), peer_pid, peer_uid,
        )
        return encode(PERMISSION_DENIED)

    def timeout_reply(self) -> bytes:
        return encode({"ok": False, "error": f"no request within {self.timeout:g} s"})

    def too_large_reply(self) -> bytes:
        return encode({"ok": False, "error": f"request longer than {self.max_request} bytes"})

    def failure_reply(self, exc: Exception) -> bytes:
        return encode({"ok": False, "error": f"internal error: {type(exc).__name__}"})

    def close(self) -> None:
        """Stop serving and remove the socket file if it is still ours.  Idempotent."""
        if self.closed:
            return
        # Compare while the socket still pins its inode: once closed, the inode number may be
        # reused by a successor's file and the comparison would be meaningless.
        remove_unix_path(self.path, self._ident)
        super().close()


def request(path: str, command: Request, timeout: float = 5.0) -> Reply:
    """Send ``command`` to the control socket at ``path`` and return the decoded reply.

    The reply is returned as is, including ``{"ok": false, ...}`` refusals.  Raises
    :class:`ControlError` (one line) when the socket is missing, refuses the connection, gives
    no reply within ``timeout`` seconds overall, or replies with something that is not a JSON
    object.
    """
    deadline = time.monotonic() + timeout
    payload = json.dumps(command).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path} (is the master running?)") from None
        except ConnectionRefusedError:
            raise ControlError(
                f"control socket {path} refused the connection (the master is not running)"
            ) from None
        except PermissionError:
            raise ControlError(f"permission denied connecting to {path}") from None
        except TimeoutError:
            raise ControlError(f"control socket {path}: connect timed out") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
        # The server may refuse us before reading; then its reply is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload, socket.MSG_NOSIGNAL)
            sock.shutdown(socket.SHUT_WR)
        data = _read_reply(sock, path, deadline, timeout)
    line = data.split(b"\n", 1)[0]
    if not line.strip():
        raise ControlError(f"control socket {path} closed the connection without a reply")
    try:
        reply = json.loads(line)
    except (ValueError, RecursionError):
        raise ControlError(f"control socket {path} sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"control socket {path} sent a reply that is not a JSON object")
    return reply


def _read_reply(sock: socket.socket, path: str, deadline: float, timeout: float) -> bytes:
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ControlError(f"no reply from control socket {path} within {timeout:g} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ControlError(
                f"no reply from control socket {path} within {timeout:g} s"
            ) from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REPLY:
            raise ControlError(f"control socket {path} sent a reply over {MAX_REPLY} bytes")
    return data
