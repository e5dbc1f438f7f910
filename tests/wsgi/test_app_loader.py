"""prefork/apps/loader.py and the server class per kind (prefork/command/app.py)."""

from __future__ import annotations

import http.server

import pytest

from prefork.apps.loader import AppError, AppSpec, load_app, parse_app
from prefork.apps.wsgi import WSGIRequestHandler
from prefork.command.app import MODES, server_class_for
from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import parse_bind
from tests.apps import shapes, wsgi_plain
from workers.echo import LineEcho


def test_parse_app_forms() -> None:
    assert parse_app("a.b:C") == AppSpec("a.b", "C", False)
    assert parse_app("a:make_app()") == AppSpec("a", "make_app", True)
    assert parse_app("a:ns.app") == AppSpec("a", "ns.app", False)
    assert str(parse_app("a:f()")) == "a:f()"
    assert parse_app("a.b") == AppSpec("a.b", "", False) and str(parse_app("a.b")) == "a.b"


def test_a_module_alone_means_application_then_app() -> None:
    loaded = load_app("tests.apps.wsgi_plain")
    assert loaded.handler.application is wsgi_plain.application  # type: ignore[attr-defined]
    assert load_app("tests.apps.flask_app").kind == "wsgi"  # it has ``app`` only


@pytest.mark.parametrize(
    ("text", "message"),
    [("a-b", "expected module:HandlerClass, module:application (WSGI), module:factory() or "
      "module alone"),
     ("a:b-c", "expected"), (":b", "expected"), ("a:f(1)", "called without arguments"),
     ("a:f(", "expected")],
)
def test_parse_app_refuses(text: str, message: str) -> None:
    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_app(text)


def test_load_each_form() -> None:
    assert load_app("workers.echo:LineEcho").handler is LineEcho
    assert load_app("workers.echo:LineEcho").kind == "stream"
    assert load_app("tests.apps.shapes:make_handler()").handler is LineEcho
    assert load_app("tests.apps.shapes:Plain").kind == "base"
    assert load_app("tests.apps.shapes:Datagram").kind == "datagram"
    assert load_app("workers.http_hello:Hello").kind == "http"
    for text in ("tests.apps.wsgi_plain:application", "tests.apps.wsgi_plain:make_app()",
                 "tests.apps.shapes:app_object", "tests.apps.flask_app:app"):
        loaded = load_app(text)
        assert loaded.kind == "wsgi" and issubclass(loaded.handler, WSGIRequestHandler), text
    factory_made = load_app("tests.apps.wsgi_plain:make_app()").handler
    assert factory_made.application is wsgi_plain.application  # type: ignore[attr-defined]


def test_a_callable_of_three_arguments_is_a_handler_factory() -> None:
    """socketserver calls RequestHandlerClass(request, client_address, server): a lambda, a
    function or a callable instance taking those is a handler, not a WSGI application."""
    for name, kind in (("lambda_factory", "base"),  # what it builds is known once it runs
                       ("factory_object", "stream"),  # what its return annotation says
                       ("annotated_factory", "datagram")):
        loaded = load_app(f"tests.apps.shapes:{name}")
        assert loaded.handler is getattr(shapes, name)
        assert loaded.kind == kind, name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no_such_mod:app", "cannot import no_such_mod: ModuleNotFoundError: No module named"),
        ("tests.apps.import_fails:app",
         "cannot import tests.apps.import_fails: KeyError: 'missing setting'"),
        ("tests.apps.shapes:nope", "module tests.apps.shapes has no 'nope'"),
        ("tests.apps.shapes:broken_factory()",
         "broken_factory() failed: RuntimeError: no config"),
        ("tests.apps.shapes:make_nothing()",
         "make_nothing() returned what is an int, neither a socketserver request handler"),
        ("tests.apps.shapes:make_nothing", "not a WSGI callable: it takes no arguments; if it "
         "is a factory, call it: ...:make_nothing()"),
        ("tests.apps.shapes:two_args_too_many", "cannot be called as app(environ, "),
        ("tests.apps.shapes:NotAHandler", "a class, but not a socketserver.BaseRequestHandler"),
        ("workers.echo", "module workers.echo has neither 'application' nor 'app'"),
        ("tests.apps.shapes:asgi_app", "is an ASGI application (async, scope/receive/send); "
         "prefork serves WSGI"),
        ("tests.apps.shapes:asgi_object", "is an ASGI application"),
    ],
)
def test_load_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(AppError) as info:
        load_app(text)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["stream", "http", "wsgi", "base"])
def test_server_class_for_stream_kinds(mode: str, kind: str) -> None:
    for bind in ("127.0.0.1:0", "unix:/tmp/x.sock"):
        cls = server_class_for(mode, parse_bind(bind), kind)  # type: ignore[arg-type]
        assert issubclass(cls, PreforkMixIn) == (mode == "prefork")
        assert issubclass(cls, http.server.HTTPServer) == (kind == "http" and "unix" not in bind)


@pytest.mark.parametrize("mode", list(MODES))
def test_server_class_for_datagram_kinds(mode: str) -> None:
    for kind in ("datagram", "base"):
        server_class_for(mode, parse_bind("udp://127.0.0.1:0"), kind)  # type: ignore[arg-type]
    with pytest.raises(AppError, match="a WSGI application; udp://"):
        server_class_for(mode, parse_bind("udp://127.0.0.1:0"), "wsgi")
    with pytest.raises(AppError, match="datagram handler"):
        server_class_for(mode, parse_bind("127.0.0.1:0"), "datagram")
