"""Bind specs and unix-socket hygiene.

A bind spec is what a user types after ``-b``: ``HOST:PORT``, ``:PORT``, ``[IPV6]:PORT``,
``tcp://HOST:PORT``, ``udp://HOST:PORT``, ``unix:/path`` or ``unix-dgram:/path``.
:func:`parse_bind` turns it into a :class:`BindSpec` or raises :class:`BindSpecError` with a
message fit to show the user as it is.

Unix socket files belong to the master: it replaces a stale file left by a dead server, refuses
to bind over a live one, and removes the file when it finally closes -- but only if the file is
still the one it bound (a successor may have taken the path over by then).  Workers never remove
it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from dataclasses import dataclass
from typing import Literal

Kind = Literal["tcp", "udp", "unix", "unix-dgram"]
Address = tuple[str, int] | str


class BindSpecError(ValueError):
    """A bind spec that cannot be parsed; the message names the spec and what is wrong."""


@dataclass(frozen=True)
class BindSpec:
    kind: Kind
    family: socket.AddressFamily
    address: Address

    @property
    def stream(self) -> bool:
        return self.kind in ("tcp", "unix")

    def __str__(self) -> str:
        return format_address(self.kind, self.family, self.address)


def format_address(kind: str, family: int, address: object) -> str:
    """The address as a user would type it back (``127.0.0.1:8000``, ``[::1]:80``, ``unix:/p``)."""
    if family == socket.AF_UNIX:
        return f"{'unix-dgram' if kind == 'unix-dgram' else 'unix'}:{address}"
    assert isinstance(address, tuple)
    host, port = address[0], address[1]
    shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    return f"udp://{shown}" if kind == "udp" else shown


def parse_bind(spec: str) -> BindSpec:
    text = spec.strip()
    if not text:
        raise BindSpecError("empty bind spec")
    if text.startswith("unix-dgram:"):
        return BindSpec("unix-dgram", socket.AF_UNIX, _unix_path(spec, text[len("unix-dgram:") :]))
    if text.startswith("unix:"):
        return BindSpec("unix", socket.AF_UNIX, _unix_path(spec, text[len("unix:") :]))
    kind: Kind = "tcp"
    if text.startswith("udp://"):
        kind, text = "udp", text[len("udp://") :]
    elif text.startswith("tcp://"):
        text = text[len("tcp://") :]
    elif "://" in text:
        raise BindSpecError(f"bind spec {spec!r}: unknown scheme {text.split('://')[0]!r}")
    family, host, port = _host_port(spec, text)
    return BindSpec(kind, family, (host, port))


def _unix_path(spec: str, path: str) -> str:
    if path.startswith("//"):  # tolerate unix:///tmp/x
        path = path[2:]
    if not path:
        raise BindSpecError(f"bind spec {spec!r}: missing socket path")
    if "\0" in path:
        raise BindSpecError(f"bind spec {spec!r}: NUL byte in socket path")
    return path


def _host_port(spec: str, text: str) -> tuple[socket.AddressFamily, str, int]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise BindSpecError(f"bind spec {spec!r}: expected [IPV6]:PORT")
        host, port_text, family = text[1:close], text[close + 2 :], socket.AF_INET6
        if not host:
            raise BindSpecError(f"bind spec {spec!r}: empty IPv6 address")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise BindSpecError(f"bind spec {spec!r}: expected HOST:PORT, :PORT or unix:/path")
        if ":" in host:
            raise BindSpecError(f"bind spec {spec!r}: write IPv6 addresses as [ADDR]:PORT")
        family = socket.AF_INET
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BindSpecError(f"bind spec {spec!r}: port must be a number from 0 to 65535")
    return family, host, int(port_text)


# --- unix socket files -------------------------------------------------------------------------

FileIdent = tuple[int, int]


def is_path_address(family: int, address: object) -> bool:
    """True for a unix socket bound to a file (not the abstract namespace)."""
    return family == socket.AF_UNIX and isinstance(address, str) and not address.startswith("\0")


def clear_stale_unix_path(path: str, sock_type: int) -> None:
    """Make ``path`` free to bind: remove a dead server's socket file, refuse a live one.

    Raises ``OSError(EADDRINUSE)`` when a server answers on the path, and
    ``OSError(EEXIST)`` when the path exists and is not a socket -- a symlink included, even
    one to a socket: only a socket file itself at ``path`` is ever removed (``lstat``, and
    ``unlink`` removes a directory entry, never what a link points to).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} is a symbolic link, not a socket")
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, sock_type)
    probe.setblocking(False)  # a live server with a full backlog must not hang us
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        # Nobody is bound to it: a leftover from a server that died without cleaning up.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except FileNotFoundError:
        return
    except BlockingIOError:
        pass  # its backlog is full: it is alive
    except OSError as exc:
        if exc.errno != errno.EPROTOTYPE:  # a live socket of the other type
            raise
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"a server is already listening on unix:{path}")


def file_ident(path: str) -> FileIdent | None:
    """The identity of the directory entry at ``path`` itself (a link is not followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_unix_path(path: str, ident: FileIdent | None) -> None:
    """Remove the socket file if it is still the one identified by ``ident``."""
    if ident is not None and file_ident(path) == ident:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
