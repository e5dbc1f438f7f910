"""socketserver request handlers that serve RPC programs over TCP (record marking) and UDP.

Subclass one and list the programs::

    class CalcTCP(RPCStreamHandler):
        programs = (Calc,)

    prefork.PreforkTCPServer(("", 2049), CalcTCP).serve_forever()   # or socketserver's

:class:`RPCStreamHandler` reads records (RFC 5531 section 11: fragments of up to 2**31-1 bytes,
the last one flagged), at most ``max_record`` bytes each (a longer record closes the
connection: nothing can be answered without reading it all), and answers each call in one
fragment; it serves any number of calls per connection.  Under the pool, between records the
connection goes back to the worker's multiplexer (:func:`prefork.hold`); in the stdlib's
servers the handler simply keeps reading.  :class:`RPCDatagramHandler` answers one call per
datagram.  A message that is not a call, or whose header is cut short, gets no reply.
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import prefork.rpc.message as message
from prefork import Ready, hold
from prefork.rpc.drc import DROP, DuplicateCache
from prefork.rpc.program import Program, by_number, dispatch
from prefork.rpc.stats import CallStats

LAST_FRAGMENT = 0x80000000


def answer(programs: Mapping[int, type[Program]], flavours: Mapping[int, message.Flavour],
           data: bytes | bytearray | memoryview, client_address: Any,
           transport: str, stats: CallStats | None = None) -> bytes | None:
    """The reply to one message, or None when it gets none; counted in ``stats``."""
    call = message.read_call(data, flavours)
    if call is None or isinstance(call, message.Refused):
        reply = None if call is None else call.reply
        if stats is not None:
            stats.record(None, str, reply)
        return reply
    reply = dispatch(programs, call, client_address, transport)
    if stats is not None:
        procedure = procedure_of(programs, call.prog, call.vers, call.proc)
        key = None if procedure is None else (call.prog, call.vers, call.proc)
        stats.record(key, lambda: procedure or "", reply)
    return reply


def procedure_of(programs: Mapping[int, type[Program]], prog: int, vers: int,
                 proc: int) -> str | None:
    """``Class.method`` of an existing procedure (``Class.null`` for NULL), else None."""
    program = programs.get(prog)
    found = program.table.get(vers, {}).get(proc) if program is not None else None
    if program is None or found is None:
        return None
    return f"{program.__name__}.{found.method or 'null'}"


class _RPCBase(socketserver.BaseRequestHandler):
    programs: ClassVar[Sequence[type[Program]]] = ()
    flavours: ClassVar[Mapping[int, message.Flavour]] = message.FLAVOURS
    stats: ClassVar[CallStats | None] = None  # counters shared by the pool (rpc/stats.py)
    _tables: ClassVar[dict[type, dict[int, type[Program]]]] = {}

    def program_table(self) -> dict[int, type[Program]]:
        cls = type(self)
        table = _RPCBase._tables.get(cls)
        if table is None:
            table = _RPCBase._tables[cls] = by_number(self.programs)
        return table


class RPCStreamHandler(_RPCBase):
    """RPC over a stream socket (TCP or unix): record marking, many calls per connection."""

    ready_when: ClassVar[Ready] = Ready.DATA  # a record, not an HTTP head, wakes the handler
    max_record: ClassVar[int] = 1 << 20  # bytes in one call record, fragments summed
    timeout: ClassVar[float | None] = 60.0  # seconds a record may take to arrive

    def setup(self) -> None:
        self.buf = bytearray()
        self.transport = "unix" if self.request.family == socket.AF_UNIX else "tcp"

    def handle(self) -> None:
        while self.serve_record():
            if not self.buf and hold(self.request, self):
                return  # the worker's multiplexer has it until the next record starts

    # -- the worker's side of a held connection (prefork.core.keepalive.Resumable) -----------

    def resume(self) -> bool:
        return self.serve_record()

    def buffered(self) -> bytes:
        return bytes(self.buf)

    def close(self) -> None:
        self.buf.clear()

    # -- records -------------------------------------------------------------------------------

    def serve_record(self) -> bool:
        """Read one record and answer it; False when the connection should end."""
        self.request.settimeout(self.timeout)
        try:
            record = self.read_record()
            if record is None:
                return False
            reply = answer(self.program_table(), self.flavours, record,
                           self.client_address, self.transport, self.stats)
            if reply is not None:
                self.request.sendall((LAST_FRAGMENT | len(reply)).to_bytes(4, "big") + reply)
        except OSError:  # reset, timed out: the connection is over
            return False
        return True

    def read_record(self) -> bytearray | None:
        record = bytearray()
        while True:
            head = self.read_exact(4)
            if head is None:
                return None
            word = int.from_bytes(head, "big")
            size = word & ~LAST_FRAGMENT
            if len(record) + size > self.max_record:
                return None  # over the cap: close rather than read it
            fragment = self.read_exact(size)
            if fragment is None:
                return None
            record += fragment
            if word & LAST_FRAGMENT:
                return record

    def read_exact(self, count: int) -> bytes | None:
        while len(self.buf) < count:
            chunk = self.request.recv(max(65536, count - len(self.buf)))
            if not chunk:
                return None
            self.buf += chunk
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data


class RPCDatagramHandler(_RPCBase):
    """RPC over UDP (or a unix datagram socket): one call per datagram.  With a ``cache`` (a
    :class:`~prefork.rpc.drc.DuplicateCache` made at import, before the workers fork), a
    retransmitted call runs once across all the workers: dropped while it runs, answered from
    the cache after."""

    transport: ClassVar[str] = "udp"
    cache: ClassVar[DuplicateCache | None] = None

    def handle(self) -> None:
        data, sock = self.request
        cache = self.cache
        if cache is None:
            reply = self.answer(data)
        else:
            key = cache.key(self.client_address, data)
            verdict = cache.begin(key)
            if verdict == DROP:
                return
            if isinstance(verdict, bytes):
                reply = verdict
            else:
                reply = None
                try:
                    reply = self.answer(data)
                finally:
                    cache.finish(key, reply)  # None (it raised): a retransmission runs again
        if reply is not None:
            sock.sendto(reply, self.client_address)

    def answer(self, data: bytes) -> bytes | None:
        return answer(self.program_table(), self.flavours, data, self.client_address,
                      self.transport, self.stats)
