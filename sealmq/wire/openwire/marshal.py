"""The generic marshaller over ``schema.SCHEMAS`` (loose and tight encoding), Java's
modified UTF-8, and ActiveMQ's primitive maps (message properties, map and stream
bodies).

Everything is big-endian. A malformed input raises :class:`OpenWireError`; nothing
else escapes.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sealmq.wire.openwire.errors import OpenWireError
from sealmq.wire.openwire.schema import SCHEMAS, Kind, Type, name_of

__all__ = [
    "MAGIC",
    "Structure",
    "Throwable",
    "decode_primitive_map",
    "decode_stream",
    "encode_primitive_map",
    "encode_stream",
    "java_utf",
    "read_java_utf",
    "read_structure",
    "read_tight_structure",
    "write_structure",
    "write_tight_structure",
]

MAGIC = b"ActiveMQ"

_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
#: Deepest nesting of structures accepted (a message in a dispatch holds a message id
#: holding a producer id: 4 levels; ActiveMQ's own structures never pass 6).
MAX_DEPTH = 16
_SUPPLEMENTARY = re.compile("[\U00010000-\U0010ffff]")


class Structure:
    """One OpenWire data structure: its type code and its fields by schema name.

    A field not set reads as None (absent objects, strings) or its zero value when
    it is written; ``s.field`` reads one, ``Structure(Type.X, field=...)`` makes one.
    """

    __slots__ = ("fields", "type")

    def __init__(self, type_code: int, **fields: Any) -> None:
        self.type = type_code
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.fields.get(name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Structure):
            return NotImplemented
        return self.type == other.type and _normal(self) == _normal(other)

    def __hash__(self) -> int:
        return hash((self.type, tuple(sorted((k, repr(v)) for k, v in _normal(self).items()))))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{name_of(self.type)}({inner})"


def _normal(s: Structure) -> dict[str, Any]:
    return {k: v for k, v in s.fields.items() if v not in (None, 0, False, b"", ())}


@dataclass(frozen=True, slots=True)
class Throwable:
    """A Java exception as OpenWire carries it (class name and message; no stack here)."""

    class_name: str
    message: str | None
    cause: Throwable | None = None


# ----------------------------------------------------------------- modified UTF-8


def _split_supplementary(match: re.Match[str]) -> str:
    code = ord(match.group()) - 0x10000
    return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))


def java_utf(text: str) -> bytes:
    """``text`` in Java's modified UTF-8 (NUL as two bytes, supplementary characters as
    two three-byte surrogates), without a length."""
    if text.isascii() and "\x00" not in text:
        return text.encode()
    if _SUPPLEMENTARY.search(text):
        text = _SUPPLEMENTARY.sub(_split_supplementary, text)
    return text.encode("utf-8", "surrogatepass").replace(b"\x00", b"\xc0\x80")


def read_java_utf(data: bytes | memoryview) -> str:
    """Decode Java's modified UTF-8; :class:`OpenWireError` if it is not."""
    raw = bytes(data)
    try:
        if raw.isascii():
            return raw.decode()
        text = raw.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")
        return text
    except UnicodeError:
        raise OpenWireError("a string is not valid modified UTF-8") from None


# ----------------------------------------------------------------- reading


