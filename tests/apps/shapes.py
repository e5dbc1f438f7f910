"""APP shapes for tests/test_app_loader.py."""

from __future__ import annotations

import socketserver
from typing import Any

from workers.echo import LineEcho


def make_handler() -> type[socketserver.BaseRequestHandler]:
    return LineEcho


def make_nothing() -> int:
    return 3


def broken_factory() -> Any:
    raise RuntimeError("no config")


def two_args_too_many(environ: Any, start_response: Any, extra: Any) -> Any:
    return []


class NotAHandler:
    pass


class Plain(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


class Datagram(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        pass


class CallableApp:
    def __call__(self, environ: Any, start_response: Any) -> Any:
        return []


app_object = CallableApp()


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI application (what FastAPI and Starlette are): refused."""


class AsgiObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """An ASGI application object."""


asgi_object = AsgiObject()
