"""A test RPC program (number 0x20000099, versions 1 to 3) and its TCP/UDP handlers."""

from __future__ import annotations

import os
from typing import Any

from prefork.rpc import AuthSys, Context, Program, RPCDatagramHandler, RPCStreamHandler, xdr
from prefork.rpc import procedure as proc

PROG = 0x20000099  # 536871065, in the range for private programs
WHO = xdr.Struct(("flavor", xdr.UINT), ("uid", xdr.INT), ("gid", xdr.INT),
                 ("gids", xdr.Array(xdr.UINT, 16)), ("machine", xdr.String(255)))
SHAPE = xdr.Union(xdr.Enum({"CIRCLE": 1, "RECT": 2}), {
    1: xdr.DOUBLE,
    2: xdr.Struct(("w", xdr.DOUBLE), ("h", xdr.DOUBLE)),
})


class Calc(Program):
    number = PROG
    versions = (3,)  # version 3 has only NULL

    @proc(1, args=xdr.INT, result=xdr.INT, versions=(1, 2))
    def double(self, ctx: Context, value: int) -> int:
        return 2 * value

    @proc(2, args=xdr.Opaque(), result=xdr.Opaque())
    def echo(self, ctx: Context, data: memoryview) -> bytes:
        return bytes(data)

    @proc(3, result=WHO)
    def whoami(self, ctx: Context, _: None) -> dict[str, Any]:
        auth = ctx.auth
        if isinstance(auth, AuthSys):
            return {"flavor": 1, "uid": auth.uid, "gid": auth.gid, "gids": list(auth.gids),
                    "machine": auth.machinename}
        return {"flavor": ctx.call.cred.flavor, "uid": -1, "gid": -1, "gids": [],
                "machine": ""}

    @proc(4, args=xdr.INT, result=xdr.INT)
    def boom(self, ctx: Context, value: int) -> int:
        raise RuntimeError("the handler raised")

    @proc(5, args=SHAPE, result=xdr.DOUBLE)
    def area(self, ctx: Context, shape: tuple[int, Any]) -> float:
        kind, body = shape
        return 3.0 * body * body if kind == 1 else float(body["w"] * body["h"])

    @proc(6, result=xdr.INT)
    def pid(self, ctx: Context, _: None) -> int:
        return os.getpid()

    @proc(7, result=xdr.INT)
    def bad_result(self, ctx: Context, _: None) -> str:
        return "not an int"


class CalcTCP(RPCStreamHandler):
    programs = (Calc,)


class CalcUDP(RPCDatagramHandler):
    programs = (Calc,)