class _Reader:
    __slots__ = ("data", "pos", "stack_trace")

    def __init__(self, data: bytes | memoryview, stack_trace: bool) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.stack_trace = stack_trace

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise OpenWireError("a command ends before its fields do")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise OpenWireError("a command ends before its fields do")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def bool(self) -> bool:
        return self.byte() != 0

    def i8(self) -> int:
        value = self.byte()
        return value - 256 if value > 127 else value

    def i16(self) -> int:
        return int(_I16.unpack(self.take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self.take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self.take(8))[0])

    def utf(self) -> str:
        (length,) = _U16.unpack(self.take(2))
        return read_java_utf(self.take(length))

    def string(self) -> str | None:
        return self.utf() if self.bool() else None

    def blob(self) -> bytes | None:
        if not self.bool():
            return None
        return bytes(self.take(self.i32()))

    def throwable(self, depth: int) -> Throwable | None:
        if not self.bool():
            return None
        if depth > MAX_DEPTH:
            raise OpenWireError("exceptions nest too deep")
        class_name = self.string() or ""
        message = self.string()
        if self.stack_trace:
            for _ in range(self.i16()):
                self.string()
                self.string()
                self.string()
                self.i32()
            cause = self.throwable(depth + 1)
        else:
            cause = None
        return Throwable(class_name, message, cause)

    def nested(self, depth: int) -> Structure | None:
        if not self.bool():
            return None
        return self.structure(self.byte(), depth + 1)

    def structure(self, type_code: int, depth: int) -> Structure:
        if depth > MAX_DEPTH:
            raise OpenWireError("data structures nest too deep")
        schema = SCHEMAS.get(type_code)
        if schema is None:
            raise OpenWireError(f"unknown data structure type {type_code}")
        fields: dict[str, Any] = {}
        for name, kind in schema:
            if kind is Kind.BOOL:
                value: Any = self.bool()
            elif kind is Kind.INT:
                value = self.i32()
            elif kind is Kind.LONG:
                value = self.i64()
            elif kind is Kind.STRING:
                value = self.string()
            elif kind is Kind.OBJECT:
                value = self.nested(depth)
            elif kind is Kind.BYTE:
                value = self.i8()
            elif kind is Kind.BYTES:
                value = self.blob()
            elif kind is Kind.OBJECTS:
                value = None
                if self.bool():
                    count = self.i16()
                    if count < 0:
                        raise OpenWireError("a negative array length")
                    items = []
                    for _ in range(count):
                        item = self.nested(depth)
                        if item is not None:
                            items.append(item)
                    value = tuple(items)
            elif kind is Kind.THROWABLE:
                value = self.throwable(depth)
            elif kind is Kind.SHORT:
                value = self.i16()
            else:  # MAGIC
                value = bytes(self.take(8))
            fields[name] = value
        return Structure(type_code, **fields)


def read_structure(data: bytes | memoryview, *, stack_trace: bool = False) -> Structure:
    """One command (type byte, then its fields) from ``data``, which it must fill."""
    reader = _Reader(data, stack_trace)
    type_code = reader.byte()
    result = reader.structure(type_code, 0)
    if reader.pos != len(reader.data):
        raise OpenWireError(f"{name_of(type_code)} is followed by {len(data) - reader.pos} bytes")
    return result


# ----------------------------------------------------------------- writing


def _utf(out: list[bytes], text: str) -> None:
    raw = java_utf(text)
    if len(raw) > 0xFFFF:
        raise ValueError("a string over 65535 bytes in modified UTF-8")
    out.append(_U16.pack(len(raw)))
    out.append(raw)


def _write_throwable(out: list[bytes], value: Throwable | None, stack_trace: bool) -> None:
    if value is None:
        out.append(b"\x00")
        return
    out.append(b"\x01")
    for text in (value.class_name, value.message):
        if text is None:
            out.append(b"\x00")
        else:
            out.append(b"\x01")
            _utf(out, text)
    if stack_trace:
        out.append(b"\x00\x00")  # no stack trace elements
        _write_throwable(out, value.cause, stack_trace)


def _write(out: list[bytes], s: Structure, stack_trace: bool) -> None:
    schema = SCHEMAS.get(s.type)
    if schema is None:
        raise ValueError(f"no schema for type {s.type}")
    fields = s.fields
    for name, kind in schema:
        value = fields.get(name)
        if kind is Kind.BOOL:
            out.append(b"\x01" if value else b"\x00")
        elif kind is Kind.INT:
            out.append(_I32.pack(value or 0))
        elif kind is Kind.LONG:
            out.append(_I64.pack(value or 0))
        elif kind is Kind.STRING:
            if value is None:
                out.append(b"\x00")
            else:
                out.append(b"\x01")
                _utf(out, value)
        elif kind is Kind.OBJECT:
            if value is None:
                out.append(b"\x00")
            else:
                out.append(bytes((1, value.type)))
                _write(out, value, stack_trace)
        elif kind is Kind.BYTE:
            out.append(struct.pack(">b", value or 0))
        elif kind is Kind.BYTES:
            if value is None:
                out.append(b"\x00")
            else:
                out.append(b"\x01" + _I32.pack(len(value)))
                out.append(bytes(value))
        elif kind is Kind.OBJECTS:
            if value is None:
                out.append(b"\x00")
            else:
                out.append(b"\x01" + _I16.pack(len(value)))
                for item in value:
                    out.append(bytes((1, item.type)))
                    _write(out, item, stack_trace)
        elif kind is Kind.THROWABLE:
            _write_throwable(out, value, stack_trace)
        elif kind is Kind.SHORT:
            out.append(_I16.pack(value or 0))
        else:  # MAGIC
            out.append(value or MAGIC)


