"""Pieces of the WSGI environ that do not depend on one request: the mount prefix
(``SCRIPT_NAME``), the local address a listener's connections share, and the path of a
request target; and the request's fields into the environ."""

from __future__ import annotations

import contextlib
import socket
import weakref
from typing import Any
from urllib.parse import unquote_to_bytes

from prefork.apps.request import RequestError

# server -> its listening socket's local address (None: ask each connection)
_LISTENING: weakref.WeakKeyDictionary[Any, tuple[Any, ...] | None] = weakref.WeakKeyDictionary()
_WILDCARDS = ("0.0.0.0", "::", "")


def listener_address(server: Any) -> tuple[Any, ...] | None:
    """The local address every connection of ``server`` has: its listening socket's, asked
    once, unless it listens on every address (then each connection's own is asked)."""
    try:
        return _LISTENING[server]
    except KeyError:
        pass
    except TypeError:  # (a server that takes no weak reference: asked each time)
        return None
    listener = getattr(server, "socket", None)
    try:
        local = listener.getsockname() if isinstance(listener, socket.socket) else None
    except OSError:
        local = None
    keep = isinstance(local, tuple) and str(local[0]) not in _WILDCARDS
    with contextlib.suppress(TypeError):
        _LISTENING[server] = local if keep else None
    return local if keep else None


def script_name(server: Any) -> str:
    """The SCRIPT_NAME of ``server``'s requests: its ``root_path`` as :func:`mount_point`."""
    return mount_point(getattr(server, "root_path", None) or "")


def mount_point(prefix: str) -> str:
    """A mount prefix as SCRIPT_NAME: the prefix under which the application is mounted (the
    ``root_path`` setting, or the ``SCRIPT_NAME`` environment variable, as gunicorn reads it),
    in the environ's latin-1 form, without a trailing slash.  A request under it has it split
    off ``PATH_INFO`` (``/app/x`` -> ``SCRIPT_NAME=/app``, ``PATH_INFO=/x``); a request outside
    it (``/healthz``) keeps its whole path in ``PATH_INFO`` and an empty ``SCRIPT_NAME``."""
    return prefix.rstrip("/").encode("utf-8").decode("latin-1")


def add_fields(environ: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    """The request's header fields into ``environ`` (PEP 3333: ``HTTP_*``, CONTENT_TYPE and
    CONTENT_LENGTH; repeated fields joined, cookies with "; ")."""
    keys = _KEYS
    for name, value in headers:
        key = keys.get(name)
        if key is None:
            key = environ_key(name)
            if len(keys) < KEYS_KEPT:
                keys[name] = key
        if not key:
            continue  # X-Forwarded_For would pose as X-Forwarded-For: dropped, as nginx does
        environ[key] = joined(key, environ[key], value) if key in environ else value


def joined(key: str, first: str, value: str) -> str:
    """A repeated field's values in one: cookies with "; ", any other with ", "."""
    return first + ("; " if key == "HTTP_COOKIE" else ", ") + value


def environ_key(name: str) -> str:
    """The environ's key for the field ``name`` (lower case); "" for a name with "_"."""
    if name == "content-type":
        return "CONTENT_TYPE"
    if name == "content-length":
        return "CONTENT_LENGTH"
    return "" if "_" in name else "HTTP_" + name.upper().replace("-", "_")


# Field names -> their environ keys (a client sends the same few again and again).
_KEYS: dict[str, str] = {}
KEYS_KEPT = 256


def split_target(target: str, prefix: str) -> tuple[str, str, str, bool]:
    """A request target as the environ has it: PATH_INFO (decoded once, as bytes: PEP 3333;
    the mount ``prefix`` split off), QUERY_STRING, REQUEST_URI (without a fragment), and
    whether the path is outside the prefix (then SCRIPT_NAME is empty, and the whole path is
    PATH_INFO)."""
    if "#" in target:  # a fragment is not passed on
        target = target.partition("#")[0]
    path, _, query = (target if target[:1] == "/" else path_of(target)).partition("?")
    path_info = (unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
                 if "%" in path else path)  # (nothing to decode: as it is)
    outside = False
    if prefix:  # --root-path: the mount prefix comes off PATH_INFO (see mount_point)
        if path_info == prefix or path_info.startswith(prefix + "/"):
            path_info = path_info[len(prefix):]
        else:
            outside = True  # outside the prefix: served as it came
    return path_info, query, target, outside


def path_of(target: str) -> str:
    """The path and query of a request target: origin form as is, absolute form without its
    scheme and authority, ``*`` as is."""
    if target.startswith("/") or target == "*":
        return target
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        rest = rest[end:]
        return rest if rest.startswith("/") else "/" + rest
    raise RequestError(400, "unsupported request target")
