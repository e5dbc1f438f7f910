"""``prefork serve module:Program``: an RPC program class as the APP.

A :class:`prefork.rpc.Program` subclass (hand-written, or made by ``prefork rpcgen``) is served
on every listener of ``-b``: TCP ones with record marking, ``udp://`` ones one call per
datagram with the duplicate request cache shared by the workers.  The master never imports it:
the import probe reports its number, versions and name (:func:`probe_answer`), from which the
master builds its stand-in handlers (:class:`RPCApp`) -- with the shared memory the workers
will use: the cache and the call counters of ``/metrics`` -- and registers the program with
rpcbind (``--rpcbind``, on by default; see prefork.rpc.server).  Each worker (or preload
template) imports the program and serves it through a subclass of each listener's stand-in
(:func:`serve_in_worker`).
"""

from __future__ import annotations

import json
from typing import Any

from prefork.apps.loader import AppError, LoadedApp, resolve_app, served
from prefork.core.sockets import BindSpec
from prefork.rpc.drc import DuplicateCache
from prefork.rpc.handlers import RPCDatagramHandler, RPCStreamHandler
from prefork.rpc.program import Program
from prefork.rpc.server import Announced, RPCServerMixIn, announced

__all__ = ["KIND", "RPCApp", "RPCServerMixIn", "load", "probe_answer", "serve_in_worker"]
from prefork.rpc.stats import CallStats

KIND = "rpc"


def load(text: str) -> type[Program] | LoadedApp:
    """Import the APP ``text``: an RPC program class, or what serves any other APP."""
    spec, obj = resolve_app(text)
    if isinstance(obj, type) and issubclass(obj, Program):
        if not obj.table:
            raise AppError(f"APP {text!r}: program {obj.__name__} has no version")
        return obj
    return served(text, spec, obj)


def probe_answer(program: type[Program]) -> str:
    """What the import probe reports of a program: its kind, then what rpcbind is told."""
    return f"{KIND} " + json.dumps([program.__name__, [list(a[:2]) for a in announced([program])]])


class RPCApp:
    """An RPC program as the master knows it (``name``, and the ``registered`` programs:
    number and versions), with the shared memory its workers use."""

    def __init__(self, name: str, registered: list[Announced]) -> None:
        self.name, self.registered = name, registered
        self.stats = CallStats()
        self.cache = DuplicateCache()
        attrs: dict[str, Any] = {"stats": self.stats}
        self.stream: type[RPCStreamHandler] = type(f"{name}Stream", (RPCStreamHandler,), attrs)
        self.datagram: type[RPCDatagramHandler] = type(
            f"{name}Datagram", (RPCDatagramHandler,), {**attrs, "cache": self.cache})

    @classmethod
    def from_probe(cls, detail: str) -> RPCApp:
        name, registered = json.loads(detail)
        return cls(name, [(prog, tuple(versions), name) for prog, versions in registered])


    @classmethod
    def of(cls, program: type[Program]) -> RPCApp:
        """In the process that imported the program (the stdlib modes): serving it already."""
        app = cls(program.__name__, announced([program]))
        app.stream.programs = app.datagram.programs = (program,)
        return app

    def handler(self, spec: BindSpec) -> type[RPCStreamHandler] | type[RPCDatagramHandler]:
        return self.stream if spec.stream else self.datagram

    def server_attrs(self, rpcbind: bool) -> dict[str, Any]:
        """Class attributes of the prefork server: what to register, the counters."""
        return {"rpc_programs": self.registered, "rpc_stats": self.stats, "rpcbind": rpcbind}



def serve_in_worker(program: type[Program], listening: list[Any]) -> None:
    """In a worker: serve ``program`` on each listener, through a subclass of its stand-in."""
    for server in listening:
        stand_in = server.RequestHandlerClass
        if not (isinstance(stand_in, type)
                and issubclass(stand_in, (RPCStreamHandler, RPCDatagramHandler))):
            raise AppError(f"program {program.__name__}: the listeners were made for another "
                           "kind of APP; restart to serve it")
        server.RequestHandlerClass = type(stand_in.__name__, (stand_in,),
                                          {"programs": (program,)})
