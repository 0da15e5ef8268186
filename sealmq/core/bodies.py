"""Typed values in bytes: map and stream message bodies, and stored property values.

One encoding for a typed value (a tag byte, then the value), used for the bodies
of map and stream messages (``BodyKind.MAP``, ``BodyKind.STREAM``) and by the
store for application properties, so a value keeps its JMS/AMQP type across
protocols and restarts::

    value  = u8 ValueTag, payload of that tag
    map    = u32 count, (text key, value)*        keys unique, in insertion order
    stream = u32 count, value*
    text   = u32 length, UTF-8 (surrogatepass, so any Python str round-trips)

All integers are big-endian. Tags 0-7 are those the store wrote before the
others existed; tags are never renumbered, and new ones are added at the end.
Values do not nest (JMS map and stream messages hold primitives only).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any, Protocol
from uuid import UUID

from sealmq.core.model import (
    Byte,
    Char,
    Float32,
    Int,
    PropertyValue,
    Short,
    Symbol,
    Timestamp,
)

__all__ = [
    "BodyFormatError",
    "ValueReader",
    "ValueTag",
    "decode_map",
    "decode_stream",
    "encode_map",
    "encode_stream",
    "read_value",
    "write_value",
]


class BodyFormatError(ValueError):
    """Bytes that are not a map or stream body (or a typed value) of this encoding."""


class ValueTag(IntEnum):
    """The type of an encoded value. Never renumber: stored records use these."""

    NULL = 0
    FALSE = 1
    TRUE = 2
    #: JMS long: a plain Python int that fits in 64 bits.
    LONG = 3
    #: A plain int outside 64 bits: u32 length, signed big-endian two's complement.
    BIGINT = 4
    #: JMS double: a plain float.
    DOUBLE = 5
    STRING = 6
    BYTES = 7
    BYTE = 8
    SHORT = 9
    INT = 10
    FLOAT = 11
    #: A Char: as STRING.
    CHAR = 12
    #: An AMQP symbol: as STRING.
    SYMBOL = 13
    #: An AMQP timestamp: i64 milliseconds.
    TIMESTAMP = 14
    #: 16 bytes.
    UUID = 15
    #: A decimal.Decimal: its exact string form, as STRING.
    DECIMAL = 16


class ValueReader(Protocol):
    """What :func:`read_value` needs of a reader over a buffer (the store has its own)."""

    def u8(self) -> int: ...

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]: ...

    def raw(self) -> memoryview: ...

    def text(self) -> str: ...


_B = struct.Struct(">B")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q")
_D = struct.Struct(">d")
_F = struct.Struct(">f")
_BYTE = struct.Struct(">b")
_SHORT = struct.Struct(">h")
_INT = struct.Struct(">i")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_NULL = _B.pack(ValueTag.NULL)
_FALSE = _B.pack(ValueTag.FALSE)
_TRUE = _B.pack(ValueTag.TRUE)
_LONG = _B.pack(ValueTag.LONG)
_BIGINT = _B.pack(ValueTag.BIGINT)
_DOUBLE = _B.pack(ValueTag.DOUBLE)
_STRING = _B.pack(ValueTag.STRING)
_BYTES = _B.pack(ValueTag.BYTES)
_UUID = _B.pack(ValueTag.UUID)
_DECIMAL = _B.pack(ValueTag.DECIMAL)
#: Tagged subclasses of int and float: their tag and the struct of their payload.
_FIXED: dict[type, tuple[bytes, struct.Struct]] = {
    Byte: (_B.pack(ValueTag.BYTE), _BYTE),
    Short: (_B.pack(ValueTag.SHORT), _SHORT),
    Int: (_B.pack(ValueTag.INT), _INT),
    Timestamp: (_B.pack(ValueTag.TIMESTAMP), _Q),
    Float32: (_B.pack(ValueTag.FLOAT), _F),
}
#: Tagged subclasses of str, written as STRING is.
_TEXTS: dict[type, bytes] = {
    Char: _B.pack(ValueTag.CHAR),
    Symbol: _B.pack(ValueTag.SYMBOL),
}


def _text(parts: list[bytes], s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")
    parts.append(_U32.pack(len(b)))
    parts.append(b)


def _is_decimal(value: object) -> bool:
    """``value`` is a ``decimal.Decimal``; no Decimal exists before ``decimal`` is imported."""
    module = sys.modules.get("decimal")
    return module is not None and isinstance(value, module.Decimal)


def write_value(parts: list[bytes], value: PropertyValue) -> None:
    """Append ``value``'s encoding to ``parts``.

    Raises ``TypeError`` for a value of no known type (and ``struct.error`` or
    ``OverflowError`` for one out of its type's range).
    """
    t = type(value)
    # Python's own types first: what STOMP and MQTT properties are.
    if t is str:
        parts.append(_STRING)
        _text(parts, value)  # type: ignore[arg-type]
    elif t is int:
        if _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            parts.append(_LONG)
            parts.append(_Q.pack(value))
        else:
            n = value.bit_length() // 8 + 1  # type: ignore[union-attr]
            parts.append(_BIGINT)
            parts.append(_U32.pack(n))
            parts.append(value.to_bytes(n, "big", signed=True))  # type: ignore[union-attr]
    elif t is bool:
        parts.append(_TRUE if value else _FALSE)
    elif value is None:
        parts.append(_NULL)
    elif t is float:
        parts.append(_DOUBLE)
        parts.append(_D.pack(value))
    elif t is bytes:
        parts.append(_BYTES)
        parts.append(_U32.pack(len(value)))  # type: ignore[arg-type]
        parts.append(value)  # type: ignore[arg-type]
    elif t in _FIXED:
        tag, s = _FIXED[t]
        parts.append(tag)
        parts.append(s.pack(value))
    elif t in _TEXTS:
        parts.append(_TEXTS[t])
        _text(parts, value)  # type: ignore[arg-type]
    elif isinstance(value, UUID):
        parts.append(_UUID)
        parts.append(value.bytes)
    elif _is_decimal(value):
        parts.append(_DECIMAL)
        _text(parts, str(value))
    elif isinstance(value, bool):
        parts.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        write_value(parts, int(value))
    elif isinstance(value, float):
        write_value(parts, float(value))
    elif isinstance(value, str):
        write_value(parts, str(value))
    elif isinstance(value, bytes | bytearray | memoryview):
        write_value(parts, bytes(value))
    else:
        raise TypeError(f"a value of type {t.__name__} has no encoding")


def read_value(r: ValueReader) -> PropertyValue:
    """The next value of ``r``; ``ValueError`` (or the reader's own error) if malformed."""
    tag = r.u8()
    if tag == ValueTag.STRING:
        return r.text()
    if tag == ValueTag.LONG:
        i: int = r.unpack(_Q)[0]
        return i
    if tag == ValueTag.TRUE:
        return True
    if tag == ValueTag.FALSE:
        return False
    if tag == ValueTag.NULL:
        return None
    if tag == ValueTag.DOUBLE:
        f: float = r.unpack(_D)[0]
        return f
    if tag == ValueTag.BYTES:
        return bytes(r.raw())
    if tag == ValueTag.BIGINT:
        return int.from_bytes(r.raw(), "big", signed=True)
    if tag == ValueTag.BYTE:
        return Byte(r.unpack(_BYTE)[0])
    if tag == ValueTag.SHORT:
        return Short(r.unpack(_SHORT)[0])
    if tag == ValueTag.INT:
        return Int(r.unpack(_INT)[0])
    if tag == ValueTag.FLOAT:
        return Float32(r.unpack(_F)[0])
    if tag == ValueTag.CHAR:
        return Char(r.text())
    if tag == ValueTag.SYMBOL:
        return Symbol(r.text())
    if tag == ValueTag.TIMESTAMP:
        return Timestamp(r.unpack(_Q)[0])
    if tag == ValueTag.UUID:
        raw = r.unpack(_UUID_BYTES)[0]
        return UUID(bytes=raw)
    if tag == ValueTag.DECIMAL:
        import decimal  # only AMQP decimals need it: not resident otherwise

        try:
            return decimal.Decimal(r.text())
        except decimal.InvalidOperation:
            raise BodyFormatError("malformed decimal value") from None
    raise BodyFormatError(f"unknown value tag {tag}")


_UUID_BYTES = struct.Struct(">16s")


class _Reader:
    """A :class:`ValueReader` over one body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.buf = memoryview(data)
        self.pos = 0
        self.end = len(self.buf)

    def unpack(self, s: struct.Struct) -> tuple[Any, ...]:
        pos = self.pos
        if pos + s.size > self.end:
            raise BodyFormatError("truncated body")
        self.pos = pos + s.size
        return s.unpack_from(self.buf, pos)

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise BodyFormatError("truncated body")
        self.pos = pos + 1
        return self.buf[pos]

    def raw(self) -> memoryview:
        (n,) = self.unpack(_U32)
        pos = self.pos
        if pos + n > self.end:
            raise BodyFormatError("truncated body")
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def text(self) -> str:
        try:
            return str(self.raw(), "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise BodyFormatError("malformed text") from None


def _encoded(parts: list[bytes]) -> bytes:
    return b"".join(parts)


def encode_map(entries: Mapping[str, PropertyValue]) -> bytes:
    """A map message's body (``BodyKind.MAP``); ``TypeError`` for a value of no known type."""
    parts = [_U32.pack(len(entries))]
    for key, value in entries.items():
        _text(parts, key)
        write_value(parts, value)
    return _encoded(parts)


def decode_map(body: bytes | memoryview) -> dict[str, PropertyValue]:
    """A map body's entries; :class:`BodyFormatError` if ``body`` is not one."""
    r = _Reader(body)
    try:
        (count,) = r.unpack(_U32)
        out: dict[str, PropertyValue] = {}
        for _ in range(count):
            key = r.text()
            if key in out:
                raise BodyFormatError(f"key {key!r} twice in a map body")
            out[key] = read_value(r)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, BodyFormatError):
            raise
        raise BodyFormatError(f"malformed map body ({type(exc).__name__})") from None
    if r.pos != r.end:
        raise BodyFormatError("bytes after the map body")
    return out


def encode_stream(values: Iterable[PropertyValue]) -> bytes:
    """A stream message's body (``BodyKind.STREAM``)."""
    parts: list[bytes] = [b""]
    count = 0
    for value in values:
        write_value(parts, value)
        count += 1
    parts[0] = _U32.pack(count)
    return _encoded(parts)


def decode_stream(body: bytes | memoryview) -> list[PropertyValue]:
    """A stream body's values; :class:`BodyFormatError` if ``body`` is not one."""
    r = _Reader(body)
    try:
        (count,) = r.unpack(_U32)
        # Each value takes at least its tag byte: a count past that is a lie.
        if count > r.end - r.pos:
            raise BodyFormatError("stream body count exceeds its length")
        out = [read_value(r) for _ in range(count)]
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, BodyFormatError):
            raise
        raise BodyFormatError(f"malformed stream body ({type(exc).__name__})") from None
    if r.pos != r.end:
        raise BodyFormatError("bytes after the stream body")
    return out
