"""XDR, the External Data Representation (RFC 4506): types that encode and decode themselves.

Each XDR type is an object with ``pack(value, out)`` (appending to a ``bytearray``) and
``unpack(src)`` (reading from a :class:`Reader`).  Declare a type once and use it both ways::

    Point = Struct(("x", INT), ("y", INT))
    data = encode(Point, {"x": 1, "y": 2})
    assert decode(Point, data) == {"x": 1, "y": 2}

Decoding reads a ``memoryview`` and never copies the input: opaque data comes back as a
``memoryview`` slice of it.  Every length read from the wire is bounded twice, by the type's
declared maximum and by the bytes that are left (an element takes at least four bytes), so a
forged length cannot make the decoder allocate.  Padding must be zero, and :func:`decode`
refuses trailing bytes.  Every failure is an :class:`XdrError`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

UNBOUNDED = 0xFFFFFFFF  # "<>" in the language: as long as a 32-bit length allows

_I = struct.Struct(">i")
_U = struct.Struct(">I")
_Q = struct.Struct(">q")
_UQ = struct.Struct(">Q")
_F = struct.Struct(">f")
_D = struct.Struct(">d")
_ZEROS = bytes(4)


class XdrError(ValueError):
    """The data does not decode as the type (or a value does not encode)."""


def _pad(length: int) -> int:
    return -length % 4


class Reader:
    """A position in a buffer being decoded; reads never copy the buffer."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data)
        if self.view.format != "B" or self.view.ndim != 1:
            self.view = self.view.cast("B")
        self.pos = 0

    def remaining(self) -> int:
        return len(self.view) - self.pos

    def take(self, count: int) -> memoryview:
        """The next ``count`` bytes, as a slice of the buffer."""
        if count < 0 or count > self.remaining():
            raise XdrError(f"need {count} bytes, {self.remaining()} left")
        chunk = self.view[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def take_padded(self, count: int) -> memoryview:
        """``count`` bytes and their zero padding to a multiple of four."""
        chunk = self.take(count)
        pad = _pad(count)
        if pad and self.take(pad) != _ZEROS[:pad]:
            raise XdrError("non-zero padding")
        return chunk

    def u32(self) -> int:
        value: int = _U.unpack_from(self.take(4))[0]
        return value

    def length(self, maximum: int, unit: int) -> int:
        """A length prefix, at most ``maximum`` and no more than what is left can hold."""
        count = self.u32()
        if count > maximum:
            raise XdrError(f"length {count} over the maximum {maximum}")
        if count * unit > self.remaining():
            raise XdrError(f"length {count} longer than the {self.remaining()} bytes left")
        return count

    def done(self) -> None:
        if self.remaining():
            raise XdrError(f"{self.remaining()} trailing bytes")


class XdrType(Protocol):
    def pack(self, value: Any, out: bytearray) -> None: ...

    def unpack(self, src: Reader) -> Any: ...


def encode(kind: XdrType, value: Any) -> bytes:
    out = bytearray()
    kind.pack(value, out)
    return bytes(out)


def decode(kind: XdrType, data: bytes | bytearray | memoryview) -> Any:
    """``data`` as one ``kind``; trailing bytes are an error."""
    src = Reader(data)
    value = kind.unpack(src)
    src.done()
    return value


class _Number:
    def __init__(self, fmt: struct.Struct, name: str, integral: bool = True) -> None:
        self.fmt, self.name, self.integral = fmt, name, integral

    def pack(self, value: Any, out: bytearray) -> None:
        if self.integral and not isinstance(value, int):
            raise XdrError(f"{self.name} needs an int, not {type(value).__name__}")
        try:
            out += self.fmt.pack(value)
        except struct.error as exc:
            raise XdrError(f"{self.name}: {exc}") from None

    def unpack(self, src: Reader) -> Any:
        return self.fmt.unpack_from(src.take(self.fmt.size))[0]

    def __repr__(self) -> str:
        return self.name.upper()


INT = _Number(_I, "int")
UINT = _Number(_U, "unsigned int")
HYPER = _Number(_Q, "hyper")
UHYPER = _Number(_UQ, "unsigned hyper")
FLOAT = _Number(_F, "float", integral=False)
DOUBLE = _Number(_D, "double", integral=False)


class Void:
    def pack(self, value: Any, out: bytearray) -> None:
        if value is not None:
            raise XdrError("void takes None")

    def unpack(self, src: Reader) -> None:
        return None


VOID = Void()


class Enum:
    """A signed 32-bit integer restricted to the declared values."""

    def __init__(self, values: Sequence[int] | Mapping[str, int]) -> None:
        self.values = frozenset(values.values() if isinstance(values, Mapping) else values)

    def pack(self, value: Any, out: bytearray) -> None:
        if value not in self.values:
            raise XdrError(f"{value!r} is not a value of the enum")
        INT.pack(int(value), out)

    def unpack(self, src: Reader) -> int:
        value: int = INT.unpack(src)
        if value not in self.values:
            raise XdrError(f"{value} is not a value of the enum")
        return value


class Bool:
    def pack(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise XdrError("bool needs True or False")
        out += _I.pack(int(value))

    def unpack(self, src: Reader) -> bool:
        value = INT.unpack(src)
        if value not in (0, 1):
            raise XdrError(f"bool is 0 or 1, not {value}")
        return bool(value)


BOOL = Bool()


class FixedOpaque:
    def __init__(self, size: int) -> None:
        self.size = size

    def pack(self, value: Any, out: bytearray) -> None:
        if len(value) != self.size:
            raise XdrError(f"opaque[{self.size}] given {len(value)} bytes")
        out += value
        out += _ZEROS[:_pad(self.size)]

    def unpack(self, src: Reader) -> memoryview:
        return src.take_padded(self.size)


class Opaque:
    """Variable-length opaque data, at most ``maximum`` bytes; decodes to a memoryview."""

    def __init__(self, maximum: int = UNBOUNDED) -> None:
        self.maximum = maximum

    def pack(self, value: Any, out: bytearray) -> None:
        if len(value) > self.maximum:
            raise XdrError(f"{len(value)} bytes over the maximum {self.maximum}")
        out += _U.pack(len(value))
        out += value
        out += _ZEROS[:_pad(len(value))]

    def unpack(self, src: Reader) -> memoryview:
        return src.take_padded(src.length(self.maximum, 1))


class String:
    """A string of at most ``maximum`` bytes (UTF-8; other bytes kept as surrogate escapes,
    so any data round-trips)."""

    def __init__(self, maximum: int = UNBOUNDED) -> None:
        self.bytes = Opaque(maximum)

    def pack(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str):
            raise XdrError("string needs a str")
        self.bytes.pack(value.encode("utf-8", "surrogateescape"), out)

    def unpack(self, src: Reader) -> str:
        return str(self.bytes.unpack(src), "utf-8", "surrogateescape")


class FixedArray:
    def __init__(self, item: XdrType, size: int) -> None:
        self.item, self.size = item, size

    def pack(self, value: Any, out: bytearray) -> None:
        if len(value) != self.size:
            raise XdrError(f"array[{self.size}] given {len(value)} items")
        for element in value:
            self.item.pack(element, out)

    def unpack(self, src: Reader) -> list[Any]:
        if self.size * 4 > src.remaining() and not isinstance(self.item, Void):
            raise XdrError(f"array[{self.size}] longer than the bytes left")
        return [self.item.unpack(src) for _ in range(self.size)]


class Array:
    """A variable-length array of at most ``maximum`` items."""

    def __init__(self, item: XdrType, maximum: int = UNBOUNDED) -> None:
        self.item, self.maximum = item, maximum

    def pack(self, value: Any, out: bytearray) -> None:
        if len(value) > self.maximum:
            raise XdrError(f"{len(value)} items over the maximum {self.maximum}")
        out += _U.pack(len(value))
        for element in value:
            self.item.pack(element, out)

    def unpack(self, src: Reader) -> list[Any]:
        return [self.item.unpack(src) for _ in range(src.length(self.maximum, 4))]


class Optional:
    """``type *name``: None or a value (a bool, then the value if True)."""

    def __init__(self, item: XdrType) -> None:
        self.item = item

    def pack(self, value: Any, out: bytearray) -> None:
        BOOL.pack(value is not None, out)
        if value is not None:
            self.item.pack(value, out)

    def unpack(self, src: Reader) -> Any:
        return self.item.unpack(src) if BOOL.unpack(src) else None


class Struct:
    """Named fields in order; the value is a dict."""

    def __init__(self, *fields: tuple[str, XdrType]) -> None:
        self.fields = fields

    def pack(self, value: Any, out: bytearray) -> None:
        for name, kind in self.fields:
            try:
                field = value[name]
            except (KeyError, TypeError):
                raise XdrError(f"struct field {name!r} missing") from None
            kind.pack(field, out)

    def unpack(self, src: Reader) -> dict[str, Any]:
        return {name: kind.unpack(src) for name, kind in self.fields}


class Union:
    """A discriminated union; the value is a ``(discriminant, arm value)`` pair.  ``arms`` maps
    each case to its type (VOID for an empty arm); ``default`` is the arm for other cases, or
    None when other cases are an error."""

    def __init__(self, discriminant: XdrType, arms: Mapping[int, XdrType],
                 default: XdrType | None = None) -> None:
        self.discriminant, self.arms, self.default = discriminant, dict(arms), default

    def _arm(self, case: Any) -> XdrType:
        arm = self.arms.get(case, self.default)
        if arm is None:
            raise XdrError(f"union has no arm for {case!r}")
        return arm

    def pack(self, value: Any, out: bytearray) -> None:
        try:
            case, body = value
        except (TypeError, ValueError):
            raise XdrError("union takes a (discriminant, value) pair") from None
        arm = self._arm(case)
        self.discriminant.pack(case, out)
        arm.pack(body, out)

    def unpack(self, src: Reader) -> tuple[Any, Any]:
        case = self.discriminant.unpack(src)
        return case, self._arm(case).unpack(src)