def write_structure(s: Structure, *, stack_trace: bool = False) -> bytes:
    """``s`` as a command: its type byte, then its fields (no size prefix)."""
    out: list[bytes] = [bytes((s.type,))]
    _write(out, s, stack_trace)
    return b"".join(out)


# ----------------------------------------------------------------- tight encoding
#
# Tight encoding puts every boolean of a command (boolean fields, "present" flags,
# which of four widths a long takes, whether a string is ASCII) into one bit stream
# written after the type byte, then the rest of the data in field order.

#: Types ActiveMQ marshals "marshall aware": nested, they carry one more boolean
#: (whether a cached marshalled form follows; this codec never sends one).
_MARSHALL_AWARE = frozenset((Type.WIREFORMAT_INFO, *range(23, 30)))


#: Each byte's eight bits, low to high, as ActiveMQ's BooleanStream reads them.
_BYTE_BITS = tuple(tuple(bool(b >> i & 1) for i in range(8)) for b in range(256))


class _Bits:
    """ActiveMQ's BooleanStream being read: ``read()`` is the next bit (each byte's bits
    low to high); past the end it raises StopIteration, which the reader reports."""

    __slots__ = ("read",)

    def __init__(self, data: bytes) -> None:
        self.read = itertools.chain.from_iterable(_BYTE_BITS[b] for b in data).__next__


def _bits_bytes(bits: list[bool]) -> bytes:
    count = (len(bits) + 7) // 8
    data = bytearray(count)
    for i, bit in enumerate(bits):
        if bit:
            data[i >> 3] |= 1 << (i & 7)
    if count < 64:
        head = bytes((count,))
    elif count < 256:
        head = bytes((0xC0, count))
    else:
        head = b"\x80" + _I16.pack(count)
    return head + bytes(data)


class _TightReader(_Reader):
    __slots__ = ("bits",)

    def __init__(self, data: bytes | memoryview, stack_trace: bool) -> None:
        super().__init__(data, stack_trace)
        self.bits = _Bits(b"")

    def read_bits(self) -> None:
        count = self.byte()
        if count == 0xC0:
            count = self.byte()
        elif count == 0x80:
            (count,) = _U16.unpack(self.take(2))
        self.bits = _Bits(bytes(self.take(count)))

    def tight_long(self) -> int:
        bits = self.bits
        if bits.read():
            if bits.read():
                return self.i64()
            return int(_I32.unpack(self.take(4))[0]) & 0xFFFFFFFF
        if bits.read():
            return int(_U16.unpack(self.take(2))[0])
        return 0

    def tight_string(self) -> str | None:
        bits = self.bits
        if not bits.read():
            return None
        bits.read()  # ASCII or not: both are a u16 length and the bytes
        return self.utf()

    def tight_throwable(self, depth: int) -> Throwable | None:
        if not self.bits.read():
            return None
        if depth > MAX_DEPTH:
            raise OpenWireError("exceptions nest too deep")
        class_name = self.tight_string() or ""
        message = self.tight_string()
        cause = None
        if self.stack_trace:
            for _ in range(self.i16()):
                self.tight_string()
                self.tight_string()
                self.tight_string()
                self.i32()
            cause = self.tight_throwable(depth + 1)
        return Throwable(class_name, message, cause)

    def tight_nested(self, depth: int) -> Structure | None:
        if not self.bits.read():
            return None
        type_code = self.byte()
        if type_code in _MARSHALL_AWARE and self.bits.read():
            raise OpenWireError("a cached marshalled form was sent; the cache is off")
        return self.tight_structure(type_code, depth + 1)

    def tight_structure(self, type_code: int, depth: int) -> Structure:
        if depth > MAX_DEPTH:
            raise OpenWireError("data structures nest too deep")
        read = _TIGHT_READERS.get(type_code)
        if read is None:
            raise OpenWireError(f"unknown data structure type {type_code}")
        structure = Structure.__new__(Structure)
        structure.type = type_code
        structure.fields = read(self, self.bits.read, depth)
        return structure

    def tight_bytes(self) -> bytes | None:
        return bytes(self.take(self.i32())) if self.bits.read() else None

    def tight_objects(self, depth: int) -> tuple[Structure, ...] | None:
        if not self.bits.read():
            return None
        count = self.i16()
        if count < 0:
            raise OpenWireError("a negative array length")
        items = []
        for _ in range(count):
            item = self.tight_nested(depth)
            if item is not None:
                items.append(item)
        return tuple(items)


