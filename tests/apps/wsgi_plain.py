"""A WSGI callable without a framework, and a factory returning one: ``prefork serve
tests.apps.wsgi_plain:application`` or ``tests.apps.wsgi_plain:make_app()``.

Routes shared with the Flask and Django apps (tests/integration/test_wsgi_apps.py): ``GET
/hello``, ``POST /echo`` (answers "<length> <sha256>" of the body), anything else 404.  Plus
``/environ`` (the environ's plain values as JSON), ``/stream`` (chunks separated by waits on a
fifo the test writes to), ``/fail`` (raises), ``/mark-input`` and ``/input-marked`` (an
attribute set on one request's ``wsgi.input``, looked for on the next), ``POST /keep-input``
(the body's digest; its ``wsgi.input`` kept) and ``/kept-closed`` (whether every kept one was
closed by the server), ``/clear-fail`` (empties the environ, then raises), ``/sleep?S`` (answers
after S seconds), ``/big?N`` (N bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def digest(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


KEPT: list[Any] = []  # the wsgi.input of each /keep-input request


def application(environ: Environ, start_response: StartResponse) -> Any:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    if path == "/hello" and method in ("GET", "HEAD"):
        body = b"hello\n"
    elif path == "/echo" and method == "POST":
        body = digest(environ["wsgi.input"].read())
    elif path.startswith("/environ"):
        plain = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
        plain["input"] = environ["wsgi.input"].read().decode("latin-1")
        body = json.dumps(plain).encode()
    elif path == "/stream":
        return _stream(environ, start_response)
    elif path == "/fail":
        raise RuntimeError("the app failed on purpose")
    elif path == "/clear-fail":
        environ.clear()
        raise RuntimeError("the app emptied its environ and failed on purpose")
    elif path == "/keep-input" and method == "POST":
        KEPT.append(environ["wsgi.input"])
        body = digest(environ["wsgi.input"].read())
    elif path == "/kept-closed":
        body = b"yes\n" if KEPT and all(kept.closed for kept in KEPT) else b"no\n"
    elif path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
        body = b"slept\n"
    elif path == "/big":  # (QUERY_STRING bytes: more than a socket takes at once)
        body = b"x" * int(environ["QUERY_STRING"])
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/mark-input":  # state an app leaves on wsgi.input: never seen by the next
        environ["wsgi.input"].marked = True
        body = b"marked\n"
    elif path == "/input-marked":
        body = b"yes\n" if getattr(environ["wsgi.input"], "marked", False) else b"no\n"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def _stream(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    """Yield a chunk, then wait for a line on the fifo named by the query string, three times:
    a test sees each chunk arrive while the app is still running."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"chunk 0\n"
    with open(environ["QUERY_STRING"], "rb") as gate:  # waits for the test to open it
        for n in (1, 2):
            gate.readline()
            yield b"chunk %d\n" % n
        gate.readline()
    yield b"end\n"


def make_app() -> Callable[[Environ, StartResponse], Any]:
    """The factory form: ``tests.apps.wsgi_plain:make_app()``."""
    return application
