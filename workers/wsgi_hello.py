"""A WSGI hello world, the same bytes as workers.http_hello: ``prefork serve
workers.wsgi_hello:app`` (or ``gunicorn workers.wsgi_hello:app``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b"Hello, world!\n"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", HEADERS)
    return [BODY]