#: How the tight reader reads one field of each kind: an expression of ``r`` (the
#: reader), ``bit`` (its boolean stream's next bit) and ``depth``.
_TIGHT_FIELD: dict[Kind, str] = {
    Kind.BOOL: "bit()",
    Kind.INT: "r.i32()",
    Kind.LONG: "r.tight_long()",
    Kind.STRING: "r.tight_string()",
    Kind.OBJECT: "r.tight_nested(depth)",
    Kind.BYTE: "r.i8()",
    Kind.BYTES: "r.tight_bytes()",
    Kind.OBJECTS: "r.tight_objects(depth)",
    Kind.THROWABLE: "r.tight_throwable(depth)",
    Kind.SHORT: "r.i16()",
    Kind.MAGIC: "bytes(r.take(8))",
}


def _compile_tight_reader(
    schema: tuple[tuple[str, Kind], ...],
) -> Callable[[_TightReader, Callable[[], bool], int], dict[str, Any]]:
    """One straight-line function reading ``schema``'s fields in order into a dict,
    as ``dataclasses`` writes its ``__init__``: a loop over the fields with a test of
    each one's kind cost more than the rest of decoding a message."""
    lines = ["def read(r, bit, depth):", "    return {"]
    lines += [f"        {name!r}: {_TIGHT_FIELD[kind]}," for name, kind in schema]
    lines.append("    }")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    reader: Callable[[_TightReader, Callable[[], bool], int], dict[str, Any]] = namespace["read"]
    return reader


_TIGHT_READERS = {code: _compile_tight_reader(schema) for code, schema in SCHEMAS.items()}


def read_tight_structure(data: bytes | memoryview, *, stack_trace: bool = False) -> Structure:
    """One tightly encoded command (type byte, boolean stream, data) from ``data``."""
    reader = _TightReader(data, stack_trace)
    type_code = reader.byte()
    reader.read_bits()
    try:
        result = reader.tight_structure(type_code, 0)
    except StopIteration:
        raise OpenWireError("a command's boolean stream ends early") from None
    if reader.pos != len(reader.data):
        raise OpenWireError(f"{name_of(type_code)} is followed by {len(data) - reader.pos} bytes")
    return result


def _tight_long(bits: list[bool], out: list[bytes], value: int) -> None:
    if value == 0:
        bits += (False, False)
    elif value & ~0xFFFF == 0:
        bits += (False, True)
        out.append(_U16.pack(value))
    elif value & ~0xFFFFFFFF == 0:
        bits += (True, False)
        out.append(struct.pack(">I", value))
    else:
        bits += (True, True)
        out.append(_I64.pack(value))


def _tight_string(bits: list[bool], out: list[bytes], value: str | None) -> None:
    if value is None:
        bits.append(False)
        return
    bits += (True, value.isascii() and "\x00" not in value)
    _utf(out, value)


def _tight_throwable(
    bits: list[bool], out: list[bytes], value: Throwable | None, stack_trace: bool
) -> None:
    if value is None:
        bits.append(False)
        return
    bits.append(True)
    _tight_string(bits, out, value.class_name)
    _tight_string(bits, out, value.message)
    if stack_trace:
        out.append(b"\x00\x00")
        _tight_throwable(bits, out, value.cause, stack_trace)


def _tight_nested(
    bits: list[bool], out: list[bytes], value: Structure | None, stack_trace: bool
) -> None:
    if value is None:
        bits.append(False)
        return
    bits.append(True)
    if value.type in _MARSHALL_AWARE:
        bits.append(False)  # no cached marshalled form
    out.append(bytes((value.type,)))
    _tight_write(bits, out, value, stack_trace)


def _tight_write(bits: list[bool], out: list[bytes], s: Structure, stack_trace: bool) -> None:
    write = _TIGHT_WRITERS.get(s.type)
    if write is None:
        raise ValueError(f"no schema for type {s.type}")
    write(bits, out, s.fields, stack_trace)


def _tight_bytes(bits: list[bool], out: list[bytes], value: bytes | None) -> None:
    bits.append(value is not None)
    if value is not None:
        out.append(_I32.pack(len(value)))
        out.append(bytes(value))


