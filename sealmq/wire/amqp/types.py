"""The AMQP 1.0 type system (part 1 of the specification): values to bytes and back.

Values are the Python types python-qpid-proton uses, so what this decodes is what
``proton.Data.get_object`` would give and what it encodes is what ``Data.put_object``
would write: ``None``, ``bool``, ``int`` (long), ``float`` (double), ``str`` (string),
``bytes`` (binary), ``uuid.UUID``, ``dict`` (map), ``list`` (list), and proton's tagged
types (``ubyte``, ``ushort``, ``uint``, ``ulong``, ``byte``, ``short``, ``int32``,
``float32``, ``char``, ``timestamp``, ``symbol``, ``decimal32/64/128``, ``Described``,
``Array``). The engine (framing, performatives) stays Proton's; this is for message
sections, which the broker reads and writes for every message, where Proton's Python
wrappers cost more than the rest of the path together (bench/RESULTS.md).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from proton import (
    UNDESCRIBED,
    Array,
    Data,
    Described,
    byte,
    char,
    decimal32,
    decimal64,
    decimal128,
    float32,
    int32,
    short,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)

__all__ = [
    "AmqpDecodeError",
    "bid_from_decimal",
    "decimal_from_bid",
    "decode_value",
    "encode_value",
]


class AmqpDecodeError(ValueError):
    """Bytes that are not a well-formed AMQP value."""


_B = struct.Struct(">B")
_b = struct.Struct(">b")
_H = struct.Struct(">H")
_h = struct.Struct(">h")
_I = struct.Struct(">I")
_i = struct.Struct(">i")
_Q = struct.Struct(">Q")
_q = struct.Struct(">q")
_f = struct.Struct(">f")
_d = struct.Struct(">d")
_BB = struct.Struct(">BB")
_II = struct.Struct(">II")

# ------------------------------------------------------------------------ decoding

Reader = Callable[[bytes, int], tuple[Any, int]]


def _need(buf: bytes, end: int) -> None:
    if end > len(buf):
        raise AmqpDecodeError("value runs past the end of its section")


def _short() -> AmqpDecodeError:
    return AmqpDecodeError("value runs past the end of its section")


def _fixed(struct_: struct.Struct, cast: Callable[[Any], Any] | None) -> Reader:
    size = struct_.size
    unpack = struct_.unpack_from

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        try:
            (value,) = unpack(buf, pos)
        except struct.error:
            raise _short() from None
        return (value if cast is None else cast(value)), pos + size

    return read


def _constant(value: Any) -> Reader:
    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        return value, pos

    return read


def _variable(width: struct.Struct, cast: Callable[[bytes], Any]) -> Reader:
    unpack = width.unpack_from
    step = width.size

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        try:
            (size,) = unpack(buf, pos)
        except struct.error:
            raise _short() from None
        start = pos + step
        end = start + size
        if end > len(buf):
            raise _short()
        return cast(buf[start:end]), end

    return read


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AmqpDecodeError(f"a string that is not UTF-8: {exc}") from None


def _compound(width: struct.Struct) -> Callable[[bytes, int], tuple[int, int, int]]:
    """(end of the value, count of items, where the first item starts)."""
    pair = _BB if width is _B else _II
    unpack = pair.unpack_from
    step = pair.size
    least = width.size

    def header(buf: bytes, pos: int) -> tuple[int, int, int]:
        try:
            size, count = unpack(buf, pos)
        except struct.error:
            raise _short() from None
        end = pos + least + size
        if end > len(buf):
            raise _short()
        if size < least:
            raise AmqpDecodeError("a compound value shorter than its count")
        return end, count, pos + step

    return header


def _list(width: struct.Struct) -> Reader:
    header = _compound(width)

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end, count, pos = header(buf, pos)
        items: list[Any] = []
        append = items.append
        for _ in range(count):
            item, pos = decode_value(buf, pos)
            append(item)
        if pos != end:
            raise AmqpDecodeError("a list whose items do not fill its size")
        return items, end

    return read


def _map(width: struct.Struct) -> Reader:
    header = _compound(width)

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end, count, pos = header(buf, pos)
        if count % 2:
            raise AmqpDecodeError("a map with an odd number of items")
        result: dict[Any, Any] = {}
        for _ in range(count // 2):
            key, pos = decode_value(buf, pos)
            value, pos = decode_value(buf, pos)
            try:
                result[key] = value
            except TypeError:
                raise AmqpDecodeError(f"a map key of type {type(key).__name__}") from None
        if pos != end:
            raise AmqpDecodeError("a map whose items do not fill its size")
        return result, end

    return read


def _array(width: struct.Struct) -> Reader:
    header = _compound(width)

    def read(buf: bytes, pos: int) -> tuple[Any, int]:
        end, count, pos = header(buf, pos)
        descriptor: Any = UNDESCRIBED
        _need(buf, pos + 1)
        code = buf[pos]
        pos += 1
        if code == 0x00:
            descriptor, pos = decode_value(buf, pos)
            _need(buf, pos + 1)
            code = buf[pos]
            pos += 1
        reader = _READERS.get(code)
        kind = _ARRAY_TYPES.get(code)
        if reader is None or kind is None:
            raise AmqpDecodeError(f"an array of unknown constructor 0x{code:02x}")
        elements = []
        for _ in range(count):
            element, pos = reader(buf, pos)
            elements.append(element)
        if pos != end:
            raise AmqpDecodeError("an array whose elements do not fill its size")
        return Array(descriptor, kind, *elements), end

    return read


def _described(buf: bytes, pos: int) -> tuple[Any, int]:
    descriptor, pos = decode_value(buf, pos)
    value, pos = decode_value(buf, pos)
    return Described(descriptor, value), pos


def _read_uuid(buf: bytes, pos: int) -> tuple[Any, int]:
    end = pos + 16
    _need(buf, end)
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def _read_decimal128(buf: bytes, pos: int) -> tuple[Any, int]:
    end = pos + 16
    _need(buf, end)
    return decimal128(bytes(buf[pos:end])), end


def _read_char(buf: bytes, pos: int) -> tuple[Any, int]:
    end = pos + 4
    _need(buf, end)
    (code,) = _I.unpack_from(buf, pos)
    try:
        return char(chr(code)), end
    except ValueError:
        raise AmqpDecodeError(f"a char out of range: {code}") from None


def _read_boolean(buf: bytes, pos: int) -> tuple[Any, int]:
    _need(buf, pos + 1)
    value = buf[pos]
    if value > 1:
        raise AmqpDecodeError(f"a boolean byte of {value}")
    return value == 1, pos + 1


_READERS: dict[int, Reader] = {
    0x00: _described,
    0x40: _constant(None),
    0x41: _constant(True),
    0x42: _constant(False),
    0x56: _read_boolean,
    0x50: _fixed(_B, ubyte),
    0x60: _fixed(_H, ushort),
    0x70: _fixed(_I, uint),
    0x52: _fixed(_B, uint),
    0x43: _constant(uint(0)),
    0x80: _fixed(_Q, ulong),
    0x53: _fixed(_B, ulong),
    0x44: _constant(ulong(0)),
    0x51: _fixed(_b, byte),
    0x61: _fixed(_h, short),
    0x71: _fixed(_i, int32),
    0x54: _fixed(_b, int32),
    0x81: _fixed(_q, None),
    0x55: _fixed(_b, int),
    0x72: _fixed(_f, float32),
    0x82: _fixed(_d, None),
    0x74: _fixed(_I, decimal32),
    0x84: _fixed(_Q, decimal64),
    0x94: _read_decimal128,
    0x73: _read_char,
    0x83: _fixed(_q, timestamp),
    0x98: _read_uuid,
    0xA0: _variable(_B, bytes),
    0xB0: _variable(_I, bytes),
    0xA1: _variable(_B, _utf8),
    0xB1: _variable(_I, _utf8),
    0xA3: _variable(_B, lambda raw: symbol(raw.decode("ascii", "replace"))),
    0xB3: _variable(_I, lambda raw: symbol(raw.decode("ascii", "replace"))),
    0x45: lambda buf, pos: ([], pos),  # list0: a fresh list each time
    0xC0: _list(_B),
    0xD0: _list(_I),
    0xC1: _map(_B),
    0xD1: _map(_I),
    0xE0: _array(_B),
    0xF0: _array(_I),
}

#: Array element constructors → proton's ``Data`` type constants (``Array.type``).
_ARRAY_TYPES: dict[int, int] = {
    0x40: Data.NULL,
    0x41: Data.BOOL,
    0x42: Data.BOOL,
    0x56: Data.BOOL,
    0x50: Data.UBYTE,
    0x60: Data.USHORT,
    0x70: Data.UINT,
    0x52: Data.UINT,
    0x43: Data.UINT,
    0x80: Data.ULONG,
    0x53: Data.ULONG,
    0x44: Data.ULONG,
    0x51: Data.BYTE,
    0x61: Data.SHORT,
    0x71: Data.INT,
    0x54: Data.INT,
    0x81: Data.LONG,
    0x55: Data.LONG,
    0x72: Data.FLOAT,
    0x82: Data.DOUBLE,
    0x74: Data.DECIMAL32,
    0x84: Data.DECIMAL64,
    0x94: Data.DECIMAL128,
    0x73: Data.CHAR,
    0x83: Data.TIMESTAMP,
    0x98: Data.UUID,
    0xA0: Data.BINARY,
    0xB0: Data.BINARY,
    0xA1: Data.STRING,
    0xB1: Data.STRING,
    0xA3: Data.SYMBOL,
    0xB3: Data.SYMBOL,
    0x45: Data.LIST,
    0xC0: Data.LIST,
    0xD0: Data.LIST,
    0xC1: Data.MAP,
    0xD1: Data.MAP,
    0xE0: Data.ARRAY,
    0xF0: Data.ARRAY,
}


def decode_value(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """The value whose constructor is at ``buf[pos]``, and where the next one starts.

    Raises :class:`AmqpDecodeError` for anything malformed: never reads past the end of
    ``buf``, and a compound value whose items do not end exactly where its size says is
    refused."""
    try:
        reader = _READERS[buf[pos]]
    except IndexError:
        raise AmqpDecodeError("a value expected, the section ended") from None
    except KeyError:
        raise AmqpDecodeError(f"unknown constructor 0x{buf[pos]:02x}") from None
    return reader(buf, pos + 1)


# ------------------------------------------------------------------------ decimals

#: IEEE 754-2008 decimal formats in the binary-integer encoding (BID), which AMQP
#: names: total bits → (exponent bits, coefficient bits, bias, digits of precision).
_DECIMAL_FORMATS = {32: (8, 23, 101, 7), 64: (10, 53, 398, 16), 128: (14, 113, 6176, 34)}


def decimal_from_bid(bits: int, width: int) -> Decimal:
    """The value of an AMQP ``decimal32``/``64``/``128`` (its bits as an unsigned int)."""
    exponent_bits, coefficient_bits, bias, digits = _DECIMAL_FORMATS[width]
    sign = (bits >> (width - 1)) & 1
    if (bits >> (width - 3)) & 0b11 == 0b11:
        if (bits >> (width - 5)) & 0b11 == 0b11:  # infinity or NaN
            if (bits >> (width - 6)) & 1:
                return Decimal("-NaN" if sign else "NaN")
            return Decimal("-Infinity" if sign else "Infinity")
        exponent = (bits >> (coefficient_bits - 2)) & ((1 << exponent_bits) - 1)
        coefficient = (0b100 << (coefficient_bits - 2)) | (
            bits & ((1 << (coefficient_bits - 2)) - 1)
        )
    else:
        exponent = (bits >> coefficient_bits) & ((1 << exponent_bits) - 1)
        coefficient = bits & ((1 << coefficient_bits) - 1)
    if coefficient >= 10**digits:  # a non-canonical coefficient is zero (754-2008 3.5.2)
        coefficient = 0
    return Decimal((sign, tuple(int(d) for d in str(coefficient)), exponent - bias))


def bid_from_decimal(value: Decimal, width: int) -> int | None:
    """``value`` as the bits of an AMQP decimal of ``width``, or None if it does not fit
    (more digits than the format holds, or an exponent out of its range)."""
    exponent_bits, coefficient_bits, bias, digits = _DECIMAL_FORMATS[width]
    sign, digit_tuple, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # infinity or NaN
        top = 0b11111 if exponent in ("n", "N") else 0b11110
        return (sign << (width - 1)) | (top << (width - 6))
    coefficient = int("".join(map(str, digit_tuple)) or "0")
    biased = exponent + bias
    # Trailing zeros can trade for exponent when the exponent is too large.
    while biased >= (3 << (exponent_bits - 2)) and coefficient and coefficient * 10 < 10**digits:
        coefficient *= 10
        biased -= 1
    if coefficient >= 10**digits or not 0 <= biased < (3 << (exponent_bits - 2)):
        return None
    if coefficient < (1 << coefficient_bits):
        return (sign << (width - 1)) | (biased << coefficient_bits) | coefficient
    low = coefficient & ((1 << (coefficient_bits - 2)) - 1)
    return (sign << (width - 1)) | (0b11 << (width - 3)) | (biased << (coefficient_bits - 2)) | low


# ------------------------------------------------------------------------ encoding

Writer = Callable[[Any, bytearray], None]


def _write_bool(value: bool, out: bytearray) -> None:
    out.append(0x41 if value else 0x42)


def _write_long(value: int, out: bytearray) -> None:
    if -128 <= value <= 127:
        out += b"\x55" + _b.pack(value)
    elif -(1 << 63) <= value < (1 << 63):
        out += b"\x81" + _q.pack(value)
    else:
        raise ValueError(f"an integer out of AMQP's long range: {value}")


def _write_ulong(value: int, out: bytearray) -> None:
    if value == 0:
        out.append(0x44)
    elif value < 256:
        out += b"\x53" + _B.pack(value)
    else:
        out += b"\x80" + _Q.pack(value)


def _write_uint(value: int, out: bytearray) -> None:
    if value == 0:
        out.append(0x43)
    elif value < 256:
        out += b"\x52" + _B.pack(value)
    else:
        out += b"\x70" + _I.pack(value)


def _write_int32(value: int, out: bytearray) -> None:
    if -128 <= value <= 127:
        out += b"\x54" + _b.pack(value)
    else:
        out += b"\x71" + _i.pack(value)


def _write_variable(small: int, large: int, raw: bytes, out: bytearray) -> None:
    if len(raw) < 256:
        out += _BB.pack(small, len(raw))
    else:
        out += _B.pack(large) + _I.pack(len(raw))
    out += raw


def _write_str(value: str, out: bytearray) -> None:
    _write_variable(0xA1, 0xB1, value.encode("utf-8", "surrogatepass"), out)


def _write_symbol(value: str, out: bytearray) -> None:
    _write_variable(0xA3, 0xB3, value.encode("ascii"), out)


def _write_binary(value: bytes, out: bytearray) -> None:
    _write_variable(0xA0, 0xB0, bytes(value), out)


def _write_compound(
    small: int, large: int, count: int, body: bytes | bytearray, out: bytearray
) -> None:
    if len(body) < 255 and count < 256:
        out += _BB.pack(small, len(body) + 1) + _B.pack(count)
    else:
        out += _B.pack(large) + _II.pack(len(body) + 4, count)
    out += body


def _write_list(value: list[Any], out: bytearray) -> None:
    if not value:
        out.append(0x45)
        return
    body = bytearray()
    for item in value:
        writer = _WRITERS.get(type(item))
        if writer is None:
            encode_value(item, body)
        else:
            writer(item, body)
    _write_compound(0xC0, 0xD0, len(value), body, out)


def _write_map(value: dict[Any, Any], out: bytearray) -> None:
    body = bytearray()
    for key, item in value.items():
        encode_value(key, body)
        encode_value(item, body)
    _write_compound(0xC1, 0xD1, 2 * len(value), body, out)


def _write_described(value: Described, out: bytearray) -> None:
    out.append(0x00)
    encode_value(value.descriptor, out)
    encode_value(value.value, out)


#: Array element types → (constructor, how one element is written without it).
_ELEMENTS: dict[int, tuple[int, Callable[[Any], bytes]]] = {
    Data.BOOL: (0x56, lambda v: b"\x01" if v else b"\x00"),
    Data.UBYTE: (0x50, _B.pack),
    Data.USHORT: (0x60, _H.pack),
    Data.UINT: (0x70, _I.pack),
    Data.ULONG: (0x80, _Q.pack),
    Data.BYTE: (0x51, _b.pack),
    Data.SHORT: (0x61, _h.pack),
    Data.INT: (0x71, _i.pack),
    Data.LONG: (0x81, _q.pack),
    Data.FLOAT: (0x72, _f.pack),
    Data.DOUBLE: (0x82, _d.pack),
    Data.DECIMAL32: (0x74, _I.pack),
    Data.DECIMAL64: (0x84, _Q.pack),
    Data.DECIMAL128: (0x94, bytes),
    Data.CHAR: (0x73, lambda v: _I.pack(ord(v))),
    Data.TIMESTAMP: (0x83, _q.pack),
    Data.UUID: (0x98, lambda v: v.bytes),
    Data.BINARY: (0xB0, lambda v: _I.pack(len(v)) + bytes(v)),
    Data.STRING: (0xB1, lambda v: _I.pack(len(v.encode("utf-8"))) + v.encode("utf-8")),
    Data.SYMBOL: (0xB3, lambda v: _I.pack(len(v)) + v.encode("ascii")),
}


def _write_array(value: Array, out: bytearray) -> None:
    body = bytearray()
    descriptor: Any = value.descriptor
    if descriptor is not UNDESCRIBED:
        body.append(0x00)
        encode_value(descriptor, body)
    kind = value.type
    if kind in (Data.LIST, Data.MAP, Data.ARRAY):
        large = {Data.LIST: 0xD0, Data.MAP: 0xD1, Data.ARRAY: 0xF0}[kind]
        body.append(large)
        for element in value.elements:
            one = bytearray()
            encode_value(element, one)
            # Each element was written with its own constructor; arrays share one.
            if one[0] != large:
                raise ValueError("array elements must all be encoded the same way")
            body += one[1:]
    elif kind == Data.NULL:
        body.append(0x40)
    else:
        spec = _ELEMENTS.get(kind)
        if spec is None:
            raise ValueError(f"an array of unknown type {kind}")
        code, write = spec
        body.append(code)
        for element in value.elements:
            body += write(element)
    _write_compound(0xE0, 0xF0, len(value.elements), bytes(body), out)


def _write_none(_value: None, out: bytearray) -> None:
    out.append(0x40)


_WRITERS: dict[type, Writer] = {
    type(None): _write_none,
    bool: _write_bool,
    int: _write_long,
    float: lambda v, out: out.extend(b"\x82" + _d.pack(v)),
    str: _write_str,
    bytes: _write_binary,
    bytearray: _write_binary,
    memoryview: _write_binary,
    uuid.UUID: lambda v, out: out.extend(b"\x98" + v.bytes),
    dict: _write_map,
    list: _write_list,
    tuple: _write_list,
    symbol: _write_symbol,
    char: lambda v, out: out.extend(b"\x73" + _I.pack(ord(v))),
    timestamp: lambda v, out: out.extend(b"\x83" + _q.pack(v)),
    ulong: _write_ulong,
    uint: _write_uint,
    ushort: lambda v, out: out.extend(b"\x60" + _H.pack(v)),
    ubyte: lambda v, out: out.extend(b"\x50" + _B.pack(v)),
    byte: lambda v, out: out.extend(b"\x51" + _b.pack(v)),
    short: lambda v, out: out.extend(b"\x61" + _h.pack(v)),
    int32: _write_int32,
    float32: lambda v, out: out.extend(b"\x72" + _f.pack(v)),
    decimal32: lambda v, out: out.extend(b"\x74" + _I.pack(v)),
    decimal64: lambda v, out: out.extend(b"\x84" + _Q.pack(v)),
    decimal128: lambda v, out: out.extend(b"\x94" + bytes(v)),
    Described: _write_described,
    Array: _write_array,
}


def encode_value(value: Any, out: bytearray) -> None:
    """Append ``value``'s AMQP encoding to ``out`` (the smallest constructor that fits)."""
    writer = _WRITERS.get(type(value))
    if writer is None:
        for kind, candidate in _WRITERS.items():
            if kind is not type(None) and isinstance(value, kind):
                writer = candidate
                break
        else:
            raise ValueError(f"no AMQP type for {type(value).__name__}")
    writer(value, out)
