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


# Handler factories: any callable socketserver can call with (request, client_address, server).
lambda_factory = lambda request, address, server: LineEcho(request, address, server)  # noqa: E731


def annotated_factory(request: Any, address: Any, server: Any) -> Datagram:
    return Datagram(request, address, server)


class FactoryObject:
    def __call__(self, request: Any, address: Any, server: Any) -> LineEcho:
        return LineEcho(request, address, server)


factory_object = FactoryObject()
