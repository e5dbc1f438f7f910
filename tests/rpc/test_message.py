"""RPC messages (RFC 5531): headers read, callers authenticated, refusals and replies written."""

from __future__ import annotations

import struct

import pytest

from prefork.rpc import message as m
from prefork.rpc import xdr
from prefork.rpc.message import AuthSys, Call, OpaqueAuth, Refused, read_call


def test_a_call_with_auth_none() -> None:
    data = m.encode_call(7, 100, 2, 5, b"\0\0\0\1")
    call = read_call(data)
    assert isinstance(call, Call)
    assert (call.xid, call.prog, call.vers, call.proc) == (7, 100, 2, 5)
    assert call.auth is None and call.args == b"\0\0\0\1"
    assert call.args.obj is not None  # a view of the message, not a copy


def test_auth_sys_reaches_the_call() -> None:
    parms = AuthSys(5, "lab-host", 1000, 100, (4, 27))
    call = read_call(m.encode_call(1, 100, 1, 0, cred=m.auth_sys_credential(parms)))
    assert isinstance(call, Call) and call.auth == parms


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (b"\0\0\0\1", "no type"),
    (m.encode_call(1, 1, 1, 0)[:4] + b"\0\0\0\1" + m.encode_call(1, 1, 1, 0)[8:], "a REPLY"),
    (struct.pack(">II", 1, 7) + bytes(40), "an unknown type"),
    (m.encode_call(1, 1, 1, 0)[:20], "header cut short"),
])
def test_dropped(data: bytes, why: str) -> None:
    assert read_call(data) is None, why


def test_rpc_version_other_than_2_gets_rpc_mismatch() -> None:
    result = read_call(m.encode_call(9, 1, 1, 0, rpcvers=3))
    assert isinstance(result, Refused)
    reply = m.read_reply(result.reply)
    assert (reply.xid, reply.stat, reply.detail) == (9, m.MSG_DENIED, m.RPC_MISMATCH)
    assert struct.unpack(">II", reply.body) == (2, 2)


@pytest.mark.parametrize(("cred", "stat"), [
    (OpaqueAuth(m.AUTH_SYS, b"\0\0\0\1"), m.AUTH_BADCRED),  # AUTH_SYS body cut short
    (OpaqueAuth(m.AUTH_SYS, xdr.encode(m.AUTHSYS_PARMS, {
        "stamp": 0, "machinename": "h", "uid": 0, "gid": 0, "gids": []}) + bytes(4)),
     m.AUTH_BADCRED),  # trailing bytes in the credential
    (OpaqueAuth(6, b""), m.AUTH_REJECTEDCRED),  # RPCSEC_GSS: no flavour registered
])
def test_bad_credentials_get_auth_error(cred: OpaqueAuth, stat: int) -> None:
    result = read_call(m.encode_call(4, 1, 1, 0, cred=cred))
    assert isinstance(result, Refused)
    reply = m.read_reply(result.reply)
    assert (reply.stat, reply.detail, bytes(reply.body)) == (
        m.MSG_DENIED, m.AUTH_ERROR, struct.pack(">I", stat))


@pytest.mark.parametrize("length", [401, 0xFFFFFFFF])
def test_a_credential_body_over_400_bytes_is_dropped(length: int) -> None:
    data = bytearray(m.encode_call(4, 1, 1, 0))
    data[28:32] = struct.pack(">I", length)  # the credential's length
    assert read_call(bytes(data) + bytes(404)) is None


def test_another_flavour_through_the_table() -> None:
    def token(cred: OpaqueAuth, verf: OpaqueAuth) -> tuple[str, OpaqueAuth]:
        if cred.body != b"ok\0\0":
            raise m.AuthFailure(m.AUTH_TOOWEAK)
        return "token-user", OpaqueAuth(99, b"sig\0")

    flavours = {**m.FLAVOURS, 99: token}
    call = read_call(m.encode_call(1, 1, 1, 0, cred=OpaqueAuth(99, b"ok\0\0")), flavours)
    assert isinstance(call, Call) and call.auth == "token-user"
    reply = m.read_reply(m.success(1, b"", call.verifier))
    assert reply.detail == m.SUCCESS
    refused = read_call(m.encode_call(1, 1, 1, 0, cred=OpaqueAuth(99, b"no\0\0")), flavours)
    assert isinstance(refused, Refused)
    assert m.read_reply(refused.reply).body == struct.pack(">I", m.AUTH_TOOWEAK)


def test_accepted_replies_on_the_wire() -> None:
    assert m.success(1, b"\0\0\0\5") == struct.pack(">IIIIII", 1, 1, 0, 0, 0, 0) + b"\0\0\0\5"
    assert m.prog_mismatch(2, 1, 3) == struct.pack(">IIIIIIII", 2, 1, 0, 0, 0, 2, 1, 3)
    assert m.auth_error(3, m.AUTH_BADCRED) == struct.pack(">IIIII", 3, 1, 1, 1, 1)
