"""RPC servers for the pool: programs served on TCP and UDP, registered with rpcbind by the
master, counted for ``/metrics``.

::

    server = prefork.rpc.make_server([Calc], port=0, workers=4)   # TCP and UDP, one port
    server.serve_forever()

:class:`RPCServerMixIn` goes before a prefork server class.  It runs in the master only, and
only prefork's own code: at ``announce()`` (the master starts answering for its listeners; the
new master of an upgrade does so once its pool is ready) it registers every version of every
program on every TCP and UDP listener with rpcbind (:mod:`prefork.rpc.rpcbind`); at
``withdraw()`` (the master exits) it removes what it registered.  A master retiring after
USR2 is not asked to withdraw, so it leaves the registrations to the new master, which serves
the same sockets.  A program with ``rpcbind = False`` is not registered; neither is anything
when the server's ``rpcbind`` is False.  A missing rpcbind is one warning, not an error.

Which programs: ``rpc_programs`` -- (number, versions, name) triples, what the ``prefork serve``
master learns from its import probe -- or, when it is None, the ``programs`` of each listener's
handler class.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, ClassVar

from prefork import PreforkTCPServer, PreforkUDPServer
from prefork.core.contract import PoolServer
from prefork.rpc.drc import DuplicateCache
from prefork.rpc.handlers import RPCDatagramHandler, RPCStreamHandler
from prefork.rpc.program import Program
from prefork.rpc.rpcbind import Mapping, Rpcbind, RpcbindError, mappings
from prefork.rpc.stats import CallStats, render

log = logging.getLogger("prefork.master")
Announced = tuple[int, Sequence[int], str]  # program number, versions, name


def announced(programs: Sequence[type[Program]]) -> list[Announced]:
    """What :class:`RPCServerMixIn` registers for ``programs`` (those with ``rpcbind``)."""
    return [(p.number, sorted(p.table), p.__name__) for p in programs if p.rpcbind]


def listeners(servers: Sequence[Any]) -> list[tuple[str, str, int]]:
    """(transport, host, port) of each IP listener among ``servers`` (unix ones have none)."""
    out = []
    for server in servers:
        sock = server.socket
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = sock.getsockname()[:2]
            out.append(("tcp" if sock.type == socket.SOCK_STREAM else "udp", host, port))
    return out


class RPCServerMixIn(PoolServer):
    """Registers the served programs with rpcbind and renders their call counters."""

    rpcbind: bool = True  # register with the host's rpcbind (per program: Program.rpcbind)
    rpc_programs: ClassVar[Sequence[Announced] | None] = None  # None: the handlers' programs
    rpc_stats: ClassVar[CallStats | None] = None  # the handlers' counters, for /metrics
    rpcbind_client: ClassVar[Rpcbind] = Rpcbind()

    _registered: list[tuple[int, Mapping]]

    def registrations(self) -> list[Mapping]:
        programs = self.rpc_programs
        if programs is None:
            programs = []
            for server in self.listening_servers():
                handler = getattr(server, "RequestHandlerClass", None)
                programs.extend(announced(getattr(handler, "programs", ())))
        found = listeners(self.listening_servers())
        unique = {(prog, tuple(versions)) for prog, versions, _ in programs}
        return [m for prog, versions in sorted(unique) for m in mappings(prog, versions, found)]

    def announce(self) -> None:
        super().announce()
        self._registered = []
        if not self.rpcbind:
            return
        owner = str(os.geteuid())
        for entry in self.registrations():
            try:
                version, done = self.rpcbind_client.register(entry, owner)
            except RpcbindError as exc:
                log.warning("master (pid %d) rpcbind: %s; the programs are not registered",
                            os.getpid(), exc)
                return
            if done:
                self._registered.append((version, entry))
            else:
                log.warning("master (pid %d) rpcbind: program %d version %d on %s is "
                            "registered at another address; left as it is", os.getpid(),
                            entry.prog, entry.vers, entry.netid())
        if self._registered:
            log.info("master (pid %d) rpcbind: registered %s", os.getpid(), ", ".join(
                f"{m.prog} v{m.vers} {m.netid()} port {m.port}" for _, m in self._registered))

    def withdraw(self) -> None:
        for version, entry in getattr(self, "_registered", []):
            try:
                self.rpcbind_client.unregister(version, entry, str(os.geteuid()))
            except RpcbindError as exc:
                log.warning("master (pid %d) rpcbind: cannot unregister: %s", os.getpid(), exc)
                break
        self._registered = []
        super().withdraw()

    def metrics_text(self) -> str:
        text = super().metrics_text()
        if self.rpc_stats is None:
            return text
        return text + render(self.rpc_stats)


class RPCTCPServer(RPCServerMixIn, PreforkTCPServer):
    pass


class RPCUDPServer(RPCServerMixIn, PreforkUDPServer):
    pass


def handlers(programs: Sequence[type[Program]], stats: CallStats | None = None,
             cache: DuplicateCache | None = None,
             ) -> tuple[type[RPCStreamHandler], type[RPCDatagramHandler]]:
    """A stream and a datagram handler class serving ``programs``.  Make them in the master,
    before the fork: ``stats`` and ``cache`` are shared memory."""
    attrs: dict[str, Any] = {"programs": tuple(programs), "stats": stats}
    stream = type("RPCStream", (RPCStreamHandler,), attrs)
    datagram = type("RPCDatagram", (RPCDatagramHandler,), {**attrs, "cache": cache})
    return stream, datagram


def make_server(programs: Sequence[type[Program]], host: str = "", port: int = 0,
                udp: bool = True, rpcbind: bool = True, **kwargs: Any) -> RPCTCPServer:
    """A pool serving ``programs`` over TCP -- and UDP on the same port number, with a
    duplicate request cache -- with shared call counters, registered with rpcbind unless
    ``rpcbind`` is False; keywords go to the server (``workers=``).  Port 0 picks one free
    for both."""
    stats = CallStats()
    stream, datagram = handlers(programs, stats, DuplicateCache() if udp else None)
    attrs = {"rpc_stats": stats, "rpcbind": rpcbind}
    tcp_class: type[RPCTCPServer] = type("RPCTCPServer", (RPCTCPServer,), attrs)
    for _ in range(20):  # a port free for TCP may be taken for UDP: pick another
        tcp = tcp_class((host, port), stream, **kwargs)
        if not udp:
            return tcp
        try:
            tcp.add_listener(PreforkUDPServer((host, tcp.server_address[1]), datagram))
            return tcp
        except OSError:
            tcp.server_close()
            if port:
                raise
    raise OSError(f"no port free for both TCP and UDP on {host!r}")
