"""RPC messages (RFC 5531): the call header read, the caller authenticated, the replies written.

:func:`read_call` turns one message into a :class:`Call` (whose arguments are still XDR, a
memoryview of the message), or the reply that refuses it (:class:`Refused`: RPC_MISMATCH,
AUTH_ERROR), or None when it gets no reply: not a CALL, or a header (credential and verifier
included) that does not decode.  The reply builders below write every accepted and rejected reply.

Credentials go through a table of flavours (:data:`FLAVOURS`), so a server can add one
(RPCSEC_GSS, say) by passing its own table: each entry takes the credential and the verifier
and returns what the handler gets as ``call.auth`` and the verifier for the reply, or raises
:class:`AuthFailure`.  AUTH_NONE gives None, AUTH_SYS an :class:`AuthSys`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import prefork.rpc.xdr as xdr

RPC_VERSION = 2
CALL, REPLY = 0, 1
MSG_ACCEPTED, MSG_DENIED = 0, 1
SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR = range(6)
RPC_MISMATCH, AUTH_ERROR = 0, 1
AUTH_OK, AUTH_BADCRED, AUTH_REJECTEDCRED, AUTH_BADVERF, AUTH_REJECTEDVERF, AUTH_TOOWEAK = range(6)
AUTH_NONE, AUTH_SYS = 0, 1
MAX_AUTH_BYTES = 400

OPAQUE_AUTH = xdr.Struct(("flavor", xdr.UINT), ("body", xdr.Opaque(MAX_AUTH_BYTES)))
AUTHSYS_PARMS = xdr.Struct(
    ("stamp", xdr.UINT), ("machinename", xdr.String(255)), ("uid", xdr.UINT),
    ("gid", xdr.UINT), ("gids", xdr.Array(xdr.UINT, 16)),
)
_HEADER = struct.Struct(">IIIIII")  # xid, mtype, rpcvers, prog, vers, proc
_NULL_VERF = xdr.encode(OPAQUE_AUTH, {"flavor": AUTH_NONE, "body": b""})


@dataclass(frozen=True)
class OpaqueAuth:
    flavor: int
    body: bytes


@dataclass(frozen=True)
class AuthSys:
    """The caller's AUTH_SYS credential (RFC 5531 appendix A)."""

    stamp: int
    machinename: str
    uid: int
    gid: int
    gids: tuple[int, ...]


class AuthFailure(Exception):
    """Refuse the caller with AUTH_ERROR and this auth_stat."""

    def __init__(self, stat: int) -> None:
        super().__init__(stat)
        self.stat = stat


Flavour = Callable[[OpaqueAuth, OpaqueAuth], "tuple[Any, OpaqueAuth]"]
NULL_VERIFIER = OpaqueAuth(AUTH_NONE, b"")


def auth_none(cred: OpaqueAuth, verf: OpaqueAuth) -> tuple[None, OpaqueAuth]:
    return None, NULL_VERIFIER


def auth_sys(cred: OpaqueAuth, verf: OpaqueAuth) -> tuple[AuthSys, OpaqueAuth]:
    try:
        parms = xdr.decode(AUTHSYS_PARMS, cred.body)
    except xdr.XdrError:
        raise AuthFailure(AUTH_BADCRED) from None
    return AuthSys(parms["stamp"], parms["machinename"], parms["uid"], parms["gid"],
                   tuple(parms["gids"])), NULL_VERIFIER


FLAVOURS: Mapping[int, Flavour] = {AUTH_NONE: auth_none, AUTH_SYS: auth_sys}


