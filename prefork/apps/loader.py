"""The APP of ``prefork serve``, in the forms people write it, and what serves it.

``module:HandlerClass``
    a ``socketserver.BaseRequestHandler`` subclass, served as it is (or a handler factory: a
    ``functools.partial`` of one, such as ``partial(SimpleHTTPRequestHandler, directory=d)``,
    or any callable taking ``(request, client_address, server)`` -- a lambda, a function, a
    callable instance -- as socketserver accepts for ``RequestHandlerClass``);
``module:application``
    a WSGI callable (a Flask or Django app, any ``app(environ, start_response)``), served by
    :class:`~prefork.apps.wsgi.WSGIRequestHandler`;
``module:factory()``
    a function called without arguments that returns either of the above;
``module``
    alone: ``module:application``, else ``module:app``, as gunicorn reads it.

An ASGI application is refused in one line that says so.

:func:`parse_app` only checks the shape of the words (no import); :func:`load_app` imports the
module (the current directory first on ``sys.path``, as gunicorn does), so it runs application
code: it belongs in a worker or a probe, never in the master.  Every failure a user can cause
raises :class:`AppError` with one line that says what to fix.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import inspect
import os
import socketserver
import sys
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from prefork.apps.wsgi import WSGIRequestHandler, wsgi_handler
from prefork.core.keepalive import handler_class

# What socketserver's RequestHandlerClass may be: a handler class, or a factory of handlers.
HandlerFactory = Callable[[Any, Any, Any], socketserver.BaseRequestHandler]
# "base": a plain BaseRequestHandler, which serves stream and datagram sockets alike.
AppKind = Literal["stream", "datagram", "http", "wsgi", "base"]
FORMS = ("module:HandlerClass, module:application (WSGI), module:factory() or module alone "
         "(module:application, else module:app)")
DEFAULT_NAMES = ("application", "app")  # what ``module`` alone means, in this order


class AppError(ValueError):
    """The APP cannot be served as asked; the message says why, in one line."""


@dataclass(frozen=True)
class AppSpec:
    """``module:attr`` or ``module:attr()`` (``call``), checked for shape only."""

    module: str
    attr: str
    call: bool

    def __str__(self) -> str:
        if not self.attr:
            return self.module
        return f"{self.module}:{self.attr}{'()' if self.call else ''}"


@dataclass(frozen=True)
class LoadedApp:
    """What a socketserver server runs for an APP: the handler class as is, or the WSGI
    handler bound to the application; ``kind`` decides the server class."""

    handler: HandlerFactory  # a handler class, or a functools.partial of one
    kind: AppKind


def parse_app(text: str) -> AppSpec:
    """The parts of ``text``; AppError if it is not one of the three forms."""
    module, sep, attr = text.partition(":")
    call = attr.endswith(")")
    if call:
        attr, paren, args = attr[:-1].partition("(")
        if not paren:
            raise AppError(f"APP {text!r}: unbalanced parenthesis")
        if args.strip():
            raise AppError(f"APP {text!r}: a factory is called without arguments: "
                           f"{module}:{attr}()")
    if not sep:  # ``module`` alone: module:application, else module:app (as gunicorn)
        if not all(part.isidentifier() for part in module.split(".")):
            raise AppError(f"APP {text!r}: expected {FORMS}")
        return AppSpec(module, "", False)
    names = [*module.split("."), *attr.split(".")]
    if not all(part.isidentifier() for part in names):
        raise AppError(f"APP {text!r}: expected {FORMS}")
    return AppSpec(module, attr, call)


def handler_kind(handler: Any) -> AppKind:
    """Which sockets and server class a handler class (or a partial of one) needs."""
    handler = handler_class(handler) or socketserver.BaseRequestHandler
    if issubclass(handler, WSGIRequestHandler):
        return "wsgi"
    if issubclass(handler, http.server.BaseHTTPRequestHandler):
        return "http"
    if issubclass(handler, socketserver.StreamRequestHandler):
        return "stream"
    if issubclass(handler, socketserver.DatagramRequestHandler):
        return "datagram"
    return "base"


def load_app(text: str) -> LoadedApp:
    """Import the APP ``text`` and return what serves it; AppError with one line if it cannot
    be served."""
    return served(text, *resolve_app(text))


def resolve_app(text: str) -> tuple[AppSpec, Any]:
    """Import the APP ``text``: the object it names (a factory called), not yet checked; the
    spec says how it was found.  AppError with one line if it cannot be had."""
    spec = parse_app(text)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(spec.module)
    except (Exception, SystemExit) as exc:
        raise AppError(
            f"APP {text!r}: cannot import {spec.module}: {type(exc).__name__}: {exc}"
            f"{where(exc)}"
        ) from None
    if not spec.attr:
        found = next((name for name in DEFAULT_NAMES if hasattr(module, name)), None)
        if found is None:
            raise AppError(f"APP {text!r}: module {spec.module} has neither "
                           f"{' nor '.join(map(repr, DEFAULT_NAMES))}; name it: "
                           f"{spec.module}:NAME")
        spec = AppSpec(spec.module, found, False)
    obj: Any = module
    for part in spec.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"APP {text!r}: module {spec.module} has no {spec.attr!r}") from None
    if spec.call:
        if not callable(obj):
            raise AppError(f"APP {text!r}: {spec.attr} is not callable")
        try:
            obj = obj()
        except (Exception, SystemExit) as exc:
            raise AppError(
                f"APP {text!r}: {spec.attr}() failed: {type(exc).__name__}: {exc}{where(exc)}"
            ) from None
    return spec, obj


_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


def where(exc: BaseException) -> str:
    """`` (at FILE:LINE)``: where the import (or factory) failed, the innermost frame outside
    the import machinery and the standard library (a ``KeyError`` from ``os.environ[...]``
    names the line that read it); "" if there is none, or if the message says already (a
    SyntaxError's does)."""
    if isinstance(exc, SyntaxError):
        return ""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen ") and f.filename != __file__]
    if not frames:
        return ""
    ours = [f for f in frames if not f.filename.startswith(_STDLIB)
            or "-packages" + os.sep in f.filename]
    frame = (ours or frames)[-1]
    return f" (at {_short(frame.filename)}:{frame.lineno})"


def _short(path: str) -> str:
    """``path`` from the current directory when it is under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def served(text: str, spec: AppSpec, obj: Any) -> LoadedApp:
    """What serves ``obj``, the object the APP ``text`` names (see resolve_app())."""
    what = f"{spec.attr}() returned what" if spec.call else spec.attr
    what += " is"
    if isinstance(obj, type):
        if issubclass(obj, socketserver.BaseRequestHandler):
            return LoadedApp(obj, handler_kind(obj))
        raise AppError(
            f"APP {text!r}: {what} a class, but not a socketserver.BaseRequestHandler subclass "
            "(for a WSGI application give the app object, or a factory: module:make_app())"
        )
    if isinstance(obj, functools.partial):
        cls = handler_class(obj)
        if cls is not None and issubclass(cls, socketserver.BaseRequestHandler):
            return LoadedApp(obj, handler_kind(obj))  # a handler factory, not a WSGI app
    if callable(obj) and not _is_asgi(obj) and _is_handler_factory(obj):
        return LoadedApp(obj, _factory_kind(obj))
    if not callable(obj):
        raise AppError(f"APP {text!r}: {what} {_describe(obj)}, neither a socketserver "
                       f"request handler class nor a WSGI callable; expected {FORMS}")
    if _is_asgi(obj):
        raise AppError(f"APP {text!r}: {what} an ASGI application (async, scope/receive/send); "
                       "prefork serves WSGI: serve it with an ASGI server, or give a WSGI app")
    hint = _not_wsgi(obj)
    if hint:
        raise AppError(f"APP {text!r}: {what} not a WSGI callable: {hint}")
    return LoadedApp(wsgi_handler(obj), "wsgi")


def _is_handler_factory(obj: Any) -> bool:
    """A callable that takes ``(request, client_address, server)`` and cannot be called as
    ``app(environ, start_response)``: a factory of handlers, as socketserver calls it.  One
    whose first parameter is named ``environ`` is a WSGI application written wrong (refused
    with the reason), not a factory."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    names = list(signature.parameters)
    return (_binds(signature, 3) and not _binds(signature, 2)
            and names[:1] != ["environ"])


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _factory_kind(obj: Any) -> AppKind:
    """The kind of the handler a factory returns, when its return annotation names a handler
    class; else "base" (any socket: what it builds is known only once it runs)."""
    try:
        returned = inspect.signature(obj, eval_str=True).return_annotation
    except Exception:  # an annotation that does not evaluate says nothing
        return "base"
    if isinstance(returned, type) and issubclass(returned, socketserver.BaseRequestHandler):
        return handler_kind(returned)
    return "base"


def _is_asgi(obj: Any) -> bool:
    """An ``async def`` of three parameters, or an object whose ``__call__`` is one."""
    function = obj if inspect.iscoroutinefunction(obj) else getattr(obj, "__call__", None)  # noqa: B004
    if function is None or not inspect.iscoroutinefunction(function):
        return False
    try:
        return len(inspect.signature(function).parameters) == 3
    except (TypeError, ValueError):
        return False


def _not_wsgi(obj: Any) -> str:
    """Why ``obj`` cannot be called as ``obj(environ, start_response)``, or ""."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""  # a builtin or an extension type: take it on trust
    try:
        signature.bind({}, None)
    except TypeError:
        if not signature.parameters:
            name = getattr(obj, "__name__", "it")
            return f"it takes no arguments; if it is a factory, call it: ...:{name}()"
        return f"it cannot be called as app(environ, start_response) {signature}"
    return ""


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class {obj.__name__}"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
