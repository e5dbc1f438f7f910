"""Sun RPC (ONC RPC, RFC 5531) served by the socketserver classes and the pool.

:mod:`prefork.rpc.xdr` encodes and decodes XDR (RFC 4506), :mod:`prefork.rpc.message` reads
calls and writes replies, :mod:`prefork.rpc.program` declares programs and dispatches calls,
:mod:`prefork.rpc.handlers` serves them over stream and datagram sockets,
:mod:`prefork.rpc.server` makes pools of them, registered with rpcbind by the master
(:mod:`prefork.rpc.rpcbind`) and counted for /metrics (:mod:`prefork.rpc.stats`).
"""

from __future__ import annotations

from prefork.rpc import xdr
from prefork.rpc.handlers import RPCDatagramHandler, RPCStreamHandler
from prefork.rpc.message import AuthFailure, AuthSys
from prefork.rpc.program import Context, Procedure, Program, Unavailable, procedure
from prefork.rpc.server import RPCServerMixIn, RPCTCPServer, RPCUDPServer, make_server

__all__ = [
    "AuthFailure",
    "AuthSys",
    "Context",
    "Procedure",
    "Program",
    "RPCDatagramHandler",
    "RPCServerMixIn",
    "RPCStreamHandler",
    "RPCTCPServer",
    "RPCUDPServer",
    "Unavailable",
    "make_server",
    "procedure",
    "xdr",
]