@dataclass(frozen=True)
class Call:
    """One decoded call header; ``args`` is the rest of the message (XDR, not yet decoded)."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred: OpaqueAuth
    auth: Any  # what the flavour made of the credential (None, AuthSys, ...)
    verifier: OpaqueAuth  # for the reply
    args: memoryview


@dataclass(frozen=True)
class Refused:
    """A call refused before its program sees it; ``reply`` is the whole reply message."""

    xid: int
    reply: bytes


def read_call(data: bytes | bytearray | memoryview,
              flavours: Mapping[int, Flavour] = FLAVOURS) -> Call | Refused | None:
    view = memoryview(data)
    if len(view) < 8:
        return None  # no xid and type: nobody to answer
    xid, mtype = struct.unpack_from(">II", view)
    if mtype != CALL:
        return None
    if len(view) < 12:
        return None
    rpcvers = struct.unpack_from(">I", view, 8)[0]
    if rpcvers != RPC_VERSION:
        return Refused(xid, rpc_mismatch(xid))
    if len(view) < _HEADER.size:
        return None
    prog, vers, proc = _HEADER.unpack_from(view)[3:]
    src = xdr.Reader(view)
    src.pos = _HEADER.size
    try:
        raw_cred = OPAQUE_AUTH.unpack(src)
        raw_verf = OPAQUE_AUTH.unpack(src)
    except xdr.XdrError:
        return None  # the header does not decode (as in libtirpc's svc_getreq: no reply)
    cred = OpaqueAuth(raw_cred["flavor"], bytes(raw_cred["body"]))
    verf = OpaqueAuth(raw_verf["flavor"], bytes(raw_verf["body"]))
    flavour = flavours.get(cred.flavor)
    if flavour is None:
        return Refused(xid, auth_error(xid, AUTH_REJECTEDCRED))
    try:
        auth, reply_verf = flavour(cred, verf)
    except AuthFailure as exc:
        return Refused(xid, auth_error(xid, exc.stat))
    return Call(xid, prog, vers, proc, cred, auth, reply_verf, view[src.pos:])


def _verf(verifier: OpaqueAuth) -> bytes:
    if verifier == NULL_VERIFIER:
        return _NULL_VERF
    return xdr.encode(OPAQUE_AUTH, {"flavor": verifier.flavor, "body": verifier.body})


def accepted(xid: int, stat: int, body: bytes = b"",
             verifier: OpaqueAuth = NULL_VERIFIER) -> bytes:
    """An accepted reply: ``body`` is the results for SUCCESS, the low/high for PROG_MISMATCH."""
    return struct.pack(">III", xid, REPLY, MSG_ACCEPTED) + _verf(verifier) \
        + struct.pack(">I", stat) + body


def success(xid: int, results: bytes, verifier: OpaqueAuth = NULL_VERIFIER) -> bytes:
    return accepted(xid, SUCCESS, results, verifier)


def prog_mismatch(xid: int, low: int, high: int,
                  verifier: OpaqueAuth = NULL_VERIFIER) -> bytes:
    return accepted(xid, PROG_MISMATCH, struct.pack(">II", low, high), verifier)


def rpc_mismatch(xid: int) -> bytes:
    return struct.pack(">IIIIII", xid, REPLY, MSG_DENIED, RPC_MISMATCH, RPC_VERSION, RPC_VERSION)


def auth_error(xid: int, stat: int) -> bytes:
    return struct.pack(">IIIII", xid, REPLY, MSG_DENIED, AUTH_ERROR, stat)


def encode_call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"",
                cred: OpaqueAuth = NULL_VERIFIER, verf: OpaqueAuth = NULL_VERIFIER,
                rpcvers: int = RPC_VERSION) -> bytes:
    """A CALL message (for clients and tests)."""
    return _HEADER.pack(xid, CALL, rpcvers, prog, vers, proc) + _verf(cred) + _verf(verf) + args


def auth_sys_credential(parms: AuthSys) -> OpaqueAuth:
    body = xdr.encode(AUTHSYS_PARMS, {
        "stamp": parms.stamp, "machinename": parms.machinename, "uid": parms.uid,
        "gid": parms.gid, "gids": list(parms.gids)})
    return OpaqueAuth(AUTH_SYS, body)


@dataclass(frozen=True)
class Reply:
    """A decoded reply (for clients and tests)."""

    xid: int
    stat: int  # MSG_ACCEPTED or MSG_DENIED
    detail: int  # accept_stat, or reject_stat
    body: memoryview  # results, low/high, or the auth_stat


def read_reply(data: bytes | memoryview) -> Reply:
    src = xdr.Reader(data)
    xid, mtype, stat = src.u32(), src.u32(), src.u32()
    if mtype != REPLY:
        raise xdr.XdrError("not a reply")
    if stat == MSG_ACCEPTED:
        OPAQUE_AUTH.unpack(src)
    return Reply(xid, stat, src.u32(), src.take(src.remaining()))
