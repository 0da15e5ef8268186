"""AMQP property values and message ids as the core types them, and back.

Proton's Python types tag what Python's would lose (``byte``, ``int32``,
``symbol``, ``timestamp``...); the core has its own tags (:mod:`sealmq.core.model`).
AMQP decimals, which Proton hands over as their bits, become ``Decimal``.
"""

from __future__ import annotations

import uuid
from typing import Any

from proton import byte as amqp_byte
from proton import char as amqp_char
from proton import decimal32, decimal64, decimal128, symbol
from proton import float32 as amqp_float32
from proton import int32 as amqp_int32
from proton import short as amqp_short
from proton import timestamp as amqp_timestamp

from sealmq.core.model import Byte, Char, Float32, Int, PropertyValue, Short, Symbol, Timestamp
from sealmq.wire.amqp import bid_from_decimal, decimal_from_bid

__all__ = ["message_id_of", "to_amqp_value", "to_core_value"]


def to_core_value(value: Any) -> PropertyValue:
    """An application-property value as the core types it."""
    if isinstance(value, decimal128):
        return decimal_from_bid(int.from_bytes(value, "big"), 128)
    if value is None or isinstance(value, bool | str | bytes | uuid.UUID):
        if isinstance(value, symbol):
            return Symbol(value)
        if isinstance(value, amqp_char):
            return Char(value)
        return value
    if isinstance(value, memoryview):
        return bytes(value)
    # Proton types AMQP decimals as their bits (ints, bytes): before int and bytes.
    if isinstance(value, decimal32):
        return decimal_from_bid(int(value), 32)
    if isinstance(value, decimal64):
        return decimal_from_bid(int(value), 64)
    if isinstance(value, amqp_byte):
        return Byte(value)
    if isinstance(value, amqp_short):
        return Short(value)
    if isinstance(value, amqp_int32):
        return Int(value)
    if isinstance(value, amqp_timestamp):
        return Timestamp(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, amqp_float32):
        return Float32(value)
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"unsupported property type {type(value).__name__}")


def to_amqp_value(value: PropertyValue) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Byte):
        return amqp_byte(value)
    if isinstance(value, Short):
        return amqp_short(value)
    if isinstance(value, Int):
        return amqp_int32(value)
    if isinstance(value, Timestamp):
        return amqp_timestamp(value)
    if isinstance(value, Float32):
        return amqp_float32(value)
    if isinstance(value, Symbol):
        return symbol(value)
    if isinstance(value, Char):
        return amqp_char(value)
    if isinstance(value, int | float | str | bytes | uuid.UUID):
        return value
    # A Decimal: a decimal128 when it fits (34 digits), else its text.
    bits = bid_from_decimal(value, 128)
    return str(value) if bits is None else decimal128(bits.to_bytes(16, "big"))


def message_id_of(value: Any) -> str | bytes | int | uuid.UUID | None:
    if value is None or isinstance(value, str | int | uuid.UUID):
        return value if not isinstance(value, symbol) else str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return str(value)