def _tight_objects(
    bits: list[bool], out: list[bytes], value: tuple[Structure, ...] | None, stack_trace: bool
) -> None:
    bits.append(value is not None)
    if value is not None:
        out.append(_I16.pack(len(value)))
        for item in value:
            _tight_nested(bits, out, item, stack_trace)


#: How the tight writer writes one field of each kind: a statement of ``bits``,
#: ``out``, ``v`` (the field's value) and ``stack_trace``.
_TIGHT_WRITE_FIELD: dict[Kind, str] = {
    Kind.BOOL: "bits.append(bool(v))",
    Kind.INT: "out.append(i32(v or 0))",
    Kind.LONG: "tight_long(bits, out, v or 0)",
    Kind.STRING: "tight_string(bits, out, v)",
    Kind.OBJECT: "tight_nested(bits, out, v, stack_trace)",
    Kind.BYTE: "out.append(i8(v or 0))",
    Kind.BYTES: "tight_bytes(bits, out, v)",
    Kind.OBJECTS: "tight_objects(bits, out, v, stack_trace)",
    Kind.THROWABLE: "tight_throwable(bits, out, v, stack_trace)",
    Kind.SHORT: "out.append(i16(v or 0))",
    Kind.MAGIC: "out.append(v or MAGIC)",
}


def _compile_tight_writer(
    schema: tuple[tuple[str, Kind], ...],
) -> Callable[[list[bool], list[bytes], dict[str, Any], bool], None]:
    """The writing twin of :func:`_compile_tight_reader`."""
    lines = ["def write(bits, out, fields, stack_trace):", "    get = fields.get"]
    for name, kind in schema:
        lines.append(f"    v = get({name!r})")
        lines.append(f"    {_TIGHT_WRITE_FIELD[kind]}")
    lines.append("    return None")
    namespace: dict[str, Any] = {
        "i32": _I32.pack,
        "i16": _I16.pack,
        "i8": struct.Struct(">b").pack,
        "tight_long": _tight_long,
        "tight_string": _tight_string,
        "tight_nested": _tight_nested,
        "tight_bytes": _tight_bytes,
        "tight_objects": _tight_objects,
        "tight_throwable": _tight_throwable,
        "MAGIC": MAGIC,
    }
    exec("\n".join(lines), namespace)
    writer: Callable[[list[bool], list[bytes], dict[str, Any], bool], None] = namespace["write"]
    return writer


_TIGHT_WRITERS = {code: _compile_tight_writer(schema) for code, schema in SCHEMAS.items()}


def write_tight_structure(s: Structure, *, stack_trace: bool = False) -> bytes:
    """``s`` tightly encoded: its type byte, the boolean stream, then the data."""
    bits: list[bool] = []
    out: list[bytes] = []
    _tight_write(bits, out, s, stack_trace)
    return bytes((s.type,)) + _bits_bytes(bits) + b"".join(out)


# ----------------------------------------------------------------- primitive maps

#: ActiveMQ's ``MarshallingSupport`` value tags.
_NULL, _BOOL, _BYTE, _CHAR, _SHORT, _INT, _LONG, _DOUBLE, _FLOAT, _STRING = range(10)
_BYTES, _MAP, _LIST, _BIG_STRING = 10, 11, 12, 13
#: Strings at least this long go as BIG_STRING (u32 length), as ActiveMQ writes them.
_BIG_STRING_CHARS = 8191


class Typed:
    """A value whose Java type a plain Python value would lose: (tag, value)."""

    __slots__ = ("tag", "value")

    BYTE, CHAR, SHORT, INT, FLOAT = _BYTE, _CHAR, _SHORT, _INT, _FLOAT

    def __init__(self, tag: int, value: Any) -> None:
        self.tag = tag
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Typed) and (self.tag, self.value) == (other.tag, other.value)

    def __hash__(self) -> int:
        return hash((self.tag, self.value))

    def __repr__(self) -> str:
        return f"Typed({self.tag}, {self.value!r})"


