"""XDR (RFC 4506): each type's wire form, its bounds, padding and trailing-byte rules."""

from __future__ import annotations

import math
import struct

import pytest

from prefork.rpc import xdr
from prefork.rpc.xdr import XdrError, decode, encode


@pytest.mark.parametrize(("kind", "value", "wire"), [
    (xdr.INT, -2, b"\xff\xff\xff\xfe"),
    (xdr.UINT, 0xFFFFFFFF, b"\xff\xff\xff\xff"),
    (xdr.HYPER, -(2**63), b"\x80" + bytes(7)),
    (xdr.UHYPER, 2**64 - 1, b"\xff" * 8),
    (xdr.FLOAT, 1.5, struct.pack(">f", 1.5)),
    (xdr.DOUBLE, -0.25, struct.pack(">d", -0.25)),
    (xdr.BOOL, True, b"\0\0\0\1"),
    (xdr.Enum({"RED": 0, "BLUE": 7}), 7, b"\0\0\0\7"),
    (xdr.FixedOpaque(3), b"abc", b"abc\0"),
    (xdr.Opaque(10), b"hello", b"\0\0\0\5hello\0\0\0"),
    (xdr.Opaque(), b"", b"\0\0\0\0"),
    (xdr.String(8), "sun", b"\0\0\0\3sun\0"),
    (xdr.FixedArray(xdr.INT, 2), [1, 2], b"\0\0\0\1\0\0\0\2"),
    (xdr.Array(xdr.UINT, 5), [3], b"\0\0\0\1\0\0\0\3"),
    (xdr.Optional(xdr.INT), None, b"\0\0\0\0"),
    (xdr.Optional(xdr.INT), 9, b"\0\0\0\1\0\0\0\x09"),
    (xdr.Struct(("a", xdr.INT), ("b", xdr.String())), {"a": 1, "b": "x"},
     b"\0\0\0\1\0\0\0\1x\0\0\0"),
    (xdr.Union(xdr.INT, {1: xdr.INT, 2: xdr.VOID}), (1, 5), b"\0\0\0\1\0\0\0\5"),
    (xdr.Union(xdr.INT, {1: xdr.INT, 2: xdr.VOID}), (2, None), b"\0\0\0\2"),
    (xdr.Union(xdr.UINT, {1: xdr.INT}, default=xdr.String()), (9, "d"),
     b"\0\0\0\x09\0\0\0\1d\0\0\0"),
])
def test_round_trip(kind: xdr.XdrType, value: object, wire: bytes) -> None:
    assert encode(kind, value) == wire
    assert decode(kind, wire) == value
    assert len(wire) % 4 == 0


def test_special_doubles() -> None:
    assert math.isnan(decode(xdr.DOUBLE, encode(xdr.DOUBLE, math.nan)))
    assert decode(xdr.FLOAT, encode(xdr.FLOAT, math.inf)) == math.inf


def test_linked_list_through_optional() -> None:
    node = xdr.Struct(("value", xdr.INT), ("next", xdr.Optional(xdr.VOID)))
    # A recursive type: the optional's item is filled in after the struct exists.
    node.fields = (("value", xdr.INT), ("next", xdr.Optional(node)))
    chain = {"value": 1, "next": {"value": 2, "next": None}}
    assert decode(node, encode(node, chain)) == chain


@pytest.mark.parametrize(("kind", "wire", "why"), [
    (xdr.INT, b"\0\0\0", "need 4 bytes"),
    (xdr.INT, b"\0\0\0\0\0", "trailing"),
    (xdr.BOOL, b"\0\0\0\2", "0 or 1"),
    (xdr.Enum([0, 1]), b"\0\0\0\3", "not a value"),
    (xdr.Opaque(4), b"\0\0\0\5hello\0\0\0", "over the maximum"),
    (xdr.Opaque(), b"\xff\xff\xff\xff", "longer than"),
    (xdr.Opaque(), b"\0\0\0\1a\0\1\0", "non-zero padding"),
    (xdr.FixedOpaque(1), b"a\0\0\1", "non-zero padding"),
    (xdr.String(), b"\0\0\0\2ab", "need 2 bytes"),
    (xdr.Array(xdr.INT), b"\x7f\xff\xff\xff\0\0\0\0", "longer than"),
    (xdr.Array(xdr.INT, 1), b"\0\0\0\2" + bytes(8), "over the maximum"),
    (xdr.FixedArray(xdr.INT, 1000), bytes(8), "longer than"),
    (xdr.Union(xdr.INT, {1: xdr.INT}), b"\0\0\0\2\0\0\0\0", "no arm"),
    (xdr.Optional(xdr.INT), b"\0\0\0\7", "0 or 1"),
])
def test_refused(kind: xdr.XdrType, wire: bytes, why: str) -> None:
    with pytest.raises(XdrError, match=why):
        decode(kind, wire)


@pytest.mark.parametrize(("kind", "value"), [
    (xdr.INT, 2**31), (xdr.UINT, -1), (xdr.INT, "1"), (xdr.BOOL, 1),
    (xdr.Opaque(2), b"abc"), (xdr.FixedOpaque(2), b"a"), (xdr.String(), b"bytes"),
    (xdr.Array(xdr.INT, 1), [1, 2]), (xdr.Struct(("a", xdr.INT)), {}),
    (xdr.Union(xdr.INT, {1: xdr.INT}), (2, 0)), (xdr.Enum([1]), 2), (xdr.VOID, 0),
])
def test_bad_values_do_not_encode(kind: xdr.XdrType, value: object) -> None:
    with pytest.raises(XdrError):
        encode(kind, value)


def test_opaque_decodes_as_a_view_of_the_input() -> None:
    data = bytearray(encode(xdr.Struct(("a", xdr.Opaque()), ("b", xdr.FixedOpaque(2))),
                            {"a": b"xyz", "b": b"pq"}))
    value = decode(xdr.Struct(("a", xdr.Opaque()), ("b", xdr.FixedOpaque(2))),
                   memoryview(data))
    assert isinstance(value["a"], memoryview) and value["a"] == b"xyz"
    assert value["a"].obj is data and value["b"].obj is data  # no copy: slices of the buffer
    data[4] = ord("X")
    assert value["a"] == b"Xyz"


def test_huge_count_of_void_items_is_bounded_by_the_maximum() -> None:
    # Void items take no bytes, so the bytes left cannot bound them: the maximum does.
    with pytest.raises(XdrError, match="over the maximum"):
        decode(xdr.Array(xdr.VOID, 100), b"\0\x10\0\0")
