"""RPC programs as classes: versions and procedures declared once, calls dispatched to them.

A program is a :class:`Program` subclass with a program ``number``; each procedure is a method
marked with :func:`procedure`, which declares its number, the versions it is in and the XDR
types of its argument and result::

    class Calc(Program):
        number = 0x20000099

        @procedure(1, args=xdr.INT, result=xdr.INT, versions=(1, 2))
        def double(self, ctx: Context, value: int) -> int:
            return 2 * value

Procedure 0 (NULL) answers in every version.  :func:`dispatch` runs one call against a set of
programs and returns the whole reply message: SUCCESS with the encoded result, PROG_UNAVAIL,
PROG_MISMATCH with the real lowest and highest versions, PROC_UNAVAIL (also when the method
raises :class:`Unavailable`), GARBAGE_ARGS when the arguments do not decode, SYSTEM_ERR when
the method raises anything else or its result does not encode.  A subclass implements a
declared procedure by overriding its method, without declaring it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import prefork.rpc.message as message
import prefork.rpc.xdr as xdr

log = logging.getLogger("prefork.rpc")
F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__rpc_procedure__"


@dataclass(frozen=True)
class Procedure:
    number: int
    args: xdr.XdrType
    result: xdr.XdrType
    method: str  # the attribute name on the program class ("" for NULL)


@dataclass(frozen=True)
class Context:
    """What a procedure learns about its call besides the argument."""

    call: message.Call
    client_address: Any
    transport: str  # "tcp", "udp" or "unix"

    @property
    def auth(self) -> Any:
        """None (AUTH_NONE), a message.AuthSys (AUTH_SYS), or what another flavour gives."""
        return self.call.auth


def procedure(number: int, args: xdr.XdrType = xdr.VOID, result: xdr.XdrType = xdr.VOID,
              versions: Sequence[int] = (1,)) -> Callable[[F], F]:
    """Mark a method as procedure ``number`` of each of ``versions``."""
    if number == 0:
        raise ValueError("procedure 0 is NULL, answered by every version")

    def mark(func: F) -> F:
        setattr(func, _MARK, (number, args, result, tuple(versions)))
        return func

    return mark


def _declared(cls: type, name: str) -> Any:
    """The procedure mark of attribute ``name``: on the nearest class of the MRO that marks
    it, so a subclass implements a declared procedure by overriding its method undecorated."""
    for klass in cls.__mro__:
        if name in vars(klass):
            mark = getattr(vars(klass)[name], _MARK, None)
            if mark is not None:
                return mark
    return None


class Unavailable(Exception):
    """Raised by a procedure that is declared but not implemented: the caller gets
    PROC_UNAVAIL (what the stubs of ``prefork rpcgen`` raise until a subclass overrides them)."""


def _null(name: str = "") -> Procedure:
    return Procedure(0, xdr.VOID, xdr.VOID, name)


class Program:
    """Base class of a program; see the module docstring."""

    number: ClassVar[int] = 0
    versions: ClassVar[Sequence[int]] = ()  # versions with only NULL may be listed here
    table: ClassVar[Mapping[int, Mapping[int, Procedure]]] = {}
    rpcbind: ClassVar[bool] = True  # registered with rpcbind by the master (rpc/server.py)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[int, dict[int, Procedure]] = {v: {0: _null()} for v in cls.versions}
        for name in dir(cls):
            mark = _declared(cls, name)
            if mark is None:
                continue
            number, args, result, versions = mark
            for vers in versions:
                procs = table.setdefault(vers, {0: _null()})
                if number in procs:
                    raise TypeError(f"{cls.__name__}: procedure {number} of version {vers} "
                                    f"declared twice")
                procs[number] = Procedure(number, args, result, name)
        cls.table = table

    @classmethod
    def version_range(cls) -> tuple[int, int]:
        return min(cls.table), max(cls.table)

    def run(self, proc: Procedure, ctx: Context, arg: Any) -> Any:
        """Call the procedure's method (override to wrap every call, e.g. for metrics)."""
        if not proc.method:
            return None
        return getattr(self, proc.method)(ctx, arg)


def dispatch(programs: Mapping[int, type[Program]], call: message.Call, client_address: Any,
             transport: str) -> bytes:
    """Run ``call`` against ``programs`` (by program number); the whole reply message."""
    xid, verf = call.xid, call.verifier
    program = programs.get(call.prog)
    if program is None or not program.table:
        return message.accepted(xid, message.PROG_UNAVAIL, verifier=verf)
    procs = program.table.get(call.vers)
    if procs is None:
        low, high = program.version_range()
        return message.prog_mismatch(xid, low, high, verf)
    proc = procs.get(call.proc)
    if proc is None:
        return message.accepted(xid, message.PROC_UNAVAIL, verifier=verf)
    try:
        arg = xdr.decode(proc.args, call.args)
    except xdr.XdrError:
        return message.accepted(xid, message.GARBAGE_ARGS, verifier=verf)
    try:
        result = program().run(proc, Context(call, client_address, transport), arg)
        body = xdr.encode(proc.result, result)
    except Unavailable:
        return message.accepted(xid, message.PROC_UNAVAIL, verifier=verf)
    except Exception:
        log.exception("RPC program %d version %d procedure %d failed",
                      call.prog, call.vers, call.proc)
        return message.accepted(xid, message.SYSTEM_ERR, verifier=verf)
    return message.success(xid, body, verf)


def by_number(programs: Sequence[type[Program]]) -> dict[int, type[Program]]:
    table: dict[int, type[Program]] = {}
    for program in programs:
        if program.number in table:
            raise TypeError(f"two programs numbered {program.number}")
        table[program.number] = program
    return table