def _write_value(out: list[bytes], value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("values nest too deep")
    if value is None:
        out.append(b"\x00")
    elif isinstance(value, Typed):
        tag, raw = value.tag, value.value
        if tag == _BYTE:
            out.append(struct.pack(">Bb", _BYTE, raw))
        elif tag == _CHAR:
            out.append(struct.pack(">BH", _CHAR, ord(raw)))
        elif tag == _SHORT:
            out.append(struct.pack(">Bh", _SHORT, raw))
        elif tag == _INT:
            out.append(struct.pack(">Bi", _INT, raw))
        elif tag == _FLOAT:
            out.append(struct.pack(">Bf", _FLOAT, raw))
        else:
            raise ValueError(f"no typed value of tag {tag}")
    elif isinstance(value, bool):
        out.append(bytes((_BOOL, 1 if value else 0)))
    elif isinstance(value, int):
        out.append(bytes((_LONG,)) + _I64.pack(value))
    elif isinstance(value, float):
        out.append(bytes((_DOUBLE,)) + _F64.pack(value))
    elif isinstance(value, str):
        raw = java_utf(value)
        if len(value) < _BIG_STRING_CHARS and len(raw) <= 0xFFFF:
            out.append(bytes((_STRING,)) + _U16.pack(len(raw)))
        else:
            out.append(bytes((_BIG_STRING,)) + _I32.pack(len(raw)))
        out.append(raw)
    elif isinstance(value, bytes | bytearray | memoryview):
        out.append(bytes((_BYTES,)) + _I32.pack(len(value)))
        out.append(bytes(value))
    elif isinstance(value, dict):
        out.append(bytes((_MAP,)))
        _write_map(out, value, depth + 1)
    elif isinstance(value, list | tuple):
        out.append(bytes((_LIST,)) + _I32.pack(len(value)))
        for item in value:
            _write_value(out, item, depth + 1)
    else:
        raise ValueError(f"no OpenWire type for {type(value).__name__}")


def _write_map(out: list[bytes], entries: dict[str, Any], depth: int) -> None:
    out.append(_I32.pack(len(entries)))
    for key, value in entries.items():
        _utf(out, key)
        _write_value(out, value, depth)


def encode_primitive_map(entries: dict[str, Any]) -> bytes:
    """A properties map (or map message body) as ActiveMQ marshals it."""
    out: list[bytes] = []
    _write_map(out, entries, 0)
    return b"".join(out)


def encode_stream(values: list[Any]) -> bytes:
    """A stream message body: the values one after the other."""
    out: list[bytes] = []
    for value in values:
        _write_value(out, value)
    return b"".join(out)


def _read_value(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise OpenWireError("values nest too deep")
    tag = r.byte()
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return r.bool()
    if tag == _BYTE:
        return Typed(_BYTE, r.i8())
    if tag == _CHAR:
        return Typed(_CHAR, chr(_U16.unpack(r.take(2))[0]))
    if tag == _SHORT:
        return Typed(_SHORT, r.i16())
    if tag == _INT:
        return Typed(_INT, r.i32())
    if tag == _LONG:
        return r.i64()
    if tag == _DOUBLE:
        return _F64.unpack(r.take(8))[0]
    if tag == _FLOAT:
        return Typed(_FLOAT, _F32.unpack(r.take(4))[0])
    if tag == _STRING:
        return r.utf()
    if tag == _BIG_STRING:
        return read_java_utf(r.take(r.i32()))
    if tag == _BYTES:
        return bytes(r.take(r.i32()))
    if tag == _MAP:
        return _read_map(r, depth + 1)
    if tag == _LIST:
        count = r.i32()
        if count < 0:
            raise OpenWireError("a negative list length")
        return [_read_value(r, depth + 1) for _ in range(count)]
    raise OpenWireError(f"unknown primitive type {tag}")


def _read_map(r: _Reader, depth: int) -> dict[str, Any]:
    count = r.i32()
    if count < 0:
        raise OpenWireError("a negative map size")
    entries: dict[str, Any] = {}
    for _ in range(count):
        key = r.utf()
        entries[key] = _read_value(r, depth)
    return entries


def decode_primitive_map(data: bytes | memoryview) -> dict[str, Any]:
    """The inverse of :func:`encode_primitive_map`; :class:`OpenWireError` if malformed."""
    r = _Reader(data, False)
    entries = _read_map(r, 0)
    if r.pos != len(r.data):
        raise OpenWireError("a map is followed by extra bytes")
    return entries


def decode_stream(data: bytes | memoryview) -> list[Any]:
    """The inverse of :func:`encode_stream`."""
    r = _Reader(data, False)
    values = []
    while r.pos < len(r.data):
        values.append(_read_value(r, 0))
    return values


def is_message(type_code: int) -> bool:
    """Whether the type is one of the message types (23-29)."""
    return Type.ACTIVEMQ_MESSAGE <= type_code <= Type.ACTIVEMQ_BLOB_MESSAGE
